"""ONNX export: every exportable architecture agrees with PyTorch at lengths it was not
traced at; the CLI exports and separates with the onnx backend; bad files get one line."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from cocktailparty.cli import main  # noqa: E402
from cocktailparty.core import checkpoint  # noqa: E402
from cocktailparty.inference.export import export_onnx  # noqa: E402
from cocktailparty.inference.onnxrun import OnnxRunner  # noqa: E402
from cocktailparty.inference.separate import Separator  # noqa: E402
from cocktailparty.models import build_model  # noqa: E402

TINY = {
    "dprnn": dict(num_filters=16, kernel_size=4, stride=2, bottleneck=8, hidden=8, chunk_size=10, num_blocks=2),
    "convtasnet": dict(num_filters=16, kernel_size=8, stride=4, bottleneck=8, hidden=16, skip=8,
                       num_layers=2, num_repeats=2),
    "tdanet": dict(sample_rate=8000, bottleneck=8, channels=16, ffn_channels=32, heads=2, depth=3, unfolds=2),
    "tdanet-large": dict(sample_rate=8000, bottleneck=8, channels=16, ffn_channels=32, heads=2, depth=3, unfolds=2),
    "tunein": dict(mode="online", num_filters=16, feature_dim=8, hidden=6, segment_size=10, low_dim=3,
                   num_heads=2, generic_blocks=1, speaker_blocks=1, speech_blocks=2),
}
TUNEIN_MODES = ("autopilot", "online", "offline")


def tiny(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(name, **TINY[name]).eval()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(TINY) - {"tunein"}))  # Tune-In: per mode, below
def test_onnxruntime_matches_pytorch_at_unseen_lengths(name, tmp_path):
    model = tiny(name)
    path = export_onnx(model, tmp_path / f"{name}.onnx", example_seconds=0.2)  # traced at 1600 samples
    runner = OnnxRunner(path)
    assert (runner.sample_rate, runner.num_sources, runner.architecture) == (8000, 2, name)
    for batch, length in ((1, 2345), (3, 801), (1, 37)):
        x = torch.randn(batch, length, generator=torch.Generator().manual_seed(length))
        with torch.no_grad():
            expected = model(x).numpy()
        got = runner.forward(x.numpy())
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("mode", TUNEIN_MODES)
def test_tunein_onnxruntime_matches_pytorch_at_unseen_lengths(mode, tmp_path):
    torch.manual_seed(0)
    model = build_model("tunein", **{**TINY["tunein"], "mode": mode}).eval()
    path = export_onnx(model, tmp_path / f"tunein-{mode}.onnx", example_seconds=0.2)  # traced at 1600 samples
    runner = OnnxRunner(path)
    assert (runner.sample_rate, runner.num_sources, runner.architecture) == (8000, 2, "tunein")
    for batch, length in ((1, 2345), (3, 801), (1, 37)):
        generator = torch.Generator().manual_seed(length)
        x = torch.randn(batch, length, generator=generator)
        # Offline: one enrollment per source, of another length than the mixture's and the export's.
        inputs = (x, torch.randn(batch, 2, length * 2 // 3 + 5, generator=generator)) if mode == "offline" else (x,)
        with torch.no_grad():
            expected = model(*inputs).numpy()
        got = runner.forward(*(t.numpy() for t in inputs))
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= 1e-4


@pytest.mark.slow
def test_cli_export_then_separate_with_onnx_matches_torch(tmp_path, capsys):
    model_path = checkpoint.save(tiny("dprnn"), tmp_path / "dprnn.safetensors")
    onnx_path = tmp_path / "dprnn.onnx"
    assert main(["export", "--model", str(model_path), "--onnx", str(onnx_path), "--seconds", "0.2"]) == 0
    assert onnx_path.is_file() and not list(tmp_path.glob(".*.part"))
    rng = np.random.default_rng(0)
    (tmp_path / "in").mkdir()
    soundfile.write(tmp_path / "in" / "a.wav", 0.1 * rng.standard_normal(12_345), 16000)  # resampled to 8 kHz
    common = [str(tmp_path / "in"), "--device", "cpu"]
    assert main(["separate", *common, "-o", str(tmp_path / "torch"), "--model", str(model_path)]) == 0
    assert main(["separate", *common, "-o", str(tmp_path / "onnx"), "--model", str(onnx_path),
                 "--backend", "onnx", "--threads", "1"]) == 0
    for i in (1, 2):
        a, rate_a = soundfile.read(tmp_path / "torch" / f"a_s{i}.wav", dtype="float32")
        b, rate_b = soundfile.read(tmp_path / "onnx" / f"a_s{i}.wav", dtype="float32")
        assert rate_a == rate_b == 16000 and a.shape == b.shape == (12_345,)
        # WAV output is 16-bit: allow its quantisation step on top of 1e-4.
        assert np.abs(a - b).max() <= 1e-4 + 2 ** -15


@pytest.mark.slow
def test_cli_export_shows_its_stages_on_a_terminal_only(tmp_path, run_cli):
    model_path = checkpoint.save(tiny("dprnn"), tmp_path / "dprnn.safetensors")
    args = ["export", "--model", model_path, "--onnx", tmp_path / "dprnn.onnx", "--seconds", "0.2"]
    status, err = run_cli(args)
    assert status == 0
    assert "export 1/2: tracing the model" in err and "export 2/2: checking it against PyTorch" in err
    run_cli.assert_silent(args, "export 1/2")


def test_onnx_backend_does_not_call_torch(tmp_path, monkeypatch):
    path = export_onnx(tiny("convtasnet"), tmp_path / "c.onnx", example_seconds=0.2)
    separator = Separator.from_onnx(str(path), chunk_seconds=1.0, overlap_seconds=0.25)

    def forbidden(*args, **kwargs):
        raise AssertionError("torch used in the onnx hot path")

    monkeypatch.setattr(torch, "from_numpy", forbidden)
    monkeypatch.setattr(torch.nn.Module, "__call__", forbidden)
    monkeypatch.setattr(torch, "inference_mode", forbidden)
    out = separator(np.random.default_rng(1).standard_normal(20_000).astype(np.float32), 8000)  # 3 chunks
    assert out.shape == (2, 20_000) and np.isfinite(out).all()


def test_corrupted_onnx_gets_one_line(tmp_path, capsys):
    path = export_onnx(tiny("convtasnet"), tmp_path / "c.onnx", example_seconds=0.2)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    soundfile.write(tmp_path / "a.wav", np.zeros(800), 8000)
    code = main(["separate", str(tmp_path / "a.wav"), "-o", str(tmp_path / "out"), "--model", str(path),
                 "--backend", "onnx"])
    err = capsys.readouterr().err
    assert code == 1
    assert "not a readable ONNX model" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_onnx_backend_needs_an_onnx_file(tmp_path, capsys):
    soundfile.write(tmp_path / "a.wav", np.zeros(800), 8000)
    assert main(["separate", str(tmp_path / "a.wav"), "-o", str(tmp_path / "out"), "--backend", "onnx",
                 "--model", "dprnn"]) == 1
    assert "--model FILE.onnx" in capsys.readouterr().err


@pytest.mark.slow
def test_the_bundled_default_exports_and_matches_pytorch(tmp_path):
    # The shipped weights, not just the architecture: onnxruntime must agree with PyTorch
    # on speech-like input (export_onnx's own check raises otherwise) and on a real length.
    model = checkpoint.load_model(None)
    path = export_onnx(model, tmp_path / "default.onnx")
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 12345)).astype(np.float32)) * 0.05
    x += 0.1 * torch.sin(torch.arange(12345) * 2 * torch.pi * 180 / 16000)
    with torch.no_grad():
        reference = model(x).numpy()
    got = OnnxRunner(path).forward(x.numpy())
    assert got.shape == reference.shape
    error = np.sum((got - reference) ** 2, axis=-1) / np.sum(reference ** 2, axis=-1)
    assert np.all(10 * np.log10(1 / error) > 40)  # the two runtimes agree to 40 dB SNR


@pytest.mark.slow
def test_tdanet_gln_exports_without_reduce_sum_square(tmp_path):
    # gLN's mean square is ReduceMean(x * x): onnxruntime's ReduceSumSquare has no fast
    # path (13% of the default model's forward). Every gLN is still one BatchNormalization,
    # and onnxruntime still matches PyTorch.
    import onnx

    model = tiny("tdanet")
    path = export_onnx(model, tmp_path / "tdanet.onnx", example_seconds=0.2)
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert "ReduceSumSquare" not in ops
    cfg = model.config
    gln = 1 + cfg.unfolds * (1 + (cfg.depth + 1) + 1 + 3 + 2 * cfg.depth)  # in_norm; per pass: proj, down, GA, LA
    assert ops.count("BatchNormalization") == gln
    x = torch.randn(2, 3001, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        np.testing.assert_allclose(OnnxRunner(path).forward(x.numpy()), model(x).numpy(), atol=1e-4)
