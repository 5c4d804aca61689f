"""Mixing talkers on the fly: :class:`DynamicMixer`, a torch Dataset that draws a new mixture
for every ``(epoch, index)`` from a :class:`~cocktailparty.data.speaker_corpus.SpeakerCorpus`.

Each mixture is planned as a :class:`~cocktailparty.data.mixture_plan.MixturePlan` (the recipe
that rebuilds it from the files) and rendered by
:func:`~cocktailparty.data.mixture_plan.render_plan`; the talkers' levels follow
:mod:`cocktailparty.data.levels`, the rule that enrollments and verification trials mix by
too. :mod:`cocktailparty.data.mixture_sets` (``cocktail mix``) writes fixed sets of these
mixtures to disk.

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
* **Channel effects** (``eq``, ``band_limit``, ``codec``; definitions in
  :mod:`cocktailparty.data.channel_effects`): each talker's recording may be equalised, and
  the talkers, noise and music band-limited alike, before any level is set (the filtered
  signal *is* the talker: targets carry it, and the levels above are measured on it); the
  finished mixture may go through a lossy codec and back, its targets staying clean. Each
  draws from a random stream of its own, so turning one on changes nothing else in an item.
* **Clipping**: when the peak of the mixture, any source, the noise or the music (and any
  reverberant image) exceeds ``max_peak`` (0.9, as in wsj0-2mix), every gain is lowered by
  the same dB, so ``mixture == sources[0] + sources[1] + ... + noise + music`` still holds
  exactly, in float32, summed in that order. With a room,
  ``mixture == reverberant[0] + reverberant[1] + ... + noise + music`` holds instead (the
  early images in ``sources`` do not add up to the mixture: the late reverberation is not in
  any target). A coded mixture sums nothing exactly (the codec's error is in it alone), and
  may peak a little over ``max_peak``.
* Talkers in one mixture are distinct speakers and, where the corpus says so (the manifest's
  ``person`` column), distinct underlying persons: one person's recordings behind several TTS
  voices never meet in one mixture.
"""

from __future__ import annotations

import logging
import re
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from ..core import audio
from ..core.errors import CocktailError
from .noise import NoiseFolder
from .speaker_corpus import SpeakerCorpus
from .levels import DEFAULT_MAX_PEAK, draw_levels, peak_limit, power_db, talker_gains_db
from .channel_effects import BandLimitSettings, CodecSettings, EqSettings
from .mixture_plan import InterferencePlan, MixturePlan, SourcePlan, load_interference, load_speech, \
    placed_interference, placed_source, render_plan
from .rooms import RoomBank

log = logging.getLogger("cocktailparty")

PathLike = audio.PathLike
Range = tuple[float, float]

# The channel effects' random streams: (seed, epoch, index, stream). WithEnrollment
# (train/data.py) uses 0xE7.
EQ_STREAM, BAND_STREAM, CODEC_STREAM = 0xEA, 0xBA, 0xC0


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
    ``mixture == sum(sources) + noise + music`` exactly for a dry, uncoded item. When a room was
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
        eq, band_limit, codec: the channel effects'
            :class:`~cocktailparty.data.channel_effects.EqSettings`,
            :class:`~cocktailparty.data.channel_effects.BandLimitSettings` and
            :class:`~cocktailparty.data.channel_effects.CodecSettings`, or mappings of their
            fields (missing ones take the defaults); ``None``: off.
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
        eq: Union[EqSettings, dict, None] = None,
        band_limit: Union[BandLimitSettings, dict, None] = None,
        codec: Union[CodecSettings, dict, None] = None,
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
        self.eq = EqSettings.from_config(eq, "eq")
        self.band_limit = BandLimitSettings.from_config(band_limit, "band_limit")
        self.codec = CodecSettings.from_config(codec, "codec")
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
        for name in ("eq", "band_limit", "codec"):
            if getattr(self, name) is not None:
                getattr(self, name).check_rate(self.sample_rate, name)
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
        plan, rendered = self.rendered(index, self.epoch)
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

    def rendered(self, index: int, epoch: int) -> tuple[MixturePlan, dict]:
        """Item ``index`` of ``epoch``: its plan and its :func:`render_plan` signals, rendered once."""
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
        self._draw_channel(plan, index, epoch)
        raws = [placed_source(s, plan, x) for s, x in zip(sources, loaded)]

        relative, reference = draw_levels(rng, len(sources), self.sir, self.level)
        for source, gain in zip(sources, talker_gains_db(raws, rate, relative, reference)):
            if gain is not None:
                source.gain_db = gain
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
            part = InterferencePlan(path, start, 0.0)
            raw = placed_interference(part, plan, samples)
            ratio = float(rng.uniform(*bounds))
            gain = power_db(speech) - ratio - power_db(raw)
            if not np.isfinite(gain):
                log.warning("%s: silent (or the speech is); added unscaled", path)
                gain = 0.0
            part.gain_db = float(gain)
            setattr(plan, key, part)
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

    def _draw_channel(self, plan: MixturePlan, index: int, epoch: int) -> None:
        """Draw the item's channel effects into ``plan``: each talker's EQ, the band limit and
        the codec (each switch that is on)."""
        # Each switch draws from its own stream of (seed, epoch, index), apart from the main
        # one: with the switches off every item is as it always was, and turning one on
        # changes neither the rest of the item nor another switch's draws.
        if self.eq is not None:
            rng = np.random.default_rng([self.seed, epoch, index, EQ_STREAM])
            for source in plan.sources:
                source.eq = self.eq.draw(rng, plan.sample_rate)
        if self.band_limit is not None:
            plan.band_limit_hz = self.band_limit.draw(np.random.default_rng([self.seed, epoch, index, BAND_STREAM]))
        if self.codec is not None:
            plan.codec = self.codec.draw(np.random.default_rng([self.seed, epoch, index, CODEC_STREAM]))

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
            scale = peak_limit([np.sum(scaled, axis=0), *scaled], self.max_peak)
        else:
            # The room changes the peaks, so measure what the item will hold. Every output is
            # linear in the gains, so lowering them all by the same dB lowers every peak by it.
            rendered = render_plan(plan, signals)
            scale = peak_limit(rendered.values(), self.max_peak)
        if scale < 1.0:  # the plan keeps gains in dB: lower each by the same amount
            change = 20.0 * np.log10(scale)
            for _, part in parts:
                part.gain_db = float(part.gain_db + change)
            return None
        return rendered


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

