import dataclasses

import numpy as np
import pytest
import soundfile
import torch
from torch import nn

from cocktailparty import checkpoint
from cocktailparty.cli import main
from cocktailparty.models import register
from cocktailparty.separate import Separator, best_order, match_mixture_scale


@dataclasses.dataclass
class BandSplitConfig:
    sample_rate: int = 8000
    num_sources: int = 2
    cutoff_hz: float = 1000.0
    dummy: int = 1  # one parameter so the model can be saved as a checkpoint


@register("band-split-test", BandSplitConfig)
class BandSplit(nn.Module):
    """An 'oracle' separator for tone mixtures: low band and high band, louder one first.

    Putting the louder band first makes the output order change whenever the louder talker
    changes, which is exactly what chunk stitching must undo.
    """

    def __init__(self, config: BandSplitConfig):
        super().__init__()
        self.config = config
        self.scale = nn.Parameter(torch.full((1,), 0.5))  # arbitrary output scale, like SI-SNR models

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        spectrum = torch.fft.rfft(mixture)
        freqs = torch.fft.rfftfreq(mixture.shape[-1], 1 / self.config.sample_rate)
        low = torch.fft.irfft(spectrum * (freqs < self.config.cutoff_hz), n=mixture.shape[-1])
        high = mixture - low
        bands = torch.stack([low, high], 1)
        louder_first = bands.pow(2).sum(-1).argsort(dim=1, descending=True)
        return torch.gather(bands, 1, louder_first[..., None].expand_as(bands)) * self.scale


def alternating_talkers(rate=8000, seconds=30.0, switch=3.0):
    t = np.arange(int(rate * seconds)) / rate
    loud_first = (np.floor(t / switch) % 2 == 0).astype(np.float32)
    s1 = np.sin(2 * np.pi * 300 * t) * (0.2 + 0.6 * loud_first)
    s2 = np.sin(2 * np.pi * 2500 * t) * (0.8 - 0.6 * loud_first)
    return np.stack([s1, s2]).astype(np.float32)


def si_snr(est, ref):
    ref = ref - ref.mean()
    est = est - est.mean()
    target = (est @ ref) / (ref @ ref) * ref
    return 10 * np.log10((target @ target) / ((est - target) @ (est - target)))


def test_chunked_output_keeps_each_talker_on_one_track():
    sources = alternating_talkers()
    mixture = sources.sum(0)
    model = BandSplit(BandSplitConfig())
    chunked = Separator(model, device="cpu", chunk_seconds=4.0, overlap_seconds=1.0)(mixture, 8000)
    whole = Separator(model, device="cpu", chunk_seconds=None)(mixture, 8000)
    assert chunked.shape == whole.shape == sources.shape
    order = best_order(sources, chunked)
    # Every 1-second window: the track assigned to a talker holds that talker.
    for start in range(0, mixture.shape[0], 8000):
        window = slice(start, start + 8000)
        for talker, track in enumerate(order):
            assert si_snr(chunked[track, window], sources[talker, window]) > 20
    whole_order = best_order(sources, whole)
    for talker in range(2):
        chunked_score = si_snr(chunked[order[talker]], sources[talker])
        whole_score = si_snr(whole[whole_order[talker]], sources[talker])
        assert abs(chunked_score - whole_score) < 1.0


def test_output_is_at_the_mixture_scale_and_input_rate():
    sources = alternating_talkers(rate=8000, seconds=3.0, switch=10.0)
    mixture = sources.sum(0)
    from cocktailparty.audio import resample

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
    true = rng.standard_normal((3, 4000)).astype(np.float32)
    scaled = true * np.array([[0.1], [3.0], [0.5]], np.float32)
    np.testing.assert_allclose(match_mixture_scale(scaled, true.sum(0)), true, atol=1e-4)


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
