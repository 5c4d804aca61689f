"""Moving a TDANet to a lower sample rate (models/sample_rate.py) and init_from across rates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cocktailparty.core import checkpoint
from cocktailparty.core.audio import resample
from cocktailparty.core.errors import CocktailError
from cocktailparty.models.registry import build_model
from cocktailparty.models.sample_rate import with_sample_rate
from cocktailparty.train.state import load_init_weights

SMALL = dict(bottleneck=16, channels=32, depth=2, unfolds=2, heads=2, ffn_channels=32, basis=17,
             dropout=0.0, drop_path=0.0)


def band_limited(filters: torch.Tensor, rate: int, cutoff_hz: float) -> torch.Tensor:
    """``filters`` (..., taps) low-passed below ``cutoff_hz`` by a Hann-windowed sinc and tapered:
    filters that a trained model at ``rate`` could have for speech under ``cutoff_hz``."""
    k = np.arange(-24, 25)
    lowpass = np.sinc(k * 2 * cutoff_hz / rate) * 2 * cutoff_hz / rate * np.hanning(len(k))
    smooth = np.apply_along_axis(lambda row: np.convolve(row, lowpass, mode="same"), -1, filters.numpy())
    return torch.from_numpy(smooth * np.hanning(filters.shape[-1] + 2)[1:-1]).float()


def snr_db(estimate: np.ndarray, reference: np.ndarray) -> float:
    return float(10 * np.log10((reference ** 2).sum() / ((estimate - reference) ** 2).sum()))


@pytest.fixture(scope="module")
def model_16k() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("tdanet", sample_rate=16000, **SMALL).eval()
    state = model.state_dict()
    for key in ("encoder.weight", "decoder.weight"):
        state[key] = band_limited(state[key], 16000, 3000.0)
    model.load_state_dict(state)
    return model


def test_lower_rate_copy_computes_the_original_on_band_limited_audio(model_16k):
    # Reference: the 16 kHz model on the 8 kHz signal upsampled, its outputs resampled back (soxr).
    x8 = resample(np.random.default_rng(0).standard_normal(16000).astype(np.float32), 16000, 8000)
    model_8k = with_sample_rate(model_16k, 8000)
    assert (model_8k.config.sample_rate, model_8k.config.kernel, model_8k.config.stride) == (8000, 32, 8)
    with torch.no_grad():
        reference = model_16k(torch.from_numpy(resample(x8, 8000, 16000))[None])[0].numpy()
        reference = np.stack([resample(r, 16000, 8000)[: len(x8)] for r in reference])
        moved = model_8k(torch.from_numpy(x8)[None])[0].numpy()
        # The check is sharp: keeping every other tap (no band-limiting) misses by far.
        naive = build_model("tdanet", sample_rate=8000, **SMALL).eval()
        state = {k: v.clone() for k, v in model_16k.state_dict().items()}
        state["encoder.weight"] = state["encoder.weight"][..., ::2]
        state["decoder.weight"] = state["decoder.weight"][..., ::2] / 2
        naive.load_state_dict(state)
        decimated = naive(torch.from_numpy(x8)[None])[0].numpy()
    assert snr_db(moved, reference) > 40
    assert snr_db(decimated, reference) < 20
    # Every weight between the encoder and the decoder is the original's.
    for key, value in model_16k.state_dict().items():
        if key not in ("encoder.weight", "decoder.weight"):
            assert torch.equal(model_8k.state_dict()[key], value), key


def test_what_cannot_be_moved_is_refused(model_16k):
    assert with_sample_rate(model_16k, 16000) is model_16k
    with pytest.raises(CocktailError, match="only lower rates"):
        with_sample_rate(model_16k, 32000)
    with pytest.raises(CocktailError, match="not a whole number of samples at 11025 Hz"):
        with_sample_rate(model_16k, 11025)
    with pytest.raises(CocktailError, match="window in samples"):
        with_sample_rate(build_model("convtasnet", num_filters=8, bottleneck=8, hidden=8, skip=8,
                                     num_layers=1, num_repeats=1), 4000)


def test_init_from_a_checkpoint_of_another_rate_moves_it(model_16k, tmp_path):
    path = checkpoint.save(model_16k, tmp_path / "m16.safetensors")
    model_8k = build_model("tdanet", sample_rate=8000, **SMALL)
    load_init_weights(model_8k, path, "tdanet")
    expected = with_sample_rate(model_16k, 8000).state_dict()
    for key, value in model_8k.state_dict().items():
        assert torch.allclose(value, expected[key]), key
