"""Levels of talkers in a mixture: the active level, the mean power, the one rule that
sets talkers' gains from their relative levels (SIR) around a reference level, and the one
peak limit (:func:`peak_limit`, also used by the corpus and noise builders).

The dynamic mixer (:class:`~cocktailparty.data.mixing.DynamicMixer`), Tune-In's enrollment
mixtures (:func:`mix_pair`) and the verification trials
(:func:`cocktailparty.eval.verification.make_trials`) all set their talkers' levels with
:func:`talker_gains_db`; the definitions are in :mod:`cocktailparty.data.mixing`.
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import numpy as np

Range = tuple[float, float]

FRAME_SECONDS = 0.02
ACTIVE_FLOOR_DB = 40.0
DEFAULT_MAX_PEAK = 0.9


def active_level_db(signal: np.ndarray, sample_rate: int, frame_seconds: float = FRAME_SECONDS,
                    floor_db: float = ACTIVE_FLOOR_DB) -> float:
    """Active level of ``(time,)`` audio in dB (defined in :mod:`cocktailparty.data.mixing`); ``-inf`` if silent.

    A trailing partial frame is ignored (it is shorter than 20 ms).
    """
    x = np.asarray(signal, dtype=np.float64)
    frame = max(1, int(round(frame_seconds * sample_rate)))
    count = x.shape[-1] // frame
    if count == 0:
        power = float(np.mean(x ** 2)) if x.size else 0.0
        return 10.0 * np.log10(power) if power > 0 else -np.inf
    powers = np.mean(x[: count * frame].reshape(count, frame) ** 2, axis=1)
    top = float(powers.max())
    if top <= 0.0:
        return -np.inf
    active = powers >= top * 10.0 ** (-floor_db / 10.0)
    return float(10.0 * np.log10(powers[active].mean()))


def power_db(signal: np.ndarray) -> float:
    """Mean power of ``(time,)`` audio in dB; ``-inf`` if silent."""
    power = float(np.mean(np.asarray(signal, dtype=np.float64) ** 2))
    return 10.0 * np.log10(power) if power > 0 else -np.inf


def draw_levels(rng: np.random.Generator, talkers: int, sir: Range, level: Range) -> tuple[list[float], float]:
    """The relative levels ``r_2 .. r_C`` (one uniform draw from ``sir`` each, in that order)
    and then the reference level (one draw from ``level``) of a ``talkers``-talker mixture."""
    relative = [float(rng.uniform(*sir)) for _ in range(talkers - 1)]
    return relative, float(rng.uniform(*level))


def talker_gains_db(signals: Sequence[np.ndarray], sample_rate: int, relative_db: Sequence[float],
                    reference_db: float) -> list[Optional[float]]:
    """Gains in dB that put ``(time,)`` talker signals at their levels in a mixture.

    Talker 1 is ``relative_db[c - 2]`` dB above talker ``c``; the offsets
    ``(0, -r_2, ..., -r_C)`` are centred on ``reference_db`` (two talkers: ``+r/2`` and
    ``-r/2``), and a talker's gain moves its active level (:func:`active_level_db`) to its
    offset. None for a silent talker: the caller leaves it unscaled.
    """
    offsets = np.array([0.0] + [-r for r in relative_db])
    offsets -= offsets.mean()
    gains: list[Optional[float]] = []
    for signal, offset in zip(signals, offsets):
        current = active_level_db(signal, sample_rate)
        gains.append(float(reference_db + offset - current) if np.isfinite(current) else None)
    return gains


def mix_pair(target: np.ndarray, interference: np.ndarray, sample_rate: int, rng: np.random.Generator,
             sir: Range, level: Range, max_peak: float = DEFAULT_MAX_PEAK) -> np.ndarray:
    """``target`` over ``interference`` (both ``(time,)``), ``r`` dB louder with ``r`` and the
    reference level drawn from ``sir`` and ``level`` as :func:`draw_levels` draws them; the sum
    is scaled down when it peaks over ``max_peak``. Returns the ``(time,)`` float32 mixture.

    This is how a Tune-In enrollment is mixed: the enrolled speaker's speech with another
    person's, at the training mixtures' SIR range.
    """
    relative, reference = draw_levels(rng, 2, sir, level)
    gains = talker_gains_db([target, interference], sample_rate, relative, reference)
    # A silent talker is left unscaled (0 dB), as the dynamic mixer leaves it.
    parts = [x.astype(np.float64) * 10.0 ** ((0.0 if g is None else g) / 20.0)
             for x, g in zip((target, interference), gains)]
    mixed = parts[0] + parts[1]
    mixed *= peak_limit([mixed], max_peak)
    return mixed.astype(np.float32)


def peak_limit(signals: Iterable[np.ndarray], max_peak: float, gain: float = 1.0) -> float:
    """``gain``, lowered where needed so that none of ``signals`` multiplied by it peaks
    above ``max_peak``: ``min(gain, max_peak / peak)``.

    ``gain`` is the factor the caller applies anyway: 1.0 to limit a mixture as it is; the
    corpus builders pass the gain to their RMS target, so that one multiplication both
    levels and limits (their samples are those of that one multiplication, as before).
    """
    peak = max(float(np.abs(x).max()) for x in signals)
    return min(gain, max_peak / peak) if peak > 0 else gain
