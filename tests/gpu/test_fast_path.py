"""On CUDA a config that leaves training.compile and training.cuda_graph at their default
(``auto``) trains compiled and graphed, and a compile that fails there leaves the graph on.

The CPU side (what ``auto`` resolves to, the fallbacks with the CUDA parts stood in for) is
tests/test_train_fast_path.py.
"""

from __future__ import annotations

import csv
import functools
import logging
import math

import torch

from cocktailparty.train.config import resolve_config
from cocktailparty.train.engine import Trainer
from tests.helpers import TINY_TDANET, write_tone_corpus

RATE = 16000
TINY = {"architecture": "tdanet", "sample_rate": RATE, "num_sources": 2, **TINY_TDANET,
        "dropout": 0.1, "drop_path": 0.1}


def _default_run(tmp_path) -> Trainer:
    """Five steps of batch 4 x 0.5 s and a validation, compile and cuda_graph left to auto."""
    cfg = resolve_config({
        "model": TINY,
        "data": {"corpus": str(write_tone_corpus(tmp_path / "corpus", RATE)), "segment_seconds": 0.5,
                 "epoch_length": 20, "valid_max_items": 2},
        "training": {"batch_size": 4, "epochs": 1, "num_workers": 0, "log_every": 1},
    })
    assert cfg["training"]["compile"] == "auto" and cfg["training"]["cuda_graph"] == "auto"
    return Trainer(cfg, tmp_path / "run", device="cuda", progress=False)


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "cocktailparty" and r.levelno >= logging.WARNING]


def _valid_score(trainer: Trainer) -> float:
    with open(trainer.run_dir / "log.csv", newline="") as f:
        return float(list(csv.DictReader(f))[-1]["valid_si_snri"])


def test_a_default_config_on_cuda_trains_compiled_and_graphed(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="cocktailparty")
    trainer = _default_run(tmp_path)
    assert trainer.t.compile is True and trainer.t.cuda_graph is True
    assert "training step: torch.compile on (auto), CUDA graph on (auto)" in caplog.text
    assert trainer.fit() == "finished" and trainer.step == 5
    assert trainer.t.compile is True and trainer.graphed is not None, _warnings(caplog)
    assert not _warnings(caplog)
    assert math.isfinite(_valid_score(trainer))


def test_a_compile_that_fails_on_cuda_warns_once_and_keeps_the_graph(tmp_path, caplog, monkeypatch):
    def failing_backend(graph, example_inputs):
        raise RuntimeError("inductor exploded")

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=failing_backend))
    trainer = _default_run(tmp_path)
    assert trainer.fit() == "finished" and trainer.step == 5
    assert len(_warnings(caplog)) == 1 and "torch.compile failed" in _warnings(caplog)[0]
    assert "inductor exploded" in _warnings(caplog)[0]
    assert trainer.t.compile is False and trainer.graphed is not None
    assert math.isfinite(_valid_score(trainer))


def test_compiled_on_cuda_the_depthwise_convs_run_as_taps_with_the_eager_gradients(monkeypatch):
    """The compiled block's depthwise convs take :meth:`Conv._depthwise_as_taps` on CUDA, and the
    compiled model's gradients (fp32, no dropout) are the eager model's."""
    import copy

    from cocktailparty.models import build_model
    from cocktailparty.models.tdanet import Conv

    calls = []
    taps = Conv._depthwise_as_taps
    monkeypatch.setattr(Conv, "_depthwise_as_taps", lambda self, x: calls.append(1) or taps(self, x))
    torch.manual_seed(0)
    eager = build_model("tdanet", sample_rate=RATE, **TINY_TDANET).cuda().train()  # no dropout
    compiled = copy.deepcopy(eager)
    compiled.compile()
    x = torch.randn(4, RATE // 2, device="cuda")
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # eager convs in true fp32
        for model in (eager, compiled):
            model(x).square().mean().backward()
    assert calls, "the compiled block kept cuDNN's depthwise convs"
    for (name, a), b in zip(compiled.named_parameters(), eager.parameters()):
        scale = b.grad.abs().max().clamp_min(1e-12)
        assert float((a.grad - b.grad).abs().max() / scale) < 1e-3, name
