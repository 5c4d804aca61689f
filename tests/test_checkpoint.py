import json

import pytest
import torch

from cocktailparty.cli import main
from cocktailparty.core import checkpoint
from cocktailparty.core.config import apply_overrides, load_config
from cocktailparty.core.errors import CocktailError
from cocktailparty.models import build_model
from tests.toys import TinyModel


def test_save_load_round_trip(tmp_path):
    model = build_model("tiny-test-model", channels=6, num_sources=3)
    path = checkpoint.save(model, tmp_path / "m.safetensors", metadata={"epoch": 7, "note": "x"})
    meta = checkpoint.read_metadata(path)
    assert meta["architecture"] == "tiny-test-model"
    assert meta["config"] == {"sample_rate": 8000, "num_sources": 3, "channels": 6}
    assert meta["epoch"] == 7 and meta["note"] == "x"
    loaded = checkpoint.load(path)
    assert not loaded.training
    x = torch.randn(2, 100)
    torch.testing.assert_close(loaded(x), model.eval()(x))


def test_unknown_config_field_is_a_clear_error():
    with pytest.raises(CocktailError, match="unknown config field.*bogus"):
        build_model("tiny-test-model", bogus=1)
    with pytest.raises(CocktailError, match="unknown architecture 'nope'"):
        build_model("nope")


def test_corrupted_and_foreign_checkpoints(tmp_path):
    path = checkpoint.save(build_model("tiny-test-model"), tmp_path / "m.safetensors")
    data = path.read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CocktailError, match="truncated.safetensors: .*(corrupted|truncated)"):
        checkpoint.load(tmp_path / "truncated.safetensors")
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CocktailError, match="garbage.safetensors"):
        checkpoint.load(tmp_path / "garbage.safetensors")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(CocktailError, match="not a cocktailparty model"):
        checkpoint.load(tmp_path / "foreign.safetensors")


def test_weights_of_another_config_are_refused(tmp_path):
    path = checkpoint.save(build_model("tiny-test-model", channels=6), tmp_path / "m.safetensors")
    meta_bad = tmp_path / "bad.safetensors"
    from safetensors import safe_open  # noqa: I001
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = dict(f.metadata())
    tensors = {k: v.clone() for k, v in tensors.items()}
    meta["config"] = json.dumps({"sample_rate": 8000, "num_sources": 2, "channels": 5})
    save_file(tensors, str(meta_bad), metadata=meta)
    with pytest.raises(CocktailError, match="do not fit a tiny-test-model"):
        checkpoint.load(meta_bad)


def test_load_model_resolves_specs(tmp_path, caplog):
    path = checkpoint.save(build_model("tiny-test-model"), tmp_path / "m.safetensors")
    assert isinstance(checkpoint.load_model(str(path)), TinyModel)
    assert checkpoint.load_model("tiny-test-model").config.channels == 4
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("model:\n  architecture: tiny-test-model\n  channels: 9\n")
    assert checkpoint.load_model(str(cfg)).config.channels == 9
    assert "untrained" in caplog.text
    with pytest.raises(CocktailError, match="not a bundled model, config, architecture"):
        checkpoint.load_model("no-such-model")
    default = checkpoint.load_model(None)  # the bundled default, weights stored as float16
    assert checkpoint.DEFAULT_MODEL in checkpoint.bundled_models()
    assert default.architecture == "tdanet" and default.config.sample_rate == 16000
    assert all(p.dtype == torch.float32 for p in default.parameters())
    (tmp_path / "noarch.yaml").write_text("model:\n  channels: 3\n")
    with pytest.raises(CocktailError, match="no model.architecture"):
        checkpoint.load_model(str(tmp_path / "noarch.yaml"))


def test_config_overrides(tmp_path):
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text("model:\n  architecture: x\ntraining:\n  lr: 0.001\n")
    cfg = load_config(cfg_path)
    new = apply_overrides(cfg, ["training.lr=5e-4", "training.epochs=3", "data.segment=2.0"])
    assert new["training"] == {"lr": 5e-4, "epochs": 3}
    assert new["data"] == {"segment": 2.0}
    assert cfg["training"] == {"lr": 0.001}  # the original is untouched
    with pytest.raises(CocktailError, match="expected KEY=VALUE"):
        apply_overrides(cfg, ["training.lr"])
    (tmp_path / "bad.yaml").write_text("model: [unclosed")
    with pytest.raises(CocktailError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(CocktailError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")


def test_cli_reports_errors_in_one_line(capsys):
    assert main(["export", "--model", "no-such-model", "--onnx", "x.onnx"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cocktail: error: ")
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for command in ("separate", "extract", "verify", "corpus", "mix", "train", "evaluate", "profile", "export", "demo"):
        assert command in help_text
