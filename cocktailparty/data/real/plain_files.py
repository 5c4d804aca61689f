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


def find_hedgewars(root: Path) -> list[Clip]:
    # Data/Sounds/voices/<pack>/*.ogg: one actor per voice pack (Default_es etc. are other
    # actors' translations of the Default pack).
    base = root / "usr/share/games/hedgewars/Data/Sounds/voices"
    clips = []
    for path in sorted(base.glob("*/*.ogg")):
        pack = path.parent.name
        language = pack.split("_")[1] if "_" in pack else ("ru" if pack == "Russian" else "en")
        clips.append(Clip(path, f"hedgewars-{pack}", language))
    return clips


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
