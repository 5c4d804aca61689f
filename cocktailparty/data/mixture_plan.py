"""The recipe of one mixture (:class:`MixturePlan`): which utterances, cut where, placed
where, at what gains, with which noise, music and room, and what the channel did (each
talker's EQ, the band limit, the codec; :mod:`cocktailparty.data.channel_effects`); enough
to rebuild the mixture from the source files, bit for bit (:func:`render_plan`). The dynamic
mixer draws plans; the fixed sets write them to metadata.csv and read them back."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..core import audio
from ..core.errors import CocktailError
from .channel_effects import CodecPlan, EqBand, codec_round_trip, equalise, low_pass
from .rooms import reverberate

PathLike = audio.PathLike


@dataclass
class SourcePlan:
    """One talker: ``utterance[start:start+length]`` (after resampling and speed change)
    placed at ``place`` in the mixture, equalised by ``eq`` (none: as recorded) and scaled by
    ``gain_db``."""

    path: Path
    utterance_id: str
    speaker: str
    person: str
    speed: float
    start: int
    place: int
    length: int
    gain_db: float
    eq: list[EqBand] = field(default_factory=list)


@dataclass
class InterferencePlan:
    """Noise or music: the file read from ``start`` (looping when shorter than the mixture),
    scaled by ``gain_db``."""

    path: Path
    start: int
    gain_db: float


@dataclass
class MixturePlan:
    id: str
    length: int
    sample_rate: int
    sources: list[SourcePlan]
    noise: Optional[InterferencePlan] = None
    music: Optional[InterferencePlan] = None
    music_as_source: bool = False
    sir_db: list[float] = field(default_factory=list)
    snr_db: Optional[float] = None
    smr_db: Optional[float] = None
    # The RoomBank file (room-NNNNN.npy) whose RIRs reverberate the talkers; None: dry.
    room: Optional[Path] = None
    # The cutoff that band-limits the talkers, noise and music alike, Hz; None: full band.
    band_limit_hz: Optional[float] = None
    # The lossy codec the finished mixture went through and back; None: uncoded.
    codec: Optional[CodecPlan] = None


def load_speech(path: PathLike, sample_rate: int, speed: float = 1.0) -> np.ndarray:
    """A mono ``(time,)`` utterance at ``sample_rate``, played ``speed`` times faster."""
    samples, file_rate = audio.read(path)
    if file_rate != sample_rate or speed != 1.0:
        # One resampling does both the rate change and the speed change.
        samples = audio.resample(samples, file_rate * speed, sample_rate)
    return samples


def load_interference(path: PathLike, sample_rate: int) -> np.ndarray:
    """First channel of a noise/music file at ``sample_rate`` (WHAM! noise is two-channel)."""
    samples, file_rate = audio.read(path, channel=0)
    return audio.resample(samples, file_rate, sample_rate)


def render_plan(plan: MixturePlan, signals: Optional[dict] = None) -> dict[str, np.ndarray]:
    """Build the signals of a plan: ``{"mixture": (time,), "sources": (C, time)}`` float32,
    plus ``"noise"`` and ``"music"`` (time,) when the plan has them as interference, and
    ``"reverberant"`` (talkers, time) when it has a room (``sources`` are then the talkers'
    early images, and the mixture sums the reverberant ones). With a codec, the mixture is
    the coded sum; everything else stays clean.

    ``signals`` may hold already loaded raw signals as :func:`placed_source` and
    :func:`placed_interference` return them (``"sources"``, ``"noise"``, ``"music"``) and the
    room's RIRs (``"rirs"``, (talkers, taps)) to avoid reading the files again; the result is
    identical either way.
    """
    signals = signals or {}
    raws = signals.get("sources") or [placed_source(s, plan) for s in plan.sources]
    components = [_scaled(raw, s.gain_db) for raw, s in zip(raws, plan.sources)]
    out: dict[str, np.ndarray] = {}
    for key, part in (("music", plan.music), ("noise", plan.noise)):
        if part is not None:
            raw = signals.get(key)
            if raw is None:
                raw = placed_interference(part, plan)
            out[key] = _scaled(raw, part.gain_db)
    if plan.music is not None and plan.music_as_source:
        components.append(out.pop("music"))
    heard = components  # what the mixture sums, before noise and music
    if plan.room is not None:
        talkers = len(plan.sources)
        rirs = signals.get("rirs")
        rirs = _room_rirs(plan.room, talkers) if rirs is None else rirs
        reverberant, early = reverberate(np.stack(components[:talkers]), rirs, plan.sample_rate)
        out["reverberant"] = reverberant
        # Music as a source stays dry: it is not a talker in the room.
        heard = list(reverberant) + components[talkers:]
        components = list(early) + components[talkers:]
    # Summed in a fixed order in float32 so that mixture == s1 + s2 + ... + noise + music exactly
    # (with a room: the reverberant images in place of s1, s2, ...).
    mixture = heard[0].copy()
    for component in heard[1:]:
        mixture += component
    for key in ("noise", "music"):
        if key in out:
            mixture += out[key]
    if plan.codec is not None:
        mixture = codec_round_trip(mixture, plan.sample_rate, plan.codec)
    out["mixture"] = mixture
    out["sources"] = np.stack(components)
    return out


def _room_rirs(path: Path, talkers: int) -> np.ndarray:
    """The first ``talkers`` RIRs of a :class:`RoomBank` room file: ``(talkers, taps)``."""
    try:
        rirs = np.load(path)
    except (OSError, ValueError) as err:
        raise CocktailError(f"{path}: cannot read this room ({err}); the room bank has changed "
                            f"since the plan was made") from None
    if rirs.ndim != 2 or rirs.shape[0] < talkers:
        raise CocktailError(f"{path}: holds RIRs of shape {rirs.shape}, not one per talker ({talkers}); "
                            f"build a bank with --sources {talkers}")
    return rirs[:talkers]


def _scaled(raw: np.ndarray, gain_db: float) -> np.ndarray:
    return (raw.astype(np.float64) * 10.0 ** (gain_db / 20.0)).astype(np.float32)


def placed_source(source: SourcePlan, plan: MixturePlan, loaded: Optional[np.ndarray] = None) -> np.ndarray:
    """The talker as recorded, before its gain: (plan.length,) float32, its cut placed in
    silence, then equalised and band-limited as the plan says (filtered after the cut: the
    filters settle within milliseconds, and the placed cut is shorter than the utterance).
    ``loaded``: the utterance as :func:`load_speech` reads it, if already read."""
    samples = loaded if loaded is not None else load_speech(source.path, plan.sample_rate, source.speed)
    if source.start + source.length > samples.shape[-1] or source.place + source.length > plan.length:
        raise CocktailError(
            f"{source.path}: is {samples.shape[-1]} samples long at {plan.sample_rate} Hz, too short for "
            f"mixture {plan.id} (needs {source.start + source.length}); the corpus has changed since "
            f"the set was made"
        )
    out = np.zeros(plan.length, dtype=np.float32)
    out[source.place:source.place + source.length] = samples[source.start:source.start + source.length]
    if source.eq:
        out = equalise(out, source.eq, plan.sample_rate)
    if plan.band_limit_hz is not None:
        out = low_pass(out, plan.band_limit_hz, plan.sample_rate)
    return out


def placed_interference(part: InterferencePlan, plan: MixturePlan, loaded: Optional[np.ndarray] = None) -> np.ndarray:
    """Noise or music as the mixture hears it, before its gain: (plan.length,) float32, read
    from ``part.start`` (looping) and band-limited as the plan says. ``loaded``: the file as
    :func:`load_interference` reads it, if already read."""
    samples = loaded if loaded is not None else load_interference(part.path, plan.sample_rate)
    out = looped(samples, part.start, plan.length)
    if plan.band_limit_hz is not None:
        out = low_pass(out, plan.band_limit_hz, plan.sample_rate)
    return out


def looped(samples: np.ndarray, start: int, length: int) -> np.ndarray:
    # A noise file shorter than the mixture is repeated end to end.
    index = (start + np.arange(length)) % samples.shape[-1]
    return np.ascontiguousarray(samples[index], dtype=np.float32)
