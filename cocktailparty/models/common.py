"""Parts shared by several architectures."""

from __future__ import annotations

import torch
from torch import nn


class GlobalLayerNorm(nn.GroupNorm):
    """gLN (Conv-TasNet): normalise over channels and time together, per utterance.

    A GroupNorm with one group computes exactly that, with a per-channel gain and bias, and
    runs as one fused kernel. Input ``(batch, channels, *)``.
    """

    def __init__(self, channels: int, eps: float = 1e-8):
        super().__init__(1, channels, eps=eps)


class ChannelLayerNorm(nn.LayerNorm):
    """cLN: normalise over channels at each frame. Input ``(batch, channels, time)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, -1)).transpose(1, -1)
