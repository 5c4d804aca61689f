"""Speech corpora and fixed mixture sets, read in the layouts their authors released them in.

Two kinds of data feed separation training and evaluation:

* a **speaker-labelled corpus** (:class:`SpeakerCorpus`): clean utterances grouped by speaker,
  the raw material for on-the-fly mixing (:mod:`cocktailparty.data.mixing`). It is read from
  our own ``cocktail corpus build`` output (``DIR/manifest.csv``) or from a LibriSpeech-style
  tree ``ROOT/<speaker>/<chapter>/<utterance>.flac``;
* **fixed mixture sets**, torch Datasets whose item is a dict::

      {"mixture": (time,) float32, "sources": (C, time) float32, "id": str}

  (plus ``"noise": (time,)`` when asked for and the set has it). Batched by a DataLoader this
  becomes ``mixture (batch, time)`` and ``sources (batch, C, time)``. Supported layouts:

  ============  ====================================================================
  wsj0-2mix/3mix ``wav8k/min/{tr,cv,tt}/{mix,s1,s2[,s3]}/<id>.wav`` (:class:`Wsj0Mix`)
  cocktail mix  ``OUT/{mix,s1,s2,...}/<id>.wav`` + ``metadata.csv`` (:class:`Wsj0Mix`)
  LRS2-2Mix     ``lrs2_rebuild/audio/wav16k/min/{tr,cv,tt}/{mix,s1,s2}/<id>.wav`` (:class:`Lrs2Mix`)
  WHAM!         ``wav8k/min/{tr,cv,tt}/{mix_clean,mix_both,mix_single,s1,s2,noise}/`` (:class:`WhamMix`)
  LibriMix      ``Libri2Mix/wav8k/min/metadata/mixture_<subset>_<mix_type>.csv`` (:class:`LibriMix`)
  WHAM! noise   ``wham_noise/{tr,cv,tt}/*.wav`` (:class:`NoiseFolder`, for the mixer)
  ============  ====================================================================

A folder that does not have the expected layout raises
:class:`~cocktailparty.core.errors.DatasetLayoutError` saying what was expected and what was found.
Random crops are a function of ``(seed, epoch, index)`` only, so a resumed run sees the
same data; call ``set_epoch`` at the start of each epoch.
"""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..core import audio
from ..core.errors import DatasetLayoutError

log = logging.getLogger("cocktailparty")

PathLike = audio.PathLike

# Names each corpus uses for the same three splits; the first is ours (manifest.csv).
SPLIT_ALIASES = {
    "train": ("train", "tr", "training"),
    "valid": ("valid", "cv", "dev", "val", "validation"),
    "test": ("test", "tt", "eval"),
}
MANIFEST_COLUMNS = (
    "utterance_id", "path", "speaker", "person", "engine", "voice", "language",
    "gender", "split", "text", "duration", "sample_rate",
    "source", "licence", "bandwidth_hz",  # real-speech corpora (cocktail corpus real) fill these
)
# Columns a corpus manifest cannot do without; the others are descriptive.
REQUIRED_MANIFEST_COLUMNS = ("utterance_id", "path", "speaker", "split")
SPEECH_EXTENSIONS = (".flac", ".wav")
LIBRIMIX_TASKS = {"sep_clean": "mix_clean", "sep_noisy": "mix_both", "enh_single": "mix_single"}
WSJ0_LAYOUT = "wsj0-2mix layout: {tr,cv,tt}/ each holding mix/, s1/, s2/ [, s3/] (also under wav8k/min/)"
LRS2_LAYOUT = ("LRS2-2Mix layout: {tr,cv,tt}/ each holding mix/, s1/, s2/ "
               "(also under lrs2_rebuild/audio/wav16k/min/)")
WHAM_LAYOUT = ("WHAM! layout: {tr,cv,tt}/ each holding mix_clean/, mix_both/, s1/, s2/, noise/ "
               "(also under wav8k/min/)")


def canonical_split(split: str) -> str:
    """``'tr'``, ``'training'`` -> ``'train'``; ``'cv'``, ``'dev'`` -> ``'valid'``; ``'tt'`` -> ``'test'``."""
    key = str(split).strip().lower()
    for name, aliases in SPLIT_ALIASES.items():
        if key in aliases:
            return name
    raise DatasetLayoutError(
        f"unknown split '{split}': use train (tr), valid (cv, dev) or test (tt)"
    )


# --------------------------------------------------------------------------------------
# Speaker-labelled corpora (the input of on-the-fly mixing)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Utterance:
    """One clean recording of one speaker.

    ``person`` is the underlying human: several TTS voices can be built from one recording
    of one person, and two of them in one mixture would be the same voice twice. For real
    corpora it equals ``speaker``.
    """

    id: str
    path: Path
    speaker: str
    person: str
    split: Optional[str] = None
    duration: Optional[float] = None
    sample_rate: Optional[int] = None
    gender: Optional[str] = None
    bandwidth_hz: Optional[float] = None  # highest frequency with speech in it (manifest column)


class SpeakerCorpus:
    """Utterances grouped by speaker: the input of :class:`~cocktailparty.data.mixing.DynamicMixer`.

    Build it with :meth:`open` (auto-detects the layout), :meth:`from_manifest` or
    :meth:`from_librispeech`. Speakers are kept in sorted order, so ``speaker_index`` is a
    stable integer label (for speaker losses such as Tune-InCE).
    """

    def __init__(self, utterances: Sequence[Utterance], root: Optional[PathLike] = None, name: str = "corpus"):
        if not utterances:
            raise DatasetLayoutError(f"{root or name}: holds no utterances")
        # Sorted so that every index below is independent of file-system listing order.
        self.utterances: list[Utterance] = sorted(utterances, key=lambda u: (u.speaker, u.id, str(u.path)))
        self.root = Path(root) if root is not None else None
        self.name = name
        self.speakers: list[str] = sorted({u.speaker for u in self.utterances})
        self.speaker_index = {s: i for i, s in enumerate(self.speakers)}
        self.by_speaker: dict[str, list[int]] = {s: [] for s in self.speakers}
        for i, u in enumerate(self.utterances):
            self.by_speaker[u.speaker].append(i)
        persons: dict[str, set[str]] = {}
        for u in self.utterances:
            persons.setdefault(u.person, set()).add(u.speaker)
        self.persons: list[str] = sorted(persons)
        self.speakers_of_person: dict[str, list[str]] = {p: sorted(s) for p, s in persons.items()}
        # Which of the corpora a union was made of each speaker comes from (all 0 otherwise).
        self.part_of_speaker: dict[str, int] = {s: 0 for s in self.speakers}

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, index: int) -> Utterance:
        return self.utterances[index]

    def __repr__(self) -> str:
        return (f"SpeakerCorpus({self.name!r}, {len(self.utterances)} utterances, "
                f"{len(self.speakers)} speakers, {len(self.persons)} persons)")

    @property
    def sample_rate(self) -> int:
        """The most common rate of the utterances (read from the first file if unknown)."""
        rates = Counter(u.sample_rate for u in self.utterances if u.sample_rate)
        if rates:
            return rates.most_common(1)[0][0]
        return int(audio.info(self.utterances[0].path).samplerate)

    def relative_path(self, path: PathLike) -> str:
        """``path`` relative to the corpus root (POSIX), or absolute when it lies outside."""
        path = Path(path)
        if self.root is not None:
            try:
                return path.resolve().relative_to(self.root.resolve()).as_posix()
            except ValueError:
                pass
        return str(path.resolve())

    @classmethod
    def open(cls, path: PathLike, split: Optional[str] = None) -> "SpeakerCorpus":
        """Open our corpus (a folder with ``manifest.csv``, or the CSV itself) or a
        LibriSpeech-style tree. ``split`` (train/valid/test) applies to manifests only: a
        LibriSpeech subset folder is already one split."""
        path = Path(path)
        if path.is_file() and path.suffix.lower() == ".csv":
            return cls.from_manifest(path, split=split)
        if (path / "manifest.csv").is_file():
            return cls.from_manifest(path, split=split)
        if not path.is_dir():
            raise DatasetLayoutError(
                f"{path}: no such folder; expected a corpus folder with manifest.csv "
                f"or a LibriSpeech-style speaker/chapter/utterance.flac tree"
            )
        return cls.from_librispeech(path)

    @classmethod
    def from_manifest(cls, path: PathLike, split: Optional[str] = None, check_files: bool = True) -> "SpeakerCorpus":
        """Read ``DIR/manifest.csv`` (columns ``utterance_id,path,speaker,person,...,split,
        duration,sample_rate``; ``path`` relative to ``DIR``), keeping one split if given."""
        path = Path(path)
        manifest = path if path.suffix.lower() == ".csv" else path / "manifest.csv"
        root = manifest.parent
        if not manifest.is_file():
            raise DatasetLayoutError(
                f"{root}: has no manifest.csv; expected DIR/manifest.csv with columns "
                f"{','.join(MANIFEST_COLUMNS)} (as written by 'cocktail corpus build')"
            )
        rows = _read_csv(manifest, REQUIRED_MANIFEST_COLUMNS, "a corpus manifest")
        wanted = canonical_split(split) if split is not None else None
        utterances = []
        seen_splits = set()
        for line, row in enumerate(rows, start=2):
            row_split = (row.get("split") or "").strip()
            try:
                row_canon = canonical_split(row_split)
            except DatasetLayoutError:
                raise DatasetLayoutError(
                    f"{manifest}, line {line}: split '{row_split}' is not train, valid or test"
                ) from None
            seen_splits.add(row_canon)
            if wanted is not None and row_canon != wanted:
                continue
            speaker = (row.get("speaker") or "").strip()
            rel = (row.get("path") or "").strip()
            if not speaker or not rel:
                raise DatasetLayoutError(f"{manifest}, line {line}: empty 'speaker' or 'path'")
            utterances.append(Utterance(
                id=(row.get("utterance_id") or Path(rel).stem).strip(),
                path=root / rel,
                speaker=speaker,
                person=(row.get("person") or "").strip() or speaker,
                split=row_canon,
                duration=_maybe_float(row.get("duration")),
                sample_rate=_maybe_int(row.get("sample_rate")),
                gender=(row.get("gender") or "").strip() or None,
                bandwidth_hz=_maybe_float(row.get("bandwidth_hz")),
            ))
        if not utterances:
            have = ", ".join(sorted(seen_splits)) or "none"
            raise DatasetLayoutError(f"{manifest}: no utterances in split '{split}' (splits present: {have})")
        if check_files:
            _check_exist([u.path for u in utterances], manifest)
        name = root.name + (f"/{wanted}" if wanted else "")
        return cls(utterances, root=root, name=name)

    @classmethod
    def union(cls, corpora: Sequence["SpeakerCorpus"]) -> "SpeakerCorpus":
        """One corpus holding the utterances of several (e.g. real and TTS speech); their
        speakers must not share names. :attr:`part_of_speaker` says which corpus each came from."""
        owner: dict[str, int] = {}
        for index, corpus in enumerate(corpora):
            for speaker in corpus.speakers:
                if owner.setdefault(speaker, index) != index:
                    raise DatasetLayoutError(f"speaker '{speaker}' is in both {corpora[owner[speaker]].name} "
                                             f"and {corpus.name}; corpora mixed together need distinct speaker names")
        united = cls([u for c in corpora for u in c.utterances], name="+".join(c.name for c in corpora))
        united.part_of_speaker = owner
        return united

    def keep(self, wanted, what: str) -> "SpeakerCorpus":
        """The utterances for which ``wanted(utterance)`` is true, as a new corpus (same root)."""
        kept = [u for u in self.utterances if wanted(u)]
        if not kept:
            raise DatasetLayoutError(f"{self.name}: no utterance is left once {what}")
        corpus = SpeakerCorpus(kept, root=self.root, name=self.name)
        corpus.part_of_speaker = {s: p for s, p in self.part_of_speaker.items() if s in corpus.by_speaker}
        return corpus

    @classmethod
    def from_librispeech(cls, root: PathLike) -> "SpeakerCorpus":
        """Read a LibriSpeech-style subset folder ``ROOT/<speaker>/<chapter>/<utt>.flac|.wav``
        (e.g. ``LibriSpeech/train-clean-100``). Each speaker is its own person."""
        root = Path(root)
        expected = (f"expected a LibriSpeech-style tree {root}/<speaker>/<chapter>/<utterance>.flac "
                    f"(or .wav), e.g. LibriSpeech/train-clean-100/19/198/19-198-0001.flac")
        if not root.is_dir():
            raise DatasetLayoutError(f"{root}: no such folder; {expected}")
        files = sorted(p for p in root.glob("*/*/*") if p.is_file() and p.suffix.lower() in SPEECH_EXTENSIONS)
        if not files:
            deeper = sorted({p.relative_to(root).parts[0] for p in root.glob("*/*/*/*")
                             if p.is_file() and p.suffix.lower() in SPEECH_EXTENSIONS})
            if deeper:
                raise DatasetLayoutError(
                    f"{root}: holds subset folders ({', '.join(deeper[:6])}); point at one of them. {expected}"
                )
            shallow = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SPEECH_EXTENSIONS]
            found = (f"found {len(shallow)} audio file(s) at other depths, e.g. {shallow[0].relative_to(root)}"
                     if shallow else "found no .flac or .wav files")
            raise DatasetLayoutError(f"{root}: {found}; {expected}")
        utterances = [
            Utterance(id=p.stem, path=p, speaker=p.parent.parent.name, person=p.parent.parent.name)
            for p in files
        ]
        return cls(utterances, root=root, name=root.name)


# --------------------------------------------------------------------------------------
# Fixed mixture sets
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MixtureEntry:
    """Where the files of one fixed mixture are."""

    id: str
    mixture: Path
    sources: tuple[Path, ...]
    noise: Optional[Path] = None


class MixtureDataset(Dataset):
    """Fixed mixtures read from files; the base of every layout-specific loader.

    Item ``i`` is ``{"mixture": (time,), "sources": (C, time), "id": str}`` as float32
    tensors (``"noise": (time,)`` added when ``return_noise`` and the set has noise files).

    Args:
        entries: the mixtures.
        sample_rate: resample to this rate; ``None`` keeps the rate of the set's files.
        segment: seconds; when set, every item is cut to exactly this length: a random
            window of a longer mixture (the same window in mixture, sources and noise), or
            the whole mixture zero-padded at the end. ``None`` gives whole mixtures.
        seed: random crops are a function of ``(seed, epoch, index)``.
        return_noise: also return the noise signal.
    """

    def __init__(
        self,
        entries: Sequence[MixtureEntry],
        *,
        sample_rate: Optional[int] = None,
        segment: Optional[float] = None,
        seed: int = 0,
        return_noise: bool = False,
        name: str = "mixtures",
    ):
        if not entries:
            raise DatasetLayoutError(f"{name}: holds no mixtures")
        self.entries = list(entries)
        self.name = name
        self._sample_rate = sample_rate
        self.segment = segment
        self.seed = int(seed)
        self.epoch = 0
        self.return_noise = return_noise
        if return_noise and any(e.noise is None for e in self.entries):
            raise DatasetLayoutError(f"{name}: return_noise was asked for, but this set has no noise files")

    @property
    def sample_rate(self) -> int:
        if self._sample_rate is None:
            self._sample_rate = int(audio.info(self.entries[0].mixture).samplerate)
        return self._sample_rate

    @property
    def num_sources(self) -> int:
        return len(self.entries[0].sources)

    @property
    def ids(self) -> list[str]:
        return [e.id for e in self.entries]

    def set_epoch(self, epoch: int) -> None:
        """Choose the random crops of this epoch (call before iterating)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict:
        entry = self.entries[index]
        rate = self.sample_rate
        mixture, _ = audio.read(entry.mixture, sample_rate=rate)
        paths = list(entry.sources)
        signals = [audio.read(p, sample_rate=rate)[0] for p in entry.sources]
        if self.return_noise:
            paths.append(entry.noise)
            signals.append(audio.read(entry.noise, sample_rate=rate, channel=0)[0])
        for path, signal in zip(paths, signals):
            if signal.shape[-1] != mixture.shape[-1]:
                raise DatasetLayoutError(
                    f"{path}: has {signal.shape[-1]} samples but its mixture {entry.mixture} has "
                    f"{mixture.shape[-1]}; the set is damaged or mixes 'min' and 'max' versions"
                )
        mixture, stacked = self._crop(index, mixture, np.stack(signals))
        num = len(entry.sources)
        item = {
            "mixture": torch.from_numpy(np.ascontiguousarray(mixture)),
            "sources": torch.from_numpy(np.ascontiguousarray(stacked[:num])),
            "id": entry.id,
        }
        if self.return_noise:
            item["noise"] = torch.from_numpy(np.ascontiguousarray(stacked[num]))
        return item

    def _crop(self, index: int, mixture: np.ndarray, stacked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.segment is None:
            return mixture, stacked
        length = int(round(self.segment * self.sample_rate))
        have = mixture.shape[-1]
        if have >= length:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            start = int(rng.integers(0, have - length + 1))
            return mixture[start:start + length], stacked[:, start:start + length]
        pad = length - have
        return np.pad(mixture, (0, pad)), np.pad(stacked, ((0, 0), (0, pad)))


class Wsj0Mix(MixtureDataset):
    """wsj0-2mix / wsj0-3mix, and the output of ``cocktail mix`` (the same layout).

    ``root`` may be the folder holding ``tr/ cv/ tt/`` (e.g. ``.../2speakers/wav8k/min``), a
    folder above it holding ``wav8k/min`` (pick with ``sample_rate``/``mode``), or one split
    folder holding ``mix/ s1/ s2/ ...`` directly (a ``cocktail mix`` output). Mixture and
    source files are paired by file name. ``num_sources`` defaults to the number of ``sK/``
    folders.
    """

    layout = WSJ0_LAYOUT
    mixture_dir = "mix"
    layout_prefixes: tuple[str, ...] = ("",)

    def __init__(
        self,
        root: PathLike,
        split: Optional[str] = None,
        *,
        num_sources: Optional[int] = None,
        sample_rate: Optional[int] = None,
        mode: str = "min",
        segment: Optional[float] = None,
        seed: int = 0,
        return_noise: bool = False,
    ):
        folder = find_split_folder(root, split, self.mixture_dir, self.layout,
                                   sample_rate=sample_rate, mode=mode, prefixes=self.layout_prefixes)
        entries = folder_entries(folder, self.mixture_dir, num_sources, with_noise=return_noise)
        self.folder = folder
        super().__init__(entries, sample_rate=sample_rate, segment=segment, seed=seed,
                         return_noise=return_noise, name=str(folder))


class Lrs2Mix(Wsj0Mix):
    """LRS2-2Mix (TDANet's set): 16 kHz, 2-second mixtures of two LRS2 talkers, -5..5 dB.

    The released archive unpacks to ``lrs2_rebuild/audio/wav16k/min/{tr,cv,tt}/{mix,s1,s2}/``
    with 20000/5000/3000 mixtures; a file is named ``<utt1>_<g1>_<utt2>_<g2>.wav`` where
    ``<uttK>`` is an LRS2 clip (``<video id>_<clip number>``) and ``gK`` its level in dB
    (``g2 = -g1``). Any of those folders can be given as ``root``.
    """

    layout = LRS2_LAYOUT
    layout_prefixes = ("", "audio", "lrs2_rebuild/audio")

    def __init__(self, root: PathLike, split: Optional[str] = None, **kwargs):
        kwargs.setdefault("num_sources", 2)
        super().__init__(root, split, **kwargs)


class WhamMix(Wsj0Mix):
    """WHAM!: wsj0-2mix with recorded café/restaurant/bar noise (SNR -6..3 dB).

    ``task="sep_noisy"`` reads ``mix_both/`` (speech + noise), ``"sep_clean"`` reads
    ``mix_clean/``; sources are ``s1/ s2/`` and ``noise/`` holds the noise
    (``return_noise=True``). ``root`` as for :class:`Wsj0Mix` (``.../wav8k/min`` or above).
    """

    layout = WHAM_LAYOUT

    def __init__(self, root: PathLike, split: Optional[str] = None, task: str = "sep_noisy", **kwargs):
        tasks = {"sep_noisy": "mix_both", "sep_clean": "mix_clean"}
        if task not in tasks:
            raise DatasetLayoutError(f"WHAM! task '{task}' is not one of {', '.join(tasks)}")
        self.mixture_dir = tasks[task]
        kwargs.setdefault("num_sources", 2)
        super().__init__(root, split, **kwargs)


class LibriMix(MixtureDataset):
    """LibriMix (Libri2Mix, Libri3Mix), read through its metadata CSVs.

    Layout (as generated by the LibriMix scripts)::

        Libri2Mix/wav{8k,16k}/{min,max}/metadata/mixture_<subset>_<mix_type>.csv
        Libri2Mix/wav{8k,16k}/{min,max}/<subset>/{mix_clean,mix_both,mix_single,s1,s2,noise}/<id>.wav

    with ``<subset>`` in train-360, train-100, dev, test and CSV columns ``mixture_ID,
    mixture_path, source_1_path, ..., source_C_path, [noise_path,] length`` (newer versions add
    ``original_mixture_ID``). The CSV paths are absolute paths of the machine that generated
    the set; when they do not exist, the same ``<subset>/<folder>/<file>`` is looked up under
    the folder holding ``metadata/``, so a moved dataset still loads.

    Args:
        root: a metadata CSV, the ``wav8k/min`` folder, or ``Libri2Mix`` itself.
        split: the subset (``train-360``, ``train-100``, ``dev``, ``test``; ``valid``/``cv``
            mean ``dev``, ``tt`` means ``test``). Ignored when ``root`` is a CSV.
        task: ``sep_clean`` (mix_clean), ``sep_noisy`` (mix_both) or ``enh_single``
            (mix_single: one speaker + noise, one source).
    """

    def __init__(
        self,
        root: PathLike,
        split: str = "test",
        task: str = "sep_clean",
        *,
        sample_rate: Optional[int] = None,
        mode: str = "min",
        segment: Optional[float] = None,
        seed: int = 0,
        return_noise: bool = False,
    ):
        if task not in LIBRIMIX_TASKS:
            raise DatasetLayoutError(f"LibriMix task '{task}' is not one of {', '.join(LIBRIMIX_TASKS)}")
        csv_path = find_librimix_csv(root, split, LIBRIMIX_TASKS[task], sample_rate=sample_rate, mode=mode)
        entries = librimix_entries(csv_path, with_noise=return_noise)
        self.metadata = csv_path
        super().__init__(entries, sample_rate=sample_rate, segment=segment, seed=seed,
                         return_noise=return_noise, name=str(csv_path))


class NoiseFolder:
    """Noise (or music) recordings for the mixer: a folder searched recursively.

    WHAM!'s noise release is ``wham_noise/{tr,cv,tt}/*.wav`` (16 kHz, two channels; the
    mixer uses the first channel, as the WHAM! and LibriMix scripts do) plus
    ``wham_noise/metadata/``. When ``root`` has split folders (``tr/cv/tt`` or
    ``train/valid/test``) and ``split`` is given, only that split is used; otherwise every
    audio file under ``root``. Files are sorted, so an index always names the same file.
    """

    def __init__(self, root: PathLike, split: Optional[str] = None, kind: str = "noise"):
        root = Path(root)
        expected = (f"expected a folder of {kind} recordings, e.g. the WHAM! noise layout "
                    f"wham_noise/{{tr,cv,tt}}/*.wav")
        if not root.is_dir():
            raise DatasetLayoutError(f"{root}: no such folder; {expected}")
        folder = root
        splits = _split_subfolders(root)
        if split is not None and splits:
            folder = _pick_split(root, splits, split, expected)
        files = sorted(p for p in folder.rglob("*")
                       if p.is_file() and p.suffix.lower() in audio.AUDIO_EXTENSIONS and not p.name.startswith("."))
        if not files:
            raise DatasetLayoutError(f"{folder}: holds no audio files; {expected}")
        self.root = root
        self.folder = folder
        self.files: list[Path] = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Path:
        return self.files[index]

    def relative_path(self, path: PathLike) -> str:
        try:
            return Path(path).resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(Path(path).resolve())


def open_mixture_dataset(path: PathLike, split: Optional[str] = None, **kwargs) -> MixtureDataset:
    """Open any supported fixed mixture set, guessing its layout (for ``cocktail evaluate``).

    A ``.csv`` or a folder with LibriMix ``metadata/`` -> :class:`LibriMix`; folders with
    ``mix_both/`` -> :class:`WhamMix`; anything else -> :class:`Wsj0Mix` (which reports what
    it expected when the layout does not fit).
    """
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".csv":
        return LibriMix(path, split or "test", **kwargs)
    if path.is_dir():
        # Shallow globs only: a real set has tens of thousands of files below these levels.
        if any(path.glob("metadata/mixture_*.csv")) or any(path.glob("wav*k/*/metadata/mixture_*.csv")):
            return LibriMix(path, split or "test", **kwargs)
        if any(path.glob("mix_both")) or any(path.glob("*/mix_both")) or any(path.glob("wav*k/*/*/mix_both")):
            return WhamMix(path, split, **kwargs)
    return Wsj0Mix(path, split, **kwargs)


# --------------------------------------------------------------------------------------
# Layout helpers
# --------------------------------------------------------------------------------------


def find_split_folder(
    root: PathLike,
    split: Optional[str],
    mixture_dir: str,
    layout: str,
    *,
    sample_rate: Optional[int] = None,
    mode: str = "min",
    prefixes: Iterable[str] = ("",),
) -> Path:
    """The folder holding ``<mixture_dir>/`` and ``s1/``, found from ``root`` and ``split``."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(f"{root}: no such folder; expected the {layout}")
    if _is_split_folder(root, mixture_dir):
        return root
    for base in _candidate_bases(root, sample_rate, mode, prefixes):
        splits = _split_subfolders(base)
        if not splits:
            continue
        names = ", ".join(p.name for p in splits.values())
        if split is None and len(splits) == 1:
            split = next(iter(splits))
        if split is None:
            raise DatasetLayoutError(f"{base}: holds the splits {names}; choose one (split=...)")
        folder = _pick_split(base, splits, split, f"expected the {layout}")
        if not _is_split_folder(folder, mixture_dir):
            raise DatasetLayoutError(
                f"{folder}: expected folders {mixture_dir}/, s1/, s2/ ...; found {_listing(folder)}"
            )
        return folder
    raise DatasetLayoutError(f"{root}: expected the {layout}; found {_listing(root)}")


def folder_entries(folder: Path, mixture_dir: str, num_sources: Optional[int], with_noise: bool = False) -> list[MixtureEntry]:
    """Pair ``folder/<mixture_dir>/<name>`` with ``folder/sK/<name>`` (and ``noise/<name>``)."""
    present = 0
    while (folder / f"s{present + 1}").is_dir():
        present += 1
    if num_sources is None:
        num_sources = present
    if present < num_sources:
        raise DatasetLayoutError(
            f"{folder}: expected {num_sources} source folders s1/ ... s{num_sources}/ next to "
            f"{mixture_dir}/; found {_listing(folder)}"
        )
    mix_files = sorted(p for p in (folder / mixture_dir).iterdir()
                       if p.is_file() and p.suffix.lower() in audio.AUDIO_EXTENSIONS and not p.name.startswith("."))
    if not mix_files:
        raise DatasetLayoutError(f"{folder / mixture_dir}: holds no audio files; expected one per mixture")
    source_dirs = [folder / f"s{k + 1}" for k in range(num_sources)]
    if with_noise:
        if not (folder / "noise").is_dir():
            raise DatasetLayoutError(f"{folder}: has no noise/ folder (asked for the noise signals)")
        source_dirs.append(folder / "noise")
    for d in source_dirs:
        names = {p.name for p in d.iterdir()}
        missing = [p.name for p in mix_files if p.name not in names]
        if missing:
            raise DatasetLayoutError(
                f"{d}: {len(missing)} of the {len(mix_files)} mixture(s) in {mixture_dir}/ have no file "
                f"of the same name here (e.g. {missing[0]}); every mixture needs one per source folder"
            )
    entries = []
    for p in mix_files:
        sources = tuple(folder / f"s{k + 1}" / p.name for k in range(num_sources))
        entries.append(MixtureEntry(p.stem, p, sources, folder / "noise" / p.name if with_noise else None))
    return entries


def find_librimix_csv(root: PathLike, split: str, mix_type: str, *, sample_rate: Optional[int] = None,
                      mode: str = "min") -> Path:
    """``.../metadata/mixture_<subset>_<mix_type>.csv`` for a LibriMix root or CSV."""
    root = Path(root)
    expected = ("expected the LibriMix layout Libri2Mix/wav8k/min/metadata/mixture_<subset>_<mix_type>.csv "
                "with <subset> in train-360, train-100, dev, test")
    if root.is_file():
        return root
    if not root.is_dir():
        raise DatasetLayoutError(f"{root}: no such file or folder; {expected}")
    metadata = None
    for base in [root] + _candidate_bases(root, sample_rate, mode, ("",)):
        if (base / "metadata").is_dir():
            metadata = base / "metadata"
            break
    if metadata is None:
        raise DatasetLayoutError(f"{root}: has no metadata/ folder; {expected}; found {_listing(root)}")
    subsets = [split]
    try:
        canon = canonical_split(split)
        subsets += {"valid": ["dev"], "test": ["test"], "train": ["train-360", "train-100"]}[canon]
    except DatasetLayoutError:
        pass
    for subset in subsets:
        candidate = metadata / f"mixture_{subset}_{mix_type}.csv"
        if candidate.is_file():
            return candidate
    found = sorted(p.name for p in metadata.glob("mixture_*.csv"))
    raise DatasetLayoutError(
        f"{metadata}: has no mixture_{split}_{mix_type}.csv "
        f"(found: {', '.join(found) if found else 'no mixture_*.csv files'}); {expected}"
    )


def librimix_entries(csv_path: Path, with_noise: bool = False) -> list[MixtureEntry]:
    """Mixtures listed in a LibriMix metadata CSV, with their paths re-rooted when moved."""
    rows = _read_csv(csv_path, ("mixture_ID", "mixture_path", "source_1_path", "length"), "a LibriMix metadata CSV")
    columns = rows[0].keys() if rows else []
    num_sources = 0
    while f"source_{num_sources + 1}_path" in columns:
        num_sources += 1
    if with_noise and "noise_path" not in columns:
        raise DatasetLayoutError(f"{csv_path}: has no noise_path column (a mix_clean CSV has no noise)")
    # The CSV sits in <base>/metadata/; audio lives in <base>/<subset>/<folder>/<file>.
    base = csv_path.parent.parent
    entries = []
    for line, row in enumerate(rows, start=2):
        mixture = _librimix_path(row["mixture_path"], base, csv_path, line)
        sources = tuple(_librimix_path(row[f"source_{k + 1}_path"], base, csv_path, line)
                        for k in range(num_sources))
        noise = _librimix_path(row["noise_path"], base, csv_path, line) if with_noise else None
        entries.append(MixtureEntry(row["mixture_ID"].strip(), mixture, sources, noise))
    return entries


def _librimix_path(value: str, base: Path, csv_path: Path, line: int) -> Path:
    value = (value or "").strip()
    if not value:
        raise DatasetLayoutError(f"{csv_path}, line {line}: an empty path")
    given = Path(value.replace("\\", "/"))
    if not given.is_absolute():
        given = base / given
    if given.is_file():
        return given
    tail = Path(*given.parts[-3:])
    moved = base / tail
    if moved.is_file():
        return moved
    raise DatasetLayoutError(
        f"{csv_path}, line {line}: {value} does not exist, nor does {moved} "
        f"(the same <subset>/<folder>/<file> under the folder holding metadata/)"
    )


def _candidate_bases(root: Path, sample_rate: Optional[int], mode: str, prefixes: Iterable[str]) -> list[Path]:
    """``root``, ``root/<prefix>``, and ``root/<prefix>/wav{8,16}k/<mode>`` where they exist."""
    bases = []
    for prefix in prefixes:
        base = root / prefix if prefix else root
        if not base.is_dir():
            continue
        bases.append(base)
        rate_dirs = sorted(p for p in base.glob("wav*k") if p.is_dir())
        if sample_rate is not None:
            rate_dirs = [p for p in rate_dirs if p.name == f"wav{sample_rate // 1000}k"] or rate_dirs
        if len(rate_dirs) > 1:
            raise DatasetLayoutError(
                f"{base}: holds {', '.join(p.name for p in rate_dirs)}; choose one with sample_rate= "
                f"(or point at e.g. {rate_dirs[0] / mode})"
            )
        for rate_dir in rate_dirs:
            if (rate_dir / mode).is_dir():
                bases.append(rate_dir / mode)
            else:
                raise DatasetLayoutError(
                    f"{rate_dir}: has no '{mode}' folder (found {_listing(rate_dir)}); expected min/ or max/"
                )
    return bases


def _pick_split(base: Path, splits: dict[str, Path], split: str, expected: str) -> Path:
    """The folder of ``split`` among ``base``'s split folders, or an error naming what exists."""
    canon = canonical_split(split)
    if canon not in splits:
        raise DatasetLayoutError(
            f"{base}: has no '{split}' split folder (looked for {', '.join(SPLIT_ALIASES[canon])}; "
            f"found {', '.join(p.name for p in splits.values())}); {expected}"
        )
    return splits[canon]


def _split_subfolders(base: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for canon, aliases in SPLIT_ALIASES.items():
        for alias in aliases:
            if (base / alias).is_dir():
                found[canon] = base / alias
                break
    return found


def _is_split_folder(folder: Path, mixture_dir: str) -> bool:
    return (folder / mixture_dir).is_dir() and (folder / "s1").is_dir()


def _listing(folder: Path, limit: int = 8) -> str:
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    except OSError:
        return "nothing readable"
    if not names:
        return "an empty folder"
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _read_csv(path: Path, required: Sequence[str], what: str) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip() for h in (reader.fieldnames or [])]
            reader.fieldnames = header
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DatasetLayoutError(f"{path}: cannot be read as {what} ({err})") from None
    missing = [c for c in required if c not in header]
    if missing:
        raise DatasetLayoutError(
            f"{path}: is not {what}: missing column(s) {', '.join(missing)} "
            f"(found: {', '.join(header) if header else 'no header'}; expected at least {', '.join(required)})"
        )
    if not rows:
        raise DatasetLayoutError(f"{path}: has a header but no rows")
    return rows


def _check_exist(paths: Sequence[Path], listed_in: Path) -> None:
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise DatasetLayoutError(
            f"{listed_in}: {len(missing)} of {len(paths)} listed file(s) do not exist, e.g. {missing[0]} "
            f"(paths are relative to the manifest's folder)"
        )


def _maybe_float(value) -> Optional[float]:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _maybe_int(value) -> Optional[int]:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


__all__ = [
    "SPLIT_ALIASES", "MANIFEST_COLUMNS", "canonical_split", "Utterance", "SpeakerCorpus",
    "MixtureEntry", "MixtureDataset", "Wsj0Mix", "Lrs2Mix", "WhamMix", "LibriMix", "NoiseFolder",
    "open_mixture_dataset", "find_split_folder", "folder_entries", "find_librimix_csv", "librimix_entries",
]
