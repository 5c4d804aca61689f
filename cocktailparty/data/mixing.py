"""Mixing talkers: on-the-fly for training, and fixed, regenerable sets for testing.

:class:`DynamicMixer` is a torch Dataset that draws a new mixture for every ``(epoch, index)``
from a :class:`~cocktailparty.data.datasets.SpeakerCorpus`; :func:`write_mixture_set` (the
``cocktail mix`` command) writes a fixed set in the wsj0-2mix layout with a metadata CSV from
which :func:`regenerate_from_metadata` rebuilds the same set.

Definitions (levels in dB):

* **Active level** of a signal: ``10 log10`` of its mean power over the *active* 20 ms
  frames, a frame being active when its power is within 40 dB of the loudest frame. This is a
  light stand-in for the ITU-T P.56 active speech level that the wsj0-2mix scripts use: pauses
  and zero padding do not count, and scaling a signal does not change which frames count.
* **Relative level (SIR) between talkers**, as in wsj0-2mix: for each talker ``c >= 2`` a
  value ``r_c`` is drawn uniformly from ``sir``; talker 1 is ``r_c`` dB above talker ``c``.
  The per-talker offsets ``(0, -r_2, ..., -r_C)`` are centred on a common reference active
  level ``L`` (drawn from ``level``), so with two talkers **s1 sits at L + r/2 and s2 at
  L - r/2** (wsj0-2mix: r in 0..5 dB, written into its file names as +-r/2). Tune-In trains
  with SIR 0..5 dB; LRS2-2Mix uses -5..5 dB (a negative bound lets either talker be louder).
* **Noise SNR**: ``10 log10(P_speech / P_noise)``, where ``P`` is the mean power over the whole
  mixture and the speech is the sum of the scaled talkers (the noise-free mixture).
* **Music SMR**: the same with music in place of noise. With ``music_as_source`` the music is
  a target (speech-vs-music separation, like Tune-In's WSJ0-music) and is returned as the last
  row of ``sources``; otherwise it is interference, like noise. The papers do not state the
  SMR of WSJ0-music; the default -5..5 dB is ours.
* **'min' / 'max'** (wsj0-2mix terms, used when no fixed ``segment`` is set): 'min' makes the
  mixture as long as the shortest talker, 'max' as long as the longest, the others padded with
  zeros at the end. ``max_seconds`` caps the length; a source longer than the mixture is cut
  at a random offset (wsj0-2mix always keeps the beginning). With a fixed ``segment`` (for
  batching) every item has exactly that length and a shorter utterance is placed at a random
  offset inside it.
* **Speed perturbation**: factor ``f`` drawn from ``speed``; the utterance is resampled (soxr)
  as if recorded at ``f`` times its rate, so it plays ``f`` times faster, ``n / f`` samples
  long, with pitch scaled by ``f`` (sox's ``speed`` effect).
* **Reverberation** (``rooms``, WHAMR!-style; :mod:`cocktailparty.data.rooms`): all talkers
  of a mixture stand in one simulated room drawn from a :class:`~cocktailparty.data.rooms.RoomBank`.
  Each placed, gain-scaled talker is convolved with its room impulse response; the
  *reverberant images* are what the mixture holds, the *early images* (direct path + the
  first 50 ms of the room) are the targets in ``sources``. Noise and music stay dry. The
  levels above (SIR, SNR, SMR) are set on the dry talkers; the bank's RIRs are scaled so that
  an early image keeps about its dry talker's level (a voice's can move by a few dB, see
  :mod:`~cocktailparty.data.rooms`), and the reverberant images add the late tail on top.
* **Clipping**: when the peak of the mixture, any source, the noise or the music (and any
  reverberant image) exceeds ``max_peak`` (0.9, as in wsj0-2mix), every gain is lowered by
  the same dB, so ``mixture == sources[0] + sources[1] + ... + noise + music`` still holds
  exactly, in float32, summed in that order. With a room,
  ``mixture == reverberant[0] + reverberant[1] + ... + noise + music`` holds instead (the
  early images in ``sources`` do not add up to the mixture: the late reverberation is not in
  any target).
* Talkers in one mixture are distinct speakers and, where the corpus says so (the manifest's
  ``person`` column), distinct underlying persons: one person's recordings behind several TTS
  voices never meet in one mixture.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from ..core import atomic, audio
from ..core.errors import CocktailError, DatasetLayoutError
from ..core.progress import Bar, progress_enabled
from .datasets import NoiseFolder, SpeakerCorpus
from .rooms import RoomBank, reverberate

log = logging.getLogger("cocktailparty")

PathLike = audio.PathLike
Range = tuple[float, float]

FRAME_SECONDS = 0.02
ACTIVE_FLOOR_DB = 40.0
DEFAULT_MAX_PEAK = 0.9
METADATA_FILE = "metadata.csv"
PARAMETERS_FILE = "mixing.json"
FORMAT_NAME = "cocktailparty-mixtures"
FORMAT_VERSION = 1


def active_level_db(signal: np.ndarray, sample_rate: int, frame_seconds: float = FRAME_SECONDS,
                    floor_db: float = ACTIVE_FLOOR_DB) -> float:
    """Active level of ``(time,)`` audio in dB (see the module docstring); ``-inf`` if silent.

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


# --------------------------------------------------------------------------------------
# The recipe of one mixture: enough to rebuild it from the source files, bit for bit
# --------------------------------------------------------------------------------------


@dataclass
class SourcePlan:
    """One talker: ``utterance[start:start+length]`` (after resampling and speed change)
    placed at ``place`` in the mixture and scaled by ``gain_db``."""

    path: Path
    utterance_id: str
    speaker: str
    person: str
    speed: float
    start: int
    place: int
    length: int
    gain_db: float


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
    early images, and the mixture sums the reverberant ones).

    ``signals`` may hold already loaded, placed raw signals (``"sources"``, ``"noise"``,
    ``"music"``) and the room's RIRs (``"rirs"``, (talkers, taps)) to avoid reading the files
    again; the result is identical either way.
    """
    signals = signals or {}
    raws = signals.get("sources") or [_placed_source(s, plan) for s in plan.sources]
    components = [_scaled(raw, s.gain_db) for raw, s in zip(raws, plan.sources)]
    out: dict[str, np.ndarray] = {}
    for key, part in (("music", plan.music), ("noise", plan.noise)):
        if part is not None:
            raw = signals.get(key)
            if raw is None:
                raw = _looped(load_interference(part.path, plan.sample_rate), part.start, plan.length)
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


def _placed_source(source: SourcePlan, plan: MixturePlan, loaded: Optional[np.ndarray] = None) -> np.ndarray:
    samples = loaded if loaded is not None else load_speech(source.path, plan.sample_rate, source.speed)
    if source.start + source.length > samples.shape[-1] or source.place + source.length > plan.length:
        raise CocktailError(
            f"{source.path}: is {samples.shape[-1]} samples long at {plan.sample_rate} Hz, too short for "
            f"mixture {plan.id} (needs {source.start + source.length}); the corpus has changed since "
            f"the set was made"
        )
    out = np.zeros(plan.length, dtype=np.float32)
    out[source.place:source.place + source.length] = samples[source.start:source.start + source.length]
    return out


def _looped(samples: np.ndarray, start: int, length: int) -> np.ndarray:
    # A noise file shorter than the mixture is repeated end to end.
    index = (start + np.arange(length)) % samples.shape[-1]
    return np.ascontiguousarray(samples[index], dtype=np.float32)


# --------------------------------------------------------------------------------------
# On-the-fly mixing
# --------------------------------------------------------------------------------------


class DynamicMixer(Dataset):
    """Mixtures drawn on the fly from a speaker-labelled corpus (a torch Dataset).

    Item ``i`` in epoch ``e`` is a deterministic function of ``(seed, e, i)`` (call
    :meth:`set_epoch` each epoch), so a resumed run sees exactly the data it would have seen,
    whatever the number of DataLoader workers. It is a dict::

        {"mixture": (time,) float32, "sources": (C, time) float32,
         "speaker_ids": (C,) int64, "id": str,
         "noise": (time,) float32,   # only with a noise folder
         "music": (time,) float32,   # only with music as interference
         "reverberant": (C, time) float32}  # only when a room was applied

    which a DataLoader batches to ``mixture (batch, time)``, ``sources (batch, C, time)``.
    ``speaker_ids`` index :attr:`speakers` (the corpus's speakers, sorted). With
    ``music_as_source`` ``sources`` has ``C + 1`` rows, the last being the music.
    ``mixture == sum(sources) + noise + music`` exactly for a dry item. When a room was
    applied, ``sources`` holds the talkers' early images and
    ``mixture == sum(reverberant) + noise + music`` exactly instead (music as a source stays
    dry: it is the last row of ``sources`` and is added to the mixture as it is). Level and
    room definitions: module docstring.

    Args:
        corpus: a :class:`SpeakerCorpus` or a path that :meth:`SpeakerCorpus.open` reads, or a
            list of them (e.g. real and TTS speech), mixed together as one.
        corpus_weights: with a list of corpora, the probability that a talker comes from each
            (default: in proportion to their persons). Then every talker is drawn alike,
            the first too (``first_talker`` does not apply): a corpus by weight, a person of
            it not yet in the mixture, a speaker of that person, an utterance of that speaker,
            so a person with much speech is not heard more often than one with little.
        min_bandwidth: leave out utterances whose ``bandwidth_hz`` (manifest column) is under
            this fraction of the Nyquist frequency at ``sample_rate``: speech resampled up
            from a lower rate would teach that the top band is empty. Utterances with no
            recorded bandwidth are kept.
        split: corpus split (train/valid/test) when ``corpus`` is a path; also picks the
            matching split folder of ``noise``/``music`` when they have split folders.
        num_speakers: talkers per mixture (C).
        sample_rate: output rate; default the corpus's.
        segment: seconds per item (fixed, for batching); ``None`` for whole utterances
            shaped by ``mode`` and capped at ``max_seconds``.
        mode: ``"min"`` or ``"max"`` (only when ``segment`` is ``None``).
        max_seconds: cap on the mixture length when ``segment`` is ``None``.
        sir: range of the relative level between talkers, dB.
        level: range of the common reference active level, dBFS.
        noise, snr: a folder of noise recordings (WHAM! noise) and the SNR range, dB.
        music, smr: a folder of music and the speech-to-music range, dB.
        music_as_source: make the music a separation target instead of interference.
        speed: range of speed factors (e.g. ``(0.95, 1.05)``); ``None`` for none.
        rooms: a :class:`~cocktailparty.data.rooms.RoomBank` or its folder (``cocktail corpus
            rooms``; opened at ``split``): reverberate the talkers in one of its rooms, drawn
            per item. Its sample rate must be the mixer's, and its rooms must hold at least
            ``num_speakers`` sources (the first ``num_speakers`` are used).
        reverb_probability: the chance that an item gets a room (the rest stay dry).
        max_peak: peak limit of every output signal.
        distinct_persons: also keep one underlying person out of a mixture twice.
        length: items per epoch; default one per utterance (each utterance is the first
            talker once per epoch, mixed with other randomly chosen talkers, as in Tune-In).
        first_talker: ``"cycle"`` (item ``i`` starts from utterance ``i mod N``) or
            ``"random"``.
        seed: the seed of everything random here.
    """

    def __init__(
        self,
        corpus: Union[SpeakerCorpus, PathLike, Sequence[Union[SpeakerCorpus, PathLike]]],
        *,
        split: Optional[str] = None,
        corpus_weights: Optional[Sequence[float]] = None,
        min_bandwidth: Optional[float] = None,
        num_speakers: int = 2,
        sample_rate: Optional[int] = None,
        segment: Optional[float] = 4.0,
        mode: str = "min",
        max_seconds: Optional[float] = None,
        sir: Range = (0.0, 5.0),
        level: Range = (-25.0, -25.0),
        noise: Union[NoiseFolder, PathLike, None] = None,
        snr: Range = (-6.0, 3.0),
        music: Union[NoiseFolder, PathLike, None] = None,
        smr: Range = (-5.0, 5.0),
        music_as_source: bool = False,
        speed: Optional[Range] = None,
        max_peak: float = DEFAULT_MAX_PEAK,
        distinct_persons: bool = True,
        length: Optional[int] = None,
        first_talker: str = "cycle",
        seed: int = 0,
        rooms: Union[RoomBank, PathLike, None] = None,
        reverb_probability: float = 1.0,
    ):
        parts = list(corpus) if isinstance(corpus, (list, tuple)) else [corpus]
        parts = [c if isinstance(c, SpeakerCorpus) else SpeakerCorpus.open(c, split=split) for c in parts]
        self.corpus = parts[0] if len(parts) == 1 else SpeakerCorpus.union(parts)
        self.num_speakers = int(num_speakers)
        self.sample_rate = int(sample_rate or self.corpus.sample_rate)
        if min_bandwidth:
            floor = float(min_bandwidth) * self.sample_rate / 2
            self.corpus = self.corpus.keep(lambda u: u.bandwidth_hz is None or u.bandwidth_hz >= floor,
                                           f"utterances narrower than {floor:.0f} Hz are left out")
        self.part_weights = None
        if corpus_weights is not None or len(parts) > 1:
            weights = list(corpus_weights) if corpus_weights is not None else [
                len({u.person for u in p.utterances}) for p in parts]
            if len(weights) != len(parts) or any(not w >= 0 for w in weights) or sum(weights) <= 0:
                raise CocktailError(f"corpus_weights {weights}: give one non-negative weight per corpus "
                                    f"({len(parts)}), not all zero")
            self.part_weights = np.asarray(weights, dtype=np.float64)
        self.segment = segment
        self.mode = mode
        self.max_seconds = max_seconds
        self.sir = _range(sir, "sir")
        self.level = _range(level, "level")
        self.snr = _range(snr, "snr")
        self.smr = _range(smr, "smr")
        self.speed = _range(speed, "speed") if speed is not None else None
        self.noise = _noise_folder(noise, split, "noise")
        self.music = _noise_folder(music, split, "music")
        self.music_as_source = bool(music_as_source)
        self.rooms = rooms if rooms is None or isinstance(rooms, RoomBank) else RoomBank(rooms, split=split)
        self.reverb_probability = float(reverb_probability)
        self.max_peak = float(max_peak)
        self.distinct_persons = bool(distinct_persons)
        self.first_talker = first_talker
        self.seed = int(seed)
        self.epoch = 0
        self.length = int(length) if length is not None else len(self.corpus)
        self._check()
        corpus = self.corpus
        # Groups the talkers are drawn from: persons, or speakers when persons may repeat.
        if self.distinct_persons:
            self._groups = {p: corpus.speakers_of_person[p] for p in corpus.persons}
        else:
            self._groups = {s: [s] for s in corpus.speakers}
        self._group_of_speaker = {s: g for g, members in self._groups.items() for s in members}
        self._group_names = sorted(self._groups)
        self._groups_of_part: dict[int, list[str]] = {}
        for group in self._group_names:
            part = corpus.part_of_speaker[self._groups[group][0]]
            self._groups_of_part.setdefault(part, []).append(group)

    def _check(self) -> None:
        if self.num_speakers < 1:
            raise CocktailError(f"num_speakers must be at least 1, got {self.num_speakers}")
        if self.mode not in ("min", "max"):
            raise CocktailError(f"mode must be 'min' or 'max', got '{self.mode}'")
        if self.segment is not None and self.segment <= 0:
            raise CocktailError(f"segment must be a positive number of seconds, got {self.segment}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise CocktailError(f"max_seconds must be positive, got {self.max_seconds}")
        if self.speed is not None and self.speed[0] <= 0:
            raise CocktailError(f"speed factors must be positive, got {self.speed}")
        if not 0.0 < self.max_peak <= 1.0:
            raise CocktailError(f"max_peak must be in (0, 1], got {self.max_peak}")
        if self.first_talker not in ("cycle", "random"):
            raise CocktailError(f"first_talker must be 'cycle' or 'random', got '{self.first_talker}'")
        if self.length < 1:
            raise CocktailError(f"length must be at least 1, got {self.length}")
        if not 0.0 <= self.reverb_probability <= 1.0:
            raise CocktailError(f"reverb_probability must be in [0, 1], got {self.reverb_probability}")
        if self.rooms is not None and self.rooms.sample_rate != self.sample_rate:
            raise CocktailError(f"{self.rooms.folder}: rooms are at {self.rooms.sample_rate} Hz but the mixer runs "
                                f"at {self.sample_rate} Hz; build a bank at that rate: cocktail corpus rooms "
                                f"--out DIR --sample-rate {self.sample_rate}")
        if self.rooms is not None and self.rooms.num_sources < self.num_speakers:
            raise CocktailError(f"{self.rooms.folder}: rooms hold {self.rooms.num_sources} sources but mixtures have "
                                f"{self.num_speakers} talkers; build a bank with --sources {self.num_speakers}")
        available = len(self.corpus.persons) if self.distinct_persons else len(self.corpus.speakers)
        if available < self.num_speakers:
            what = "distinct persons" if self.distinct_persons else "speakers"
            raise CocktailError(
                f"{self.corpus.name}: has {available} {what}, but {self.num_speakers}-talker mixtures "
                f"need at least {self.num_speakers}"
            )

    @property
    def speakers(self) -> list[str]:
        """The corpus's speakers in ``speaker_ids`` order."""
        return self.corpus.speakers

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's mixtures (call before iterating)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(index)
        plan, rendered = self._rendered(index, self.epoch)
        item = {
            "mixture": torch.from_numpy(rendered["mixture"]),
            "sources": torch.from_numpy(rendered["sources"]),
            "speaker_ids": torch.tensor([self.corpus.speaker_index[s.speaker] for s in plan.sources],
                                        dtype=torch.int64),
            "id": plan.id,
        }
        for key in ("noise", "music", "reverberant"):
            if key in rendered:
                item[key] = torch.from_numpy(rendered[key])
        return item

    def plan(self, index: int, epoch: Optional[int] = None) -> MixturePlan:
        """The recipe of item ``index`` in ``epoch`` (default: the current epoch)."""
        return self._plan(index, self.epoch if epoch is None else epoch)[0]

    def _rendered(self, index: int, epoch: int) -> tuple[MixturePlan, dict]:
        """Item ``index``'s plan and its :func:`render_plan` signals, rendered once."""
        plan, signals, rendered = self._plan(index, epoch)
        return plan, rendered if rendered is not None else render_plan(plan, signals)

    def _plan(self, index: int, epoch: int) -> tuple[MixturePlan, dict, Optional[dict]]:
        """The plan, its loaded signals, and its rendering when planning already made it
        (an item in a room is rendered to measure its peaks)."""
        rng = np.random.default_rng([self.seed, epoch, index])
        corpus, rate = self.corpus, self.sample_rate
        utterances = self._choose_utterances(index, rng)
        speeds = [float(rng.uniform(*self.speed)) if self.speed else 1.0 for _ in utterances]
        loaded = [load_speech(corpus[u].path, rate, f) for u, f in zip(utterances, speeds)]
        lengths = [x.shape[-1] for x in loaded]
        if self.segment is not None:
            total = int(round(self.segment * rate))
        else:
            total = min(lengths) if self.mode == "min" else max(lengths)
            if self.max_seconds is not None:
                total = min(total, int(round(self.max_seconds * rate)))
        sources = []
        for u, f, n in zip(utterances, speeds, lengths):
            if n >= total:
                start, place, take = int(rng.integers(0, n - total + 1)), 0, total
            else:
                place = int(rng.integers(0, total - n + 1)) if self.segment is not None else 0
                start, take = 0, n
            utt = corpus[u]
            sources.append(SourcePlan(utt.path, utt.id, utt.speaker, utt.person, f, start, place, take, 0.0))
        plan = MixturePlan(id="", length=total, sample_rate=rate, sources=sources,
                           music_as_source=self.music_as_source)
        raws = [_placed_source(s, plan, x) for s, x in zip(sources, loaded)]

        relative = [float(rng.uniform(*self.sir)) for _ in range(len(sources) - 1)]
        offsets = np.array([0.0] + [-r for r in relative])
        offsets -= offsets.mean()
        reference = float(rng.uniform(*self.level))
        for source, raw, offset in zip(sources, raws, offsets):
            current = active_level_db(raw, rate)
            if np.isfinite(current):
                source.gain_db = float(reference + offset - current)
            else:
                log.warning("%s: silent in mixture %s of epoch %d; left unscaled", source.path, index, epoch)
        plan.sir_db = relative
        speech = sum(raw.astype(np.float64) * 10.0 ** (s.gain_db / 20.0) for raw, s in zip(raws, sources))

        signals: dict = {"sources": raws}
        for key, folder, bounds in (("noise", self.noise, self.snr), ("music", self.music, self.smr)):
            if folder is None:
                continue
            path = folder[int(rng.integers(0, len(folder)))]
            samples = load_interference(path, rate)
            n = samples.shape[-1]
            start = int(rng.integers(0, n - total + 1)) if n >= total else int(rng.integers(0, n))
            raw = _looped(samples, start, total)
            ratio = float(rng.uniform(*bounds))
            gain = power_db(speech) - ratio - power_db(raw)
            if not np.isfinite(gain):
                log.warning("%s: silent (or the speech is); added unscaled", path)
                gain = 0.0
            setattr(plan, key, InterferencePlan(path, start, float(gain)))
            setattr(plan, "snr_db" if key == "noise" else "smr_db", ratio)
            signals[key] = raw

        # Drawn after everything else, so that without rooms every item is as it always was.
        if self.rooms is not None and rng.random() < self.reverb_probability:
            room = int(rng.integers(0, len(self.rooms)))
            plan.room = self.rooms.path(room)
            signals["rirs"] = self.rooms[room][0][:len(sources)]

        rendered = self._limit_peak(plan, signals)
        first, rest = sources[0], sources[1:]
        plan.id = f"e{epoch}_{index}_" + "_".join(s.utterance_id for s in [first] + rest)
        return plan, signals, rendered

    def _choose_utterances(self, index: int, rng: np.random.Generator) -> list[int]:
        corpus = self.corpus
        if self.part_weights is not None:
            return self._choose_weighted(rng)
        if self.first_talker == "cycle":
            first = index % len(corpus)
        else:
            first = int(rng.integers(0, len(corpus)))
        chosen = [first]
        taken = {self._group_of_speaker[corpus[first].speaker]}
        candidates = [g for g in self._group_names if g not in taken]
        picks = rng.choice(len(candidates), size=self.num_speakers - 1, replace=False)
        for pick in picks:
            members = self._groups[candidates[int(pick)]]
            speaker = members[int(rng.integers(0, len(members)))]
            pool = corpus.by_speaker[speaker]
            chosen.append(pool[int(rng.integers(0, len(pool)))])
        return chosen

    def _choose_weighted(self, rng: np.random.Generator) -> list[int]:
        """Each talker: a corpus by weight, then a new person, speaker and utterance uniformly."""
        chosen, taken = [], set()
        for _ in range(self.num_speakers):
            free = {part: [g for g in groups if g not in taken] for part, groups in self._groups_of_part.items()}
            parts = [part for part in sorted(free) if free[part] and self.part_weights[part] > 0]
            if not parts:
                raise CocktailError(f"{self.corpus.name}: too few persons with non-zero corpus weight for "
                                    f"{self.num_speakers}-talker mixtures")
            weights = self.part_weights[parts] / self.part_weights[parts].sum()
            candidates = free[parts[int(rng.choice(len(parts), p=weights))]]
            group = candidates[int(rng.integers(0, len(candidates)))]
            taken.add(group)
            members = self._groups[group]
            pool = self.corpus.by_speaker[members[int(rng.integers(0, len(members)))]]
            chosen.append(pool[int(rng.integers(0, len(pool)))])
        return chosen

    def _limit_peak(self, plan: MixturePlan, signals: dict) -> Optional[dict]:
        """Lower all gains of ``plan`` together so no output peaks over ``max_peak``; returns
        the rendering of an item in a room when it needed no change (it had to be rendered to
        know its peaks; rendering again would convolve every talker twice)."""
        rendered = None
        parts = [(raw, s) for raw, s in zip(signals["sources"], plan.sources)]
        parts += [(signals[k], getattr(plan, k)) for k in ("noise", "music") if k in signals]
        if plan.room is None:
            scaled = [raw.astype(np.float64) * 10.0 ** (p.gain_db / 20.0) for raw, p in parts]
            peak = max(float(np.abs(np.sum(scaled, axis=0)).max()), max(float(np.abs(x).max()) for x in scaled))
        else:
            # The room changes the peaks, so measure what the item will hold. Every output is
            # linear in the gains, so lowering them all by the same dB lowers every peak by it.
            rendered = render_plan(plan, signals)
            peak = max(float(np.abs(x).max()) for x in rendered.values())
        if peak > self.max_peak:
            change = 20.0 * np.log10(self.max_peak / peak)
            for _, part in parts:
                part.gain_db = float(part.gain_db + change)
            return None
        return rendered


# --------------------------------------------------------------------------------------
# Fixed sets: cocktail mix
# --------------------------------------------------------------------------------------


def write_mixture_set(
    corpus: Union[SpeakerCorpus, PathLike],
    out: PathLike,
    *,
    split: Optional[str] = "test",
    num_mixtures: int = 500,
    num_speakers: int = 2,
    sample_rate: Optional[int] = None,
    seconds: Optional[float] = 4.0,
    mode: str = "min",
    sir: Range = (0.0, 5.0),
    level: Range = (-25.0, -25.0),
    noise: Optional[PathLike] = None,
    snr: Range = (-6.0, 3.0),
    music: Optional[PathLike] = None,
    smr: Range = (-5.0, 5.0),
    music_as_source: bool = False,
    speed: Optional[Range] = None,
    max_peak: float = DEFAULT_MAX_PEAK,
    seed: int = 0,
    subtype: str = "FLOAT",
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Write a fixed, seeded set of mixtures in the wsj0-2mix layout; returns ``out``.

    Writes ``out/mix/<id>.wav``, ``out/s1/<id>.wav`` ... ``out/sC/<id>.wav`` (``s{C+1}`` is the
    music with ``music_as_source``), ``out/noise/`` and ``out/music/`` when there is
    interference, ``out/metadata.csv`` (per mixture: the source utterances, speakers, persons,
    speed, offsets, lengths, gains in dB, noise/music file, offset and gain) and
    ``out/mixing.json`` (these parameters). Each mixture is the ``"random"``-first-talker
    :class:`DynamicMixer` item ``i`` of epoch 0 with ``segment=None``, ``max_seconds=seconds``:
    see it for the meaning of the other arguments. The set depends only on the corpus and the
    arguments; :func:`regenerate_from_metadata` rebuilds it from the CSV alone.

    ``subtype="FLOAT"`` (32-bit float WAV) keeps ``mixture == sum(sources) (+ noise)`` exact
    in the files; ``"PCM_16"`` is what wsj0-2mix ships (each file rounded separately).
    """
    if isinstance(corpus, SpeakerCorpus):
        corpus_obj = corpus
    else:
        corpus_obj = SpeakerCorpus.open(corpus, split=split)
    if corpus_obj.root is None:
        raise CocktailError("the corpus has no root folder, so its files cannot be named in metadata.csv")
    if num_mixtures < 1:
        raise CocktailError(f"the number of mixtures must be at least 1, got {num_mixtures}")
    mixer = DynamicMixer(
        corpus_obj, split=split, num_speakers=num_speakers, sample_rate=sample_rate, segment=None,
        mode=mode, max_seconds=seconds, sir=sir, level=level, noise=noise, snr=snr, music=music, smr=smr,
        music_as_source=music_as_source, speed=speed, max_peak=max_peak, length=num_mixtures,
        first_talker="random", seed=seed,
    )
    out = Path(out)
    _prepare_output(out, force)
    parameters = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "corpus": str(corpus_obj.root.resolve()),
        "split": split,
        "num_mixtures": num_mixtures,
        "num_speakers": mixer.num_speakers,
        "sample_rate": mixer.sample_rate,
        "seconds": seconds,
        "mode": mode,
        "sir_db": list(mixer.sir),
        "level_db": list(mixer.level),
        "noise": str(mixer.noise.root.resolve()) if mixer.noise else None,
        "snr_db": list(mixer.snr) if mixer.noise else None,
        "music": str(mixer.music.root.resolve()) if mixer.music else None,
        "smr_db": list(mixer.smr) if mixer.music else None,
        "music_as_source": mixer.music_as_source,
        "speed": list(mixer.speed) if mixer.speed else None,
        "max_peak": mixer.max_peak,
        "seed": seed,
        "subtype": subtype,
        "relative_level": "s1 at L + r/2, s2 at L - r/2 (C=2) around a common active level L",
    }
    roots = _Roots(corpus_obj.root, mixer.noise.root if mixer.noise else None,
                   mixer.music.root if mixer.music else None)
    rows = []
    for index in _progress(range(num_mixtures), progress, "mixing"):
        plan, rendered = mixer._rendered(index, 0)
        plan.id = _mixture_id(index, plan)
        _write_mixture(out, plan, rendered, subtype)
        rows.append(_plan_to_row(plan, roots))
    _write_text(out / METADATA_FILE, _rows_to_csv(rows, mixer.num_speakers))
    _write_text(out / PARAMETERS_FILE, json.dumps(parameters, indent=2) + "\n")
    log.info("wrote %d mixtures of %d talkers to %s", num_mixtures, mixer.num_speakers, out)
    return out


def regenerate_from_metadata(
    source: PathLike,
    out: PathLike,
    *,
    corpus: Optional[PathLike] = None,
    noise: Optional[PathLike] = None,
    music: Optional[PathLike] = None,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Rebuild a ``cocktail mix`` set into ``out`` from ``source/metadata.csv`` and
    ``source/mixing.json`` alone (no random draws); returns ``out``.

    ``corpus``, ``noise`` and ``music`` override the folders recorded in ``mixing.json`` (when
    the data has moved). The audio samples come out bit-identical on the same software stack
    (PCM WAV files byte-identical; float WAV headers carry a write time-stamp).
    """
    source, out = Path(source), Path(out)
    parameters = _read_parameters(source)
    if out.resolve() == source.resolve():
        raise CocktailError(f"{out}: is the set being regenerated; write the copy to another folder")
    roots = _Roots(
        Path(corpus or parameters["corpus"]),
        Path(noise or parameters["noise"]) if (noise or parameters.get("noise")) else None,
        Path(music or parameters["music"]) if (music or parameters.get("music")) else None,
    )
    metadata = source / METADATA_FILE
    with open(metadata, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise DatasetLayoutError(f"{metadata}: lists no mixtures")
    _prepare_output(out, force)
    for line, row in enumerate(_progress(rows, progress, "regenerating"), start=2):
        plan = _row_to_plan(row, roots, parameters, metadata, line)
        _write_mixture(out, plan, render_plan(plan), parameters.get("subtype", "FLOAT"))
    shutil.copyfile(metadata, out / METADATA_FILE)
    if corpus or noise or music:
        parameters.update(corpus=str(roots.corpus.resolve()),
                          noise=str(roots.noise.resolve()) if roots.noise else None,
                          music=str(roots.music.resolve()) if roots.music else None)
    _write_text(out / PARAMETERS_FILE, json.dumps(parameters, indent=2) + "\n")
    return out


def cli_mix(args) -> int:
    """``cocktail mix``: parse the command line's ranges and write the set (or rebuild one)."""
    if getattr(args, "from_metadata", None):
        regenerate_from_metadata(args.from_metadata, args.out, corpus=args.corpus, noise=args.noise,
                                 music=getattr(args, "music", None), force=args.force,
                                 progress=progress_enabled(getattr(args, "quiet", False)))
        log.info("rebuilt the set of %s in %s", args.from_metadata, args.out)
        return 0
    speed = getattr(args, "speed", None)
    write_mixture_set(
        args.corpus,
        args.out,
        split=args.split,
        num_mixtures=args.num_mixtures,
        num_speakers=args.speakers,
        sample_rate=args.sample_rate,
        seconds=args.seconds if args.seconds and args.seconds > 0 else None,
        mode=args.mode,
        sir=parse_range(args.sir, "--sir"),
        noise=args.noise,
        snr=parse_range(args.snr, "--snr"),
        music=getattr(args, "music", None),
        smr=parse_range(getattr(args, "smr", None) or "-5,5", "--smr"),
        music_as_source=bool(getattr(args, "music_as_source", False)),
        speed=parse_range(speed, "--speed") if speed else None,
        seed=args.seed,
        force=args.force,
        progress=progress_enabled(getattr(args, "quiet", False)),
    )
    return 0


def parse_range(text: Union[str, Sequence[float]], option: str = "range", unit: str = "dB",
                example: str = "0,5") -> Range:
    """``"0,5"`` -> ``(0.0, 5.0)``; a single number ``"3"`` means ``(3.0, 3.0)``."""
    if not isinstance(text, str):
        return _range(text, option)
    parts = [p for p in re.split(r"[,:\s]+", text.strip()) if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 2
    if len(values) != 2:
        raise CocktailError(f"{option}: expected LO,HI in {unit} (e.g. {example}), got '{text}'")
    return _range(values, option)


# --------------------------------------------------------------------------------------
# Helpers of the fixed-set writer
# --------------------------------------------------------------------------------------


@dataclass
class _Roots:
    corpus: Path
    noise: Optional[Path]
    music: Optional[Path]


SOURCE_FIELDS = ("utterance_id", "speaker", "person", "path", "speed", "start", "place", "length", "gain_db")
INTERFERENCE_FIELDS = ("path", "start", "gain_db")


def _columns(num_speakers: int, music_as_source: bool = False) -> list[str]:
    columns = ["mixture_id", "length", "sample_rate", "sir_db", "snr_db", "smr_db"]
    for k in range(1, num_speakers + 1):
        columns += [f"s{k}_{name}" for name in SOURCE_FIELDS]
    for kind in ("noise", "music"):
        columns += [f"{kind}_{name}" for name in INTERFERENCE_FIELDS]
    return columns


def _plan_to_row(plan: MixturePlan, roots: _Roots) -> dict:
    # repr() of a float is the shortest text that reads back as the same double.
    row = {"mixture_id": plan.id, "length": plan.length, "sample_rate": plan.sample_rate,
           "sir_db": ";".join(repr(r) for r in plan.sir_db),
           "snr_db": repr(plan.snr_db) if plan.snr_db is not None else "",
           "smr_db": repr(plan.smr_db) if plan.smr_db is not None else ""}
    for k, s in enumerate(plan.sources, start=1):
        row.update({f"s{k}_utterance_id": s.utterance_id, f"s{k}_speaker": s.speaker, f"s{k}_person": s.person,
                    f"s{k}_path": _relative(s.path, roots.corpus), f"s{k}_speed": repr(s.speed),
                    f"s{k}_start": s.start, f"s{k}_place": s.place, f"s{k}_length": s.length,
                    f"s{k}_gain_db": repr(s.gain_db)})
    for kind in ("noise", "music"):
        part = getattr(plan, kind)
        root = getattr(roots, kind)
        row.update({f"{kind}_path": _relative(part.path, root) if part else "",
                    f"{kind}_start": part.start if part else "",
                    f"{kind}_gain_db": repr(part.gain_db) if part else ""})
    return row


def _row_to_plan(row: dict, roots: _Roots, parameters: dict, metadata: Path, line: int) -> MixturePlan:
    try:
        count = int(parameters["num_speakers"])
        sources = []
        for k in range(1, count + 1):
            sources.append(SourcePlan(
                path=_absolute(row[f"s{k}_path"], roots.corpus), utterance_id=row[f"s{k}_utterance_id"],
                speaker=row[f"s{k}_speaker"], person=row[f"s{k}_person"], speed=float(row[f"s{k}_speed"]),
                start=int(row[f"s{k}_start"]), place=int(row[f"s{k}_place"]), length=int(row[f"s{k}_length"]),
                gain_db=float(row[f"s{k}_gain_db"]),
            ))
        parts = {}
        for kind in ("noise", "music"):
            if row.get(f"{kind}_path"):
                root = getattr(roots, kind)
                if root is None:
                    raise CocktailError(f"{metadata}, line {line}: uses {kind}, but no {kind} folder is known")
                parts[kind] = InterferencePlan(_absolute(row[f"{kind}_path"], root), int(row[f"{kind}_start"]),
                                               float(row[f"{kind}_gain_db"]))
        return MixturePlan(
            id=row["mixture_id"], length=int(row["length"]), sample_rate=int(row["sample_rate"]), sources=sources,
            noise=parts.get("noise"), music=parts.get("music"),
            music_as_source=bool(parameters.get("music_as_source")),
            sir_db=[float(v) for v in row["sir_db"].split(";") if v],
            snr_db=float(row["snr_db"]) if row.get("snr_db") else None,
            smr_db=float(row["smr_db"]) if row.get("smr_db") else None,
        )
    except (KeyError, ValueError, TypeError) as err:
        raise DatasetLayoutError(
            f"{metadata}, line {line}: not a row written by 'cocktail mix' ({type(err).__name__}: {err}); "
            f"expected the columns {', '.join(_columns(int(parameters.get('num_speakers', 2)))[:8])}, ..."
        ) from None


def _rows_to_csv(rows: list[dict], num_speakers: int) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_columns(num_speakers), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _read_parameters(source: Path) -> dict:
    path = source / PARAMETERS_FILE
    if not path.is_file() or not (source / METADATA_FILE).is_file():
        raise DatasetLayoutError(
            f"{source}: expected {METADATA_FILE} and {PARAMETERS_FILE} as written by 'cocktail mix'"
        )
    try:
        parameters = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DatasetLayoutError(f"{path}: cannot be read ({err})") from None
    if parameters.get("format") != FORMAT_NAME:
        raise DatasetLayoutError(f"{path}: was not written by 'cocktail mix' (no \"format\": \"{FORMAT_NAME}\")")
    if int(parameters.get("version", 0)) > FORMAT_VERSION:
        raise DatasetLayoutError(f"{path}: format version {parameters['version']} is newer than this cocktailparty")
    return parameters


def _write_mixture(out: Path, plan: MixturePlan, rendered: dict, subtype: str) -> None:
    rate = plan.sample_rate
    audio.write(out / "mix" / f"{plan.id}.wav", rendered["mixture"], rate, subtype=subtype)
    for k, signal in enumerate(rendered["sources"], start=1):
        audio.write(out / f"s{k}" / f"{plan.id}.wav", signal, rate, subtype=subtype)
    for key in ("noise", "music"):
        if key in rendered:
            audio.write(out / key / f"{plan.id}.wav", rendered[key], rate, subtype=subtype)


def _prepare_output(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise CocktailError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise CocktailError(f"{out}: is not empty; choose another folder or pass --force to replace it")
        # Only what a previous run wrote is removed, so a mistyped --out loses nothing else.
        for child in out.iterdir():
            if child.is_dir() and re.fullmatch(r"mix|s\d+|noise|music", child.name):
                for f in child.glob("*.wav"):
                    f.unlink()
                if not any(child.iterdir()):
                    child.rmdir()
            elif child.name in (METADATA_FILE, PARAMETERS_FILE):
                child.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _write_text(path: Path, text: str) -> None:
    tmp = atomic.temporary_beside(path)
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        atomic.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _mixture_id(index: int, plan: MixturePlan) -> str:
    names = "_".join(re.sub(r"[^A-Za-z0-9.-]+", "-", s.utterance_id) for s in plan.sources)
    return f"{index:05d}_{names}"[:200]


def _relative(path: Path, root: Optional[Path]) -> str:
    if root is not None:
        try:
            return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            pass
    return str(Path(path).resolve())


def _absolute(text: str, root: Path) -> Path:
    path = Path(text)
    return path if path.is_absolute() else root / path


def _noise_folder(value, split: Optional[str], kind: str) -> Optional[NoiseFolder]:
    if value is None or isinstance(value, NoiseFolder):
        return value
    return NoiseFolder(value, split=split, kind=kind)


def _range(value, name: str) -> Range:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise CocktailError(f"{name}: expected two numbers (low, high), got {value!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi:
        raise CocktailError(f"{name}: expected low <= high, got {lo:g}, {hi:g}")
    return (lo, hi)


def _progress(items, enabled: bool, what: str):
    return Bar(items, enabled=enabled, desc=what, unit="mix", leave=False)


__all__ = [
    "active_level_db", "power_db", "SourcePlan", "InterferencePlan", "MixturePlan", "load_speech",
    "load_interference", "render_plan", "DynamicMixer", "write_mixture_set", "regenerate_from_metadata",
    "cli_mix", "parse_range",
]
