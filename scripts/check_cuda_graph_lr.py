"""On a CUDA machine: the graphed training step follows the lr it is given, without a new capture.

``training.cuda_graph`` captures Adam's update reading each param group's lr from a device
tensor that is filled before every replay (see ``GraphedStep`` in cocktailparty/train/cuda_graph.py),
so a per-step schedule such as ``cosine`` needs no recapture. CI has no GPU, so this check
runs on the GPU machine: a tiny TDANet takes one graphed step, then one at lr 0 (its weights
must not move at all), then one at lr 1e-3 (every weight must move), all from one capture.

    python scripts/check_cuda_graph_lr.py CORPUS_DIR     # any corpus 'cocktail corpus build' made

Exits 1 if any of the three fails.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cocktailparty.core.errors import CocktailError  # noqa: E402
from cocktailparty.train.config import resolve_config  # noqa: E402
from cocktailparty.train.engine import Trainer  # noqa: E402

TINY = {"architecture": "tdanet", "sample_rate": 16000, "num_sources": 2, "basis": 9, "bottleneck": 8,
        "channels": 16, "depth": 2, "unfolds": 2, "heads": 2, "ffn_channels": 16, "dropout": 0.0, "drop_path": 0.0}


def main(corpus: str) -> int:
    cfg = resolve_config({
        "model": TINY,
        "data": {"corpus": corpus, "segment_seconds": 0.5, "epoch_length": 64, "valid_max_items": 2},
        "training": {"batch_size": 4, "cuda_graph": True, "num_workers": 0, "lr_schedule": {"type": "none"}},
    })
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(cfg, run_dir, device="cuda", progress=False)
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
        still = all(torch.equal(a, b) for a, b in zip(before, weights()))
        group["lr"] = 1e-3
        trainer._train_step(batch)
        moved = sum(not torch.equal(a, b) for a, b in zip(before, weights()))
        one_capture = trainer.graphed is graph
    print(f"lr 0 leaves the weights unchanged: {still}; lr 1e-3 moves {moved} of {len(before)} tensors; "
          f"one capture for both: {one_capture}")
    return 0 if still and moved == len(before) and one_capture else 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    try:
        sys.exit(main(sys.argv[1]))
    except CocktailError as err:
        sys.exit(f"check_cuda_graph_lr: {err}")
