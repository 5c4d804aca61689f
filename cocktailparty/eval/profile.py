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
  faster than real time), in eval mode under ``torch.inference_mode``, every kernel launched
  eagerly (no CUDA graphs, for any model, so that models compare alike). CPU timings use one
  thread unless told otherwise, because the reference figures are one-thread figures. On a
  GPU, ``fwd_bwd_ms`` also times a training step without the optimizer (forward, a loss,
  backward).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from ..core.device import resolve_device
from ..core.progress import Stages
from .macs import count_parameters, mac_breakdown
from .memory_speed import peak_memory_mb, real_time_factor, train_step_ms
from .profile_inputs import model_sample_rate, resolve_model

log = logging.getLogger("cocktailparty")

# The counting is :mod:`.macs`, the measuring :mod:`.memory_speed`; this module runs them all.

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
    device = resolve_device(device, supported=("cpu", "cuda"), purpose="profiling")
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
