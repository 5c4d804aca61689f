"""Processes: where this one sits among ``torchrun``'s, its device, and the state it sets for
the whole process (seeds, deterministic algorithms, TF32).

``training.batch_size`` is the *global* batch: under ``torchrun`` each of the W processes
takes ``batch_size / W`` items of it, so a recipe means the same on one GPU or many. The model
and objective are wrapped in DDP, which averages gradients.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ..core.device import resolve_device
from .config import TrainingConfig


@dataclass
class Distributed:
    """Where this process sits among the ``torchrun`` processes (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "Distributed":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        return cls(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def training_device(spec: Optional[str], dist: Distributed) -> torch.device:
    """The device named by ``--device`` (default: this process's GPU, else the CPU), made current."""
    # An empty spec means the default, as None does; CUDA gets this process's index.
    device = resolve_device(spec or None, cuda_index=dist.local_rank if dist.enabled else 0)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def agree(flag: bool, dist: Distributed, device: torch.device) -> bool:
    """True on every process when ``flag`` is True on any."""
    if not dist.enabled:
        return flag
    value = torch.tensor([float(flag)], device=device)
    torch.distributed.all_reduce(value)
    return bool(value.item() > 0)


def set_process_state(t: TrainingConfig) -> None:
    """Set what ``training:`` asks of the whole process: deterministic algorithms, TF32
    matrix products, and the seeds of Python's, NumPy's and torch's global random streams
    (the weights' initialization draws from them, so this comes before the model is built)."""
    if t.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    if t.precision == "tf32":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    seed = int(t.seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def seed_rank(seed: int, rank: int) -> None:
    """Give process ``rank`` > 0 its own random streams, once DDP has broadcast the initial
    weights: dropout should differ between processes."""
    torch.manual_seed(seed + 1_000_003 * rank)
    np.random.seed((seed + 1_000_003 * rank) % 2**32)
    random.seed(seed + 1_000_003 * rank)
