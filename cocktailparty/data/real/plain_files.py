"""Speech sources whose packages hold audio files in folders; the speaker is told by the
folder or the file name. Each ``find_*`` takes the extracted package root and returns its
:class:`~.packages.Clip` list, sorted by path."""

from __future__ import annotations

import re
from pathlib import Path

from .packages import Clip


def find_tuxpaint(root: Path) -> list[Clip]:
    # Stamps carry a spoken description per language: NAME_desc_<lang>.ogg, NAME_desc.ogg
    # being English. The other .ogg files are the stamps' sound effects, not speech.
    clips = []
    for path in sorted(root.rglob("*_desc*.ogg")):
        match = re.fullmatch(r".*_desc(?:_([A-Za-z]{2,3}(?:_[A-Z]{2})?))?\.ogg", path.name)
        if match:
            language = match.group(1) or "en"
            clips.append(Clip(path, f"tuxpaint-{language}", language))
    return clips


def find_klettres(root: Path) -> list[Clip]:
    # usr/share/klettres/<lang>/{alpha,syllab}/*.ogg: one voice per language folder.
    base = root / "usr/share/klettres"
    return [Clip(p, f"klettres-{p.relative_to(base).parts[0]}", p.relative_to(base).parts[0])
            for p in sorted(base.glob("*/*/*.ogg"))]


# hedgewars-data: Data/Sounds/voices/<pack>/*.ogg, one voice per pack (Default_es etc. are
# other actors' translations of the Default pack), every pack the same line names. The packs
# share recordings; measured on 1.0.2-6 by file bytes and by a clip fingerprint as for
# megaglest (copies 1.0; every other same-named pair of two packs at most 0.87, but
# Default_ru's and Russian's 0.4 s Hmm at 0.94, both kept):
#  - Classic, left out: 21 of its 59 recordings are Default's (Cutitout, Drat, Flawless,
#    Flyaway, Hmm, Hurry, Kamikaze, Laugh, Leavemealone, Nooo, Oops, Ooff1-3, Ouch, Ow1-4,
#    Thisoneismine, Uh-oh; byte-identical but Flyaway, a re-encoding): Default is Classic
#    revised. Whose its other lines are cannot be told: slowed 2x (the packs are sped-up
#    voices, median F0 230-420 Hz) their mean Resemblyzer voice is 0.954 to Default's and
#    0.954 to Surfer's, 0.007 under Classic's own halves, where every other pair of packs
#    scores at least 0.024 under the lower of its two packs' halves. Kept, 12 s of the
#    corpus's Default (a test speaker) was also Classic's (a training speaker).
#  - a file whose bytes are in two packs is kept in Default when Default holds it (the
#    translations reuse its grunts: Default_uk's Firepunch3-6, Ooff1-3, Ouch, Uh-oh;
#    HillBilly's PoisonMoan), else left out of all (Default_pl's and Russian_pl's
#    PoisonCough and PoisonMoan); a file repeated within a pack is kept once (Default_uk's
#    Firepunch1 = Firepunch2).
HEDGEWARS_LEFT_OUT = {"Classic"}


def find_hedgewars(root: Path) -> list[Clip]:
    import hashlib

    base = root / "usr/share/games/hedgewars/Data/Sounds/voices"
    copies: dict[str, list[Path]] = {}
    for path in sorted(base.glob("*/*.ogg")):
        if path.parent.name not in HEDGEWARS_LEFT_OUT:
            copies.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), []).append(path)
    clips = []
    for paths in copies.values():
        packs = {p.parent.name for p in paths}
        pack = next(iter(packs)) if len(packs) == 1 else "Default" if "Default" in packs else None
        if pack is not None:
            language = pack.split("_")[1] if "_" in pack else ("ru" if pack == "Russian" else "en")
            clips.append(Clip(next(p for p in paths if p.parent.name == pack), f"hedgewars-{pack}", language))
    return sorted(clips, key=lambda c: c.path)


# festvox-ru ships its speaker's recordings (msu_ru_nsh_clunits/wav). The Indian festvox
# voices festvox-hi-nsk, festvox-mr-nsk and festvox-te-nsk do not (checked on 0.1-11, 0.1-11
# and 0.3.3-6): each holds only group/NSKlpc.group, one diphone database (index name
# DON_tamil_NSK) byte-identical in all three, 1799 diphones of 20th-order LPC frames and an
# 8-bit mu-law residual at 16 kHz, 6.6 min in all, median 0.18 s a unit (under the 0.25 s a
# clip needs). One speaker, not festvox-ru's (resynthesised, the diphones' mean voice is 0.61
# cosine to festvox-ru-nsh's; median F0 168 Hz against 128): not used.
def find_festvox_ru(root: Path) -> list[Clip]:
    return [Clip(p, "festvox-ru-nsh", "ru") for p in sorted(root.rglob("msu_ru_nsh_clunits/wav/*.wav"))]


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


def find_megaglest(root: Path) -> list[Clip]:
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


def find_gcin(root: Path) -> list[Clip]:
    # usr/share/gcin-voice/ogg/<zhuyin syllable>/{3,5}.ogg: the Mandarin syllables read by
    # two people, told apart by the file name, as debian/copyright does: */3.ogg Copyright
    # 2014 Edward Der-Hua Liu (GPL-3 or LGPL-3), */5.ogg "vocal source from Chu Lo"
    # (ChionMeilin, CC-BY-3). Measured on 0~20170223-3 (1200 and 1158 clips): median F0
    # 128 Hz for 3.ogg and 342 Hz for 5.ogg (autocorrelation, every 25th clip): two voices.
    # The speaker names (liu, lo) follow the copyright lines; 3.ogg's reader is not named.
    base = root / "usr/share/gcin-voice/ogg"
    names = {"3.ogg": "gcin-liu", "5.ogg": "gcin-lo"}
    return [Clip(p, names[p.name], "zh") for p in sorted(base.glob("*/*.ogg")) if p.name in names]


# codec2-examples: the speech samples of the Codec 2 project (usr/share/codec2/raw/*.raw:
# headerless 16-bit little-endian mono at 8000 Hz, which their wav/ copies' headers confirm
# to the sample; wav/*.wav). The source feeds 8 kHz corpora only (native_rate). Measured on
# 1.0.5-1 (copies by waveform correlation, voices by Resemblyzer embeddings):
#  - copies, left out: every wav/ file that has a raw/ twin; hts1*, hts2* (the first two 6 s
#    of hts.raw); ve9qrp_10s (the start of ve9qrp); wav/all.wav up to 47.5 s
#    (script/separate_all.sh: it chains hts1, hts2, morig, forig, ve9qrp, cq_ref, kristoff,
#    vk5qi, then a vk5dgr recording found nowhere else, kept).
#  - processed, left out: f2400, m2400 (forig, morig through the codec at 2400 bit/s).
#  - not speech: david4.wav, vk2tpm_004.wav, 700d_end_over, test_datac*, testframes_700d
#    (modem signals: their energy sits in 1-2 kHz with a flat envelope), sine*.
#  - too short, left out: morig, forig, mmt1, big_dog, cross (1.6-4 s each, speakers
#    unnamed); octave/*.raw are resampler test vectors; speech_orig_16k and wia_16kHz are
#    16 kHz (16 kHz models have better sources).
#  - labels: the callsigns and names the files carry (g3plx, vk5qi, vk5dgr = David Rowe,
#    ve9qrp, kristoff) are different people. hts.raw alternates two talkers in 6 s blocks
#    (0-6 s and 12-18 s: a man, median F0 about 100 Hz, the blocks' voices 0.83 cosine to
#    each other; 6-12 s and 18-24 s: a woman, F0 180-220 Hz, 0.83; 0.60-0.66 across), named
#    hts1 and hts2 after their hts1.raw and hts2.raw copies. cq_ref (a CQ call) names no
#    speaker and its voice is nearest kristoff's (0.74, where two named, different people
#    here reach 0.75): one label with kristoff, on the safe side (see megaglest above).
#  ve9qrp is an over-the-air HF recording: 112 s of one voice (its 10 s pieces 0.94-0.97
#  to each other) over audible band noise. Kept: 7 speakers, 3.2 min.
CODEC2_RATE = 8000


# (file under usr/share/codec2, start s, end s or None, label)
CODEC2_RECORDINGS = (
    ("raw/hts.raw", 0.0, 6.0, "hts1"), ("raw/hts.raw", 6.0, 12.0, "hts2"),
    ("raw/hts.raw", 12.0, 18.0, "hts1"), ("raw/hts.raw", 18.0, None, "hts2"),
    ("raw/kristoff.raw", 0.0, None, "kristoff"), ("raw/cq_ref.raw", 0.0, None, "kristoff"),
    ("raw/g3plx.raw", 0.0, None, "g3plx"), ("raw/vk5qi.raw", 0.0, None, "vk5qi"),
    ("wav/all.wav", 47.5, None, "vk5dgr"), ("raw/ve9qrp.raw", 0.0, None, "ve9qrp"),
)


# Long recordings are cut into pieces of about this length (at the quietest 20 ms within
# CODEC2_SLACK of each mark), so that the corpus's utterances stay short (join_clips only
# joins clips; it never cuts one).
CODEC2_PIECE, CODEC2_SLACK = 6.0, 1.5


def read_codec2_samples(path: Path):
    """float32 ``(time,)`` samples of a codec2 sample at :data:`CODEC2_RATE`: a .raw is
    headerless 16-bit little-endian mono (an odd trailing byte is dropped)."""
    import numpy as np
    import soundfile

    if path.suffix == ".raw":
        data = path.read_bytes()
        return np.frombuffer(data[:len(data) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0
    samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    if rate != CODEC2_RATE:
        raise ValueError(f"{path}: {rate} Hz, expected {CODEC2_RATE}")
    return samples.mean(axis=1)


def cut_at_pauses(samples, rate: int, piece: float = CODEC2_PIECE, slack: float = CODEC2_SLACK) -> list:
    """``samples`` cut into pieces of about ``piece`` seconds, each cut at the quietest 20 ms
    frame within ``slack`` seconds of its mark; a recording under ``piece + slack`` stays whole."""
    import numpy as np

    frame = int(0.02 * rate)
    pieces, start = [], 0
    while len(samples) - start > (piece + slack) * rate:
        lo, hi = start + int((piece - slack) * rate), start + int((piece + slack) * rate)
        window = samples[lo:hi][:(hi - lo) // frame * frame].reshape(-1, frame)
        cut = lo + int(np.argmin((window.astype(np.float64) ** 2).sum(axis=1))) * frame + frame // 2
        pieces.append(samples[start:cut])
        start = cut
    pieces.append(samples[start:])
    return pieces


def find_codec2(root: Path) -> list[Clip]:
    # The chosen stretches (CODEC2_RECORDINGS) are written once, cut into pieces, as 16-bit
    # WAV under <root>/.codec2/ (soundfile cannot read a headerless .raw by itself).
    import soundfile

    from ...core import atomic

    base, out = root / "usr/share/codec2", root / ".codec2"
    clips = []
    for index, (name, start, end, label) in enumerate(CODEC2_RECORDINGS):
        source = base / name
        if not source.is_file():
            continue
        stem = f"{index:02d}-{Path(name).stem}"
        done = out / f"{stem}.done"
        if not done.is_file():
            samples = read_codec2_samples(source)
            stretch = samples[int(start * CODEC2_RATE):None if end is None else int(end * CODEC2_RATE)]
            out.mkdir(parents=True, exist_ok=True)
            for number, piece in enumerate(cut_at_pauses(stretch, CODEC2_RATE)):
                soundfile.write(str(out / f"{stem}-{number:02d}.wav"), piece, CODEC2_RATE, subtype="PCM_16")
            atomic.write_text(done, "")
        clips += [Clip(p, f"codec2-{label}", "en") for p in sorted(out.glob(f"{stem}-*.wav"))]
    return clips
