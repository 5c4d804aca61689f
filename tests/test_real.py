"""The real-speech corpus (`cocktail corpus real`), bandwidth checks, and mixing corpora together."""

from __future__ import annotations

import csv
import random
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import butter, sosfilt

from cocktailparty.core.errors import CocktailError, DatasetLayoutError
from cocktailparty.data.speech_audio import bandwidth_hz
from cocktailparty.data.real import archives, build as real_build, noise as real_noise, packages, plain_files
from cocktailparty.data.speaker_corpus import SpeakerCorpus
from cocktailparty.data.mixing import DynamicMixer
from tests.helpers import write_manifest

RATE = 16000


def noise(seconds: float, rate: int, seed: int, cutoff: float | None = None) -> np.ndarray:
    """White noise, low-passed at ``cutoff`` Hz (steep) when given."""
    x = np.random.default_rng(seed).standard_normal(int(seconds * rate))
    if cutoff is not None:
        x = sosfilt(butter(16, cutoff, fs=rate, output="sos"), x)
    return (0.1 * x / np.abs(x).max()).astype(np.float32)


@pytest.mark.parametrize("cutoff", [3000.0, 5000.0])
def test_bandwidth_finds_a_lowpass_edge(cutoff):
    # A 16th-order Butterworth is 55 dB down within about 1.5 x its cutoff (96 dB per octave).
    width = bandwidth_hz(noise(2.0, RATE, 0, cutoff), RATE)
    assert cutoff <= width <= cutoff * 1.5


def test_bandwidth_of_full_band_noise_is_near_nyquist():
    assert bandwidth_hz(noise(2.0, RATE, 1), RATE) > 0.95 * RATE / 2


def test_bandwidth_of_a_resampled_narrow_recording_is_its_old_nyquist():
    from cocktailparty.core.audio import resample
    old = resample(noise(2.0, 8000, 2), 8000, RATE)  # an 8 kHz recording brought to 16 kHz
    assert 3500 < bandwidth_hz(old, RATE) < 4500


def test_join_clips_makes_utterances_of_the_asked_length_with_pauses():
    clips = [np.ones(int(0.8 * RATE), dtype=np.float32) for _ in range(10)]
    joined = real_build.join_clips(clips, RATE, 2.0, random.Random(0))
    # Three clips plus two pauses pass 2 s: 3 utterances of 3 clips, then one of 1.
    assert [int(np.count_nonzero(u)) for u in joined] == [3 * len(clips[0])] * 3 + [len(clips[0])]
    lo, hi = real_build.PAUSE_SECONDS
    for u in joined[:3]:
        pauses = len(u) - 3 * len(clips[0])
        assert 2 * lo * RATE <= pauses <= 2 * hi * RATE


@pytest.mark.parametrize("package", ["fillets-ng-data", "fillets-ng-data-cs", "asterisk-core-sounds-en-wav",
                                     "asterisk-prompt-fr", "ktuberling-data"])
def test_reserved_packages_are_refused_by_the_library_and_the_script(package, tmp_path):
    with pytest.raises(CocktailError, match="reserved"):
        packages.fetch_packages([package], tmp_path)
    done = subprocess.run(["bash", str(packages.FETCH_SCRIPT), str(tmp_path), package], capture_output=True, text=True)
    assert done.returncode == 2 and "reserved" in done.stderr
    assert not any(tmp_path.iterdir())


def _fake_package(cache: Path, name: str, speakers: dict[str, float | None], clips: int) -> None:
    """An 'extracted package' of ``clips`` noise clips per speaker, low-passed when asked."""
    root = cache / name
    for s_index, (speaker, cutoff) in enumerate(speakers.items()):
        (root / speaker).mkdir(parents=True)
        for c in range(clips):
            sf.write(str(root / speaker / f"{c}.ogg"), noise(1.0, 44100, 100 * s_index + c, cutoff), 44100)
    (root / ".extracted").touch()
    (root / ".version").write_text("1.0-1\n")


def _finder(prefix: str):
    """A Source.find for a _fake_package tree: a speaker per folder, named PREFIX-FOLDER."""
    return lambda root: [packages.Clip(p, f"{prefix}-{p.parent.name}", "xx") for p in sorted(root.glob("*/*.ogg"))]


@pytest.fixture()
def fake_source(tmp_path, monkeypatch):
    cache = tmp_path / "packages"
    speakers = {f"v{i}": None for i in range(8)}
    speakers["narrow"] = 3000.0  # every clip band-limited: the speaker must vanish
    _fake_package(cache, "fake-speech-data", speakers, clips=12)
    monkeypatch.setattr(real_build, "SOURCES",
                        {"fake": packages.Source("fake", "fake-speech-data", "CC0", _finder("fake"))})
    return cache


@pytest.mark.slow
def test_build_real_corpus_layout_splits_and_filters(fake_source, tmp_path):
    out = tmp_path / "corpus"
    meta = real_build.build_real_corpus(out, sources=["fake"], sample_rate=RATE, split="0.6,0.2,0.2",
                                  utterance_seconds=3.0, max_minutes=0.1, min_seconds=2.0,
                                  packages=fake_source, jobs=1, progress=False)
    assert meta["packages"] == {"fake-speech-data": {"version": "1.0-1", "licence": "CC0"}}
    assert "fake-narrow" not in meta["speakers"]
    with open(out / "manifest.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    speakers = {r["speaker"] for r in rows}
    assert speakers == {f"fake-v{i}" for i in range(8)}
    split_of: dict[str, set] = {}
    for r in rows:
        split_of.setdefault(r["speaker"], set()).add(r["split"])
        data, rate = sf.read(str(out / r["path"]))
        assert rate == RATE and data.ndim == 1
        assert abs(len(data) / RATE - float(r["duration"])) < 1e-3
        assert r["source"] == "fake" and r["licence"] == "CC0" and float(r["bandwidth_hz"]) > 6400
        rms_db = 10 * np.log10(np.mean(data ** 2))
        assert abs(rms_db - (-25.0)) < 0.5 or np.abs(data).max() > 0.95
    assert all(len(s) == 1 for s in split_of.values())  # disjoint by speaker
    assert sorted(sum(1 for s in split_of.values() if split in s) for split in ("train", "valid", "test")) \
        == [2, 2, 4]
    per_speaker = {s: sum(float(r["duration"]) for r in rows if r["speaker"] == s) for s in speakers}
    # max_minutes 0.1 = 6 s of clips, plus the pauses joined in between.
    assert all(6.0 <= d <= 6.0 + 6 * real_build.PAUSE_SECONDS[1] for d in per_speaker.values())
    corpus = SpeakerCorpus.open(out, split="train")
    assert len(corpus.speakers) == 4 and all(u.bandwidth_hz > 6400 for u in corpus.utterances)


@pytest.mark.slow
def test_build_real_corpus_refuses_a_used_folder_and_unknown_sources(fake_source, tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").touch()
    with pytest.raises(CocktailError, match="not an empty folder"):
        real_build.build_real_corpus(tmp_path / "used", sources=["fake"], packages=fake_source, progress=False)
    with pytest.raises(CocktailError, match="unknown source"):
        real_build.build_real_corpus(tmp_path / "new", sources=["nope"], packages=fake_source, progress=False)


# --- corpora mixed together -------------------------------------------------------------------


def _corpus(root: Path, prefix: str, speakers: int, bandwidth: float | None = None) -> Path:
    rows = []
    for s in range(speakers):
        speaker = f"{prefix}{s}"
        (root / "train" / speaker).mkdir(parents=True)
        for u in range(2):
            rel = f"train/{speaker}/{speaker}_{u}.flac"
            sf.write(str(root / rel), noise(1.5, 8000, 10 * s + u), 8000)
            rows.append(dict(utterance_id=f"{speaker}_{u}", path=rel, speaker=speaker, person=speaker,
                             split="train", duration=1.5, sample_rate=8000,
                             bandwidth_hz="" if bandwidth is None else bandwidth))
    write_manifest(root, rows)
    return root


@pytest.fixture()
def two_corpora(tmp_path):
    return (_corpus(tmp_path / "real", "r", 3, bandwidth=3900.0),
            _corpus(tmp_path / "tts", "t", 5, bandwidth=2000.0))


def _parts(mixer: DynamicMixer, items: int) -> np.ndarray:
    counts = np.zeros(2)
    for i in range(items):
        for source in mixer.plan(i).sources:
            counts[mixer.corpus.part_of_speaker[source.speaker]] += 1
    return counts


def test_corpus_weights_set_where_talkers_come_from(two_corpora):
    mixer = DynamicMixer(list(two_corpora), split="train", corpus_weights=[0.75, 0.25], segment=1.0,
                         sir=(0, 0), length=200, seed=3)
    assert len(mixer.corpus.speakers) == 8
    counts = _parts(mixer, 200)
    # 400 talkers at p = 0.75 (less the draws forced to the other corpus once one is used up).
    assert 0.65 < counts[0] / counts.sum() < 0.8
    only_tts = DynamicMixer(list(two_corpora), split="train", corpus_weights=[0, 1], segment=1.0, length=50)
    assert _parts(only_tts, 50)[0] == 0
    item = mixer[0]
    assert item["sources"].shape == (2, 8000)
    assert np.allclose(item["sources"].sum(0).numpy(), item["mixture"].numpy(), atol=1e-6)


def test_corpus_weights_are_checked(two_corpora):
    with pytest.raises(CocktailError, match="one non-negative weight per corpus"):
        DynamicMixer(list(two_corpora), split="train", corpus_weights=[1.0])
    with pytest.raises(CocktailError, match="one non-negative weight per corpus"):
        DynamicMixer(list(two_corpora), split="train", corpus_weights=[0, 0])


def test_union_refuses_one_speaker_name_in_two_corpora(two_corpora, tmp_path):
    again = _corpus(tmp_path / "again", "r", 1)
    with pytest.raises(DatasetLayoutError, match="distinct speaker names"):
        DynamicMixer([two_corpora[0], again], split="train")


def test_min_bandwidth_leaves_out_narrow_speech(two_corpora):
    # At 8 kHz, 0.8 x Nyquist is 3.2 kHz: the 2 kHz 'tts' corpus goes, the 3.9 kHz one stays.
    mixer = DynamicMixer(list(two_corpora), split="train", min_bandwidth=0.8, segment=1.0, length=20)
    assert {mixer.corpus.part_of_speaker[s] for s in mixer.corpus.speakers} == {0}
    with pytest.raises(DatasetLayoutError, match="narrower than"):
        DynamicMixer(two_corpora[1], split="train", min_bandwidth=0.8)


def test_annotate_bandwidth_writes_the_manifest(tmp_path):
    root = _corpus(tmp_path / "c", "s", 2)
    lowest = real_build.annotate_bandwidth(root, jobs=1, progress=False)
    assert set(lowest) == {"s0", "s1"} and all(w > 3800 for w in lowest.values())
    corpus = SpeakerCorpus.open(root)
    assert all(u.bandwidth_hz > 3800 for u in corpus.utterances)


# --- real noise and music (`cocktail corpus real-noise`) ---------------------------------

TUX = "usr/share/tuxpaint/stamps"
HW = "usr/share/games/hedgewars/Data"


@pytest.fixture()
def fake_noise_packages(tmp_path):
    """Tiny extracted tuxpaint-stamps-default and hedgewars-data trees: effects to keep, a
    25 s 'music' file to cut, and speech (descriptions, words, voices) to leave out."""
    cache = tmp_path / "packages"
    files = {
        "tuxpaint-stamps-default": {f"{TUX}/animals/cow.ogg": 1.0, f"{TUX}/animals/cow_desc.ogg": 1.0,
                                    f"{TUX}/animals/cow_desc_fr.ogg": 1.0, f"{TUX}/food/apple_red.ogg": 1.0,
                                    f"{TUX}/food/apple_pt.ogg": 1.0, f"{TUX}/food/apple_en_GB.ogg": 1.0,
                                    f"{TUX}/symbols/math/7.ogg": 1.0, f"{TUX}/vehicles/horn.ogg": 1.0},
        "hedgewars-data": {f"{HW}/Sounds/explosion.ogg": 1.0, f"{HW}/Sounds/gun.ogg": 1.0,
                           f"{HW}/Sounds/Droplet1.ogg": 1.0, f"{HW}/Sounds/Yoohoo.ogg": 1.0,
                           f"{HW}/Sounds/silent.ogg": 0.0, f"{HW}/Sounds/voices/Default/Boom.ogg": 1.0,
                           f"{HW}/Music/theme.ogg": 25.0},
    }
    for package, tree in files.items():
        for i, (name, seconds) in enumerate(tree.items()):
            path = cache / package / name
            path.parent.mkdir(parents=True, exist_ok=True)
            samples = noise(seconds, 22050, i) if seconds else np.zeros(22050, dtype=np.float32)
            sf.write(str(path), np.stack([samples, samples], axis=1), 22050)  # stereo: must come out mono
        (cache / package / ".extracted").touch()
        (cache / package / ".version").write_text("1.0-1\n")
    return cache


def test_real_noise_selection_leaves_out_speech(fake_noise_packages):
    tux = {c.path.name for c in real_noise._tuxpaint_noise(fake_noise_packages / "tuxpaint-stamps-default")}
    assert tux == {"cow.ogg", "apple_red.ogg", "horn.ogg"}
    hw = {c.path.name: c for c in real_noise._hedgewars_noise(fake_noise_packages / "hedgewars-data")}
    assert set(hw) == {"explosion.ogg", "gun.ogg", "Droplet1.ogg", "silent.ogg", "theme.ogg"}
    assert hw["theme.ogg"].kind == "music" and hw["Droplet1.ogg"].licence == "CC-BY-SA-3.0"


def test_build_real_noise_layout_segments_and_splits(fake_noise_packages, tmp_path):
    from cocktailparty.data.noise import NoiseFolder

    build = lambda out, seed: real_noise.build_real_noise(out, sample_rate=8000, seed=seed, split="0.4,0.3,0.3",
                                                    packages=fake_noise_packages, jobs=1, progress=False)
    record = build(tmp_path / "a", 0)
    files = record["files"]
    assert record["format"] == "cocktailparty-noise/1" and record["sample_rate"] == 8000
    originals = {f["original"].rsplit("/", 1)[-1] for f in files.values()}
    assert originals == {"cow.ogg", "apple_red.ogg", "horn.ogg", "explosion.ogg", "gun.ogg", "Droplet1.ogg",
                         "theme.ogg"}  # silent.ogg dropped
    music = sorted(p for p, f in files.items() if f["kind"] == "music")
    assert len(music) == 3 and len({p.split("/")[0] for p in music}) == 1  # 25 s: 3 segments, one split
    assert music[0].endswith("/hedgewars-theme-00.flac")
    for path, entry in files.items():
        data, rate = sf.read(str(tmp_path / "a" / path))
        assert rate == 8000 and data.ndim == 1 and len(data) <= 10.0 * 8000
        assert entry["licence"] == {"tuxpaint-stamps-default": "GPL-2"}.get(entry["package"], entry["licence"])
        assert abs(10 * np.log10(np.mean(data ** 2)) - (-25.0)) < 1.0
    assert {p.split("/")[0] for p in files} == {"train", "valid", "test"}
    assert sorted(p.name for p in (tmp_path / "a").rglob("*.flac")) == sorted(p.split("/")[1] for p in files)
    assert build(tmp_path / "b", 0)["files"].keys() == files.keys()  # deterministic in the seed
    assert len(NoiseFolder(tmp_path / "a", split="train")) == sum(p.startswith("train/") for p in files)


def test_cli_real_noise_writes_the_folder(fake_noise_packages, tmp_path):
    from cocktailparty.cli import main

    out = tmp_path / "noise"
    assert main(["corpus", "real-noise", "--out", str(out), "--packages", str(fake_noise_packages),
                 "--sample-rate", "8000", "-j", "1"]) == 0
    assert (out / "noise.json").is_file() and any(out.glob("train/*.flac"))


# --- the later sources: nexuiz, megaglest, gcin; split stability -------------------------


def _ogg(path: Path, seconds: float = 0.5, seed: int = 0, rate: int = 22050) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), noise(seconds, rate, seed), rate, format="WAV" if path.suffix == ".wav" else "OGG")


def _ogg_zip(path: Path, names: list[str], rate: int):
    """A game archive (zip) holding a 0.5-s OGG noise clip under each of ``names``; returned
    open for writing, so a test may add other members."""
    import io
    import zipfile

    path.parent.mkdir(parents=True)
    archive = zipfile.ZipFile(path, "w")
    for i, name in enumerate(names):
        buffer = io.BytesIO()
        sf.write(buffer, noise(0.5, rate, i), rate, format="OGG")
        archive.writestr(name, buffer.getvalue())
    return archive


def test_nexuiz_reads_player_voices_from_the_pk3(tmp_path):

    root = tmp_path / "nexuiz-data"
    inside = ["sound/player/fricka/coms/taunt1.ogg", "sound/player/fricka/player/pain25.ogg",
              "sound/player/torus/attack.ogg", "sound/announcer/male/impressive.ogg",
              "sound/announcer/robotic/1.ogg", "sound/tutorial/1-welcome.ogg", "sound/weapons/nexfire.ogg"]
    _ogg_zip(root / archives.NEXUIZ_PK3, inside, 22050).close()
    clips = archives.find_nexuiz(root)
    by_name = {c.path.relative_to(root / ".pk3").as_posix(): c.speaker for c in clips}
    # The announcer is the torus voice (nexuiz-credits.txt); the robot, tutorial and effects are left out.
    assert by_name == {"sound/player/fricka/coms/taunt1.ogg": "nexuiz-fricka",
                       "sound/player/fricka/player/pain25.ogg": "nexuiz-fricka",
                       "sound/player/torus/attack.ogg": "nexuiz-torus",
                       "sound/announcer/male/impressive.ogg": "nexuiz-torus"}
    assert all(sf.info(str(c.path)).samplerate == 22050 and c.language == "en" for c in clips)
    assert [c.path for c in archives.find_nexuiz(root)] == [c.path for c in clips]  # extracted once, found again


def test_megaglest_keeps_human_voice_lines_and_merges_copies(tmp_path):
    root = tmp_path / "megaglest-data"
    base = root / "usr/share/games/megaglest/techs/megapack"
    files = ["commondata/sounds/archer_ack1.wav", "commondata/sounds/archer_select2.wav",
             "commondata/sounds/archer_attack1.wav",  # an effect, not a line
             "commondata/sounds/cow_ack1.wav", "commondata/sounds/golem_select1.wav",  # animal, monster
             "commondata/sounds/horseman_ack1.wav",
             "factions/indian/units/horseman/sounds/horseman_ack3.wav",  # a copy of the common horseman
             "factions/norsemen/units/swordman/sounds/swordman_ack1.wav",
             "factions/norsemen/units/swordman_berserk/sounds/swordman_ack1.wav",  # processed copy
             "factions/norsemen/units/spearman/sounds/swordman_select1.wav",  # named after the swordman
             "factions/magic/units/dragon/sounds/dragon_ack1.wav",
             "factions/persian/units/princess/sounds/princess_select1.wav",
             "factions/persian/units/princess/sounds/knife1.wav"]
    for i, name in enumerate(files):
        _ogg(base / name, seed=i)
    speakers = {c.path.relative_to(base).as_posix(): c.speaker for c in plain_files.find_megaglest(root)}
    assert speakers == {
        "commondata/sounds/archer_ack1.wav": "megaglest-common-archer",
        "commondata/sounds/archer_select2.wav": "megaglest-common-archer",
        "commondata/sounds/horseman_ack1.wav": "megaglest-horseman",
        "factions/indian/units/horseman/sounds/horseman_ack3.wav": "megaglest-horseman",
        "factions/norsemen/units/swordman/sounds/swordman_ack1.wav": "megaglest-norsemen-swordman",
        "factions/norsemen/units/spearman/sounds/swordman_select1.wav": "megaglest-norsemen-swordman",
        "factions/persian/units/princess/sounds/princess_select1.wav": "megaglest-persian-princess"}


def test_hedgewars_leaves_out_classic_and_the_recordings_packs_share(tmp_path):
    import shutil

    root = tmp_path / "hedgewars-data"
    voices = root / HW / "Sounds/voices"
    own = {"Classic": ["Amazing", "Drat"], "Default": ["Amazing", "Drat", "Ouch", "PoisonMoan"],
           "Default_uk": ["Amazing", "Firepunch1"], "HillBilly": ["Amazing"],
           "Default_pl": ["PoisonCough"], "Russian": ["Amazing"]}
    for i, (pack, lines) in enumerate(sorted(own.items())):
        for j, line in enumerate(lines):
            _ogg(voices / pack / f"{line}.ogg", seed=10 * i + j)
    copies = {"Classic/Drat": "Default/Drat", "Default_uk/Ouch": "Default/Ouch",  # borrowed from Default
              "HillBilly/PoisonMoan": "Default/PoisonMoan", "Default_uk/Firepunch2": "Default_uk/Firepunch1",
              "Russian_pl/PoisonCough": "Default_pl/PoisonCough"}  # shared by two other packs: whose is unknown
    for copy, original in copies.items():
        (voices / copy).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(voices / f"{original}.ogg", voices / f"{copy}.ogg")
    clips = plain_files.find_hedgewars(root)
    assert [(c.path.relative_to(voices).as_posix(), c.speaker, c.language) for c in clips] == [
        ("Default/Amazing.ogg", "hedgewars-Default", "en"), ("Default/Drat.ogg", "hedgewars-Default", "en"),
        ("Default/Ouch.ogg", "hedgewars-Default", "en"), ("Default/PoisonMoan.ogg", "hedgewars-Default", "en"),
        ("Default_uk/Amazing.ogg", "hedgewars-Default_uk", "uk"),
        ("Default_uk/Firepunch1.ogg", "hedgewars-Default_uk", "uk"),
        ("HillBilly/Amazing.ogg", "hedgewars-HillBilly", "en"), ("Russian/Amazing.ogg", "hedgewars-Russian", "ru")]


def test_gcin_tells_the_two_readers_apart_by_file_name(tmp_path):
    root = tmp_path / "gcin-voice"
    base = root / "usr/share/gcin-voice/ogg"
    for i, syllable in enumerate(["ㄇㄚ", "ㄊㄢ3"]):
        _ogg(base / syllable / "3.ogg", seed=2 * i)
        _ogg(base / syllable / "5.ogg", seed=2 * i + 1)
    clips = plain_files.find_gcin(root)
    assert sorted((c.path.parent.name, c.path.name, c.speaker) for c in clips) == [
        ("ㄇㄚ", "3.ogg", "gcin-liu"), ("ㄇㄚ", "5.ogg", "gcin-lo"),
        ("ㄊㄢ3", "3.ogg", "gcin-liu"), ("ㄊㄢ3", "5.ogg", "gcin-lo")]
    assert {c.language for c in clips} == {"zh"}


def test_real_sources_table_is_complete_and_spares_the_reserved_packages():
    assert {"nexuiz", "megaglest", "gcin"} <= set(real_build.SOURCES)
    assert [n for n, s in real_build.SOURCES.items() if s.split_group == "v1"] == \
        ["tuxpaint", "klettres", "hedgewars", "festvox-ru"]
    packages.check_not_reserved([s.package for s in real_build.SOURCES.values()])


@pytest.fixture()
def two_fake_sources(tmp_path, monkeypatch):
    """An 'old' source (split group v1, 9 speakers) and a 'new' one (its own group, 10)."""
    cache = tmp_path / "packages"
    _fake_package(cache, "old-speech-data", {f"o{i}": None for i in range(9)}, clips=6)
    _fake_package(cache, "new-speech-data", {f"n{i}": None for i in range(10)}, clips=2)

    monkeypatch.setattr(real_build, "SOURCES", {
        "old": packages.Source("old", "old-speech-data", "CC0", _finder("old"), split_group="v1"),
        "new": packages.Source("new", "new-speech-data", "CC0", _finder("new"), min_seconds=1.5)})
    return cache


@pytest.mark.slow
def test_adding_a_source_moves_no_speaker_of_the_old_ones(two_fake_sources, tmp_path):
    def build(out, sources, **kw):
        real_build.build_real_corpus(out, sources=sources, sample_rate=RATE, utterance_seconds=2.0, min_seconds=3.0,
                               packages=two_fake_sources, jobs=1, progress=False, **kw)
        with open(out / "manifest.csv", encoding="utf-8") as handle:
            return {r["utterance_id"]: r for r in csv.DictReader(handle)}

    before = build(tmp_path / "v1", ["old"])
    after = build(tmp_path / "v2", ["old", "new"])
    old = {u: r["split"] for u, r in after.items() if r["source"] == "old"}
    assert old == {u: r["split"] for u, r in before.items()}  # same speakers, utterances and splits
    for u, r in before.items():
        assert np.array_equal(sf.read(str(tmp_path / "v1" / r["path"]))[0],
                              sf.read(str(tmp_path / "v2" / after[u]["path"]))[0])
    # The new source's 2 s speakers pass its own floor (1.5 s, under min_seconds) and are split
    # among themselves, into every split, disjoint by speaker.
    new = {}
    for r in after.values():
        if r["source"] == "new":
            new.setdefault(r["speaker"], set()).add(r["split"])
    assert len(new) == 10 and all(len(s) == 1 for s in new.values())
    assert {next(iter(s)) for s in new.values()} == {"train", "valid", "test"}
    # Split on their own, the new speakers get the splits a corpus of the new source alone gets.
    alone = build(tmp_path / "new-only", ["new"])
    assert {r["speaker"]: r["split"] for r in alone.values()} == {s: next(iter(v)) for s, v in new.items()}


@pytest.mark.slow
def test_splits_like_keeps_another_corpus_splits(fake_source, tmp_path):
    def build(out, seed, **kw):
        real_build.build_real_corpus(out, sources=["fake"], sample_rate=RATE, seed=seed, utterance_seconds=3.0,
                               max_minutes=0.1, min_seconds=2.0, packages=fake_source, jobs=1, progress=False, **kw)
        with open(out / "manifest.csv", encoding="utf-8") as handle:
            return {r["speaker"]: r["split"] for r in csv.DictReader(handle)}

    reference = build(tmp_path / "a", seed=0)
    assert build(tmp_path / "b", seed=5) != reference  # another seed moves speakers...
    assert build(tmp_path / "c", seed=5, splits_like=tmp_path / "a") == reference  # ...unless told not to
    # Speakers the reference lacks are split among themselves; the others keep their split.
    partial = tmp_path / "partial"
    partial.mkdir()
    with open(tmp_path / "a" / "manifest.csv", encoding="utf-8") as handle:
        lines = handle.readlines()
    newcomers = {"fake-v0", "fake-v1", "fake-v2", "fake-v3"}
    (partial / "manifest.csv").write_text("".join([lines[0]] + [ln for ln in lines[1:]
                                                                if ln.split(",")[2] not in newcomers]))
    mixed = build(tmp_path / "d", seed=5, splits_like=partial)
    assert {s: mixed[s] for s in reference if s not in newcomers} == \
        {s: reference[s] for s in reference if s not in newcomers}
    assert newcomers <= set(mixed) and {"train", "valid", "test"} >= {mixed[s] for s in newcomers}
    with pytest.raises(CocktailError, match="holds no manifest.csv"):
        build(tmp_path / "e", seed=0, splits_like=tmp_path / "nowhere")


def test_a_left_out_label_keeps_its_place_in_the_split_draw(fake_source, tmp_path, monkeypatch):
    """Leaving a label out (hedgewars' Classic) must not move the other speakers of its group:
    the benchmarks' test speakers would change people."""
    def build(out, finder, placeholders=()):
        source = packages.Source("fake", "fake-speech-data", "CC0", finder, split_placeholders=placeholders)
        monkeypatch.setattr(real_build, "SOURCES", {"fake": source})
        real_build.build_real_corpus(out, sources=["fake"], sample_rate=RATE, seed=3, utterance_seconds=3.0,
                                     max_minutes=0.1, min_seconds=2.0, packages=fake_source, jobs=1, progress=False)
        with open(out / "manifest.csv", encoding="utf-8") as handle:
            return {r["speaker"]: r["split"] for r in csv.DictReader(handle)}

    everyone = build(tmp_path / "all", _finder("fake"))
    without_v5 = lambda root: [c for c in _finder("fake")(root) if c.speaker != "fake-v5"]  # noqa: E731
    assert build(tmp_path / "held", without_v5, ("fake-v5",)) == {s: v for s, v in everyone.items() if s != "fake-v5"}
    # Without the placeholder the draw is over fewer speakers and, with this seed, moves some.
    assert build(tmp_path / "moved", without_v5) != {s: v for s, v in everyone.items() if s != "fake-v5"}


# --------------------------------------------------------------------------------------
# Flight of the Amazon Queen: queen.1c, labels by voice, 11 kHz sources
# --------------------------------------------------------------------------------------

def _queen_archive(path: Path, entries: dict[str, bytes]) -> None:
    """A queen.1c laid out like the real one: QTBL, version tag, count, 21-byte entries."""
    import struct

    table, data = b"", b""
    start = 15 + 21 * len(entries)
    for name, blob in entries.items():
        table += name.encode().ljust(12, b"\0") + struct.pack(">BII", 1, start + len(data), len(blob))
        data += blob
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"QTBL" + b"CEM10" + b"\0\0\0\1" + struct.pack(">H", len(entries)) + table + data)


def _mp3(seconds: float, seed: int) -> bytes:
    import io
    buffer = io.BytesIO()
    sf.write(buffer, noise(seconds, 11025, seed), 11025, format="MP3")
    return buffer.getvalue()


def test_queen_entries_reads_the_table(tmp_path):
    archive = tmp_path / "queen.1c"
    _queen_archive(archive, {"JOE00011.SB": b"abc", "AND1.DOG": b"defgh"})
    assert archives.queen_entries(archive) == [("JOE00011.SB", 15 + 42, 3), ("AND1.DOG", 15 + 42 + 3, 5)]
    archive.write_bytes(b"XXXX" + archive.read_bytes()[4:])
    with pytest.raises(CocktailError, match="QTBL"):
        archives.queen_entries(archive)


def test_queen_name_voice_reads_who_speaks_from_the_name():
    assert archives.queen_name_voice("JOE00511.SB") == "joe"
    assert archives.queen_name_voice("020006J1.SB") == "joe"
    assert archives.queen_name_voice("0303AAP3.SB") == "P:0303"
    assert archives.queen_name_voice("1012SSSS.SB") is None and archives.queen_name_voice("35XXXXJ1.SB") == "joe"
    assert archives.queen_name_voice("57XXXXP1.SB") is None
    assert archives.queen_name_voice("C100A032.SB") is None and archives.queen_name_voice("18SSSSSS.SB") is None


def _voices(seed: int, count: int, dim: int = 64) -> np.ndarray:
    """``count`` unit 'voices', nearly orthogonal, and a helper to draw clips around them."""
    v = np.random.default_rng(seed).standard_normal((count, dim))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _around(voice: np.ndarray, n: int, seed: int, spread: float = 0.15) -> np.ndarray:
    x = voice + spread * np.random.default_rng(seed).standard_normal((n, len(voice))) / np.sqrt(len(voice))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_queen_voice_labels_merges_dialogues_and_drops_what_is_unsure():
    joe, anna, bob, small = _voices(0, 4)
    rows: list[tuple[str, np.ndarray]] = []
    rows += [(f"JOE{i:04d}1.SB", e) for i, e in enumerate(_around(joe, 30, 1))]
    rows += [(f"0100{i:02X}P1.SB", e) for i, e in enumerate(_around(anna, 15, 2))]   # anna, dialogue 0100
    rows += [(f"0701{i:02X}P1.SB", e) for i, e in enumerate(_around(anna, 15, 3))]   # anna again, 0701
    rows += [(f"0200{i:02X}P1.SB", e) for i, e in enumerate(_around(bob, 25, 4))]    # bob
    rows += [(f"0300{i:02X}P1.SB", e) for i, e in enumerate(_around(joe, 25, 5))]    # a P that sounds like Joe
    rows += [(f"0400{i:02X}P1.SB", e) for i, e in enumerate(_around(small, 5, 6))]   # too few for a voice
    rows += [("0100FFP1.SB", _around(bob, 1, 7)[0])]                                 # a third party in 0100
    rows += [(f"C10{i}A011.SB", e) for i, e in enumerate(_around(bob, 3, 8))]        # unnamed, bob's voice
    mixed = (anna + bob) / np.linalg.norm(anna + bob)
    rows += [("C200A011.SB", mixed)]                                                 # between two voices
    names = [n for n, _ in rows]
    labels = archives.queen_voice_labels(names, np.stack([e for _, e in rows]), threshold=0.3, min_member=0.6,
                                     min_similarity=0.7, min_margin=0.05, min_group=3, min_size=20)
    by_label: dict[str, set] = {}
    for name, label in labels.items():
        by_label.setdefault(label, set()).add(name)
    assert set(by_label) == {"joe", "v01", "v02"}
    assert by_label["joe"] == {n for n in names if n.startswith("JOE")}
    assert by_label["v01"] == {n for n in names if n[:4] in ("0100", "0701")} - {"0100FFP1.SB"}  # anna: 30 clips
    assert by_label["v02"] == {n for n in names if n[:4] == "0200"} | {f"C10{i}A011.SB" for i in range(3)}
    assert not any(n[:4] in ("0300", "0400") for n in labels)  # Joe-like P lines, a 5-clip voice
    assert "0100FFP1.SB" not in labels and "C200A011.SB" not in labels


def test_queen_reads_speech_from_queen_1c_and_labels_it(tmp_path, monkeypatch):
    root = tmp_path / "flight-of-the-amazon-queen"
    joe, anna = _voices(1, 2)
    voice_of = {**{f"JOE{i:04d}1.SB": joe for i in range(4)}, **{f"0100{i:02X}P1.SB": anna for i in range(4)}}
    entries = {name: _mp3(1.2, i) for i, name in enumerate(voice_of)}
    entries["0100AAP1.SB"] = _mp3(0.5, 99)   # under a second: never labelled
    entries["AND1.DOG"] = b"not speech"
    _queen_archive(root / archives.QUEEN_ARCHIVE, entries)
    calls = []

    def fake_embed(paths):
        calls.append(len(paths))
        return np.stack([voice_of[p.stem + ".SB"] for p in paths])

    monkeypatch.setattr(archives, "_embed_clip_files", fake_embed)
    monkeypatch.setattr(archives, "queen_voice_labels",
                        lambda names, e: {n: ("joe" if n.startswith("JOE") else "v01") for n in names})
    clips = archives.find_queen(root)
    assert sorted((c.path.name, c.speaker) for c in clips) == sorted(
        (n.replace(".SB", ".mp3"), "queen-joe" if n.startswith("JOE") else "queen-v01") for n in voice_of)
    assert calls == [8] and {c.language for c in clips} == {"en"}
    data, rate = sf.read(str(clips[0].path))
    assert rate == 11025 and len(data) > 11025
    assert len(archives.find_queen(root)) == 8 and calls == [8]  # the labels are cached beside the clips


@pytest.mark.slow
def test_a_source_recorded_at_11khz_feeds_8khz_corpora_only(tmp_path, monkeypatch, caplog):
    import logging

    cache = tmp_path / "packages"
    _fake_package(cache, "game-speech-data", {f"g{i}": None for i in range(4)}, clips=4)
    _fake_package(cache, "wide-speech-data", {f"w{i}": None for i in range(4)}, clips=4)

    monkeypatch.setattr(real_build, "SOURCES", {
        "wide": packages.Source("wide", "wide-speech-data", "CC0", _finder("wide")),
        "game": packages.Source("game", "game-speech-data", "CC0", _finder("game"), native_rate=11025)})
    kw = dict(utterance_seconds=2.0, min_seconds=2.0, packages=cache, jobs=1, progress=False)
    meta = real_build.build_real_corpus(tmp_path / "c8", sources=["wide", "game"], sample_rate=8000, **kw)
    assert {v["source"] for v in meta["speakers"].values()} == {"wide", "game"}
    with caplog.at_level(logging.INFO, logger="cocktailparty"):
        meta = real_build.build_real_corpus(tmp_path / "c16", sources=["wide", "game"], sample_rate=16000, **kw)
    assert {v["source"] for v in meta["speakers"].values()} == {"wide"}
    assert "game-speech-data" not in meta["packages"] and meta["parameters"]["sources"] == ["wide"]
    assert "game: recorded at 11025 Hz, cannot feed a 16000 Hz corpus: skipped" in caplog.text
    with pytest.raises(CocktailError, match="can feed a 16000 Hz"):
        real_build.build_real_corpus(tmp_path / "c16b", sources=["game"], sample_rate=16000, **kw)


def test_voice_front_end_and_agglomerate():
    from cocktailparty.data import voices

    tone = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000).astype(np.float32)
    frames = voices.mel_frames(tone)
    assert frames.shape == (101, voices.N_MELS)  # 10 ms steps, centred windows
    assert abs(int(np.argmax(frames.mean(axis=0))) - int(np.argmax(voices._mel_filters()[:, 25]))) <= 1
    a, b = _voices(3, 2)
    rows = np.concatenate([_around(a, 4, 1), _around(b, 3, 2)])
    assert voices.agglomerate(rows, 0.3).tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert voices.agglomerate(rows, 1.5).tolist() == [0] * 7


# --------------------------------------------------------------------------------------
# Beneath a Steel Sky: sky.dnr + sky.dsk, RNC-packed files, speakers from the scripts
# --------------------------------------------------------------------------------------

# A known pair, packed by another RNC method-1 packer (the propack package, from PyPI): the
# literal runs, matches (the repeated words) and both CRCs of a real stream.
RNC_RAW = (b"Beneath a Steel Sky, Beneath a Steel Sky! " + bytes(range(0, 256, 9)) + b"sky sky sky sky")
RNC_PACKED = bytes.fromhex(
    "524e4301000000560000004a12f1b21a00019c19100139002220620200440a00bc8142656e65617468206120537465656c"
    "6b792c20e8086c9d21200009121b242d363f48515a636c757e879099a2abb4bdc6cfd8e1eaf3fc73206500")


def test_rnc_unpacks_a_known_stream_and_refuses_a_damaged_one():
    from cocktailparty.data.real import rnc

    assert rnc.rnc_sizes(RNC_PACKED) == (len(RNC_RAW), len(RNC_PACKED) - rnc.RNC_HEADER)
    assert rnc.rnc_unpack(RNC_PACKED) == RNC_RAW
    assert rnc.crc16(b"123456789") == 0xBB3D  # CRC-16/ARC's check value
    damaged = bytearray(RNC_PACKED)
    damaged[40] ^= 0x10
    with pytest.raises(rnc.RncError, match="CRC"):
        rnc.rnc_unpack(bytes(damaged))
    with pytest.raises(rnc.RncError, match="cut short"):
        rnc.rnc_unpack(RNC_PACKED[:60])
    with pytest.raises(rnc.RncError, match="not an RNC"):
        rnc.rnc_unpack(b"RNC\x02" + RNC_PACKED[4:])


def _sky_header(flag: int, tot_size: int) -> bytes:
    import struct
    return struct.pack("<11H", flag, 0, 0, 0, 0, 0, tot_size & 0xFFFF, 0, 0, 0, 0)


def _sky_speech(samples: bytes) -> tuple[bytes, int]:
    """A stored speech file: header (tot_size = 22 + samples) and 8-bit samples; dnr flags."""
    return _sky_header(0, 22 + len(samples)) + samples, 0x800000


def _sky_data(folder: Path, files: dict[int, tuple[bytes, int]]) -> None:
    """sky.dnr + sky.dsk laid out like the CD version's: ``files`` maps a file number to its
    bytes in sky.dsk and its dnr flag bits; every other file's offset is in 16-byte units."""
    import struct

    table, dsk = b"", bytearray()
    for i, (number, (blob, flags)) in enumerate(files.items()):
        while len(dsk) % 16:
            dsk.append(0xEE)
        offset = len(dsk) >> 4 | 0x800000 if i % 2 else len(dsk)
        table += struct.pack("<H", number) + offset.to_bytes(3, "little") + (len(blob) | flags).to_bytes(3, "little")
        dsk += blob
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sky.dnr").write_bytes(struct.pack("<I", len(files)) + table)
    (folder / "sky.dsk").write_bytes(bytes(dsk))


def _speak(speaker: int, text: int, mcode: int = 35) -> list[int]:
    """Script words: push_number speaker, push_number text, push_number anim, call_mcode 3 fnSpeak*."""
    return [2, speaker, 2, text, 2, 0x9B, 11, 3, mcode * 4]


def test_sky_reads_the_directory_and_unpacks_packed_files(tmp_path):
    folder = tmp_path / "sky"
    packed = _sky_header(0x80, 22 + len(RNC_RAW)) + RNC_PACKED  # RNC-packed; the header is kept
    headerless = _sky_header(0x80, len(RNC_RAW)) + RNC_PACKED
    _sky_data(folder, {50000: _sky_speech(b"\x80\x81"), 50001: (packed, 0), 60500: (headerless, 0x400000),
                       60203: (b"\x80" + bytes(40), 0x800000)})  # stored: flag bit 7 set but not packed
    entries = archives.sky_entries(folder / "sky.dnr")
    assert sorted(entries) == [50000, 50001, 60203, 60500]
    assert entries[50001][1] == len(packed) and entries[50001][0] % 16 == 0
    with open(folder / "sky.dsk", "rb") as handle:
        assert archives.sky_file(handle, entries[50000]) == _sky_header(0, 24) + b"\x80\x81"
        assert archives.sky_file(handle, entries[50001]) == packed[:22] + RNC_RAW
        assert archives.sky_file(handle, entries[60500]) == RNC_RAW
        assert archives.sky_file(handle, entries[60203]) == b"\x80" + bytes(40)
    (folder / "sky.dnr").write_bytes((folder / "sky.dnr").read_bytes()[:20])
    with pytest.raises(CocktailError, match="cut short"):
        archives.sky_entries(folder / "sky.dnr")


def test_sky_speakers_come_from_the_scripts_fnspeak_calls():
    assert archives.sky_speech_file(0x0005) == 50005 and archives.sky_speech_file(0x2007) == 51107
    first = _speak(3, 0x0001) + [5, 4] + _speak(16, 0x1002, mcode=37) + _speak(3, 0x1003, mcode=36)
    first += _speak(137, 0x0004) + _speak(16, 0x0004, mcode=38)   # two speakers for one line: left out
    first += [0, 480, 2, 0x0005, 2, 1, 11, 3, 140]               # the speaker in variable 120
    first += [2, 3, 2, 0x0006, 2, 1, 11, 3, 39 * 4, 19]          # fnChooser, not speech
    second = [0, 48, 2, 0x0007, 2, 1, 11, 3, 140, 0, 48, 2, 0x0008, 0, 9, 11, 3, 148, 19]  # CUR_ID: script 2's mega
    words = [2, 3, 3 + len(first)] + first + second                # the script table, then the scripts
    module = np.array(words, dtype="<u2").tobytes()
    expected = {50001: "id3", 50602: "id16", 50603: "id3", 50005: "var120", 50007: "script1.2",
                50008: "script1.2"}
    assert archives.sky_speakers([b"", module]) == expected


def test_sky_extracts_speech_and_labels_voices_from_the_scripts(tmp_path, monkeypatch):
    root = tmp_path / "beneath-a-steel-sky"
    foster, lamb = _voices(5, 2)
    rng = np.random.default_rng(0)
    second = lambda seconds: bytes(rng.integers(100, 156, int(seconds * 11025), dtype=np.uint8))  # noqa: E731
    files, voice_of, script = {}, {}, []
    for line in range(22):   # Foster's lines (section 0) and Lamb's (section 1), named by the script
        files[50000 + line], voice_of[str(50000 + line)] = _sky_speech(second(1.1)), foster
        files[50600 + line], voice_of[str(50600 + line)] = _sky_speech(second(1.1)), lamb
        script += _speak(3, line) + _speak(16, 0x1000 + line)
    for line in range(30, 33):  # unnamed, Lamb's voice: joins him
        files[50000 + line], voice_of[str(50000 + line)] = _sky_speech(second(1.1)), lamb
    files[50040], voice_of["50040"] = _sky_speech(second(1.1)), (foster + lamb) / np.linalg.norm(foster + lamb)
    files[50041] = _sky_speech(second(0.5))                               # too short to label
    files[50042] = (_sky_header(0x80, 22 + len(RNC_RAW)) + RNC_PACKED, 0)  # packed speech
    files[60203] = (_sky_header(0, 200) + bytes(178), 0x800000)           # sound effects: not speech
    files[60400] = (np.array(script, dtype="<u2").tobytes(), 0x800000)    # the script module
    _sky_data(root / archives.SKY_FOLDER, files)
    calls = []

    def fake_embed(paths):
        calls.append(len(paths))
        return np.stack([voice_of[p.stem] for p in paths])

    monkeypatch.setattr(archives, "_embed_clip_files", fake_embed)
    clips = archives.find_sky(root)
    by_speaker: dict[str, set] = {}
    for clip in clips:
        by_speaker.setdefault(clip.speaker, set()).add(int(clip.path.stem))
    # Lamb's 22 named and 3 unnamed clips are the larger voice; no hero: every voice a number.
    assert by_speaker == {"sky-v02": set(range(50000, 50022)),
                          "sky-v01": set(range(50600, 50622)) | {50030, 50031, 50032}}
    assert calls == [48] and {c.language for c in clips} == {"en"}
    out = root / ".sky"
    assert sorted(p.stem for p in out.glob("*.wav")) == sorted(str(n) for n in files if n < 60000)
    import wave
    with wave.open(str(out / "50042.wav")) as wav:  # unpacked, 8-bit, as stored
        assert (wav.getframerate(), wav.getsampwidth(), wav.readframes(1000)) == (11025, 1, RNC_RAW)
    data, rate = sf.read(str(out / "50000.wav"), dtype="int16")
    assert rate == 11025 and np.array_equal((data >> 8) + 128, np.frombuffer(files[50000][0][22:], np.uint8))
    # Extracted and labelled once: found again without sky.dsk, from the cache.
    (root / archives.SKY_FOLDER / "sky.dsk").unlink()
    assert [(c.path, c.speaker) for c in archives.find_sky(root)] == [(c.path, c.speaker) for c in clips]
    assert calls == [48]
    assert archives.find_sky(tmp_path / "empty") == []


def test_sky_is_an_asked_for_11khz_source():
    source = real_build.SOURCES["sky"]
    assert (source.package, source.native_rate, source.split_group) == ("beneath-a-steel-sky", 11025, None)
    assert source.opt_in and "sky" not in real_build.DEFAULT_SOURCES
    assert "sky" in source.licence.lower() or "revolution" in source.licence.lower()


# --------------------------------------------------------------------------------------
# Warzone 2100 (base.wz, 11 kHz) and the Codec 2 samples (8 kHz): 8 kHz corpora only
# --------------------------------------------------------------------------------------

def test_warzone_labels_voices_by_folder_and_leaves_out_the_rest(tmp_path):

    root = tmp_path / "warzone2100-data"
    expected = {
        "audio/memressp/power/pcv343.ogg": "warzone-announcer", "audio/extra/lz.ogg": "warzone-announcer",
        "audio/tutorial/tut1.ogg": "warzone-announcer", "audio/proxmessages/c1prox1.ogg": "warzone-announcer",
        "audio/countdown/10min.ogg": "warzone-countdown",
        "audio/memressp/cmndrvoc/com021.ogg": "warzone-commander", "audio/trnsppil/t-aprolz.ogg": "warzone-commander",
        "audio/vtoltalk/v-abtrn1.ogg": "warzone-commander", "audio/coltive/col011a.ogg": "warzone-collective",
        "audio/taunts/taunt1/cmgetit1.ogg": "warzone-taunt-a", "audio/taunts/taunt3/cmgetit3.ogg": "warzone-taunt-a",
        "audio/taunts/taunt2/cmgetit2.ogg": "warzone-taunt-b"}
    left_out = ["audio/memressp/power/pcv341.ogg", "audio/countdown/mlaunch.ogg",  # by voice
                "audio/memressp/cmndrvoc/group.ogg", "audio/taunts/taunt1/haha1.ogg",
                "audio/taunts/taunt2/hahaha2.ogg",  # laughs
                "audio/nexus/laugh1.ogg", "audio/sfx/weapons/cannon.ogg", "audio/radclick/radclick1.ogg",
                "audio/multi/emp.ogg", "sequenceaudio/np1.ogg", "sequenceaudio/cam1/c001.txt", "audio/audio.cfg"]
    _ogg_zip(root / archives.WARZONE_ARCHIVE, list(expected) + left_out, 11025).close()
    clips = archives.find_warzone(root)
    assert {c.path.relative_to(root / ".wz").as_posix(): c.speaker for c in clips} == expected
    assert all(sf.info(str(c.path)).samplerate == 11025 and c.language == "en" for c in clips)
    assert [c.path for c in archives.find_warzone(root)] == [c.path for c in clips]  # extracted once, found again


def _raw(path: Path, samples: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.round(samples * 32767).astype("<i2").tobytes())


def test_codec2_cuts_labels_and_leaves_out_copies_and_modems(tmp_path):
    root = tmp_path / "codec2-examples"
    base = root / "usr/share/codec2"
    rate = plain_files.CODEC2_RATE
    hts = np.concatenate([noise(6.0, rate, seed) for seed in range(4)])  # man, woman, man, woman
    _raw(base / "raw/hts.raw", hts)
    ve9qrp = noise(20.0, rate, 10)
    ve9qrp[int(6.5 * rate):int(6.6 * rate)] = 0  # a pause near the first 6 s mark
    _raw(base / "raw/ve9qrp.raw", ve9qrp)
    for seed, name in enumerate(["kristoff", "cq_ref", "g3plx", "vk5qi", "f2400", "morig", "700d_end_over"]):
        _raw(base / f"raw/{name}.raw", noise(3.0, rate, 20 + seed))
    (base / "wav").mkdir()
    sf.write(str(base / "wav/kristoff.wav"), noise(3.0, rate, 20), rate)  # a wav twin of a raw file
    sf.write(str(base / "wav/david4.wav"), noise(3.0, rate, 30), rate)     # a modem signal
    sf.write(str(base / "wav/all.wav"), noise(57.0, rate, 31), rate)       # copies, then vk5dgr from 47.5 s
    (base / "raw/odd.raw").write_bytes(b"\x01\x00\x02")
    clips = plain_files.find_codec2(root)
    speakers: dict[str, list[np.ndarray]] = {}
    for clip in clips:
        data, clip_rate = sf.read(str(clip.path), dtype="float32")
        assert clip_rate == rate and data.ndim == 1 and clip.language == "en"
        speakers.setdefault(clip.speaker, []).append(data)
    assert set(speakers) == {f"codec2-{s}" for s in ("hts1", "hts2", "kristoff", "g3plx", "vk5qi", "vk5dgr", "ve9qrp")}
    # The raw files are 16-bit little-endian: the pieces give back the samples written.
    quantised = lambda x: np.round(x * 32767) / 32768
    assert np.allclose(np.concatenate(speakers["codec2-hts1"]),
                       quantised(np.concatenate([hts[:6 * rate], hts[12 * rate:18 * rate]])), atol=1e-4)
    assert np.allclose(np.concatenate(speakers["codec2-hts2"]),
                       quantised(np.concatenate([hts[6 * rate:12 * rate], hts[18 * rate:]])), atol=1e-4)
    assert len(speakers["codec2-kristoff"]) == 2  # kristoff and cq_ref: one label
    assert abs(sum(map(len, speakers["codec2-vk5dgr"])) - 9.5 * rate) <= 1
    # ve9qrp is cut into pieces at pauses, nothing lost: the first cut falls in its pause.
    pieces = speakers["codec2-ve9qrp"]
    assert np.allclose(np.concatenate(pieces), quantised(ve9qrp), atol=1e-4)
    assert 6.5 * rate <= len(pieces[0]) <= 6.6 * rate
    assert all(len(p) <= (plain_files.CODEC2_PIECE + plain_files.CODEC2_SLACK) * rate for p in pieces)
    assert [c.path for c in plain_files.find_codec2(root)] == [c.path for c in clips]  # written once


def test_cut_at_pauses_keeps_a_short_recording_whole():
    samples = noise(7.0, 8000, 3)
    assert [len(p) for p in plain_files.cut_at_pauses(samples, 8000)] == [len(samples)]


def test_warzone_and_codec2_are_8khz_default_sources():
    sources = real_build.SOURCES
    assert (sources["warzone"].package, sources["warzone"].licence, sources["warzone"].native_rate) == \
        ("warzone2100-data", "GPL-2+", 11025)
    assert (sources["codec2"].package, sources["codec2"].licence, sources["codec2"].native_rate) == \
        ("codec2-examples", "LGPL-2.1", 8000)
    assert {"warzone", "codec2"} <= set(real_build.DEFAULT_SOURCES)
    assert sources["warzone"].split_group is None and sources["codec2"].split_group is None  # groups of their own


def test_a_16khz_build_skips_warzone_and_codec2_before_fetching(tmp_path, monkeypatch):
    def no_fetch(names, cache):
        raise AssertionError(f"fetched {names}")

    monkeypatch.setattr(real_build, "fetch_packages", no_fetch)
    with pytest.raises(CocktailError, match="can feed a 16000 Hz"):
        real_build.build_real_corpus(tmp_path / "c16", sources=["warzone", "codec2"], sample_rate=16000,
                                     packages=tmp_path / "packages", jobs=1, progress=False)


# --------------------------------------------------------------------------------------
# 0 A.D. (public.zip): unit voices by language and phenotype
# --------------------------------------------------------------------------------------

def test_0ad_labels_voices_by_language_and_phenotype_then_drops_the_zip(tmp_path):

    root = tmp_path / "0ad-data"
    expected = {
        "audio/voice/greek/civ/civ_female_attack_1.ogg": ("0ad-greek-female", "greek"),
        "audio/voice/latin/civ/civ_male_build_1.ogg": ("0ad-latin-male", "latin"),
        "audio/voice/napatan/civ/civ_female_heal_01.ogg": ("0ad-napatan-female", "napatan"),
        "audio/voice/persian/civ/civ_male_I_will_go_1.ogg": ("0ad-persian-male", "persian")}
    left_out = ["audio/voice/greek/civ/civ_male_yes_1.ogg",          # greek-male: too little, unsure
                "audio/voice/persian/civ/civ_female_hello_1.ogg",    # nearer another voice
                "audio/voice/greek/civ/civ_female_retreat_2.ogg",    # nearer another voice
                "audio/voice/global/civ_dog_bark.ogg",               # a dog
                "audio/actor/human/death/male_death_01.ogg",         # a cry
                "audio/attack/weapon/sword_1.ogg"]
    with _ogg_zip(root / archives.ZEROAD_ARCHIVE, list(expected) + left_out, 44100) as archive:
        archive.writestr("audio/voice/latin/civ/civ_male_build.xml", "<SoundGroup/>")
        archive.writestr("art/textures/skies/sky.png", b"\x89PNG")
    clips = archives.find_0ad(root)
    assert {c.path.relative_to(root / ".voice").as_posix(): (c.speaker, c.language) for c in clips} == expected
    assert all(sf.info(str(c.path)).samplerate == 44100 for c in clips)
    # Only the voices are copied out (all of them, labelled or not); the zip is then deleted,
    # and the clips are found again without it.
    copied = {p.relative_to(root / ".voice").as_posix() for p in (root / ".voice").rglob("*.ogg")}
    assert copied == set(expected) | {n for n in left_out if n.startswith("audio/voice/")}
    assert not (root / archives.ZEROAD_ARCHIVE).exists()
    assert [(c.path, c.speaker) for c in archives.find_0ad(root)] == [(c.path, c.speaker) for c in clips]
    assert archives.find_0ad(tmp_path / "empty") == []  # neither the zip nor its voices: nothing


def test_0ad_is_an_asked_for_16khz_source_of_its_own_split_group():
    source = real_build.SOURCES["0ad"]
    assert (source.package, source.licence, source.native_rate, source.split_group) == \
        ("0ad-data", "CC-BY-SA-3.0", None, None)
    assert source.opt_in and "0ad" not in real_build.DEFAULT_SOURCES and source.min_seconds == 5.0
    assert archives.ZEROAD_VOICES == {f"{lang}-{sex}" for lang in ("greek", "latin", "napatan", "persian")
                                      for sex in ("female", "male")} - {"greek-male"}
