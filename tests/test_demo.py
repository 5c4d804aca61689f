import numpy as np
import soundfile

from cocktailparty import checkpoint
from cocktailparty.cli import main
from tests.test_separate import BandSplit, BandSplitConfig


def test_demo_builds_corpus_mixes_separates_and_plots(tmp_path, capsys):
    model = checkpoint.save(BandSplit(BandSplitConfig(sample_rate=16000)), tmp_path / "band.safetensors")
    out = tmp_path / "demo"
    assert main(["-q", "demo", "-o", str(out), "--model", str(model), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "SI-SNRi:" in printed
    manifest = (out / "corpus" / "manifest.csv").read_text().splitlines()
    assert len(manifest) == 1 + 4 * 2  # header + 4 speakers x 2 utterances
    mixture, rate = soundfile.read(next((out / "mixtures" / "mix").glob("*.wav")))
    s1, _ = soundfile.read(out / "estimate_s1.wav")
    s2, _ = soundfile.read(out / "estimate_s2.wav")
    assert rate == 16000 and s1.shape == s2.shape == mixture.shape
    # The separator puts the estimates back at the mixture's scale: they add up to it.
    assert np.abs((s1 + s2) - mixture).max() < 0.05
    png = (out / "spectrograms.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_demo_with_the_bundled_default_separates_speech(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["-q", "demo", "-o", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    # Measured 4.7 dB with the interim default (two MBROLA US voices at equal level).
    assert float(printed.split("SI-SNRi:")[1].split("dB")[0]) > 3.0
    mixture, _ = soundfile.read(next((out / "mixtures" / "mix").glob("*.wav")))
    for name in ("estimate_s1.wav", "estimate_s2.wav"):
        estimate, _ = soundfile.read(out / name)
        assert np.sqrt(np.mean(estimate ** 2)) > 0.2 * np.sqrt(np.mean(mixture ** 2))  # no silent talker
