"""The channel effects of the dynamic mixer (data.eq, data.band_limit, data.codec): the filters
and the codec round trip on their own, then in mixtures, on a tiny broadband corpus."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import sosfreqz

from cocktailparty.core.errors import CocktailError
from cocktailparty.data.channel_effects import (BandLimitSettings, CodecPlan, CodecSettings, EqBand, EqSettings, biquad,
                                                codec_round_trip, equalise, low_pass)
from cocktailparty.data.mixing import DynamicMixer
from cocktailparty.data.mixture_plan import placed_source, render_plan
from cocktailparty.train.config import DataConfig, resolve_config
from cocktailparty.train.data import build_datasets
from tests.helpers import write_manifest

RATE = 8000
SEGMENT = 0.5


def voice(f0: float, seconds: float, seed: int, rate: int = RATE) -> np.ndarray:
    """Harmonics of ``f0`` up to Nyquist in 200 ms syllables, and noise bursts (fricatives)
    between them: a signal with energy across the whole band."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    harmonics = np.arange(1, int(rate / 2 / f0))[:, None]
    voiced = (np.sin(2 * np.pi * f0 * harmonics * t + seed) / harmonics).sum(axis=0)
    gate = np.sin(2 * np.pi * 2.5 * t + seed)
    fricative = rng.standard_normal(t.size) * (gate < -0.6)
    return (0.15 * voiced * np.maximum(gate, 0.0) + 0.05 * fricative).astype(np.float32)


def band_power_db(signal, rate: int, low: float, high: float) -> float:
    """The power of ``signal`` (time,) between ``low`` and ``high`` Hz, dB. Hann-windowed: the
    jump between a cut signal's ends would otherwise leak over the whole band."""
    signal = np.asarray(signal, dtype=np.float64)
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal)))) ** 2
    freqs = np.fft.rfftfreq(len(signal), 1.0 / rate)
    return float(10 * np.log10(spectrum[(freqs >= low) & (freqs < high)].sum() + 1e-30))


def xcorr_peak_lag(y: np.ndarray, x: np.ndarray) -> int:
    return int(np.argmax(np.correlate(y, x, mode="full"))) - (len(x) - 1)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    rows = []
    for number, (speaker, f0) in enumerate((("a", 110.0), ("b", 150.0), ("c", 205.0), ("d", 240.0))):
        for take in range(2):
            uid, rel = f"{speaker}{take}", f"train/{speaker}{take}.flac"
            (root / "train").mkdir(exist_ok=True)
            sf.write(str(root / rel), voice(f0, 0.7 + 0.1 * take, 10 * number + take), RATE)
            rows.append({"utterance_id": uid, "path": rel, "speaker": speaker, "person": speaker,
                         "split": "train", "sample_rate": RATE})
    write_manifest(root, rows, {"name": "channel-test"})
    return root


@pytest.fixture(scope="module")
def noise_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("noise")
    sf.write(str(root / "white.wav"), 0.05 * np.random.default_rng(3).standard_normal(RATE).astype(np.float32), RATE)
    return root


def mixer(corpus_dir, noise_dir=None, **kwargs) -> DynamicMixer:
    return DynamicMixer(corpus_dir, split="train", segment=SEGMENT, seed=5, noise=noise_dir, **kwargs)


# --------------------------------------------------------------------------------------
# the filters and the codec on their own
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [8000, 16000])
def test_eq_bands_have_their_gain_where_their_design_puts_it(rate):
    for gain in (-9.0, 4.0, 12.0):
        peak = biquad(EqBand("peaking", 1000.0, gain, 1.4), rate)
        low = biquad(EqBand("low_shelf", 300.0, gain, 1 / np.sqrt(2)), rate)
        high = biquad(EqBand("high_shelf", 2500.0, gain, 1 / np.sqrt(2)), rate)
        _, h = sosfreqz(peak[None], worN=[1000.0, 20.0, 0.49 * rate], fs=rate)
        centre, far_low, far_high = 20 * np.log10(np.abs(h))
        assert centre == pytest.approx(gain, abs=1e-6) and abs(far_low) < 0.1 and abs(far_high) < 0.5
        _, h = sosfreqz(low[None], worN=[0.0, rate / 2], fs=rate)
        assert 20 * np.log10(np.abs(h)) == pytest.approx([gain, 0.0], abs=1e-6)
        _, h = sosfreqz(high[None], worN=[0.0, rate / 2], fs=rate)
        assert 20 * np.log10(np.abs(h)) == pytest.approx([0.0, gain], abs=1e-6)
    # Measured on a signal: a sine at the centre of a +6 dB peaking band comes out 6 dB louder.
    t = np.arange(rate) / rate
    tone = np.sin(2 * np.pi * 1000.0 * t).astype(np.float32)
    out = equalise(tone, [EqBand("peaking", 1000.0, 6.0, 1.0)], rate)
    settled = slice(rate // 2, None)
    assert 20 * np.log10(np.std(out[settled]) / np.std(tone[settled])) == pytest.approx(6.0, abs=0.5)


@pytest.mark.parametrize("rate, cutoff", [(8000, 1800.0), (16000, 3400.0)])
def test_low_pass_keeps_the_band_and_removes_the_octave_above(rate, cutoff):
    noise = np.random.default_rng(0).standard_normal(2 * rate).astype(np.float32)
    out = low_pass(noise, cutoff, rate)
    kept = band_power_db(out, rate, 100, 0.9 * cutoff) - band_power_db(noise, rate, 100, 0.9 * cutoff)
    removed = band_power_db(out, rate, 2 * cutoff, rate / 2) - band_power_db(noise, rate, 2 * cutoff, rate / 2)
    assert abs(kept) < 0.6 and removed < -55


@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("codec", ["opus", "mp3"])
def test_codec_round_trip_keeps_length_and_alignment(rate, codec):
    x = voice(130.0, 1.0, 1, rate)
    x[rate // 3] += 0.5  # a click: a misalignment would show at once
    for kbps in (10, 24, 64):
        y = codec_round_trip(x, rate, CodecPlan(codec, kbps))
        assert y.shape == x.shape and y.dtype == np.float32
        assert xcorr_peak_lag(y, x) == 0
        snr = 10 * np.log10(np.sum(x.astype(np.float64) ** 2) / np.sum((y - x).astype(np.float64) ** 2))
        assert 5.0 < snr < 45.0, (kbps, snr)
    # Odd lengths too (not a whole number of codec frames).
    assert codec_round_trip(x[:1001], rate, CodecPlan(codec, 16)).shape == (1001,)


# --------------------------------------------------------------------------------------
# in mixtures
# --------------------------------------------------------------------------------------


def test_switches_off_leave_every_item_bit_identical(corpus_dir, noise_dir):
    before = mixer(corpus_dir, noise_dir, speed=(0.9, 1.1))  # built as before the switches existed
    off = mixer(corpus_dir, noise_dir, speed=(0.9, 1.1), eq=None, band_limit=None, codec=None)
    never = mixer(corpus_dir, noise_dir, speed=(0.9, 1.1), eq={"probability": 0.0},
                  band_limit={"probability": 0.0, "cutoff_hz": [2000, 3000]}, codec={"probability": 0.0})
    for epoch in (0, 3):
        for m in (before, off, never):
            m.set_epoch(epoch)
        for i in range(len(before)):
            a, b, c = before[i], off[i], never[i]
            assert a.keys() == b.keys() == c.keys()
            for key in ("mixture", "sources", "noise", "speaker_ids"):
                assert torch.equal(a[key], b[key]) and torch.equal(a[key], c[key])
            plan = never.plan(i)
            assert plan.codec is None and plan.band_limit_hz is None and all(not s.eq for s in plan.sources)


def test_eq_colours_each_target_as_its_talker_was_recorded(corpus_dir, noise_dir):
    plain = mixer(corpus_dir, noise_dir)
    eq = mixer(corpus_dir, noise_dir, eq={"probability": 1.0, "bands": 2, "gain_db": 10})
    for i in range(len(eq)):
        item, plan = eq[i], eq.plan(i)
        assert all(len(s.eq) == 2 and all(abs(b.gain_db) <= 10 for b in s.eq) for s in plan.sources)
        # Each target is its talker's placed cut, equalised with the plan's bands, at its gain.
        for k, source in enumerate(plan.sources):
            as_recorded = placed_source(dataclasses.replace(source, eq=[]), plan)
            equalised = equalise(as_recorded, source.eq, RATE).astype(np.float64)
            expected = (equalised * 10.0 ** (source.gain_db / 20.0)).astype(np.float32)
            assert np.array_equal(item["sources"][k].numpy(), expected)
        # The mixture still sums its parts exactly; only the talkers changed (EQ has its own
        # random stream), so the utterances and cuts are those of the item without EQ.
        np.testing.assert_array_equal(item["mixture"], item["sources"].sum(0) + item["noise"])
        assert [(s.utterance_id, s.start, s.place) for s in plan.sources] == \
               [(s.utterance_id, s.start, s.place) for s in plain.plan(i).sources]
    # A single band's gain shows in the target's spectrum: a +12 dB peak at 1 kHz, Q 2.
    band = EqBand("peaking", 1000.0, 12.0, 2.0)
    source = plain.plan(0).sources[0]
    before = placed_source(source, plain.plan(0))
    after = placed_source(dataclasses.replace(source, eq=[band]), plain.plan(0))
    lift = band_power_db(after, RATE, 950, 1050) - band_power_db(before, RATE, 950, 1050)
    assert lift == pytest.approx(12.0, abs=1.0)
    assert abs(band_power_db(after, RATE, 3000, 3800) - band_power_db(before, RATE, 3000, 3800)) < 0.5


def test_band_limit_removes_the_band_above_the_cutoff_from_mixture_and_targets(corpus_dir, noise_dir):
    full = mixer(corpus_dir, noise_dir)
    limited = mixer(corpus_dir, noise_dir, band_limit={"probability": 1.0, "cutoff_hz": [1500, 1700]})
    for i in range(len(limited)):
        a, b, plan = full[i], limited[i], limited.plan(i)
        cutoff = plan.band_limit_hz
        assert 1500 <= cutoff <= 1700
        signals = [("mixture", a["mixture"], b["mixture"]), ("noise", a["noise"], b["noise"])]
        signals += [(f"s{k}", a["sources"][k], b["sources"][k]) for k in range(2)]
        for name, before, after in signals:
            # The level rule re-levels the band-limited talkers, so compare the top octave's
            # loss against the passband's change.
            passband = band_power_db(after, RATE, 100, 0.9 * cutoff) - band_power_db(before, RATE, 100, 0.9 * cutoff)
            above = band_power_db(after, RATE, 2 * cutoff, RATE / 2) - band_power_db(before, RATE, 2 * cutoff, RATE / 2)
            assert above - passband < -30, (name, above - passband)
        np.testing.assert_array_equal(b["mixture"], b["sources"].sum(0) + b["noise"])


def test_codec_codes_the_mixture_and_leaves_the_targets_clean(corpus_dir, noise_dir):
    clean = mixer(corpus_dir, noise_dir)
    for codec in ("opus", "mp3"):
        coded = mixer(corpus_dir, noise_dir, codec={"probability": 1.0, "codecs": [codec], "kbps": [16, 24]})
        for i in range(len(coded)):
            a, b, plan = clean[i], coded[i], coded.plan(i)
            assert plan.codec.name == codec and 16 <= plan.codec.kbps <= 24
            for key in ("sources", "noise", "speaker_ids"):
                assert torch.equal(a[key], b[key])
            x, y = a["mixture"].numpy(), b["mixture"].numpy()
            assert y.shape == x.shape and xcorr_peak_lag(y, x) == 0
            snr = 10 * np.log10(np.sum(x.astype(np.float64) ** 2) / np.sum((y - x).astype(np.float64) ** 2))
            assert 5.0 < snr < 40.0, (codec, snr)


def test_channel_effects_are_a_function_of_seed_epoch_index_and_rebuild_from_the_plan(corpus_dir, noise_dir):
    settings = dict(eq={"probability": 0.5}, band_limit={"probability": 0.5, "cutoff_hz": [1500, 3000]},
                    codec={"probability": 0.5})
    a, b = mixer(corpus_dir, noise_dir, **settings), mixer(corpus_dir, noise_dir, **settings)
    plans = {}
    for epoch in (0, 1):
        a.set_epoch(epoch), b.set_epoch(epoch)
        for i in range(len(a)):
            x, y = a[i], b[i]
            for key in ("mixture", "sources", "noise"):
                assert torch.equal(x[key], y[key])
            plan = a.plan(i)
            plans[epoch, i] = (plan.codec, plan.band_limit_hz, [s.eq for s in plan.sources])
            # The plan records what was drawn, and rebuilds the item from the files alone.
            rebuilt = render_plan(plan)
            assert np.array_equal(rebuilt["mixture"], x["mixture"].numpy())
            assert np.array_equal(rebuilt["sources"], x["sources"].numpy())
    drawn = list(plans.values())
    assert any(p[0] is not None for p in drawn) and any(p[0] is None for p in drawn)
    assert any(p[1] is not None for p in drawn) and any(p[1] is None for p in drawn)
    assert plans[0, 0] != plans[1, 0] or plans[0, 1] != plans[1, 1]  # another epoch, other draws


def test_bad_settings_are_refused_with_the_key_named(corpus_dir):
    def resolve(**data):
        return resolve_config({"model": {"architecture": "tdanet"}, "data": dict(corpus="x", **data)}, "run.yaml")

    cases = [
        (dict(eq={"probability": 1.5}), r"run.yaml: data.eq.probability must be a number in \[0, 1\], got 1.5"),
        (dict(codec={"probability": -0.1}), r"data.codec.probability must be a number in \[0, 1\]"),
        (dict(band_limit={"probability": "often"}), r"data.band_limit.probability must be a number"),
        (dict(eq={"bands": 0}), r"data.eq.bands must be a positive integer"),
        (dict(eq={"gain_db": -3}), r"data.eq.gain_db must be a number from 0 to 24"),
        (dict(eq={"gain": 6}), r"data.eq: unknown key\(s\) gain; valid: probability, bands, gain_db"),
        (dict(eq=True), r"data.eq must be a mapping such as \{probability: 0.5, bands: 3, gain_db: 6\}"),
        (dict(band_limit={"cutoff_hz": [7000, 3400]}), r"data.band_limit.cutoff_hz must be \[low, high\] with 0 < low"),
        (dict(band_limit={"cutoff_hz": 3400}), r"data.band_limit.cutoff_hz must be two numbers"),
        (dict(codec={"codecs": ["opus", "aac"]}), r"data.codec.codecs: unknown codec 'aac'; known: opus, mp3"),
        (dict(codec={"codecs": "opus"}), r"data.codec.codecs must be a list"),
        (dict(codec={"kbps": [8, 32]}), r"data.codec.kbps must be \[low, high\], whole kbps with 10 <= low"),
        (dict(codec={"kbps": [32, 12]}), r"data.codec.kbps must be"),
        (dict(codec={"kbps": [12.5, 20]}), r"data.codec.kbps must be"),
    ]
    for data, message in cases:
        with pytest.raises(CocktailError, match=message):
            resolve(**data)
    # Keys left out take their defaults, and config.yaml records them all.
    data = resolve(eq={"probability": 0.3}, band_limit={}, codec={"codecs": ["mp3"]})["data"]
    assert data["eq"] == {"probability": 0.3, "bands": 3, "gain_db": 6.0}
    assert data["band_limit"] == {"probability": 0.5, "cutoff_hz": [3400.0, 7000.0]}
    assert data["codec"] == {"probability": 0.5, "codecs": ["mp3"], "kbps": [12, 32]}
    assert resolve()["data"]["eq"] is None
    # What depends on the sample rate is the mixer's to check.
    with pytest.raises(CocktailError, match=r"band_limit.cutoff_hz \[3400.0, 7000.0\] must stay below the Nyquist "
                                            r"frequency, 4000 Hz at 8000 Hz"):
        DynamicMixer(corpus_dir, split="train", band_limit={})
    with pytest.raises(CocktailError, match="codec: opus does not code 11025 Hz audio"):
        DynamicMixer(corpus_dir, split="train", sample_rate=11025, codec={"codecs": ["mp3", "opus"]})
    DynamicMixer(corpus_dir, split="train", sample_rate=11025, codec={"codecs": ["mp3"]})


def test_training_mixtures_get_the_effects_and_validation_does_not(corpus_dir, tmp_path):
    data = DataConfig(corpus=str(corpus_dir), valid_split="train", segment_seconds=SEGMENT,
                      eq={"probability": 1.0}, band_limit={"probability": 1.0, "cutoff_hz": [2000, 3000]},
                      codec={"probability": 1.0})
    train, valid, _ = build_datasets(data, RATE, 2, training_seed=0)
    assert isinstance(train.eq, EqSettings) and isinstance(train.band_limit, BandLimitSettings)
    assert isinstance(train.codec, CodecSettings)
    assert valid.eq is None and valid.band_limit is None and valid.codec is None
    plan = train.plan(0)
    assert plan.codec is not None and plan.band_limit_hz is not None and all(s.eq for s in plan.sources)
    fixed = DataConfig(train_set=str(tmp_path), valid_set=str(tmp_path), codec={"probability": 0.5})
    with pytest.raises(CocktailError, match=r"data.codec: the channel effects are drawn with each mixture, so they "
                                            r"need dynamic mixing"):
        build_datasets(fixed, RATE, 2, training_seed=0)
