"""Synthetic augmentation noise: deterministic, split into folders, spectrally what it says."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from cocktailparty import cli
from cocktailparty.data import noise
from cocktailparty.data.noise import NoiseFolder


def _slope(x: np.ndarray, rate: int) -> float:
    """Least-squares slope of log10 power against log10 frequency over 100 Hz - 4 kHz."""
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.shape[-1], 1.0 / rate)
    band = (freqs > 100) & (freqs < 4000)
    return float(np.polyfit(np.log10(freqs[band]), np.log10(power[band]), 1)[0])


@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0])
def test_colored_noise_has_the_asked_spectral_slope(exponent):
    x = noise.colored(np.random.default_rng(0), 16000 * 4, 16000, exponent=exponent)
    assert _slope(x, 16000) == pytest.approx(-exponent, abs=0.1)


def test_hum_sits_on_mains_harmonics():
    rate = 16000
    x = noise.hum(np.random.default_rng(3), rate * 4, rate)
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.shape[-1], 1.0 / rate)
    peak = freqs[np.argmax(power)]
    assert min(abs(peak / 50 - round(peak / 50)), abs(peak / 60 - round(peak / 60))) < 0.03
    assert peak < 1000


def test_make_noise_level_length_and_kinds():
    x, kinds = noise.make_noise(np.random.default_rng(1), 1.5, 8000)
    assert x.shape == (12000,) and x.dtype == np.float32
    assert 10 * np.log10(np.mean(x.astype(np.float64) ** 2)) == pytest.approx(noise.RMS_DBFS, abs=0.5)
    assert kinds[0] in ("colored", "shaped") and set(kinds) <= set(noise.KINDS) and len(set(kinds)) == len(kinds)


def test_cli_builds_split_folders_deterministically(tmp_path):
    args = ["corpus", "noise", "--train", "3", "--valid", "1", "--test", "1", "--seconds", "0.5",
            "--sample-rate", "8000"]
    assert cli.main([*args, "--out", str(tmp_path / "a")]) == 0
    assert cli.main([*args, "--out", str(tmp_path / "b")]) == 0
    record = json.loads((tmp_path / "a" / "noise.json").read_text())
    assert sorted(record["files"]) == ["test/noise-0000.flac", "train/noise-0000.flac", "train/noise-0001.flac",
                                       "train/noise-0002.flac", "valid/noise-0000.flac"]
    for name in record["files"]:
        a, rate = sf.read(tmp_path / "a" / name)
        b, _ = sf.read(tmp_path / "b" / name)
        assert rate == 8000 and a.shape == (4000,) and np.array_equal(a, b)
    train, valid = sf.read(tmp_path / "a" / "train/noise-0000.flac")[0], sf.read(tmp_path / "a" / "valid/noise-0000.flac")[0]
    assert not np.allclose(train, valid)  # splits come from different seeds
    assert len(NoiseFolder(tmp_path / "a", split="train")) == 3  # what data.noise reads
    assert len(NoiseFolder(tmp_path / "a", split="valid")) == 1


def test_cli_refuses_to_overwrite_and_bad_arguments(tmp_path, capsys):
    out = str(tmp_path / "n")
    assert cli.main(["corpus", "noise", "--out", out, "--train", "1", "--valid", "0", "--test", "0",
                     "--seconds", "0.2"]) == 0
    assert cli.main(["corpus", "noise", "--out", out, "--train", "1"]) == 1
    assert "already holds a noise folder; add --force" in capsys.readouterr().err
    assert cli.main(["corpus", "noise", "--out", out, "--seconds", "0", "--force"]) == 1
    assert "--seconds must be positive" in capsys.readouterr().err
    assert cli.main(["corpus", "noise", "--out", out, "--train", "0", "--valid", "0", "--test", "0", "--force"]) == 1
    assert "not all 0" in capsys.readouterr().err
