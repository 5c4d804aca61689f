"""TDANet's memory-bound layers for CUDA inference, in Triton kernels: gLN with the depthwise conv
(or a pointwise conv's bias) before it and the activation after it, the LA layer, eq. 3's pooled sum
of the scales, the global attention's input (LayerNorm over channels plus the positional code) and
QK-norm, and the sums between passes (residual, summation connection).

Eagerly, a gLN followed by a PReLU is five passes over the activations in torch's kernels:
``var_mean``'s reduction, the affine map's read and write (a broadcasting kernel that does not
vectorise) and the PReLU's read and write. In the default TDANet's fp16 pass on the Separator's
batch (80 x 4 s, H200, torch 2.11) those took 98 of its 272 ms. Here a gLN is one pass that
reduces each utterance's values in blocks (a mean and a sum of squared deviations per block,
merged as Chan et al.'s parallel variance does, so nothing cancels in fp32, by one small
program per utterance), then one pass that normalises, applies the affine map and the
activation, and writes the result: three launches a norm. A depthwise conv before the norm
(the down-sampling convs, the FFN's) is computed inside both passes, its output never stored;
the LA layer (two convs of the upsampled coarse scale, their norms, the sigmoid and eq. 7) is
four launches; the pooled sum of eq. 3 one pass per scale. Measured on that batch, replayed
from a CUDA graph (H200, fp16, ms): 257 torch's ops; 197 with the fused gLN (session 24); 122
with the LA layer; 109 with the convs in the norms and the pooled sum; 106 with 2,048-frame
programs (session 25), within 62-64 dB SNR of fp32 throughout; in the Separator 123, then 108 with
the LA's convs from one gather, 91 with the projections' bias in the norms and the attention's
input and QK-norm, 86 with the sums between passes (session 26).

Only for inference (no autograd), on CUDA, where Triton is installed (it comes with torch's
CUDA wheels on Linux); everything else keeps the torch path (:func:`usable`).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import torch
from torch import nn

from ..core.cuda_graphs import one_line, preparing_capture
from ..core.signal_guard import native_handlers_kept

log = logging.getLogger("cocktailparty")

AVAILABLE = importlib.util.find_spec("triton") is not None
failure: str | None = None  # why the kernels could not run in this process, once they could not
if AVAILABLE:
    import triton
    import triton.language as tl

ACTIVATIONS = (None, "prelu", "sigmoid")  # the kernel's codes: their indices
BLOCK = 2048  # time steps per program; shorter rows take the next power of two


# Eagerly, smaller inputs keep torch's path: there the host's launches set the pace, and a Triton
# launch costs the host more than torch's (1 s x batch 10 eager, graphs off: 60.7 ms with the
# kernels against 43.0 without). Inside a CUDA graph capture, launches are free: any size; and so
# in the eager run before a capture, which compiles and loads them (a capture cannot).
MIN_EAGER_ELEMENTS = 2**24


def usable(x: torch.Tensor) -> bool:
    """Whether ``x`` ``(batch, channels, 1, time)`` or ``(batch, channels, time)`` takes the kernels."""
    return (AVAILABLE and failure is None and x.is_cuda and not torch.is_grad_enabled() and not torch.compiler.is_compiling()
            and x.dim() in (3, 4) and (x.dim() == 3 or x.shape[2] == 1)
            and x.dtype in (torch.float16, torch.bfloat16, torch.float32)
            and (x.numel() >= MIN_EAGER_ELEMENTS or torch.cuda.is_current_stream_capturing() or preparing_capture()))


if AVAILABLE:
    @triton.jit
    def _conv_taps(row, w_ptr, w2_ptr, c, t, inside, in_frames, stride_t, KERNEL: tl.constexpr,
                   STRIDE: tl.constexpr, UPSAMPLE: tl.constexpr, TWO: tl.constexpr):
        """Frames ``t`` of channel c's depthwise conv (weights ``(C, KERNEL)`` fp32, "same" padding as
        :class:`~.tdanet.Conv` has it, stride ``STRIDE``, no bias) of the row at ``row`` repeated
        ``UPSAMPLE`` times along time (nearest upsampling, never built), in fp32; with ``TWO``, also
        the conv with the weights at ``w2_ptr`` from the same loads (else the second is zeros)."""
        value = tl.zeros(t.shape, dtype=tl.float32)
        second = tl.zeros(t.shape, dtype=tl.float32)
        for k in tl.static_range(KERNEL):
            p = t * STRIDE + (k - (KERNEL - 1) // 2)  # in the upsampled input
            valid = inside & (p >= 0) & (p < in_frames * UPSAMPLE)
            x = tl.load(row + (tl.maximum(p, 0) // UPSAMPLE) * stride_t, mask=valid, other=0.0).to(tl.float32)
            value += x * tl.load(w_ptr + c * KERNEL + k)
            if TWO:
                second += x * tl.load(w2_ptr + c * KERNEL + k)
        return value, second

    @triton.jit
    def _read(x_ptr, w_ptr, bias_ptr, b, c, t, inside, in_frames, stride_b, stride_c, stride_t,
              IS_CONV: tl.constexpr, KERNEL: tl.constexpr, STRIDE: tl.constexpr, UPSAMPLE: tl.constexpr,
              HAS_BIAS: tl.constexpr):
        """Frames ``t`` of utterance b's channel c, in fp32: of x itself, or of x's depthwise conv
        (:func:`_conv_taps`), plus a bias per channel if ``HAS_BIAS``, rounded to x's dtype as torch's
        conv would store it."""
        row = x_ptr + b * stride_b + c * stride_c
        if IS_CONV:
            value, _ = _conv_taps(row, w_ptr, w_ptr, c, t, inside, in_frames, stride_t, KERNEL, STRIDE, UPSAMPLE,
                                  False)
            if HAS_BIAS:
                value += tl.load(bias_ptr + c)
            value = value.to(x_ptr.dtype.element_ty).to(tl.float32)
        else:
            value = tl.load(row + t * stride_t, mask=inside, other=0.0).to(tl.float32)
            if HAS_BIAS:  # a pointwise conv's bias, left out of its GEMM
                value = (value + tl.load(bias_ptr + c)).to(x_ptr.dtype.element_ty).to(tl.float32)
        return value

    @triton.jit
    def _store_moments(x, inside, count, mean_ptr, m2_ptr, out):
        """Store the mean of ``x``'s ``count`` values where ``inside`` (fp32), and their sum of squared
        deviations from it, at ``mean_ptr[out]`` and ``m2_ptr[out]``."""
        x = tl.where(inside, x, 0.0)
        mean = tl.sum(x, axis=0) / count
        deviation = tl.where(inside, x - mean, 0.0)
        tl.store(mean_ptr + out, mean)
        tl.store(m2_ptr + out, tl.sum(deviation * deviation, axis=0))

    @triton.jit
    def _block_moments(x_ptr, w_ptr, bias_ptr, count_ptr, mean_ptr, m2_ptr, channels, frames, in_frames,
                       stride_b, stride_c, stride_t, IS_CONV: tl.constexpr, KERNEL: tl.constexpr,
                       STRIDE: tl.constexpr, UPSAMPLE: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_T: tl.constexpr):
        """One program per (utterance, channel, block of time): the block's count, mean and sum of
        squared deviations from that mean, in fp32, of what :func:`_read` reads."""
        row = tl.program_id(0).to(tl.int64)  # utterance * channels + channel (int64: offsets pass 2**31)
        block = tl.program_id(1)
        b, c = row // channels, row % channels
        t = block * BLOCK_T + tl.arange(0, BLOCK_T)
        inside = t < frames
        x = _read(x_ptr, w_ptr, bias_ptr, b, c, t, inside, in_frames, stride_b, stride_c, stride_t,
                  IS_CONV, KERNEL, STRIDE, UPSAMPLE, HAS_BIAS)
        count = tl.minimum(frames - block * BLOCK_T, BLOCK_T).to(tl.float32)
        out = row * tl.num_programs(1) + block
        tl.store(count_ptr + out, count)
        _store_moments(x, inside, count, mean_ptr, m2_ptr, out)

    @triton.jit
    def _normalise(x_ptr, w_ptr, bias_ptr, y_ptr, scale_ptr, shift_ptr, slope_ptr, channels, frames, in_frames,
                   stride_b, stride_c, stride_t, IS_CONV: tl.constexpr, KERNEL: tl.constexpr, STRIDE: tl.constexpr,
                   UPSAMPLE: tl.constexpr, HAS_BIAS: tl.constexpr, ACTIVATION: tl.constexpr,
                   SLOPE_PER_CHANNEL: tl.constexpr, BLOCK_T: tl.constexpr):
        """``y = act(v * scale + shift)`` of what :func:`_read` reads, with one scale and shift per
        (utterance, channel); y contiguous."""
        row = tl.program_id(0).to(tl.int64)
        b, c = row // channels, row % channels
        t = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)
        inside = t < frames
        x = _read(x_ptr, w_ptr, bias_ptr, b, c, t, inside, in_frames, stride_b, stride_c, stride_t,
                  IS_CONV, KERNEL, STRIDE, UPSAMPLE, HAS_BIAS)
        y = x * tl.load(scale_ptr + row) + tl.load(shift_ptr + row)
        if ACTIVATION == 1:
            slope = tl.load(slope_ptr + c) if SLOPE_PER_CHANNEL else tl.load(slope_ptr)
            y = tl.where(y >= 0, y, y * slope)
        elif ACTIVATION == 2:
            y = tl.sigmoid(y)
        tl.store(y_ptr + row * frames + t, y.to(y_ptr.dtype.element_ty), mask=inside)

    @triton.jit
    def _merge(count_ptr, mean_ptr, m2_ptr, weight_ptr, bias_ptr, scale_ptr, shift_ptr, parts, channels, eps,
               BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
        """One program per utterance: its blocks' moments merged (Chan et al.), then each channel's
        ``scale = weight * rstd`` and ``shift = bias - mean * scale``."""
        b = tl.program_id(0).to(tl.int64)
        first = b * parts
        counts = tl.zeros([BLOCK_P], dtype=tl.float32)
        sums = tl.zeros([BLOCK_P], dtype=tl.float32)
        for start in range(0, parts, BLOCK_P):
            i = start + tl.arange(0, BLOCK_P)
            n = tl.load(count_ptr + first + i, mask=i < parts, other=0.0)
            counts += n
            sums += n * tl.load(mean_ptr + first + i, mask=i < parts, other=0.0)
        total = tl.sum(counts, axis=0)
        mean = tl.sum(sums, axis=0) / total
        squares = tl.zeros([BLOCK_P], dtype=tl.float32)
        for start in range(0, parts, BLOCK_P):
            i = start + tl.arange(0, BLOCK_P)
            n = tl.load(count_ptr + first + i, mask=i < parts, other=0.0)
            offset = tl.load(mean_ptr + first + i, mask=i < parts, other=0.0) - mean
            squares += tl.load(m2_ptr + first + i, mask=i < parts, other=0.0) + n * offset * offset
        rstd = 1.0 / tl.sqrt(tl.sum(squares, axis=0) / total + eps)
        for start in range(0, channels, BLOCK_C):
            c = start + tl.arange(0, BLOCK_C)
            scale = tl.load(weight_ptr + c, mask=c < channels, other=0.0) * rstd
            shift = tl.load(bias_ptr + c, mask=c < channels, other=0.0) - mean * scale
            tl.store(scale_ptr + b * channels + c, scale, mask=c < channels)
            tl.store(shift_ptr + b * channels + c, shift, mask=c < channels)


def gln(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float,
        activation: str | None = None, slope: torch.Tensor | None = None,
        conv: "Depthwise | None" = None, x_bias: torch.Tensor | None = None) -> torch.Tensor | None:
    """``act(gLN(x))``, ``act(gLN(conv(x)))`` with a depthwise ``conv``, or ``act(gLN(x + x_bias))``
    with ``x_bias`` ``(C,)`` (a pointwise conv's bias, which its GEMM would add by first copying it
    into the whole output): normalised over channels and time per utterance, then ``weight`` and
    ``bias`` per channel, then the activation (``"prelu"`` with ``slope`` of 1 or C values,
    ``"sigmoid"``, or none).

    x: ``(batch, C, 1, T)`` or ``(batch, C, T)``, any strides (a strided view reads as it is).
    Returns a contiguous tensor of x's shape (its last axis the conv's output length) and dtype.
    The conv's output is never stored: the moments' pass computes it, and the normalising pass
    computes it again (two reads of x instead of a write and two reads of the output). Check
    :func:`usable` first.

    None, with one warning, where Triton cannot build the kernels (it compiles a C launcher the
    first time, which needs a C compiler and Python's headers): from then on :func:`usable` is
    False and the caller's torch path runs, so a machine without them still separates.

    A call that compiles kernels lets Triton's LLVM take over SIGINT and SIGTERM (the first time
    in a process: SIGTERM would then end it at once, Ctrl-C skip Python's cleanup);
    :func:`~cocktailparty.core.signal_guard.native_handlers_kept` puts them back, for every
    caller (the Separator, ``cocktail serve``'s worker threads, a user's own ``model(x)``).
    """
    return _or_none(_gln, x, weight, bias, eps, activation, slope, conv, x_bias)


def _or_none(kernels, *args) -> torch.Tensor | None:
    """``kernels(*args)`` with the signal handlers kept, or None with one warning (and :data:`failure`
    set) if Triton cannot run them.

    Inside a CUDA graph capture a failure is not taken as final: loading a kernel there fails the
    capture itself (the eager run before a capture should have loaded them, see
    :func:`usable`), and that is the capture's failure to report (its caller runs eagerly
    then), not a reason to leave the kernels for the rest of the process."""
    global failure
    _announce_a_first_compile()
    try:
        with native_handlers_kept():
            return kernels(*args)
    except Exception as err:  # noqa: BLE001 - whatever stops the kernels, torch's ops compute the same
        if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
            log.debug("the fused kernels failed inside a capture: %s", one_line(err))
            return None
        if failure is None:
            log.warning("the fused gLN kernels cannot run here (%s); the norms use torch's ops instead", one_line(err))
        failure = one_line(err)
        return None


_first_use_seen = False


def _announce_a_first_compile() -> None:
    """One info line, at a process's first use of the kernels, where Triton's disk cache is still
    empty: the first use on a machine compiles them (a Separator's first batch took 16.9 s against
    1.7 s after, on an H200), which would otherwise look like a hang."""
    global _first_use_seen
    if _first_use_seen:
        return
    _first_use_seen = True
    try:
        directory = kernel_cache_dir()
        empty = not directory.is_dir() or not any(directory.iterdir())
    except Exception as err:  # noqa: BLE001 - a courtesy message must never stop the kernels
        log.debug("could not look into Triton's kernel cache: %s", one_line(err))
        return
    if empty:
        log.info("compiling TDANet's fused CUDA kernels: some seconds, once per machine (cached in %s)", directory)


def kernel_cache_dir() -> Path:
    """Where Triton keeps compiled kernels (``TRITON_CACHE_DIR``, else its default under the home)."""
    knobs = getattr(triton, "knobs", None) if AVAILABLE else None
    directory = getattr(getattr(knobs, "cache", None), "dir", None)
    return Path(directory or os.environ.get("TRITON_CACHE_DIR") or Path.home() / ".triton" / "cache")


def flat_fp32(values: torch.Tensor) -> torch.Tensor:
    """Parameters as the kernels read them: fp32, flat, contiguous (no copy where they are already)."""
    return values.detach().float().reshape(-1).contiguous()


class Depthwise:
    """A depthwise conv as the kernels read it: ``weight`` ``(C, 1, k)`` or ``(C, 1, 1, k)``, an
    optional ``bias`` ``(C,)``, a ``stride``, and padding ``(k - 1) // 2`` (no dilation), applied
    to its input repeated ``upsample`` times along time (nearest upsampling)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, stride: int = 1, upsample: int = 1):
        self.kernel = weight.shape[-1]
        self.weight = flat_fp32(weight)
        self.bias = flat_fp32(bias) if bias is not None else None
        self.stride, self.upsample = stride, upsample

    def frames(self, in_frames: int) -> int:
        """Output length for ``in_frames`` input frames (before upsampling), as torch's conv has it."""
        pad = (self.kernel - 1) // 2
        return (in_frames * self.upsample + 2 * pad - self.kernel) // self.stride + 1


def _source(x: torch.Tensor, conv: Depthwise | None, x_bias: torch.Tensor | None = None) -> tuple[tuple, dict, int]:
    """The kernels' arguments for reading ``x`` through ``conv``, or as it is plus ``x_bias`` (if
    given), and the frames read."""
    in_frames = x.shape[-1]
    if conv is None:
        bias = flat_fp32(x_bias) if x_bias is not None else x
        return ((x, bias, bias, in_frames, x.stride(0), x.stride(1), x.stride(-1)),
                dict(IS_CONV=False, KERNEL=1, STRIDE=1, UPSAMPLE=1, HAS_BIAS=x_bias is not None), in_frames)
    bias = conv.bias if conv.bias is not None else conv.weight
    return ((x, conv.weight, bias, in_frames, x.stride(0), x.stride(1), x.stride(-1)),
            dict(IS_CONV=True, KERNEL=conv.kernel, STRIDE=conv.stride, UPSAMPLE=conv.upsample,
                 HAS_BIAS=conv.bias is not None), conv.frames(in_frames))


def _grid(batch: int, channels: int, frames: int) -> tuple[int, tuple[int, int]]:
    block = min(BLOCK, triton.next_power_of_2(frames))
    return block, (batch * channels, triton.cdiv(frames, block))


def _gln(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float, activation: str | None,
         slope: torch.Tensor | None, conv: Depthwise | None, x_bias: torch.Tensor | None = None) -> torch.Tensor:
    batch, channels = x.shape[0], x.shape[1]
    args, constants, frames = _source(x, conv, x_bias)
    block, grid = _grid(batch, channels, frames)
    count, mean, m2 = torch.empty(3, batch, channels * grid[1], device=x.device)
    _block_moments[grid](*args[:3], count, mean, m2, channels, frames, *args[3:], **constants, BLOCK_T=block)
    scale, shift = merged(count, mean, m2, weight, bias, eps)
    y = torch.empty(x.shape[:-1] + (frames,), dtype=x.dtype, device=x.device)
    slope = flat_fp32(slope if slope is not None else weight)
    _normalise[grid](*args[:3], y, scale, shift, slope, channels, frames, *args[3:], **constants,
                     ACTIVATION=ACTIVATIONS.index(activation), SLOPE_PER_CHANNEL=slope.numel() > 1, BLOCK_T=block)
    return y


def merged(count: torch.Tensor, mean: torch.Tensor, m2: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
           eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-utterance gLN ``scale`` and ``shift`` ``(batch, C)`` (fp32) from block moments ``(batch, C * blocks)``."""
    batch, channels = count.shape[0], weight.numel()
    scale, shift = torch.empty(2, batch, channels, device=count.device)
    _merge[(batch,)](count, mean, m2, flat_fp32(weight), flat_fp32(bias), scale, shift,
                     count.shape[1], channels, eps, BLOCK_P=1024, BLOCK_C=min(1024, triton.next_power_of_2(channels)))
    return scale, shift


if AVAILABLE:
    @triton.jit
    def _la_convs(coarse_ptr, gate_w_ptr, shift_w_ptr, r_ptr, s_ptr, count_ptr, r_mean_ptr, r_m2_ptr, s_mean_ptr,
                  s_m2_ptr, channels, frames, in_frames, stride_b, stride_c, stride_t, KERNEL: tl.constexpr,
                  BLOCK_T: tl.constexpr):
        """One program per (utterance, channel, block of fine frames): the LA's two depthwise convs (h1
        and h2, no bias) of the coarse scale upsampled twofold, read from the coarse scale itself, stored
        unnormalised (``frames`` = twice the coarse length), with each one's block moments."""
        row = tl.program_id(0).to(tl.int64)
        block = tl.program_id(1)
        b, c = row // channels, row % channels
        t = block * BLOCK_T + tl.arange(0, BLOCK_T)
        inside = t < frames
        count = tl.minimum(frames - block * BLOCK_T, BLOCK_T).to(tl.float32)
        out = row * tl.num_programs(1) + block
        tl.store(count_ptr + out, count)
        # One gather per tap feeds both convs: calling _read for each (its loads twice over) made this
        # kernel 28.7 ms of the default model's fp16 pass in the Separator (80 x 4 s, H200), and the
        # pass 123 ms; this way the pass takes 108 (session 26).
        r, s = _conv_taps(coarse_ptr + b * stride_b + c * stride_c, gate_w_ptr, shift_w_ptr, c, t, inside,
                          in_frames, stride_t, KERNEL, 1, 2, True)
        dtype = r_ptr.dtype.element_ty  # the moments of the values as stored, as torch's path has them
        r, s = r.to(dtype).to(tl.float32), s.to(dtype).to(tl.float32)
        tl.store(r_ptr + row * frames + t, r.to(dtype), mask=inside)
        _store_moments(r, inside, count, r_mean_ptr, r_m2_ptr, out)
        tl.store(s_ptr + row * frames + t, s.to(dtype), mask=inside)
        _store_moments(s, inside, count, s_mean_ptr, s_m2_ptr, out)

    @triton.jit
    def _la_combine(r_ptr, s_ptr, f_ptr, gate_ptr, out_ptr, r_scale_ptr, r_shift_ptr, s_scale_ptr, s_shift_ptr,
                    channels, frames, f_stride_b, f_stride_c, f_stride_t, g_stride_b, g_stride_c, g_stride_t,
                    GATE_SHIFT: tl.constexpr, BLOCK_T: tl.constexpr):
        """Eq. 7 with the gLNs applied and the local feature gated on the fly:
        ``out = sigmoid(gLN(R)) * (F * up(gate)) + gLN(S)``, up(gate) repeating each gate frame
        ``2**GATE_SHIFT`` times; out contiguous."""
        row = tl.program_id(0).to(tl.int64)
        b, c = row // channels, row % channels
        t = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)
        inside = t < frames
        r = tl.load(r_ptr + row * frames + t, mask=inside, other=0.0).to(tl.float32)
        s = tl.load(s_ptr + row * frames + t, mask=inside, other=0.0).to(tl.float32)
        f = tl.load(f_ptr + b * f_stride_b + c * f_stride_c + t * f_stride_t, mask=inside, other=0.0).to(tl.float32)
        g = tl.load(gate_ptr + b * g_stride_b + c * g_stride_c + (t >> GATE_SHIFT) * g_stride_t, mask=inside,
                    other=0.0).to(tl.float32)
        rho = tl.sigmoid(r * tl.load(r_scale_ptr + row) + tl.load(r_shift_ptr + row))
        tau = s * tl.load(s_scale_ptr + row) + tl.load(s_shift_ptr + row)
        tl.store(out_ptr + row * frames + t, (tau + rho * (f * g)).to(out_ptr.dtype.element_ty), mask=inside)


def local_attention(coarse: torch.Tensor, feature: torch.Tensor, gate: torch.Tensor, factor: int,
                    gate_conv: torch.Tensor, shift_conv: torch.Tensor, gate_norm: nn.Module, shift_norm: nn.Module
                    ) -> torch.Tensor | None:
    """:func:`_local_attention`, or None where Triton cannot run it (see :func:`gln`)."""
    return _or_none(_local_attention, coarse, feature, gate, factor, gate_conv, shift_conv, gate_norm, shift_norm)


def _local_attention(coarse: torch.Tensor, feature: torch.Tensor, gate: torch.Tensor, factor: int,
                     gate_conv: torch.Tensor, shift_conv: torch.Tensor, gate_norm: nn.Module, shift_norm: nn.Module
                     ) -> torch.Tensor:
    """TDANet's LA layer (eqs. 5-7) on the gated feature, in four launches:
    ``sigmoid(gLN_1(h1(up(coarse)))) * (feature * up_factor(gate)) + gLN_2(h2(up(coarse)))``.

    coarse: ``(batch, C, 1, T)``; feature: ``(batch, C, 1, 2T)``; gate: ``(batch, C, 1, 2T / factor)``;
    gate_conv, shift_conv: the depthwise weights ``(C, 1, k)``; the norms' weight, bias and eps. Any
    strides for coarse, feature and gate; the result is contiguous, in the feature's dtype.

    Here the convs' outputs are stored, unlike :func:`gln`'s: computing both convs again in the
    last pass, from the coarse scale, was slower (the default model's fp16 pass on 80 x 4 s,
    H200: 125.3 against 108.9 ms), as the conv's gathers cost more than reading two stored tensors.
    """
    batch, channels, frames = feature.shape[0], feature.shape[1], feature.shape[-1]
    h1, h2 = Depthwise(gate_conv, upsample=2), Depthwise(shift_conv, upsample=2)
    block, grid = _grid(batch, channels, frames)
    r, s = torch.empty((2,) + tuple(feature.shape), dtype=feature.dtype, device=feature.device)
    count, r_mean, r_m2, s_mean, s_m2 = torch.empty(5, batch, channels * grid[1], device=feature.device)
    _la_convs[grid](coarse, h1.weight, h2.weight, r, s, count, r_mean, r_m2, s_mean, s_m2, channels, frames,
                    coarse.shape[-1], coarse.stride(0), coarse.stride(1), coarse.stride(-1), KERNEL=h1.kernel,
                    BLOCK_T=block)
    r_scale, r_shift = merged(count, r_mean, r_m2, gate_norm.weight, gate_norm.bias, gate_norm.eps)
    s_scale, s_shift = merged(count, s_mean, s_m2, shift_norm.weight, shift_norm.bias, shift_norm.eps)
    out = torch.empty(feature.shape, dtype=feature.dtype, device=feature.device)
    _la_combine[grid](r, s, feature, gate, out, r_scale, r_shift, s_scale, s_shift, channels, frames,
                      feature.stride(0), feature.stride(1), feature.stride(-1), gate.stride(0), gate.stride(1),
                      gate.stride(-1), GATE_SHIFT=factor.bit_length() - 1, BLOCK_T=block)
    return out


if AVAILABLE:
    @triton.jit
    def _pool_add(src_ptr, base_ptr, out_ptr, channels, frames, s_stride_b, s_stride_c, s_stride_t, b_stride_b,
                  b_stride_c, b_stride_t, FACTOR: tl.constexpr, BLOCK_T: tl.constexpr):
        """``out = base + avg_pool(src)`` over time windows of ``FACTOR`` frames, ``frames`` the pooled
        length; out contiguous (it may be base itself: each program reads and writes its own frames)."""
        row = tl.program_id(0).to(tl.int64)
        b, c = row // channels, row % channels
        t = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)
        inside = t < frames
        fine = t[:, None] * FACTOR + tl.arange(0, FACTOR)[None, :]
        window = tl.load(src_ptr + b * s_stride_b + c * s_stride_c + fine * s_stride_t, mask=inside[:, None],
                         other=0.0).to(tl.float32)
        base = tl.load(base_ptr + b * b_stride_b + c * b_stride_c + t * b_stride_t, mask=inside, other=0.0)
        total = base.to(tl.float32) + tl.sum(window, axis=1) / FACTOR
        tl.store(out_ptr + row * frames + t, total.to(out_ptr.dtype.element_ty), mask=inside)


POOL_TILE = 2048  # source frames a _pool_add program reads


def pooled_sum(coarse: torch.Tensor, finer: list[torch.Tensor]) -> torch.Tensor | None:
    """``coarse + sum(avg_pool(f) for f in finer)``, each ``f`` pooled over windows of
    ``f.shape[-1] // T`` frames (a power of two) down to coarse's length ``T``: TDANet's eq. 3.
    coarse ``(batch, C, 1, T)``, finer ``(batch, C, 1, T * 2**k)``, any strides; one pass over each
    ``f`` into one new contiguous tensor. None where Triton cannot run it (see :func:`gln`)."""
    return _or_none(_pooled_sum, coarse, finer)


def _pooled_sum(coarse: torch.Tensor, finer: list[torch.Tensor]) -> torch.Tensor:
    if not finer:
        return coarse
    batch, channels, frames = coarse.shape[0], coarse.shape[1], coarse.shape[-1]
    out = torch.empty(coarse.shape, dtype=coarse.dtype, device=coarse.device)
    base = coarse
    for f in finer:
        factor = f.shape[-1] // frames
        block = min(max(1, POOL_TILE // factor), triton.next_power_of_2(frames))
        grid = (batch * channels, triton.cdiv(frames, block))
        _pool_add[grid](f, base, out, channels, frames, f.stride(0), f.stride(1), f.stride(-1), base.stride(0),
                        base.stride(1), base.stride(-1), FACTOR=factor, BLOCK_T=block)
        base = out
    return out


if AVAILABLE:
    @triton.jit
    def _frame_norm(x_ptr, w_ptr, b_ptr, pe_ptr, out_ptr, channels, frames, stride_b, stride_c, stride_t, eps,
                    BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr):
        """One program per (utterance, block of frames): LayerNorm over the channels of each frame of
        x ``(batch, C, T)`` (any strides), plus the code ``pe`` ``(T, C)``, stored as ``(batch, T, C)``."""
        b = tl.program_id(0).to(tl.int64)
        t = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)
        c = tl.arange(0, BLOCK_C)
        inside = (c[:, None] < channels) & (t[None, :] < frames)
        x = tl.load(x_ptr + b * stride_b + c[:, None] * stride_c + t[None, :] * stride_t, mask=inside,
                    other=0.0).to(tl.float32)  # (BLOCK_C, BLOCK_T)
        mean = tl.sum(x, axis=0) / channels
        deviation = tl.where(inside, x - mean[None, :], 0.0)
        rstd = 1.0 / tl.sqrt(tl.sum(deviation * deviation, axis=0) / channels + eps)
        weight = tl.load(w_ptr + c, mask=c < channels, other=0.0)
        shift = tl.load(b_ptr + c, mask=c < channels, other=0.0)
        code = tl.load(pe_ptr + t[None, :] * channels + c[:, None], mask=inside, other=0.0).to(tl.float32)
        y = deviation * rstd[None, :] * weight[:, None] + shift[:, None] + code
        tl.store(out_ptr + (b * frames + t[None, :]) * channels + c[:, None], y.to(out_ptr.dtype.element_ty),
                 mask=inside)


FRAME_NORM_FRAMES = 16  # frames a _frame_norm program normalises


def frame_norm(x: torch.Tensor, norm: nn.LayerNorm, pe: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | None:
    """``norm(x.transpose(1, 2)) + pe`` as a new contiguous ``(batch, T, C)`` tensor of ``dtype``, from
    x ``(batch, C, 1, T)`` (any strides) and pe ``(T, C)``: TDANet's global attention's input in one
    pass, where torch would copy the transposed view into a contiguous one for its LayerNorm, cast,
    normalise, add and cast again. None where Triton cannot run it (see :func:`gln`)."""
    return _or_none(_frame_norm_call, x, norm, pe, dtype)


def _frame_norm_call(x: torch.Tensor, norm: nn.LayerNorm, pe: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    batch, channels, frames = x.shape[0], x.shape[1], x.shape[-1]
    out = torch.empty((batch, frames, channels), dtype=dtype, device=x.device)
    grid = (batch, triton.cdiv(frames, FRAME_NORM_FRAMES))
    _frame_norm[grid](x, flat_fp32(norm.weight), flat_fp32(norm.bias), pe.contiguous(), out,
                      channels, frames, x.stride(0), x.stride(1), x.stride(-1), norm.eps,
                      BLOCK_C=triton.next_power_of_2(channels), BLOCK_T=FRAME_NORM_FRAMES)
    return out


if AVAILABLE:
    @triton.jit
    def _unit_qk(qkv_ptr, temperature_ptr, out_ptr, vectors, heads, HEAD_DIM: tl.constexpr, BLOCK_V: tl.constexpr):
        """Each query and key head vector of the rows of ``qkv`` ``(rows, 3, heads, HEAD_DIM)``
        (contiguous) divided by its L2 norm (at least 1e-12, as F.normalize has it), the queries also
        multiplied by their head's temperature, stored as ``(rows, 2, heads, HEAD_DIM)``;
        ``vectors`` = rows x 2 x heads."""
        i = tl.program_id(0).to(tl.int64) * BLOCK_V + tl.arange(0, BLOCK_V)
        row, j = i // (2 * heads), i % (2 * heads)  # j: query heads, then key heads
        d = tl.arange(0, HEAD_DIM)
        inside = (i < vectors)[:, None]
        x = tl.load(qkv_ptr + (row * 3 * heads + j)[:, None] * HEAD_DIM + d[None, :], mask=inside,
                    other=0.0).to(tl.float32)
        norm = tl.maximum(tl.sqrt(tl.sum(x * x, axis=1)), 1e-12)
        gain = tl.where(j < heads, tl.load(temperature_ptr + j % heads, mask=i < vectors, other=1.0), 1.0) / norm
        tl.store(out_ptr + i[:, None] * HEAD_DIM + d[None, :], (x * gain[:, None]).to(out_ptr.dtype.element_ty),
                 mask=inside)


UNIT_QK_VECTORS = 64  # head vectors a _unit_qk program normalises


def unit_qk(qkv: torch.Tensor, heads: int, temperature: torch.Tensor, dtype: torch.dtype
            ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """QK-norm's queries and keys, ``(batch, heads, L, d)`` each (strided views of one new tensor of
    ``dtype``), from the projection's output ``qkv`` ``(batch, L, 3 * heads * d)``: each head vector
    at unit length, the queries times ``temperature`` ``(heads,)``. One pass, where torch's norm,
    division and product each write the (fp32) queries and keys once more. None where Triton cannot
    run it (see :func:`gln`)."""
    return _or_none(_unit_qk_call, qkv, heads, temperature, dtype)


def _unit_qk_call(qkv: torch.Tensor, heads: int, temperature: torch.Tensor, dtype: torch.dtype
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    batch, length, width = qkv.shape
    head_dim = width // (3 * heads)
    out = torch.empty((batch, length, 2, heads, head_dim), dtype=dtype, device=qkv.device)
    vectors = batch * length * 2 * heads
    _unit_qk[(triton.cdiv(vectors, UNIT_QK_VECTORS),)](
        qkv.contiguous(), flat_fp32(temperature), out, vectors, heads,
        HEAD_DIM=head_dim, BLOCK_V=UNIT_QK_VECTORS)
    q, k = out.permute(2, 0, 3, 1, 4).unbind(0)
    return q, k


if AVAILABLE:
    @triton.jit
    def _add_affine(a_ptr, b_ptr, out_ptr, bias_ptr, scale_ptr, shift_ptr, slope_ptr, channels, frames, a_stride_b,
                    a_stride_c, a_stride_t, b_stride_b, b_stride_c, b_stride_t, HAS_BIAS: tl.constexpr,
                    HAS_AFFINE: tl.constexpr, ACTIVATION: tl.constexpr, SLOPE_PER_CHANNEL: tl.constexpr,
                    BLOCK_T: tl.constexpr):
        """``out = act((a + b + bias) * scale + shift)`` with bias, scale and shift per channel (each
        where asked for); out contiguous, in a's dtype."""
        row = tl.program_id(0).to(tl.int64)
        b, c = row // channels, row % channels
        t = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)
        inside = t < frames
        y = tl.load(a_ptr + b * a_stride_b + c * a_stride_c + t * a_stride_t, mask=inside, other=0.0).to(tl.float32)
        y += tl.load(b_ptr + b * b_stride_b + c * b_stride_c + t * b_stride_t, mask=inside, other=0.0).to(tl.float32)
        if HAS_BIAS:
            y += tl.load(bias_ptr + c)
        if HAS_AFFINE:
            y = y * tl.load(scale_ptr + c) + tl.load(shift_ptr + c)
        if ACTIVATION == 1:
            slope = tl.load(slope_ptr + c) if SLOPE_PER_CHANNEL else tl.load(slope_ptr)
            y = tl.where(y >= 0, y, y * slope)
        tl.store(out_ptr + row * frames + t, y.to(out_ptr.dtype.element_ty), mask=inside)


def add_affine(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None, scale: torch.Tensor | None = None,
               shift: torch.Tensor | None = None, activation: str | None = None,
               slope: torch.Tensor | None = None) -> torch.Tensor | None:
    """``act((a + b + bias) * scale + shift)`` in one pass, ``bias``, ``scale`` and ``shift`` ``(C,)``
    (the first, or the last two, may be None), the activation ``"prelu"`` (``slope`` of 1 or C values)
    or none: TDANet's residual after a pointwise conv whose bias its GEMM left out, and the
    summation connection into the next pass (``PReLU(scale * (e + x) + shift)``), each one pass
    where torch takes two or three. a, b ``(batch, C, 1, T)`` or ``(batch, C, T)``, any strides; the
    result is contiguous, in a's dtype. None where Triton cannot run it (see :func:`gln`)."""
    return _or_none(_add_affine_call, a, b, bias, scale, shift, activation, slope)


def _add_affine_call(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None, scale: torch.Tensor | None,
                     shift: torch.Tensor | None, activation: str | None, slope: torch.Tensor | None) -> torch.Tensor:
    batch, channels, frames = a.shape[0], a.shape[1], a.shape[-1]
    block, grid = _grid(batch, channels, frames)
    out = torch.empty(a.shape, dtype=a.dtype, device=a.device)

    def given(values: torch.Tensor | None) -> torch.Tensor:  # a pointer the kernel never reads where absent
        return flat_fp32(values) if values is not None else out

    _add_affine[grid](a, b, out, given(bias), given(scale), given(shift), given(slope),
                      channels, frames, a.stride(0), a.stride(1), a.stride(-1), b.stride(0), b.stride(1), b.stride(-1),
                      HAS_BIAS=bias is not None, HAS_AFFINE=scale is not None, ACTIVATION=ACTIVATIONS.index(activation),
                      SLOPE_PER_CHANNEL=slope is not None and slope.numel() > 1, BLOCK_T=block)
    return out
