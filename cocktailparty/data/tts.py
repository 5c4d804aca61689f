"""The text-to-speech engines installed on this machine: which voices exist, and speech from them.

Five command-line engines are driven through subprocesses (each call is a few tens of
milliseconds for espeak-ng/MBROLA, pico and flite, a few tenths for RHVoice and festival):

============  =====================================================================
engine        voices
============  =====================================================================
espeak-ng     MBROLA diphone voices (``mb-us1``, ...: recorded persons) and espeak-ng's
              own formant voices with a variant (``en-us+m3``: synthetic, no person)
flite         CMU voices (``kal16``, ``awb``, ``rms``, ``slt``)
festival      every voice folder under ``/usr/share/festival/voices``
pico          SVOX pico, one speaker per language (``en-US``, ``de-DE``, ...)
rhvoice       RHVoice voices under ``/usr/share/RHVoice/voices``
============  =====================================================================

Nothing is assumed installed: :func:`discover` lists what is there and silently leaves out
engines that are missing. :func:`synthesize` returns float32 ``(time,)`` samples at the
engine's own rate, plus the engine's warnings (MBROLA reports diphones its recording lacks,
which :mod:`cocktailparty.data.corpus` uses to reject voice/text pairings).

Several voices are one recorded person: CMU ARCTIC's slt is flite ``slt``, festival
``cmu_us_slt_arctic_hts`` and RHVoice ``slt``; awb is flite ``awb`` and RHVoice ``alan``;
kal is flite ``kal16`` and festival ``kal_diphone``; MBROLA us1-3/en1 are also festival's
``us1_mbrola`` ... voices. :attr:`Voice.person` names that person once, so corpus splits can
keep all of a person's voices together.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile

from ..core.errors import CocktailError

ENGINES = ("espeak-ng", "flite", "festival", "pico", "rhvoice")

MBROLA_DIR = Path("/usr/share/mbrola")
FESTIVAL_VOICES = Path("/usr/share/festival/voices")
PICO_LANG_DIR = Path("/usr/share/pico/lang")
RHVOICE_VOICES = Path("/usr/share/RHVoice/voices")

# espeak-ng's own variants that sound like ordinary adult talkers; the others (whisper, croak,
# robots, novelty voices) would teach a separation model about effects rather than voices.
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4")
# espeak-ng languages its formant voices read; only languages that have a text source matter.
ESPEAK_LANGUAGES = ("en-us", "en-gb", "de", "es", "it", "pl", "ru", "pt-br", "cs", "eo")

# One name per recorded person whatever engine packages them (see the module docstring).
SHARED_PERSONS = {
    ("flite", "kal"): "cmu-kal", ("flite", "kal16"): "cmu-kal", ("festival", "kal_diphone"): "cmu-kal",
    ("flite", "slt"): "cmu-slt", ("festival", "cmu_us_slt_arctic_hts"): "cmu-slt",
    ("rhvoice", "slt"): "cmu-slt",
    ("flite", "awb"): "cmu-awb", ("rhvoice", "alan"): "cmu-awb",
    ("flite", "rms"): "cmu-rms", ("rhvoice", "bdl"): "cmu-bdl", ("rhvoice", "clb"): "cmu-clb",
    ("festival", "ked_diphone"): "cmu-ked", ("festival", "rab_diphone"): "cstr-rab",
    ("festival", "us1_mbrola"): "mbrola-us1", ("festival", "us2_mbrola"): "mbrola-us2",
    ("festival", "us3_mbrola"): "mbrola-us3", ("festival", "en1_mbrola"): "mbrola-en1",
}

# flite's clustergen/diphone voices take an absolute mean F0 target; these are their own means
# (Hz, measured), so a relative pitch factor can be turned into a target.
FLITE_F0_MEAN = {"kal16": 89.0, "awb": 128.0, "rms": 103.0, "slt": 167.0}
FLITE_GENDER = {"kal16": "m", "kal": "m", "awb": "m", "rms": "m", "slt": "f"}

FESTIVAL_GENDER = {
    "kal_diphone": "m", "ked_diphone": "m", "rab_diphone": "m", "don_diphone": "m",
    "cmu_us_slt_arctic_hts": "f", "czech_dita": "f", "czech_machac": "m", "czech_ph": "m",
    "czech_krb": "m", "lp_diphone": "f", "pc_diphone": "m", "el_diphone": "m",
    "msu_ru_nsh_clunits": "m", "us1_mbrola": "f", "us2_mbrola": "m", "us3_mbrola": "m",
    "en1_mbrola": "m", "suo_fi_lj_diphone": "f", "hy_fi_mv_diphone": "m",
}
FESTIVAL_LANGUAGE = {"kal_diphone": "en-us", "ked_diphone": "en-us", "rab_diphone": "en-gb",
                     "don_diphone": "en-gb", "en1_mbrola": "en-gb"}
FESTIVAL_FOLDER_LANGUAGE = {"english": "en", "us": "en-us", "czech": "cs", "italian": "it",
                            "spanish": "es", "russian": "ru", "finnish": "fi", "catalan": "ca"}
# Festival's lexicons read bytes in their language's legacy encoding (UTF-8 Czech is spelled
# out letter by letter); the Russian voice is the exception that wants UTF-8.
FESTIVAL_ENCODING = {"cs": "iso-8859-2", "ru": "utf-8"}
# Limited-domain voices speak only their domain (awb_time tells the time).
FESTIVAL_SKIP = re.compile(r"_ldom$|_time$")

RHVOICE_LANGUAGE = {"english": "en", "russian": "ru", "polish": "pl", "esperanto": "eo",
                    "brazilian-portuguese": "pt-br", "ukrainian": "uk", "kyrgyz": "ky",
                    "tatar": "tt", "macedonian": "mk", "albanian": "sq", "georgian": "ka"}

TIMEOUT_S = 120


class SynthesisError(CocktailError):
    """An engine failed on one text (the message names engine, voice and text)."""


@dataclass(frozen=True)
class Voice:
    """One base voice of one engine.

    Attributes:
        key: ``"<engine>:<name>"``, unique, e.g. ``"espeak-ng:mb-us1"``.
        engine: one of :data:`ENGINES`.
        name: the engine's name for the voice (``mb-us1``, ``en-us+m3``, ``slt``, ``en-US``).
        language: the voice's language as a lower-case tag (``en-us``, ``de``, ``pt-br``).
        gender: ``"m"``, ``"f"`` or ``"unknown"``.
        person: the recorded person behind it (shared across engines); for espeak-ng's
            formant voices the variant, which is the same synthetic talker in every language.
        recorded: ``False`` for formant-synthesis voices (no recorded person).
        pitch_control: whether the engine can move the voice's pitch by itself.
        alternates: ``(text_language, engine_name)`` pairs: another engine voice of the same
            person meant for reading that language (MBROLA's ``mb-fr1-en`` reads English).
    """

    key: str
    engine: str
    name: str
    language: str
    gender: str
    person: str
    recorded: bool = True
    pitch_control: bool = True
    alternates: tuple[tuple[str, str], ...] = field(default=())

    @property
    def primary_language(self) -> str:
        return self.language.split("-")[0]

    def engine_name_for(self, text_language: str) -> str:
        """The engine voice to use when this voice reads ``text_language``."""
        return dict(self.alternates).get(text_language, self.name)


# --- discovery -------------------------------------------------------------------------------


def discover() -> list[Voice]:
    """All usable base voices installed here, sorted by key. Missing engines give none."""
    voices: list[Voice] = []
    for finder in (_espeak_voices, _flite_voices, _festival_voices, _pico_voices, _rhvoice_voices):
        try:
            voices.extend(finder())
        except (OSError, subprocess.SubprocessError, ValueError):
            # An engine that is broken in an unusual way is treated like a missing one: the
            # corpus still builds from the others, and the voice count says what is missing.
            continue
    return sorted(voices, key=lambda v: v.key)


def _run(cmd: list[str], stdin: bytes | None = None, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout, check=False)


def _espeak_voices() -> list[Voice]:
    if not shutil.which("espeak-ng"):
        return []
    voices = []
    mb = _run(["espeak-ng", "--voices=mb"]).stdout.decode("utf-8", "replace").splitlines()
    entries = {}
    for line in mb[1:]:
        parts = line.split()
        if len(parts) < 5:
            continue
        language, age_gender, file = parts[1], parts[2], parts[4]
        name = file.rsplit("/", 1)[-1]
        entries[name] = (language.lower(), {"M": "m", "F": "f"}.get(age_gender[-1:], "unknown"))
    for name, (language, gender) in entries.items():
        m = re.fullmatch(r"mb-([a-z]{2}\d)", name)
        if not m or not (MBROLA_DIR / m.group(1)).is_dir():
            continue
        alternates = tuple((suffix, f"{name}-{suffix}") for suffix in ("en",) if f"{name}-{suffix}" in entries)
        voices.append(Voice(f"espeak-ng:{name}", "espeak-ng", name, language, gender,
                            f"mbrola-{m.group(1)}", alternates=alternates))
    listed = _run(["espeak-ng", "--voices"]).stdout.decode("utf-8", "replace").splitlines()
    languages = {line.split()[1].lower() for line in listed[1:] if len(line.split()) > 1}
    variant_dir = _espeak_data_dir() / "voices" / "!v"
    for variant in ESPEAK_VARIANTS:
        path = variant_dir / variant
        if not path.is_file():
            continue
        text = path.read_text("utf-8", "replace")
        gender = "f" if re.search(r"^gender\s+female", text, re.M) else "m" if re.search(r"^gender\s+male", text, re.M) else "unknown"
        for language in ESPEAK_LANGUAGES:
            if language in languages:
                name = f"{language}+{variant}"
                voices.append(Voice(f"espeak-ng:{name}", "espeak-ng", name, language, gender,
                                    f"espeak-ng-{variant}", recorded=False))
    return voices


def _espeak_data_dir() -> Path:
    out = _run(["espeak-ng", "--version"]).stdout.decode("utf-8", "replace")
    m = re.search(r"Data at:\s*(\S+)", out)
    return Path(m.group(1)) if m else Path("/usr/share/espeak-ng-data")


def _flite_voices() -> list[Voice]:
    if not shutil.which("flite"):
        return []
    out = _run(["flite", "-lv"]).stdout.decode("utf-8", "replace")
    names = out.split(":", 1)[-1].split()
    voices = []
    for name in names:
        if name.endswith("_time") or (name == "kal" and "kal16" in names):
            continue  # awb_time tells the time only; kal is kal16 at 8 kHz
        person = SHARED_PERSONS.get(("flite", name), f"flite-{name}")
        voices.append(Voice(f"flite:{name}", "flite", name, "en-us" if name != "awb" else "en-gb",
                            FLITE_GENDER.get(name, "unknown"), person,
                            pitch_control=name in FLITE_F0_MEAN))
    return voices


def _festival_voices() -> list[Voice]:
    if not shutil.which("festival") or not FESTIVAL_VOICES.is_dir():
        return []
    voices = []
    for folder in sorted(FESTIVAL_VOICES.iterdir()):
        if not folder.is_dir():
            continue
        for vdir in sorted(folder.iterdir()):
            name = vdir.name
            if not vdir.is_dir() or FESTIVAL_SKIP.search(name):
                continue
            language = FESTIVAL_LANGUAGE.get(name, FESTIVAL_FOLDER_LANGUAGE.get(folder.name, folder.name))
            person = SHARED_PERSONS.get(("festival", name), f"festival-{name}")
            voices.append(Voice(f"festival:{name}", "festival", name, language,
                                FESTIVAL_GENDER.get(name, "unknown"), person, pitch_control=False))
    return voices


def _pico_voices() -> list[Voice]:
    if not shutil.which("pico2wave") or not PICO_LANG_DIR.is_dir():
        return []
    voices = []
    for ta in sorted(PICO_LANG_DIR.glob("*_ta.bin")):
        lang = ta.name[: -len("_ta.bin")]
        if not list(PICO_LANG_DIR.glob(f"{lang}_*_sg.bin")):
            continue
        # Every pico language is a different (female) speaker.
        voices.append(Voice(f"pico:{lang}", "pico", lang, lang.lower(), "f", f"pico-{lang.lower()}"))
    return voices


def _rhvoice_voices() -> list[Voice]:
    if not shutil.which("RHVoice-test") or not RHVOICE_VOICES.is_dir():
        return []
    voices = []
    for vdir in sorted(RHVOICE_VOICES.iterdir()):
        info_file = vdir / "voice.info"
        if not info_file.is_file():
            continue
        info = dict(
            line.split("=", 1) for line in info_file.read_text("utf-8", "replace").splitlines() if "=" in line
        )
        language = RHVOICE_LANGUAGE.get(info.get("language", "").strip().lower())
        if language is None:
            continue
        name = vdir.name
        # aleksandr-hq is aleksandr at higher quality; evgeniy-eng/-rus is one man in two languages.
        base = re.sub(r"-(hq|eng|rus)$", "", name.lower())
        person = SHARED_PERSONS.get(("rhvoice", base), f"rhvoice-{base}")
        gender = {"male": "m", "female": "f"}.get(info.get("gender", "").strip().lower(), "unknown")
        voices.append(Voice(f"rhvoice:{name}", "rhvoice", name, language, gender, person))
    return voices


def engine_versions() -> dict[str, str]:
    """Debian package version of each engine (and MBROLA), or ``"not installed"``."""
    packages = {"espeak-ng": "espeak-ng", "mbrola": "mbrola", "flite": "flite", "festival": "festival",
                "pico": "libttspico-utils", "rhvoice": "rhvoice"}
    versions = {}
    for engine, package in packages.items():
        version = ""
        if shutil.which("dpkg-query"):
            res = _run(["dpkg-query", "-W", "-f=${Version}", package])
            version = res.stdout.decode().strip() if res.returncode == 0 else ""
        versions[engine] = version or "not installed"
    return versions


# --- synthesis -------------------------------------------------------------------------------


def synthesize(voice: Voice, text: str, text_language: str, pitch: float = 1.0,
               rate: float = 1.0) -> tuple[np.ndarray, int, str]:
    """Speak ``text`` with ``voice``.

    Args:
        voice: a voice from :func:`discover`.
        text: one line of text in ``text_language``.
        text_language: primary language tag of the text (picks MBROLA's ``-en`` voices).
        pitch: factor on the voice's own pitch (ignored where ``voice.pitch_control`` is false).
        rate: factor on the voice's own speaking rate (2.0 = twice as fast).

    Returns:
        ``(samples, sample_rate, warnings)``: float32 ``(time,)`` at the engine's rate, and the
        engine's stderr text.
    """
    try:
        return _synthesize(voice, text, text_language, pitch, rate)
    except SynthesisError:
        plainer = festival_fallback_text(text)
        if voice.engine != "festival" or plainer == text:
            raise
        return _synthesize(voice, plainer, text_language, pitch, rate)


def festival_fallback_text(text: str) -> str:
    """The same words with the punctuation that crashes some festival voices made plainer:
    its Italian intonation rules crash on some questions ("... ping pong?"), said as
    statements they synthesize; its Russian voice fails on a dash glued to the punctuation
    before it ("Трудно,- ответил я"), which a space fixes."""
    return re.sub(r"([,.;:!?])-", r"\1 -", re.sub(r"[?!]+", ".", text))


def _synthesize(voice: Voice, text: str, text_language: str, pitch: float, rate: float) -> tuple[np.ndarray, int, str]:
    name = voice.engine_name_for(text_language)
    with tempfile.TemporaryDirectory(prefix="cocktail-tts-") as tmp:
        wav = os.path.join(tmp, "out.wav")
        if voice.engine == "espeak-ng":
            # espeak-ng's -p is roughly logarithmic: 20 -> 0.77x, 50 -> 1x, 80 -> 1.38x (measured).
            p = min(99, max(0, round(50 + 72 * math.log2(pitch))))
            s = min(450, max(80, round(175 * rate)))
            cmd, stdin = ["espeak-ng", "-v", name, "-p", str(p), "-s", str(s), "-w", wav], text.encode()
            if name.startswith("mb-"):
                return _mbrola(voice, name, text, p, s, wav)
        elif voice.engine == "flite":
            txt = os.path.join(tmp, "in.txt")
            Path(txt).write_text(text, encoding="utf-8")
            cmd, stdin = ["flite", "-voice", name, "-f", txt, "-o", wav,
                          "--setf", f"duration_stretch={1 / rate:.4f}"], None
            if name in FLITE_F0_MEAN:
                cmd += ["--setf", f"int_f0_target_mean={FLITE_F0_MEAN[name] * pitch:.1f}"]
        elif voice.engine == "festival":
            encoding = FESTIVAL_ENCODING.get(voice.primary_language, "latin-1")
            quoted = text.replace("\\", "\\\\").replace('"', '\\"')
            script = (f"(voice_{name})\n(Parameter.set 'Duration_Stretch {1 / rate:.4f})\n"
                      f'(utt.save.wave (utt.synth (Utterance Text "{quoted}")) "{wav}" \'riff)\n')
            scm = os.path.join(tmp, "say.scm")
            Path(scm).write_bytes(script.encode(encoding, "ignore"))
            cmd, stdin = ["festival", "-b", scm], None
        elif voice.engine == "pico":
            # pico2wave reads its own markup: levels are percent of the voice's defaults.
            marked = (f"<pitch level='{round(100 * pitch)}'><speed level='{round(100 * rate)}'>"
                      f"{text}</speed></pitch>")
            cmd, stdin = ["pico2wave", "-l", name, "-w", wav, marked], None
        elif voice.engine == "rhvoice":
            cmd = ["RHVoice-test", "-p", name, "-o", wav, "-t", str(round(100 * pitch)),
                   "-r", str(round(100 * rate))]
            stdin = text.encode()
        else:
            raise ValueError(f"unknown engine {voice.engine!r}")
        try:
            res = _run(cmd, stdin)
        except subprocess.TimeoutExpired:
            raise SynthesisError(f"{voice.engine} voice {name} took over {TIMEOUT_S} s on {text[:60]!r}") from None
        except OSError as err:
            raise SynthesisError(f"{voice.engine} could not be started ({err.strerror})") from None
        warnings = res.stderr.decode("utf-8", "replace")
        if res.returncode != 0 or not os.path.exists(wav) or os.path.getsize(wav) <= 44:
            last = (warnings.strip().splitlines() or ["no message"])[-1][:200]
            raise SynthesisError(
                f"{voice.engine} voice {name} produced no audio for {text[:60]!r} "
                f"(exit status {res.returncode}: {last})"
            )
        try:
            samples, rate_hz = soundfile.read(wav, dtype="float32", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError) as err:
            raise SynthesisError(f"{voice.engine} voice {name} wrote an unreadable file ({err})") from None
    return np.ascontiguousarray(samples.mean(axis=1)), int(rate_hz), warnings


def _mbrola(voice: Voice, name: str, text: str, p: int, s: int, wav: str) -> tuple[np.ndarray, int, str]:
    """MBROLA through espeak-ng's phoneme output, repaired, then the mbrola program.

    espeak-ng 1.51 marks some vowels with a trailing ``/`` (Spanish ``e/``, ``o/``) that the
    MBROLA recordings do not have, and MBROLA turns every diphone it lacks into silence; so the
    phonemes pass through here with the marker dropped, which makes the Spanish voices usable.
    """
    database = MBROLA_DIR / name.split("-")[1] / name.split("-")[1]
    pho = _run(["espeak-ng", "-v", name, "-p", str(p), "-s", str(s), "-q", "--pho"], text.encode())
    phonemes = re.sub(r"^(\S+?)/(?=[\t ])", r"\1", pho.stdout.decode("utf-8", "replace"), flags=re.M)
    if pho.returncode != 0 or not phonemes.strip() or not database.is_file():
        last = (pho.stderr.decode("utf-8", "replace").strip().splitlines() or ["no phonemes"])[-1][:200]
        raise SynthesisError(f"espeak-ng voice {name} produced no phonemes for {text[:60]!r} ({last})")
    res = _run(["mbrola", "-e", str(database), "-", wav], phonemes.encode())
    warnings = res.stderr.decode("utf-8", "replace")
    if res.returncode != 0 or not os.path.exists(wav) or os.path.getsize(wav) <= 44:
        last = (warnings.strip().splitlines() or ["no message"])[-1][:200]
        raise SynthesisError(f"mbrola voice {name} produced no audio for {text[:60]!r} "
                             f"(exit status {res.returncode}: {last})")
    samples, rate_hz = soundfile.read(wav, dtype="float32", always_2d=True)
    return np.ascontiguousarray(samples.mean(axis=1)), int(rate_hz), warnings


def synthesize_many(voice: Voice, items: list[tuple[str, str, float, float]]) -> list[tuple[np.ndarray, int]]:
    """Speak several ``(text, text_language, pitch, rate)`` items with one voice.

    Festival loads its voice (hundreds of MB for the clunits and HTS voices) on every start, so
    its items share one process; other engines start in tens of milliseconds and run one by one.

    Returns:
        ``[(samples, sample_rate), ...]`` in the order of ``items``: float32 ``(time,)``.
    """
    if voice.engine != "festival" or len(items) == 1:
        return [synthesize(voice, *item)[:2] for item in items]
    encoding = FESTIVAL_ENCODING.get(voice.primary_language, "latin-1")
    with tempfile.TemporaryDirectory(prefix="cocktail-tts-") as tmp:
        lines = [f"(voice_{voice.name})"]
        wavs = []
        for i, (text, _, _, rate) in enumerate(items):
            wav = os.path.join(tmp, f"out{i}.wav")
            wavs.append(wav)
            quoted = text.replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f"(Parameter.set 'Duration_Stretch {1 / rate:.4f})")
            lines.append(f'(utt.save.wave (utt.synth (Utterance Text "{quoted}")) "{wav}" \'riff)')
        scm = os.path.join(tmp, "say.scm")
        Path(scm).write_bytes("\n".join(lines).encode(encoding, "ignore") + b"\n")
        try:
            res = _run(["festival", "-b", scm], timeout=TIMEOUT_S * len(items))
        except subprocess.TimeoutExpired:
            raise SynthesisError(f"festival voice {voice.name} timed out on {len(items)} sentences") from None
        out = []
        for wav, (text, *_rest) in zip(wavs, items):
            if not os.path.exists(wav) or os.path.getsize(wav) <= 44:
                last = (res.stderr.decode("utf-8", "replace").strip().splitlines() or ["no message"])[-1][:200]
                raise SynthesisError(f"festival voice {voice.name} produced no audio for {text[:60]!r} "
                                     f"(exit status {res.returncode}: {last})")
            samples, rate_hz = soundfile.read(wav, dtype="float32", always_2d=True)
            out.append((np.ascontiguousarray(samples.mean(axis=1)), int(rate_hz)))
    return out


def count_unknown_diphones(warnings: str) -> int:
    """How many diphones MBROLA had to replace with silence (its recording lacks them)."""
    return warnings.count("unknown, replaced")
