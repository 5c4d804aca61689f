"""Real noise and music: ``cocktail corpus real-noise``, the non-speech sounds of two of the
speech packages (tuxpaint stamp effects; hedgewars effects and music) as a noise folder."""

from __future__ import annotations

import logging
import os
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ...core.audio import write
from ...core.errors import CocktailError
from ..corpus import _parse_split, _split_persons, _write_json
from ..speech_audio import normalise
from .packages import (DEFAULT_PACKAGE_CACHE, MIN_CLIP_SECONDS, fetch_packages, new_folder, package_version,
                       prepare_clip)

log = logging.getLogger("cocktailparty")


# Stamp sounds that are (or very likely are) a human voice rather than an effect, by path
# under usr/share/tuxpaint/stamps. Spoken words: symbols/alphabets (letter names, e.g.
# A_filled_en_GB.ogg) and symbols/math (digits, e.g. 7.ogg, 7_en_GB.ogg); the dreidel
# letters (gimmel, hay, nun, shin) read out; a roll call. Vocalisations: the faces (happy,
# sad, mad, excited), Santa's hat (ho ho ho), the ghost, the school crossing (children).
TUXPAINT_VOICE_PATHS = ("symbols/alphabets/", "symbols/math/", "symbols/faces/", "seasonal/hanukkah/dreydl-",
                        "seasonal/christmas/santahat.", "seasonal/halloween/ghost.", "military/final-roll-call.",
                        "town/roadsigns/xing_school.")


# Spoken words in a language: NAME_<lang>.ogg or NAME_<lang>_<CC>.ogg (7_en_GB.ogg, 4_pt.ogg,
# 5_zh_tw.ogg). Two-letter codes only: apple_red.ogg and xing_ped.ogg are effects.
LANGUAGE_WORD = re.compile(r".*_[a-z]{2}(?:_[A-Za-z]{2})?\.ogg")


# Top-level hedgewars sounds that are (or may be) voices: Data/Sounds/voices/ is the
# hedgehogs' speech (left out by taking the top level only); Yoohoo, hogchant3 and the
# hell_* grunts are vocal; countdown1-4 and custom1-8 may be spoken (countdown numbers,
# mission voice lines) and cannot be told from their names.
HEDGEWARS_VOICE_SOUNDS = re.compile(r"(?i)(yoohoo|hogchant\d*|hell_(ow|ugh|ooff)|countdown\d+|custom\d+)\.ogg")


@dataclass(frozen=True)
class NoiseClip:
    """One non-speech recording in a package: ``kind`` is ``effect`` or ``music``."""

    path: Path
    source: str
    package: str
    kind: str
    licence: str


def _tuxpaint_noise(root: Path) -> list[NoiseClip]:
    # The stamps' sound effects: every .ogg but the spoken descriptions (*_desc*.ogg, used
    # by the speech corpus), words in a language and TUXPAINT_VOICE_PATHS.
    base = root / "usr/share/tuxpaint/stamps"
    return [NoiseClip(p, "tuxpaint", "tuxpaint-stamps-default", "effect", "GPL-2")
            for p in sorted(base.rglob("*.ogg"))
            if "_desc" not in p.name and not LANGUAGE_WORD.fullmatch(p.name)
            and not p.relative_to(base).as_posix().startswith(TUXPAINT_VOICE_PATHS)]


def _hedgewars_noise(root: Path) -> list[NoiseClip]:
    # Licences from the package's debian/copyright: Data/Sounds/* GFDL-1.3, but Droplet*.ogg
    # CC-BY-SA-3.0 (freesound.org, saugox); Data/Music falls under "Files: *", GPL-2 (the
    # composers are named in Data/Music/credits.txt).
    base = root / "usr/share/games/hedgewars/Data"
    clips = [NoiseClip(p, "hedgewars", "hedgewars-data", "effect",
                       "CC-BY-SA-3.0" if p.name.startswith("Droplet") else "GFDL-1.3")
             for p in sorted((base / "Sounds").glob("*.ogg")) if not HEDGEWARS_VOICE_SOUNDS.fullmatch(p.name)]
    return clips + [NoiseClip(p, "hedgewars", "hedgewars-data", "music", "GPL-2")
                    for p in sorted((base / "Music").glob("*.ogg"))]


NOISE_SOURCES: dict[str, Callable[[Path], list[NoiseClip]]] = {
    "tuxpaint-stamps-default": _tuxpaint_noise, "hedgewars-data": _hedgewars_noise}
SILENT_SEGMENT_DB = -40.0  # segments this far under the file's level are dropped


def _noise_segments(job: tuple[str, int, float]) -> list[np.ndarray]:
    """Decode one recording (:func:`prepare_clip`, no bandwidth check) and cut it into
    equal segments of at most ``max_seconds``, each at the noise level; [] when silent."""
    from ..noise import RMS_DBFS

    path, sample_rate, max_seconds = job
    prepared = prepare_clip((path, sample_rate, 0.0))
    if prepared is None:
        return []
    samples = prepared[0]
    level = np.mean(samples.astype(np.float64) ** 2)
    parts = np.array_split(samples, int(np.ceil(len(samples) / (max_seconds * sample_rate))))
    return [normalise(p, RMS_DBFS) for p in parts if len(p) >= MIN_CLIP_SECONDS * sample_rate
            and np.mean(p.astype(np.float64) ** 2) > level * 10 ** (SILENT_SEGMENT_DB / 10)]


def _noise_name(clip: NoiseClip, taken: set[str]) -> str:
    """``<source>-<stem>``, with the parent folder added if the stem is already taken."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{clip.source}-{clip.path.stem}")
    if name in taken:
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{clip.source}-{clip.path.parent.name}-{clip.path.stem}")
    taken.add(name)
    return name


def build_real_noise(out, sample_rate: int = 16000, seed: int = 0, split="0.8,0.1,0.1", max_seconds: float = 10.0,
                     packages: Optional[Path] = None, jobs: int = 0, progress: bool = True) -> dict:
    """Real non-speech noise and music from the speech corpus's packages (:data:`NOISE_SOURCES`):
    ``out/<split>/<source>-<name>[-NN].flac`` (mono FLAC at ``sample_rate``, at most
    ``max_seconds`` each, -25 dBFS RMS) and ``out/noise.json``, the record of
    ``cocktail corpus noise`` with each file's package, kind and licence; returns it.
    Splits (fractions ``split``, seeded) are by original recording: the segments of one file
    stay together."""
    from tqdm import tqdm

    from ..noise import NOISE_FORMAT

    fractions = _parse_split(split)
    if max_seconds <= 0:
        raise CocktailError(f"max_seconds must be positive, got {max_seconds}")
    out = new_folder(out)
    roots = fetch_packages(list(NOISE_SOURCES), Path(packages or DEFAULT_PACKAGE_CACHE))
    clips = [c for package, find in NOISE_SOURCES.items() for c in find(roots[package])]
    if not clips:
        raise CocktailError(f"no noise recordings found in {', '.join(map(str, roots.values()))}")
    taken: set[str] = set()
    names = [_noise_name(c, taken) for c in clips]
    record = {"format": NOISE_FORMAT, "kind": "real", "sample_rate": sample_rate, "seconds": max_seconds,
              "seed": seed, "split": list(fractions),
              "packages": {p: package_version(r) for p, r in roots.items()}, "files": {}}
    segments: dict[str, list[np.ndarray]] = {}
    with ProcessPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        work = pool.map(_noise_segments, [(str(c.path), sample_rate, max_seconds) for c in clips])
        for name, parts in tqdm(zip(names, work), total=len(clips), desc="decoding", unit="file",
                                disable=not progress):
            if parts:
                segments[name] = parts
    by_name = dict(zip(names, clips))
    # Split each source and kind on its own, so that every split gets its share of the few
    # long music files as well as of the many short effects.
    groups: dict[str, list[str]] = {}
    for name in segments:
        groups.setdefault(f"{by_name[name].source}-{by_name[name].kind}", []).append(name)
    assignment = {n: s for group, members in sorted(groups.items())
                  for n, s in _split_persons([(m, group) for m in members], fractions, seed).items()}
    for name in sorted(segments):
        clip, parts = by_name[name], segments[name]
        for index, samples in enumerate(parts):
            path = f"{assignment[name]}/{name}{f'-{index:02d}' if len(parts) > 1 else ''}.flac"
            write(out / path, samples, sample_rate, subtype="PCM_16")
            record["files"][path] = {"kind": clip.kind, "package": clip.package, "licence": clip.licence,
                                     "original": clip.path.relative_to(roots[clip.package]).as_posix(),
                                     "seconds": round(len(samples) / sample_rate, 3)}
    log.info("%s: %d of %d recordings kept, %d files", out, len(segments), len(clips), len(record["files"]))
    _write_json(out / "noise.json", record)
    return record
