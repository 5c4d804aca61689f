"""What training minimizes: the model and its objective as one module (what DDP wraps), and
the default loss for a model without a loss hook."""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from ..eval.metrics.band import high_band_si_snr
from ..eval.metrics.permutations import permute
from .losses import pairwise_neg_si_snr, pairwise_neg_snr, pit_si_snr_loss, pit_snr_loss


class Trainee(nn.Module):
    """The model with its optional training objective: one module, so DDP sees all parameters
    and the loss hook runs inside DDP's forward (gradient hooks stay in place).

    The loss is ``objective(model, batch)`` when the model's ``training_objective`` hook gave a
    module, else its ``training_step_loss(batch)`` hook (``step_loss``), else
    :func:`default_loss`.
    """

    def __init__(self, model: nn.Module, objective: Optional[nn.Module],
                 step_loss: Optional[Callable[[dict], dict[str, torch.Tensor]]] = None, loss: str = "si_snr",
                 pit: bool = True, high_band_weight: float = 0.0, high_band_from: float = 0.5):
        super().__init__()
        self.model = model
        self.objective = objective
        self.step_loss = step_loss
        self.loss = loss
        self.pit = pit
        self.high_band_weight = high_band_weight
        self.high_band_from = high_band_from

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        if self.objective is not None:
            terms = self.objective(self.model, batch)
        elif self.step_loss is not None:
            terms = self.step_loss(batch)
        else:
            terms = default_loss(self.model(batch["mixture"]), batch["sources"], self.loss, self.pit,
                                 self.high_band_weight, self.high_band_from)
        if not isinstance(terms, dict) or "loss" not in terms:
            raise TypeError("a training loss hook must return a dict of scalar tensors with a 'loss' entry")
        return terms


def default_loss(estimates: torch.Tensor, sources: torch.Tensor, loss: str = "si_snr", pit: bool = True,
                 high_band_weight: float = 0.0, high_band_from: float = 0.5) -> dict[str, torch.Tensor]:
    """Negative SI-SNR (or SNR) in dB under u-PIT; ``estimates``/``sources`` ``(B, C, T)``.

    With ``high_band_weight`` > 0 the loss adds that weight times the negative SI-SNR of the
    outputs' high band (:func:`~cocktailparty.eval.metrics.band.high_band_si_snr`), outputs paired with
    references as the main term paired them; the terms are then logged apart too.
    """
    est, ref = estimates.float(), sources.float()
    if pit:
        fn = pit_si_snr_loss if loss == "si_snr" else pit_snr_loss
        value, perm = fn(est, ref)
        est = permute(est, perm)
    else:
        pair = (pairwise_neg_si_snr if loss == "si_snr" else pairwise_neg_snr)(est, ref)
        value = torch.diagonal(pair, dim1=-2, dim2=-1).mean()
    if not high_band_weight:
        return {"loss": value}
    high = -high_band_si_snr(est, ref, high_band_from).mean()
    return {"loss": value + high_band_weight * high, loss: value, "high_band": high}
