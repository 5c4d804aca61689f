"""Simulated rooms (cocktailparty.data.rooms) and reverberant dynamic mixing, checked against
references computed here: a Schroeder RT60 estimate, geometric delays, scipy convolution."""

from __future__ import annotations

import itertools
import json
import math
import dataclasses
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import fftconvolve

from cocktailparty import cli
from cocktailparty.data.mixing import DynamicMixer
from cocktailparty.data.mixture_plan import render_plan
from cocktailparty.data.rooms import (
    FADE_MS,
    RoomBank,
    RoomPlan,
    draw_room,
    early_part,
    impulse_responses,
    reverberate,
)
from cocktailparty.core.errors import CocktailError
from cocktailparty.train.config import DataConfig
from cocktailparty.train.data import build_datasets, collate
from tests.helpers import write_manifest

RATE = 8000
SPEED_OF_SOUND = 343.0
# A room 8 x 6 x 3.5 m: at RT60 0.3 s its image-source order (33) is simulated in full; at
# 0.8 s (order 90) the order is capped and the late part is the diffuse tail.
PLAN = RoomPlan(dims=[8.0, 6.0, 3.5], rt60=0.3, mic=[3.0, 2.5, 1.4],
                sources=[[4.6, 3.7, 1.7], [1.8, 4.1, 1.5]], seed=1)
SPEAKERS = {"s-low": 110.0, "s-mid": 150.0, "s-high": 220.0, "s-top": 260.0}


def schroeder_rt60(rir: np.ndarray, rate: int, top_db: float = -5.0, bottom_db: float = -25.0) -> float:
    """T20: the energy decay curve (Schroeder's backward integral of the squared RIR) in dB,
    a least-squares line through its -5..-25 dB part, extrapolated to a 60 dB decay."""
    energy = np.cumsum(rir.astype(np.float64)[::-1] ** 2)[::-1]
    decay_db = 10.0 * np.log10(energy / energy[0])
    first, last = np.argmax(decay_db <= top_db), np.argmax(decay_db <= bottom_db)
    seconds = np.arange(first, last) / rate
    slope_db_per_s = np.polyfit(seconds, decay_db[first:last], 1)[0]
    return -60.0 / slope_db_per_s


def direct_delay(plan: RoomPlan, source: int) -> float:
    """Samples from the talker to the microphone at the speed of sound."""
    return math.dist(plan.mic, plan.sources[source]) / SPEED_OF_SOUND * RATE


# --------------------------------------------------------------------------------------
# impulse responses
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("rt60", [0.3, 0.8])
def test_measured_rt60_is_near_the_asked_one(rt60):
    rirs = impulse_responses(RoomPlan(**{**asdict(PLAN), "rt60": rt60}), RATE)
    assert rirs.dtype == np.float32 and rirs.shape == (2, math.ceil(rt60 * RATE))
    for rir in rirs:
        # 20%: the wall absorption comes from Sabine's formula, which assumes a diffuse field
        # and small absorption. A shoebox's image sources are neither: with absorption a the
        # diffuse decay is Eyring's, shorter by a / -ln(1 - a) (8% here at 0.3 s, a = 0.16),
        # and sound running along the room's long axes decays slower than the average (10-15%
        # longer in flat rooms). A T20 estimate of one RIR adds a few % on top.
        assert schroeder_rt60(rir, RATE) == pytest.approx(rt60, rel=0.2)


def test_direct_path_arrives_after_distance_over_speed_of_sound():
    rng = np.random.default_rng(4)
    for _ in range(3):
        plan = draw_room(rng, 2, rt60=(0.2, 0.3))
        rirs = impulse_responses(plan, RATE)
        for k, rir in enumerate(rirs):
            # The direct path is the strongest arrival of a free-standing talker.
            assert abs(int(np.argmax(np.abs(rir))) - direct_delay(plan, k)) <= 2


def test_drawn_rooms_follow_the_placement_rules():
    rng = np.random.default_rng(0)
    for _ in range(200):
        plan = draw_room(rng, 3, rt60=(0.1, 1.0))
        json.dumps(asdict(plan))  # plain numbers only
        assert 3.0 <= plan.dims[0] <= 10.0 and 3.0 <= plan.dims[1] <= 10.0 and 2.5 <= plan.dims[2] <= 4.0
        assert 0.1 <= plan.rt60 <= 1.0
        for point in [plan.mic, *plan.sources]:
            assert all(0.5 - 1e-9 <= point[k] <= plan.dims[k] - 0.5 + 1e-9 for k in range(3))
        for source in plan.sources:
            assert 0.5 <= math.dist(source, plan.mic) <= 3.0 and 1.2 <= source[2] <= 1.8
        assert math.dist(plan.sources[0], plan.sources[1]) >= 0.5
    with pytest.raises(CocktailError, match="too short for even the smallest room"):
        draw_room(rng, 2, rt60=(0.02, 0.5))


def test_early_part_keeps_50_ms_after_the_direct_path():
    rirs = impulse_responses(PLAN, RATE)
    early = early_part(rirs, RATE, early_ms=50.0)
    fade = int(round(FADE_MS / 1000 * RATE))
    for k in range(2):
        cut = direct_delay(PLAN, k) + 0.05 * RATE
        before, after = int(cut) - 2, int(cut) + fade + 2
        assert np.array_equal(early[k, :before], rirs[k, :before])
        assert np.all(early[k, after:] == 0.0)
        assert np.all(np.abs(early[k, before:after]) <= np.abs(rirs[k, before:after]))
        # Scaled so that the early part has unit energy (its image keeps the talker's level).
        assert float(np.sum(early[k].astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-4)


def test_reverberate_is_a_convolution_cut_to_the_input_length():
    rng = np.random.default_rng(1)
    sources = rng.standard_normal((2, 3000)).astype(np.float32)
    impulse = np.zeros((2, 600), dtype=np.float32)
    impulse[:, 0] = 1.0
    reverberant, early = reverberate(sources, impulse, RATE)
    np.testing.assert_allclose(reverberant, sources, atol=1e-6)
    np.testing.assert_allclose(early, sources, atol=1e-6)
    delayed = np.roll(impulse, 7, axis=-1)  # a pure delay stays in the output: not re-aligned
    np.testing.assert_allclose(reverberate(sources, delayed, RATE)[0][:, 7:], sources[:, :-7], atol=1e-6)

    rirs = impulse_responses(PLAN, RATE)
    reverberant, early = reverberate(sources, rirs, RATE)
    assert reverberant.shape == early.shape == (2, 3000) and reverberant.dtype == np.float32
    for k in range(2):
        np.testing.assert_allclose(reverberant[k], fftconvolve(sources[k], rirs[k])[:3000], atol=1e-5)
        np.testing.assert_allclose(early[k], fftconvolve(sources[k], early_part(rirs, RATE)[k])[:3000], atol=1e-5)


# --------------------------------------------------------------------------------------
# the room bank
# --------------------------------------------------------------------------------------


def _bank_files(folder: Path) -> dict[str, np.ndarray]:
    return {p.relative_to(folder).as_posix(): np.load(p) for p in sorted(folder.rglob("*.npy"))}


@pytest.mark.slow
def test_room_bank_is_deterministic_split_and_refuses_other_folders(tmp_path, capsys):
    common = dict(count=5, num_sources=2, sample_rate=RATE, seed=3, rt60=(0.2, 0.3), progress=False)
    one = RoomBank.build(tmp_path / "one", jobs=1, **common)
    RoomBank.build(tmp_path / "two", jobs=2, **common)  # a process pool: the same rooms
    a, b = _bank_files(tmp_path / "one"), _bank_files(tmp_path / "two")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert (tmp_path / "one" / "rooms.json").read_text() == (tmp_path / "two" / "rooms.json").read_text()
    other_seed = RoomBank.build(tmp_path / "three", jobs=1, **{**common, "seed": 4})
    assert not np.array_equal(other_seed[0][0], one[0][0])

    assert len(one) == 5
    splits = {s: RoomBank(tmp_path / "one", s) for s in ("train", "valid", "test")}
    assert {s: len(bank) for s, bank in splits.items()} == {"train": 3, "valid": 1, "test": 1}
    assert len(RoomBank(tmp_path / "one", "cv")) == 1  # WHAM!-style split names too
    files = {s: {bank.path(i) for i in range(len(bank))} for s, bank in splits.items()}
    assert not (files["train"] & files["valid"] or files["train"] & files["test"] or files["valid"] & files["test"])
    assert all(path.parent.name == split for split, paths in files.items() for path in paths)
    rooms = [one[i][0] for i in range(len(one))]
    assert all(not np.array_equal(rooms[i][:, :1500], rooms[j][:, :1500]) for i in range(5) for j in range(i))
    rirs, plan = splits["valid"][0]
    assert rirs.dtype == np.float32 and rirs.shape == (2, math.ceil(plan["rt60"] * RATE))
    assert 0.2 <= plan["rt60"] <= 0.3 and np.array_equal(rirs, impulse_responses(RoomPlan(**plan), RATE))

    # A folder with other things in it is refused; a bank is rebuilt in place.
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    with pytest.raises(CocktailError, match="not empty and not a room bank"):
        RoomBank.build(used, jobs=1, **common)
    with pytest.raises(CocktailError, match="is not a room bank"):
        RoomBank(used)
    assert cli.main(["corpus", "rooms", "--out", str(used), "--rooms", "3", "--sample-rate", str(RATE)]) == 1
    assert "not a room bank" in capsys.readouterr().err
    assert (used / "notes.txt").read_text() == "mine" and not (used / "train").exists()
    assert cli.main(["-q", "corpus", "rooms", "--out", str(tmp_path / "one"), "--rooms", "3", "--sample-rate",
                     str(RATE), "--rt60", "0.2,0.3", "-j", "1"]) == 0
    assert len(RoomBank(tmp_path / "one")) == 3 and len(_bank_files(tmp_path / "one")) == 3


# --------------------------------------------------------------------------------------
# reverberant dynamic mixing
# --------------------------------------------------------------------------------------


def speech_like(f0: float, seconds: float, seed: int) -> np.ndarray:
    """Harmonics of ``f0`` (amplitude 1/h) gated into 200 ms syllables with pauses between."""
    t = np.arange(int(seconds * RATE)) / RATE
    harmonics = np.arange(1, 6)[:, None]
    voiced = (np.sin(2 * np.pi * f0 * harmonics * t + seed) / harmonics).sum(axis=0)
    syllables = np.maximum(np.sin(2 * np.pi * 2.5 * t + seed), 0.0)
    return (0.2 * voiced * syllables).astype(np.float32)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    """Four speakers (each their own person), two utterances each in train and in valid, in
    our corpus layout: DIR/<split>/<utt>.flac, DIR/manifest.csv, DIR/corpus.json."""
    root = tmp_path_factory.mktemp("corpus")
    rows = []
    for number, (speaker, split, take) in enumerate(itertools.product(sorted(SPEAKERS), ("train", "valid"), (0, 1))):
        uid, seconds = f"{speaker}-{split}-{take}", 0.7 + 0.1 * (number % 4)
        (root / split).mkdir(exist_ok=True)
        sf.write(str(root / split / f"{uid}.flac"), speech_like(SPEAKERS[speaker], seconds, take), RATE)
        rows.append({"utterance_id": uid, "path": f"{split}/{uid}.flac", "speaker": speaker, "person": speaker,
                     "voice": speaker, "split": split, "duration": seconds, "sample_rate": RATE, "engine": "synthetic",
                     "language": "en", "gender": "x", "text": ""})
    write_manifest(root, rows, {"name": "rooms-test"})
    return root


@pytest.fixture(scope="module")
def bank_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rooms") / "bank"
    RoomBank.build(root, count=5, num_sources=2, sample_rate=RATE, seed=0, rt60=(0.2, 0.5), jobs=1, progress=False)
    return root


@pytest.fixture(scope="module")
def noise_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("noise")
    sf.write(str(root / "hiss.wav"), 0.05 * np.random.default_rng(2).standard_normal(RATE).astype(np.float32), RATE)
    return root


def _mixer(corpus_dir, **kwargs) -> DynamicMixer:
    return DynamicMixer(corpus_dir, split="train", segment=0.5, seed=7, **kwargs)


def test_reverberant_items_hold_early_targets_and_a_reverberant_mixture(corpus_dir, bank_dir, noise_dir):
    wet = _mixer(corpus_dir, noise=noise_dir, rooms=bank_dir)
    dry = _mixer(corpus_dir, noise=noise_dir)
    for i in range(len(wet)):
        item, plan = wet[i], wet.plan(i)
        assert plan.room is not None and plan.room.parent.name == "train" and plan.room.suffix == ".npy"
        assert item["reverberant"].shape == item["sources"].shape == (2, 4000)
        # The mixture is the reverberant images plus the (dry) noise.
        np.testing.assert_allclose(item["mixture"], item["reverberant"].sum(0) + item["noise"], atol=1e-5)
        # The targets are the dry talkers (the item without a room; the same gains, as nothing
        # here is loud enough to limit) convolved with the early part of the room's RIRs.
        assert [s.gain_db for s in plan.sources] == [s.gain_db for s in dry.plan(i).sources]
        talkers, rirs = dry[i]["sources"].numpy(), np.load(plan.room)
        for k in range(2):
            np.testing.assert_allclose(item["sources"][k], fftconvolve(talkers[k], early_part(rirs, RATE)[k])[:4000],
                                       atol=1e-5)
            np.testing.assert_allclose(item["reverberant"][k], fftconvolve(talkers[k], rirs[k])[:4000], atol=1e-5)
        # Rebuilt from the plan alone (room file included), it is the same item.
        rebuilt = render_plan(plan)
        assert np.array_equal(rebuilt["mixture"], item["mixture"].numpy())
        assert np.array_equal(rebuilt["sources"], item["sources"].numpy())
    # The validation mixer draws from the bank's valid rooms.
    valid = DynamicMixer(corpus_dir, split="valid", segment=0.5, seed=0, rooms=bank_dir)
    assert all(valid.plan(i).room.parent.name == "valid" for i in range(3))


def test_loud_reverberant_items_stay_under_the_peak_limit(corpus_dir, bank_dir, noise_dir):
    mixer = _mixer(corpus_dir, noise=noise_dir, rooms=bank_dir, level=(0.0, 0.0), snr=(0.0, 0.0))
    for i in range(4):
        item = mixer[i]
        for key in ("mixture", "sources", "reverberant", "noise"):
            assert float(item[key].abs().max()) <= 0.9 + 1e-5
        assert float(item["mixture"].abs().max()) == pytest.approx(0.9, abs=1e-4)  # it did have to limit
        np.testing.assert_allclose(item["mixture"], item["reverberant"].sum(0) + item["noise"], atol=1e-5)


def test_dry_items_are_unchanged_and_items_repeat(corpus_dir, bank_dir, noise_dir):
    before = _mixer(corpus_dir, noise=noise_dir)  # built as before rooms existed
    without = _mixer(corpus_dir, noise=noise_dir, rooms=None)
    never = _mixer(corpus_dir, noise=noise_dir, rooms=bank_dir, reverb_probability=0.0)
    for i in range(len(before)):
        a, b, c = before[i], without[i], never[i]
        assert a.keys() == b.keys() == c.keys() and "reverberant" not in a
        for key in ("mixture", "sources", "noise", "speaker_ids"):
            assert torch.equal(a[key], b[key]) and torch.equal(a[key], c[key])
        assert a["id"] == b["id"] == c["id"] and never.plan(i).room is None

    half = _mixer(corpus_dir, rooms=bank_dir, reverb_probability=0.5)
    half.set_epoch(3)
    items = [half[i] for i in range(len(half))]
    assert 0 < sum("reverberant" in item for item in items) < len(items)
    half.set_epoch(0)
    half.set_epoch(3)
    for i, item in enumerate(items):  # the same (epoch, index): the same item
        again = half[i]
        assert again.keys() == item.keys() and all(torch.equal(again[k], item[k]) for k in ("mixture", "sources"))
    # Real room and dry items batch together (the training collate drops the images).
    wet = [item for item in items if "reverberant" in item]
    dry = [item for item in items if "reverberant" not in item]
    mixed = collate([wet[0], dry[0], wet[-1]])
    assert mixed["mixture"].shape == (3, 4000) and "reverberant" not in mixed


def test_mixer_checks_the_bank(corpus_dir, bank_dir):
    with pytest.raises(CocktailError, match="rooms are at 8000 Hz but the mixer runs at 16000 Hz"):
        DynamicMixer(corpus_dir, split="train", sample_rate=16000, rooms=bank_dir)
    with pytest.raises(CocktailError, match="rooms hold 2 sources but mixtures have 3 talkers"):
        DynamicMixer(corpus_dir, split="train", num_speakers=3, rooms=bank_dir)
    with pytest.raises(CocktailError, match="reverb_probability must be in"):
        DynamicMixer(corpus_dir, split="train", rooms=bank_dir, reverb_probability=1.5)


def test_training_data_gets_the_matching_bank_split(corpus_dir, bank_dir):
    data = DataConfig(corpus=str(corpus_dir), segment_seconds=0.5, valid_segment_seconds=0.5,
                      rooms=str(bank_dir), reverb_probability=1.0)
    train, valid, _ = build_datasets(data, RATE, 2, training_seed=0)
    assert train.rooms.split == "train" and valid.rooms.split == "valid"
    assert "reverberant" in train[0] and valid.plan(0).room.parent.name == "valid"
    with pytest.raises(CocktailError, match="data.rooms: .* does not exist"):
        build_datasets(dataclasses.replace(data, rooms=str(bank_dir / "missing")), RATE, 2, training_seed=0)


def test_training_batches_never_carry_reverberant_images():
    # A batch of room and dry items (0 < reverb_probability < 1) must collate, and every batch
    # must hold the same keys for the captured CUDA-graph step.
    dry = {"mixture": torch.zeros(8), "sources": torch.zeros(2, 8)}
    wet = dict(dry, reverberant=torch.ones(2, 8))
    for items in ([dry, wet], [wet, wet], [dry, dry]):
        batch = collate(items)
        assert set(batch) == {"mixture", "sources"} and batch["sources"].shape == (2, 2, 8)
