"""Rules every corpus utterance goes through, synthesized or recorded: trimming silent edges,
measuring the bandwidth, and setting the level (RMS -25 dBFS, peaks under -0.3 dBFS)."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import soundfile
from scipy.signal import welch

from ..core.progress import Bar
from .levels import peak_limit


TARGET_RMS_DBFS = -25.0


PEAK_LIMIT = 10 ** (-0.3 / 20)


TRIM_DB = 40.0


BANDWIDTH_FLOOR_DB = 55.0  # bandwidth: the highest frequency within this many dB of the peak


def trim_silence(samples: np.ndarray, sample_rate: int, threshold_db: float = TRIM_DB) -> np.ndarray:
    """Cut ``(time,)`` samples to the span between the first and last 10 ms frame that is
    within ``threshold_db`` of the loudest frame."""
    hop = max(1, int(0.01 * sample_rate))
    n = len(samples) // hop
    if n == 0:
        return samples
    frames = samples[: n * hop].reshape(n, hop).astype(np.float64)
    level = 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-20)
    active = np.flatnonzero(level > level.max() - threshold_db)
    return samples[active[0] * hop:(active[-1] + 1) * hop]


def bandwidth_hz(samples: np.ndarray, sample_rate: int, floor_db: float = BANDWIDTH_FLOOR_DB) -> float:
    """The highest frequency at which the long-term spectrum of ``(time,)`` ``samples`` is
    within ``floor_db`` of its peak: about the Nyquist frequency for a full-band recording,
    the old rate's Nyquist for one that was resampled up."""
    if len(samples) < 256:
        return 0.0
    frequencies, power = welch(samples.astype(np.float64), sample_rate, nperseg=min(1024, len(samples)))
    level = 10 * np.log10(power + 1e-20)
    return float(frequencies[np.flatnonzero(level > level.max() - floor_db)[-1]])


def _bandwidth_of_file(path: str) -> float:
    samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    return bandwidth_hz(samples.mean(axis=1), rate)


def measure_bandwidths(paths: list[str], jobs: int = 0, progress: bool = True) -> list[float]:
    """:func:`bandwidth_hz` of each sound file, in parallel."""
    with ProcessPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        return list(Bar(pool.map(_bandwidth_of_file, paths, chunksize=16), enabled=progress, total=len(paths),
                        desc="bandwidth", unit="utt"))


def normalise(samples: np.ndarray, target_dbfs: float = TARGET_RMS_DBFS) -> np.ndarray:
    """Scale to ``target_dbfs`` RMS, lowered where needed to keep peaks under -0.3 dBFS."""
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
    if rms <= 0:
        return samples
    gain = peak_limit([samples], PEAK_LIMIT, 10 ** (target_dbfs / 20) / rms)
    return (samples * gain).astype(np.float32)
