"""Training losses: negative SI-SNR (or SNR) under utterance-level permutation-invariant training.

Both papers train separation with u-PIT (Yu et al. 2017) on SI-SNR: the network's output
channels carry no speaker identity, so each utterance is scored with the pairing of outputs
and references that suits it best, and only that pairing is back-propagated.

The pairwise score matrix ``(batch, C, C)`` is computed once; the pairing is then searched
without gradient, by trying all ``C!`` permutations for ``C <= 3`` and with the Hungarian
algorithm beyond, and the loss gathers the chosen entries (so gradients flow through the
pairwise matrix only).

Permutation convention (as in :mod:`cocktailparty.eval.metrics` and mir_eval): ``perm[b, j]`` is
the index of the *estimate* that pairs with *reference* ``j``;
``permute(estimates, perm)`` (:mod:`cocktailparty.eval.metrics.permutations`) puts the estimates
in reference order.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..eval.metrics.permutations import best_permutation
from ..eval.metrics.signal_ratios import EPS, pairwise_si_snr, pairwise_snr

PairwiseLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

__all__ = [
    "PITLoss",
    "pit_from_pairwise",
    "pit_si_snr_loss",
    "pit_snr_loss",
    "pairwise_neg_si_snr",
    "pairwise_neg_snr",
]


def _reduce(per_utterance: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_utterance.mean()
    if reduction == "sum":
        return per_utterance.sum()
    if reduction == "none":
        return per_utterance
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def pit_from_pairwise(pairwise_loss: torch.Tensor, reduction: str = "mean") -> tuple[torch.Tensor, torch.Tensor]:
    """Permutation-invariant loss from a matrix of pairwise losses (lower is better).

    Args:
        pairwise_loss: ``(batch, C, C)``; entry ``[b, i, j]`` is the loss of estimate ``i``
            against reference ``j``.
        reduction: ``"mean"`` (over the batch), ``"sum"`` or ``"none"`` (per utterance).

    Returns:
        ``(loss, perm)``: the loss of the best pairing averaged over sources (a scalar, or
        ``(batch,)`` with ``reduction="none"``) and ``perm`` ``(batch, C)`` int64.
    """
    if pairwise_loss.dim() != 3 or pairwise_loss.shape[-1] != pairwise_loss.shape[-2]:
        raise ValueError(f"pairwise loss must have shape (batch, C, C), got {tuple(pairwise_loss.shape)}")
    perm = best_permutation(pairwise_loss, maximize=False)
    chosen = pairwise_loss.gather(-2, perm.unsqueeze(-2)).squeeze(-2)  # (batch, C)
    return _reduce(chosen.mean(dim=-1), reduction), perm


def pairwise_neg_si_snr(estimates: torch.Tensor, references: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """``-SI-SNR`` (zero-mean, dB) of every estimate against every reference: ``(B, C, C)``."""
    return -pairwise_si_snr(estimates, references, zero_mean=True, eps=eps)


def pairwise_neg_snr(estimates: torch.Tensor, references: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """``-SNR`` (plain, dB) of every estimate against every reference: ``(B, C, C)``."""
    return -pairwise_snr(estimates, references, eps=eps)


def _check_sources(estimates: torch.Tensor, references: torch.Tensor) -> None:
    if estimates.dim() != 3 or estimates.shape != references.shape:
        raise ValueError(
            "estimates and references must both have shape (batch, sources, time), got "
            f"{tuple(estimates.shape)} and {tuple(references.shape)}"
        )


def pit_si_snr_loss(
    estimates: torch.Tensor, references: torch.Tensor, eps: float = EPS, reduction: str = "mean"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Negative SI-SNR under u-PIT: the papers' separation loss.

    Finite, with finite gradients, on all-zero references and estimates (``eps`` in both
    energies of the ratio; two silent signals score 0 dB).

    Args:
        estimates: ``(batch, C, time)``, the network's outputs.
        references: ``(batch, C, time)``, the clean sources.
        eps: see :data:`cocktailparty.eval.metrics.signal_ratios.EPS`.
        reduction: ``"mean"`` over the batch, ``"sum"``, or ``"none"`` for ``(batch,)``
            (e.g. to drop utterances that are already good enough, as TDANet's code does).

    Returns:
        ``(loss, perm)``: loss in dB (negative is good), ``perm`` ``(batch, C)`` int64 with
        ``estimates[b, perm[b, j]]`` paired with ``references[b, j]``.
    """
    _check_sources(estimates, references)
    return pit_from_pairwise(pairwise_neg_si_snr(estimates, references, eps), reduction)


def pit_snr_loss(
    estimates: torch.Tensor, references: torch.Tensor, eps: float = EPS, reduction: str = "mean"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Negative plain SNR under u-PIT (what TDANet's released code trains on); as :func:`pit_si_snr_loss`."""
    _check_sources(estimates, references)
    return pit_from_pairwise(pairwise_neg_snr(estimates, references, eps), reduction)


class PITLoss(nn.Module):
    """Any pairwise loss made permutation-invariant.

    Args:
        pairwise_loss: ``f(estimates (B, C, T), references (B, C, T)) -> (B, C, C)``, lower
            is better, entry ``[b, i, j]`` for estimate ``i`` vs reference ``j``.
        reduction: as :func:`pit_from_pairwise`.

    Calling it returns ``(loss, perm)`` as :func:`pit_si_snr_loss` does.
    """

    def __init__(self, pairwise_loss: PairwiseLoss = pairwise_neg_si_snr, reduction: str = "mean"):
        super().__init__()
        self.pairwise_loss = pairwise_loss
        self.reduction = reduction

    def forward(self, estimates: torch.Tensor, references: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_sources(estimates, references)
        return pit_from_pairwise(self.pairwise_loss(estimates, references), self.reduction)
