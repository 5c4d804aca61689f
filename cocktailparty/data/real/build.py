"""The real-speech corpus build: the source table, joining clips into utterances, splitting
speakers and writing the corpus (the layout and the rules: :mod:`cocktailparty.data.real`)."""

from __future__ import annotations

import csv
import logging
import os
import random
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ... import __version__
from ...core.audio import write
from ...core.errors import CocktailError
from ..corpus import CORPUS_FORMAT, _parse_split, _split_persons, _write_json, _write_manifest
from ..speech_audio import measure_bandwidths, normalise
from ..speaker_corpus import SpeakerCorpus
from .archives import find_0ad, find_nexuiz, find_queen, find_sky, find_warzone
from .packages import (DEFAULT_PACKAGE_CACHE, Clip, Source, fetch_packages, new_folder, package_version,
                       prepare_clip)
from .plain_files import (find_codec2, find_festvox_ru, find_gcin, find_hedgewars, find_klettres, find_megaglest,
                          find_tuxpaint)

log = logging.getLogger("cocktailparty")


PAUSE_SECONDS = (0.15, 0.4)


SOURCES: dict[str, Source] = {s.name: s for s in (
    Source("tuxpaint", "tuxpaint-stamps-default", "GPL-2", find_tuxpaint, split_group="v1"),
    Source("klettres", "klettres-data", "GPL-2+", find_klettres, split_group="v1"),
    Source("hedgewars", "hedgewars-data", "GFDL-1.3", find_hedgewars, split_group="v1",
           split_placeholders=("hedgewars-Classic",)),
    Source("festvox-ru", "festvox-ru", "BSD-like (festvox-ru copyright)", find_festvox_ru, split_group="v1"),
    Source("nexuiz", "nexuiz-data", "GPL-2+", find_nexuiz),
    Source("megaglest", "megaglest-data", "CC-BY-SA-3.0", find_megaglest, min_seconds=5.0),
    Source("gcin", "gcin-voice", "GPL-3 or LGPL-3 (*/3.ogg); CC-BY-3.0 (*/5.ogg)", find_gcin),
    Source("queen", "flight-of-the-amazon-queen", "Flight-of-the-Amazon-Queen-License (freeware, redistributable)",
           find_queen, native_rate=11025, opt_in=True),
    # Beneath a Steel Sky's speech (8-bit, 11025 Hz in sky.dsk), labelled by voice like queen's.
    Source("sky", "beneath-a-steel-sky", "Beneath-a-Steel-Sky-License (freeware, redistributable; modified versions marked)", find_sky, native_rate=11025, opt_in=True),
    # The two below are recorded at 11025 and 8000 Hz: they feed 8 kHz corpora only, and are
    # built by default there (their labels are fixed tables, measured once: no Resemblyzer
    # at build time); a 16 kHz build skips them before fetching. Their voices are short
    # (warzone's taunt sets 10-13 s, codec2's talkers 5-14 s bar one): lower floors.
    Source("warzone", "warzone2100-data", "GPL-2+", find_warzone, native_rate=11025, min_seconds=10.0),
    Source("codec2", "codec2-examples", "LGPL-2.1", find_codec2, native_rate=8000, min_seconds=4.0),
    # 0 A.D.'s unit voices: 7 speakers of 8.5-55 s each (short replies), a lower floor like
    # megaglest's. Asked for by name: a 1.4 GB download for 3 minutes of speech is not a
    # default's cost, and the default corpus keeps the 13 test speakers the model cards quote.
    # Its 3.2 GB zip is deleted from the cache once the voices are out (find_0ad).
    Source("0ad", "0ad-data", "CC-BY-SA-3.0", find_0ad, min_seconds=5.0, opt_in=True),
)}


def annotate_bandwidth(corpus_dir, jobs: int = 0, progress: bool = True) -> dict[str, float]:
    """Measure every utterance of a corpus folder and write its ``bandwidth_hz`` into
    ``manifest.csv`` (``data.min_bandwidth`` filters on it); returns the lowest per voice."""
    manifest = Path(corpus_dir) / "manifest.csv"
    if not manifest.is_file():
        raise CocktailError(f"{corpus_dir}: has no manifest.csv; point at a corpus folder")
    with open(manifest, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    paths = [str(manifest.parent / row["path"]) for row in rows]
    widths = measure_bandwidths(paths, jobs, progress)
    lowest: dict[str, float] = {}
    for row, width in zip(rows, widths):
        row["bandwidth_hz"] = round(width)
        voice = row.get("voice") or row["speaker"]
        lowest[voice] = min(lowest.get(voice, width), width)
    _write_manifest(manifest, rows)
    return lowest


def join_clips(clips: list[np.ndarray], sample_rate: int, seconds: float, rng: random.Random
               ) -> list[np.ndarray]:
    """Join ``(time,)`` clips in order into utterances of about ``seconds`` (the last may be
    shorter), with a pause drawn from :data:`PAUSE_SECONDS` between clips."""
    utterances, current, length = [], [], 0
    for clip in clips:
        if current:
            pause = np.zeros(int(rng.uniform(*PAUSE_SECONDS) * sample_rate), dtype=np.float32)
            current.append(pause)
            length += len(pause)
        current.append(clip)
        length += len(clip)
        if length >= seconds * sample_rate:
            utterances.append(np.concatenate(current))
            current, length = [], 0
    if current:
        utterances.append(np.concatenate(current))
    return utterances


DEFAULT_SOURCES = tuple(name for name, source in SOURCES.items() if not source.opt_in)


def build_real_corpus(out, sources: Sequence[str] = DEFAULT_SOURCES, sample_rate: int = 16000,
                      seed: int = 0, split="0.75,0.1,0.15", utterance_seconds: float = 5.0,
                      max_minutes: float = 8.0, min_seconds: float = 30.0, min_bandwidth: float = 0.8,
                      packages: Optional[Path] = None, jobs: int = 0, progress: bool = True,
                      splits_like: Optional[Path] = None) -> dict:
    """Build the real-speech corpus in ``out`` (see the module docstring); returns corpus.json.

    Args:
        sources: names from :data:`SOURCES`.
        sample_rate: output rate in Hz; sources recorded under it (``Source.native_rate``)
            are skipped.
        seed: the seed of the splits, clip order and pauses.
        split: train,valid,test fractions of speakers.
        utterance_seconds: target length of a joined utterance.
        max_minutes: speech kept per speaker at most.
        min_seconds: speakers with less usable speech are dropped.
        min_bandwidth: clips narrower than this fraction of the Nyquist frequency are dropped.
        packages: the folder of fetched, extracted packages (default: the user's cache).
        jobs: decoding processes (0: all cores).
        splits_like: another real corpus (its folder): every speaker it holds keeps that
            corpus's split here; the others are split among themselves, group by group.
            Which speakers pass the bandwidth check depends on the rate (a radio-filtered
            voice passes at 8 kHz, not at 16 kHz), and a group's split depends on its
            members, so an 8 kHz build made to continue a 16 kHz model's training uses the
            16 kHz corpus's splits: its test speakers stay unheard.
    """
    from tqdm import tqdm

    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise CocktailError(f"unknown source(s) {', '.join(unknown)}; choose from {', '.join(SOURCES)}")
    fractions = _parse_split(split)
    fixed = _speaker_splits(Path(splits_like)) if splits_like else {}
    out = new_folder(out)
    start = time.monotonic()
    chosen = []
    for name in sources:
        source = SOURCES[name]
        if source.native_rate is not None and source.native_rate < sample_rate:
            log.info("%s: recorded at %d Hz, cannot feed a %d Hz corpus: skipped", name, source.native_rate,
                     sample_rate)
            continue
        chosen.append(source)
    if not chosen:
        raise CocktailError(f"no chosen source can feed a {sample_rate} Hz corpus (recorded at lower rates)")
    roots = fetch_packages([s.package for s in chosen], Path(packages or DEFAULT_PACKAGE_CACHE))
    clips: dict[str, list[Clip]] = {}
    source_of: dict[str, Source] = {}
    for source in chosen:
        found = source.find(roots[source.package])
        if not found:
            raise CocktailError(f"{roots[source.package]}: holds no clips of source {source.name}; "
                                f"delete the folder to fetch {source.package} again")
        for clip in found:
            clips.setdefault(clip.speaker, []).append(clip)
            source_of[clip.speaker] = source

    rows, counts, dropped = [], {}, {}
    workers = jobs or os.cpu_count() or 1
    speakers = sorted(clips)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        kept: dict[str, list[np.ndarray]] = {}
        widths: dict[str, list[float]] = {}
        for speaker in tqdm(speakers, desc="decoding", unit="speaker", disable=not progress):
            order = list(clips[speaker])
            random.Random(f"{seed}:{speaker}").shuffle(order)
            jobs_ = [(str(c.path), sample_rate, min_bandwidth) for c in order]
            done = [r for r in pool.map(prepare_clip, jobs_, chunksize=8) if r is not None]
            budget, total, keep = max_minutes * 60 * sample_rate, 0, []
            for samples, width in done:
                if total >= budget:
                    break
                keep.append(samples)
                widths.setdefault(speaker, []).append(width)
                total += len(samples)
            dropped[speaker] = len(order) - len(done)
            floor = min(min_seconds, source_of[speaker].min_seconds or min_seconds)
            if total < floor * sample_rate:
                log.info("%s: %.0f s of usable speech, under %.0f s: left out", speaker, total / sample_rate,
                         floor)
                continue
            kept[speaker] = keep
    if len(kept) < 3:
        raise CocktailError(f"only {len(kept)} speaker(s) with enough usable speech; a corpus needs 3 or more")
    # Each split group on its own (Source.split_group), sources interleaved within a group:
    # adding a source never moves the speakers of another group.
    groups: dict[str, list[tuple[str, str]]] = {}
    drawn = [(speaker, source_of[speaker]) for speaker in kept]
    drawn += [(label, source) for source in chosen for label in source.split_placeholders if label not in kept]
    for speaker, source in drawn:
        if speaker not in fixed:
            groups.setdefault(source.split_group or source.name, []).append((speaker, source.name))
    assignment = {speaker: split_name for group in sorted(groups)
                  for speaker, split_name in _split_persons(groups[group], fractions, seed).items() if speaker in kept}
    assignment.update({speaker: fixed[speaker] for speaker in kept if speaker in fixed})
    for speaker in sorted(kept):
        split_name = assignment[speaker]
        source = source_of[speaker]
        folder = out / split_name / speaker
        utterances = join_clips(kept[speaker], sample_rate, utterance_seconds, random.Random(f"{seed}:{speaker}:pauses"))
        width = float(np.median(widths[speaker]))
        for index, samples in enumerate(utterances):
            utterance_id = f"{speaker}_{index:04d}"
            path = folder / f"{utterance_id}.flac"
            write(path, normalise(samples), sample_rate, subtype="PCM_16")
            rows.append({
                "utterance_id": utterance_id, "path": path.relative_to(out).as_posix(), "speaker": speaker,
                "person": speaker, "engine": "recording", "voice": source.package,
                "language": clips[speaker][0].language, "gender": "", "split": split_name, "text": "",
                "duration": round(len(samples) / sample_rate, 3), "sample_rate": sample_rate,
                "source": source.name, "licence": source.licence, "bandwidth_hz": round(width),
            })
        entry = counts.setdefault(split_name, {"speakers": 0, "utterances": 0, "hours": 0.0})
        entry["speakers"] += 1
        entry["utterances"] += len(utterances)
        entry["hours"] += sum(len(u) for u in utterances) / sample_rate / 3600
    _write_manifest(out / "manifest.csv", rows)
    meta = {
        "format": CORPUS_FORMAT, "kind": "real", "cocktailparty": __version__,
        "parameters": {"sources": [s.name for s in chosen], "sample_rate": sample_rate, "seed": seed, "split": list(fractions),
                       "utterance_seconds": utterance_seconds, "max_minutes": max_minutes,
                       "min_seconds": min_seconds, "min_bandwidth": min_bandwidth},
        "packages": {s.package: {"version": package_version(roots[s.package]), "licence": s.licence}
                     for s in chosen},
        "speakers": {s: {"split": assignment[s], "source": source_of[s].name,
                         "clips_dropped": dropped[s]} for s in sorted(kept)},
        "counts": counts,
        "build_seconds": round(time.monotonic() - start, 1),
    }
    _write_json(out / "corpus.json", meta)
    return meta


def _speaker_splits(corpus: Path) -> dict[str, str]:
    """Speaker -> split of a corpus folder's manifest.csv."""
    if not (corpus / "manifest.csv").is_file():
        raise CocktailError(f"--splits-like {corpus}: holds no manifest.csv (give a cocktail corpus real folder)")
    return {u.speaker: u.split for u in SpeakerCorpus.from_manifest(corpus, check_files=False).utterances}
