"""Speaker-labelled corpora: clean utterances grouped by speaker, the raw material of
on-the-fly mixing (:mod:`cocktailparty.data.mixing`). :class:`SpeakerCorpus` reads our own
``cocktail corpus build``/``real`` output (``DIR/manifest.csv``, columns
:data:`MANIFEST_COLUMNS`) or a LibriSpeech-style tree ``ROOT/<speaker>/<chapter>/<utterance>.flac``."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from ..core import audio
from ..core.errors import DatasetLayoutError
from .layouts import canonical_split, check_exist, maybe_float, maybe_int, read_csv

log = logging.getLogger("cocktailparty")

PathLike = audio.PathLike


MANIFEST_COLUMNS = (
    "utterance_id", "path", "speaker", "person", "engine", "voice", "language",
    "gender", "split", "text", "duration", "sample_rate",
    "source", "licence", "bandwidth_hz",  # real-speech corpora (cocktail corpus real) fill these
)


# Columns a corpus manifest cannot do without; the others are descriptive.
REQUIRED_MANIFEST_COLUMNS = ("utterance_id", "path", "speaker", "split")


SPEECH_EXTENSIONS = (".flac", ".wav")


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
        rows = read_csv(manifest, REQUIRED_MANIFEST_COLUMNS, "a corpus manifest")
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
                duration=maybe_float(row.get("duration")),
                sample_rate=maybe_int(row.get("sample_rate")),
                gender=(row.get("gender") or "").strip() or None,
                bandwidth_hz=maybe_float(row.get("bandwidth_hz")),
            ))
        if not utterances:
            have = ", ".join(sorted(seen_splits)) or "none"
            raise DatasetLayoutError(f"{manifest}: no utterances in split '{split}' (splits present: {have})")
        if check_files:
            check_exist([u.path for u in utterances], manifest)
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
