"""Band-limited scores: SI-SNR of the high band (above a fraction of the Nyquist frequency),
which tells whether a separator restores the top band or leaves it empty."""

from __future__ import annotations

import functools

import torch

from .signal_ratios import EPS, si_snr


HIGH_BAND_TAPS = 63  # the high-pass FIR's length: a ~0.1 x Nyquist transition band (Hamming)


HIGH_BAND_FROM = 0.5  # evaluation's high band: above half the Nyquist frequency (4 kHz at 16 kHz)


@functools.lru_cache(maxsize=None)
def _high_pass_taps(cutoff: float, device: torch.device) -> torch.Tensor:
    """(Cached: made once per device, so a captured CUDA-graph step copies nothing from the host.)
    A linear-phase FIR high-pass, ``(1, 1, HIGH_BAND_TAPS)`` float32: a unit impulse minus
    a Hamming-windowed sinc low-pass at ``cutoff`` (a fraction of the Nyquist frequency)."""
    n = torch.arange(HIGH_BAND_TAPS, dtype=torch.float64) - (HIGH_BAND_TAPS - 1) / 2
    low = cutoff * torch.sinc(cutoff * n) * torch.hamming_window(HIGH_BAND_TAPS, periodic=False, dtype=torch.float64)
    low = low / low.sum()  # exactly 0 dB at DC, so the high-pass removes DC completely
    taps = -low
    taps[(HIGH_BAND_TAPS - 1) // 2] += 1.0
    return taps.to(device=device, dtype=torch.float32).view(1, 1, -1)


def high_band(signals: torch.Tensor, cutoff: float) -> torch.Tensor:
    """``signals`` ``(..., time)`` high-passed above ``cutoff`` x Nyquist (same shape, float32,
    zero-phase: the FIR's delay is removed by centring it)."""
    flat = signals.float().reshape(-1, 1, signals.shape[-1])
    taps = _high_pass_taps(cutoff, signals.device)
    pad = (HIGH_BAND_TAPS - 1) // 2
    return torch.nn.functional.conv1d(flat, taps, padding=pad).reshape(signals.shape)


def high_band_si_snr(estimates: torch.Tensor, references: torch.Tensor, cutoff: float = 0.5,
                     eps: float = EPS) -> torch.Tensor:
    """SI-SNR (dB) of the high band (above ``cutoff`` x Nyquist) of each estimate against its
    reference, ``(batch, C)``; both ``(batch, C, time)``, already paired.

    Why: SI-SNR weights frequencies by their energy, and speech above ~4 kHz holds a few
    percent of it, so a separator trained on SI-SNR alone can drop the top band of its output
    (a muffled voice) at almost no cost: TDANet's 33-filter learned decoder ended with almost
    no response above 6 kHz. Scoring the high band on its own makes it count.
    """
    return si_snr(high_band(estimates, cutoff), high_band(references, cutoff), zero_mean=True, eps=eps)
