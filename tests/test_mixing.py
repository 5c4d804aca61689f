"""On-the-fly mixing and the fixed-set writer (`cocktail mix`), on a tiny synthetic corpus."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from cocktailparty import cli
from cocktailparty.data.mixture_datasets import Wsj0Mix
from cocktailparty.data.speaker_corpus import SpeakerCorpus
from cocktailparty.data.levels import active_level_db, power_db
from cocktailparty.data.mixing import DynamicMixer, parse_range
from cocktailparty.data.mixture_plan import load_speech
from cocktailparty.data.mixture_sets import regenerate_from_metadata, write_mixture_set
from cocktailparty.core.errors import CocktailError
from tests.helpers import write_manifest

RATE = 8000

# speaker -> (person, f0). Two voices share person "us1", as TTS voices built from one
# recording do; they must never meet in one mixture.
SPEAKERS = {
    "mb-us1": ("us1", 105.0), "flite-us1": ("us1", 112.0), "mb-de2": ("de2", 135.0),
    "rh-anna": ("anna", 210.0), "pico-en": ("pico", 245.0), "mb-fr1": ("fr1", 160.0),
}


def utterance(f0: float, seconds: float, seed: int) -> np.ndarray:
    """A harmonic 'voice' with syllable-like bursts and pauses (so active level matters)."""
    t = np.arange(int(seconds * RATE)) / RATE
    voice = sum(np.sin(2 * np.pi * f0 * h * t + seed * h) / h for h in range(1, 6))
    bursts = np.clip(np.sin(2 * np.pi * 2.5 * t + seed), 0.0, None)
    return (0.2 * voice * bursts).astype(np.float32)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    """Our corpus layout: DIR/<split>/<speaker>/<utt>.flac, DIR/manifest.csv, DIR/corpus.json."""
    root = tmp_path_factory.mktemp("corpus")
    rows = []
    for s_index, (speaker, (person, f0)) in enumerate(sorted(SPEAKERS.items())):
        for split in ("train", "test"):
            for u in range(3):
                uid = f"{speaker}-{split}-{u}"
                seconds = 0.9 + 0.3 * ((s_index + u) % 4)
                rel = f"{split}/{speaker}/{uid}.flac"
                (root / split / speaker).mkdir(parents=True, exist_ok=True)
                sf.write(str(root / rel), utterance(f0, seconds, u), RATE)
                rows.append(dict(utterance_id=uid, path=rel, speaker=speaker, person=person, engine="fake",
                                 voice=speaker, language="en", gender="x", split=split, text="",
                                 duration=seconds, sample_rate=RATE))
    write_manifest(root, rows, {"name": "fake"})
    return root


@pytest.fixture(scope="module")
def noise_dir(tmp_path_factory) -> Path:
    """WHAM!-style noise: wham_noise/{tr,cv,tt}/*.wav, two channels, 16 kHz."""
    root = tmp_path_factory.mktemp("wham_noise")
    rng = np.random.default_rng(7)
    for split in ("tr", "cv", "tt"):
        (root / split).mkdir()
        for i in range(2):
            # One short file (0.6 s) so the looping path is used too.
            noise = 0.05 * rng.standard_normal((2, int((0.6 + 2.0 * i) * 16000))).astype(np.float32)
            sf.write(str(root / split / f"{split}_noise{i}.wav"), noise.T, 16000)
    return root


@pytest.fixture(scope="module")
def music_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("music")
    t = np.arange(3 * RATE) / RATE
    chord = sum(np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0)) * 0.1
    sf.write(str(root / "song.flac"), chord.astype(np.float32), RATE)
    return root


@pytest.fixture(scope="module")
def corpus(corpus_dir) -> SpeakerCorpus:
    return SpeakerCorpus.open(corpus_dir, split="train")


# --------------------------------------------------------------------------------------
# the dynamic mixer
# --------------------------------------------------------------------------------------


def test_items_are_a_function_of_seed_epoch_index(corpus):
    a = DynamicMixer(corpus, segment=0.5, seed=11)
    b = DynamicMixer(corpus, segment=0.5, seed=11)
    assert len(a) == len(corpus) == 18
    for i in (0, 5):
        x, y = a[i], b[i]
        assert x["id"] == y["id"]
        assert torch.equal(x["mixture"], y["mixture"]) and torch.equal(x["sources"], y["sources"])
    first = a[3]
    a.set_epoch(1)
    other_epoch = a[3]
    assert not torch.equal(first["mixture"], other_epoch["mixture"])
    a.set_epoch(0)
    assert torch.equal(a[3]["mixture"], first["mixture"])  # resuming epoch 0 gives it back
    assert not torch.equal(DynamicMixer(corpus, segment=0.5, seed=12)[3]["mixture"], first["mixture"])
    # Each utterance leads once per epoch (Tune-In's online mixing).
    assert [a.plan(i).sources[0].utterance_id for i in range(18)] == [u.id for u in corpus.utterances]


def test_mixture_is_exactly_the_sum_of_sources_noise_and_music(corpus, noise_dir, music_dir):
    mixer = DynamicMixer(corpus, num_speakers=3, segment=0.75, noise=noise_dir, music=music_dir,
                         split="train", seed=2)
    for i in range(4):
        item = mixer[i]
        assert item["mixture"].shape == (6000,) and item["sources"].shape == (3, 6000)
        assert item["noise"].shape == (6000,) and item["music"].shape == (6000,)
        s = item["sources"]
        assert torch.equal(item["mixture"], s[0] + s[1] + s[2] + item["noise"] + item["music"])
        assert item["mixture"].dtype == torch.float32
    plain = DynamicMixer(corpus, segment=0.75, seed=2)[0]
    assert torch.equal(plain["mixture"], plain["sources"][0] + plain["sources"][1])
    assert set(plain) == {"mixture", "sources", "speaker_ids", "id"}


def test_relative_level_is_within_the_range(corpus):
    for sir in ((0.0, 5.0), (-5.0, 5.0)):
        mixer = DynamicMixer(corpus, segment=0.6, sir=sir, seed=5)
        measured = []
        for i in range(len(mixer)):
            s = mixer[i]["sources"].numpy()
            measured.append(active_level_db(s[0], RATE) - active_level_db(s[1], RATE))
            assert measured[-1] == pytest.approx(mixer.plan(i).sir_db[0], abs=1e-3)
        assert sir[0] - 1e-3 <= min(measured) and max(measured) <= sir[1] + 1e-3
        assert max(measured) - min(measured) > 2.0  # actually spread over the range
    assert min(measured) < 0 < max(measured)  # with -5..5 either talker can be louder

    # s1 at L + r/2, s2 at L - r/2 around the common reference level L.
    mixer = DynamicMixer(corpus, segment=0.6, sir=(4.0, 4.0), level=(-30.0, -30.0), seed=1)
    s = mixer[0]["sources"].numpy()
    assert active_level_db(s[0], RATE) == pytest.approx(-28.0, abs=1e-3)
    assert active_level_db(s[1], RATE) == pytest.approx(-32.0, abs=1e-3)

    # Three talkers: talker 1 is r_c above talker c.
    mixer = DynamicMixer(corpus, num_speakers=3, segment=0.6, sir=(1.0, 3.0), seed=3)
    for i in range(6):
        s = mixer[i]["sources"].numpy()
        for c in (1, 2):
            gap = active_level_db(s[0], RATE) - active_level_db(s[c], RATE)
            assert 1.0 - 1e-3 <= gap <= 3.0 + 1e-3


def test_noise_snr_and_music_smr_are_as_drawn(corpus, noise_dir, music_dir):
    mixer = DynamicMixer(corpus, segment=0.8, noise=noise_dir, snr=(-6.0, 3.0),
                         music=music_dir, smr=(0.0, 2.0), split="train", seed=9)
    for i in range(8):
        item, plan = mixer[i], mixer.plan(i)
        speech = item["sources"].sum(0).numpy()
        snr = power_db(speech) - power_db(item["noise"].numpy())
        smr = power_db(speech) - power_db(item["music"].numpy())
        assert snr == pytest.approx(plan.snr_db, abs=1e-3) and -6.0 - 1e-3 <= snr <= 3.0 + 1e-3
        assert smr == pytest.approx(plan.smr_db, abs=1e-3) and -1e-3 <= smr <= 2.0 + 1e-3
        assert "/tr/" in plan.noise.path.as_posix()  # the train split of the WHAM! noise


def test_music_as_a_source(corpus, music_dir):
    mixer = DynamicMixer(corpus, num_speakers=1, segment=0.5, music=music_dir, music_as_source=True, seed=4)
    item = mixer[0]
    assert item["sources"].shape == (2, 4000) and "music" not in item
    assert torch.equal(item["mixture"], item["sources"][0] + item["sources"][1])
    assert item["speaker_ids"].shape == (1,)


def test_talkers_are_distinct_speakers_and_persons(corpus):
    mixer = DynamicMixer(corpus, num_speakers=3, segment=0.3, seed=0)
    person_of = {u.speaker: u.person for u in corpus.utterances}
    for epoch in range(6):
        mixer.set_epoch(epoch)
        for i in range(len(mixer)):
            plan = mixer.plan(i)
            speakers = [s.speaker for s in plan.sources]
            assert len(set(speakers)) == 3
            assert len({person_of[s] for s in speakers}) == 3
            assert not {"mb-us1", "flite-us1"} <= set(speakers)
    item = mixer[4]
    assert [corpus.speakers[j] for j in item["speaker_ids"]] == [s.speaker for s in mixer.plan(4).sources]
    with pytest.raises(CocktailError, match="has 5 distinct persons, but 6-talker mixtures need at least 6"):
        DynamicMixer(corpus, num_speakers=6)
    assert DynamicMixer(corpus, num_speakers=6, distinct_persons=False).num_speakers == 6


def test_speed_perturbation_changes_length(corpus):
    path = corpus[0].path
    n = sf.info(str(path)).frames
    for factor in (0.8, 1.25):
        assert abs(load_speech(path, RATE, factor).shape[-1] - n / factor) <= 1
    assert np.array_equal(load_speech(path, RATE), sf.read(str(path), dtype="float32")[0])
    # Whole utterances ('max' mode, no cap): the mixture is as long as the longest slowed talker.
    mixer = DynamicMixer(corpus, segment=None, mode="max", speed=(0.8, 0.8), seed=6)
    plan = mixer.plan(0)
    for s in plan.sources:
        frames = sf.info(str(s.path)).frames
        assert s.speed == 0.8 and abs(s.length - frames / 0.8) <= 1
    assert plan.length == max(s.length for s in plan.sources)
    ranged = DynamicMixer(corpus, segment=0.5, speed=(0.9, 1.1), seed=6)
    speeds = [s.speed for i in range(6) for s in ranged.plan(i).sources]
    assert all(0.9 <= f <= 1.1 for f in speeds) and len(set(speeds)) == len(speeds)


def test_min_mode_and_peak_limit(corpus):
    mixer = DynamicMixer(corpus, segment=None, mode="min", level=(0.0, 0.0), seed=8)
    for i in range(5):
        plan, item = mixer.plan(i), mixer[i]
        assert plan.length == min(sf.info(str(s.path)).frames for s in plan.sources)
        assert item["mixture"].shape == (plan.length,)
        peak = max(item["mixture"].abs().max(), item["sources"].abs().max())
        assert peak <= 0.9 + 1e-5  # loud (0 dBFS) talkers were turned down together
        assert torch.equal(item["mixture"], item["sources"][0] + item["sources"][1])


def test_short_utterances_are_placed_inside_a_long_segment(corpus):
    mixer = DynamicMixer(corpus, segment=3.0, seed=1)
    item, plan = mixer[0], mixer.plan(0)
    for row, s in zip(item["sources"], plan.sources):
        assert s.length < 24000
        assert torch.all(row[: s.place] == 0) and torch.all(row[s.place + s.length:] == 0)


def test_dataloader_with_workers_matches_single_process(corpus):
    mixer = DynamicMixer(corpus, segment=0.4, seed=3)
    mixer.set_epoch(2)
    loader = DataLoader(mixer, batch_size=4, num_workers=2, shuffle=False)
    batch = next(iter(loader))
    assert batch["mixture"].shape == (4, 3200) and batch["sources"].shape == (4, 2, 3200)
    assert batch["speaker_ids"].shape == (4, 2)
    assert torch.equal(batch["mixture"][1], mixer[1]["mixture"])


def test_resampling_to_another_rate(corpus):
    mixer = DynamicMixer(corpus, segment=None, mode="min", sample_rate=16000, seed=2)
    plan, item = mixer.plan(0), mixer[0]
    assert mixer.sample_rate == 16000
    shortest = min(sf.info(str(s.path)).frames for s in plan.sources)
    assert abs(plan.length - 2 * shortest) <= 1 and item["mixture"].shape == (plan.length,)


def test_parse_range():
    assert parse_range("0,5") == (0.0, 5.0)
    assert parse_range("-5, 5") == (-5.0, 5.0)
    assert parse_range("3") == (3.0, 3.0)
    with pytest.raises(CocktailError, match="--sir: expected LO,HI"):
        parse_range("loud", "--sir")
    with pytest.raises(CocktailError, match="low <= high"):
        parse_range("5,0", "--sir")


# --------------------------------------------------------------------------------------
# cocktail mix: the fixed set
# --------------------------------------------------------------------------------------


def _samples(folder: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(folder)): sf.read(str(p), dtype="float32")[0] for p in sorted(folder.rglob("*.wav"))}


def test_cocktail_mix_shows_a_bar_on_a_terminal_only(corpus_dir, tmp_path, run_cli):
    args = ["mix", "--corpus", corpus_dir, "--out", tmp_path / "set", "--split", "test", "-n", "3",
            "--seconds", "1.0", "--force"]
    status, err = run_cli(args)
    assert status == 0 and "\rmixing:" in err
    run_cli.assert_silent(args, "mixing:")


def test_cocktail_mix_writes_the_wsj0_layout_and_regenerates(corpus_dir, noise_dir, tmp_path, capsys):
    out = tmp_path / "testset"
    status = cli.main(["-q", "mix", "--corpus", str(corpus_dir), "--out", str(out), "--split", "test",
                       "-n", "5", "--seconds", "1.0", "--sir", "0,5", "--noise", str(noise_dir),
                       "--snr=-6,3", "--speed", "0.95,1.05", "--seed", "4"])
    assert status == 0
    assert sorted(p.name for p in out.iterdir()) == ["metadata.csv", "mix", "mixing.json", "noise", "s1", "s2"]
    ids = sorted(p.stem for p in (out / "mix").glob("*.wav"))
    assert len(ids) == 5 and all(sorted(p.stem for p in (out / d).glob("*.wav")) == ids for d in ("s1", "s2", "noise"))
    with open(out / "metadata.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["mixture_id"] for r in rows) == ids
    for column in ("s1_path", "s1_speaker", "s2_person", "s1_gain_db", "s2_start", "s1_place", "s1_speed",
                   "noise_path", "noise_start", "noise_gain_db", "sir_db", "snr_db", "length"):
        assert column in rows[0]
    for row in rows:
        assert row["s1_path"].startswith("test/") and (corpus_dir / row["s1_path"]).is_file()
        assert row["noise_path"].startswith("tt/")
        assert row["s1_person"] != row["s2_person"]
        assert 0.0 <= float(row["sir_db"]) <= 5.0 and 0.95 <= float(row["s2_speed"]) <= 1.05
        assert int(row["length"]) <= RATE  # --seconds 1.0 caps the length
    parameters = json.loads((out / "mixing.json").read_text())
    assert parameters["seed"] == 4 and parameters["sir_db"] == [0.0, 5.0] and parameters["snr_db"] == [-6.0, 3.0]

    # Our own loader reads it; float WAVs keep mixture == s1 + s2 + noise exact.
    data = Wsj0Mix(out, return_noise=True)
    assert data.ids == ids
    for i in range(len(data)):
        item = data[i]
        assert torch.equal(item["mixture"], item["sources"][0] + item["sources"][1] + item["noise"])

    # Anyone with the corpus, the noise and the two metadata files rebuilds the same set.
    shared = tmp_path / "shared"
    shared.mkdir()
    for name in ("metadata.csv", "mixing.json"):
        (shared / name).write_bytes((out / name).read_bytes())
    again = tmp_path / "again"
    assert cli.main(["-q", "mix", "--corpus", str(corpus_dir), "--noise", str(noise_dir), "--out", str(again),
                     "--from-metadata", str(shared)]) == 0
    first, second = _samples(out), _samples(again)
    assert first.keys() == second.keys() and all(np.array_equal(first[k], second[k]) for k in first)
    assert (again / "metadata.csv").read_bytes() == (out / "metadata.csv").read_bytes()

    # Refuses to overwrite without --force, and says so in one line.
    assert cli.main(["mix", "--corpus", str(corpus_dir), "--out", str(out), "-n", "2"]) == 1
    assert "is not empty" in capsys.readouterr().err
    assert cli.main(["-q", "mix", "--corpus", str(corpus_dir), "--out", str(out), "-n", "2", "--force"]) == 0
    assert len(list((out / "mix").glob("*.wav"))) == 2 and not (out / "noise").exists()


def test_fixed_set_is_seed_deterministic_and_pcm_bytes_regenerate(corpus_dir, music_dir, tmp_path):
    common = dict(split="test", num_mixtures=4, num_speakers=3, seconds=None, mode="max",
                  music=music_dir, smr=(0.0, 5.0), music_as_source=True, subtype="PCM_16", progress=False)
    a = write_mixture_set(corpus_dir, tmp_path / "a", seed=1, **common)
    b = write_mixture_set(corpus_dir, tmp_path / "b", seed=1, **common)
    c = write_mixture_set(corpus_dir, tmp_path / "c", seed=2, **common)
    assert (a / "metadata.csv").read_bytes() == (b / "metadata.csv").read_bytes()
    assert (a / "metadata.csv").read_bytes() != (c / "metadata.csv").read_bytes()
    assert sorted(p.name for p in a.iterdir()) == ["metadata.csv", "mix", "mixing.json", "s1", "s2", "s3", "s4"]
    # 'max' mode: the mixture is as long as the longest talker, the others zero-padded at the end.
    with open(a / "metadata.csv", newline="") as handle:
        row = next(csv.DictReader(handle))
    lengths = [int(row[f"s{k}_length"]) for k in (1, 2, 3)]
    assert int(row["length"]) == max(lengths) and all(int(row[f"s{k}_place"]) == 0 for k in (1, 2, 3))

    regenerated = regenerate_from_metadata(a, tmp_path / "r", progress=False)
    files = sorted(p.relative_to(a) for p in a.rglob("*.wav"))
    assert files == sorted(p.relative_to(regenerated) for p in regenerated.rglob("*.wav"))
    for rel in files:  # 16-bit PCM WAV has no time-stamp: byte for byte the same
        assert (a / rel).read_bytes() == (regenerated / rel).read_bytes()
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    loaded = Wsj0Mix(a)
    assert loaded.num_sources == 4  # three talkers and the music


def test_regenerate_needs_the_metadata(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(CocktailError, match="expected metadata.csv and mixing.json"):
        regenerate_from_metadata(tmp_path / "x", tmp_path / "y")


# --------------------------------------------------------------------------------------
# the level rule shared by the mixer, enrollments and trials
# --------------------------------------------------------------------------------------


def test_talker_gains_and_mix_pair_match_the_two_talker_formulas_bit_for_bit():
    # The enrollment mixer and the trials used to write the rule out for two talkers (offsets
    # +r/2 and -r/2 around the reference, 0 dB for silence); the shared functions must give
    # the very same floats and draw the same numbers in the same order.
    from cocktailparty.data.levels import DEFAULT_MAX_PEAK, mix_pair, talker_gains_db

    voices = ((110.0, 0, 4.0), (205.0, 1, 0.5), (150.0, 2, 1.0))  # f0, seed, gain: one clips
    signals = [utterance(f0, 1.3, seed) * gain for f0, seed, gain in voices]
    signals.append(np.zeros(len(signals[0]), dtype=np.float32))
    for seed in range(20):
        rng = np.random.default_rng(seed)
        target, interference = (signals[i] for i in rng.choice(len(signals), 2, replace=False))
        r = float(rng.uniform(-20.0, 20.0))
        reference = float(rng.uniform(-40.0, 0.0))
        expected = [reference + offset - active_level_db(x, RATE)
                    for x, offset in ((target, r / 2), (interference, -r / 2))]
        got = talker_gains_db([target, interference], RATE, [r], reference)
        assert got == [g if np.isfinite(g) else None for g in expected]

        parts = []
        old = np.random.default_rng([seed, 1])
        r, reference = float(old.uniform(0.0, 30.0)), float(old.uniform(-10.0, 0.0))
        for x, offset in ((target, r / 2), (interference, -r / 2)):
            current = active_level_db(x, RATE)
            gain = 10.0 ** ((reference + offset - current) / 20.0) if np.isfinite(current) else 1.0
            parts.append(x.astype(np.float64) * gain)
        mixed = parts[0] + parts[1]
        if np.abs(mixed).max() > DEFAULT_MAX_PEAK:
            mixed *= DEFAULT_MAX_PEAK / np.abs(mixed).max()
        new = np.random.default_rng([seed, 1])
        assert np.array_equal(mix_pair(target, interference, RATE, new, (0.0, 30.0), (-10.0, 0.0)),
                              mixed.astype(np.float32))
        assert new.random() == old.random()  # the same draws were taken
