"""A TDANet's own training graphs (cocktailparty/core/cuda_graphs.py) on a real GPU: with autograd
in training mode, a repeated shape's forward and backward replay from two CUDA graphs, with the
eager step's outputs and gradients, the weights an optimizer changed in place, fresh dropout,
and eager forwards wherever a replay would overwrite activations a backward still needs."""

from __future__ import annotations

import logging

import pytest
import torch

from cocktailparty.core import cuda_graphs
from cocktailparty.models import build_model
from tests.helpers import TINY_TDANET


def tiny_model(dropout: float = 0.0) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("tdanet", **{**TINY_TDANET, "dropout": dropout}).cuda().train()


def training_graphs(model: torch.nn.Module) -> list:
    graphs = cuda_graphs._MODEL_GRAPHS.get(model)
    return [] if graphs is None else list(graphs.training.graphs)


def loss_of(out: torch.Tensor) -> torch.Tensor:
    return (out * torch.linspace(-1, 1, out.shape[-1], device=out.device)).square().mean()


def eager_gradients(model, xs, precision=None) -> list[torch.Tensor]:
    """The parameters' gradients of the summed losses of ``model(x)`` for ``xs``, every kernel launched."""
    model.zero_grad(set_to_none=True)
    with cuda_graphs.graphs_off(), torch.autocast("cuda", torch.bfloat16, enabled=precision == "bf16"):
        total = sum(loss_of(model(x)) for x in xs)
    total.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    return grads


def assert_gradients(model, expected, tolerance=1e-3):
    for (name, p), g in zip(model.named_parameters(), expected):
        # Eager gLN on a short input takes group_norm, a capture var_mean (see GLN): rounding apart.
        torch.testing.assert_close(p.grad, g, rtol=tolerance, atol=tolerance * float(g.abs().max()) + 1e-8,
                                   msg=lambda m: f"{name}: {m}")


def test_replayed_steps_have_eager_gradients_and_read_the_updated_weights():
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for k in range(4):  # eager, captured and replayed, replayed twice
        x = torch.randn(3, 1600, device="cuda")
        expected = eager_gradients(model, [x])
        optimizer.zero_grad(set_to_none=True)
        out = model(x)  # kept over the next call's capture, as a loop's variable is
        loss_of(out).backward()
        assert_gradients(model, expected)
        optimizer.step()  # in place: the next replay must read the new weights
        assert len(training_graphs(model)) == (0 if k == 0 else 1)


def test_gradients_accumulate_and_a_second_forward_before_the_backward_runs_eagerly():
    model = tiny_model()
    x1, x2 = (torch.randn(2, 800, device="cuda") for _ in range(2))
    for _ in range(2):
        loss_of(model(x1)).backward()
    assert len(training_graphs(model)) == 1
    expected = eager_gradients(model, [x1, x2])
    first, second = model(x1), model(x2)  # the second would replay over the first's activations
    (loss_of(first) + loss_of(second)).backward()
    assert_gradients(model, expected)
    model.zero_grad(set_to_none=True)
    for x in (x1, x2):  # two micro-batches, one backward each: .grad adds up as eagerly
        loss_of(model(x)).backward()
    assert_gradients(model, expected)


def test_dropout_draws_fresh_numbers_at_every_replay():
    model = tiny_model(dropout=0.5)
    x = torch.randn(2, 800, device="cuda")
    outputs = []
    for _ in range(4):
        out = model(x)
        loss_of(out).backward()
        outputs.append(out.detach())
    assert len(training_graphs(model)) == 1
    assert not torch.equal(outputs[2], outputs[3])  # two replays of one input


def test_bf16_autocast_has_a_graph_of_its_own_with_its_gradients():
    model = tiny_model()
    x = torch.randn(2, 800, device="cuda")
    expected = eager_gradients(model, [x], "bf16")
    for _ in range(3):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cuda", torch.bfloat16):  # one block for all three: its cast cache is not read
            out = model(x)
        loss_of(out).backward()
    assert len(training_graphs(model)) == 1
    assert_gradients(model, expected, tolerance=0.05)


def test_a_gpu_without_the_memory_for_a_training_graph_trains_eagerly(monkeypatch, caplog):
    monkeypatch.setattr(cuda_graphs, "TRAINING_MEMORY_FACTOR", 1e9)
    model = tiny_model()
    x = torch.randn(2, 800, device="cuda")
    expected = eager_gradients(model, [x])
    with caplog.at_level(logging.WARNING, logger="cocktailparty"):
        for _ in range(3):
            model.zero_grad(set_to_none=True)
            loss_of(model(x)).backward()
    assert training_graphs(model) == []
    assert_gradients(model, expected, tolerance=1e-5)
    warnings = [r.getMessage() for r in caplog.records if "could not capture" in r.getMessage()]
    assert len(warnings) == 1 and "MemoryError" in warnings[0], warnings


@pytest.mark.parametrize("case", ["compiled", "input needs a gradient"])
def test_what_stays_eager(case):
    model = tiny_model()
    x = torch.randn(2, 800, device="cuda")
    if case == "compiled":
        model.block._compiled_call_impl = model.block._call_impl  # as compile() leaves it, without its minute
        assert model.compiled
    else:
        x.requires_grad_(True)
    for _ in range(3):
        loss_of(model(x)).backward()
    assert training_graphs(model) == []


def test_a_failed_capture_warns_once_and_the_eager_steps_keep_their_dropout(monkeypatch, caplog):
    def synchronizing(grads):  # a host sync inside the backward's capture: the capture fails
        torch.cuda.synchronize()

    monkeypatch.setattr(cuda_graphs, "flat_gradients", synchronizing)
    model = tiny_model(dropout=0.5)
    x = torch.randn(2, 800, device="cuda")
    with caplog.at_level(logging.WARNING, logger="cocktailparty"):
        outputs = []
        for _ in range(4):  # the forward's capture recorded dropout's draws before the failure
            out = model(x)
            loss_of(out).backward()
            outputs.append(out.detach())
    assert training_graphs(model) == []
    assert not torch.equal(outputs[2], outputs[3])  # eager dropout still draws
    warnings = [r.getMessage() for r in caplog.records if "could not capture" in r.getMessage()]
    assert len(warnings) == 1, warnings
