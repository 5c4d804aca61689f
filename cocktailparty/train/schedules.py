"""The lr schedule and early stopping (the papers' recipe), and the optimizer they drive.

The lr halves when the validation SI-SNRi has not improved for ``patience_epochs``
validations (torch's ``ReduceLROnPlateau`` counting: halved on the 16th epoch without a new
best, as the TDANet authors' code does); training stops after
``early_stop_patience_epochs`` validations without a new best.
"""

from __future__ import annotations

import math
from typing import Iterable, Optional

import torch

from .config import TrainingConfig


def build_optimizer(params: Iterable[torch.nn.Parameter], t: TrainingConfig) -> torch.optim.Optimizer:
    """``training.optimizer`` over ``params`` at ``training.lr``."""
    lr, wd = float(t.lr), float(t.weight_decay)
    # capturable: Adam keeps its step count on the GPU, so a CUDA graph can replay the update
    # (the trainer has turned an `auto` cuda_graph into true or false by now).
    adam = dict(lr=lr, weight_decay=wd, betas=tuple(t.betas), capturable=t.cuda_graph is True)
    if t.optimizer == "adam":
        return torch.optim.Adam(params, **adam)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, **adam)
    return torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=float(t.momentum))


class Recipe:
    """The lr schedule and the early-stopping counter, driven by validation SI-SNRi (dB).

    ``validated(score)`` after each validation returns True when training should stop;
    ``epoch_done()`` after every epoch steps an epoch-based schedule; ``step_done(step)``
    after every optimizer step sets a per-step schedule's lr for the next one.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: dict, early_stop: Optional[int]):
        self.optimizer, self.schedule = optimizer, schedule
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]  # the configured lr
        self.kind = schedule.get("type", "plateau")
        self.early_stop = early_stop
        self.best: Optional[float] = None
        self.best_epoch: Optional[int] = None
        self.bad = 0  # validations since the last new best
        if self.kind == "plateau":
            # abs threshold 0: any new best counts, as "the best model was not found" reads.
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="max", factor=float(schedule.get("factor", 0.5)),
                patience=int(schedule.get("patience_epochs", 15)), threshold=0.0, threshold_mode="abs",
                min_lr=float(schedule.get("min_lr", 0.0)))
        elif self.kind == "step":
            self.scheduler = torch.optim.lr_scheduler.StepLR(
                optimizer, step_size=int(schedule.get("every_epochs", 1)), gamma=float(schedule.get("factor", 0.5)))
        else:
            self.scheduler = None
        self.step_done(0)

    def validated(self, score: float, epoch: int) -> tuple[bool, bool]:
        """Record a validation score; returns ``(new_best, stop)``."""
        improved = self.best is None or score > self.best
        if improved:
            self.best, self.best_epoch, self.bad = float(score), epoch, 0
        else:
            self.bad += 1
        if self.kind == "plateau":
            self.scheduler.step(score)
        stop = self.early_stop is not None and self.bad >= int(self.early_stop)
        return improved, stop

    def epoch_done(self) -> None:
        if self.kind == "step":
            self.scheduler.step()

    def step_done(self, step: int) -> None:
        """Set a per-step schedule's lr for the step after ``step`` completed ones (also at
        the start and after a resume, which may have changed the schedule)."""
        if self.kind == "cosine":
            for group, base in zip(self.optimizer.param_groups, self.base_lrs):
                group["lr"] = cosine_lr(step, base, self.schedule)

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad": self.bad,
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.bad = state["best"], state["best_epoch"], state["bad"]
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])


def cosine_lr(step: int, base: float, schedule: dict) -> float:
    """The cosine schedule's lr for the step after ``step`` completed ones (see
    ``TrainingConfig.lr_schedule``): a linear warm-up to ``base``, then half a cosine to ``min_lr``."""
    total, warmup = int(schedule["total_steps"]), int(schedule.get("warmup_steps", 0))
    floor = float(schedule.get("min_lr", 0.0))
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / (total - warmup))
    return floor + (base - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

