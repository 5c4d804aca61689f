"""What a model may define to take part in training, beyond ``forward``.

:class:`TrainingHooks` lists the hooks; each one is optional, and a model defines only those
it needs (it does not inherit from the protocol). The engine never asks for a model's name:
it looks the hooks up once, in :func:`find_hooks`, and calls what that found.

A ``batch`` holds, on the training device: ``mixture (B, T)``, ``sources (B, C, T)``,
``speaker_ids (B, C)`` int64 (only for data from a speaker-labelled corpus; they index
``info.speakers``), ``id`` (list of str), ``noise``/``music`` ``(B, T)`` when the data has
them (with ``data.rooms``, ``sources`` of an item put in a room are its early images), and
``enrollment (B, C, T_e)`` with ``data.enrollment_seconds`` (row ``j``: another recording of
the talker of ``sources[:, j]``, see :class:`~cocktailparty.train.data.WithEnrollment`).

A model class may also name ``auto_training_precision = "bf16"``: what ``training.precision:
auto`` picks for it on a CUDA GPU with bf16 units, once bf16's effect on its quality has been
measured (else auto keeps fp32).

Hooks run under autocast when ``training.precision`` is bf16/fp16: compute losses in
float32. With several processes the model and objective are wrapped together in DDP, which
averages gradients and broadcasts buffers from rank 0 before every forward; a buffer updated
from the batch (an EMA) should all-gather what it needs when ``torch.distributed`` is
initialized.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Protocol

import torch
from torch import nn

from ..models.conditioning import extra_arguments


@dataclass
class TrainingInfo:
    """What the ``training_objective`` hook is told about the run.

    speakers: the training speakers (``batch["speaker_ids"]`` index it), or None when the
        data carries no speaker labels (fixed mixture sets).
    num_sources, sample_rate: of the model.
    stage: ``training.stage`` (e.g. Tune-In's ``"joint"``, ``"speaker"``, ``"speech"``), or None.
    options: ``training.objective``, free-form.
    device: where training runs.
    """

    speakers: Optional[list[str]]
    num_sources: int
    sample_rate: int
    stage: Optional[str]
    options: dict
    device: torch.device


class TrainingHooks(Protocol):
    """The optional training hooks of a model. Either loss form returns named scalar terms
    including ``"loss"`` (what is minimized); every term is averaged over the epoch and logged
    (e.g. ``{"loss", "si_snr", "ince", "reg"}``). Without a loss hook the loss is
    ``training.loss`` (``si_snr`` or ``snr``) under u-PIT on ``model(batch["mixture"])``."""

    def training_objective(self, info: TrainingInfo) -> Optional[nn.Module]:
        """Called once before the optimizer is built (and again on resume, before the saved
        state is loaded). Use it to freeze parameters for a training stage (``info.stage``) and
        to build training-only state: an ``nn.Module`` whose parameters (e.g. Tune-ID's
        speaker token embeddings) are optimized with the model's and whose parameters and
        buffers (e.g. Tune-InCE's EMA speaker bank ``(N, D)``, ``N = len(info.speakers)``) are
        saved in ``train-state`` but not in ``model.safetensors``, which stays an inference
        model. If it returns a module, the loss is ``objective(model, batch) -> dict``."""

    def training_step_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        """The loss terms when ``training_objective`` gave no module (a model without
        training state)."""

    def training_diagnostics(self) -> dict[str, float]:
        """Numbers about the model logged with each ``steps.csv`` row (e.g. TDANet's
        attention logit gain, an early warning of attention collapse)."""

    def validation_estimates(self, batch: dict) -> torch.Tensor:
        """What validation scores, ``(B, C, T)`` (eval mode, no grad); default
        ``model(batch["mixture"], **extras)`` with the batch's entries for the model's
        declared extra inputs (a conditional separator's, e.g. ``enrollment``; see
        :mod:`cocktailparty.models.conditioning`)."""

    def set_activation_checkpointing(self, enabled: bool) -> None:
        """Recompute activations in backward instead of keeping them
        (``training.activation_checkpointing``)."""


def hook_names() -> tuple[str, ...]:
    """The hooks :class:`TrainingHooks` declares, in declaration order."""
    return tuple(name for name, value in vars(TrainingHooks).items()
                 if callable(value) and not name.startswith("_"))


@dataclass(frozen=True)
class ModelHooks:
    """The hooks one model defines, each its bound method or None."""

    training_objective: Optional[Callable[[TrainingInfo], Optional[nn.Module]]]
    training_step_loss: Optional[Callable[[dict], dict[str, torch.Tensor]]]
    training_diagnostics: Optional[Callable[[], dict[str, float]]]
    validation_estimates: Optional[Callable[[dict], torch.Tensor]]
    set_activation_checkpointing: Optional[Callable[[bool], None]]

    def diagnostics(self) -> dict[str, float]:
        return self.training_diagnostics() if self.training_diagnostics is not None else {}


def find_hooks(model: nn.Module) -> ModelHooks:
    """The one place the engine looks at which of :class:`TrainingHooks` ``model`` defines."""
    return ModelHooks(**{name: getattr(model, name, None) for name in hook_names()})


def auto_training_precision(model: nn.Module) -> str:
    """What ``training.precision: auto`` may pick for ``model`` on a CUDA GPU with bf16 units:
    the class's ``auto_training_precision``, else fp32 (see the module's docstring)."""
    return getattr(model, "auto_training_precision", "fp32")


def validation_estimates(model: nn.Module, hooks: ModelHooks, batch: dict) -> torch.Tensor:
    """What validation scores for ``batch``: ``(B, C, T)``, the hook's or the default."""
    if hooks.validation_estimates is not None:
        return hooks.validation_estimates(batch)
    return model(batch["mixture"], **extra_arguments(model, batch))

