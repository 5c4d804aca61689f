import logging
import os

import numpy as np
import pytest
import soundfile

from cocktailparty.core import audio
from cocktailparty.core.errors import AudioError


def tone(freq: float, rate: int, seconds: float, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    x = 0.5 * np.sin(2 * np.pi * freq * t)
    return np.stack([x * (c + 1) / channels for c in range(channels)]).astype(np.float32)


@pytest.mark.parametrize(
    "name,subtype",
    [("a.wav", "PCM_16"), ("a.wav", "PCM_24"), ("a.wav", "FLOAT"), ("a.flac", "PCM_16"), ("a.ogg", "VORBIS")],
)
def test_read_formats_and_depths(tmp_path, name, subtype):
    x = tone(440, 16000, 0.5)[0]
    soundfile.write(tmp_path / name, x, 16000, subtype=subtype)
    y, rate = audio.read(tmp_path / name)
    assert rate == 16000 and y.dtype == np.float32 and y.shape == x.shape
    tolerance = 0.05 if subtype == "VORBIS" else 1e-3
    assert np.abs(y - x).max() < tolerance


def test_channels_mean_pick_and_all(tmp_path):
    x = tone(300, 8000, 0.25, channels=3)
    soundfile.write(tmp_path / "multi.wav", x.T, 8000, subtype="FLOAT")
    mean, _ = audio.read(tmp_path / "multi.wav")
    np.testing.assert_allclose(mean, x.mean(axis=0), atol=1e-6)
    second, _ = audio.read(tmp_path / "multi.wav", channel=1)
    np.testing.assert_allclose(second, x[1], atol=1e-6)
    everything, _ = audio.read(tmp_path / "multi.wav", channel="all")
    assert everything.shape == (3, x.shape[1])
    with pytest.raises(AudioError, match="3 channel"):
        audio.read(tmp_path / "multi.wav", channel=5)


def test_resample_keeps_frequency_and_length(tmp_path):
    x = tone(1000, 44100, 1.0)[0]
    soundfile.write(tmp_path / "hi.wav", x, 44100, subtype="FLOAT")
    y, rate = audio.read(tmp_path / "hi.wav", sample_rate=8000)
    assert rate == 8000 and abs(len(y) - 8000) <= 1
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    peak_hz = np.argmax(spectrum) * 8000 / len(y)
    assert abs(peak_hz - 1000) < 2
    # Far from the edges, a resampled sine is still a sine of the same amplitude.
    assert abs(np.abs(y[1000:-1000]).max() - 0.5) < 0.01


def test_resample_multichannel_shape():
    x = tone(200, 48000, 0.1, channels=2)
    y = audio.resample(x, 48000, 16000)
    assert y.shape == (2, 1600) and y.dtype == np.float32


def test_errors_name_file_and_problem(tmp_path):
    with pytest.raises(AudioError, match="missing.wav: no such file"):
        audio.read(tmp_path / "missing.wav")
    (tmp_path / "notes.txt").write_text("hello, not audio")
    with pytest.raises(AudioError, match="notes.txt: not a sound file"):
        audio.read(tmp_path / "notes.txt")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="empty.wav: is empty"):
        audio.read(tmp_path / "empty.wav")
    with pytest.raises(AudioError, match="is a folder"):
        audio.read(tmp_path)
    soundfile.write(tmp_path / "zero.wav", np.zeros(0, np.float32), 8000)
    with pytest.raises(AudioError, match="zero length"):
        audio.read(tmp_path / "zero.wav")
    soundfile.write(tmp_path / "short.wav", np.ones(80, np.float32) * 0.1, 8000)
    with pytest.raises(AudioError, match="0.010 s long; at least 0.5 s"):
        audio.read(tmp_path / "short.wav", min_seconds=0.5)
    bad = tone(100, 8000, 0.1)[0]
    bad[10] = np.nan
    bad[20] = np.inf
    soundfile.write(tmp_path / "nan.wav", bad, 8000, subtype="FLOAT")
    with pytest.raises(AudioError, match="nan.wav: contains 2 NaN or infinite"):
        audio.read(tmp_path / "nan.wav")


def test_silent_input_warns_but_reads(tmp_path, caplog):
    soundfile.write(tmp_path / "silence.wav", np.zeros(800, np.float32), 8000)
    with caplog.at_level(logging.WARNING, logger="cocktailparty"):
        y, _ = audio.read(tmp_path / "silence.wav")
    assert y.shape == (800,)
    assert "silence.wav: is silent" in caplog.text


def test_write_is_atomic_and_round_trips(tmp_path):
    x = tone(500, 16000, 0.2)[0]
    out = audio.write(tmp_path / "sub" / "out.wav", x, 16000)
    assert out.exists() and sorted(os.listdir(out.parent)) == ["out.wav"]  # no temp left behind
    y, rate = audio.read(out)
    assert rate == 16000 and np.abs(y - x).max() < 1e-4
    stereo = tone(500, 16000, 0.2, channels=2)
    audio.write(tmp_path / "stereo.flac", stereo, 16000)
    assert soundfile.info(str(tmp_path / "stereo.flac")).channels == 2


def test_write_clips_integer_formats_with_warning(tmp_path, caplog):
    x = np.array([0.0, 1.5, -2.0, 0.25], np.float32)
    with caplog.at_level(logging.WARNING, logger="cocktailparty"):
        audio.write(tmp_path / "loud.wav", x, 8000)
    assert "clipping" in caplog.text
    y, _ = audio.read(tmp_path / "loud.wav")
    assert y.max() <= 1.0 and y.min() >= -1.0
    audio.write(tmp_path / "loud-float.wav", x, 8000, subtype="FLOAT")
    z, _ = audio.read(tmp_path / "loud-float.wav")
    np.testing.assert_array_equal(z, x)


def test_write_failure_keeps_existing_file(tmp_path):
    target = tmp_path / "keep.wav"
    audio.write(target, tone(300, 8000, 0.1)[0], 8000)
    before = target.read_bytes()
    with pytest.raises(AudioError, match="NaN"):
        audio.write(target, np.array([np.nan], np.float32), 8000)
    assert target.read_bytes() == before
    with pytest.raises(AudioError, match="cannot write '.xyz'"):
        audio.write(tmp_path / "out.xyz", np.zeros(10, np.float32), 8000)


def test_unwritable_folder_path_is_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(AudioError, match="cannot write output there"):
        audio.write(tmp_path / "afile" / "x.wav", np.zeros(10, np.float32), 8000)


def test_find_audio_files_recurses_and_filters(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/one.wav", "a/b/two.FLAC", "a/b/readme.txt", "three.ogg"):
        (tmp_path / name).write_bytes(b"x")
    found = audio.find_audio_files([tmp_path / "a", tmp_path / "three.ogg"])
    assert [p.name for p in found] == ["two.FLAC", "one.wav", "three.ogg"]  # sorted by path
    with pytest.raises(AudioError, match="no such file or folder"):
        audio.find_audio_files([tmp_path / "nope"])
