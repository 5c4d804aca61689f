"""SI-SNR (= SI-SDR, Le Roux et al. 2019, with the zero-mean step of Tune-In's and TDANet's
recipes) and plain SNR, per source pair and for every pair at once. Estimates first,
references second; shapes ``(..., time)`` -> ``(...)``."""

from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch


ArrayLike = Union[np.ndarray, torch.Tensor]


#: Added to both energies of every SNR ratio, so that silent signals give finite values and
#: finite gradients. 1e-8 is what the losses use (float32 training); with ``eps=None`` the
#: metrics pick it by dtype, and float64 (all numpy input) gets :data:`EPS_FLOAT64`, small
#: enough that even a -60 dBFS utterance moves by less than 1e-10 dB.
EPS = 1e-8


EPS_FLOAT64 = 1e-16


def _as_torch(x: ArrayLike) -> tuple[torch.Tensor, bool]:
    """Tensor view of ``x``; numpy input becomes float64 (the precision metrics are reported in)."""
    if isinstance(x, torch.Tensor):
        return x, False
    return torch.as_tensor(np.asarray(x, dtype=np.float64)), True


def _check_same_time(estimate: torch.Tensor, reference: torch.Tensor) -> None:
    if estimate.shape[-1] != reference.shape[-1]:
        raise ValueError(
            f"estimate and reference differ in length: {estimate.shape[-1]} vs {reference.shape[-1]} samples"
        )


def _si_snr(est: torch.Tensor, ref: torch.Tensor, zero_mean: bool, eps: float) -> torch.Tensor:
    # Tune-In and TDANet (appendix A, Eq. 8-9), after removing each signal's mean:
    #   s_target = <s_hat, s> s / ||s||^2,   e_noise = s_hat - s_target,
    #   SI-SNR   = 10 log10(||s_target||^2 / ||e_noise||^2)
    # eps sits in both energies (and in the projection's denominator) so that a silent
    # reference or estimate gives a finite value (0 dB when both are silent) and a finite
    # gradient, instead of 0/0. The target and noise are formed explicitly rather than as
    # ||s_hat||^2 - <s_hat,s>^2/||s||^2, which cancels catastrophically at high SI-SNR.
    if zero_mean:
        est = est - est.mean(dim=-1, keepdim=True)
        ref = ref - ref.mean(dim=-1, keepdim=True)
    scale = (est * ref).sum(dim=-1, keepdim=True) / (ref.pow(2).sum(dim=-1, keepdim=True) + eps)
    target = scale * ref
    noise = est - target
    return 10 * torch.log10((target.pow(2).sum(dim=-1) + eps) / (noise.pow(2).sum(dim=-1) + eps))


def _snr(est: torch.Tensor, ref: torch.Tensor, eps: float) -> torch.Tensor:
    # Plain SNR = 10 log10(||s||^2 / ||s - s_hat||^2): no projection, so it also punishes
    # a wrong gain (TDANet's released code trains on this one).
    return 10 * torch.log10((ref.pow(2).sum(dim=-1) + eps) / ((ref - est).pow(2).sum(dim=-1) + eps))


def _eps(eps: Optional[float], dtype: torch.dtype) -> float:
    if eps is not None:
        return eps
    return EPS_FLOAT64 if dtype == torch.float64 else EPS


def _out(value: torch.Tensor, was_numpy: bool):
    return value.detach().cpu().numpy() if was_numpy else value


def si_snr(estimate: ArrayLike, reference: ArrayLike, zero_mean: bool = True, eps: Optional[float] = None):
    """Scale-invariant SNR in dB, source by source (no permutation search).

    Args:
        estimate: ``(..., time)``, torch or numpy.
        reference: ``(..., time)``, broadcastable against ``estimate``.
        zero_mean: subtract each signal's mean first, as the papers define it.
        eps: added to both energies; ``None`` picks it by dtype (see :data:`EPS`).

    Returns:
        ``(...)``: a tensor in the input's dtype (differentiable) for torch input, a float64
        array for numpy input.
    """
    est, np_in = _as_torch(estimate)
    ref, np_ref = _as_torch(reference)
    _check_same_time(est, ref)
    if np_in or np_ref:
        est, ref = est.double(), ref.double()
    return _out(_si_snr(est, ref, zero_mean, _eps(eps, est.dtype)), np_in or np_ref)


def snr(estimate: ArrayLike, reference: ArrayLike, eps: Optional[float] = None):
    """Plain (not scale-invariant) SNR in dB; shapes and types as :func:`si_snr`."""
    est, np_in = _as_torch(estimate)
    ref, np_ref = _as_torch(reference)
    _check_same_time(est, ref)
    if np_in or np_ref:
        est, ref = est.double(), ref.double()
    return _out(_snr(est, ref, _eps(eps, est.dtype)), np_in or np_ref)


def pairwise_si_snr(estimates: torch.Tensor, references: torch.Tensor, zero_mean: bool = True, eps: Optional[float] = None) -> torch.Tensor:
    """SI-SNR of every estimate against every reference.

    Args:
        estimates: ``(..., C_est, time)``.
        references: ``(..., C_ref, time)``.

    Returns:
        ``(..., C_est, C_ref)``; entry ``[..., i, j]`` scores estimate ``i`` against reference ``j``.
    """
    _check_same_time(estimates, references)
    return _si_snr(estimates.unsqueeze(-2), references.unsqueeze(-3), zero_mean, _eps(eps, estimates.dtype))


def pairwise_snr(estimates: torch.Tensor, references: torch.Tensor, eps: Optional[float] = None) -> torch.Tensor:
    """Plain SNR of every estimate against every reference: ``(..., C_est, C_ref)``."""
    _check_same_time(estimates, references)
    return _snr(estimates.unsqueeze(-2), references.unsqueeze(-3), _eps(eps, estimates.dtype))
