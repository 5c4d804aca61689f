"""What a separation model costs: parameters, multiply-accumulates, peak memory and speed.

The figures are the ones separation papers put in their cost tables (TDANet's Table 3,
Tune-In's Table 1), measured the same way for every model in the registry:

- **params**: every parameter tensor once (weights shared between unfolded blocks count once);
  buffers are not parameters.
- **macs**: multiply-accumulates of one forward pass on a ``seconds``-long input at
  ``sample_rate``, counted exactly from the operators that actually run. A MAC is one
  multiply and one add inside a matrix product or a convolution:

  * ``Linear``/``matmul``/``bmm``: ``M * N * K`` per product; the bias add is not counted.
  * ``Conv1d``: ``B * L_out * C_out * (C_in / groups) * kernel``; a transposed convolution is
    ``B * L_in * C_in * (C_out / groups) * kernel``: every *input* frame meets the kernel once,
    so it is not over-counted by the stride.
  * LSTM: the four gates' input and recurrent products, ``4 * H * (I + H)`` per time step,
    per direction, per layer (``I`` is the layer's input size, ``2H`` above a bidirectional
    layer); with a projection, ``4 * H * (I + P) + P * H``. GRU ``3 * H * (I + H)``, plain
    RNN ``H * (I + H)``.
  * Attention: ``L_q * L_k * d`` for ``Q K^T`` plus ``L_q * L_k * d_v`` for the weighted sum,
    per head, whether the kernel is fused or not; ``nn.MultiheadAttention`` adds its input
    projections ``(L_q + 2 L_k) * E * E`` and output projection ``L_q * E * E``. Masked and
    causal attention count in full.
  * Not counted, as in the papers: bias adds, normalisation, activations, softmax, gating
    products, pooling, interpolation and other element-wise work.

  torch's ``FlopCounterMode`` reports FLOPs = 2 x MACs; we count with it and halve. It misses
  the kernels that LSTMs and fused attention run as (CPU LSTMs run as ``mkldnn_rnn_layer``
  and count 0; ``nn.MultiheadAttention`` in eval mode runs as one fused
  ``_native_multi_head_attention``), so :data:`FLOP_FORMULAS` adds formulas for those
  kernels. Each formula sits on the kernel that does the arithmetic and never on an op that
  decomposes into counted parts, so nothing is counted twice.
- **peak_memory_mb**: MiB (2^20 bytes) that one inference forward adds on top of the loaded
  model. CPU: the rise of the resident-set high-water mark (``VmHWM``) over a forward run in
  a fresh Python process, after a warm-up on a short input. GPU: ``max_memory_allocated``
  during the forward minus what was allocated before it.
- **rtf**: real-time factor, median forward time divided by the audio duration (below 1 is
  faster than real time), in eval mode under ``torch.inference_mode``. CPU timings use one
  thread unless told otherwise, because the reference figures are one-thread figures. On a
  GPU, ``fwd_bwd_ms`` also times a training step without the optimizer (forward, a loss,
  backward).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..core.errors import CocktailError, no_cuda
from ..core.progress import Stages, progress_enabled

log = logging.getLogger("cocktailparty")
aten = torch.ops.aten

MIB = 2**20


# --- MAC formulas for the kernels FlopCounterMode does not know ---------------------------
# Shapes arrive in place of tensors (FlopCounterMode's shape wrapper); each formula returns
# FLOPs = 2 x MACs so that it adds up with torch's own formulas.

def _prod(shape) -> int:
    return math.prod(int(s) for s in shape)


def _tokens(input_shape) -> int:
    """Time steps x batch seen by each RNN layer: ``(T, B, I)``, ``(B, T, I)`` or packed ``(N, I)``."""
    return _prod(input_shape[:-1])


def _rnn_layer_flop(input_shape, w_ih_shape, w_hh_shape, *args, out_shape=None, **kwargs) -> int:
    # mkldnn_rnn_layer: one layer, one direction; biases (weight2/3) are adds.
    return 2 * _tokens(input_shape) * (_prod(w_ih_shape) + _prod(w_hh_shape))


def _rnn_layer_backward_flop(input_shape, w_ih_shape, w_hh_shape, *args, out_shape=None, **kwargs) -> int:
    # Every product of the forward has two in the backward: gradient to its input, to its weight.
    return 2 * _rnn_layer_flop(input_shape, w_ih_shape, w_hh_shape)


def _rnn_stack_flop(input_shape, weight_shapes, *args, out_shape=None, **kwargs) -> int:
    # cuDNN/MIOpen get all layers' weights as one list: each matrix (w_ih, w_hh, and w_hr with
    # a projection) multiplies one vector per token; 1-D entries are biases.
    return 2 * _tokens(input_shape) * sum(_prod(w) for w in weight_shapes if len(w) == 2)


def _rnn_stack_backward_flop(input_shape, weight_shapes, *args, out_shape=None, **kwargs) -> int:
    return 2 * _rnn_stack_flop(input_shape, weight_shapes)


def _attention_macs(q_shape, k_shape, v_shape) -> int:
    """``(..., L_q, d)``, ``(..., L_k, d)``, ``(..., L_k, d_v)``: ``Q K^T`` then ``A V``.

    Leading dimensions are those of the query (grouped-query attention shares key heads).
    """
    lead = _prod(q_shape[:-2])
    lq, d = int(q_shape[-2]), int(q_shape[-1])
    lk, dv = int(k_shape[-2]), int(v_shape[-1])
    return lead * lq * lk * (d + dv)


def _sdpa_flop(q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * _attention_macs(q_shape, k_shape, v_shape)


def _sdpa_backward_flop(grad_shape, q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs) -> int:
    # Same five products as torch's formula for the CUDA kernels: scores recomputed, then the
    # gradients to the scores, V, Q and K.
    lead = _prod(q_shape[:-2])
    lq, d = int(q_shape[-2]), int(q_shape[-1])
    lk, dv = int(k_shape[-2]), int(v_shape[-1])
    return 2 * lead * lq * lk * (3 * d + 2 * dv)


def _native_mha_flop(q_shape, k_shape, v_shape, embed_dim, num_heads, qkv_w_shape, qkv_b_shape,
                     proj_w_shape, *args, out_shape=None, **kwargs) -> int:
    # nn.MultiheadAttention's eval-mode fast path, (batch, L, E) inputs: input projections,
    # attention over all heads together (heads x head_dim = E), output projection.
    batch = _prod(q_shape[:-2])
    lq, lk, e = int(q_shape[-2]), int(k_shape[-2]), int(embed_dim)
    projections = batch * (lq + 2 * lk) * e * e + batch * lq * _prod(proj_w_shape)
    return 2 * (projections + batch * lq * lk * 2 * e)


def _encoder_layer_flop(src_shape, embed_dim, num_heads, qkv_w_shape, qkv_b_shape, proj_w_shape,
                        proj_b_shape, use_gelu, norm_first, eps, nw1, nb1, nw2, nb2,
                        ffn_w1_shape, ffn_b1_shape, ffn_w2_shape, *args, out_shape=None, **kwargs) -> int:
    # nn.TransformerEncoderLayer's eval-mode fast path: self-attention block plus the FFN.
    batch = _prod(src_shape[:-2])
    length, e = int(src_shape[-2]), int(embed_dim)
    matrices = _prod(qkv_w_shape) + _prod(proj_w_shape) + _prod(ffn_w1_shape) + _prod(ffn_w2_shape)
    return 2 * (batch * length * matrices + batch * length * length * 2 * e)


def _mv_flop(mat_shape, vec_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * _prod(mat_shape)


def _addmv_flop(self_shape, mat_shape, vec_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * _prod(mat_shape)


def _dot_flop(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * _prod(a_shape)


def _addbmm_flop(self_shape, a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    b, m, k = a_shape
    return 2 * int(b) * int(m) * int(k) * int(b_shape[-1])


def _formulas() -> dict[Any, Callable[..., int]]:
    table = {
        # LSTM on CPU (oneDNN), forward and training backward.
        "mkldnn_rnn_layer": _rnn_layer_flop,
        "mkldnn_rnn_layer_backward": _rnn_layer_backward_flop,
        # LSTM/GRU/RNN on CUDA and ROCm. (_thnn_fused_lstm_cell/_gru_cell are deliberately
        # absent: they only combine gates whose products were already counted as matmuls.)
        "_cudnn_rnn": _rnn_stack_flop,
        "_cudnn_rnn_backward": _rnn_stack_backward_flop,
        "miopen_rnn": _rnn_stack_flop,
        "miopen_rnn_backward": _rnn_stack_backward_flop,
        # Fused attention kernels torch has no formula for (it has the CUDA ones).
        "_scaled_dot_product_flash_attention_for_cpu": _sdpa_flop,
        "_scaled_dot_product_flash_attention_for_cpu_backward": _sdpa_backward_flop,
        "_scaled_dot_product_fused_attention_overrideable": _sdpa_flop,
        "_scaled_dot_product_fused_attention_overrideable_backward": _sdpa_backward_flop,
        "_native_multi_head_attention": _native_mha_flop,
        "_transformer_encoder_layer_fwd": _encoder_layer_flop,
        # Matrix-vector products (a Linear applied to one unbatched vector).
        "mv": _mv_flop,
        "addmv": _addmv_flop,
        "dot": _dot_flop,
        "addbmm": _addbmm_flop,
    }
    known = torch.utils.flop_counter.flop_registry
    found = {}
    for name, formula in table.items():
        op = getattr(aten, name, None)  # absent in some builds
        if op is not None and op not in known:  # never shadow a formula torch grew meanwhile
            found[op] = formula
    return found


FLOP_FORMULAS: dict[Any, Callable[..., int]] = _formulas()


@dataclasses.dataclass
class MacCount:
    """MACs of one forward: ``total``, per module (dotted names below the model, ``""`` is the
    whole model) and per operator (``"aten.convolution"``, ``"aten.mkldnn_rnn_layer"``, ...)."""

    total: int
    by_module: dict[str, int]
    by_op: dict[str, int]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements; a tensor shared by several modules counts once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def model_sample_rate(model: nn.Module, sample_rate: int | None = None) -> int:
    """``sample_rate`` if given, else the model's ``config.sample_rate``."""
    rate = sample_rate or getattr(getattr(model, "config", None), "sample_rate", None)
    if not rate:
        raise CocktailError("the model has no config.sample_rate; give --sample-rate")
    return int(rate)


def example_input(model: nn.Module, seconds: float, sample_rate: int | None = None, batch: int = 1,
                  device: str | torch.device | None = None) -> torch.Tensor:
    """A reproducible noise mixture ``(batch, round(seconds * rate))`` on the model's device."""
    if seconds <= 0:
        raise CocktailError(f"--seconds must be positive, got {seconds}")
    samples = round(seconds * model_sample_rate(model, sample_rate))
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, samples, generator=generator)
    return x.to(device if device is not None else _device_of(model))


def mac_breakdown(model: nn.Module, seconds: float = 1.0, sample_rate: int | None = None, batch: int = 1,
                  inputs: torch.Tensor | tuple | None = None, depth: int = 2) -> MacCount:
    """Count the MACs of ``model(inputs)`` (default: a ``(batch, seconds * rate)`` mixture).

    Runs one forward in eval mode without gradients on the model's own device. ``by_module``
    keeps names up to ``depth`` dots below the model; a module called several times (shared
    weights) accumulates all its calls.
    """
    if inputs is None:
        inputs = example_input(model, seconds, sample_rate, batch)
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS) as counter:
            model(*args)
    finally:
        model.train(was_training)
    counts = counter.get_flop_counts()
    root = type(model).__name__
    tracked = {name[len(root) + 1:]: _halve(sum(ops.values()), name) for name, ops in counts.items()
               if name == root or name.startswith(root + ".")}
    by_module = _by_depth(tracked, depth)
    by_op = {str(op): _halve(flops, str(op)) for op, flops in counts.get("Global", {}).items()}
    total = sum(by_op.values())
    return MacCount(total=total, by_module=by_module, by_op=by_op)


def _by_depth(tracked: dict[str, int], depth: int) -> dict[str, int]:
    """Totals for every module name at most ``depth`` levels below the model.

    Only modules that were called are tracked, so a container such as an ``nn.ModuleList``
    (indexed, never called) gets the sum of its outermost called descendants.
    """
    def level(name: str) -> int:
        return 0 if not name else name.count(".") + 1

    def ancestors(name: str) -> list[str]:
        parts = name.split(".") if name else []
        return [".".join(parts[:i]) for i in range(len(parts))]

    names = {a for n in tracked for a in ancestors(n) + [n] if level(a) <= depth}
    totals = {}
    for prefix in names:
        if prefix in tracked:
            totals[prefix] = tracked[prefix]
            continue
        below = [n for n in tracked if prefix == "" or n.startswith(prefix + ".")]
        outermost = [n for n in below if not any(a in tracked and level(a) > level(prefix) for a in ancestors(n))]
        totals[prefix] = sum(tracked[n] for n in outermost)
    return dict(sorted(totals.items()))


def count_macs(model: nn.Module, seconds: float = 1.0, sample_rate: int | None = None, batch: int = 1,
               inputs: torch.Tensor | tuple | None = None) -> int:
    """MACs of one forward on a ``seconds``-long input (see the module docstring for what counts)."""
    return mac_breakdown(model, seconds, sample_rate, batch, inputs, depth=0).total


def _halve(flops: int, what: str) -> int:
    if flops % 2:
        raise AssertionError(f"odd FLOP count {flops} for {what}: a formula is not in 2 x MAC units")
    return flops // 2


# --- peak memory --------------------------------------------------------------------------

def _read_status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise CocktailError(f"/proc/self/status has no {field}: peak memory needs Linux")


def _reset_high_water() -> bool:
    """Lower VmHWM to the current RSS (Linux >= 4.0), so the warm-up's peak does not hide ours."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


WARMUP_SECONDS = 0.25


def _memory_worker() -> None:
    """Child side of :func:`peak_memory_mb` on CPU: one JSON line with the forward's peak."""
    request = json.loads(sys.argv[1])
    torch.set_num_threads(request["threads"])
    for module in request.get("imports", []):
        __import__(module)
    if "pickle" in request:
        # Our own temporary file, written by the parent a moment ago.
        model = torch.load(request["pickle"], weights_only=False)
    elif "architecture" in request:
        from ..models import build_model

        model = build_model(request["architecture"], **request["config"])
    else:
        from ..core.checkpoint import load_model

        logging.disable(logging.WARNING)  # the parent already warned about untrained weights
        model = load_model(request["spec"], "cpu")
    model = _at_rate(model, request["sample_rate"]).eval()
    rate, batch = request["sample_rate"], request["batch"]
    with torch.inference_mode():
        model(example_input(model, min(WARMUP_SECONDS, request["seconds"]), rate, batch, "cpu"))
        x = example_input(model, request["seconds"], rate, batch, "cpu")
        gc.collect()
        reset = _reset_high_water()
        before = _read_status_kib("VmHWM")
        y = model(x)
        after = _read_status_kib("VmHWM")
    del y
    print(json.dumps({"before_kib": before, "after_kib": after, "reset": reset}))


def memory_worker_env() -> dict[str, str]:
    """Environment for a child process that measures its own peak RSS: glibc's mmap threshold
    fixed at 128 KiB (else heap trimming moves RSS by ~10% run to run), and this process's
    import path, so the child imports whatever registered a model's class (a test module, a
    plugin)."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    env["PYTHONPATH"] = os.pathsep.join([p for p in sys.path if p] + [env.get("PYTHONPATH", "")])
    return env


def peak_memory_mb(model: nn.Module | str | None, seconds: float = 1.0, sample_rate: int | None = None,
                   batch: int = 1, device: str | torch.device = "cpu", threads: int = 1,
                   details: dict | None = None) -> float:
    """Peak memory in MiB that one inference forward adds on top of the loaded model.

    ``model`` is a module or a ``--model`` spec. On CPU the forward runs in a fresh Python
    process (so nothing this process allocated earlier hides the peak) with glibc's mmap
    threshold fixed at 128 KiB (else heap trimming moves RSS by ~10% run to run); the figure is
    VmHWM after the forward minus VmHWM reset to the RSS just before it. ``details``, if given,
    receives ``rss_mb``: the child's whole high-water RSS (torch itself included).
    """
    device = torch.device(device)
    if device.type == "cuda":
        module = resolve_model(model, sample_rate, device)
        x = example_input(module, seconds, sample_rate, batch, device)
        with torch.inference_mode():
            module(x[:, : round(WARMUP_SECONDS * model_sample_rate(module, sample_rate))])
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
            y = module(x)
            torch.cuda.synchronize(device)
            peak = torch.cuda.max_memory_allocated(device)
        del y
        return (peak - before) / MIB
    if device.type != "cpu":
        raise CocktailError(f"peak memory on {device.type} is not supported; use cpu or cuda")

    request: dict[str, Any] = {"seconds": seconds, "batch": batch, "threads": threads}
    with tempfile.TemporaryDirectory(prefix="cocktail-profile-") as tmp:
        if isinstance(model, nn.Module):
            request["sample_rate"] = model_sample_rate(model, sample_rate)
            request["imports"] = [type(model).__module__]
            if hasattr(model, "architecture") and dataclasses.is_dataclass(getattr(model, "config", None)):
                # Cost does not depend on weight values: rebuilding from the config suffices.
                request["architecture"] = model.architecture
                request["config"] = dataclasses.asdict(model.config)
            else:
                request["pickle"] = os.path.join(tmp, "model.pt")
                torch.save(model if _device_of(model).type == "cpu" else _cpu_copy(model), request["pickle"])
        else:
            module = resolve_model(model, None, "cpu")
            request["sample_rate"] = model_sample_rate(module, sample_rate)
            request["imports"] = [type(module).__module__]  # registers its architecture there too
            request["spec"] = model
            del module
        code = "from cocktailparty.eval.profile import _memory_worker; _memory_worker()"
        proc = subprocess.run([sys.executable, "-c", code, json.dumps(request)], env=memory_worker_env(),
                              capture_output=True, text=True)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no message"]
        raise CocktailError(f"peak-memory measurement failed in its subprocess: {tail[0]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if not result["reset"]:
        log.warning("cannot reset VmHWM (/proc/self/clear_refs); peak memory is measured over the warm-up's peak")
    if details is not None:
        details["rss_mb"] = result["after_kib"] / 1024
    return (result["after_kib"] - result["before_kib"]) / 1024


# --- speed --------------------------------------------------------------------------------

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(step: Callable[[], Any], device: torch.device, repeats: int, budget_s: float,
               warmup: int = 2) -> tuple[float, int]:
    """Median wall time of ``step`` in ms after ``warmup`` calls; at least 3 timed runs, then
    stop at ``repeats`` or when ``budget_s`` is spent."""
    for _ in range(warmup):
        t0 = time.perf_counter()
        step()
        _sync(device)
        if time.perf_counter() - t0 > budget_s / 10:
            break  # a slow step is warm after one call; spend the budget on timed runs
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < max(repeats, 1):
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
        if len(times) >= min(3, repeats) and time.perf_counter() - started > budget_s:
            break
    return 1000 * statistics.median(times), len(times)


def real_time_factor(model: nn.Module, seconds: float = 1.0, sample_rate: int | None = None,
                     batch: int = 1, threads: int | None = 1, repeats: int = 10,
                     budget_s: float = 10.0) -> dict[str, float]:
    """Forward speed on the model's device: ``{"forward_ms", "rtf", "runs"}``.

    ``rtf`` is the median forward time over the audio duration (``seconds``; with a batch, the
    time per batch over ``seconds``, so divide by ``batch`` for per-track throughput). On CPU,
    ``threads`` intra-op threads (``None``: leave torch's setting) for the duration of the call.
    """
    device = _device_of(model)
    x = example_input(model, seconds, sample_rate, batch, device)
    previous = torch.get_num_threads()
    if device.type == "cpu" and threads:
        torch.set_num_threads(threads)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            ms, runs = _median_ms(lambda: model(x), device, repeats, budget_s)
    finally:
        torch.set_num_threads(previous)
        model.train(was_training)
    return {"forward_ms": ms, "rtf": ms / 1000 / seconds, "runs": runs}


def train_step_ms(model: nn.Module, seconds: float = 1.0, sample_rate: int | None = None, batch: int = 1,
                  repeats: int = 10, budget_s: float = 10.0) -> dict[str, float]:
    """Median time of forward + loss + backward (no optimizer step) in train mode:
    ``{"fwd_bwd_ms", "train_peak_memory_mb" (CUDA only)}``. Gradients are cleared afterwards."""
    device = _device_of(model)
    x = example_input(model, seconds, sample_rate, batch, device)
    was_training = model.training
    model.train()

    def step() -> None:
        model(x).square().mean().backward()
        for p in model.parameters():
            p.grad = None

    try:
        if device.type == "cuda":
            step()
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
        ms, _ = _median_ms(step, device, repeats, budget_s, warmup=1)
        result = {"fwd_bwd_ms": ms}
        if device.type == "cuda":
            result["train_peak_memory_mb"] = (torch.cuda.max_memory_allocated(device) - before) / MIB
    finally:
        model.train(was_training)
    return result


# --- everything at once -------------------------------------------------------------------

def profile_model(model: nn.Module | str | None, seconds: float = 1.0, sample_rate: int | None = None,
                  device: str | torch.device | None = None, threads: int = 1, batch: int = 1,
                  memory: bool = True, timing: bool = True, backward: bool | None = None,
                  depth: int = 1, progress: bool = False) -> dict[str, Any]:
    """All cost figures of ``model`` (a module or a ``--model`` spec) as one JSON-ready dict.

    Keys: ``model, architecture, sample_rate, seconds, batch, device, threads, params, macs,
    gmacs_per_second_of_audio, gflops_per_second_of_audio, macs_by_module, peak_memory_mb``
    (+ ``rss_mb`` on CPU), ``forward_ms, rtf`` and, when ``backward`` (default: on CUDA),
    ``fwd_bwd_ms, train_peak_memory_mb``. ``memory``/``timing`` False leave those out as None.
    A module is moved to ``device``. ``progress``: show which stage runs on stderr.
    """
    device = resolve_device(device)
    if isinstance(model, nn.Module):
        name = type(model).__name__
    else:
        from ..core.checkpoint import DEFAULT_MODEL

        name = model or DEFAULT_MODEL
    backward = timing and (backward if backward is not None else device.type == "cuda")
    with Stages("profile", 2 + memory + timing + backward, progress) as stages:
        stages.start("loading the model")
        module = resolve_model(model, sample_rate, device)
        rate = model_sample_rate(module, sample_rate)
        stages.start("counting MACs")
        macs = mac_breakdown(module, seconds, rate, batch, depth=depth)
        result: dict[str, Any] = {
            "model": name,
            "architecture": getattr(module, "architecture", type(module).__name__),
            "sample_rate": rate,
            "seconds": seconds,
            "batch": batch,
            "device": str(device),
            "threads": threads if device.type == "cpu" else None,
            "params": count_parameters(module),
            "macs": macs.total,
            "gmacs_per_second_of_audio": macs.total / seconds / batch / 1e9,
            "gflops_per_second_of_audio": 2 * macs.total / seconds / batch / 1e9,
            "macs_by_module": {k or "(model)": v for k, v in macs.by_module.items()},
            "peak_memory_mb": None,
            "rtf": None,
            "forward_ms": None,
            "torch": torch.__version__,
        }
        if memory:
            stages.start("measuring peak memory")
            details: dict[str, float] = {}
            # The subprocess rebuilds the architecture from its config: weights do not change the cost.
            result["peak_memory_mb"] = peak_memory_mb(module, seconds, rate, batch, device, threads, details)
            if "rss_mb" in details:
                result["rss_mb"] = details["rss_mb"]
        if timing:
            stages.start("timing the forward")
            result.update(real_time_factor(module, seconds, rate, batch, threads))
            if backward:
                stages.start("timing forward and backward")
                result.update(train_step_ms(module, seconds, rate, batch))
    return result


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> cuda if present, else cpu; a CUDA request without CUDA is a user error."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except RuntimeError:
        raise CocktailError(f"--device {device!r}: expected cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise no_cuda(device)
    if device.type not in ("cpu", "cuda"):
        raise CocktailError(f"--device {device}: profiling supports cpu and cuda")
    return device


def _device_of(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def _cpu_copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).cpu()


def _at_rate(model: nn.Module, sample_rate: int | None) -> nn.Module:
    """The same architecture built for ``sample_rate`` (kernels in ms change size with it);
    cost does not depend on weights, so untrained ones do."""
    config = getattr(model, "config", None)
    if (sample_rate is None or not dataclasses.is_dataclass(config) or not hasattr(model, "architecture")
            or getattr(config, "sample_rate", sample_rate) == sample_rate):
        return model
    from ..models import build_model

    fields = dataclasses.asdict(config)
    fields["sample_rate"] = sample_rate
    rebuilt = build_model(model.architecture, **fields)
    return rebuilt.to(_device_of(model))


def resolve_model(model: nn.Module | str | None, sample_rate: int | None, device: torch.device | str) -> nn.Module:
    if not isinstance(model, nn.Module):
        from ..core.checkpoint import load_model

        model = load_model(model, device)
    else:
        model = model.to(device)
    return _at_rate(model, sample_rate).eval()


# --- command line -------------------------------------------------------------------------

def _si(value: float, unit: str = "") -> str:
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.2f} {prefix}{unit}"
    return f"{value:g} {unit}".rstrip()


def format_report(r: dict[str, Any]) -> str:
    """The readable table ``cocktail profile`` prints."""
    where = r["device"] + (f", {r['threads']} thread{'s' if r['threads'] != 1 else ''}" if r["threads"] else "")
    rows = [
        ("model", f"{r['model']} ({r['architecture']})"),
        ("input", f"{r['seconds']:g} s at {r['sample_rate']} Hz, batch {r['batch']}"),
        ("device", where),
        ("parameters", f"{r['params']:,} ({_si(r['params'])})"),
        ("MACs", f"{r['macs']:,} ({r['gmacs_per_second_of_audio']:.3f} G per second of audio, "
                 f"{r['gflops_per_second_of_audio']:.3f} GFLOPs)"),
    ]
    if r.get("peak_memory_mb") is not None:
        extra = f"; whole process {r['rss_mb']:.0f} MiB" if "rss_mb" in r else ""
        rows.append(("peak memory", f"{r['peak_memory_mb']:.1f} MiB added by the forward{extra}"))
    if r.get("forward_ms") is not None:
        rows.append(("forward", f"{r['forward_ms']:.1f} ms (median of {r['runs']}), RTF {r['rtf']:.4f}"))
    if r.get("fwd_bwd_ms") is not None:
        rows.append(("forward+backward", f"{r['fwd_bwd_ms']:.1f} ms (training step, no optimizer)"))
    if r.get("train_peak_memory_mb") is not None:
        rows.append(("training memory", f"{r['train_peak_memory_mb']:.1f} MiB"))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    parts = {k: v for k, v in r.get("macs_by_module", {}).items() if k != "(model)" and v}
    if parts:
        lines.append("")
        lines.append("MACs by module:")
        name_width = max(len(k) for k in parts)
        for k, v in sorted(parts.items(), key=lambda kv: -kv[1]):
            share = 100 * v / r["macs"] if r["macs"] else 0.0
            lines.append(f"  {k:<{name_width}}  {v / 1e6:>12,.2f} M  {share:5.1f}%")
    return "\n".join(lines)


def cli_profile(args) -> int:
    """``cocktail profile``: prints the table, or one JSON object with ``--json``."""
    threads = getattr(args, "threads", None) or 1
    if threads < 1:
        raise CocktailError(f"--threads must be at least 1, got {threads}")
    result = profile_model(args.model, seconds=args.seconds, sample_rate=args.sample_rate,
                           device=args.device, threads=threads, batch=getattr(args, "batch", None) or 1,
                           progress=progress_enabled(getattr(args, "quiet", False)))
    print(json.dumps(result) if args.json else format_report(result))
    return 0
