"""CUDA-graph policy (cocktailparty/core/cuda_graphs.py) without a GPU: when a shape is captured
and replayed, the switches that turn graphs off, and when a model's own forward may replay."""

from __future__ import annotations

import logging
import threading

import pytest
import torch

from cocktailparty.core import cuda_graphs
from cocktailparty.models import build_model, tdanet
from tests.helpers import TINY_TDANET


# --- CUDA graphs: captured when a shape repeats ------------------------------------------


class FakeGraphs:
    """Stand-ins for the CUDA calls that record what the policy asked for."""

    def __init__(self, fail: bool = False):
        self.log, self.fail = [], fail

    def warm_up(self, forward, x):
        self.log.append(("warm up", tuple(x.shape)))
        return forward(x)

    def capture(self, forward, example):
        self.log.append(("capture", tuple(example.shape)))
        if self.fail:
            raise RuntimeError("operation not permitted when stream is capturing\nmore")

        def replay(x):
            self.log.append(("replay", tuple(x.shape)))
            return forward(x)

        return replay


def test_a_shape_is_captured_the_second_time_and_replayed_after():
    fake = FakeGraphs()
    graphs = cuda_graphs.ShapeGraphs(lambda x: x * 2, capture=fake.capture, warm_up=fake.warm_up)
    a, b = torch.ones(4, 10), torch.ones(1, 7)
    for x in (a, a, a, b, a):
        torch.testing.assert_close(graphs(x), x * 2)
    assert fake.log == [("warm up", (4, 10)), ("capture", (4, 10)), ("replay", (4, 10)), ("replay", (4, 10)),
                        ("warm up", (1, 7)), ("replay", (4, 10))]


def test_at_most_max_graphs_shapes_are_captured():
    fake = FakeGraphs()
    graphs = cuda_graphs.ShapeGraphs(lambda x: x, capture=fake.capture, warm_up=fake.warm_up, max_graphs=1)
    for x in (torch.ones(2), torch.ones(2), torch.ones(3), torch.ones(3)):
        graphs(x)
    assert [entry for entry in fake.log if entry[0] == "capture"] == [("capture", (2,))]
    assert list(graphs.graphs) == [(2,)]


def test_a_failed_capture_leaves_everything_eager(caplog):
    fake = FakeGraphs(fail=True)
    graphs = cuda_graphs.ShapeGraphs(lambda x: x + 1, capture=fake.capture, warm_up=fake.warm_up)
    x = torch.zeros(3)
    with caplog.at_level(logging.WARNING, logger="cocktailparty"):
        for _ in range(4):
            torch.testing.assert_close(graphs(x), x + 1)
    assert fake.log == [("warm up", (3,)), ("capture", (3,))]
    assert "could not capture the model as a CUDA graph (RuntimeError: operation not permitted" in caplog.text
    assert caplog.text.count("could not capture") == 1


def test_shapes_met_once_are_remembered_up_to_a_bound(monkeypatch):
    monkeypatch.setattr(cuda_graphs, "MAX_SEEN", 3)
    fake = FakeGraphs()
    graphs = cuda_graphs.ShapeGraphs(lambda x: x, capture=fake.capture, warm_up=fake.warm_up)
    for length in range(1, 8):
        graphs(torch.ones(length))
    assert len(graphs.seen) <= 3 and not graphs.graphs
    graphs(torch.ones(7))  # the latest one is still remembered: captured now
    assert list(graphs.graphs) == [(7,)]


def test_the_key_decides_what_shares_a_graph():
    fake = FakeGraphs()
    graphs = cuda_graphs.ShapeGraphs(lambda x: x * 2, capture=fake.capture, warm_up=fake.warm_up,
                                     key=lambda x: (tuple(x.shape), x.dtype))
    a, b = torch.ones(3), torch.ones(3, dtype=torch.float64)
    for x in (a, b, a, b):
        torch.testing.assert_close(graphs(x), x * 2)
    # same shape, two dtypes: two warm-ups and two captures, not one graph for both
    assert [entry[0] for entry in fake.log] == ["warm up", "warm up", "capture", "replay", "capture", "replay"]
    assert set(graphs.graphs) == {((3,), torch.float32), ((3,), torch.float64)}


def test_graphs_off_and_the_environment_switch(monkeypatch):
    monkeypatch.delenv(cuda_graphs.GRAPHS_ENV, raising=False)
    assert cuda_graphs.graphs_allowed()
    with cuda_graphs.graphs_off():
        assert not cuda_graphs.graphs_allowed()
        with cuda_graphs.graphs_off():
            pass
        assert not cuda_graphs.graphs_allowed()  # an inner block leaves the outer one's switch as it was
    assert cuda_graphs.graphs_allowed()
    monkeypatch.setenv(cuda_graphs.GRAPHS_ENV, "0")
    assert not cuda_graphs.graphs_allowed()
    monkeypatch.setenv(cuda_graphs.GRAPHS_ENV, "1")
    assert cuda_graphs.graphs_allowed()


def test_graphs_off_holds_for_its_own_thread_only():
    seen = []
    with cuda_graphs.graphs_off():
        thread = threading.Thread(target=lambda: seen.append(cuda_graphs.graphs_allowed()))
        thread.start()
        thread.join()
    assert seen == [True]


class FakeCudaTensor:
    """What replays_inference reads of an input, for a CUDA input on a machine without one."""

    is_cuda = True


def test_only_inference_on_cuda_may_replay(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)  # a CPU build has none
    model = build_model("tdanet", **TINY_TDANET).eval()
    cpu_input = torch.zeros(1, 800)
    with torch.no_grad():
        assert not cuda_graphs.replays_inference(model, cpu_input)
        assert cuda_graphs.replays_inference(model, FakeCudaTensor())
        with cuda_graphs.graphs_off():
            assert not cuda_graphs.replays_inference(model, FakeCudaTensor())
        model.train()
        assert not cuda_graphs.replays_inference(model, FakeCudaTensor())  # training mode
    model.eval()
    assert not cuda_graphs.replays_inference(model, FakeCudaTensor())  # autograd records


def test_a_cpu_forward_never_touches_the_graphs(monkeypatch):
    model = build_model("tdanet", **TINY_TDANET).eval()
    monkeypatch.setattr(tdanet, "replay_inference", lambda *args: pytest.fail("replayed on the CPU"))
    with torch.no_grad():
        for _ in range(3):
            assert model(torch.randn(2, 800)).shape == (2, 2, 800)
    assert model not in cuda_graphs._MODEL_GRAPHS


def test_a_tdanet_forgets_its_graphs_when_its_tensors_may_move():
    model = build_model("tdanet", **TINY_TDANET).eval()
    for move in (lambda: model.load_state_dict(model.state_dict(), assign=True), lambda: model.double(),
                 lambda: model.to("cpu")):
        cuda_graphs._MODEL_GRAPHS[model] = object()  # stands in for captured graphs
        move()
        assert model not in cuda_graphs._MODEL_GRAPHS
