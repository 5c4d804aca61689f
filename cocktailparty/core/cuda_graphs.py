"""CUDA graphs: forwards replayed without the host launching every kernel again.

A bundled TDANet's forward on a short input is ~2,100 small kernels, and in eager mode the
host's launches set its speed, not the GPU (one 1-s track on an H200: 30 ms of kernel time,
~16-20 us of host time a launch). A CUDA graph records a forward's kernels once and replays
them in one launch. Two users here:

- the Separator's CUDA path (:mod:`cocktailparty.inference.cuda_path`) replays its batches of
  fixed-length chunks through a :class:`ShapeGraphs`;
- a model's own ``forward`` (:func:`replay_inference`): ``model(x)`` in eval mode without
  autograd on CUDA replays an input shape from a graph once it has met that shape before,
  so a plain ``model(x)`` loop gets the graphs' speed with no flag.

``COCKTAIL_CUDA_GRAPHS=0`` in the environment turns both off (debugging), as does
:func:`graphs_off` for a block of code.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import weakref
from typing import Callable, Hashable

import torch
from torch import nn

log = logging.getLogger("cocktailparty")

GRAPHS_ENV = "COCKTAIL_CUDA_GRAPHS"
MAX_GRAPHS = 8  # input shapes captured per Separator or model; later new shapes run eagerly
# Shapes met once that a ShapeGraphs remembers: inputs of ever new lengths (a service, an
# evaluation of whole utterances) must not grow the set without end; past this it starts over.
MAX_SEEN = 1024

Forward = Callable[[torch.Tensor], torch.Tensor]

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


def warm_up_on_side_stream(forward: Forward, x: torch.Tensor) -> torch.Tensor:
    """``forward(x)`` run eagerly on a side stream, as torch asks of a shape before its capture
    (cuBLAS and cuDNN set themselves up on a first call, which a capture must not see)."""
    current = torch.cuda.current_stream(x.device)
    side = torch.cuda.Stream(x.device)
    side.wait_stream(current)
    with torch.cuda.stream(side):
        out = forward(x)
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
            log.warning("could not capture the model as a CUDA graph (%s); running it eagerly", one_line(err))
            self.enabled = False
            return self.forward(x)
        self.graphs[key] = replay
        return replay(x)


# ----------------------------------------------------------------------------- model(x)


def replays_inference(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``module(x)`` may come from :func:`replay_inference`: a CUDA input, eval mode,
    no autograd, and not inside a capture, torch.compile, a trace or an export (those
    record the forward's operations, which a replay would hide)."""
    return (x.is_cuda and not module.training and not torch.is_grad_enabled() and graphs_allowed()
            and not torch.cuda.is_current_stream_capturing() and not torch.compiler.is_compiling()
            and not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export())


def _inference_key(x: torch.Tensor) -> Hashable:
    # A graph replays the kernels of the dtypes it was captured in, and its static tensors are
    # inference tensors or not as the mode was: both belong to the key with the shape.
    return (tuple(x.shape), x.dtype, x.device, torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda"),
            torch.is_inference_mode_enabled())


class _ModelGraphs:
    """One module's inference graphs: a :class:`ShapeGraphs` that returns copies, and a lock
    (replays share the static input and output)."""

    def __init__(self, forward: Forward):
        capture = functools.partial(_capture_returning_copies, pool=torch.cuda.graph_pool_handle())
        self.shapes = ShapeGraphs(forward, capture=capture, key=_inference_key)
        self.lock = threading.Lock()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with self.lock, torch.cuda.device(x.device):
            return self.shapes(x)


def _capture_returning_copies(forward: Forward, example: torch.Tensor, pool=None) -> Forward:
    replay = capture_graph(forward, example, pool)
    return lambda x: replay(x).clone()


# Per module, weakly: the graphs die with their model, and the module itself carries no state
# that copy.deepcopy, pickling or a state dict would have to handle.
_MODEL_GRAPHS: "weakref.WeakKeyDictionary[nn.Module, _ModelGraphs]" = weakref.WeakKeyDictionary()


def replay_inference(module: nn.Module, forward: Forward, x: torch.Tensor) -> torch.Tensor:
    """``forward(x)`` for ``module``'s forward, replayed from a CUDA graph of ``x``'s shape
    (and dtype, autocast state and inference mode) from the second time that shape comes;
    the first time it runs eagerly. Call it only where :func:`replays_inference` holds.

    ``forward``: the module's eager forward, a bound method of ``module`` (held weakly). The
    output is a fresh tensor, as an eager forward's is. All of a module's graphs share one
    memory pool (they run one at a time). A module whose parameters move (``.to()``,
    ``.half()``, ``load_state_dict(assign=True)``) must call :func:`forget_graphs` (a TDANet
    does, from ``_apply`` and after every load): the graphs read the old tensors' addresses.
    Weights changed in place (an optimizer step) are read by the next replay. A parameter
    swapped for a new one by hand is not noticed: call :func:`forget_graphs` after it.
    """
    graphs = _MODEL_GRAPHS.get(module)
    if graphs is None:
        method = weakref.WeakMethod(forward)
        graphs = _MODEL_GRAPHS[module] = _ModelGraphs(lambda inputs: method()(inputs))
    return graphs(x)


def forget_graphs(module: nn.Module) -> None:
    """Drop ``module``'s inference graphs (its parameters are about to move)."""
    _MODEL_GRAPHS.pop(module, None)
