"""Speech sources packed in a game's archive: nexuiz (a zip, data.pk3), Warzone 2100 (a zip,
base.wz), 0 A.D. (a zip, public.zip) and Flight of the Amazon Queen (queen.1c, whose clips
name their speaker only in part, so voices label them).
Each ``find_*`` takes the extracted package root and returns its :class:`~.packages.Clip`
list; the clips are copied out of the archive once, beside it."""

from __future__ import annotations

import logging
import os
import re
import struct
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import soundfile

from ...core import atomic
from ...core.errors import CocktailError
from .packages import Clip

log = logging.getLogger("cocktailparty")


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


def _zip_clips(archive_path: Path, out: Path, speaker_of: Callable[[str], Optional[str]]) -> list[Clip]:
    """The members of the zip ``archive_path`` that ``speaker_of`` names a speaker for, as
    clips, each extracted once under ``out`` (soundfile cannot seek inside a zip member)."""
    import zipfile

    clips = []
    if not archive_path.is_file():
        return clips
    with zipfile.ZipFile(archive_path) as archive:
        for name in sorted(archive.namelist()):
            speaker = speaker_of(name)
            if speaker is None:
                continue
            target = out / name
            if not target.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic.write_bytes(target, archive.read(name))
            clips.append(Clip(target, speaker, "en"))
    return clips


def nexuiz_speaker(member: str) -> Optional[str]:
    """The speaker of a data.pk3 member: the player-model folder, or None when left out."""
    match = NEXUIZ_VOICE.fullmatch(member)
    if not match:
        return None
    return "nexuiz-" + ("torus" if match.group(2) else match.group(1))


def find_nexuiz(root: Path) -> list[Clip]:
    return _zip_clips(root / NEXUIZ_PK3, root / ".pk3", nexuiz_speaker)


# warzone2100-data: the game's data is one zip, base.wz; its speech is audio/**/*.ogg, mono
# Ogg Vorbis at 11025 Hz (a few effects are 16-22 kHz), so the source feeds 8 kHz corpora
# only (native_rate). The folders say what a clip is, not who speaks; the labels below were
# decided on 4.3.3-3 by folder, then checked by voice (Resemblyzer embeddings of every clip,
# :mod:`cocktailparty.data.voices`; the build itself needs no embeddings):
#  - announcer: the in-game voice (pcv*.ogg lines and the tutorial): audio/memressp/*
#    except cmndrvoc, audio/extra, audio/tutorial, audio/proxmessages. Every folder's mean
#    voice is 0.90-0.98 cosine to the whole group's (9.9 min of 11 kHz speech).
#  - countdown: audio/countdown (mission and detonation countdowns), one voice (members
#    0.88-0.96 to its mean, 0.53-0.63 to the announcer's).
#  - commander: audio/memressp/cmndrvoc (commander replies), audio/trnsppil (transport
#    pilot) and audio/vtoltalk (VTOL pilots): cmndrvoc+trnsppil join when the folders' mean
#    voices are clustered at the threshold calibrated for queen (cosine distance 0.1), and
#    vtoltalk's mean is at 0.90 to them, on that boundary: one label on the safe side (two
#    labels of one actor could meet in a mixture; one label of two cannot).
#  - collective: audio/coltive (the Collective's soldiers), a voice of its own (at most
#    0.79 to any other).
#  - taunt-a: audio/taunts/taunt1 and taunt3 (their means 0.91 apart: one actor, merged);
#    taunt-b: taunt2 (0.80-0.82 to them, median F0 216 Hz against 106 and 86 Hz).
#  Left out: audio/sfx and audio/radclick (effects); audio/nexus (NEXUS, a processed
#  machine voice, and its laughs); audio/multi (weapon names in several voices, most of them
#  22 kHz); sequenceaudio (the briefings' soundtracks: several voices in one file, no
#  labels); the taunts' laughs (haha*, hahaha*); and by voice, clips nearer another label
#  than their own or near none: pcv341, pcv355, pcv360 (0.45-0.52 to the announcer, under
#  0.6 to every label), countdown/mlaunch (0.66 to the countdown, 0.82 to the commander),
#  cmndrvoc/group (0.53 to the commander). Kept: 6 speakers, 12.8 min before the per-speaker cap.
WARZONE_ARCHIVE = "usr/share/games/warzone2100/base.wz"


WARZONE_FOLDERS = {
    "audio/extra": "announcer", "audio/tutorial": "announcer", "audio/proxmessages": "announcer",
    "audio/countdown": "countdown",
    "audio/memressp/cmndrvoc": "commander", "audio/trnsppil": "commander", "audio/vtoltalk": "commander",
    "audio/coltive": "collective",
    "audio/taunts/taunt1": "taunt-a", "audio/taunts/taunt3": "taunt-a", "audio/taunts/taunt2": "taunt-b",
}


WARZONE_LEFT_OUT = {"pcv341.ogg", "pcv355.ogg", "pcv360.ogg", "mlaunch.ogg", "group.ogg"}


WARZONE_LAUGH = re.compile(r"(?:ha)+\d\.ogg")


def warzone_label(member: str) -> Optional[str]:
    """The speaker label of a base.wz member (see above), or None when it is left out."""
    folder, _, name = member.rpartition("/")
    if not name.endswith(".ogg") or name in WARZONE_LEFT_OUT or WARZONE_LAUGH.fullmatch(name):
        return None
    if folder in WARZONE_FOLDERS:
        return WARZONE_FOLDERS[folder]
    # The announcer's lines are spread over audio/memressp/<topic>/ (cmndrvoc is matched above).
    return "announcer" if folder.startswith("audio/memressp/") and folder.count("/") == 2 else None


def find_warzone(root: Path) -> list[Clip]:
    # Like nexuiz: the chosen clips are extracted once into <root>/.wz/.
    def speaker(member: str) -> Optional[str]:
        label = warzone_label(member)
        return None if label is None else f"warzone-{label}"

    return _zip_clips(root / WARZONE_ARCHIVE, root / ".wz", speaker)


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
VOICE_MIN_CLIP = 1.0


def queen_entries(archive: Path) -> list[tuple[str, int, int]]:
    """``(name, offset, size)`` of every entry of a queen.1c archive (see above)."""
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
    from ..voices import VoiceEmbedder

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
    embeddings (one row per name), by :func:`.voices.label_by_voice`: the groups are Joe's
    clips (J, JOE*; the hero) and the P lines of each dialogue (<room><dialogue>: the other
    party of a dialogue is one character); clips whose names tell nothing (cutaways,
    *SSSS*, *XXXX*) join a voice only when clearly closest. Unsure clips are left out."""
    from ..voices import label_by_voice

    return label_by_voice(names, [queen_name_voice(n) for n in names], embeddings, "joe", threshold, min_member,
                          min_similarity, min_margin, min_group, min_size)


def _cached_voice_labels(source: str, clips: dict[str, Path], cache: Path,
                         labeller: Callable[[list[str], np.ndarray], dict[str, str]],
                         settings_of: Callable) -> dict[str, str]:
    """Clip name -> speaker label: ``labeller`` on Resemblyzer embeddings of the clips of
    :data:`VOICE_MIN_CLIP` seconds or more, cached in ``cache`` (a CSV) for the defaults of
    ``settings_of`` (the labelling function)."""
    import inspect

    settings = {k: v.default for k, v in inspect.signature(settings_of).parameters.items()
                if v.default is not inspect.Parameter.empty}
    tag = f"{source}-voices-1 min_clip={VOICE_MIN_CLIP} " + " ".join(f"{k}={v}" for k, v in settings.items())
    if cache.is_file():
        lines = cache.read_text().splitlines()
        if lines and lines[0] == f"# {tag}":
            return dict(line.split(",", 1) for line in lines[2:] if line)
    names = [n for n in sorted(clips) if soundfile.info(str(clips[n])).duration >= VOICE_MIN_CLIP]
    log.info("%s: telling %d clips apart by voice (Resemblyzer embeddings)", source, len(names))
    result = labeller(names, _embed_clip_files([clips[n] for n in names]))
    atomic.write_text(cache, f"# {tag}\nclip,label\n" + "".join(f"{n},{l}\n" for n, l in sorted(result.items())))
    return result


def find_queen(root: Path) -> list[Clip]:
    # The .SB entries are copied once out of queen.1c into <root>/.queen/<name>.mp3 (soundfile
    # reads MP3 from a file), then labelled by voice (queen_voice_labels, cached beside them).
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
                atomic.write_bytes(target, handle.read(size))
            paths[name] = target
    labels = _cached_voice_labels("queen", paths, out / "voices.csv", queen_voice_labels, queen_voice_labels)
    return [Clip(paths[n], f"queen-{labels[n]}", "en") for n in sorted(paths) if n in labels]


# beneath-a-steel-sky: the CD ("talkie") version of the game (BASS 0.0372) for ScummVM. Its
# data is two files: sky.dsk (every resource, back to back) and sky.dnr, its directory: a
# uint32 entry count, then 8 bytes an entry, little-endian: the file number (uint16), the
# offset (uint24; bit 23 set: in 16-byte units, the lower 23 bits), and the size with two
# flags (uint24: bits 0-21 the size in sky.dsk, bit 22 "the unpacked file has no header",
# bit 23 "stored, not packed"). A file starts with a 22-byte header of eleven uint16s (flag,
# x, y, width, height, sp_size, tot_size, n_sprites, offset_x, offset_y, compressed_size);
# a file not marked stored whose header flag has bit 7 set is RNC-packed (:mod:`.rnc`, from
# byte 22 on) to ((flag & 0xFF00) << 8 | tot_size) bytes, the header put back in front
# unless bit 22 says otherwise. Speech: the game's line <text number> (section = text >> 12,
# line = text & 0xFFF) is file SKY_SPEECH + SKY_SECTION_START[section] + line, unsigned 8-bit
# mono at 11025 Hz after the header (tot_size - 22 bytes); the CD intro's narration is files
# 59500+ kept with their header (sky_intro_voice; the whole file is played, its first 22
# bytes here dropped). The other files (sprites, palettes, the intro's background sounds
# 59494-59499, the sound-effect and music banks of 60200+, the scripts of SKY_MODULE_0+) are
# not speech. On 0.0372-8: 3491 lines and 87 intro files, every one RNC-packed, 119.5 min
# (115.6 min in clips of 1 s or more, each under 6 s). The clips are 11025 Hz: the source
# feeds 8 kHz corpora only (native_rate).
# Speakers: no file names. The game's scripts (SKY_MODULE_0 + n: a uint16 count, the
# scripts' start offsets, then the scripts' uint16 words) say who speaks a line: a push of the
# speaker (push_number (2) <compact id>, or push_variable (0) <variable * 4>), push_number
# <text number>, a push (the animation), call_mcode (11) with 3 arguments and fnSpeakMe,
# fnSpeakMeDir, fnSpeakWait or fnSpeakWaitDir (mcode 35-38, stored times 4). sky_speakers
# reads those calls: 2949 lines named: 1496 by variable 120, 1187 by CUR_ID (variable 12,
# the mega running the script: one group per script, 91 scripts with 3+ clips), 266 by a
# constant id (Joey, compact 1: 109). Variable 120 is not one voice (its clips are 0.65 /
# 0.78 cosine to their own mean at the 5th / 50th percentile, and every script group's mean
# is 0.8-0.9 to it): whoever Foster is talking to, so its lines count as unnamed. The groups
# are joined by voice (sky_voice_labels: queen's calibrated settings, no hero), then voices
# within the threshold of each other merged (Foster's scripts formed three at 0.94-0.96).
# Measured on 0.0372-8: 1230 of the 3278 clips of 1 s or more labelled, 7 voices of 26-729
# clips (1.1-23.4 min); the voices' means are 0.59-0.87 cosine to each other, 0.976-0.999
# between random halves of one voice's clips. v01 holds the CUR_ID scripts (Foster's, by
# the clip count; nobody has listened), v02 Joey's named lines (101) and 79 var120 lines.
SKY_FOLDER = "usr/share/scummvm/beneath-a-steel-sky"
SKY_HEADER = 22
SKY_SPEECH = 50000
SKY_SECTION_START = (0, 600, 1100, 2430, 3380, 4530, 5080, 5230)
SKY_MODULE_0 = 60400
SKY_SPEAK_MCODES = {35 * 4, 36 * 4, 37 * 4, 38 * 4}
SKY_CUR_ID_VAR = 12
SKY_INTRO = 59500


def sky_intro_voice(number: int, entry: tuple[int, int, int]) -> bool:
    """Whether a file is the CD intro's narration: 59500-59999 kept with its header (the
    intro's screens and animations there are headerless, its palettes stored)."""
    return SKY_INTRO <= number < SKY_INTRO + 500 and not entry[2] & 0xC00000


def sky_entries(dnr: Path) -> dict[int, tuple[int, int, int]]:
    """File number -> (offset in sky.dsk, size there, flags) of a sky.dnr directory."""
    data = dnr.read_bytes()
    if len(data) < 4:
        raise CocktailError(f"{dnr}: not a sky.dnr directory (too short)")
    count = struct.unpack("<I", data[:4])[0]
    if len(data) < 4 + 8 * count:
        raise CocktailError(f"{dnr}: table cut short ({count} entries announced)")
    entries = {}
    for i in range(count):
        raw = data[4 + 8 * i:12 + 8 * i]
        number = raw[0] | raw[1] << 8
        offset = int.from_bytes(raw[2:5], "little")
        flags = int.from_bytes(raw[5:8], "little")
        offset = (offset & 0x7FFFFF) << 4 if offset & 0x800000 else offset
        entries[number] = (offset, flags & 0x3FFFFF, flags)
    return entries


def sky_file(handle, entry: tuple[int, int, int]) -> bytes:
    """One file of sky.dsk (``handle``, opened binary) as the game loads it: unpacked when packed."""
    from .rnc import rnc_unpack

    offset, size, flags = entry
    handle.seek(offset)
    data = handle.read(size)
    if len(data) < size:
        raise CocktailError(f"sky.dsk: a file at {offset} runs past the end")
    if flags & 0x800000 or len(data) < SKY_HEADER or not data[0] & 0x80:
        return data
    unpacked = rnc_unpack(data[SKY_HEADER:])
    flag, tot_size = struct.unpack("<H10xH", data[:14])
    if len(unpacked) != ((flag & 0xFF00) << 8 | tot_size) - (0 if flags & 0x400000 else SKY_HEADER):
        raise CocktailError(f"sky.dsk: a file at {offset} unpacks to {len(unpacked)} bytes, not what its header says")
    return unpacked if flags & 0x400000 else data[:SKY_HEADER] + unpacked


def sky_speech_file(text: int) -> Optional[int]:
    """The file number of a line's speech (its text number: section << 12 | line)."""
    section = text >> 12
    return SKY_SPEECH + SKY_SECTION_START[section] + (text & 0xFFF) if section < len(SKY_SECTION_START) else None


def sky_speakers(modules: Sequence[bytes]) -> dict[int, str]:
    """Speech file number -> who speaks it, from the scripts' fnSpeak* calls (see above):
    ``id<compact>`` for a constant speaker, ``player`` for script variable 21, and
    ``script<module>.<n>`` for script n's current id (CUR_ID, variable 12: one mega runs a
    script). Lines said by more than one of these are left out."""
    said: dict[int, set[str]] = {}
    for module_no, module in enumerate(modules):
        words = np.frombuffer(module[:len(module) // 2 * 2], dtype="<u2")
        if len(words) < 10:
            continue
        starts = words[1:1 + int(words[0])].astype(np.int64)  # script n starts at words[n]
        # <push> speaker, push_number text, <push> anim, call_mcode 3 fnSpeak*
        hits = np.flatnonzero(np.isin(words[:-8], (0, 2)) & (words[2:-6] == 2) & np.isin(words[4:-4], (0, 2, 15))
                              & (words[6:-2] == 11) & (words[7:-1] == 3) & np.isin(words[8:], list(SKY_SPEAK_MCODES)))
        for i in hits:
            number = sky_speech_file(int(words[i + 3]))
            kind, value = int(words[i]), int(words[i + 1])
            if number is None:
                continue
            if kind == 2:
                who = f"id{value}"
            elif value == SKY_CUR_ID_VAR * 4:
                who = f"script{module_no}.{int(np.searchsorted(starts, i, side='right'))}"
            else:
                who = f"var{value // 4}"
            said.setdefault(number, set()).add(who)
    return {number: who.pop() for number, who in said.items() if len(who) == 1}


def sky_voice_labels(names: Sequence[str], embeddings: np.ndarray, speakers: dict[str, str],
                     threshold: float = 0.1, min_member: float = 0.6, min_similarity: float = 0.7,
                     min_margin: float = 0.05, min_group: int = 3, min_size: int = 20) -> dict[str, str]:
    """Speaker labels for Beneath a Steel Sky clips (their file numbers) from who the
    scripts say speaks them (``speakers``: name -> :func:`sky_speakers`' label) and their
    unit voice embeddings (one row per name), by :func:`.voices.label_by_voice` with queen's
    settings and no hero: each constant speaker id and each script's CUR_ID lines is a
    group; a line whose speaker is another script variable (var120: whoever Foster is
    talking to) is unnamed and joins a voice only when clearly closest; voices whose means
    come within ``threshold`` of each other are then one label. Unsure clips are left out."""
    from ..voices import agglomerate, label_by_voice, unit

    groups = [None if speakers.get(n, "var").startswith("var") else speakers[n] for n in names]
    labels = label_by_voice(names, groups, embeddings, None, threshold, min_member, min_similarity, min_margin,
                            min_group, min_size)
    # Foster speaks in many scripts; their groups can form two voices within the threshold of
    # each other (0.94-0.96 cosine on 0.0372-8, where other voices stay under 0.88): one label.
    row = {n: i for i, n in enumerate(names)}
    voices = sorted(set(labels.values()))
    if len(voices) < 2:
        return labels
    members = {v: [row[n] for n, l in labels.items() if l == v] for v in voices}
    merged = agglomerate(np.stack([unit(unit(embeddings[members[v]]).mean(axis=0)) for v in voices]), threshold)
    clips: dict[int, list[str]] = {}
    for voice, c in zip(voices, merged):
        clips.setdefault(int(c), []).extend(names[i] for i in members[voice])
    order = sorted(clips.values(), key=lambda c: (-len(c), min(c)))
    return {n: f"v{i + 1:02d}" for i, c in enumerate(order) for n in c}


def _write_u8_wav(path: Path, samples: bytes, rate: int) -> None:
    """Unsigned 8-bit mono samples, as they are, into a WAV file (written atomically)."""
    import io
    import wave

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(1)
        wav.setframerate(rate)
        wav.writeframes(samples)
    atomic.write_bytes(path, buffer.getvalue())


def find_sky(root: Path) -> list[Clip]:
    # The speech files are copied once out of sky.dsk into <root>/.sky/<number>.wav (8-bit
    # WAV, as stored), beside the script's speakers (speakers.csv), then labelled by voice
    # (sky_voice_labels, cached beside them).
    base, out = root / SKY_FOLDER, root / ".sky"
    done = out / ".done"
    if not done.is_file():
        if not (base / "sky.dnr").is_file():
            return []
        entries = sky_entries(base / "sky.dnr")
        speech = sorted(n for n in entries if SKY_SPEECH <= n < SKY_SPEECH + SKY_SECTION_START[-1] + 0x1000
                        or sky_intro_voice(n, entries[n]))
        modules = sorted(n for n in entries if SKY_MODULE_0 <= n < SKY_MODULE_0 + 16)
        out.mkdir(parents=True, exist_ok=True)
        with open(base / "sky.dsk", "rb") as handle:
            for number in speech:
                data = sky_file(handle, entries[number])
                if number >= SKY_INTRO:
                    samples = data[SKY_HEADER:]
                else:
                    samples = data[SKY_HEADER:int.from_bytes(data[12:14], "little")]
                _write_u8_wav(out / f"{number}.wav", samples, 11025)
            speakers = sky_speakers([sky_file(handle, entries[n]) for n in modules])
        atomic.write_text(out / "speakers.csv", "clip,speaker\n" + "".join(
            f"{n},{c}\n" for n, c in sorted(speakers.items())))
        atomic.write_text(done, "")
    paths = {p.stem: p for p in sorted(out.glob("*.wav"))}
    speakers = dict(line.split(",") for line in (out / "speakers.csv").read_text().splitlines()[1:])
    labels = _cached_voice_labels("sky", paths, out / "voices.csv",
                                  lambda names, e: sky_voice_labels(names, e, speakers), sky_voice_labels)
    return [Clip(paths[n], f"sky-{labels[n]}", "en") for n in sorted(paths) if n in labels]


# 0ad-data (0 A.D.): the game's data is one zip, mods/public/public.zip (3.26 GB: nearly all
# of the unpacked package). Its speech is the units' spoken replies,
# audio/voice/<lang>/civ/civ_<phenotype>_<line>_<n>.ogg: mono Ogg Vorbis at 44.1 kHz (4 at
# 48 kHz), full band (each voice's long-term spectrum reaches 12-17 kHz; over 4 kHz they hold
# as much of their energy as the other sources' voices). A unit speaks its civilisation's
# language (<lang>: greek, latin, napatan, persian; the templates name
# voice/{lang}/civ/civ_{phenotype}_*.xml) as a man or a woman (<phenotype>): one recorded
# voice per <lang>-<phenotype>. Checked on 0.0.26-1 by voice (Resemblyzer embeddings of
# every clip, :mod:`cocktailparty.data.voices`; the build itself needs no embeddings): the
# voices' means are 0.60-0.83 cosine to each other, against 0.93-0.97 between random halves
# of one voice's clips (5th percentile), and 92-100% of each voice's clips are nearer its own
# mean than any other's; median F0 213-247 Hz for the women, 109-171 Hz for the men. Against
# the other sources' voices (30 clips each) no mean comes over 0.90 (latin-female to
# klettres' en_GB and uk readers: 80% of her clips are nearer her own mean, 87-100% of
# theirs nearer theirs), where two different voices of those sources reach 0.90 (95th
# percentile): nobody is in the corpus twice. The lines are command replies ("attack",
# "gather together", "what is it?"), 0.4-3.0 s; 30 of the 165 kept clips are short calls
# (yes, hello, my lord, forward, ready: 20 s); no cries. Left out: greek-male (4 clips,
# 3.4 s, which do not agree with each other: halves 0.78), the dogs (audio/voice/global) and,
# by voice, clips nearer another voice than their own (ZEROAD_LEFT_OUT); the deaths
# (audio/actor/human/death) are cries. Kept: 7 speakers, 3.0 min at 16 kHz (8.5-54 s each).
# Licence: debian/copyright gives CC-BY-SA-3.0 for all of the game's data (Files: *).
ZEROAD_ARCHIVE = "usr/share/games/0ad/mods/public/public.zip"


ZEROAD_VOICES = {"greek-female", "latin-female", "latin-male", "napatan-female", "napatan-male",
                 "persian-female", "persian-male"}


# <lang>/<file>: each nearer another voice's mean than its own (0.73-0.81 to their own).
ZEROAD_LEFT_OUT = {"greek/civ_female_retreat_1.ogg", "greek/civ_female_retreat_2.ogg",
                   "latin/civ_female_go_out_against_1.ogg", "napatan/civ_female_herd_01.ogg",
                   "persian/civ_female_hello_1.ogg", "persian/civ_female_yes_1.ogg",
                   "persian/civ_male_hello_2.ogg"}


ZEROAD_LINE = re.compile(r"audio/voice/([a-z]+)/civ/civ_(female|male)_[^/]+\.ogg")


def zeroad_label(member: str) -> Optional[str]:
    """The voice of a public.zip member (``<lang>-<phenotype>``), or None when it is left out."""
    match = ZEROAD_LINE.fullmatch(member)
    if not match or f"{match.group(1)}/{member.rsplit('/', 1)[1]}" in ZEROAD_LEFT_OUT:
        return None
    label = f"{match.group(1)}-{match.group(2)}"
    return label if label in ZEROAD_VOICES else None


def find_0ad(root: Path) -> list[Clip]:
    # audio/voice/**.ogg (2 MB) is copied once out of public.zip into <root>/.voice/, then the
    # zip is deleted: nothing else of the 3.2 GB is read (delete <root> to fetch it again).
    # Every voice file is kept, so the labels above can change without a new fetch.
    archive, out = root / ZEROAD_ARCHIVE, root / ".voice"
    done = out / ".done"
    if not done.is_file():
        if not archive.is_file():
            return []
        _zip_clips(archive, out, lambda m: "" if m.startswith("audio/voice/") and m.endswith(".ogg") else None)
        out.mkdir(parents=True, exist_ok=True)
        atomic.write_text(done, "")
        archive.unlink()
        log.info("0ad-data: voice clips copied out of %s; the zip is deleted", archive.name)
    clips = []
    for path in sorted(out.glob("audio/voice/*/civ/*.ogg")):
        label = zeroad_label(path.relative_to(out).as_posix())
        if label:
            # The language is the game's name for it (its reconstructions of ancient tongues).
            clips.append(Clip(path, f"0ad-{label}", label.split("-")[0]))
    return clips
