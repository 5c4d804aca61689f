"""DPRNN-TasNet (Luo, Chen & Yoshioka, "Dual-path RNN: efficient long sequence modeling for
time-domain single-channel speech separation", ICASSP 2020).

TasNet's learned encoder/decoder (shared with Conv-TasNet) around a dual-path RNN mask
estimator: the frame sequence is cut into half-overlapping chunks, and each block runs a
BiLSTM along every chunk (intra-chunk, local) and then across chunks at each position
(inter-chunk, global). With the chunk size near sqrt(2 * frames), the paper's rule, neither
RNN runs over more than a few hundred steps even at sample-level frame rates.

The defaults are the paper's 2.6M model on WSJ0-2mix at 8 kHz: 64 filters, window 2
samples (stride 1), bottleneck 64, 128 hidden units per direction, chunk 250 (hop 125),
6 blocks, gLN. The mask head follows the authors' released TasNet-DPRNN code: a gated
output layer, tanh(W x) * sigmoid(V x), whose value is the mask (no further nonlinearity).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .common import make_norm, mask_activation, overlap_add, segment
from .registry import register
from .tasnet import MaskingSeparator, WaveformDecoder, WaveformEncoder


@dataclass
class DPRNNConfig:
    """DPRNN-TasNet hyperparameters (paper Section 3.2)."""

    sample_rate: int = 8000
    num_sources: int = 2
    num_filters: int = 64  # N: encoder basis size
    kernel_size: int = 2  # L: encoder window (samples)
    stride: int = 1  # 50% window overlap
    bottleneck: int = 64  # feature dimension inside the dual-path blocks
    hidden: int = 128  # LSTM units per direction
    chunk_size: int = 250  # K; chunks overlap by 50% (hop K/2), as in the paper
    num_blocks: int = 6
    norm: str = "gLN"  # "cLN" (channel-wise, per frame) for the causal variant
    bidirectional: bool = True  # inter-chunk LSTM; the intra-chunk one is always bidirectional
    mask_activation: str = "none"  # applied after the gated output; "none" = released code


class DualPathBlock(nn.Module):
    """One DPRNN block (paper Fig. 1B, eqs. 1-4): intra-chunk BiLSTM -> linear -> norm ->
    residual, then inter-chunk LSTM -> linear -> norm -> residual.

    Input and output ``(batch, channels, chunks, chunk_size)``.
    """

    def __init__(self, channels: int, hidden: int, norm: str, bidirectional: bool):
        super().__init__()
        self.intra_rnn = nn.LSTM(channels, hidden, batch_first=True, bidirectional=True)
        self.intra_proj = nn.Linear(2 * hidden, channels)
        self.intra_norm = make_norm(norm, channels)
        self.inter_rnn = nn.LSTM(channels, hidden, batch_first=True, bidirectional=bidirectional)
        self.inter_proj = nn.Linear((2 if bidirectional else 1) * hidden, channels)
        self.inter_norm = make_norm(norm, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Shapes come from flatten/reshape_as, not from Python ints read off x.shape: the
        # ONNX exporter freezes sizes of internal tensors at their traced values, and an
        # export must run at any batch and length.
        # Intra-chunk: batch * chunks sequences of chunk_size steps.
        rows = x.permute(0, 2, 3, 1)  # (batch, chunks, size, channels)
        y = self.intra_proj(self.intra_rnn(rows.flatten(0, 1))[0])
        x = x + self.intra_norm(y.reshape_as(rows).permute(0, 3, 1, 2))
        # Inter-chunk: batch * chunk_size sequences of `chunks` steps.
        cols = x.permute(0, 3, 2, 1)  # (batch, size, chunks, channels)
        y = self.inter_proj(self.inter_rnn(cols.flatten(0, 1))[0])
        return x + self.inter_norm(y.reshape_as(cols).permute(0, 3, 2, 1))


@register("dprnn", DPRNNConfig)
class DPRNN(MaskingSeparator):
    """DPRNN-TasNet: encoder -> norm, bottleneck -> dual-path blocks -> masks -> decoder.

    Input: mixture ``(batch, time)`` at ``config.sample_rate``, any length.
    Output: separated sources ``(batch, num_sources, time)``.
    """

    def __init__(self, config: DPRNNConfig):
        super().__init__()
        self.config = cfg = config
        if cfg.num_sources < 1:
            raise ValueError(f"num_sources must be >= 1, got {cfg.num_sources}")
        if cfg.chunk_size < 2 or cfg.chunk_size % 2:
            raise ValueError(f"chunk_size must be even (chunks overlap by half), got {cfg.chunk_size}")
        self.encoder = WaveformEncoder(cfg.num_filters, cfg.kernel_size, cfg.stride)
        self.decoder = WaveformDecoder(cfg.num_filters, cfg.kernel_size, cfg.stride)
        self.norm = make_norm(cfg.norm, cfg.num_filters)
        # Bias-free, as in the authors' released code.
        self.bottleneck = nn.Conv1d(cfg.num_filters, cfg.bottleneck, 1, bias=False)
        self.blocks = nn.ModuleList(
            DualPathBlock(cfg.bottleneck, cfg.hidden, cfg.norm, cfg.bidirectional) for _ in range(cfg.num_blocks)
        )
        # A 1x1 2-D conv gives each source its own copy of the features.
        self.head = nn.Sequential(nn.PReLU(), nn.Conv2d(cfg.bottleneck, cfg.num_sources * cfg.bottleneck, 1))
        # Gated output (shared by all sources): maps the bottleneck back to N mask channels.
        self.out_value = nn.Conv1d(cfg.bottleneck, cfg.num_filters, 1)
        self.out_gate = nn.Conv1d(cfg.bottleneck, cfg.num_filters, 1)
        self.mask_act = mask_activation(cfg.mask_activation)

    def estimate_masks(self, feats: torch.Tensor) -> torch.Tensor:
        """The dual-path RNN: ``(batch, N, frames)`` -> masks ``(batch, C, N, frames)``."""
        cfg = self.config
        frames = feats.shape[-1]
        # Chunks padded by a hop at both ends (edges=True): every frame lies in two chunks.
        x = segment(self.bottleneck(self.norm(feats)), cfg.chunk_size)  # (batch, B, chunks, K)
        for block in self.blocks:
            x = block(x)
        x = self.head(x)  # (batch, C*B, chunks, K)
        # (batch * C, B, chunks, K); no size read off x, so that an ONNX export stays dynamic.
        x = overlap_add(x.unflatten(1, (cfg.num_sources, cfg.bottleneck)).flatten(0, 1), frames)
        masks = self.mask_act(torch.tanh(self.out_value(x)) * torch.sigmoid(self.out_gate(x)))
        return masks.unflatten(0, (-1, cfg.num_sources))  # (batch, C, N, frames)
