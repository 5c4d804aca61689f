"""TDANet (Li, Yang & Hu, "An efficient encoder-decoder architecture with top-down attention
for speech separation", ICLR 2023), and TDANet Large.

A learned encoder turns the waveform into frames; a separation network estimates one mask per
source; a shared transposed-conv decoder turns each masked frame sequence back into a
waveform (Sec. 3.1). The separation network is one block, unfolded ``unfolds`` times with
shared weights (Sec. 3.5). In each pass the block

1. builds ``depth + 1`` feature scales bottom-up with depthwise stride-2 convs (Sec. 3.2);
2. pools every scale to the coarsest and sums them into ``G`` (eq. 3), runs a transformer
   layer (MHSA + FFN) on it to get the global signal ``G^m`` and gates every scale with
   ``sigmoid(up(G^m))`` (eq. 4): the global attention (GA) module, Sec. 3.3;
3. walks back top-down with local attention (LA) layers, each modulating a scale with its
   coarser neighbour (eqs. 5-7), Sec. 3.4.

Internal tensors are 4-D, ``(batch, channels, 1, frames)``, and all 1-D convs run as
``1 x k`` 2-D convs on them. The reason is speed: oneDNN runs depthwise convs 3-10x faster
in the channels-last memory format (physically ``(batch, frames, channels)``), which torch
only offers for 4-D tensors; on CPU the model switches to it once after the encoder and every
op downstream keeps it. Parameters keep their 1-D shapes.

Where the paper is silent, sizes follow the authors' public code (33-filter encoder, gLN +
1x1 bottleneck, stride-1 conv making the first scale, PReLU + 1x1 + ReLU mask head,
summation-connection fuse layer); those are what put the model at the paper's 2.3M
parameters and 4.7 G MACs. Its known defects (attention over
the batch axis, decoder skipping the coarsest scale, fixed-size positional table) are not
reproduced.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from ..core.cuda_graphs import (forget_graphs, preparing_capture, replay_inference, replay_training, replays_inference,
                                replays_training)
from . import gln_triton
from .common import GlobalLayerNorm, sinusoidal_encoding
from .registry import register


@dataclass
class TDANetConfig:
    """TDANet's hyper-parameters; the defaults are the paper's TDANet (Sec. 4.2)."""

    sample_rate: int = 16000
    num_sources: int = 2
    kernel_ms: float = 4.0  # encoder/decoder window L
    stride_ms: float = 1.0  # hop, floor(L/4) in the paper
    basis: int | None = None  # encoder filters; None: kernel // 2 + 1, as in the authors' code
    bottleneck: int = 128  # channels between unfolds
    channels: int = 512  # N, inside the block
    depth: int = 4  # S, number of down-samplings (S + 1 scales)
    unfolds: int = 16  # B, passes through the shared block
    heads: int = 8  # MHSA heads in the GA module
    ffn_channels: int = 1024  # hidden width of the GA module's FFN (512-1024-512)
    conv_kernel: int = 5  # depthwise kernels (down-sampling, LA layers, FFN)
    dilation: int = 1  # of the down-sampling convs; see DownSample for why not the text's 2
    dropout: float = 0.1  # attention weights and FFN
    drop_path: float = 0.1  # stochastic depth on the GA module's two residual branches
    # LayerNorm over channels on G before "+ d" and the MHSA. The paper only says the MHSA is
    # "the same as the encoder structure defined in Transformer", whose layers are normalized;
    # the authors' code normalizes here too. Without it nothing bounds the attention logits:
    # trained on a GPU they reached ~5e4, the softmax became an argmax, and gradients through
    # its near-ties grew ~100x over the 16 unfolds (plateau at 6 dB, grad norms to 1e4-1e17).
    # 1,024 parameters (2,309,260 in all; the authors' model has 2,330,439).
    attention_input_norm: bool = True
    # Not in the paper, off by default: unit-normalize q and k per head and learn each head's
    # temperature (init sqrt(d), the scale a unit-variance input would give), so logits stay
    # within +-temperature however the projections grow. For when attention_input_norm alone
    # does not stop the collapse (steps.csv: attn_logit_gain). 8 parameters.
    attention_qk_norm: bool = False

    @property
    def kernel(self) -> int:
        """Encoder window in samples."""
        return _samples(self.kernel_ms, self.sample_rate, "kernel_ms")

    @property
    def stride(self) -> int:
        """Encoder hop in samples."""
        return _samples(self.stride_ms, self.sample_rate, "stride_ms")

    @property
    def num_basis(self) -> int:
        # K/2 + 1 filters: as many as a K-point real DFT has bins.
        return self.basis if self.basis is not None else self.kernel // 2 + 1


@dataclass
class TDANetLargeConfig(TDANetConfig):
    """TDANet Large (Sec. 5.2): the same network on a 2 ms window with a 0.5 ms hop."""

    kernel_ms: float = 2.0
    stride_ms: float = 0.5


def _samples(ms: float, sample_rate: int, name: str) -> int:
    samples = ms * sample_rate / 1000
    if samples < 1 or abs(samples - round(samples)) > 1e-6:
        raise ValueError(f"{name}={ms} is not a whole number of samples at {sample_rate} Hz")
    return round(samples)


# ----------------------------------------------------------------------------- building blocks


class Conv(nn.Conv1d):
    """A 1-D conv applied to ``(batch, channels, 1, time)`` tensors as a ``1 x k`` 2-D conv.

    ``padding`` defaults to "same" for odd kernels at stride 1 (and halves the length exactly
    at stride 2 on even lengths).
    """

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 dilation: int = 1, bias: bool = True, padding: int | None = None):
        if padding is None:
            padding = dilation * (kernel - 1) // 2
        super().__init__(cin, cout, kernel, stride, padding, dilation, groups, bias)

        # A pointwise conv on a channels-last tensor is one GEMM over its physical
        # (batch, 1, time, channels) layout; torch's CPU conv would transpose in and out.
        self.pointwise = kernel == 1 and stride == 1 and groups == 1
        self.depthwise = kernel > 1 and groups == cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.depthwise and x.is_cuda and torch.compiler.is_compiling():
            return self._depthwise_as_taps(x)
        if self.depthwise and self.stride[0] == 2 and self.dilation[0] == 1 and x.is_cuda and x.dtype == torch.float16:
            return self._every_other_frame(x)
        if self.pointwise and x.is_contiguous(memory_format=torch.channels_last):
            return F.linear(x.permute(0, 2, 3, 1), self.weight.squeeze(2), self.bias).permute(0, 3, 1, 2)
        if self.pointwise and x.is_cuda:
            return self.pointwise_gemm(x, self.bias)
        return self._conv2d(x, self.stride[0])

    def pointwise_gemm(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """This pointwise conv on an NCHW ``(batch, cin, 1, T)`` CUDA tensor, with ``bias`` (this
        conv's, or None to leave it out) -> ``(batch, cout, 1, T)``.

        Weight @ x per utterance: one batched cuBLAS GEMM, no layout change, and no cudnn algorithm
        search (whose workspace probes, not the model, set the peak memory of a cudnn.benchmark
        training run). The weight is cast before it is expanded: autocast would cast the expanded
        one, a (batch, cout, cin) copy a call (2.7 ms of the default model's 108-ms fp16 pass,
        80 x 4 s, H200).
        """
        b, c, h, t = x.shape
        w = self.weight.squeeze(2).to(autocast_dtype(x.device.type) or self.weight.dtype).expand(b, -1, -1)
        y = torch.bmm(w, x.reshape(b, c, h * t)) if bias is None else \
            torch.baddbmm(bias.unsqueeze(1), w, x.reshape(b, c, h * t))
        return y.view(b, -1, h, t)

    def _conv2d(self, x: torch.Tensor, stride: int) -> torch.Tensor:
        return F.conv2d(x, self.weight.unsqueeze(2), self.bias, (1, stride), (0, self.padding[0]),
                        (1, self.dilation[0]), self.groups)

    def _every_other_frame(self, x: torch.Tensor) -> torch.Tensor:
        """This stride-2 conv as the stride-1 conv's every other frame, ``(batch, C, 1, T)`` ->
        ``(batch, C, 1, T / 2)`` (a strided view): the same values.

        For depthwise convs in fp16 on CUDA: cuDNN runs them at stride 1 only, and at stride 2
        torch's generic kernel took 28.7 of the 272 ms of the default model's fp16 pass (80 x 4 s,
        H200); cuDNN's conv at twice the frames, read at every other one, is cheaper: 268 -> 254 ms
        a pass, graph-replayed (a contiguous copy of the view gave 258 ms).
        """
        return self._conv2d(x, 1)[..., ::2]

    def _depthwise_as_taps(self, x: torch.Tensor) -> torch.Tensor:
        """The depthwise conv written as the sum of its k shifted, per-channel-scaled copies of
        ``x`` ``(batch, C, 1, T)``; the same values as :meth:`forward`'s conv.

        Used under torch.compile on CUDA only: Inductor fuses the taps, forward and backward, with the
        gLN, PReLU and gating around them into its own kernels, where cuDNN's depthwise kernels
        (forward, input and weight gradients) took 16.8 of 53 ms of GPU time in a compiled bf16
        training step (8 x 2 s, H200): 145 -> 238 samples/s. Eagerly each tap would be its own
        launches, so eager keeps the conv. Not on CPUs: Inductor's vectorised CPU code for the taps'
        backward through the whole block corrupted the heap (``free(): invalid next size``, torch
        2.13); its scalar CPU code gave the eager gradients, so the traced maths is sound.
        """
        k, stride, dilation, pad = self.kernel_size[0], self.stride[0], self.dilation[0], self.padding[0]
        frames = (x.shape[-1] + 2 * pad - dilation * (k - 1) - 1) // stride + 1
        padded = F.pad(x, (pad, pad))
        weight = self.weight.to(x.dtype).view(1, -1, 1, k)  # under autocast, as the conv casts it
        y = self.bias.to(x.dtype).view(1, -1, 1, 1) if self.bias is not None else 0
        for tap in range(k):
            start = tap * dilation
            y = y + padded[..., start:start + stride * (frames - 1) + 1:stride] * weight[..., tap:tap + 1]
        return y


# What GLN.forward fuses into its Triton kernels: what follows the norm -> the kernels' activation.
_FUSED = {None: None, nn.PReLU: "prelu", torch.sigmoid_: "sigmoid"}


def _fused_norm(x: torch.Tensor, norm: "GLN", then: Callable | None, conv: Conv | None = None,
                bias: torch.Tensor | None = None) -> torch.Tensor | None:
    """``then(norm(conv(x)))``, ``conv`` a depthwise conv or none, or ``then(norm(x + bias))`` with a
    per-channel ``bias``, from :mod:`.gln_triton`'s kernels; None where ``then`` is not one they
    apply or they cannot be built."""
    key = type(then) if isinstance(then, nn.Module) else then
    if key not in _FUSED:
        return None
    depthwise = gln_triton.Depthwise(conv.weight, conv.bias, conv.stride[0]) if conv is not None else None
    return gln_triton.gln(x, norm.weight, norm.bias, norm.eps, _FUSED[key], getattr(then, "weight", None), depthwise,
                          bias)


class GLN(GlobalLayerNorm):
    """gLN that keeps the activations' dtype under autocast. ``(batch, channels, *)``.

    CUDA autocast runs group_norm in fp32, which wraps every norm in two casts and keeps the
    activations between convs in fp32: more memory traffic than plain fp32, a likely reason
    why the authors' model trains slower under bf16 autocast than in fp32 (0.88x the fp32
    samples/s, measured on an H200). torch's group_norm
    accumulates its statistics in fp32 for bf16/fp16 inputs anyway.
    """

    # Eager inference on CUDA of a short input takes group_norm: 3 launches a norm against
    # var_mean's ~7, and such a forward is bound by the host's launches, not by the GPU
    # (one 1-s track: ~3,000 kernels). One run on an H200 (session 18, eager fp32, median of 5
    # rounds): 1-s track batch 1 59.3 -> 32.5 ms, batch 10 52.1 -> 41.6 ms (its 63-252-frame
    # scales switch). Longer inputs, training, compiled code and CUDA-graph captures keep
    # var_mean: there the GPU's time is what counts, and group_norm's reduction takes more.
    # Session 20, same forward (1 s, batch 1), alternating in one process: group_norm 2,132
    # kernels, 29.8 ms of GPU time (26.1 in group_norm's one-block-per-utterance reduction),
    # 40.7 ms wall; var_mean 3,095 kernels, 10.5 ms GPU, 61.6 ms wall; var_mean + batch_norm
    # (eval, per-utterance statistics) + addcmul 2,822 kernels, 30.8 ms GPU, 53.8 ms wall. The
    # host's ~19 us a launch decides: a gLN in fewer launches that is also parallel needs a
    # fused kernel of its own.
    GROUP_NORM_MAX_FRAMES = 1024      # frames of one utterance
    GROUP_NORM_MAX_BATCH_FRAMES = 4096  # batch x frames

    def forward(self, x: torch.Tensor, then: nn.Module | Callable | None = None) -> torch.Tensor:
        """gLN, then ``then`` if given: a PReLU, ``torch.sigmoid_`` or any function of the output.

        CUDA inference fuses a PReLU or the sigmoid with the norm (:mod:`.gln_triton`), except on the
        short inputs that take group_norm (:meth:`_launch_bound`)."""
        if x.is_cuda and not self._launch_bound(x):
            fused = _fused_norm(x, self, then) if gln_triton.usable(x) else None
            if fused is not None:
                return fused
            y = self._split_statistics(x)
        elif x.dtype == self.weight.dtype:
            y = super().forward(x)
        else:
            with torch.autocast(x.device.type, enabled=False):
                y = F.group_norm(x, 1, self.weight.to(x.dtype), self.bias.to(x.dtype), self.eps)
        return y if then is None else then(y)

    def _launch_bound(self, x: torch.Tensor) -> bool:
        """Whether this norm runs eagerly, without autograd, on an input small enough that
        saving launches beats saving GPU time (see GROUP_NORM_MAX_FRAMES)."""
        frames = x.shape[-1]
        return (not torch.is_grad_enabled() and frames <= self.GROUP_NORM_MAX_FRAMES
                and x.shape[0] * frames <= self.GROUP_NORM_MAX_BATCH_FRAMES
                and not torch.compiler.is_compiling() and not torch.cuda.is_current_stream_capturing()
                and not preparing_capture())

    def _split_statistics(self, x: torch.Tensor) -> torch.Tensor:
        """The same gLN for CUDA where the GPU's time counts, where group_norm with one group
        reduces each utterance's C x T values in a single thread block (one block per batch
        item and group): with group_norm everywhere, 24.9 of the 29.2 ms of kernel time of a
        1-s track went to that kernel (RowwiseMoments, H200); var_mean's reduction spreads a
        row over many blocks. (On CPU var_mean is ~15x slower than group_norm, so the CPU
        keeps group_norm.)
        """
        return _GLNFunction.apply(x, self.weight, self.bias, self.eps)


class _GLNFunction(torch.autograd.Function):
    """gLN with statistics from ``var_mean`` and a backward chosen for how it will run.

    Eager training on a GPU is bound by the host's launches, not the GPU's time (8 x 2 s fp32
    on an H200: ~14,000 kernels and 106 ms of kernel time in a 255-335 ms step), and autograd
    through var_mean and the affine map, or the same maths written out, launches ~25 kernels per
    norm backward. Eager, the backward is torch's ``native_group_norm_backward`` with one group
    (gLN's backward in ~4 kernels, each over many thread blocks), fed the statistics this
    forward saved: 14,300 -> 8,900 kernels a step, 26 -> 33 samples/s (H200, fp32, alternating
    rounds in one process; ``benchmarks/speed.py``'s eager training row 31.4 -> 46.6). Its CUDA
    kernels read mean, rstd and weight in the activations' dtype, so bf16 activations are cast
    to fp32 for it. Under torch.compile the written-out
    maths stays: Inductor fuses it into fewer passes than its own decomposition of the native
    op (compiled bf16 training, 8 x 2 s: 143.5 samples/s against 123.0 with the native op).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
        acc = torch.promote_types(x.dtype, torch.float32)  # fp32, or fp64 for fp64 inputs
        var, mean = torch.var_mean(x, dim=tuple(range(1, x.dim())), correction=0, keepdim=True)
        mean, rstd = mean.to(acc), torch.rsqrt(var.to(acc) + eps)  # (batch, 1, ...)
        shape = (-1,) + (1,) * (x.dim() - 2)
        # y = x * scale + shift with per-(utterance, channel) scale and shift: one pass.
        scale = weight.to(acc).view(shape) * rstd
        shift = torch.addcmul(bias.to(acc).view(shape), mean, scale, value=-1.0)
        ctx.save_for_backward(x, weight, mean, rstd)
        return torch.addcmul(shift.to(x.dtype), x, scale.to(x.dtype))

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x, weight, mean, rstd = ctx.saved_tensors
        if torch.compiler.is_compiling():
            return (*_gln_backward_written_out(g, x, weight, mean, rstd), None)
        batch, channels = x.shape[:2]
        acc = rstd.dtype
        dx, dw, db = torch.ops.aten.native_group_norm_backward(
            g.to(acc).contiguous(), x.to(acc).contiguous(), mean.view(batch, 1), rstd.view(batch, 1),
            weight.to(acc), batch, channels, x[0, 0].numel(), 1, list(ctx.needs_input_grad[:3]))
        return (None if dx is None else dx.to(x.dtype), None if dw is None else dw.to(weight.dtype),
                None if db is None else db.to(weight.dtype), None)


def _gln_backward_written_out(g: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, mean: torch.Tensor,
                              rstd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """gLN's gradients for x, weight and bias from the output gradient ``g`` and the forward's
    fp32 ``mean`` and ``rstd`` ``(batch, 1, ...)``; x and g read once each by the final pass."""
    time_dims = tuple(range(2, x.dim()))
    n = x[0].numel()
    acc = rstd.dtype
    w = weight.to(acc).view((-1,) + (1,) * (x.dim() - 2))
    # Per-(utterance, channel) sums over time: sum g and sum g * x_hat, with
    # x_hat = (x - mean) * rstd, so sum g * x_hat = rstd * (sum g x - mean * sum g).
    sum_g = g.sum(time_dims, keepdim=True, dtype=acc)
    sum_gx = (g * x).sum(time_dims, keepdim=True, dtype=acc)
    sum_gxhat = rstd * (sum_gx - mean * sum_g)
    grad_w = sum_gxhat.sum(0).flatten().to(weight.dtype)
    grad_b = sum_g.sum(0).flatten().to(weight.dtype)
    # dL/dx = rstd * (w g - m1 - x_hat * m2), m1 = mean(w g), m2 = mean(w g x_hat) over
    # (C, T), rewritten as a * g + b * x + c to read g and x once.
    m1 = (w * sum_g).sum(1, keepdim=True) / n
    m2 = (w * sum_gxhat).sum(1, keepdim=True) / n
    a = rstd * w
    b = -rstd * rstd * m2
    c = rstd * (mean * rstd * m2 - m1)
    dt = x.dtype
    return torch.addcmul(torch.addcmul(c.to(dt), x, b.to(dt)), g, a.to(dt)), grad_w, grad_b


class ChannelScale(Conv):
    """A depthwise 1x1 conv (per-channel scale and shift) written as one fused multiply-add:
    torch runs grouped 1x1 convs on CPU as one small conv per group.
    """

    def __init__(self, channels: int):
        super().__init__(channels, channels, 1, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias.view(-1, 1, 1).to(x.dtype), x, self.weight.view(-1, 1, 1).to(x.dtype))


class ConvNorm(nn.Sequential):
    """Conv, then gLN, then optionally PReLU. ``(batch, cin, 1, T) -> (batch, cout, 1, T / stride)``.

    ``then`` (a function of the output, e.g. ``torch.sigmoid_``) follows a ConvNorm without PReLU; the
    gLN fuses either with itself where it can (:meth:`GLN.forward`).
    """

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 dilation: int = 1, bias: bool = False, act: bool = False):
        # No conv bias by default: gLN's own per-channel shift follows.
        layers = [Conv(cin, cout, kernel, stride, groups, dilation, bias), GLN(cout)]
        if act:
            layers.append(nn.PReLU())
        super().__init__(*layers)

    def forward(self, x: torch.Tensor, then: Callable | None = None) -> torch.Tensor:
        conv, norm, *act = self
        then = act[0] if act else then
        if (conv.depthwise and conv.dilation[0] == 1 and conv.padding[0] == (conv.kernel_size[0] - 1) // 2
                and gln_triton.usable(x)):
            # CUDA inference: the conv too in the norm's kernels, which never store its output.
            fused = _fused_norm(x, norm, then, conv)
            if fused is not None:
                return fused
        if conv.pointwise and conv.bias is not None and x.is_cuda and x.dim() == 4 and gln_triton.usable(x):
            # CUDA inference: the conv's bias added in the norm's kernels; in the GEMM, cuBLAS would
            # add it by first copying the broadcast bias into the whole output (5.3 ms of the
            # default model's 108-ms fp16 pass, 80 x 4 s, H200: the full-rate projections).
            y = conv.pointwise_gemm(x, None)
            fused = _fused_norm(y, norm, then, bias=conv.bias)
            if fused is not None:
                return fused
            return norm(y + conv.bias.to(y.dtype).view(-1, 1, 1), then)
        return norm(conv(x), then)


class DropPath(nn.Module):
    """Stochastic depth: drop a whole residual branch per utterance while training."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1.0 - self.p)
        return x * (keep / (1.0 - self.p))  # scale the (batch,) mask, not the activations


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast runs matrix products in on ``device_type``, or None where it is off: what a
    fused kernel whose output feeds one should write."""
    return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None


def _no_autocast(device_type: str):
    """Leave autocast for a region (a no-op context when it is off, which keeps tracing plain)."""
    return torch.autocast(device_type, enabled=False) if torch.is_autocast_enabled(device_type) else nullcontext()


def upsample_mul(x: torch.Tensor, gate: torch.Tensor, factor: int) -> torch.Tensor:
    """``x * up(gate)`` with nearest-neighbour ``up`` by ``factor``, without building ``up(gate)``.

    x: ``(batch, channels, 1, factor * T)``; gate: ``(batch, channels, 1, T)``. Splitting x's
    time axis into ``(T, factor)`` lets the gate broadcast over each run of ``factor`` frames.
    """
    if _in_place(x, gate):
        # Inference: x (a scale F_i used for nothing else afterwards) is overwritten; one
        # fewer full-size tensor to allocate and fill.
        (x if factor == 1 else x.unflatten(-1, (-1, factor))).mul_(gate if factor == 1 else gate.unsqueeze(-1))
        return x
    if factor == 1:
        return x * gate
    return (x.unflatten(-1, (-1, factor)) * gate.unsqueeze(-1)).flatten(-2)


def _in_place(*tensors: torch.Tensor) -> bool:
    """Whether an op may overwrite its (owned, otherwise unused) input: never when autograd
    records (training, and the ONNX exporter, which traces with grad on) or tensors are
    traced, since the saved inputs of a backward must not change."""
    return not torch.is_grad_enabled() and not torch.jit.is_tracing() and not any(t.requires_grad for t in tensors)


# ----------------------------------------------------------------------------- GA module


class MultiHeadSelfAttention(nn.Module):
    """Transformer MHSA over time, through ``scaled_dot_product_attention`` (fused kernels).

    ``(batch, time, channels) -> (batch, time, channels)``.
    """

    def __init__(self, channels: int, heads: int, dropout: float, qk_norm: bool = False):
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be a multiple of heads ({heads})")
        self.heads = heads
        self.dropout = dropout
        self.in_proj = nn.Linear(channels, 3 * channels)
        self.out_proj = nn.Linear(channels, channels)
        # (heads, 1, 1) log-temperatures for unit q and k; None: SDPA's 1/sqrt(d) on raw q, k.
        self.log_temperature = (nn.Parameter(torch.full((heads, 1, 1), 0.5 * math.log(channels // heads)))
                                if qk_norm else None)

    @torch.no_grad()
    def logit_gain(self) -> float:
        """``max_h ||W_q,h^T W_k,h||_2 / sqrt(d)``: the most a unit-norm pair of inputs can
        score. A logit is at most this times ``|x_i| |x_j|`` (biases aside), and with
        LayerNorm-ed inputs ``|x|^2`` is about the channel count, so this watches the
        weights for the growth that sharpens the softmax into an argmax. With ``qk_norm``
        every logit is within the largest head temperature, which is returned instead."""
        if self.log_temperature is not None:
            return float(self.log_temperature.exp().max())
        channels = self.in_proj.in_features
        d = channels // self.heads
        w = self.in_proj.weight.float()
        gains = [torch.linalg.matrix_norm(w[h * d:(h + 1) * d].T @ w[channels + h * d:channels + (h + 1) * d], ord=2)
                 for h in range(self.heads)]
        return float(torch.stack(gains).max()) / d ** 0.5

    def _unit_qk(self, qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The QK-norm's queries and keys from :func:`.gln_triton.unit_qk` in CUDA inference (one pass,
        in the dtype attention takes, where torch's norm, division and product and autocast's casts
        took 4.6 ms of the default model's 108-ms fp16 pass, 80 x 4 s, H200); else None."""
        head_dim = qkv.shape[-1] // (3 * self.heads)
        if not gln_triton.usable(qkv) or head_dim & (head_dim - 1):  # the kernel's vectors: powers of two
            return None
        dtype = autocast_dtype(qkv.device.type) or qkv.dtype
        return gln_triton.unit_qk(qkv, self.heads, self.log_temperature.exp(), dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, channels = x.shape
        qkv = self.in_proj(x)
        q, k, v = qkv.view(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        scale = None
        if self.log_temperature is not None:
            unit = self._unit_qk(qkv)
            if unit is None:
                q = F.normalize(q, dim=-1) * self.log_temperature.exp().to(q.dtype)
                k = F.normalize(k, dim=-1)
            else:
                q, k = unit
            scale = 1.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, scale=scale)
        return self.out_proj(y.transpose(1, 2).reshape(batch, length, channels))


class GlobalAttention(nn.Module):
    """The GA module's transformer layer (Sec. 3.3, Fig. 3): G -> G^m.

    ``(batch, N, 1, T_S)`` in and out, where ``T_S`` is the coarsest scale's length.
    """

    def __init__(self, cfg: TDANetConfig):
        super().__init__()
        n, hidden, k = cfg.channels, cfg.ffn_channels, cfg.conv_kernel
        self.attn_in_norm = nn.LayerNorm(n) if cfg.attention_input_norm else nn.Identity()
        self.attn = MultiHeadSelfAttention(n, cfg.heads, cfg.dropout, cfg.attention_qk_norm)
        self.attn_norm = GLN(n)
        # FFN: channels (N, 2N, N), kernels (1, 5, 1), biases (False, True, False), each conv
        # followed by gLN (Sec. 3.3 and 4.2). The paper names no nonlinearity; without one the
        # FFN would be (almost) affine, so a ReLU follows the depthwise conv as in the
        # authors' code.
        self.ffn = nn.Sequential(
            ConvNorm(n, hidden, 1),
            ConvNorm(hidden, hidden, k, groups=hidden, bias=True),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            ConvNorm(hidden, n, 1),
        )
        self.drop_path = DropPath(cfg.drop_path)

    def forward(self, g: torch.Tensor, pe: torch.Tensor) -> torch.Tensor:
        """g: ``(batch, N, 1, T_S)``; pe: ``(T_S, N)``. Returns G^m, same shape as g."""
        attn = self.attn(self._attention_input(g, pe)).transpose(1, 2).unsqueeze(2)  # MHSA(LN(G) + d)
        # The paper: MHSA output -> gLN -> residual with G (not with G + d).
        g = g + self.drop_path(self.attn_norm(attn))
        return g + self.drop_path(self.ffn(g))

    def _attention_input(self, g: torch.Tensor, pe: torch.Tensor) -> torch.Tensor:
        """LN(G) + d, ``(batch, T_S, N)``, from g ``(batch, N, 1, T_S)`` and pe ``(T_S, N)``."""
        if isinstance(self.attn_in_norm, nn.LayerNorm) and gln_triton.usable(g):
            # CUDA inference: one pass (:func:`.gln_triton.frame_norm`), in the dtype the projection
            # that follows takes, where torch copies the transposed view for its LayerNorm, and casts
            # and adds around it (3.2 ms of the default model's 108-ms fp16 pass, 80 x 4 s, H200).
            dtype = autocast_dtype(g.device.type) or torch.promote_types(g.dtype, pe.dtype)
            fused = gln_triton.frame_norm(g, self.attn_in_norm, pe, dtype)
            if fused is not None:
                return fused
        seq = g.flatten(2).transpose(1, 2)  # (batch, T_S, N); a free view in channels-last
        return self.attn_in_norm(seq) + pe


# ----------------------------------------------------------------------------- LA layer


class LocalAttention(nn.Module):
    """LA layer (Sec. 3.4, Fig. 4, eqs. 5-7): modulate a scale by its coarser neighbour.

    ``F'_i = sigmoid(h1(up(F'_{i+1}))) * F'_i + h2(up(F'_{i+1}))``, with h1, h2 depthwise
    convs followed by gLN.
    """

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.gate = ConvNorm(channels, channels, kernel, groups=channels)  # h1 -> rho, eq. 6
        self.shift = ConvNorm(channels, channels, kernel, groups=channels)  # h2 -> tau, eq. 5

    def gated(self, feature: torch.Tensor, gate: torch.Tensor, factor: int, coarse: torch.Tensor) -> torch.Tensor:
        """Eq. 4's gating of ``feature`` ``(batch, N, 1, 2T)`` by ``gate`` (repeated ``factor`` times
        along time), then this layer with ``coarse`` ``(batch, N, 1, T)``. In CUDA inference, four
        fused kernels (:func:`.gln_triton.local_attention`) where torch runs ten."""
        if gln_triton.usable(feature):
            fused = gln_triton.local_attention(coarse, feature, gate, factor, self.gate[0].weight,
                                               self.shift[0].weight, self.gate[1], self.shift[1])
            if fused is not None:
                return fused
        return self(upsample_mul(feature, gate, factor), coarse)

    def forward(self, local: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """local: ``(batch, N, 1, 2T)``; coarse: ``(batch, N, 1, T)``; returns ``(batch, N, 1, 2T)``."""
        # The paper interpolates first and convolves at the finer rate (h(up(F))); the
        # authors' code does the reverse, which is cheaper but a different function. The
        # equations win; the convs are depthwise, so the extra cost is small.
        # (Computing h(up(F)) at the coarse rate instead, as one depthwise 3x2 conv giving
        # both phases, was tried: oneDNN runs that kernel shape so slowly that the forward
        # got 15-30% slower.)
        up = F.interpolate(coarse, scale_factor=(1.0, 2.0), mode="nearest")
        if _in_place(up, local):  # inference: the same maths without two full-size temporaries
            rho = self.gate(up, then=torch.sigmoid_)
            return self.shift(up).addcmul_(rho, local)  # eq. 7
        rho = torch.sigmoid(self.gate(up))
        tau = self.shift(up)
        return torch.addcmul(tau, rho, local)  # eq. 7


# ----------------------------------------------------------------------------- the block


class TDABlock(nn.Module):
    """One pass of TDANet's separation network (Fig. 1). ``(batch, B, 1, T') -> (batch, B, 1, T')``
    with B the bottleneck width; ``T'`` must be a multiple of ``2**depth``.
    """

    def __init__(self, cfg: TDANetConfig):
        super().__init__()
        n, k = cfg.channels, cfg.conv_kernel
        self.depth = cfg.depth
        self.proj = ConvNorm(cfg.bottleneck, n, 1, bias=True, act=True)
        # Sec. 3.2: down-sampling = conv + gLN + PReLU (the text; the figure omits PReLU).
        # The first, stride-1 conv makes F_1 at full rate as in the authors' code.
        # Dilation: the text says 2, but a stride-2 conv with dilation 2 reads only the even
        # frames, so half of every scale would never reach the next one; Fig. 1 and the
        # authors' code use none, and it changes no parameter or MAC count.
        self.down = nn.ModuleList(
            ConvNorm(n, n, k, stride=1 if i == 0 else 2, groups=n, dilation=1 if i == 0 else cfg.dilation, act=True)
            for i in range(cfg.depth + 1)
        )
        self.ga = GlobalAttention(cfg)
        # LA layers for scales S, ..., 1 (the top one takes the coarsest scale F'_{S+1}).
        self.la = nn.ModuleList(LocalAttention(n, k) for _ in range(cfg.depth))
        self.out = Conv(n, cfg.bottleneck, 1)

    def forward(self, x: torch.Tensor, pe: torch.Tensor) -> torch.Tensor:
        """x: ``(batch, B, 1, T')``; pe: ``(T' / 2**depth, N)`` positional code."""
        f = self.proj(x)
        feats = []  # F_1 ... F_{S+1}, (batch, N, 1, T' / 2**i)
        for down in self.down:
            f = down(f)
            feats.append(f)
        # Eq. 3: G = sum_i p(F_i). The equation's sum stops at S, but the text fuses all S + 1
        # scales, as does the authors' code; the coarsest needs no pooling.
        g = gln_triton.pooled_sum(feats[-1], feats[:-1]) if gln_triton.usable(feats[0]) else None
        if g is None:
            g = feats[-1]
            for i, f in enumerate(feats[:-1]):
                r = 2 ** (self.depth - i)
                g = g + F.avg_pool2d(f, (1, r), (1, r))
        gate = torch.sigmoid(self.ga(g, pe))  # sigma(phi(G^m)) = phi(sigma(G^m)): gate once, coarse
        # Eq. 4 gating of each scale, then the top-down LA cascade (eqs. 5-7) from the
        # coarsest scale down to F'_1. Popping frees each F_i as soon as it is used.
        y = upsample_mul(feats.pop(), gate, 1)
        for i in reversed(range(self.depth)):
            y = self.la[i].gated(feats.pop(), gate, 2 ** (self.depth - i), y)
        if self.out.bias is not None and y.is_cuda and gln_triton.usable(y):
            # CUDA inference: the conv's bias and the residual in one pass after the GEMM, which
            # would first copy the broadcast bias into its whole output.
            raw = self.out.pointwise_gemm(y, None)
            fused = gln_triton.add_affine(raw, x, self.out.bias)
            if fused is not None:
                return fused
            return raw + self.out.bias.to(raw.dtype).view(-1, 1, 1) + x
        return self.out(y) + x


# ----------------------------------------------------------------------------- the model


@register("tdanet", TDANetConfig)
class TDANet(nn.Module):
    """TDANet: ``(batch, time)`` mixture at ``config.sample_rate`` -> ``(batch, num_sources, time)``.

    Any length works: the waveform is padded so that the frame count is a multiple of
    ``2**depth`` (every stride-2 stage halves it exactly) and the output is cropped back.
    """

    # training.precision: auto on a GPU with bf16 units: bf16 trained as well as fp32, measured
    # (README, "Training"), 1.6x as fast.
    auto_training_precision = "bf16"
    # Inputs up to this many batch x frames replay from CUDA graphs: there the host's launches,
    # not the GPU, set the speed (1 s x batch 10 is 10,000; a training batch of 8 x 2 s, 16,128).
    # Bigger ones gain less and would keep a graph's activations (a pool per model) allocated.
    GRAPHED_MAX_FRAMES = 16384

    def __init__(self, config: TDANetConfig | None = None):
        super().__init__()
        cfg = config if config is not None else TDANetConfig()
        self.config = cfg
        kernel, stride, basis, b = cfg.kernel, cfg.stride, cfg.num_basis, cfg.bottleneck
        if stride > kernel:
            raise ValueError(f"stride ({stride}) must not exceed the kernel ({kernel})")
        # Encoder (Sec. 3.1): a bare conv, no nonlinearity (the masks are ReLU'd instead).
        self.encoder = Conv(1, basis, kernel, stride, bias=False, padding=0)
        self.in_norm = GLN(basis)
        self.in_proj = Conv(basis, b, 1)
        self.block = TDABlock(cfg)
        # Summation connection (A-FRCNN): pass b > 1 sees fuse(bottleneck input + pass b-1's
        # output); fuse is a per-channel affine map and PReLU, as in the authors' code.
        self.fuse = nn.Sequential(ChannelScale(b), nn.PReLU())
        # Mask head (Sec. 3.4): C 1x1 convs (here one conv to C x basis) and ReLU.
        self.mask = nn.Sequential(nn.PReLU(), Conv(b, cfg.num_sources * basis, 1), nn.ReLU())
        # Decoder shared by all sources (Fig. 2): transposed conv with the encoder's window.
        self.decoder = nn.ConvTranspose1d(basis, 1, kernel, stride, bias=False)
        self.channels_last: bool | None = None  # None: on CPU only, where oneDNN wants it
        # A load may put new tensors in place of the old (assign=True): the graphs would read freed memory.
        self.register_load_state_dict_post_hook(_forget_graphs_after_load)

    def compile(self, **options) -> None:
        """torch.compile in place, as ``nn.Module.compile``, but only the shared block.

        The GPU's fastest training path (fused gLN, PReLU and gating kernels, the depthwise
        convs as fused taps (:meth:`Conv._depthwise_as_taps`), far fewer launches). All unfolds
        run the same block on same-shaped inputs, so one graph is compiled and reused;
        compiling the whole model would trace all unfolds unrolled.

        Static shapes unless ``options`` say otherwise: by default a second input shape makes
        torch.compile retrace with symbolic sizes, and Inductor fails on this block's pooled
        lengths (InductorError: ValueRangeError on CPU, torch 2.13; on CUDA, torch 2.11, a
        second compile at new shapes in one process failed with InductorError: AssertionError),
        so a new shape compiles a new static graph instead (the trainer's shapes are fixed).
        """
        self.block.compile(**{"dynamic": False, **options})

    @property
    def compiled(self) -> bool:
        """Whether :meth:`compile` ran and was not undone (the trainer's ``uncompile``): torch
        keeps a compiled module's call in ``_compiled_call_impl``."""
        return getattr(self.block, "_compiled_call_impl", None) is not None

    def training_diagnostics(self) -> dict[str, float]:
        """Logged by the trainer with each steps.csv row: the attention's logit gain (see
        :meth:`MultiHeadSelfAttention.logit_gain`; fresh ~0.06). Its growth preceded the
        collapse into argmax attention that stalled training (gain 38 in the weights that
        stalled at 6 dB)."""
        return {"attn_logit_gain": self.block.ga.attn.logit_gain()}

    def _frames(self, length: int) -> int:
        """Frames for ``length`` samples: every sample under K/H windows, rounded to 2**depth."""
        k, h, unit = self.config.kernel, self.config.stride, 2 ** self.config.depth
        frames = -(-(length + k - 2 * h) // h) + 1
        return -(-frames // unit) * unit

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        """mixture: ``(batch, time)`` -> estimates ``(batch, num_sources, time)``.

        On CUDA an input of at most :attr:`GRAPHED_MAX_FRAMES` batch-frames is replayed from
        CUDA graphs from the second time its shape comes (off with ``COCKTAIL_CUDA_GRAPHS=0``):
        the same kernels, launched once instead of ~2,100 times a forward. In eval mode
        without autograd by :func:`~cocktailparty.core.cuda_graphs.replay_inference`; with
        autograd in training mode, forward and backward, by
        :func:`~cocktailparty.core.cuda_graphs.replay_training` (not once :meth:`compile` ran:
        the trainer's compiled step is captured whole).
        """
        if mixture.dim() != 2:
            raise ValueError(f"TDANet takes (batch, time) waveforms, got shape {tuple(mixture.shape)}")
        if mixture.shape[0] * self._frames(mixture.shape[1]) <= self.GRAPHED_MAX_FRAMES:
            if replays_inference(self, mixture):
                return replay_inference(self, self._forward, mixture)
            if not self.compiled and replays_training(self, mixture):
                return replay_training(self, self._forward, mixture)
        return self._forward(mixture)

    def _apply(self, fn, recurse: bool = True):
        forget_graphs(self)  # .to(), .half() and the like move the tensors the graphs read
        return super()._apply(fn, recurse)

    def _summed(self, e: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The summation connection, ``fuse(e + x)``, into the next pass; in CUDA inference one pass
        (:func:`.gln_triton.add_affine`) where torch takes three."""
        if x.is_cuda and gln_triton.usable(x):
            scale, prelu = self.fuse
            fused = gln_triton.add_affine(e, x, None, scale.weight, scale.bias, "prelu", prelu.weight)
            if fused is not None:
                return fused
        return self.fuse(e + x)

    def _forward(self, mixture: torch.Tensor) -> torch.Tensor:
        """The forward itself, always eager: ``(batch, time)`` -> ``(batch, num_sources, time)``."""
        cfg = self.config
        batch, length = mixture.shape
        kernel, stride = cfg.kernel, cfg.stride
        frames = self._frames(length)
        left = kernel - stride  # so the first sample lies under as many windows as any other
        right = (frames - 1) * stride + kernel - length - left
        wav = F.pad(mixture, (left, right)).view(batch, 1, 1, -1)

        with _no_autocast(wav.device.type):  # the waveform ends stay in the weights' precision
            enc = self.encoder(wav)  # E: (batch, basis, 1, T')
        cl = self.channels_last if self.channels_last is not None else enc.device.type == "cpu"
        if cl:
            enc = enc.contiguous(memory_format=torch.channels_last)
        e = self.in_proj(self.in_norm(enc))  # (batch, B, 1, T')
        coarse = torch.arange(frames // 2**cfg.depth, device=enc.device, dtype=torch.float32)
        pe = sinusoidal_encoding(coarse.unsqueeze(1), cfg.channels).to(enc.dtype)  # d: (T_S, N)

        x = self.block(e, pe)
        for _ in range(cfg.unfolds - 1):
            x = self.block(self._summed(e, x), pe)

        masks = self.mask(x).view(batch, cfg.num_sources, -1, 1, frames)  # M_i
        masked = (enc.unsqueeze(1) * masks).reshape(batch * cfg.num_sources, -1, frames)  # eq. 2
        with _no_autocast(wav.device.type):
            out = self.decoder(masked.to(enc.dtype))  # (batch * C, 1, padded length)
        return out.view(batch, cfg.num_sources, -1)[..., left:left + length]


def _forget_graphs_after_load(module: nn.Module, incompatible_keys) -> None:
    forget_graphs(module)


@register("tdanet-large", TDANetLargeConfig)
class TDANetLarge(TDANet):
    """TDANet Large: the same network with a 2 ms / 0.5 ms encoder (config defaults)."""

    def __init__(self, config: TDANetLargeConfig | None = None):
        super().__init__(config if config is not None else TDANetLargeConfig())
