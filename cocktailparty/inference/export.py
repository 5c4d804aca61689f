"""ONNX export: ``cocktail export --model M --onnx out.onnx``.

Every registered architecture exports to one ONNX graph with a dynamic batch and a dynamic
length, ``mixture (batch, time) -> sources (batch, C, time)`` at the model's rate. The file
carries the architecture, its config, the sample rate and the number of sources as
metadata, so :class:`~cocktailparty.inference.onnxrun.OnnxRunner` (and ``cocktail separate --backend
onnx``) needs no torch. After writing, the export is run with onnxruntime at the export
length and at one it has not seen, and compared with PyTorch; a mismatch fails the export
and leaves no file behind.

Exporter: the TorchScript-based one (``torch.onnx.export(..., dynamo=False)``). The dynamo
exporter (``torch.export``) was tried first and refused DPRNN and Tune-In (the LSTMs and the
shape arithmetic of the chunking give it guards it cannot prove for every length), and its
TDANet graph accepted only lengths that satisfy the guards of the export length; it also
takes minutes where the tracer takes seconds. The tracer keeps the models' size arithmetic
symbolic (they are written for that, see e.g. :func:`cocktailparty.models.common.segment`),
with one exporter fix, :func:`_floor_divide` below. No model needs col2im (chunking is done
with reshapes), so opset 17 suffices; ``opset`` may be raised (up to the exporter's maximum).

Conditional separators (:mod:`cocktailparty.models.conditioning`): every extra input the
model declares becomes an input of the graph, in the declared order after ``mixture``, with
its own dynamic batch and time axes (``<name>_batch``, ``<name>_time``), e.g. ``enrollment
(batch or 1, C, time_e)``, one recording per target talker; the model's work on it runs
inside the graph. Plain separators take the mixture only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..core import atomic
from ..core.errors import CocktailError
from ..core.progress import Stages
from ..models.conditioning import extra_inputs
from .onnxrun import FORMAT, OnnxRunner

log = logging.getLogger("cocktailparty")

DEFAULT_OPSET = 17
# Agreement required between onnxruntime and PyTorch, relative to the reference's peak
# (outputs are not normalised; an untrained model's can be far from unit scale). fp32
# kernels that sum in another order drift apart through deep stacks: the full-size models
# differ by 1e-4 to 4e-4 of their peak at 1-10 s (TDANet's 16 unfolds, DPRNN's 12 LSTMs
# over 8000 steps), while a wrong graph is off by 1e-2 or more. The tests hold tiny models
# to 1e-4 absolute.
DEFAULT_TOLERANCE = 1e-3
DEFAULT_EXAMPLE_SECONDS = 1.0  # the length of the example input traced
# Architectures whose export does not yet run at lengths other than the traced one (none
# now: the GALR blocks were rewritten so that every shape follows the input's).
NOT_EXPORTABLE: dict[str, str] = {}


# ----------------------------------------------------------------------------- exporter fix


def _floor_divide(g, self, other):
    """Floor division of traced sizes with Python semantics.

    The TorchScript exporter maps ``aten::floor_divide`` / ``floordiv`` to ONNX ``Div``,
    which truncates towards zero: ``-7 // 2`` becomes -3 instead of -4. Ceiling division
    written as ``-(-a // b)`` (TDANet's frame count) then comes out one short at lengths the
    trace did not see. Here: truncate, then subtract one where the signs differ and the
    division is inexact. Float inputs take ``Floor(Div)``.
    """
    from torch.onnx import symbolic_helper as sym

    if sym._is_fp(self) or sym._is_fp(other):
        return g.op("Floor", g.op("Div", self, other))
    self = g.op("Cast", self, to_i=7)  # INT64: sizes are int64, Python scalars may arrive as int32
    other = g.op("Cast", other, to_i=7)
    zero = g.op("Constant", value_t=torch.tensor(0, dtype=torch.int64))
    quotient = g.op("Div", self, other)
    inexact = g.op("Not", g.op("Equal", g.op("Sub", self, g.op("Mul", quotient, other)), zero))
    signs_differ = g.op("Xor", g.op("Less", self, zero), g.op("Less", other, zero))
    fixup = g.op("Cast", g.op("And", inexact, signs_differ), to_i=7)
    return g.op("Sub", quotient, fixup)


def _group_norm(g, input, num_groups, weight, bias, eps, cudnn_enabled):
    """One-group GroupNorm (gLN): per-channel statistics, then one BatchNormalization.

    The exporter's own group_norm is Reshape -> InstanceNormalization -> Reshape -> Mul ->
    Add. onnxruntime's InstanceNormalization works one (batch, group) row at a time, so a
    gLN (one row of C x T values per utterance) runs on one thread with its sums in fp32
    over all C x T values, and the affine map then costs two more passes over x.

    Here ReduceMean over time of x and of x * x give each channel's mean and mean square
    (many short rows: threaded, and summed more accurately); their means over
    channels give the utterance's mean and variance (a few C-sized ops); and one inference
    BatchNormalization over the ``(1, batch * C, ...)`` view of x applies
    ``(x - mean) / sqrt(var + eps) * weight + bias`` in a single pass, with the utterance's
    mean and variance repeated for each of its channels. Other group counts keep the
    exporter's symbolic. Only the export changes: PyTorch keeps its fused group_norm.

    Default model, 2 threads: the 10-s forward 1.180 s against 1.191 s median (11 alternating
    runs, load ~1.4); the 10-s export check's max |diff| from PyTorch 9.1e-5 against 7.5e-3
    (which failed the 1e-3 x peak check). Tried first: one LayerNormalization over axes 1..
    with (C, 1, 1) scale and bias broadcast (as accurate, but onnxruntime's broadcasting
    LayerNorm took 3x the time), and a (batch, C x T) LayerNormalization (one row per
    utterance: one thread, fp32 sums, as inaccurate as InstanceNormalization and slower).
    """
    from torch.onnx import symbolic_helper as sym
    from torch.onnx import symbolic_opset9

    groups = sym._maybe_get_const(num_groups, "i")
    rank = sym._get_tensor_rank(input)
    if groups != 1 or rank is None or rank < 3 or sym._is_none(weight) or sym._is_none(bias):
        return symbolic_opset9.group_norm(g, input, num_groups, weight, bias, eps, cudnn_enabled)

    def const(values, dtype=torch.int64):
        return g.op("Constant", value_t=torch.tensor(values, dtype=dtype))

    time_axes = list(range(2, rank))
    mean_c = g.op("ReduceMean", input, axes_i=time_axes, keepdims_i=1)  # (N, C, 1, ...)
    per_channel = g.op("Shape", mean_c)
    view = g.op("Reshape", input, const([1, -1] + [0] * (rank - 2)))  # (1, N * C, ...): no copy
    # Mean of squares as ReduceMean(x * x), not ReduceSumSquare: onnxruntime has no fast
    # path for ReduceSumSquare (4.6 ms against ReduceMean's 0.7 ms on 512 x 10016, 2
    # threads), while the Mul is one vectorised pass. The Mul reads the reshaped view, not
    # the input: on the input, onnxruntime's NCHWc pass runs the Mul in the blocked layout
    # of the preceding Conv and reorders its full-size output back, one more reorder per gLN.
    mean_sq_c = g.op("Reshape", g.op("ReduceMean", g.op("Mul", view, view), axes_i=time_axes, keepdims_i=1),
                     per_channel)
    mean = g.op("ReduceMean", mean_c, axes_i=[1], keepdims_i=1)  # (N, 1, 1, ...)
    var = g.op("Sub", g.op("ReduceMean", mean_sq_c, axes_i=[1], keepdims_i=1), g.op("Mul", mean, mean))
    var = g.op("Relu", var)  # E[x^2] - mean^2 may round below zero for a constant input
    # Per (utterance, channel), flattened to batch * C: BatchNormalization's channel axis.
    flat = const([-1])

    def repeat(t):
        return g.op("Reshape", g.op("Expand", t, per_channel), flat)

    axes = list(range(1, rank - 1))
    scale = repeat(sym._unsqueeze_helper(g, weight, axes))
    shift = repeat(sym._unsqueeze_helper(g, bias, axes))
    out = g.op("BatchNormalization", view, scale, shift, repeat(mean), repeat(var),
               epsilon_f=sym._maybe_get_const(eps, "f"))
    return g.op("Reshape", out, g.op("Shape", input))


@contextlib.contextmanager
def _exporter_fixes(opset: int):
    """Register :func:`_floor_divide` and :func:`_group_norm` for the duration of one export only."""
    names = ("aten::floor_divide", "aten::floordiv")
    for name in names:
        torch.onnx.register_custom_op_symbolic(name, _floor_divide, opset)
    torch.onnx.register_custom_op_symbolic("aten::group_norm", _group_norm, opset)
    try:
        yield
    finally:
        for name in names + ("aten::group_norm",):
            torch.onnx.unregister_custom_op_symbolic(name, opset)


@contextlib.contextmanager
def _plain_layout(model: nn.Module):
    """Trace TDANet in its NCHW form, not the channels-last one it picks on CPU.

    ONNX has no memory formats: the channels-last path's pointwise convs (permute, linear,
    permute; see ``tdanet.Conv``) become Transpose + MatMul + Transpose, ~230 Transposes per
    forward that onnxruntime executes as copies. Traced NCHW they are plain Convs, and the
    default model's 10-s forward in onnxruntime (2 threads, 5 alternating runs each) went
    from 1.76 s to 1.58 s median (PyTorch: 1.25-1.36 s).
    """
    previous = getattr(model, "channels_last", None)
    if hasattr(model, "channels_last"):
        model.channels_last = False
    try:
        yield
    finally:
        if hasattr(model, "channels_last"):
            model.channels_last = previous


@contextlib.contextmanager
def _constant_slopes(model: nn.Module):
    """Trace every one-slope PReLU as LeakyReLU with that slope as a constant.

    A PReLU with one shared slope is ``x if x >= 0 else a * x``, which is what ONNX
    LeakyRelu computes (the same single product per negative element, so the same values).
    onnxruntime's PRelu kernel broadcasts its slope tensor elementwise, though, and its
    LeakyRelu is a plain vectorised activation that it can also fuse into a preceding Conv:
    on a (1, 512, 1, 10000) gLN + PReLU, 76 ms with PRelu against 22 ms with LeakyRelu (2
    threads). PReLUs with a slope per channel are left as they are.
    """
    swapped = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.PReLU) and child.weight.numel() == 1:
                setattr(parent, name, nn.LeakyReLU(float(child.weight.detach())))
                swapped.append((parent, name, child))
    try:
        yield
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)


# ----------------------------------------------------------------------------- export


class _Graph(nn.Module):
    """What is exported: ``mixture (batch, time), *extra inputs -> sources (batch, C, time)``,
    with only tensors as arguments (the exporter passes every parameter of ``forward``
    positionally, so the extra inputs' keywords are bound here)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        # The exporter puts the module in eval mode and afterwards restores *this* module's
        # mode recursively: a fresh module is in training mode, which would switch the
        # model's dropout on for everything after the export. Callers build it with .eval().
        self.model = model
        self.extra_names = [i.name for i in extra_inputs(model)]

    def forward(self, mixture: torch.Tensor, *extras: torch.Tensor) -> torch.Tensor:
        return self.model(mixture, **dict(zip(self.extra_names, extras)))


def speech_like_mixtures(batch: int, length: int, rate: int, generator: torch.Generator) -> torch.Tensor:
    """``(batch, length)`` speech-like mixtures: two harmonic talkers (random pitch, 3-6
    syllables a second) over a little noise, at about -20 dBFS. (Also the probe on which the
    Separator's CUDA path measures half precisions against fp32: :mod:`.cuda_path`.)"""
    t = torch.arange(length, dtype=torch.float64) / rate
    out = 0.003 * torch.randn(batch, length, generator=generator, dtype=torch.float64)
    for _ in range(2):
        pitch = 90 + 160 * torch.rand(batch, 1, generator=generator, dtype=torch.float64)
        syllables = 3 + 3 * torch.rand(batch, 1, generator=generator, dtype=torch.float64)
        phase = 6.3 * torch.rand(batch, 1, generator=generator, dtype=torch.float64)
        voice = sum(torch.sin(2 * torch.pi * k * pitch * t + k * phase) / k for k in range(1, 9))
        out += 0.05 * voice * torch.sin(torch.pi * syllables * t + phase).clamp(min=0)
    return out.float()


def _example_inputs(model: nn.Module, length: int, batch: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Speech-like inputs: what a separator meets. (A trained model on white noise is far
    off its data; one whose attention has sharpened into near-argmaxes, like the interim
    bundled TDANet, then flips between near-tied keys on rounding alone, and ONNX and
    PyTorch disagree by 0.3% while agreeing to 80 dB on speech.)"""
    generator = torch.Generator().manual_seed(seed)
    rate = int(getattr(model.config, "sample_rate", 8000))
    inputs = [speech_like_mixtures(batch, length, rate, generator)]
    for extra in extra_inputs(model):
        # Of another length than the mixture, so that the time axes stay separate.
        rows = model.config.num_sources if extra.per_source else 1
        audio = speech_like_mixtures(batch * rows, length * 3 // 4 + 7, rate, generator)
        inputs.append(audio.reshape(batch, rows, -1) if extra.per_source else audio)
    return tuple(inputs)


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    example_seconds: float = DEFAULT_EXAMPLE_SECONDS,
    check: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
    progress: bool = False,
) -> Path:
    """Export ``model`` to ONNX with dynamic batch and length, check it, write it atomically.

    Args:
        model: a registered separation model, ``(batch, time) -> (batch, C, time)``.
        path: the ``.onnx`` file to write (replaced only once the export has passed its check).
        opset: ONNX opset (17 or later).
        example_seconds: length of the example input the graph is traced with.
        check: run the file with onnxruntime at the export length and at a length it has not
            seen, and fail if it differs from PyTorch by more than ``tolerance`` times the
            output's peak (see :func:`check_onnx`).
        progress: show which stage runs (tracing, checking) on stderr.

    Returns:
        ``path``. The check's maximum differences are logged.
    """
    path = Path(path)
    cfg = model.config
    if model.architecture in NOT_EXPORTABLE:
        raise CocktailError(f"{model.architecture}: ONNX export is not supported yet ({NOT_EXPORTABLE[model.architecture]})")
    model = model.cpu().eval()
    length = max(int(example_seconds * cfg.sample_rate), 64)
    # Batch 2 in the example: with batch 1 the tracer may fold "batch * n" into a constant.
    inputs = _example_inputs(model, length, batch=2, seed=0)
    names = ["mixture"] + [i.name for i in extra_inputs(model)]
    dynamic_axes = {"mixture": {0: "batch", 1: "time"}, "sources": {0: "batch", 2: "time"}}
    for extra in extra_inputs(model):
        dynamic_axes[extra.name] = {0: f"{extra.name}_batch", 2 if extra.per_source else 1: f"{extra.name}_time"}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic.temporary_beside(path)
    stages = Stages("export", 2 if check else 1, progress)
    try:
        stages.start("tracing the model")
        # Traced with autograd on: models take their plain (training-time) code paths then,
        # which compute the same function as their no-grad paths in eval mode but without
        # in-place writes into views and out= buffers (the GALR blocks use those to
        # save memory), which the tracer cannot express in ONNX.
        with torch.enable_grad(), _exporter_fixes(opset), warnings.catch_warnings(), \
                _plain_layout(model), _constant_slopes(model):
            # The tracer warns about every Python int it sees made from a size; the models'
            # size arithmetic is written to stay symbolic, and the check below proves it.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _Graph(model).eval(), inputs, tmp,
                input_names=names, output_names=["sources"], dynamic_axes=dynamic_axes,
                opset_version=opset, dynamo=False, do_constant_folding=True,
            )
        _finish(tmp, model)
        if check:
            stages.start("checking it against PyTorch with onnxruntime")
            diffs = check_onnx(model, tmp, lengths=(length, _unseen_length(length)), tolerance=tolerance)
            stages.close()
            log.info("%s: onnxruntime vs PyTorch, max abs difference %s",
                     path, ", ".join(f"{d:.2e} at {n} samples" for n, d in diffs.items()))
        atomic.replace(tmp, path)
    finally:
        stages.close()
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _unseen_length(length: int) -> int:
    # Odd and not a multiple of any hop or chunk size: exercises every padding path.
    return length * 37 // 27 + 13


def _zero_initial_states_to_defaults(graph) -> None:
    """Make every LSTM start from ONNX's default zero state instead of the exporter's.

    nn.LSTM builds its zero initial state from the input's batch size; the exporter folds
    that tensor into a constant of the export shape and ``Expand``s it to the run-time
    batch, which fails for any other number of sequences (DPRNN and GALR run ``batch x
    chunks`` sequences through their LSTMs). ONNX LSTM's ``initial_h`` and ``initial_c``
    are optional and default to zeros, so an all-zero constant there is dropped: the same
    function, now for every shape. Nodes left without a consumer are pruned.
    """
    from onnx import numpy_helper

    producers = {out: node for node in graph.node for out in node.output}
    initializers = {t.name: t for t in graph.initializer}

    def is_zero(name: str, depth: int = 0) -> bool:
        if name in initializers:
            return not numpy_helper.to_array(initializers[name]).any()
        node = producers.get(name)
        if node is None or depth > 4:
            return False
        if node.op_type == "Constant":
            return not numpy_helper.to_array(node.attribute[0].t).any()
        if node.op_type == "ConstantOfShape":
            return all(not numpy_helper.to_array(a.t).any() for a in node.attribute)
        if node.op_type in ("Expand", "Identity", "Cast", "Unsqueeze", "Reshape"):
            return is_zero(node.input[0], depth + 1)
        return False

    for node in graph.node:
        if node.op_type == "LSTM":
            for i in (5, 6):  # initial_h, initial_c
                if len(node.input) > i and node.input[i] and is_zero(node.input[i]):
                    node.input[i] = ""
    needed = {out.name for out in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(out in needed for out in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
    del graph.node[:]
    graph.node.extend(reversed(kept))


def _finish(path: str | os.PathLike, model: nn.Module) -> None:
    """Post-process the exported file in place: LSTM states, then the metadata."""
    import onnx

    proto = onnx.load(str(path))
    _zero_initial_states_to_defaults(proto.graph)
    meta = {
        "format": FORMAT,
        "architecture": model.architecture,
        "config": json.dumps(dataclasses.asdict(model.config)),
        "sample_rate": str(model.config.sample_rate),
        "num_sources": str(model.config.num_sources),
    }
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "cocktailparty"
    onnx.save(proto, str(path))


def check_onnx(model: nn.Module, path: str | os.PathLike, lengths: tuple[int, ...],
               tolerance: float = DEFAULT_TOLERANCE) -> dict[int, float]:
    """Max abs difference between onnxruntime and PyTorch at each length (batch 2 at the
    first, batch 1 at the others); raises :class:`CocktailError` above ``tolerance`` x peak."""
    runner = OnnxRunner(path)
    diffs = {}
    for i, length in enumerate(lengths):
        inputs = _example_inputs(model, length, batch=2 if i == 0 else 1, seed=100 + i)
        with torch.no_grad():
            reference = _Graph(model).eval()(*inputs).numpy()
        try:
            got = runner.forward(*(t.numpy() for t in inputs))
        except CocktailError:
            raise
        except Exception as err:  # onnxruntime's own error types
            raise CocktailError(f"{path}: the ONNX model fails at {length} samples "
                                f"({str(err).splitlines()[0][:300]}); this architecture does not export correctly") from None
        if got.shape != reference.shape:
            raise CocktailError(f"{path}: the ONNX model gives shape {got.shape} at {length} samples, "
                                f"PyTorch {reference.shape}; this architecture does not export correctly")
        diff = float(np.abs(got - reference).max())
        diffs[length] = diff
        peak = float(np.abs(reference).max())
        if not diff <= tolerance * max(peak, 1.0):
            raise CocktailError(f"{path}: the ONNX model differs from PyTorch by {diff:.3g} (peak {peak:.3g}) "
                                f"at {length} samples; the export is not reliable")
    return diffs


def export_model(spec: str | None, path: str | os.PathLike, opset: int = DEFAULT_OPSET,
                 example_seconds: float = DEFAULT_EXAMPLE_SECONDS, progress: bool = False) -> tuple[Path, nn.Module]:
    """Load the model ``spec`` (a name or checkpoint; None: the bundled default) on the CPU and
    :func:`export_onnx` it to ``path``; returns the path and the model."""
    from ..core.checkpoint import load_model

    model = load_model(spec, "cpu")
    for extra in extra_inputs(model):
        log.info("the ONNX model takes an input '%s' %s besides the mixture: %s", extra.name,
                 extra.shape.replace("C", str(model.config.num_sources)), extra.what)
    return export_onnx(model, path, opset=opset, example_seconds=example_seconds, progress=progress), model
