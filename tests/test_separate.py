
import numpy as np
import pytest
import soundfile
import torch

from cocktailparty.cli import main
from cocktailparty.core import checkpoint
from cocktailparty.inference.separate import Separator, best_order, match_mixture_scale
from tests.toys import BandSplit, BandSplitConfig


# One tone per talker, each inside its own band of BandSplit (cutoffs at 1000, 2000 Hz).
TONES_HZ = {2: (300.0, 2500.0), 3: (300.0, 1500.0, 2500.0)}


def alternating_talkers(rate=8000, seconds=30.0, switch=3.0, count=2, samples=None):
    """``count`` tones; every ``switch`` seconds the next one becomes the loud one (0.8 vs 0.2)."""
    t = np.arange(samples if samples is not None else int(rate * seconds)) / rate
    loud = np.floor(t / switch) % count
    return np.stack([np.sin(2 * np.pi * f * t) * np.where(loud == k, 0.8, 0.2)
                     for k, f in enumerate(TONES_HZ[count])]).astype(np.float32)


def si_snr(est, ref):
    ref = ref - ref.mean()
    est = est - est.mean()
    target = (est @ ref) / (ref @ ref) * ref
    return 10 * np.log10((target @ target) / ((est - target) @ (est - target)))


RATE, CHUNK_S, OVERLAP_S = 8000, 4.0, 1.0
HOP = int((CHUNK_S - OVERLAP_S) * RATE)


@pytest.mark.slow
@pytest.mark.parametrize("count,samples,switch", [
    (2, 30 * RATE, 3.0),  # many chunks, the louder talker changes inside and across them
    (3, 30 * RATE, 2.5),  # three talkers: the order is a permutation, not a swap
    (2, int(CHUNK_S * RATE), 1.5),  # exactly one chunk: no stitching at all
    (2, int(CHUNK_S * RATE) + 1, 1.5),  # a second chunk one sample longer than the overlap
    (2, 3 * HOP + int(OVERLAP_S * RATE), 2.0),  # the last chunk ends exactly at the end
    (3, 3 * HOP + int(OVERLAP_S * RATE) + 1, 2.0),  # ... and one sample past it
], ids=["2talkers-30s", "3talkers-30s", "one-chunk", "overlap+1", "exact-fit", "3talkers-exact-fit+1"])
def test_chunked_output_keeps_each_talker_on_one_track(count, samples, switch):
    """Issue 7 item 2: stitched chunks, no track swaps, SI-SNRi within 1 dB of separating whole."""
    sources = alternating_talkers(RATE, switch=switch, count=count, samples=samples)
    mixture = sources.sum(0)
    model = BandSplit(BandSplitConfig(num_sources=count))
    chunked = Separator(model, device="cpu", chunk_seconds=CHUNK_S, overlap_seconds=OVERLAP_S)(mixture, RATE)
    whole = Separator(model, device="cpu", chunk_seconds=None)(mixture, RATE)
    assert chunked.shape == whole.shape == sources.shape
    order = best_order(sources, chunked)
    # Every 1-second window (the last one flush with the end): the track assigned to a talker
    # holds that talker, so no chunk boundary swapped tracks.
    starts = sorted(set(range(0, samples - RATE + 1, RATE)) | {samples - RATE})
    for start in starts:
        window = slice(start, start + RATE)
        for talker, track in enumerate(order):
            assert si_snr(chunked[track, window], sources[talker, window]) > 20, (start, talker)
    whole_order = best_order(sources, whole)
    for talker in range(count):
        baseline = si_snr(mixture, sources[talker])
        chunked_improvement = si_snr(chunked[order[talker]], sources[talker]) - baseline
        whole_improvement = si_snr(whole[whole_order[talker]], sources[talker]) - baseline
        assert whole_improvement > 15  # the oracle does separate, so the comparison means something
        assert abs(chunked_improvement - whole_improvement) < 1.0


def test_output_is_at_the_mixture_scale_and_input_rate():
    sources = alternating_talkers(rate=8000, seconds=3.0, switch=10.0)
    mixture = sources.sum(0)
    from cocktailparty.core.audio import resample

    mixture_16k = resample(mixture, 8000, 16000)
    out = Separator(BandSplit(BandSplitConfig()), device="cpu")(mixture_16k, 16000)
    assert out.shape == (2, mixture_16k.shape[0])
    # The model halves its output; the separator restores the recording's level.
    np.testing.assert_allclose(out.sum(0)[2000:-2000], mixture_16k[2000:-2000], atol=0.02)


def test_stereo_input_is_averaged():
    sources = alternating_talkers(seconds=1.0)
    stereo = np.stack([sources.sum(0), sources.sum(0)])
    separator = Separator(BandSplit(BandSplitConfig()), device="cpu")
    np.testing.assert_allclose(separator(stereo, 8000), separator(sources.sum(0), 8000), atol=1e-6)


def test_match_mixture_scale_recovers_gains():
    rng = np.random.default_rng(0)
    # Uncorrelated sources (orthonormal rows): each gain is exactly recoverable.
    true = np.linalg.qr(rng.standard_normal((4000, 3)))[0].T.astype(np.float32)
    scaled = true * np.array([[0.1], [3.0], [0.5]], np.float32)
    np.testing.assert_allclose(match_mixture_scale(scaled, true.sum(0)), true, atol=1e-5)


def test_match_mixture_scale_turns_an_inverted_estimate_the_right_way_up():
    # SI-SNR training does not fix the sign: an output may be the talker upside down.
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((2, 8000))
    a -= b * (a @ b) / (b @ b)  # uncorrelated talkers
    out = match_mixture_scale(np.stack([-40.0 * a, 7.0 * b]).astype(np.float32), a + b)
    np.testing.assert_allclose(out, np.stack([a, b]), atol=1e-5)


def test_match_mixture_scale_never_silences_a_leaky_estimate():
    # The louder estimate carries much of the quiet talker: the fit gives the quiet one a
    # negative gain, which must stay a (sign-flipped) audible track that completes the mixture.
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 8000))
    mixture = a + 0.3 * b
    estimates = 50.0 * np.stack([a + 0.5 * b, 0.3 * b + 0.2 * a]).astype(np.float32)
    out = match_mixture_scale(estimates, mixture)
    assert np.all(np.sqrt(np.mean(out.astype(np.float64) ** 2, axis=1)) > 0.1)
    np.testing.assert_allclose(out.sum(0), mixture, atol=1e-4)


def test_match_mixture_scale_falls_back_when_estimates_are_collinear():
    # Both outputs hold the same talker, one with a trace of the other: fitting the mixture
    # exactly would take gains of about +100 and -99, tracks 40 dB louder than the recording.
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((2, 8000))
    mixture = a + b
    estimates = 30.0 * np.stack([a, a + 0.01 * b]).astype(np.float32)
    joint = np.linalg.lstsq(estimates.T.astype(np.float64), mixture, rcond=None)[0]
    assert np.abs(joint).max() * 30 > 50
    out = match_mixture_scale(estimates, mixture)
    rms = np.sqrt(np.mean(out.astype(np.float64) ** 2, axis=1))
    assert np.all(rms <= np.sqrt(np.mean(mixture ** 2)) * 1.0001) and np.all(rms > 0.5)


@pytest.mark.parametrize("count", [2, 3, 6])
def test_best_order_finds_the_permutation(count):
    rng = np.random.default_rng(count)
    reference = rng.standard_normal((count, 500))
    perm = rng.permutation(count)
    estimate = reference[perm] * 2.0 + 0.1 * rng.standard_normal((count, 500))
    order = best_order(reference, estimate)
    np.testing.assert_array_equal(estimate[order], estimate[np.argsort(perm)])


def test_cli_separate_writes_skips_and_reports_failures(tmp_path, capsys, caplog):
    model_path = checkpoint.save(BandSplit(BandSplitConfig()), tmp_path / "band.safetensors")
    sources = alternating_talkers(seconds=2.0)
    (tmp_path / "in").mkdir()
    soundfile.write(tmp_path / "in" / "a.wav", sources.sum(0), 8000)
    (tmp_path / "in" / "broken.wav").write_bytes(b"RIFF not really a wav file")
    out = tmp_path / "out"
    argv = ["separate", str(tmp_path / "in"), "-o", str(out), "--model", str(model_path), "--device", "cpu"]
    assert main(argv) == 1  # one file failed
    assert "broken.wav: not a sound file" in caplog.text
    assert "Traceback" not in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["a_s1.wav", "a_s2.wav"]
    s1, rate = soundfile.read(out / "a_s1.wav")
    assert rate == 8000 and s1.shape == (16000,)
    stamp = (out / "a_s1.wav").stat().st_mtime_ns
    (tmp_path / "in" / "broken.wav").unlink()
    assert main(argv) == 0
    assert "skipping" in caplog.text
    assert (out / "a_s1.wav").stat().st_mtime_ns == stamp
    assert main(argv + ["--force"]) == 0
    assert (out / "a_s1.wav").stat().st_mtime_ns != stamp


# --- waveform layouts: what soundfile, librosa and torchaudio return ----------------------


def stereo_pair(seconds=1.0):
    """Two different channels of one two-talker recording, and their mean."""
    sources = alternating_talkers(seconds=seconds)
    left, right = sources[0] + 0.5 * sources[1], sources[1] + 0.5 * sources[0]
    return left, right, (left + right) / 2


def test_every_reader_layout_gives_the_same_sources():
    left, right, mono = stereo_pair()
    separator = Separator(BandSplit(BandSplitConfig()), device="cpu")
    expected = separator(mono, 8000)
    assert expected.shape == (2, mono.shape[0])
    layouts = {
        "soundfile (frames, channels)": np.stack([left, right], axis=1),
        "soundfile float64": np.stack([left, right], axis=1).astype(np.float64),
        "librosa mono=False (channels, frames)": np.stack([left, right]),
        "torchaudio tensor (channels, frames)": torch.from_numpy(np.stack([left, right])),
        "tensor (frames, channels)": torch.from_numpy(np.stack([left, right], axis=1)),
        "soundfile always_2d mono (frames, 1)": mono[:, None],
        "torchaudio mono (1, frames)": torch.from_numpy(mono[None]),
        "librosa mono (time,)": mono.astype(np.float64),
    }
    for name, waveform in layouts.items():
        out = separator(waveform, 8000)
        assert out.shape == expected.shape, name
        np.testing.assert_allclose(out, expected, atol=1e-5, err_msg=name)
    # The explicit layout agrees with the guess where there is one.
    np.testing.assert_allclose(separator(np.stack([left, right], axis=1), 8000, channels_first=False), expected,
                               atol=1e-5)
    np.testing.assert_allclose(separator(np.stack([left, right]), 8000, channels_first=True), expected, atol=1e-5)


@pytest.mark.parametrize("shape", [(4, 6), (8, 8), (16, 4000), (4000, 9)])
def test_an_ambiguous_layout_is_refused_in_one_line_until_channels_first_says(shape):
    from cocktailparty.core.errors import CocktailError

    waveform = np.random.default_rng(0).standard_normal(shape).astype(np.float32) * 0.1
    separator = Separator(BandSplit(BandSplitConfig()), device="cpu")
    with pytest.raises(CocktailError) as err:
        separator(waveform, 8000)
    message = str(err.value)
    assert "\n" not in message and "channels_first" in message and "(frames, channels)" in message
    assert str(shape) in message
    assert separator(waveform, 8000, channels_first=True).shape == (2, shape[1])
    assert separator(waveform, 8000, channels_first=False).shape == (2, shape[0])
    np.testing.assert_allclose(separator(waveform, 8000, channels_first=False),
                               separator(waveform.mean(axis=1), 8000), atol=1e-6)


def test_three_dimensional_audio_is_refused_in_one_line():
    from cocktailparty.core.errors import CocktailError

    separator = Separator(BandSplit(BandSplitConfig()), device="cpu")
    with pytest.raises(CocktailError, match=r"shape \(1, 2, 800\).*\(time,\)"):
        separator(np.zeros((1, 2, 800), np.float32), 8000)


# --- output names: no two inputs of one run share an output ------------------------------


def band_checkpoint(tmp_path):
    return checkpoint.save(BandSplit(BandSplitConfig()), tmp_path / "band.safetensors")


def write_tones(path, freqs, seconds=2.0, rate=8000):
    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(path, 0.3 * sum(np.sin(2 * np.pi * f * t) for f in freqs), rate)


def assert_separates(target_stem, source):
    """``<target_stem>_s1.wav`` and ``_s2.wav`` exist and add up to ``source`` (so they are its
    own outputs, not another input's)."""
    from cocktailparty.core import audio

    mixture, _ = audio.read(source)
    tracks = [soundfile.read(f"{target_stem}_s{i}.wav")[0] for i in (1, 2)]
    total = tracks[0] + tracks[1]
    assert total.shape == mixture.shape
    np.testing.assert_allclose(total[2000:-2000], mixture[2000:-2000], atol=0.03)


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("as_folder", [False, True])
def test_same_stem_side_by_side_keeps_both_outputs(tmp_path, force, as_folder, capsys):
    model = band_checkpoint(tmp_path)
    (tmp_path / "in").mkdir()
    first, second = tmp_path / "in" / "a.mp3", tmp_path / "in" / "a.ogg"
    write_tones(first, (300.0, 2500.0))
    write_tones(second, (500.0, 1500.0))
    out = tmp_path / "out"
    inputs = [str(tmp_path / "in")] if as_folder else [str(first), str(second)]
    argv = ["separate", *inputs, "-o", str(out), "--model", str(model), "--device", "cpu"]
    for _ in range(2):  # a rerun (skipping, or with --force overwriting) keeps them apart too
        assert main(argv + (["--force"] if force else [])) == 0
        assert sorted(p.name for p in out.iterdir()) == ["a-mp3_s1.wav", "a-mp3_s2.wav",
                                                         "a-ogg_s1.wav", "a-ogg_s2.wav"]
        assert_separates(out / "a-mp3", first)
        assert_separates(out / "a-ogg", second)
        assert soundfile.read(out / "a-mp3_s1.wav")[0].tolist() != soundfile.read(out / "a-ogg_s1.wav")[0].tolist()


def test_separate_shows_a_bar_over_files_on_a_terminal_only(tmp_path, run_cli):
    model = band_checkpoint(tmp_path)
    (tmp_path / "in").mkdir()
    write_tones(tmp_path / "in" / "a.wav", (300.0, 2500.0))
    write_tones(tmp_path / "in" / "b.wav", (500.0, 1500.0))
    args = ["separate", tmp_path / "in", "-o", tmp_path / "out", "--model", model, "--device", "cpu", "--force"]
    status, err = run_cli(args)
    assert status == 0 and "\rseparating:" in err and "2/2" in err
    run_cli.assert_silent(args, "separating")


@pytest.mark.parametrize("force", [False, True])
def test_a_folder_run_keeps_the_relative_folders(tmp_path, force):
    model = band_checkpoint(tmp_path)
    for sub in ("x", "y", "y/deeper"):
        (tmp_path / "in" / sub).mkdir(parents=True)
    inputs = {"x/a.wav": (300.0, 2500.0), "y/a.flac": (500.0, 1500.0), "y/deeper/a.wav": (700.0, 3000.0)}
    for rel, freqs in inputs.items():
        write_tones(tmp_path / "in" / rel, freqs)
    out = tmp_path / "out"
    argv = ["separate", str(tmp_path / "in"), "-o", str(out), "--model", str(model), "--device", "cpu"]
    for _ in range(2):
        assert main(argv + (["--force"] if force else [])) == 0
        written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.wav"))
        assert written == ["x/a_s1.wav", "x/a_s2.wav", "y/a_s1.wav", "y/a_s2.wav",
                           "y/deeper/a_s1.wav", "y/deeper/a_s2.wav"]
        for rel in inputs:
            assert_separates(out / rel.rsplit(".", 1)[0], tmp_path / "in" / rel)


def test_same_name_in_two_folders_given_as_files_is_numbered(tmp_path):
    model = band_checkpoint(tmp_path)
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    write_tones(tmp_path / "x" / "a.wav", (300.0, 2500.0))
    write_tones(tmp_path / "y" / "a.wav", (500.0, 1500.0))
    out = tmp_path / "out"
    argv = ["separate", str(tmp_path / "x" / "a.wav"), str(tmp_path / "y" / "a.wav"), str(tmp_path / "x" / "a.wav"),
            "-o", str(out), "--model", str(model), "--device", "cpu", "--force"]
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a-wav-2_s1.wav", "a-wav-2_s2.wav", "a-wav_s1.wav", "a-wav_s2.wav"]
    assert_separates(out / "a-wav", tmp_path / "x" / "a.wav")  # input order decides the numbering
    assert_separates(out / "a-wav-2", tmp_path / "y" / "a.wav")


def test_separate_help_explains_the_output_names(capsys):
    with pytest.raises(SystemExit):
        main(["separate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "a-mp3_s1.wav" in text and "relative" in text


def test_cpu_separator_keeps_freed_memory(monkeypatch):
    """A CPU Separator sets glibc's malloc thresholds (cocktailparty.core.cpu); repeated calls
    are no-ops."""
    import sys

    from cocktailparty.core import cpu
    from cocktailparty.inference import separate

    calls = []
    monkeypatch.setattr(separate, "keep_freed_memory", lambda: calls.append(1) or True)
    Separator(BandSplit(BandSplitConfig()), device="cpu")
    assert calls == [1]
    first = cpu.keep_freed_memory()
    assert cpu.keep_freed_memory() == first
    if sys.platform.startswith("linux"):
        assert first and cpu._done == (1024, 256)


def test_default_model_follows_the_inputs_rate():
    assert checkpoint.DEFAULT_NARROWBAND_MODEL in checkpoint.bundled_models()
    assert checkpoint.default_model_for([8000, 6000]) == checkpoint.DEFAULT_NARROWBAND_MODEL
    assert checkpoint.default_model_for([8000, 16000]) == checkpoint.DEFAULT_MODEL  # a mixed folder: the 16 kHz one
    assert checkpoint.default_model_for([]) == checkpoint.DEFAULT_MODEL


@pytest.mark.slow
def test_cli_separate_picks_the_8k_model_for_telephone_audio(tmp_path, caplog):
    """No --model: 8 kHz inputs go to the bundled 8 kHz model, a 16 kHz one to the default."""
    caplog.set_level("INFO", logger="cocktailparty")
    narrowband = alternating_talkers(seconds=0.5).sum(0)
    soundfile.write(tmp_path / "call.wav", narrowband, 8000)
    assert main(["separate", str(tmp_path / "call.wav"), "-o", str(tmp_path / "out"), "--device", "cpu"]) == 0
    assert f"separating with {checkpoint.DEFAULT_NARROWBAND_MODEL}" in caplog.text
    assert soundfile.info(tmp_path / "out" / "call_s1.wav").samplerate == 8000
    caplog.clear()
    soundfile.write(tmp_path / "wide.wav", np.repeat(narrowband, 2), 16000)
    assert main(["separate", str(tmp_path / "call.wav"), str(tmp_path / "wide.wav"), "-o", str(tmp_path / "out2"),
                 "--device", "cpu"]) == 0
    assert "separating with" not in caplog.text
