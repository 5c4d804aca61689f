"""DPRNN and Conv-TasNet: shapes, padding, batch independence, determinism, gradients,
tracing, and the parameter counts of the paper settings.

Behaviour tests use tiny configs so the file runs in seconds; only the parameter-count
tests build the full-size models (no forward pass).
"""

from __future__ import annotations

import warnings

import pytest
import torch

from cocktailparty.core.config import CONFIG_DIR, load_config
from cocktailparty.models import build_model

TINY = {
    "dprnn": dict(
        num_filters=16, kernel_size=4, stride=2, bottleneck=8, hidden=8, chunk_size=10, num_blocks=2
    ),
    "convtasnet": dict(
        num_filters=16, kernel_size=8, stride=4, bottleneck=8, hidden=16, skip=8, num_layers=2, num_repeats=2
    ),
}
NAMES = sorted(TINY)


def tiny(name: str, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(name, **{**TINY[name], **overrides})


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("num_sources", [2, 3])
@pytest.mark.parametrize("length", [8001, 1237, 400, 3, 1])
def test_output_shape_any_length(name, num_sources, length):
    # 3 and 1 samples are shorter than one encoder window; 400 is shorter than one chunk.
    model = tiny(name, num_sources=num_sources).eval()
    with torch.no_grad():
        out = model(torch.randn(2, length))
    assert out.shape == (2, num_sources, length)
    assert torch.isfinite(out).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_full_size_shape_at_odd_length(name):
    # Exercises the paper-size padding (window 2 / chunk 250, window 16 / hop 8) once.
    torch.manual_seed(0)
    model = build_model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 1237))
    assert out.shape == (1, 2, 1237)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_batch_independence(name):
    model = tiny(name).eval()
    x = torch.randn(4, 1237)
    with torch.no_grad():
        batched = model(x)
        single = torch.cat([model(x[i : i + 1]) for i in range(len(x))])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_eval_determinism(name):
    model = tiny(name).eval()
    x = torch.randn(2, 2001)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_gradient_reaches_every_parameter(name):
    model = tiny(name, num_sources=3).train()
    out = model(torch.randn(2, 1237))
    (out - torch.randn_like(out)).pow(2).mean().backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, f"{pname}: no gradient"
        assert torch.isfinite(param.grad).all(), f"{pname}: non-finite gradient"
        assert param.grad.abs().sum() > 0, f"{pname}: zero gradient"


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_trace_generalises_to_other_lengths(name):
    # Padding and chunking sizes must stay symbolic: a trace taken at one length and batch
    # size has to match eager mode at others.
    model = tiny(name).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, torch.randn(2, 1000))
    for batch, length in [(1, 1237), (3, 5), (2, 4001)]:
        x = torch.randn(batch, length)
        with torch.no_grad():
            torch.testing.assert_close(traced(x), model(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_rejects_wrong_rank(name):
    with pytest.raises(ValueError, match=r"\(batch, time\)"):
        tiny(name)(torch.randn(2, 1, 100))


def test_dprnn_param_count_matches_paper():
    # Paper: 2.6M. The 2.608M counted on asteroid's DPRNN adds a bias-free 64x64 conv after
    # the gate; the authors' gated output already maps to N channels.
    count = n_params(build_model("dprnn"))
    assert count == 2_603_905
    assert abs(count - 2.608e6) / 2.608e6 < 0.03


def test_convtasnet_param_count_matches_paper():
    # Paper: 5.05M, which includes the last block's residual 1x1 conv (128*512 + 128
    # parameters) whose output nothing uses; it is omitted here so every weight trains.
    count = n_params(build_model("convtasnet"))
    assert count == 4_984_881
    assert count + 512 * 128 + 128 == 5_050_545
    assert abs(count - 5.05e6) / 5.05e6 < 0.03


@pytest.mark.parametrize("name", NAMES)
def test_paper_config_file_builds_the_default_model(name):
    cfg = load_config(CONFIG_DIR / f"{name}-wsj0.yaml")
    fields = dict(cfg["model"])
    assert fields.pop("architecture") == name
    model = build_model(name, **fields)
    assert model.config == build_model(name).config
    assert model.architecture == name
    assert cfg["data"]["sample_rate"] == model.config.sample_rate == 8000
