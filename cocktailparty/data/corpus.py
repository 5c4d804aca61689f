"""Build a speaker-labelled speech corpus from the TTS voices installed on this machine.

``cocktail corpus build --out DIR`` (or :func:`build_corpus`) writes::

    DIR/<split>/<speaker>/<utterance_id>.flac     mono PCM_16 FLAC at --sample-rate
    DIR/manifest.csv                              one row per utterance (MANIFEST_COLUMNS)
    DIR/corpus.json                               parameters, counts, speakers, engine versions

How speakers are made:

* Voices come from :mod:`cocktailparty.data.tts`. A *person* is the recorded human behind a
  voice (counted once across engines); splits are disjoint by person, so no recording of a
  test person's vocal tract is ever seen in training.
* Identities are handed out in rounds: every person gets one before any gets a second, and
  recorded persons come before espeak-ng's synthetic formant voices in each round. The first
  identity of a voice is the voice as it is; later ones are *derived*: a fixed pitch offset
  (alternating up and down, 2-5 semitones), a speaking-rate factor (0.9-1.12) and a formant
  shift. The formant shift is a vocal-tract-length change: the engine is asked for speech at
  ``pitch / alpha`` and ``rate / alpha``, then the samples are resampled as if they had been
  recorded at ``alpha`` times their rate, which scales every frequency (formants and pitch)
  by ``alpha`` and every duration by ``1 / alpha``; the engine's pitch and rate requests
  undo exactly that for pitch and duration, leaving the formants moved. This needs no
  vocoder (so adds no artefacts) and works for every engine with a pitch control. Engines
  without one (festival) get pitch and formants moved together by the same factor, like a
  smaller or larger speaker. Each utterance adds a small jitter (+-0.4 semitone, +-3 % rate)
  so one identity does not sound copy-pasted.
* Text is Debian's fortunes in the voice's language, cleaned to single-line sentences of
  40-120 characters (about 2-8 s of speech) without URLs, code or symbols. Voices whose
  language has no fortunes read another language with their own letter-to-sound rules:
  English through MBROLA's ``-en`` voices where one exists, otherwise the language whose
  probe sentences need the fewest diphones the recording lacks. Such speech is accented
  pseudo-words but has the person's real voice and the phonotactics the diphones were
  recorded for, which is what a separation model learns from; voices that cannot read any
  available text without gaps (MBROLA drops missing diphones as silence: Arabic, Hebrew,
  Japanese, Hindi ... given Latin script) are left out.
* Every utterance is trimmed (edges below -40 dB re the loudest 10 ms frame), normalised to
  RMS -25 dBFS (peaks limited to -0.3 dBFS: 16-bit FLAC clips at full scale), resampled with
  soxr and written atomically, so an interrupted build resumes where it stopped.

The text is :mod:`.sentences`, the synthesis of one utterance :mod:`.synthesis`, and the
per-utterance audio rules (trim, bandwidth, level), which the real-speech corpus shares,
:mod:`.speech_audio`; this module plans the speakers and runs the build.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import multiprocessing
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import soundfile

from .. import __version__
from ..core import atomic
from ..core.errors import CocktailError
from ..core.progress import Bar, Stages
from . import tts
from .sentences import FORTUNE_DIR, sentence_pools
from .speech_audio import TARGET_RMS_DBFS, measure_bandwidths
from .synthesis import batches, init_worker, synthesize_batch
from .speaker_corpus import MANIFEST_COLUMNS  # the reader owns the manifest's contract

log = logging.getLogger("cocktailparty")

SPLITS = ("train", "valid", "test")
CORPUS_FORMAT = "cocktailparty-speech-corpus"
INSTALL_HINT = "scripts/install-system-deps.sh"

# Languages tried (in this order) for voices whose own language has no text source.
FALLBACK_TEXT_LANGUAGES = ("en", "es", "it", "de", "pl", "pt", "cs", "eo")

MAX_RANKS_PER_VOICE = 4  # identities per base voice: the voice itself + 3 derived
PROBE_MAX_UNKNOWN = 2  # missing diphones allowed over the three probe sentences


@dataclass
class Speaker:
    """One speaker identity: a base voice with fixed variation parameters."""

    speaker: str
    person: str
    voice_key: str
    engine: str
    voice: str  # engine voice name actually used (e.g. mb-fr1-en when mb-fr1 reads English)
    language: str  # the voice's own language (its accent); the text may be in text_language
    text_language: str
    gender: str
    split: str
    rank: int  # 0: the voice as it is; 1..: derived identities
    pitch: float  # heard pitch factor
    rate: float  # speaking-rate factor (>1 faster)
    formant: float  # formant (vocal-tract) scale factor


# --- choosing voices, text languages and speakers ---------------------------------------------


def _probe(args: tuple[tts.Voice, str, tuple[str, ...]]) -> tuple[str, str | None, int]:
    """Try ``voice`` on three sentences of ``language``; (key, language or None, unknown count)."""
    voice, language, sentences = args
    try:
        _, _, warnings = tts.synthesize(voice, " ".join(sentences), language)
    except tts.SynthesisError:
        return voice.key, None, -1
    unknown = tts.count_unknown_diphones(warnings)
    return voice.key, (language if unknown <= PROBE_MAX_UNKNOWN else None), unknown


def choose_text_languages(voices: list[tts.Voice], pools: dict[str, tuple[str, ...]],
                          pool_map=map, progress: bool = False) -> tuple[dict[str, str], dict[str, str]]:
    """Decide which text language each voice reads (MBROLA voices are probed: a bar on stderr
    with ``progress``).

    Returns:
        ``(chosen, skipped)``: voice key -> text language, and voice key -> why it is left out.
    """
    chosen, skipped = {}, {}
    pending: dict[str, list[str]] = {}
    for voice in voices:
        own = voice.primary_language
        if not (voice.engine == "espeak-ng" and voice.name.startswith("mb-")):
            # Non-MBROLA engines read any text without gaps; MBROLA needs checking.
            chosen[voice.key] = own if own in pools else "en" if "en" in pools else ""
            if not chosen[voice.key]:
                del chosen[voice.key]
                skipped[voice.key] = "no text in its language or in English"
            continue
        order = ([own] if own in pools else []) + (["en"] if dict(voice.alternates).get("en") and "en" in pools else [])
        order += [lang for lang in FALLBACK_TEXT_LANGUAGES if lang in pools and lang not in order]
        pending[voice.key] = order
    by_key = {v.key: v for v in voices}
    # Probe round by round: most voices pass their first language, so few calls are made.
    with Bar(total=len(pending), enabled=progress, desc="probing voices", unit="voice", leave=False) as bar:
        while pending:
            jobs = [(by_key[k], order[0], pools[order[0]][:3]) for k, order in sorted(pending.items())]
            for key, language, unknown in pool_map(_probe, jobs):
                if language is not None:
                    chosen[key] = language
                    del pending[key]
                    bar.update(1)
                    continue
                pending[key].pop(0)
                if not pending[key]:
                    del pending[key]
                    skipped[key] = ("MBROLA lacks diphones for every available text language"
                                    if unknown >= 0 else "the engine failed on this voice")
                    bar.update(1)
    return chosen, skipped


def _select_voices(voices: list[tts.Voice], patterns: list[str] | None) -> list[tts.Voice]:
    if not patterns:
        return voices
    import fnmatch

    def names(v: tts.Voice) -> tuple[str, ...]:
        # "en-us" alone means espeak-ng's en-us in every variant.
        return (v.key, v.name, v.engine, v.name.split("+")[0])

    selected = [v for v in voices if any(fnmatch.fnmatchcase(n, p) for p in patterns for n in names(v))]
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(n, p) for v in voices for n in names(v))]
    if unmatched:
        raise CocktailError(
            f"--voices: no installed voice matches {', '.join(unmatched)}; installed voices look like "
            f"mb-us1, en-us+m3, flite:slt, festival:rab_diphone, pico:en-US, rhvoice:bdl "
            f"(run {INSTALL_HINT} as root to install the engines)"
        )
    return selected


def _variation(seed: int, voice: tts.Voice, rank: int) -> tuple[float, float, float]:
    """(pitch, rate, formant) factors of identity ``rank`` of ``voice``; rank 0 is the voice itself."""
    if rank == 0:
        return 1.0, 1.0, 1.0
    rng = random.Random(f"cocktail-variation:{seed}:{voice.key}")
    first_sign = rng.choice((-1, 1))
    rng = random.Random(f"cocktail-variation:{seed}:{voice.key}:{rank}")
    sign = first_sign if rank % 2 else -first_sign
    semitones = sign * (2.0 + 1.5 * ((rank - 1) // 2) + rng.uniform(0.0, 1.5))
    rate = rng.uniform(0.9, 1.12)
    if voice.pitch_control:
        # Formants follow pitch loosely (larger people are lower in both), within +-2.2 st
        # (about +-13 %, the spread of adult vocal-tract lengths).
        formant_st = max(-2.2, min(2.2, 0.35 * semitones + rng.uniform(-0.6, 0.6)))
    else:
        formant_st = semitones = max(-3.0, min(3.0, semitones))
    return 2 ** (semitones / 12), rate, 2 ** (formant_st / 12)


def _split_persons(persons: list[tuple[str, str]], fractions: tuple[float, ...], seed: int) -> dict[str, str]:
    """Assign persons (name, gender) to splits, genders interleaved so each split gets a mix."""
    rng = random.Random(f"cocktail-split:{seed}")
    groups: dict[str, list[str]] = {}
    for name, gender in sorted(persons):
        groups.setdefault(gender, []).append(name)
    for names in groups.values():
        rng.shuffle(names)
    ordered = []
    while any(groups.values()):
        for gender in sorted(groups):
            if groups[gender]:
                ordered.append(groups[gender].pop())
    n = len(ordered)
    active = [i for i, f in enumerate(fractions) if f > 0]
    counts = [0] * len(SPLITS)
    if n >= len(active):
        for i in active:
            counts[i] = 1
    remaining = n - sum(counts)
    total = sum(fractions)
    shares = [remaining * f / total for f in fractions]
    for i in range(len(SPLITS)):
        counts[i] += int(shares[i])
    for i in sorted(range(len(SPLITS)), key=lambda i: -(shares[i] - int(shares[i])))[: n - sum(counts)]:
        counts[i] += 1
    # Interleaved order then split by counts: test and valid take from the front so that the
    # small splits get both genders first.
    assignment, position = {}, 0
    for i in (2, 1, 0):
        for name in ordered[position:position + counts[i]]:
            assignment[name] = SPLITS[i]
        position += counts[i]
    return assignment


def plan_speakers(voices: list[tts.Voice], text_languages: dict[str, str], n_speakers: int,
                  seed: int, fractions: tuple[float, ...]) -> list[Speaker]:
    """Choose ``n_speakers`` identities, round-robin over persons, and give each a split."""
    by_person: dict[str, list[tts.Voice]] = {}
    for voice in voices:
        if voice.key in text_languages:
            by_person.setdefault(voice.person, []).append(voice)
    capacity = sum(len(v) * MAX_RANKS_PER_VOICE for v in by_person.values())
    if capacity < n_speakers:
        raise CocktailError(
            f"--speakers {n_speakers}: the installed voices give only {capacity} speaker identities "
            f"({len(by_person)} persons, {sum(map(len, by_person.values()))} usable voices, at most "
            f"{MAX_RANKS_PER_VOICE} identities each); install more voices with {INSTALL_HINT} (as root), "
            f"widen --voices, or ask for fewer speakers"
        )
    rng = random.Random(f"cocktail-persons:{seed}")
    recorded = sorted(p for p, vs in by_person.items() if vs[0].recorded)
    synthetic = sorted(p for p, vs in by_person.items() if not vs[0].recorded)
    rng.shuffle(recorded)
    rng.shuffle(synthetic)
    for person in by_person:
        by_person[person].sort(key=lambda v: v.key)
        random.Random(f"cocktail-voices:{seed}:{person}").shuffle(by_person[person])
    chosen: list[tuple[tts.Voice, int]] = []
    round_ = 0
    while len(chosen) < n_speakers:
        for person in recorded + synthetic:
            voices_of = by_person[person]
            if round_ < len(voices_of) * MAX_RANKS_PER_VOICE and len(chosen) < n_speakers:
                chosen.append((voices_of[round_ % len(voices_of)], round_ // len(voices_of)))
        round_ += 1
    persons = {v.person: v.gender for v, _ in chosen}
    splits = _split_persons(sorted(persons.items()), fractions, seed)
    speakers = []
    for index, (voice, rank) in enumerate(chosen):
        pitch, rate, formant = _variation(seed, voice, rank)
        language = text_languages[voice.key]
        speakers.append(Speaker(
            speaker=f"spk{index:03d}", person=voice.person, voice_key=voice.key, engine=voice.engine,
            voice=voice.engine_name_for(language), language=voice.language, text_language=language,
            gender=voice.gender, split=splits[voice.person], rank=rank,
            pitch=round(pitch, 4), rate=round(rate, 4), formant=round(formant, 4)))
    return speakers


def plan_utterances(speakers: list[Speaker], n_utterances: int, seed: int,
                    pools: dict[str, tuple[str, ...]]) -> list[dict]:
    """One task per utterance: text and per-utterance pitch/rate (jitter included)."""
    tasks = []
    for spk in speakers:
        pool = pools[spk.text_language]
        rng = random.Random(f"cocktail-text:{seed}:{spk.speaker}:{spk.voice_key}")
        indices = rng.sample(range(len(pool)), n_utterances) if len(pool) >= n_utterances else [
            rng.randrange(len(pool)) for _ in range(n_utterances)]
        for j, index in enumerate(indices):
            jitter_st = rng.uniform(-0.4, 0.4)
            rate = spk.rate * rng.uniform(0.97, 1.03)
            utt = f"{spk.speaker}-{j:03d}"
            tasks.append({
                "utterance_id": utt,
                "path": f"{spk.split}/{spk.speaker}/{utt}.flac",
                "speaker": spk.speaker,
                "text": pool[index],
                "pitch": spk.pitch * 2 ** (jitter_st / 12),
                "rate": rate,
                "formant": spk.formant,
                "voice_key": spk.voice_key,
                "text_language": spk.text_language,
            })
    return tasks


# --- synthesis of one utterance ----------------------------------------------------------------


# --- the build -------------------------------------------------------------------------------


def _parse_split(split) -> tuple[float, float, float]:
    if isinstance(split, str):
        try:
            parts = tuple(float(x) for x in split.split(","))
        except ValueError:
            parts = ()
    else:
        parts = tuple(float(x) for x in split)
    if len(parts) != 3 or any(p < 0 or not math.isfinite(p) for p in parts) or sum(parts) <= 0 or parts[0] <= 0:
        raise CocktailError(f"--split {split}: give three non-negative fractions TRAIN,VALID,TEST "
                            f"with TRAIN > 0, e.g. 0.8,0.1,0.1")
    return parts


def _prepare_out(out: Path, parameters: dict, force: bool) -> None:
    """Make ``out`` ready: empty, a matching unfinished corpus (resume), or cleared (--force)."""
    meta_file = out / "corpus.json"
    if out.exists() and not out.is_dir():
        raise CocktailError(f"{out}: exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()):
        if not meta_file.is_file():
            raise CocktailError(f"{out}: is not empty and holds no corpus (no corpus.json); "
                                f"choose an empty or new folder for --out")
        try:
            meta = json.loads(meta_file.read_text("utf-8"))
        except (OSError, ValueError):
            meta = {}
        if meta.get("format") != CORPUS_FORMAT:
            raise CocktailError(f"{meta_file}: is not a cocktailparty corpus description; choose another --out")
        if force:
            for name in (*SPLITS, "manifest.csv", "corpus.json"):
                target = out / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        elif meta.get("parameters") != parameters:
            raise CocktailError(
                f"{out}: holds a corpus built with other settings or other installed voices "
                f"({_describe_difference(meta.get('parameters') or {}, parameters)}); "
                f"add --force to rebuild it, or choose another --out"
            )
    out.mkdir(parents=True, exist_ok=True)
    # Writes are atomic through hidden .part files; ones left by a killed build are junk.
    for split in SPLITS:
        if (out / split).is_dir():
            for stale in (out / split).rglob(".*.part"):
                stale.unlink(missing_ok=True)


def _describe_difference(old: dict, new: dict) -> str:
    keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return "differs in " + ", ".join(keys) if keys else "unknown difference"


def _is_finished(path: Path, sample_rate: int) -> float | None:
    """Duration in seconds of an already written utterance, or None if it must be (re)made."""
    try:
        info = soundfile.info(str(path))
    except (OSError, RuntimeError, soundfile.LibsndfileError):
        return None
    if info.samplerate != sample_rate or info.frames == 0:
        return None
    return info.frames / info.samplerate


def build_corpus(out, speakers: int = 120, utterances: int = 50, sample_rate: int = 16000, seed: int = 0,
                 voices: list[str] | None = None, split="0.8,0.1,0.1", jobs: int = 0,
                 force: bool = False, progress: bool = True) -> dict:
    """Synthesize a speaker-labelled corpus into ``out`` (see the module docstring).

    Args:
        out: output folder (new, empty, or an unfinished corpus with the same settings).
        speakers: number of speaker identities.
        utterances: utterances per speaker.
        sample_rate: output rate in Hz.
        seed: makes voices, texts and variation reproducible.
        voices: glob patterns over voice keys/names/engines (``mb-us*``, ``en-us+m3``,
            ``flite:slt``, ``rhvoice``); ``None`` for every installed voice.
        split: train,valid,test fractions of persons (string or 3 numbers).
        jobs: worker processes (0: all cores).
        force: rebuild a corpus already in ``out``.
        progress: show a progress bar on stderr.

    Returns:
        The contents of ``corpus.json`` as a dict.
    """
    out = Path(out)
    fractions = _parse_split(split)
    if speakers < 1 or utterances < 1:
        raise CocktailError("--speakers and --utterances must be at least 1")
    if not 4000 <= sample_rate <= 192000:
        raise CocktailError(f"--sample-rate {sample_rate}: use a rate between 4000 and 192000 Hz, e.g. 16000")
    jobs = jobs if jobs and jobs > 0 else (os.cpu_count() or 1)
    started = time.time()
    if out.is_dir() and any(out.iterdir()) and not (out / "corpus.json").is_file():
        # Said before the slow voice probing; _prepare_out checks the rest once the plan exists.
        raise CocktailError(f"{out}: is not empty and holds no corpus (no corpus.json); "
                            f"choose an empty or new folder for --out")

    with Stages("corpus build", 1, progress) as stages:  # closed (its thread ended) before the pool forks
        stages.start("finding voices and texts")
        inventory = tts.discover()
        if not inventory:
            raise CocktailError(f"no text-to-speech engine is installed (espeak-ng, flite, festival, pico, "
                                f"RHVoice); run {INSTALL_HINT} as root")
        selected = _select_voices(inventory, voices)
        pools = sentence_pools()
        if not pools:
            raise CocktailError(f"no sentence source found under {FORTUNE_DIR}; install the fortunes packages "
                                f"with {INSTALL_HINT} (as root)")

    ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with ctx.Pool(jobs, initializer=init_worker, initargs=({v.key: v for v in selected},)) as pool:
        text_languages, skipped = choose_text_languages(
            selected, pools, pool_map=lambda f, it: pool.imap(f, it, chunksize=1), progress=progress)
        plan = plan_speakers(selected, text_languages, speakers, seed, fractions)
        tasks = plan_utterances(plan, utterances, seed, pools)
        fingerprint = hashlib.sha256(json.dumps(
            [asdict(s) for s in plan] + [[t["utterance_id"], t["text"]] for t in tasks],
            sort_keys=True).encode()).hexdigest()[:16]
        parameters = {"speakers": speakers, "utterances": utterances, "sample_rate": sample_rate, "seed": seed,
                      "voices": list(voices) if voices else None, "split": list(fractions),
                      "plan": fingerprint}
        _prepare_out(out, parameters, force)
        meta = {"format": CORPUS_FORMAT, "version": 1, "status": "building", "parameters": parameters}
        _write_json(out / "corpus.json", meta)

        durations: dict[str, float] = {}
        todo = []
        for task in tasks:
            task.update(out=str(out), sample_rate=sample_rate)
            done = _is_finished(out / task["path"], sample_rate)
            if done is None:
                todo.append(task)
            else:
                durations[task["utterance_id"]] = done
        if durations:
            log.info("%s: resuming; %d of %d utterances already done", out, len(durations), len(tasks))
        failures = []
        with Bar(total=len(todo), enabled=progress, desc="synthesizing", unit="utt") as bar:
            for results in pool.imap_unordered(synthesize_batch, batches(todo, selected), chunksize=1):
                bar.update(len(results))
                for task, error in results:
                    if error:
                        failures.append((task, error))
                        bar.write(f"cocktail: error: {task['utterance_id']} ({task['voice_key']}): {error}",
                                  file=sys.stderr)
                    else:
                        durations[task["utterance_id"]] = _is_finished(out / task["path"], sample_rate) or 0.0

    if failures:
        task, error = failures[0]
        raise CocktailError(
            f"{len(failures)} of {len(tasks)} utterances could not be synthesized (first: "
            f"{task['utterance_id']}, {task['voice_key']}: {error}); the finished ones are kept in {out}: "
            f"fix the problem and run the same command again to resume"
        )

    by_speaker = {s.speaker: s for s in plan}
    widths = measure_bandwidths([str(out / t["path"]) for t in tasks], jobs, progress)
    rows = []
    for task, width in zip(tasks, widths):
        spk = by_speaker[task["speaker"]]
        rows.append({
            "utterance_id": task["utterance_id"], "path": task["path"], "speaker": spk.speaker,
            "person": spk.person, "engine": spk.engine, "voice": spk.voice, "language": spk.language,
            "gender": spk.gender, "split": spk.split, "text": task["text"],
            "duration": f"{durations[task['utterance_id']]:.4f}", "sample_rate": sample_rate,
            "source": "tts", "bandwidth_hz": round(width),
        })
    _write_manifest(out / "manifest.csv", rows)

    counts = {}
    for name in SPLITS:
        in_split = [s for s in plan if s.split == name]
        counts[name] = {
            "speakers": len(in_split),
            "persons": len({s.person for s in in_split}),
            "utterances": len(in_split) * utterances,
            "hours": round(sum(durations[t["utterance_id"]] for t in tasks
                               if by_speaker[t["speaker"]].split == name) / 3600, 4),
            "genders": {g: sum(1 for s in in_split if s.gender == g) for g in ("m", "f", "unknown")},
        }
    meta.update({
        "status": "complete",
        "cocktailparty_version": __version__,
        "build_seconds": round(time.time() - started, 1),
        "counts": counts,
        "target_rms_dbfs": TARGET_RMS_DBFS,
        "engines": tts.engine_versions(),
        "voices_installed": len(inventory),
        "voices_used": sorted({s.voice_key for s in plan}),
        "voices_skipped": skipped,
        "text_sources": {lang: len(pool) for lang, pool in sorted(pools.items())},
        "speakers": [asdict(s) for s in plan],
    })
    _write_json(out / "corpus.json", meta)
    return meta


def _write_json(path: Path, data: dict) -> None:
    atomic.write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _write_manifest(path: Path, rows: list[dict]) -> None:
    with atomic.writing(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
