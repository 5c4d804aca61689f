"""Optional perceptual scores, PESQ and STOI (``pip install 'cocktailparty[quality]'``):
thin wrappers that take estimates first, batch over leading dimensions and score NaN, with a
warning, where the libraries refuse an utterance."""

from __future__ import annotations

import warnings
from typing import Optional

import numpy as np
import torch

from ...core.errors import CocktailError
from .signal_ratios import ArrayLike


PESQ_RATES = (8000, 16000)


def _require(module: str, what: str):
    try:
        return __import__(module)
    except ImportError as err:
        raise CocktailError(
            f"{what} needs the '{module}' package, which is not installed; "
            "install it with: pip install 'cocktailparty[quality]'"
        ) from err


def _as_signal_batch(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _nearest_pesq_rate(rate: int) -> int:
    # Ties go up: resampling up loses nothing.
    return min(PESQ_RATES, key=lambda r: (abs(r - rate), -r))


def pesq_score(estimate: ArrayLike, reference: ArrayLike, sample_rate: int, mode: Optional[str] = None):
    """PESQ (ITU-T P.862) MOS-LQO with the ``pesq`` package.

    P.862 accepts only 8 and 16 kHz; other rates are resampled (soxr, via
    :func:`cocktailparty.core.audio.resample`) to the nearest of the two. ``mode="nb"``
    (narrow-band) runs at 8 or 16 kHz, ``mode="wb"`` (wide-band, P.862.2) needs 16 kHz, so it
    refuses audio sampled below 16 kHz rather than scoring an upsampled narrow band. The
    default is ``"wb"`` when the audio ends up at 16 kHz and ``"nb"`` at 8 kHz.

    pesq 0.0.4 raises on silent audio (and on too-short audio); such items score NaN with a
    RuntimeWarning that repeats the library's reason.

    Args:
        estimate: ``(..., time)``.
        reference: ``(..., time)``, same shape.
        sample_rate: of both signals, in Hz.
        mode: ``"nb"``, ``"wb"`` or ``None``.

    Returns:
        A float for 1-D input, else a float64 array ``(...)``.
    """
    pesq_lib = _require("pesq", "PESQ")
    if mode not in (None, "nb", "wb"):
        raise CocktailError(f"PESQ mode must be 'nb' (narrow-band) or 'wb' (wide-band), got {mode!r}")
    if mode == "wb" and sample_rate < 16000:
        raise CocktailError(
            f"wide-band PESQ needs audio sampled at 16 kHz or more, this is {sample_rate} Hz; use mode='nb'"
        )
    est, ref = _as_signal_batch(estimate), _as_signal_batch(reference)
    if est.shape != ref.shape:
        raise ValueError(f"estimate {est.shape} and reference {ref.shape} must have the same shape")
    rate = 16000 if mode == "wb" else _nearest_pesq_rate(sample_rate)
    if rate != sample_rate:
        from ...core.audio import resample

        est = resample(est.astype(np.float32), sample_rate, rate).astype(np.float64)
        ref = resample(ref.astype(np.float32), sample_rate, rate).astype(np.float64)
    mode = mode or ("wb" if rate == 16000 else "nb")
    lead = est.shape[:-1]
    est, ref = est.reshape(-1, est.shape[-1]), ref.reshape(-1, ref.shape[-1])
    out = np.full(est.shape[0], np.nan)
    for n in range(est.shape[0]):
        if not ref[n].any() or not est[n].any():
            reason = "an all-zero signal"
        else:
            try:
                out[n] = pesq_lib.pesq(rate, ref[n], est[n], mode)  # reference first
                continue
            except pesq_lib.PesqError as err:
                reason = f"{type(err).__name__}: {err}"
            except ValueError as err:  # pesq 0.0.4 fails this way on some near-silent input
                reason = str(err)
        warnings.warn(f"PESQ is undefined for item {n} ({reason}); scoring it NaN", RuntimeWarning, stacklevel=2)
    return float(out[0]) if not lead else out.reshape(lead)


def stoi_score(estimate: ArrayLike, reference: ArrayLike, sample_rate: int, extended: bool = False):
    """STOI (Taal et al. 2011) with ``pystoi``; ``extended=True`` gives ESTOI.

    pystoi resamples to its internal 10 kHz itself, so any rate works (8 and 16 kHz checked).

    Args:
        estimate: ``(..., time)``.
        reference: ``(..., time)``, same shape.

    Returns:
        A float for 1-D input, else a float64 array ``(...)``.
    """
    pystoi = _require("pystoi", "STOI")
    est, ref = _as_signal_batch(estimate), _as_signal_batch(reference)
    if est.shape != ref.shape:
        raise ValueError(f"estimate {est.shape} and reference {ref.shape} must have the same shape")
    lead = est.shape[:-1]
    est, ref = est.reshape(-1, est.shape[-1]), ref.reshape(-1, ref.shape[-1])
    out = np.array([pystoi.stoi(r, e, sample_rate, extended=extended) for e, r in zip(est, ref)], dtype=np.float64)
    return float(out[0]) if not lead else out.reshape(lead)
