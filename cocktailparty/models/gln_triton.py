"""gLN and the activation after it, for CUDA inference, in three Triton kernels.

Eagerly, a gLN followed by a PReLU is five passes over the activations in torch's kernels:
``var_mean``'s reduction, the affine map's read and write (a broadcasting kernel that does not
vectorise) and the PReLU's read and write. In the default TDANet's fp16 pass on the Separator's
batch (80 x 4 s, H200, torch 2.11) those took 98 of its 272 ms. Here a gLN is one pass that
reduces each utterance's values in blocks (a mean and a sum of squared deviations per block,
merged as Chan et al.'s parallel variance does, so nothing cancels in fp32, by one small
program per utterance), then one pass that normalises, applies the affine map and the
activation, and writes the result: three launches a norm. Measured on that batch, replayed
from a CUDA graph: 257 -> 197 ms in fp16 (fp32 444 -> 383), SNR to fp32 63 dB; ``model(x)`` of
1 s x batch 1 and 10, replayed: 11.8 -> 5.7 ms and 23.8 -> 16.9 ms.

Only for inference (no autograd), on CUDA, where Triton is installed (it comes with torch's
CUDA wheels on Linux); everything else keeps the torch path (:func:`usable`).
"""

from __future__ import annotations

import importlib.util
import logging

import torch

from ..core.cuda_graphs import one_line
from ..core.signal_guard import native_handlers_kept

log = logging.getLogger("cocktailparty")

AVAILABLE = importlib.util.find_spec("triton") is not None
failure: str | None = None  # why the kernels could not run in this process, once they could not
if AVAILABLE:
    import triton
    import triton.language as tl

ACTIVATIONS = (None, "prelu", "sigmoid")  # the kernel's codes: their indices
BLOCK = 1024  # time steps per program; shorter rows take the next power of two


# Eagerly, smaller inputs keep torch's path: there the host's launches set the pace, and a Triton
# launch costs the host more than torch's (1 s x batch 10 eager, graphs off: 60.7 ms with the
# kernels against 43.0 without). Inside a CUDA graph capture, launches are free: any size.
MIN_EAGER_ELEMENTS = 2**24


def usable(x: torch.Tensor) -> bool:
    """Whether ``x`` ``(batch, channels, 1, time)`` or ``(batch, channels, time)`` takes the kernels."""
    return (AVAILABLE and failure is None and x.is_cuda and not torch.is_grad_enabled() and not torch.compiler.is_compiling()
            and x.dim() in (3, 4) and (x.dim() == 3 or x.shape[2] == 1)
            and x.dtype in (torch.float16, torch.bfloat16, torch.float32)
            and (x.numel() >= MIN_EAGER_ELEMENTS or torch.cuda.is_current_stream_capturing()))


if AVAILABLE:
    @triton.jit
    def _block_moments(x_ptr, count_ptr, mean_ptr, m2_ptr, channels, frames, stride_b, stride_c, stride_t,
                       BLOCK_T: tl.constexpr):
        """One program per (utterance, channel, block of time): the block's count, mean and sum of
        squared deviations from that mean, in fp32."""
        row = tl.program_id(0).to(tl.int64)  # utterance * channels + channel (int64: offsets pass 2**31)
        block = tl.program_id(1)
        b, c = row // channels, row % channels
        t = block * BLOCK_T + tl.arange(0, BLOCK_T)
        inside = t < frames
        x = tl.load(x_ptr + b * stride_b + c * stride_c + t * stride_t, mask=inside, other=0.0).to(tl.float32)
        count = tl.minimum(frames - block * BLOCK_T, BLOCK_T).to(tl.float32)
        mean = tl.sum(x, axis=0) / count
        deviation = tl.where(inside, x - mean, 0.0)
        out = row * tl.num_programs(1) + block
        tl.store(count_ptr + out, count)
        tl.store(mean_ptr + out, mean)
        tl.store(m2_ptr + out, tl.sum(deviation * deviation, axis=0))

    @triton.jit
    def _normalise(x_ptr, y_ptr, scale_ptr, shift_ptr, slope_ptr, channels, frames, stride_b, stride_c, stride_t,
                   ACTIVATION: tl.constexpr, SLOPE_PER_CHANNEL: tl.constexpr, BLOCK_T: tl.constexpr):
        """``y = act(x * scale + shift)`` with one scale and shift per (utterance, channel); y contiguous."""
        row = tl.program_id(0).to(tl.int64)
        b, c = row // channels, row % channels
        t = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)
        inside = t < frames
        x = tl.load(x_ptr + b * stride_b + c * stride_c + t * stride_t, mask=inside, other=0.0).to(tl.float32)
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
        activation: str | None = None, slope: torch.Tensor | None = None) -> torch.Tensor | None:
    """``act(gLN(x))``: normalised over channels and time per utterance, then ``weight`` and ``bias``
    per channel, then the activation (``"prelu"`` with ``slope`` of 1 or C values, ``"sigmoid"``, or none).

    x: ``(batch, C, 1, T)`` or ``(batch, C, T)``, any strides (a strided view of a stride-2 conv
    reads as it is). Returns a contiguous tensor of x's shape and dtype. Check :func:`usable` first.

    None, with one warning, where Triton cannot build the kernels (it compiles a C launcher the
    first time, which needs a C compiler and Python's headers): from then on :func:`usable` is
    False and the caller's torch path runs, so a machine without them still separates.

    A call that compiles kernels lets Triton's LLVM take over SIGINT and SIGTERM (the first time
    in a process: SIGTERM would then end it at once, Ctrl-C skip Python's cleanup);
    :func:`~cocktailparty.core.signal_guard.native_handlers_kept` puts them back, for every
    caller (the Separator, ``cocktail serve``'s worker threads, a user's own ``model(x)``).
    """
    global failure
    try:
        with native_handlers_kept():
            return _gln(x, weight, bias, eps, activation, slope)
    except Exception as err:  # noqa: BLE001 - whatever stops the kernels, torch's ops compute the same
        if failure is None:
            log.warning("the fused gLN kernels cannot run here (%s); the norms use torch's ops instead", one_line(err))
        failure = one_line(err)
        return None


def _gln(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float, activation: str | None,
         slope: torch.Tensor | None) -> torch.Tensor:
    batch, channels, frames = x.shape[0], x.shape[1], x.shape[-1]
    block = min(BLOCK, triton.next_power_of_2(frames))
    blocks = triton.cdiv(frames, block)
    grid = (batch * channels, blocks)
    strides = (x.stride(0), x.stride(1), x.stride(-1))
    count, mean, m2 = torch.empty(3, batch, channels * blocks, device=x.device)
    _block_moments[grid](x, count, mean, m2, channels, frames, *strides, BLOCK_T=block)
    scale, shift = torch.empty(2, batch, channels, device=x.device)
    _merge[(batch,)](count, mean, m2, weight.float().contiguous(), bias.float().contiguous(), scale, shift,
                     channels * blocks, channels, eps, BLOCK_P=1024, BLOCK_C=min(1024, triton.next_power_of_2(channels)))
    y = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    slope = (slope if slope is not None else weight).float().contiguous()
    _normalise[grid](x, y, scale, shift, slope, channels, frames, *strides,
                     ACTIVATION=ACTIVATIONS.index(activation), SLOPE_PER_CHANNEL=slope.numel() > 1, BLOCK_T=block)
    return y
