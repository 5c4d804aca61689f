"""Build a speaker-labelled corpus of real recorded human speech from Debian data packages.

TTS voices alone teach a separator TTS voices (the default trained on them alone separates
real recorded people at about 2 dB SI-SNRi). Several Debian data packages ship real people's
recorded speech: ``cocktail corpus real --out DIR`` (or :func:`build_real_corpus`) fetches
them (``scripts/fetch-speech-packages.sh``: ``apt-get download`` + ``dpkg -x``, nothing is
installed), extracts the speech and writes the same layout as ``cocktail corpus build``::

    DIR/<split>/<speaker>/<utterance_id>.flac     mono PCM_16 FLAC at --sample-rate
    DIR/manifest.csv                              MANIFEST_COLUMNS, with source and licence
    DIR/corpus.json                               parameters, counts, package versions

Sources (:data:`SOURCES`; a speaker is one recorded voice, named ``<source>-<label>``):

=========== ========================= ====================================== ============
source      package                   speaker label                          licence
=========== ========================= ====================================== ============
tuxpaint    tuxpaint-stamps-default   language of ``*_desc_<lang>.ogg``      GPL-2
klettres    klettres-data             language folder (letters, syllables)   GPL-2+
hedgewars   hedgewars-data            voice pack folder                      GFDL-1.3
festvox-ru  festvox-ru                the one studio speaker (msu_ru_nsh)    BSD-like
nexuiz      nexuiz-data               player-model voice (in data.pk3)       GPL-2+
megaglest   megaglest-data            unit voice (:data:`MEGAGLEST_VOICES`)  CC-BY-SA-3.0
gcin        gcin-voice                reader, by file name (3.ogg, 5.ogg)    GPL-3/CC-BY-3
queen       flight-of-the-amazon-     voice cluster (names + embeddings;     freeware
            queen                     in queen.1c; 8 kHz corpora only)       (its licence)
=========== ========================= ====================================== ============

The packages label recordings by language or pack, not by person: one label may hold more
than one person (harmless: they never meet in a mixture) and one person may stand behind
two labels (then they could meet, and a split could hold them twice); nothing in the
packages says so for the ones used here. Packages reserved for an independent test of the
project (:data:`RESERVED_PACKAGES`) are refused, whatever is asked.

A source recorded at a low rate (``Source.native_rate``: queen's game speech is 11025 Hz)
feeds only corpora at or under that rate: a build at a higher ``sample_rate`` skips it, with
a log line, before fetching it. Where a package has no speaker labels at all (queen), the
reader labels clips by voice (:mod:`.voices`: Resemblyzer embeddings, clustering), checked
against what the clips' names tell, and leaves out what it cannot label confidently.

Processing, per clip: decode, mix to mono, resample (soxr) to the corpus rate, trim the
edges below -40 dB re the loudest 10 ms frame, and drop the clip if it is shorter than
0.25 s or **band-limited**: its bandwidth (:func:`bandwidth_hz`) under
``min_bandwidth`` times the Nyquist frequency, so that an old 8 kHz recording resampled to
16 kHz never teaches a 16 kHz model that the top band is empty. The packages' clips are
short (a word, a letter, a one-line description: 0.5-3 s), so each speaker's clips, in a
seeded order, are joined into utterances of about ``utterance_seconds`` with pauses of
0.15-0.4 s between them (each clip first brought to the same RMS level), and each utterance
is normalised like the TTS corpus (RMS -25 dBFS, peaks under -0.3 dBFS). A speaker keeps at
most ``max_minutes`` of speech (festvox-ru alone has 100 minutes of one man); speakers with
under ``min_seconds`` (a source may set a lower floor: megaglest's unit voices hold 6-40 s
each) are dropped. Splits are disjoint by speaker, sources interleaved so each split gets
several. Speakers are split in groups (``Source.split_group``): the first four sources are
one group, each later source a group of its own, split by the same seeded rule, so adding a
source leaves every earlier speaker in its split (and its utterances unchanged).

``cocktail corpus real-noise --out DIR`` (:func:`build_real_noise`) takes the non-speech
sounds of two of these packages instead (tuxpaint stamp effects; hedgewars effects and
music) as a noise folder for ``data.noise``, laid out like ``cocktail corpus noise``.
"""

from __future__ import annotations

import csv
import logging
import os
import random
import re
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import soundfile

from .. import __version__
from ..core.audio import resample, write
from ..core.errors import CocktailError
from ..core.progress import progress_enabled
from .corpus import (CORPUS_FORMAT, _parse_split, _split_persons, _write_json, _write_manifest, bandwidth_hz,
                     measure_bandwidths, normalise, trim_silence)
from .datasets import SpeakerCorpus

log = logging.getLogger("cocktailparty")

FETCH_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fetch-speech-packages.sh"
DEFAULT_PACKAGE_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cocktailparty" / "packages"
# Reserved for an independent test of the project: never fetched, read or trained on.
RESERVED_PACKAGES = ("fillets-ng-data", "asterisk-core-sounds-", "asterisk-prompt-", "ktuberling-data")

MIN_CLIP_SECONDS = 0.25
PAUSE_SECONDS = (0.15, 0.4)


@dataclass(frozen=True)
class Clip:
    """One recording in a package: ``speaker`` is ``<source>-<label>``."""

    path: Path
    speaker: str
    language: str


@dataclass(frozen=True)
class Source:
    """A package of real speech and how to find its clips in the extracted tree."""

    name: str
    package: str
    licence: str
    find: Callable[[Path], list[Clip]]  # extracted package root -> clips
    # Speakers are split among themselves, group by group (see build_real_corpus): the four
    # first sources form one group, "v1", so their 44 speakers keep the splits of the first
    # corpus; a later source is a group of its own (None: its name), so adding it moves no
    # one else.
    split_group: Optional[str] = None
    # Lower floor of usable speech per speaker for this source's (short) voices, in seconds;
    # None: build_real_corpus's min_seconds.
    min_seconds: Optional[float] = None
    # The rate the recordings were made at, when it is low (adventure games' 11025 Hz): a
    # source feeds only corpora at or under it (build_real_corpus skips it above), since a
    # resampled 11 kHz clip holds nothing over 5.5 kHz. None: full band (44.1/48 kHz).
    native_rate: Optional[int] = None
    # Built only when asked for by name (--sources): queen needs Resemblyzer's weights
    # (pip install --no-deps resemblyzer), which the project's install does not bring.
    opt_in: bool = False


def _tuxpaint(root: Path) -> list[Clip]:
    # Stamps carry a spoken description per language: NAME_desc_<lang>.ogg, NAME_desc.ogg
    # being English. The other .ogg files are the stamps' sound effects, not speech.
    clips = []
    for path in sorted(root.rglob("*_desc*.ogg")):
        match = re.fullmatch(r".*_desc(?:_([A-Za-z]{2,3}(?:_[A-Z]{2})?))?\.ogg", path.name)
        if match:
            language = match.group(1) or "en"
            clips.append(Clip(path, f"tuxpaint-{language}", language))
    return clips


def _klettres(root: Path) -> list[Clip]:
    # usr/share/klettres/<lang>/{alpha,syllab}/*.ogg: one voice per language folder.
    base = root / "usr/share/klettres"
    return [Clip(p, f"klettres-{p.relative_to(base).parts[0]}", p.relative_to(base).parts[0])
            for p in sorted(base.glob("*/*/*.ogg"))]


def _hedgewars(root: Path) -> list[Clip]:
    # Data/Sounds/voices/<pack>/*.ogg: one actor per voice pack (Default_es etc. are other
    # actors' translations of the Default pack).
    base = root / "usr/share/games/hedgewars/Data/Sounds/voices"
    clips = []
    for path in sorted(base.glob("*/*.ogg")):
        pack = path.parent.name
        language = pack.split("_")[1] if "_" in pack else ("ru" if pack == "Russian" else "en")
        clips.append(Clip(path, f"hedgewars-{pack}", language))
    return clips


def _festvox_ru(root: Path) -> list[Clip]:
    return [Clip(p, "festvox-ru-nsh", "ru") for p in sorted(root.rglob("msu_ru_nsh_clunits/wav/*.wav"))]


# nexuiz-data: everything is in one zip, data.pk3. Player voices are
# sound/player/<model>/{coms,player}/*.ogg (spoken commands and taunts, plus the model's
# grunts), one voice per model folder. nexuiz-credits.txt names Amos "torus" Dudley for the
# announcer voices, so sound/announcer/male and the "torus" player voice are one person
# (one speaker, nexuiz-torus). Left out: sound/announcer/robotic (a processed, robot voice,
# by its name) and sound/tutorial (unlabelled; who speaks which line cannot be told). The
# marine and specop voices are radio-filtered (about 3.4 kHz wide) and fall to the bandwidth
# check. The credits also name one person (Michael "Tenshihan" Quinn) for "Sound FX and
# Player-Voices": some model voices may be one actor (see the module docstring).
NEXUIZ_PK3 = "usr/share/games/nexuiz/data/data.pk3"
NEXUIZ_VOICE = re.compile(r"sound/(?:player/([^/]+)/.+|announcer/(male)/[^/]+)\.(?:ogg|wav)")


def _nexuiz(root: Path) -> list[Clip]:
    # The voice clips are extracted once from data.pk3 into <root>/.pk3/ (soundfile cannot
    # seek inside a zip member); the label is the player-model folder.
    import zipfile

    pk3, out = root / NEXUIZ_PK3, root / ".pk3"
    clips = []
    if not pk3.is_file():
        return clips
    with zipfile.ZipFile(pk3) as archive:
        for name in sorted(archive.namelist()):
            match = NEXUIZ_VOICE.fullmatch(name)
            if not match:
                continue
            target = out / name
            if not target.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(target.name + ".part")
                partial.write_bytes(archive.read(name))
                partial.replace(target)
            label = "torus" if match.group(2) else match.group(1)
            clips.append(Clip(target, f"nexuiz-{label}", "en"))
    return clips


# megaglest-data: a unit's spoken lines are <name>_ack<N> and <name>_select<N> (its
# attack/die/walk sounds are effects and grunts, left out), in
# techs/megapack/factions/<faction>/units/<unit>/sounds/ or, for the classic units, in
# techs/megapack/commondata/sounds/ by <name>. Label: <faction>-<unit> or common-<name>,
# then MEGAGLEST_VOICES: a label missing from it is left out. Measured on 3.13.0-3:
#  - dropped by name, not human: animals (common-cow, common-pig, egypt-chicken,
#    indian-bull, norsemen-wild_sow, magic-behemoth), monsters and spirits (common-daemon,
#    common-golem, egypt-mummy, egypt-anubis_warrior, magic-ghost_armor, persian-genie),
#    flying beasts (indian-thunderbird, magic-dragon, magic-evil_dragon: their clips are
#    also identical to each other), magic-dragon_rider (rider's voice or the dragon's cannot
#    be told by name), persian-flying_carpet (a vehicle);
#  - dropped as processed copies, by name: norsemen-*_berserk (same clip names and the same
#    seconds as the plain unit: battleaxe 10.0 s = battleaxe_berserk 10.0 s, spearman 8.4 s
#    = spearman_berserk 8.4 s; battleaxe's daemon_select4 matches its berserk's at 0.95);
#  - merged as one person, by a measurement: a clip fingerprint (log energies of 24 bands
#    per 20 ms after trimming, 16 kHz) correlated over every pair of clips of two labels;
#    copies score 0.95-1.0, all other pairs at most 0.93. indian-horseman's
#    horseman_ack3 is common-horseman's (1.0): one speaker; indian-spearman and
#    indian-stickfighter share stickfighter_select6 (0.999). common-worker and
#    indian-worker's worker_ack1-4 have the same lengths (re-encodings, 0.87-0.91): merged;
#  - merged by file names, on the safe side (two labels of one person may meet in a
#    mixture, one label of two people may not): a unit whose clips are named after another
#    unit (norsemen-spearman's swordman_*, indian-fire_archer's archer_*, persian-fakir's
#    stickfighter_*, norsemen-flying_valkyrie's horseman_*) joins that unit's voice; but
#    norsemen-battleaxe's daemon_* clips match none of common-daemon's (every pair under
#    0.9): not the daemon's recordings, kept as their own voice (the name taken as a reused
#    file name; nobody listened to decide it).
#  Units with no _ack/_select files (persian-magician, the tech faction, romans, ...) have
#  no voice lines here. Kept: 21 speakers, 7-57 s each (6.4 min in all at 16 kHz).
MEGAGLEST_VOICES = {
    "common-archer": "common-archer", "common-archmage": "common-archmage",
    "common-axe_thrower": "common-axe_thrower", "common-guard": "common-guard",
    "common-horseman": "horseman", "indian-horseman": "horseman", "norsemen-flying_valkyrie": "horseman",
    "common-swordman": "common-swordman", "common-technician": "common-technician",
    "common-worker": "worker", "indian-worker": "worker",
    "egypt-spearman": "egypt-spearman",
    "indian-archer": "indian-archer", "indian-fire_archer": "indian-archer",
    "indian-shaman": "indian-shaman",
    "indian-stickfighter": "stickfighter", "indian-spearman": "stickfighter",
    "persian-stickfighter": "stickfighter", "persian-fakir": "stickfighter",
    "magic-battlemage": "magic-battlemage", "magic-initiate": "magic-initiate", "magic-summoner": "magic-summoner",
    "norsemen-battleaxe": "norsemen-battleaxe", "norsemen-cudgel_lady": "norsemen-cudgel_lady",
    "norsemen-swordman": "norsemen-swordman", "norsemen-spearman": "norsemen-swordman",
    "norsemen-valkyrie": "norsemen-valkyrie",
    "persian-princess": "persian-princess", "persian-swordman": "persian-swordman",
}
MEGAGLEST_LINE = re.compile(r"(.+?)_(?:ack|select)\d*\.(?:wav|ogg)")


def _megaglest(root: Path) -> list[Clip]:
    base = root / "usr/share/games/megaglest/techs/megapack"
    clips = []
    for path in sorted(base.glob("commondata/sounds/*")):
        match = MEGAGLEST_LINE.fullmatch(path.name)
        label = MEGAGLEST_VOICES.get(f"common-{match.group(1)}") if match else None
        if label:
            clips.append(Clip(path, f"megaglest-{label}", "en"))
    for path in sorted(base.glob("factions/*/units/*/sounds/*")):
        label = MEGAGLEST_VOICES.get(f"{path.parts[-5]}-{path.parts[-3]}")
        if label and MEGAGLEST_LINE.fullmatch(path.name):
            clips.append(Clip(path, f"megaglest-{label}", "en"))
    return clips


def _gcin(root: Path) -> list[Clip]:
    # usr/share/gcin-voice/ogg/<zhuyin syllable>/{3,5}.ogg: the Mandarin syllables read by
    # two people, told apart by the file name, as debian/copyright does: */3.ogg Copyright
    # 2014 Edward Der-Hua Liu (GPL-3 or LGPL-3), */5.ogg "vocal source from Chu Lo"
    # (ChionMeilin, CC-BY-3). Measured on 0~20170223-3 (1200 and 1158 clips): median F0
    # 128 Hz for 3.ogg and 342 Hz for 5.ogg (autocorrelation, every 25th clip): two voices.
    # The speaker names (liu, lo) follow the copyright lines; 3.ogg's reader is not named.
    base = root / "usr/share/gcin-voice/ogg"
    names = {"3.ogg": "gcin-liu", "5.ogg": "gcin-lo"}
    return [Clip(p, names[p.name], "zh") for p in sorted(base.glob("*/*.ogg")) if p.name in names]


# flight-of-the-amazon-queen: the talkie version's one archive, queen.1c. Its layout, read
# from the file's bytes: "QTBL", a 5-byte version tag ("CEM10"), 4 bytes (00 00 00 01 in
# 1.0.0-9), a big-endian uint16 entry count, then per entry 21 bytes: the name (12 bytes,
# NUL-padded, DOS 8.3), a bundle number (uint8, always 1 here), the offset and the size in
# queen.1c (big-endian uint32 each). The entries tile the rest of the file, from the end of
# the table to the end of the file, with no gaps. The speech is the .SB entries: 6745
# MPEG-2.5 layer III streams (11025 Hz, mono; 277 min, 269 min in clips of 1 s or more).
# Their names carry who speaks only in part: a dialogue line is <room 2><dialogue 2><node 2>
# then J (Joe, the hero) or P (the other party of that dialogue) and a line digit
# (020006J1.SB, 0303AAP3.SB); JOE*.SB are Joe's descriptions; cutaways (C*.SB), the
# *SSSS*.SB and *XXXX* lines name no speaker (nor do the P lines of <room>XXXX / SSSS,
# spoken outside a dialogue). So the names give groups (Joe; each dialogue's other party)
# and voices join them (queen_voice_labels: Resemblyzer embeddings, see :mod:`.voices`).
# The clips are 11025 Hz: the source feeds 8 kHz corpora only (native_rate).
# Settings, measured on 1.0.0-9 (6143 clips of 1 s or more; 1790 Joe's by name, 95
# dialogues' P lines of 3+ clips, 1969 unnamed). Clip pairs: same name-group vs Joe/P,
# ROC AUC 0.88 (mean cosine 0.74 vs 0.61): single clips are weak evidence, group means
# strong. Cosine distance between the means of two random Joe subsets the size of a
# dialogue group: median 0.02, 99th percentile 0.08 (split halves of one dialogue's P
# lines: 0.11); a dialogue group's mean vs Joe's: 5th percentile 0.094. Hence threshold
# 0.1: groups merge below it. Unnamed clips: the rule (similarity 0.7 or more, 0.05 above
# the next voice) gives named clips their own voice in 99.0% of cases where it decides
# (61% of them; leave-one-out over 21 voices), so it labels 35% of the unnamed clips.
QUEEN_ARCHIVE = "usr/share/scummvm/flight-of-the-amazon-queen/queen.1c"
QUEEN_ENTRY = 21
QUEEN_LINE = re.compile(r"([0-9A-Z]{6})([JP])\d\.SB")
# Clips shorter than this are not labelled (an embedding of a word or two is unreliable).
QUEEN_MIN_CLIP = 1.0


def queen_entries(archive: Path) -> list[tuple[str, int, int]]:
    """``(name, offset, size)`` of every entry of a queen.1c archive (see above)."""
    import struct

    with open(archive, "rb") as handle:
        head = handle.read(15)
        if len(head) < 15 or head[:4] != b"QTBL":
            raise CocktailError(f"{archive}: not a queen.1c archive (no QTBL header)")
        count = struct.unpack(">H", head[13:15])[0]
        table = handle.read(count * QUEEN_ENTRY)
        handle.seek(0, os.SEEK_END)
        length = handle.tell()
    if len(table) < count * QUEEN_ENTRY:
        raise CocktailError(f"{archive}: table cut short ({count} entries announced)")
    entries = []
    for i in range(count):
        raw = table[i * QUEEN_ENTRY:(i + 1) * QUEEN_ENTRY]
        name = raw[:12].split(b"\0")[0].decode("ascii", "replace")
        _bundle, offset, size = struct.unpack(">BII", raw[12:])
        if offset + size > length:
            raise CocktailError(f"{archive}: entry {name} runs past the end of the file")
        entries.append((name, offset, size))
    return entries


def queen_name_voice(name: str) -> Optional[str]:
    """The speaker a clip's name tells: ``joe``, ``P:<room+dialogue>`` (the other party of
    that dialogue), or None (the name tells nothing)."""
    if name.startswith("JOE"):
        return "joe"
    match = QUEEN_LINE.fullmatch(name)
    if not match:
        return None
    if match.group(2) == "J":
        return "joe"
    # <room>XXXX and <room>SSSS lines are outside any dialogue: P there is no one party.
    return None if match.group(1)[2:4] in ("XX", "SS") else f"P:{match.group(1)[:4]}"


def _embed_clip_files(paths: list[Path]) -> np.ndarray:
    """Unit speaker embeddings of audio files, one row each (Resemblyzer's encoder)."""
    from .voices import VoiceEmbedder

    embedder = VoiceEmbedder()
    rows = []
    for start in range(0, len(paths), 200):
        clips = [soundfile.read(str(p), dtype="float32", always_2d=True) for p in paths[start:start + 200]]
        rows.append(embedder.embed_many([(data.mean(axis=1), rate) for data, rate in clips]))
    return np.concatenate(rows) if rows else np.zeros((0, 256), np.float32)


def queen_voice_labels(names: Sequence[str], embeddings: np.ndarray, threshold: float = 0.1,
                       min_member: float = 0.6, min_similarity: float = 0.7, min_margin: float = 0.05,
                       min_group: int = 3, min_size: int = 20) -> dict[str, str]:
    """Speaker labels for Flight of the Amazon Queen clips from their names and unit voice
    embeddings (one row per name); clips that cannot be labelled confidently are left out.

    1. Names first: Joe's clips (J, JOE*) form one group, the P lines of each dialogue
       (<room><dialogue>) one group each (the other party of a dialogue is one character).
       A member whose cosine similarity to its group's mean voice is under ``min_member`` is
       left out (a name that the voice does not bear out: an interjecting third party);
       groups left with under ``min_group`` clips are left out.
    2. Voices: the groups' mean voices are clustered (:func:`.voices.agglomerate`, cosine
       distance ``threshold``): the dialogues of one character, or of one actor playing
       several, become one voice. Dialogue groups that fall in Joe's cluster are left out
       (Joe's actor doubling a part, or a voice too close to Joe's to tell).
    3. Clips whose names tell nothing (cutaways, *SSSS*, *XXXX*) join the nearest voice
       when its similarity is at least ``min_similarity`` and ``min_margin`` above the next.
    4. Voices with under ``min_size`` clips are left out. Labels: ``joe``, then ``v01``,
       ``v02``, ... by decreasing clip count (ties by first name).
    """
    from .voices import agglomerate, unit

    embeddings = unit(embeddings)
    groups: dict[str, list[int]] = {}
    unnamed = []
    for index, name in enumerate(names):
        said = queen_name_voice(name)
        (groups.setdefault(said, []) if said else unnamed).append(index)
    kept: dict[str, list[int]] = {}
    for group, members in sorted(groups.items()):
        centre = unit(embeddings[members].mean(axis=0))
        members = [m for m in members if embeddings[m] @ centre >= min_member]
        if len(members) >= min_group:
            kept[group] = members
    if "joe" not in kept:
        return {}
    order = ["joe"] + sorted(g for g in kept if g != "joe")
    centres = np.stack([unit(embeddings[kept[g]].mean(axis=0)) for g in order])
    cluster = agglomerate(centres, threshold)
    voices: dict[int, list[int]] = {}
    for group, c in zip(order, cluster):
        if group == "joe" or c != cluster[0]:
            voices.setdefault(int(c), []).extend(kept[group])
    keys = sorted(voices)
    if unnamed:
        voice_centres = np.stack([unit(embeddings[voices[k]].mean(axis=0)) for k in keys])
        scores = embeddings[unnamed] @ voice_centres.T
        for row, index in zip(scores, unnamed):
            best = np.argsort(row)[::-1]
            margin = row[best[0]] - (row[best[1]] if len(best) > 1 else -1.0)
            if row[best[0]] >= min_similarity and margin >= min_margin:
                voices[keys[best[0]]].append(index)
    joe = int(cluster[0])
    others = sorted((k for k in keys if k != joe and len(voices[k]) >= min_size),
                    key=lambda k: (-len(voices[k]), min(names[i] for i in voices[k])))
    label_of = {k: f"v{i + 1:02d}" for i, k in enumerate(others)}
    if len(voices[joe]) >= min_size:
        label_of[joe] = "joe"
    return {names[i]: label_of[k] for k in label_of for i in voices[k]}


def _queen_labels(clips: dict[str, Path], cache: Path) -> dict[str, str]:
    """Clip name -> speaker label (:func:`queen_voice_labels` on Resemblyzer embeddings of
    the clips of :data:`QUEEN_MIN_CLIP` seconds or more), cached in ``cache`` (a CSV)."""
    import inspect

    # The cache holds for these settings (and queen_voice_labels' defaults) only.
    settings = {k: v.default for k, v in inspect.signature(queen_voice_labels).parameters.items()
                if v.default is not inspect.Parameter.empty}
    tag = f"queen-voices-1 min_clip={QUEEN_MIN_CLIP} " + " ".join(f"{k}={v}" for k, v in settings.items())
    if cache.is_file():
        lines = cache.read_text().splitlines()
        if lines and lines[0] == f"# {tag}":
            return dict(line.split(",", 1) for line in lines[2:] if line)
    names = [n for n in sorted(clips) if soundfile.info(str(clips[n])).duration >= QUEEN_MIN_CLIP]
    log.info("flight-of-the-amazon-queen: telling %d clips apart by voice (Resemblyzer embeddings)", len(names))
    result = queen_voice_labels(names, _embed_clip_files([clips[n] for n in names]))
    partial = cache.with_name(cache.name + ".part")
    partial.write_text(f"# {tag}\nclip,label\n" + "".join(f"{n},{l}\n" for n, l in sorted(result.items())))
    partial.replace(cache)
    return result


def _queen(root: Path) -> list[Clip]:
    # The .SB entries are copied once out of queen.1c into <root>/.queen/<name>.mp3 (soundfile
    # reads MP3 from a file), then labelled by voice (_queen_labels, cached beside them).
    archive, out = root / QUEEN_ARCHIVE, root / ".queen"
    if not archive.is_file():
        return []
    paths = {}
    entries = [e for e in queen_entries(archive) if e[0].upper().endswith(".SB")]
    with open(archive, "rb") as handle:
        for name, offset, size in entries:
            target = out / f"{name.rsplit('.', 1)[0]}.mp3"
            if not target.is_file() or target.stat().st_size != size:
                out.mkdir(parents=True, exist_ok=True)
                handle.seek(offset)
                partial = target.with_name(target.name + ".part")
                partial.write_bytes(handle.read(size))
                partial.replace(target)
            paths[name] = target
    labels = _queen_labels(paths, out / "voices.csv")
    return [Clip(paths[n], f"queen-{labels[n]}", "en") for n in sorted(paths) if n in labels]


SOURCES: dict[str, Source] = {s.name: s for s in (
    Source("tuxpaint", "tuxpaint-stamps-default", "GPL-2", _tuxpaint, split_group="v1"),
    Source("klettres", "klettres-data", "GPL-2+", _klettres, split_group="v1"),
    Source("hedgewars", "hedgewars-data", "GFDL-1.3", _hedgewars, split_group="v1"),
    Source("festvox-ru", "festvox-ru", "BSD-like (festvox-ru copyright)", _festvox_ru, split_group="v1"),
    Source("nexuiz", "nexuiz-data", "GPL-2+", _nexuiz),
    Source("megaglest", "megaglest-data", "CC-BY-SA-3.0", _megaglest, min_seconds=5.0),
    Source("gcin", "gcin-voice", "GPL-3 or LGPL-3 (*/3.ogg); CC-BY-3.0 (*/5.ogg)", _gcin),
    Source("queen", "flight-of-the-amazon-queen", "Flight-of-the-Amazon-Queen-License (freeware, redistributable)",
           _queen, native_rate=11025, opt_in=True),
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


def check_not_reserved(packages: Sequence[str]) -> None:
    """Refuse any package reserved for the independent test."""
    for package in packages:
        if any(package.startswith(r) for r in RESERVED_PACKAGES):
            raise CocktailError(f"{package}: is reserved for an independent test of the project and is never used")


def fetch_packages(packages: Sequence[str], cache: Path) -> dict[str, Path]:
    """Extracted roots of ``packages`` under ``cache``, fetching the missing ones."""
    check_not_reserved(packages)
    missing = [p for p in packages if not (cache / p / ".extracted").is_file()]
    if missing:
        if not FETCH_SCRIPT.is_file():
            raise CocktailError(f"{FETCH_SCRIPT}: missing; it fetches {', '.join(missing)} with apt-get")
        log.info("fetching %s into %s", ", ".join(missing), cache)
        done = subprocess.run(["bash", str(FETCH_SCRIPT), str(cache), *missing], capture_output=True, text=True)
        if done.returncode != 0:
            raise CocktailError(f"fetching {', '.join(missing)} failed: "
                                f"{(done.stderr.strip().splitlines() or ['no message'])[-1]}")
    return {p: cache / p for p in packages}


def _new_folder(out) -> Path:
    """``out`` as a Path, refused unless it is new or an empty folder (builds do not resume)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CocktailError(f"{out}: exists and is not an empty folder; choose a new --out")
    return out


def _package_version(root: Path) -> str:
    version = root / ".version"
    return version.read_text().strip() if version.is_file() else "unknown"


def _prepare_clip(job: tuple[str, int, float]) -> Optional[tuple[np.ndarray, float]]:
    """Decode, trim and check one clip: float32 ``(time,)`` at the corpus rate and its
    bandwidth, or None when it is too short, silent or band-limited."""
    path, sample_rate, min_bandwidth = job
    try:
        data, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as err:
        log.warning("%s: unreadable, skipped (%s)", path, err)
        return None
    samples = resample(data.mean(axis=1), rate, sample_rate)
    if not np.any(np.abs(samples) > 1e-4):
        return None
    samples = trim_silence(samples, sample_rate)
    if len(samples) < MIN_CLIP_SECONDS * sample_rate:
        return None
    width = bandwidth_hz(samples, sample_rate)
    if width < min_bandwidth * sample_rate / 2:
        return None
    return normalise(samples), width


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
    out = _new_folder(out)
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
            done = [r for r in pool.map(_prepare_clip, jobs_, chunksize=8) if r is not None]
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
    groups: dict[str, list[str]] = {}
    for speaker in kept:
        source = source_of[speaker]
        if speaker not in fixed:
            groups.setdefault(source.split_group or source.name, []).append(speaker)
    assignment = {speaker: split_name for group in sorted(groups) for speaker, split_name in
                  _split_persons([(s, source_of[s].name) for s in groups[group]], fractions, seed).items()}
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
        "packages": {s.package: {"version": _package_version(roots[s.package]), "licence": s.licence}
                     for s in chosen},
        "speakers": {s: {"split": assignment[s], "source": source_of[s].name,
                         "clips_dropped": dropped[s]} for s in sorted(kept)},
        "counts": counts,
        "build_seconds": round(time.monotonic() - start, 1),
    }
    _write_json(out / "corpus.json", meta)
    return meta


def cli_bandwidth(args) -> int:
    """``cocktail corpus bandwidth DIR``: see :func:`annotate_bandwidth`."""
    lowest = annotate_bandwidth(args.corpus, jobs=args.jobs, progress=progress_enabled(getattr(args, "quiet", False)))
    narrow = sorted(v for v, w in lowest.items() if w < 0.8 * args.sample_rate / 2) if args.sample_rate else []
    log.info("%s: bandwidth_hz written for %d voices%s", args.corpus, len(lowest),
             f"; narrower than 0.8 x Nyquist at {args.sample_rate} Hz: {', '.join(narrow) or 'none'}"
             if args.sample_rate else "")
    return 0


def _speaker_splits(corpus: Path) -> dict[str, str]:
    """Speaker -> split of a corpus folder's manifest.csv."""
    if not (corpus / "manifest.csv").is_file():
        raise CocktailError(f"--splits-like {corpus}: holds no manifest.csv (give a cocktail corpus real folder)")
    return {u.speaker: u.split for u in SpeakerCorpus.from_manifest(corpus, check_files=False).utterances}


def cli_real(args) -> int:
    """``cocktail corpus real``: see :func:`build_real_corpus`."""
    meta = build_real_corpus(
        args.out, sources=args.sources.split(",") if args.sources else DEFAULT_SOURCES,
        sample_rate=args.sample_rate, seed=args.seed, split=args.split, max_minutes=args.max_minutes,
        packages=Path(args.packages) if args.packages else None, jobs=args.jobs,
        progress=progress_enabled(getattr(args, "quiet", False)), splits_like=args.splits_like,
    )
    summary = ", ".join(f"{name} {c['speakers']} speakers / {c['hours']:.2f} h" for name, c in meta["counts"].items())
    log.info("%s: real-speech corpus ready in %.0f s: %s", args.out, meta["build_seconds"], summary)
    return 0


# --------------------------------------------------------------------------------------
# Real noise and music: ``cocktail corpus real-noise``
# --------------------------------------------------------------------------------------

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
    """Decode one recording (:func:`_prepare_clip`, no bandwidth check) and cut it into
    equal segments of at most ``max_seconds``, each at the noise level; [] when silent."""
    from .noise import RMS_DBFS

    path, sample_rate, max_seconds = job
    prepared = _prepare_clip((path, sample_rate, 0.0))
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

    from .noise import NOISE_FORMAT

    fractions = _parse_split(split)
    if max_seconds <= 0:
        raise CocktailError(f"max_seconds must be positive, got {max_seconds}")
    out = _new_folder(out)
    roots = fetch_packages(list(NOISE_SOURCES), Path(packages or DEFAULT_PACKAGE_CACHE))
    clips = [c for package, find in NOISE_SOURCES.items() for c in find(roots[package])]
    if not clips:
        raise CocktailError(f"no noise recordings found in {', '.join(map(str, roots.values()))}")
    taken: set[str] = set()
    names = [_noise_name(c, taken) for c in clips]
    record = {"format": NOISE_FORMAT, "kind": "real", "sample_rate": sample_rate, "seconds": max_seconds,
              "seed": seed, "split": list(fractions),
              "packages": {p: _package_version(r) for p, r in roots.items()}, "files": {}}
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


def cli_real_noise(args) -> int:
    """``cocktail corpus real-noise``: see :func:`build_real_noise`."""
    record = build_real_noise(args.out, sample_rate=args.sample_rate, seed=args.seed,
                              packages=Path(args.packages) if args.packages else None, jobs=args.jobs,
                              progress=progress_enabled(getattr(args, "quiet", False)))
    minutes = sum(f["seconds"] for f in record["files"].values()) / 60
    log.info("%s: real noise ready: %d files, %.1f min", args.out, len(record["files"]), minutes)
    return 0
