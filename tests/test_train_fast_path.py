"""training.compile, training.cuda_graph and training.precision: what ``auto`` resolves to, and a failed compile or
capture that falls back instead of ending the run.

The CUDA parts are stood in for on the CPU: a torch.compile that fails (at once, on the first
call, or in Dynamo's backend) and a graph capture that fails. tests/gpu/test_fast_path.py
runs the real ones.
"""

from __future__ import annotations

import functools
import logging

import pytest
import torch

from cocktailparty.core.errors import CocktailError
from cocktailparty.models import build_model
from cocktailparty.train import engine
from cocktailparty.train.config import DataConfig, TrainingConfig, resolve_config, resolve_fast_path
from cocktailparty.train.cuda_graph import CaptureFailed
from cocktailparty.train.hooks import auto_training_precision
from cocktailparty.train.engine import Trainer
from tests.helpers import write_tone_corpus

RATE = 8000
# Dropout and drop-path on: a step that fell back must also restore the random streams.
TINY = {"architecture": "tdanet", "sample_rate": RATE, "num_sources": 2, "basis": 9, "bottleneck": 8,
        "channels": 16, "depth": 2, "unfolds": 2, "heads": 2, "ffn_channels": 16, "dropout": 0.1, "drop_path": 0.1}
COMPILE_FAILED = "torch.compile failed"
CAPTURE_FAILED = "could not be captured as a CUDA graph"

pytestmark = pytest.mark.usefixtures("one_thread")


def _sections(training: dict | None = None, data: dict | None = None) -> tuple[TrainingConfig, DataConfig]:
    cfg = resolve_config({"model": {"architecture": "tdanet"}, "training": training or {}, "data": data or {}})
    return TrainingConfig(**cfg["training"]), DataConfig(**cfg["data"])


# --- what auto resolves to ----------------------------------------------------------------


@pytest.fixture
def gpu_has_bf16(monkeypatch):
    """The CUDA device that the "cuda:0" runs below name has bf16 units (an H100, say)."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)


def test_auto_is_the_default_kept_in_the_config_and_off_on_a_cpu(gpu_has_bf16):
    cfg = resolve_config({"model": {"architecture": "tdanet"}})
    # config.yaml records auto, so a resume decides again for the device it runs on.
    assert [cfg["training"][key] for key in ("compile", "cuda_graph", "precision")] == ["auto"] * 3
    t, d = _sections()
    line = resolve_fast_path(t, d, "cpu", 1)
    assert t.compile is False and t.cuda_graph is False and t.precision == "fp32"
    assert line == ("training step: torch.compile off (auto: not on CUDA but cpu), "
                    "CUDA graph off (auto: training.cuda_graph needs a CUDA device, not cpu), "
                    "precision fp32 (auto: not on CUDA but cpu)")
    t, d = _sections()
    assert resolve_fast_path(t, d, "cuda:0", 1, model_precision="bf16") == (
        "training step: torch.compile on (auto), CUDA graph on (auto), precision bf16 (auto)")
    assert t.compile is True and t.cuda_graph is True and t.precision == "bf16"


def test_auto_precision_takes_bf16_only_where_measured_and_an_explicit_one_is_kept(monkeypatch):
    # A model that names no auto_training_precision trains in fp32, as before auto existed.
    t, d = _sections()
    assert resolve_fast_path(t, d, "cuda:0", 1).endswith(", precision fp32 (auto: this model's training in bf16 "
                                                         "is unmeasured)")
    assert t.precision == "fp32"
    assert auto_training_precision(build_model("tdanet")) == "bf16"
    assert auto_training_precision(build_model("tunein")) == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    t, d = _sections()
    assert resolve_fast_path(t, d, "cuda:0", 1, model_precision="bf16").endswith(
        ", precision fp32 (auto: this GPU has no bf16)")
    assert t.precision == "fp32"
    for asked in ("fp32", "tf32", "bf16"):
        t, d = _sections({"precision": asked})
        assert resolve_fast_path(t, d, "cpu", 1).endswith(f", precision {asked}") and t.precision == asked


@pytest.mark.parametrize("training, data, processes, why", [
    ({"precision": "fp16"}, {}, 1, "training.cuda_graph does not go with fp16"),
    ({}, {"segment_seconds": None}, 1, "training.cuda_graph replays fixed shapes; set data.segment_seconds"),
    ({"activation_checkpointing": True}, {}, 1, "activation_checkpointing does not go with training.cuda_graph"),
    ({}, {}, 2, "training.cuda_graph runs in one process, not under torchrun's 2"),
])
def test_auto_leaves_the_graph_off_where_the_run_cannot_capture_and_says_why(training, data, processes, why,
                                                                            gpu_has_bf16):
    t, d = _sections(training, data)
    line = resolve_fast_path(t, d, "cuda:0", processes, model_precision="bf16")
    assert t.cuda_graph is False and t.compile is True
    assert line.startswith("training step: torch.compile on (auto), CUDA graph off (auto: ") and why in line


def test_an_explicit_choice_is_kept_and_an_impossible_true_refused():
    # Configs written before auto existed hold booleans, and resume as they did.
    t, d = _sections({"compile": False, "cuda_graph": False, "precision": "fp32"})
    assert resolve_fast_path(t, d, "cuda:0", 1) == "training step: torch.compile off, CUDA graph off, precision fp32"
    t, d = _sections({"compile": True})
    resolve_fast_path(t, d, "cpu", 1)
    assert t.compile is True  # an explicit true compiles on a CPU too, as before
    with pytest.raises(CocktailError, match="run.yaml: training.cuda_graph needs a CUDA device, not cpu"):
        resolve_fast_path(*_sections({"cuda_graph": True}), "cpu", 1, "run.yaml")
    with pytest.raises(CocktailError, match="training.cuda_graph runs in one process"):
        resolve_fast_path(*_sections({"cuda_graph": True}), "cuda:0", 2)
    with pytest.raises(CocktailError, match="training.cuda_graph does not go with fp16"):
        _sections({"cuda_graph": True, "precision": "fp16"})
    for value in ("yes", 1, None):
        with pytest.raises(CocktailError, match=f"training.compile must be true, false or auto, got {value!r}"):
            _sections({"compile": value})


# --- a compile or capture that fails ---------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_tone_corpus(tmp_path_factory.mktemp("corpus"), RATE)


def _trainer(corpus, run_dir, epochs: int = 1, **training) -> Trainer:
    cfg = resolve_config({
        "model": TINY,
        "data": {"corpus": str(corpus), "segment_seconds": 0.25, "epoch_length": 6, "valid_max_items": 2},
        "training": {"batch_size": 2, "epochs": epochs, "num_workers": 0, "seed": 5, **training},
    })
    return Trainer(cfg, run_dir, device="cpu", progress=False)


def _batches(n: int = 3) -> list[dict]:
    g = torch.Generator().manual_seed(1)
    return [{"mixture": torch.randn(2, 2000, generator=g), "sources": torch.randn(2, 2, 2000, generator=g)}
            for _ in range(n)]


def _train(trainer: Trainer) -> tuple[list[float], dict[str, torch.Tensor]]:
    """Three steps on one thread: with several, torch's CPU reductions may round differently
    from run to run, and Adam magnifies that in weights whose gradients are near zero, while
    the runs compared here must agree bit for bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        losses = [float(trainer._train_step(batch)["loss"]) for batch in _batches()]
    finally:
        torch.set_num_threads(threads)
    return losses, {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


@pytest.fixture(scope="module")
def eager(corpus, tmp_path_factory):
    """Losses and final weights of three eager steps: what every fallback must reproduce."""
    return _train(_trainer(corpus, tmp_path_factory.mktemp("eager") / "run", compile=False))


def _warnings(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage()]


def _assert_same(result, expected) -> None:
    (losses, weights), (want_losses, want_weights) = result, expected
    assert losses == want_losses
    assert all(torch.equal(weights[k], want_weights[k]) for k in want_weights)


def _compile_fails_on_first_call(fn, *args, **kwargs):
    def compiled(*a, **k):
        torch.rand(7)  # work done before the failure moves the random stream, which must be restored
        raise RuntimeError("backend exploded\nmore detail")
    return compiled


def _compile_fails_at_once(fn, *args, **kwargs):
    raise RuntimeError("no C++ compiler found")


@pytest.mark.parametrize("fake_compile, cause", [
    (_compile_fails_at_once, "RuntimeError: no C++ compiler found"),
    (_compile_fails_on_first_call, "RuntimeError: backend exploded"),
])
def test_a_failed_compile_warns_once_and_trains_as_eager_would(corpus, tmp_path, eager, caplog, monkeypatch,
                                                               fake_compile, cause):
    monkeypatch.setattr(torch, "compile", fake_compile)
    trainer = _trainer(corpus, tmp_path / "run", compile=True)
    _assert_same(_train(trainer), eager)
    assert _warnings(caplog, COMPILE_FAILED) == [
        f"torch.compile failed ({cause}); training goes on without it (--set training.compile=false skips the attempt)"]
    assert trainer.t.compile is False


def _trainer_asking_for_the_graph(corpus, run_dir, cuda_graph, **training) -> Trainer:
    """A CPU trainer that goes on as if ``cuda_graph`` (true or auto) had resolved to on."""
    trainer = _trainer(corpus, run_dir, cuda_graph=False, **training)
    trainer.cfg["training"]["cuda_graph"] = cuda_graph
    trainer.t.cuda_graph = True
    return trainer


class CaptureFailsWhileCompiled:
    """Stands in for GraphedStep: capture fails while the model is compiled (counted), and
    without compile 'captures' a step that is the eager one."""

    attempts = 0

    def __init__(self, trainer, batch):
        type(self).attempts += 1
        if trainer.t.compile:
            raise CaptureFailed("captured") from RuntimeError("Triton cannot do this")
        self.trainer = trainer

    def __call__(self, batch):
        return self.trainer._eager_step(batch)


class CaptureFails:
    def __init__(self, trainer, batch):
        raise CaptureFailed("training.cuda_graph: could not be captured") from RuntimeError("capture invalidated")


def test_a_compile_that_breaks_the_capture_is_dropped_and_the_graph_kept(corpus, tmp_path, eager, caplog, monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda fn, *a, **k: fn)  # compiles, as far as the trainer can tell
    monkeypatch.setattr(engine, "GraphedStep", CaptureFailsWhileCompiled)
    monkeypatch.setattr(CaptureFailsWhileCompiled, "attempts", 0)
    trainer = _trainer_asking_for_the_graph(corpus, tmp_path / "run", "auto", compile=True)
    _assert_same(_train(trainer), eager)
    assert CaptureFailsWhileCompiled.attempts == 2 and trainer.graphed is not None
    assert len(_warnings(caplog, COMPILE_FAILED)) == 1 and "RuntimeError: Triton cannot do this" in caplog.text
    assert not _warnings(caplog, CAPTURE_FAILED)


def test_a_failed_capture_trains_eagerly_under_auto_and_ends_the_run_when_asked_for(corpus, tmp_path, eager, caplog,
                                                                                     monkeypatch):
    monkeypatch.setattr(engine, "GraphedStep", CaptureFails)
    trainer = _trainer_asking_for_the_graph(corpus, tmp_path / "auto", "auto")
    _assert_same(_train(trainer), eager)
    assert _warnings(caplog, CAPTURE_FAILED) == [
        "the training step could not be captured as a CUDA graph (RuntimeError: capture invalidated); training "
        "goes on without it (--set training.cuda_graph=false skips the attempt)"]
    assert trainer.t.cuda_graph is False and trainer.graphed is None
    trainer = _trainer_asking_for_the_graph(corpus, tmp_path / "true", True)
    with pytest.raises(CaptureFailed):
        trainer._train_step(_batches(1)[0])


@pytest.mark.slow
def test_a_compile_failing_in_dynamo_leaves_a_whole_run_as_an_eager_one(corpus, tmp_path, caplog, monkeypatch):
    """The real torch.compile with a backend that fails, as Inductor does without a working
    toolchain: validation runs without it, the first step fails and is taken again eagerly."""
    def failing_backend(graph, example_inputs):
        raise RuntimeError("inductor exploded")

    reference = _trainer(corpus, tmp_path / "eager", epochs=2, compile=False)
    assert reference.fit() == "finished"
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=failing_backend))
    trainer = _trainer(corpus, tmp_path / "compiled", epochs=2, compile=True)
    assert trainer.fit() == "finished"
    assert len(_warnings(caplog, COMPILE_FAILED)) == 1 and "inductor exploded" in caplog.text
    want = reference.model.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in trainer.model.state_dict().items())

    def epochs_without_times(run: str) -> list[list[str]]:  # elapsed_s, the last column, differs
        return [row.split(",")[:-1] for row in (tmp_path / run / "log.csv").read_text().splitlines()]

    assert epochs_without_times("compiled") == epochs_without_times("eager")
