"""Pairing estimates with references: the best permutation (exhaustive for few sources, the
Hungarian algorithm above), :func:`permute`, permutation-invariant SI-SNR and its improvement
over the mixture (SI-SNRi). ``perm[..., j]`` is the index of the estimate that pairs with
reference ``j`` (mir_eval's ``popt``)."""

from __future__ import annotations

import functools
import itertools
from typing import Optional

import numpy as np
import torch

from .signal_ratios import ArrayLike, _as_torch, _eps, _out, _si_snr, pairwise_si_snr


#: Number of sources up to which the best permutation is found by trying them all (C! <= 6);
#: above it the Hungarian algorithm is used, which gives the same optimum in O(C^3).
EXHAUSTIVE_MAX_SOURCES = 3


@functools.lru_cache(maxsize=None)
def _permutation_table(c: int, device: torch.device) -> torch.Tensor:
    """All permutations of ``range(c)`` ``(c!, c)`` on ``device``. Cached: a host-to-device copy
    at every call would also stop a training step from being captured as a CUDA graph."""
    return torch.tensor(list(itertools.permutations(range(c))), dtype=torch.long, device=device)


def best_permutation(scores: torch.Tensor, maximize: bool = True) -> torch.Tensor:
    """The one-to-one pairing of estimates and references with the best total score.

    Args:
        scores: ``(..., C, C)``, ``scores[..., i, j]`` pairs estimate ``i`` with reference ``j``
            (as :func:`pairwise_si_snr` returns it). It is not differentiated through.
        maximize: ``True`` for scores (dB), ``False`` for losses.

    Returns:
        ``perm``: ``(..., C)`` int64 on the input's device; ``perm[..., j]`` is the estimate
        paired with reference ``j``. Ties go to the permutation that comes first in
        ``itertools.permutations`` order, as in mir_eval.
    """
    scores = scores.detach()
    c = scores.shape[-1]
    if scores.shape[-2] != c:
        raise ValueError(f"need as many estimates as references, got a {tuple(scores.shape[-2:])} score matrix")
    if not maximize:
        scores = -scores
    if c <= EXHAUSTIVE_MAX_SOURCES:
        perms = _permutation_table(c, scores.device)
        # totals[..., p] = sum_j scores[..., perms[p, j], j]
        totals = scores[..., perms, torch.arange(c, device=scores.device)].sum(dim=-1)
        return perms[totals.argmax(dim=-1)]
    from scipy.optimize import linear_sum_assignment

    flat = scores.reshape(-1, c, c).cpu().double().numpy()
    out = np.empty((flat.shape[0], c), dtype=np.int64)
    for n, matrix in enumerate(flat):
        if not np.all(np.isfinite(matrix)):
            raise ValueError("cannot pick a permutation from scores that contain NaN or inf")
        rows, cols = linear_sum_assignment(matrix, maximize=True)
        out[n, cols] = rows
    return torch.from_numpy(out).reshape(scores.shape[:-1]).to(scores.device)


def permute(estimates: ArrayLike, perm: ArrayLike):
    """Reorder estimates into reference order.

    Args:
        estimates: ``(..., C, time)``.
        perm: ``(..., C)`` as returned by :func:`best_permutation`.

    Returns:
        ``(..., C, time)`` with ``out[..., j, :] = estimates[..., perm[..., j], :]``.
    """
    if isinstance(estimates, torch.Tensor):
        index = torch.as_tensor(perm, device=estimates.device, dtype=torch.long)
        index = index.unsqueeze(-1).expand(*index.shape, estimates.shape[-1])
        return estimates.gather(-2, index)
    index = np.asarray(perm, dtype=np.int64)[..., None]
    return np.take_along_axis(np.asarray(estimates), index, axis=-2)


def _resolve_permutation(pairwise: torch.Tensor, permutation) -> torch.Tensor:
    c = pairwise.shape[-1]
    if isinstance(permutation, str):
        if permutation != "best":
            raise ValueError(f"permutation must be 'best', None or an index array, got {permutation!r}")
        return best_permutation(pairwise, maximize=True)
    if permutation is None:
        return torch.arange(c, device=pairwise.device).expand(pairwise.shape[:-1])
    perm = torch.as_tensor(np.asarray(permutation) if not isinstance(permutation, torch.Tensor) else permutation)
    return perm.to(device=pairwise.device, dtype=torch.long).expand(pairwise.shape[:-1])


def _mixture_like(mixture: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    # A mixture of shape (..., time) is the same input for every source: give it the C axis.
    if mixture.dim() == references.dim() - 1:
        mixture = mixture.unsqueeze(-2)
    return mixture.expand_as(references)


def pit_si_snr(estimates: ArrayLike, references: ArrayLike, permutation="best", zero_mean: bool = True, eps: Optional[float] = None):
    """SI-SNR per reference after pairing estimates with references.

    Args:
        estimates: ``(..., C, time)``.
        references: ``(..., C, time)``.
        permutation: ``"best"`` (highest mean SI-SNR), ``None`` (as given) or ``(..., C)`` indices.

    Returns:
        ``(scores, perm)``: ``scores`` ``(..., C)`` in reference order, ``perm`` ``(..., C)``
        (torch in, torch out; numpy in, numpy out).
    """
    est, np_in = _as_torch(estimates)
    ref, np_ref = _as_torch(references)
    if np_in or np_ref:
        est, ref = est.double(), ref.double()
    pairwise = pairwise_si_snr(est, ref, zero_mean, eps)
    perm = _resolve_permutation(pairwise, permutation)
    scores = pairwise.gather(-2, perm.unsqueeze(-2)).squeeze(-2)
    return _out(scores, np_in or np_ref), _out(perm, np_in or np_ref)


def si_snri(estimates: ArrayLike, references: ArrayLike, mixture: ArrayLike, permutation="best", zero_mean: bool = True, eps: Optional[float] = None):
    """SI-SNR improvement: ``SI-SNR(estimate, reference) - SI-SNR(mixture, reference)``.

    Args:
        estimates: ``(..., C, time)``.
        references: ``(..., C, time)``.
        mixture: ``(..., time)`` or ``(..., C, time)``.
        permutation: as :func:`pit_si_snr`.

    Returns:
        ``(improvement, perm)``, both ``(..., C)`` in reference order.
    """
    was_numpy = not isinstance(estimates, torch.Tensor)
    est, _ = _as_torch(estimates)
    ref, _ = _as_torch(references)
    mix, _ = _as_torch(mixture)
    if was_numpy:
        est, ref, mix = est.double(), ref.double(), mix.double()
    scores, perm = pit_si_snr(est, ref, permutation, zero_mean, eps)
    baseline = _si_snr(_mixture_like(mix.to(ref.dtype), ref), ref, zero_mean, _eps(eps, ref.dtype))
    return _out(scores - baseline, was_numpy), _out(perm, was_numpy)
