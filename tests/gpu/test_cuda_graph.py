"""The CUDA-graphed training step follows the lr it is given, without a new capture.

``training.cuda_graph`` captures Adam's update reading each param group's lr from a device
tensor that is filled before every replay (``GraphedStep`` in cocktailparty/train/cuda_graph.py),
so a per-step schedule such as ``cosine`` needs no recapture. A tiny TDANet takes one graphed
step, then one at lr 0 (its weights must not move at all), then one at lr 1e-3 (every weight
must move), all from one capture.
"""

from __future__ import annotations

import torch

from cocktailparty.core import cuda_graphs
from cocktailparty.train.config import resolve_config
from cocktailparty.train.engine import Trainer
from tests.helpers import write_tone_corpus

RATE = 16000
TINY = {"architecture": "tdanet", "sample_rate": RATE, "num_sources": 2, "basis": 9, "bottleneck": 8,
        "channels": 16, "depth": 2, "unfolds": 2, "heads": 2, "ffn_channels": 16, "dropout": 0.0, "drop_path": 0.0}


def test_graphed_step_follows_the_lr_from_one_capture(tmp_path):
    cfg = resolve_config({
        "model": TINY,
        "data": {"corpus": str(write_tone_corpus(tmp_path / "corpus", RATE)), "segment_seconds": 0.5,
                 "epoch_length": 64, "valid_max_items": 2},
        # compile off: this test is about the graph alone (test_fast_path.py compiles too).
        "training": {"batch_size": 4, "cuda_graph": True, "compile": False, "num_workers": 0,
                     "lr_schedule": {"type": "none"}},
    })
    trainer = Trainer(cfg, tmp_path / "run", device="cuda", progress=False)
    g = torch.Generator().manual_seed(0)
    batch = {"mixture": torch.randn(4, 8000, generator=g), "sources": torch.randn(4, 2, 8000, generator=g),
             "id": list("abcd")}

    def weights() -> list[torch.Tensor]:
        return [p.detach().clone() for p in trainer.params]

    group = trainer.optimizer.param_groups[0]
    trainer._train_step(batch)
    graph, before = trainer.graphed, weights()
    group["lr"] = 0.0
    trainer._train_step(batch)
    assert all(torch.equal(a, b) for a, b in zip(before, weights())), "lr 0 moved the weights"
    group["lr"] = 1e-3
    trainer._train_step(batch)
    moved = sum(not torch.equal(a, b) for a, b in zip(before, weights()))
    assert moved == len(before), f"lr 1e-3 moved only {moved} of {len(before)} weight tensors"
    assert trainer.graphed is graph, "changing the lr recaptured the graph"
    # The capture's warm-up steps repeat one shape: the model kept no training graphs of its own.
    graphs = cuda_graphs._MODEL_GRAPHS.get(trainer.model)
    assert graphs is None or not graphs.training.graphs
