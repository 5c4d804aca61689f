"""Conv-TasNet (Luo & Mesgarani, "Conv-TasNet: Surpassing ideal time-frequency magnitude
masking for speech separation", IEEE/ACM TASLP 27(8), 2019).

A learned encoder turns the waveform into a non-negative representation, a temporal
convolutional network (TCN) of stacked dilated depthwise-separable 1-D conv blocks estimates
one mask per source on it, and a learned decoder turns each masked representation back into
a waveform. The defaults are the paper's best non-causal setting (Table II/III):
N=512, L=16, B=128, H=512, Sc=128, P=3, X=8, R=3, gLN, sigmoid masks.

The encoder/decoder pair is TasNet's (:mod:`.tasnet`), shared with DPRNN and Tune-In.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .common import make_norm, mask_activation
from .registry import register
from .tasnet import MaskingSeparator, WaveformDecoder, WaveformEncoder


@dataclass
class ConvTasNetConfig:
    """Conv-TasNet hyperparameters, named as in the paper's Table I."""

    sample_rate: int = 8000
    num_sources: int = 2
    num_filters: int = 512  # N: encoder basis size
    kernel_size: int = 16  # L: encoder window (samples)
    stride: int = 8  # 50% window overlap, as in the paper
    bottleneck: int = 128  # B: channels of the residual path
    hidden: int = 512  # H: channels inside each conv block
    skip: int = 128  # Sc: channels of the skip-connection path
    conv_kernel: int = 3  # P: depthwise kernel size
    num_layers: int = 8  # X: blocks per repeat, dilations 1, 2, ..., 2**(X-1)
    num_repeats: int = 3  # R
    norm: str = "gLN"
    mask_activation: str = "sigmoid"


class ConvBlock(nn.Module):
    """One 1-D conv block (paper Fig. 1C): 1x1 conv B->H, PReLU, norm, dilated depthwise
    conv, PReLU, norm, then a 1x1 residual conv H->B and a 1x1 skip conv H->Sc.

    The last block of the network has no residual conv: its residual output would be thrown
    away, so those weights would never train (the paper's 5.05M count includes them).

    Input ``(batch, B, frames)``; returns ``(residual or None, skip)`` with
    ``(batch, B, frames)`` and ``(batch, Sc, frames)``.
    """

    def __init__(self, cfg: ConvTasNetConfig, dilation: int, residual: bool = True):
        super().__init__()
        pad = (cfg.conv_kernel - 1) * dilation
        # Non-causal: the receptive field is centred on the frame.
        self.pad = (pad // 2, pad - pad // 2)
        self.expand = nn.Conv1d(cfg.bottleneck, cfg.hidden, 1)
        self.act1 = nn.PReLU()
        self.norm1 = make_norm(cfg.norm, cfg.hidden)
        self.depthwise = nn.Conv1d(cfg.hidden, cfg.hidden, cfg.conv_kernel, dilation=dilation, groups=cfg.hidden)
        self.act2 = nn.PReLU()
        self.norm2 = make_norm(cfg.norm, cfg.hidden)
        self.residual = nn.Conv1d(cfg.hidden, cfg.bottleneck, 1) if residual else None
        self.skip = nn.Conv1d(cfg.hidden, cfg.skip, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        y = self.norm1(self.act1(self.expand(x)))
        y = self.norm2(self.act2(self.depthwise(F.pad(y, self.pad))))
        residual = None if self.residual is None else x + self.residual(y)
        return residual, self.skip(y)


@register("convtasnet", ConvTasNetConfig)
class ConvTasNet(MaskingSeparator):
    """Conv-TasNet: encoder -> TCN mask estimator -> decoder.

    Input: mixture ``(batch, time)`` at ``config.sample_rate``, any length.
    Output: separated sources ``(batch, num_sources, time)``.
    """

    def __init__(self, config: ConvTasNetConfig):
        super().__init__()
        self.config = cfg = config
        if cfg.num_sources < 1:
            raise ValueError(f"num_sources must be >= 1, got {cfg.num_sources}")
        self.encoder = WaveformEncoder(cfg.num_filters, cfg.kernel_size, cfg.stride)
        self.decoder = WaveformDecoder(cfg.num_filters, cfg.kernel_size, cfg.stride)
        self.norm = make_norm(cfg.norm, cfg.num_filters)
        self.bottleneck = nn.Conv1d(cfg.num_filters, cfg.bottleneck, 1)
        depth = cfg.num_layers * cfg.num_repeats
        self.blocks = nn.ModuleList(
            ConvBlock(cfg, dilation=2 ** (i % cfg.num_layers), residual=i < depth - 1) for i in range(depth)
        )
        self.mask_head = nn.Sequential(nn.PReLU(), nn.Conv1d(cfg.skip, cfg.num_sources * cfg.num_filters, 1))
        self.mask_act = mask_activation(cfg.mask_activation)

    def estimate_masks(self, feats: torch.Tensor) -> torch.Tensor:
        """The TCN: ``(batch, N, frames)`` -> masks ``(batch, C, N, frames)``."""
        x = self.bottleneck(self.norm(feats))
        skips = 0
        for block in self.blocks:
            residual, skip = block(x)
            skips = skips + skip
            if residual is not None:
                x = residual
        masks = self.mask_act(self.mask_head(skips))  # (batch, C*N, frames)
        return masks.unflatten(1, (self.config.num_sources, self.config.num_filters))
