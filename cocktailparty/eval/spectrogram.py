"""Spectrogram levels: the picture of a signal that ``cocktail demo`` and ``cocktail serve`` draw."""

from __future__ import annotations

import numpy as np

# Added to every power so that digital silence reads as -120 dB, not minus infinity.
SILENCE = 1e-12


def frame_length(rate: int) -> int:
    """Samples per frame: 32 ms rounded up to a power of two (512 at 16 kHz), at least 64."""
    return 1 << max(6, int(np.ceil(np.log2(0.032 * rate))))


def spectrogram_db(signal: np.ndarray, rate: int, max_columns: int | None = None) -> np.ndarray:
    """The power of each frequency in each frame of ``signal`` in dB, ``(frequencies, columns)``,
    frequency 0 first: Hann-windowed frames of :func:`frame_length` samples, a quarter frame
    apart, or, when that would give more than ``max_columns``, that many frames at evenly
    spaced starts (so a long recording costs no more than a short one). A signal shorter than
    a frame is padded with silence. Column ``i`` covers the ``i``-th stretch of the signal,
    so the picture spans ``0 .. len(signal) / rate`` seconds and ``0 .. rate / 2`` Hz."""
    signal = np.asarray(signal, dtype=np.float32)
    n_fft = frame_length(rate)
    padded = np.pad(signal, (0, max(0, n_fft - signal.shape[0])))
    columns = max(1, (padded.shape[0] - n_fft) // (n_fft // 4) + 1)
    if max_columns is not None:
        columns = min(max_columns, columns)
    starts = np.linspace(0, padded.shape[0] - n_fft, columns).astype(np.int64)
    frames = padded[starts[:, None] + np.arange(n_fft)] * np.hanning(n_fft).astype(np.float32)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    return 10 * np.log10(power + SILENCE).T
