"""A TDANet's own inference graphs (cocktailparty/core/cuda_graphs.py) on a real GPU: ``model(x)``
in eval mode without autograd replays a repeated shape from a CUDA graph, and its outputs are
the eager forward's, fresh tensors, for whatever input comes; anything else stays eager."""

from __future__ import annotations

import pytest
import torch

from cocktailparty.core import cuda_graphs
from cocktailparty.inference.separate import Separator
from cocktailparty.models import build_model
from tests.helpers import TINY_TDANET


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("tdanet", **TINY_TDANET).cuda().eval()


def captured(model: torch.nn.Module) -> list:
    graphs = cuda_graphs._MODEL_GRAPHS.get(model)
    return [] if graphs is None else list(graphs.inference.graphs)


def assert_eager_output(model, x, out):
    with cuda_graphs.graphs_off():
        expected = model(x)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
def test_a_repeated_shape_replays_with_each_call_its_own_input_and_output(mode):
    model = tiny_model()
    inputs = [torch.randn(3, 1600, device="cuda") * scale for scale in (1.0, 0.3, 2.0, 0.01)]
    with mode():
        outputs = [model(x) for x in inputs]
        assert len(captured(model)) == 1  # first call eager, second captured, the rest replayed
        for x, out in zip(inputs, outputs):  # later replays did not overwrite earlier outputs
            assert_eager_output(model, x, out)
        assert len({out.data_ptr() for out in outputs}) == len(outputs)


def test_training_autograd_and_the_switch_stay_eager(monkeypatch):
    model = tiny_model()
    x = torch.randn(2, 800, device="cuda")
    for _ in range(3):
        model(x)  # eval mode, autograd on
    with torch.no_grad():
        model.train()
        for _ in range(3):
            model(x)
        model.eval()
        with cuda_graphs.graphs_off():
            for _ in range(3):
                model(x)
        monkeypatch.setenv(cuda_graphs.GRAPHS_ENV, "0")
        for _ in range(3):
            model(x)
    assert captured(model) == []


def test_long_inputs_stay_eager(monkeypatch):
    model = tiny_model()
    assert model._frames(800) == 56  # 800 samples at a 16-sample hop, rounded up to 2**depth
    monkeypatch.setattr(type(model), "GRAPHED_MAX_FRAMES", 100)
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(2, 800, device="cuda"))  # 2 x 56 frames: over the limit
        assert captured(model) == []
        for _ in range(2):
            model(torch.randn(1, 800, device="cuda"))
    assert len(captured(model)) == 1


def test_autocast_gets_a_graph_of_its_own():
    model = tiny_model()
    x = torch.randn(2, 800, device="cuda")
    with torch.no_grad():
        for _ in range(2):
            fp32 = model(x)
        for _ in range(2):
            with torch.autocast("cuda", torch.bfloat16):
                bf16 = model(x)
    assert len(captured(model)) == 2
    assert fp32.dtype == torch.float32
    assert_eager_output(model, x, fp32)
    with torch.no_grad(), torch.autocast("cuda", torch.bfloat16), cuda_graphs.graphs_off():
        expected = model(x)
    # Not bit-equal: eager inference of a short input takes group_norm for gLN, a capture var_mean.
    torch.testing.assert_close(bf16, expected, rtol=0.0, atol=0.02 * float(expected.abs().max()))


def test_a_capture_inside_one_autocast_block_records_the_weight_casts():
    model = tiny_model()
    x = torch.randn(2, 800, device="cuda")
    with torch.no_grad():
        with torch.autocast("cuda", torch.bfloat16):  # one block: the eager first call fills the cast cache
            for _ in range(3):
                model(x)
        assert len(captured(model)) == 1
        for parameter in model.parameters():
            parameter.mul_(0.5)
        with torch.autocast("cuda", torch.bfloat16):
            out = model(x)
        with torch.autocast("cuda", torch.bfloat16), cuda_graphs.graphs_off():
            expected = model(x)
    # A graph that had read the first block's cached casts would still compute with the old weights.
    torch.testing.assert_close(out, expected, rtol=0.0, atol=0.02 * float(expected.abs().max()))


def test_weights_changed_in_place_are_read_and_moved_weights_forget_the_graphs():
    model = tiny_model()
    x = torch.randn(2, 800, device="cuda")
    with torch.no_grad():
        for _ in range(3):
            model(x)
        assert len(captured(model)) == 1
        for parameter in model.parameters():  # in place, as an optimizer step: the graph reads the new values
            parameter.mul_(0.9)
        assert_eager_output(model, x, model(x))
        assert len(captured(model)) == 1
        model.double()  # new tensors: the old graphs would read freed memory
        assert captured(model) == []
        xd = x.double()
        for _ in range(3):
            out = model(xd)
        assert out.dtype == torch.float64
        assert_eager_output(model, xd, out)


def test_the_separator_keeps_its_own_graphs_only():
    model = tiny_model()
    separator = Separator(model, device="cuda", batch_seconds=0.2, precision="fp32")  # 2 clips of 0.1 s a call
    clips = [(x, 16000) for x in torch.randn(8, 1600).numpy()]
    list(separator.separate_many(clips))
    assert separator._cuda.graphs.graphs  # the runner captured its batches
    assert captured(model) == []  # the model's forward, inside the runner, did not
