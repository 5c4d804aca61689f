"""CUDA graphs: forwards replayed without the host launching every kernel again.

A bundled TDANet's forward on a short input is ~2,100 small kernels, and in eager mode the
host's launches set its speed, not the GPU (one 1-s track on an H200: 30 ms of kernel time,
~16-20 us of host time a launch). A CUDA graph records a forward's kernels once and replays
them in one launch. Three users here:

- the Separator's CUDA path (:mod:`cocktailparty.inference.cuda_path`) replays its batches of
  fixed-length chunks through a :class:`ShapeGraphs`;
- a model's own ``forward`` (:func:`replay_inference`): ``model(x)`` in eval mode without
  autograd on CUDA replays an input shape from a graph once it has met that shape before,
  so a plain ``model(x)`` loop gets the graphs' speed with no flag;
- the same in training (:func:`replay_training`): with autograd on, a repeated shape's forward
  and its backward are two graphs, so a user's own eager training loop (forward, loss,
  ``backward()``, optimizer) replays the network twice a step instead of ~8,900 launches.

``COCKTAIL_CUDA_GRAPHS=0`` in the environment turns them all off (debugging), as does
:func:`graphs_off` for a block of code.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import weakref
from typing import Callable, Hashable, Iterable, TypeVar

import torch
from torch import nn

log = logging.getLogger("cocktailparty")

GRAPHS_ENV = "COCKTAIL_CUDA_GRAPHS"
MAX_GRAPHS = 8  # input shapes captured per Separator or model; later new shapes run eagerly
# Shapes met once that a ShapeGraphs remembers: inputs of ever new lengths (a service, an
# evaluation of whole utterances) must not grow the set without end; past this it starts over.
MAX_SEEN = 1024

Forward = Callable[[torch.Tensor], torch.Tensor]
Result = TypeVar("Result")

_switch = threading.local()  # .off: graphs_off() is active in this thread


def graphs_allowed() -> bool:
    """False under ``COCKTAIL_CUDA_GRAPHS=0`` or inside :func:`graphs_off`."""
    return os.environ.get(GRAPHS_ENV, "1") != "0" and not getattr(_switch, "off", False)


@contextlib.contextmanager
def graphs_off():
    """Within this block (in this thread) models run their forwards eagerly: no capture, no replay."""
    before = getattr(_switch, "off", False)
    _switch.off = True
    try:
        yield
    finally:
        _switch.off = before


def one_line(err: Exception) -> str:
    """An exception as ``Type: first line`` for a log line."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def preparing_capture() -> bool:
    """Whether this thread is in :func:`warm_up_on_side_stream`: the eager forward before a shape's
    capture. Code that takes another path inside a capture than eagerly (the fused Triton kernels,
    for any size there) takes that path here too, so that what it compiles and loads on a first
    call happens before the capture, which must not see it (loading a kernel fails a capture)."""
    return getattr(_switch, "preparing", False)


def warm_up_on_side_stream(forward: Callable[[torch.Tensor], Result], x: torch.Tensor) -> Result:
    """``forward(x)`` run eagerly on a side stream, as torch asks of a shape before its capture
    (cuBLAS and cuDNN set themselves up on a first call, which a capture must not see; so do
    Triton's kernels, see :func:`preparing_capture`)."""
    current = torch.cuda.current_stream(x.device)
    side = torch.cuda.Stream(x.device)
    side.wait_stream(current)
    before = preparing_capture()
    _switch.preparing = True
    try:
        with torch.cuda.stream(side):
            out = forward(x)
    finally:
        _switch.preparing = before
    current.wait_stream(side)
    return out


def uncached_autocast():
    """CUDA autocast as it stands (on or off, its dtype) but without its weight-cast cache, for a
    capture: a cast the cache already holds (made by an eager call earlier in the same autocast
    block) would not be recorded, and the graph would go on reading that tensor after the block
    ends and frees it, or after the weights change."""
    return torch.autocast("cuda", dtype=torch.get_autocast_dtype("cuda"), enabled=torch.is_autocast_enabled("cuda"),
                          cache_enabled=False)


def capture_graph(forward: Forward, example: torch.Tensor, pool=None) -> Forward:
    """``forward`` captured as a CUDA graph for ``example``'s shape; returns a call that copies
    its input into the graph's static input, replays, and returns the static output, which
    the next call overwrites. ``pool``: a memory pool shared with other graphs that never run
    at the same time (the caller consumes each output before the next replay)."""
    static_in = example.clone()
    graph = torch.cuda.CUDAGraph()
    with uncached_autocast(), torch.cuda.graph(graph, pool=pool):
        static_out = forward(static_in)

    def replay(x: torch.Tensor) -> torch.Tensor:
        static_in.copy_(x)
        graph.replay()
        return static_out

    return replay


def input_shape(x: torch.Tensor) -> Hashable:
    return tuple(x.shape)


class ShapeGraphs:
    """``forward`` for inputs of any shape, replayed from a CUDA graph per shape once it repeats.

    The first input of a shape (or of a ``key``: by default the shape) runs eagerly through
    ``warm_up`` (on CUDA: on a side stream, which a later capture needs); the second is
    captured with ``capture`` and replayed, as is every later one. At most ``max_graphs`` keys
    are captured; others stay eager. If a capture fails (a model that syncs with the host
    mid-forward), that is logged once and everything runs eagerly from then on. The returned
    tensor may be overwritten by the next call: use it first.

    ``capture`` and ``warm_up`` are parameters so that this policy is tested without a GPU.
    """

    def __init__(self, forward: Forward, capture: Callable[[Forward, torch.Tensor], Forward] = capture_graph,
                 warm_up: Callable[[Forward, torch.Tensor], torch.Tensor] = warm_up_on_side_stream,
                 max_graphs: int = MAX_GRAPHS, key: Callable[[torch.Tensor], Hashable] = input_shape):
        self.forward, self.capture, self.warm_up, self.max_graphs, self.key = forward, capture, warm_up, max_graphs, key
        self.graphs: dict[Hashable, Forward] = {}
        self.seen: set[Hashable] = set()
        self.enabled = True

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        key = self.key(x)
        replay = self.graphs.get(key)
        if replay is not None:
            return replay(x)
        if not self.enabled or len(self.graphs) >= self.max_graphs:
            return self.forward(x)
        if key not in self.seen:
            if len(self.seen) >= MAX_SEEN:
                self.seen.clear()
            self.seen.add(key)
            return self.warm_up(self.forward, x)
        try:
            replay = self.capture(self.forward, x)
        except Exception as err:  # any failure to capture leaves the eager path, which works
            # The first error, where a failed capture's exit raised another one over it.
            first = err.__context__ if err.__context__ is not None and "during capture" in str(err) else err
            log.warning("could not capture the model as a CUDA graph (%s); running it eagerly", one_line(first))
            self.enabled = False
            return self.forward(x)
        self.graphs[key] = replay
        return replay(x)


# ----------------------------------------------------------------------------- model(x)


def _recording() -> bool:
    """Inside a CUDA-graph capture, torch.compile, a trace or an export: they record the
    forward's operations, which a replay would hide. (Ask only with a CUDA input.)"""
    return (torch.cuda.is_current_stream_capturing() or torch.compiler.is_compiling() or torch.jit.is_tracing()
            or torch.onnx.is_in_onnx_export())


def replays_inference(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``module(x)`` may come from :func:`replay_inference`: a CUDA input, eval mode,
    no autograd, graphs allowed, and not inside a capture, torch.compile, a trace or an export."""
    return x.is_cuda and not module.training and not torch.is_grad_enabled() and graphs_allowed() and not _recording()


def _inference_key(x: torch.Tensor) -> Hashable:
    # A graph replays the kernels of the dtypes it was captured in, and its static tensors are
    # inference tensors or not as the mode was: both belong to the key with the shape.
    return (tuple(x.shape), x.dtype, x.device, torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda"),
            torch.is_inference_mode_enabled())


class _ModelGraphs:
    """One module's graphs: inference and training :class:`ShapeGraphs` that return fresh
    tensors, and a lock (replays share the static input and output)."""

    def __init__(self, module: nn.Module, forward: Forward):
        capture = functools.partial(_capture_returning_copies, pool=torch.cuda.graph_pool_handle())
        self.inference = ShapeGraphs(forward, capture=capture, key=_inference_key)
        held = weakref.ref(module)
        self.training = ShapeGraphs(forward, capture=functools.partial(capture_training, held),
                                    warm_up=run_eagerly, max_graphs=MAX_TRAINING_GRAPHS,
                                    key=training_key(lambda: trained_parameters(held()).values()))
        self.lock = threading.Lock()


def _capture_returning_copies(forward: Forward, example: torch.Tensor, pool=None) -> Forward:
    replay = capture_graph(forward, example, pool)
    return lambda x: replay(x).clone()


# Per module, weakly: the graphs die with their model, and the module itself carries no state
# that copy.deepcopy, pickling or a state dict would have to handle.
_MODEL_GRAPHS: "weakref.WeakKeyDictionary[nn.Module, _ModelGraphs]" = weakref.WeakKeyDictionary()


def _graphs_of(module: nn.Module, forward: Forward) -> _ModelGraphs:
    graphs = _MODEL_GRAPHS.get(module)
    if graphs is None:
        method = weakref.WeakMethod(forward)
        graphs = _MODEL_GRAPHS[module] = _ModelGraphs(module, lambda inputs: method()(inputs))
    return graphs


def replay_inference(module: nn.Module, forward: Forward, x: torch.Tensor) -> torch.Tensor:
    """``forward(x)`` for ``module``'s forward, replayed from a CUDA graph of ``x``'s shape
    (and dtype, autocast state and inference mode) from the second time that shape comes;
    the first time it runs eagerly. Call it only where :func:`replays_inference` holds.

    ``forward``: the module's eager forward, a bound method of ``module`` (held weakly). The
    output is a fresh tensor, as an eager forward's is. All of a module's inference graphs share
    one memory pool (they run one at a time). A module whose parameters move (``.to()``,
    ``.half()``, ``load_state_dict(assign=True)``) must call :func:`forget_graphs` (a TDANet
    does, from ``_apply`` and after every load): the graphs read the old tensors' addresses.
    Weights changed in place (an optimizer step) are read by the next replay. A parameter
    swapped for a new one by hand is not noticed: call :func:`forget_graphs` after it.
    """
    graphs = _graphs_of(module, forward)
    with graphs.lock, torch.cuda.device(x.device):
        return graphs.inference(x)


def forget_graphs(module: nn.Module) -> None:
    """Drop ``module``'s graphs, inference and training (its parameters are about to move)."""
    _MODEL_GRAPHS.pop(module, None)


# ----------------------------------------------------------------------------- training

# Input keys captured per model in training: the training set's batch shape, and perhaps one
# more (a last, shorter batch); each holds a step's activations in a pool of its own.
MAX_TRAINING_GRAPHS = 2
# A training graph is captured only where the GPU has this many times the activations it will
# hold free (one copy for its pool, the rest for everything else: another shape's eager step).
TRAINING_MEMORY_FACTOR = 2.0


def replays_training(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``module(x)`` may come from :func:`replay_training`: a CUDA input that needs no
    gradient of its own, training mode, autograd on, graphs allowed, not inside a capture,
    torch.compile, a trace or an export, and no process group (replays under
    DistributedDataParallel's gradient hooks have not been tried: no multi-GPU machine yet)."""
    return (x.is_cuda and module.training and torch.is_grad_enabled() and not x.requires_grad and graphs_allowed()
            and not _recording() and not _distributed())


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def replay_training(module: nn.Module, forward: Forward, x: torch.Tensor) -> torch.Tensor:
    """``forward(x)`` for ``module``'s forward with autograd on, its forward and backward
    replayed from two CUDA graphs from the second time ``x``'s key (as
    :func:`replay_inference`'s, and which parameters train) comes; the first time it runs
    eagerly. Call it only where :func:`replays_training` holds.

    The output is a fresh tensor whose backward replays the captured backward and hands every
    trained parameter its gradient (a fresh tensor: ``.grad`` accumulates as eagerly, over
    micro-batches too). What the backward reads (the forward's saved activations) lives in the
    graphs' pool until the next replay, so while an output still awaits its backward, a new
    forward of that key runs eagerly instead of overwriting them; a second backward through an
    output older than the latest replay raises. Dropout draws fresh numbers at every replay.
    Not for double backward. A capture that fails, or for which the GPU lacks the memory
    (:data:`TRAINING_MEMORY_FACTOR`), is logged once and leaves the model eager.
    """
    graphs = _graphs_of(module, forward)
    with graphs.lock, torch.cuda.device(x.device):
        return graphs.training(x)


def run_eagerly(forward: Forward, x: torch.Tensor) -> torch.Tensor:
    """A training key's first forward: eager, on the current stream (its backward follows there)."""
    return forward(x)


def trained_parameters(module: nn.Module) -> dict[str, nn.Parameter]:
    """``module``'s parameters that require a gradient, by name."""
    return {name: p for name, p in module.named_parameters() if p.requires_grad}


def training_key(parameters: Callable[[], Iterable[nn.Parameter]]) -> Callable[[torch.Tensor], Hashable]:
    """The key of a training graph: :func:`replay_inference`'s, and which parameters train (the
    backward computes their gradients alone)."""
    return lambda x: (_inference_key(x), tuple(map(id, parameters())))


class TrainingStep:
    """A forward and its backward for one input key, recorded over static tensors.

    ``run_forward()`` recomputes ``static_out`` (and the activations saved for the backward)
    from ``static_in``; ``run_backward()`` writes the parameters' gradients of
    ``static_out`` against ``static_grad_out`` into ``grads`` (None: a parameter the output does
    not use), and into ``flat`` when that is not None (all of them, concatenated, so that a
    copy of them all is one kernel). On CUDA the two runs are graph replays
    (:func:`capture_training`); tests stand in plain functions with the same contract.
    """

    def __init__(self, params: list[nn.Parameter], static_in: torch.Tensor, static_out: torch.Tensor,
                 static_grad_out: torch.Tensor, grads: tuple[torch.Tensor | None, ...], flat: torch.Tensor | None,
                 run_forward: Callable[[], None], run_backward: Callable[[], None]):
        self.params, self.static_in, self.static_out = params, static_in, static_out
        self.static_grad_out, self.grads, self.flat = static_grad_out, grads, flat
        self.run_forward, self.run_backward = run_forward, run_backward
        self.generation = 0  # forward replays so far
        self.awaiting: weakref.ref | None = None  # the autograd node of the output whose backward is due

    def busy(self) -> bool:
        """Whether the last replay's output may still be backpropagated (its activations are needed)."""
        return self.awaiting is not None and self.awaiting() is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.static_in.copy_(x)
        self.run_forward()
        self.generation += 1
        return self.static_out.clone()

    def backward(self, grad_out: torch.Tensor, generation: int) -> tuple[torch.Tensor | None, ...]:
        if generation != self.generation:
            raise RuntimeError("a backward through a CUDA-graphed training forward after a newer forward of the same "
                               "shape replayed over its activations; run such code with cocktailparty's "
                               "graphs_off() or COCKTAIL_CUDA_GRAPHS=0")
        self.static_grad_out.copy_(grad_out)
        self.run_backward()
        self.awaiting = None
        return self.fresh_gradients()

    def fresh_gradients(self) -> tuple[torch.Tensor | None, ...]:
        """The gradients ``run_backward`` wrote, copied out: the next replay overwrites them."""
        if self.flat is None:
            return tuple(None if g is None else g.clone() for g in self.grads)
        copy, start, out = self.flat.clone(), 0, []
        for g in self.grads:
            if g is None:
                out.append(None)
            else:
                out.append(copy[start:start + g.numel()].view_as(g))
                start += g.numel()
        return tuple(out)

    def __call__(self, forward: Forward, x: torch.Tensor) -> torch.Tensor:
        """``forward(x)`` with autograd, replayed; eagerly while the last replay awaits its backward."""
        if self.busy():
            return forward(x)
        return _Replayed.apply(self, x, *self.params)


class _Replayed(torch.autograd.Function):
    """The autograd node of a replayed training forward: its inputs are the mixture (no
    gradient) and the trained parameters, so autograd hands each one its gradient."""

    @staticmethod
    def forward(ctx, step: TrainingStep, x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        out = step.forward(x)
        ctx.step, ctx.generation = step, step.generation
        step.awaiting = weakref.ref(ctx)  # dies with the autograd graph that may still need the activations
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        return (None, None, *ctx.step.backward(grad_out, ctx.generation))


def flat_gradients(grads: tuple[torch.Tensor | None, ...]) -> torch.Tensor | None:
    """The gradients concatenated into one vector, or None where their dtypes or devices differ."""
    present = [g for g in grads if g is not None]
    if not present or len({(g.dtype, g.device) for g in present}) > 1:
        return None
    return torch.cat([g.reshape(-1) for g in present])


def release_generator_from_capture(device: torch.device) -> None:
    """Give ``device``'s default CUDA generator a state of its own again, same seed and offset.

    A capture that fails after recording a random draw (dropout) leaves the generator marked as
    capturing, and every later draw raises "Offset increment outside graph capture encountered
    unexpectedly" (torch 2.11: setting its seed or state does not clear that; a fresh state does),
    so the eager fallback of a failed capture would fail too."""
    generator = torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()]
    fresh = torch.Generator(device=device)
    fresh.set_state(generator.get_state())
    generator.graphsafe_set_state(fresh)


def capture_training(module: Callable[[], nn.Module], forward: Forward,
                     example: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``module()``'s forward and backward captured as two CUDA graphs for ``example``'s key, in
    a pool of their own (a graph sharing it could reuse the saved activations between the two
    replays); the replays hand their gradients to the trained parameters. One eager forward and
    backward on a side stream first, as a capture needs; from it the activations a forward saves
    are measured, and the capture is refused (MemoryError) unless
    :data:`TRAINING_MEMORY_FACTOR` times that is free on the GPU. ``forward``: the eager forward
    that :class:`TrainingStep` falls back on. Returns the call :class:`ShapeGraphs` replays.

    The captured forward reads aliases of the parameters (same memory, so an optimizer's in-place
    update is read; new autograd leaves): the parameters' own gradient-accumulation nodes may
    still belong to an earlier eager output's graph, tied to the stream that ran it, and a
    backward captured through them would make that stream wait on the capture (CUDA refuses:
    "operation would make the legacy stream depend on a capturing blocking stream"; seen when
    ``out = model(x)`` kept the last step's output alive over the capture)."""
    net = module()
    trained = trained_parameters(net)
    aliases = {name: p.detach().requires_grad_() for name, p in trained.items()}
    leaves = list(aliases.values())

    def aliased_forward(x: torch.Tensor) -> torch.Tensor:
        with graphs_off():  # the module's own forward, eagerly (inside a capture it would be anyway)
            return torch.func.functional_call(net, aliases, (x,))

    static_in = example.detach().clone()
    device = example.device

    def step_measuring_activations(x: torch.Tensor) -> int:
        """One eager forward and backward; the bytes the forward kept for the backward."""
        before = torch.cuda.memory_allocated(device)
        with uncached_autocast():
            out = aliased_forward(x)
        held = torch.cuda.memory_allocated(device) - before
        torch.autograd.grad(out, leaves, torch.ones_like(out), allow_unused=True)
        return held

    held = warm_up_on_side_stream(step_measuring_activations, static_in)
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info(device)
    if free < TRAINING_MEMORY_FACTOR * held:
        raise MemoryError(f"a training graph would hold {held / 2**30:.1f} GiB of activations and the GPU has "
                          f"{free / 2**30:.1f} GiB free")
    pool = torch.cuda.graph_pool_handle()
    forward_graph, backward_graph = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
    try:
        with uncached_autocast(), torch.cuda.graph(forward_graph, pool=pool):
            static_out = aliased_forward(static_in)
        static_grad_out = torch.empty_like(static_out)
        with torch.cuda.graph(backward_graph, pool=pool):
            grads = torch.autograd.grad(static_out, leaves, static_grad_out, allow_unused=True)
            flat = flat_gradients(grads)
    except Exception:
        release_generator_from_capture(device)
        raise
    # The saved activations' tensors are freed now, but their memory stays the pool's, which no
    # other capture uses: the two graphs alone read and write it.
    step = TrainingStep(list(trained.values()), static_in, static_out.detach(), static_grad_out, grads, flat,
                        forward_graph.replay, backward_graph.replay)
    return functools.partial(step, forward)
