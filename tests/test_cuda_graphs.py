"""CUDA-graph policy (cocktailparty/core/cuda_graphs.py) without a GPU: when a shape is captured
and replayed, the switches that turn graphs off, and when a model's own forward may replay."""

from __future__ import annotations

import functools
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


def test_only_training_on_cuda_with_autograd_may_replay_a_training_step(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
    model = build_model("tdanet", **TINY_TDANET).train()
    needs_grad = FakeCudaTensor()
    needs_grad.requires_grad = True
    FakeCudaTensor.requires_grad = False
    assert cuda_graphs.replays_training(model, FakeCudaTensor())
    assert not cuda_graphs.replays_training(model, torch.zeros(1, 800))  # a CPU input
    assert not cuda_graphs.replays_training(model, needs_grad)  # a gradient of the input is asked for
    with cuda_graphs.graphs_off():
        assert not cuda_graphs.replays_training(model, FakeCudaTensor())
    with torch.no_grad():
        assert not cuda_graphs.replays_training(model, FakeCudaTensor())
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    assert not cuda_graphs.replays_training(model, FakeCudaTensor())  # a DDP process
    monkeypatch.undo()
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
    assert cuda_graphs.replays_training(model, FakeCudaTensor())
    assert not cuda_graphs.replays_training(model.eval(), FakeCudaTensor())


# --- training steps: a stand-in with the graphs' contract --------------------------------


def stand_in_capture(parameters, forward, example):
    """:func:`cuda_graphs.capture_training` without a GPU: each "replay" recomputes into the
    same static tensors, and a second forward before the backward overwrites what the first
    saved, as a graph's replay overwrites its pool."""
    params = parameters()
    static_in = example.detach().clone()
    with torch.enable_grad():
        out = forward(static_in)
        first = torch.autograd.grad(out, params, torch.ones_like(out), allow_unused=True)
    grads = tuple(None if g is None else torch.zeros_like(g) for g in first)
    flat = cuda_graphs.flat_gradients(grads)
    static_out, static_grad_out, saved = torch.zeros_like(out), torch.zeros_like(out), {}

    def run_forward():
        with torch.enable_grad():
            saved["out"] = forward(static_in)
        static_out.copy_(saved["out"].detach())

    def run_backward():
        new = torch.autograd.grad(saved["out"], params, static_grad_out, allow_unused=True, retain_graph=True)
        for into, g in zip(grads, new):
            if into is not None:
                into.copy_(g)
        if flat is not None:
            flat.copy_(torch.cat([g.reshape(-1) for g in new if g is not None]))

    step = cuda_graphs.TrainingStep(params, static_in, static_out, static_grad_out, grads, flat,
                                    run_forward, run_backward)
    return functools.partial(step, forward)


class Net(torch.nn.Module):
    """A small network with a parameter its output does not use and a dropout-free forward."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = torch.nn.Linear(6, 6)
        self.b = torch.nn.Linear(6, 3)
        self.unused = torch.nn.Parameter(torch.ones(2))

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


def replaying(net, log=None):
    """``net``'s forward through the training policy with the stand-in capture."""
    trained = lambda: [p for p in net.parameters() if p.requires_grad]  # noqa: E731

    def capture(forward, example):
        if log is not None:
            log.append("capture")
        return stand_in_capture(trained, forward, example)

    return cuda_graphs.ShapeGraphs(net.forward, capture=capture, warm_up=cuda_graphs.run_eagerly,
                                   max_graphs=cuda_graphs.MAX_TRAINING_GRAPHS, key=cuda_graphs.training_key(trained))


def only_step(graphs) -> cuda_graphs.TrainingStep:
    (replay,) = graphs.graphs.values()
    return replay.func


def eager_grads(net, xs, loss):
    net.zero_grad(set_to_none=True)
    loss([net(x) for x in xs]).backward()
    return [None if p.grad is None else p.grad.clone() for p in net.parameters()]


def assert_grads(net, expected):
    for p, g in zip(net.parameters(), expected):
        if g is None:
            assert p.grad is None
        else:
            torch.testing.assert_close(p.grad, g, rtol=1e-6, atol=1e-6)


def test_a_replayed_training_step_gives_eager_outputs_and_gradients():
    net, log = Net(), []
    graphs = replaying(net, log)
    x = torch.randn(4, 6)
    loss = lambda outs: sum((o * torch.arange(3.0)).square().mean() for o in outs)  # noqa: E731
    expected = eager_grads(net, [x], loss)
    for _ in range(3):  # eager, captured + replayed, replayed
        net.zero_grad(set_to_none=True)
        out = graphs(x)
        torch.testing.assert_close(out, net(x))
        loss([out]).backward()
        assert_grads(net, expected)
    assert log == ["capture"] and net.unused.grad is None
    # .grad accumulates over micro-batches as eagerly: two steps' gradients add up
    net.zero_grad(set_to_none=True)
    for _ in range(2):
        loss([graphs(x)]).backward()
    assert_grads(net, [None if g is None else 2 * g for g in expected])


def test_a_second_forward_before_the_backward_runs_eagerly_and_both_gradients_hold():
    net = Net()
    graphs = replaying(net)
    x1, x2 = torch.randn(4, 6), torch.randn(4, 6)
    loss = lambda outs: outs[0].square().mean() + (3 * outs[1]).sin().mean()  # noqa: E731
    expected = eager_grads(net, [x1, x2], loss)
    for _ in range(2):
        graphs(x1).sum().backward()  # first sight, then the capture
    net.zero_grad(set_to_none=True)
    first = graphs(x1)  # replayed: its activations stay in the static tensors until its backward
    second = graphs(x2)  # would overwrite them: eager instead
    loss([first, second]).backward()
    assert_grads(net, expected)


def captured(x: torch.Tensor):
    """A Net and its training graphs, ``x``'s shape met twice (eager, then captured)."""
    net = Net()
    graphs = replaying(net)
    for _ in range(2):
        graphs(x).sum().backward()
    return net, graphs


def test_an_output_dropped_without_a_backward_frees_the_step_for_the_next_replay():
    x = torch.randn(4, 6)
    _, graphs = captured(x)
    out = graphs(x)
    replayed = only_step(graphs)
    assert replayed.busy()
    del out
    assert not replayed.busy()
    generation = replayed.generation
    graphs(x).sum().backward()
    assert replayed.generation == generation + 1  # replayed, not run eagerly


def test_a_backward_through_activations_a_newer_replay_overwrote_raises():
    x = torch.randn(4, 6)
    _, graphs = captured(x)
    old = graphs(x).sum()
    old.backward(retain_graph=True)
    graphs(x).sum().backward()  # the old output's backward ran: this one replays over its activations
    with pytest.raises(RuntimeError, match="newer forward of the same shape"):
        old.backward()


def test_frozen_parameters_get_no_gradient_and_a_change_of_them_is_a_new_key():
    net, log = Net(), []
    graphs = replaying(net, log)
    x = torch.randn(4, 6)
    net.a.weight.requires_grad_(False)
    for _ in range(3):
        net.zero_grad(set_to_none=True)
        graphs(x).sum().backward()
        assert net.a.weight.grad is None and net.a.bias.grad is not None
    assert log == ["capture"]
    net.a.weight.requires_grad_(True)
    expected = eager_grads(net, [x], lambda outs: outs[0].sum())
    for _ in range(3):
        net.zero_grad(set_to_none=True)
        graphs(x).sum().backward()
        assert_grads(net, expected)
    assert log == ["capture", "capture"]
