"""Fixed, regenerable sets of mixtures (``cocktail mix``): :func:`write_mixture_set` writes
the dynamic mixer's items in the wsj0-2mix layout with a metadata CSV, from which
:func:`regenerate_from_metadata` rebuilds the same set without drawing anything."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from ..core import atomic, audio
from ..core.errors import CocktailError, DatasetLayoutError
from ..core.progress import Bar
from .speaker_corpus import SpeakerCorpus
from .levels import DEFAULT_MAX_PEAK
from .mixing import DynamicMixer, Range
from .mixture_plan import InterferencePlan, MixturePlan, SourcePlan, render_plan

log = logging.getLogger("cocktailparty")

PathLike = audio.PathLike


METADATA_FILE = "metadata.csv"


PARAMETERS_FILE = "mixing.json"


FORMAT_NAME = "cocktailparty-mixtures"


FORMAT_VERSION = 1


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
        plan, rendered = mixer.rendered(index, 0)
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
    atomic.write_text(path, text, newline="")  # the CSV ends its rows itself


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


def _progress(items, enabled: bool, what: str):
    return Bar(items, enabled=enabled, desc=what, unit="mix", leave=False)
