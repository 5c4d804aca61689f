"""The TasNet front and back end (Luo & Mesgarani, 2018-2019) and the encoder -> masker ->
decoder pipeline that Conv-TasNet, DPRNN and Tune-In share.

A learned encoder turns the waveform into a non-negative frame sequence ``(batch, N,
frames)``; a mask estimator (the part each paper is about) gives one mask per source on
it; the masked sequences go through a learned decoder back to waveforms. A model subclasses
:class:`MaskingSeparator`, builds ``encoder``, ``decoder`` and its estimator, and writes
:meth:`MaskingSeparator.estimate_masks`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class WaveformEncoder(nn.Module):
    """TasNet's learned analysis basis: frames of ``kernel_size`` samples every ``stride``
    samples, projected on ``num_filters`` filters, then ReLU (a non-negative representation
    that masks can scale).

    The waveform is padded by ``kernel_size - stride`` on both sides, so that every sample
    lies under the same number of windows (edges included), and on the right up to a whole
    number of hops, so that the decoder's output covers the input exactly. That also makes
    inputs shorter than one window work.

    Input ``(batch, time)``; output ``(batch, num_filters, frames)``.
    """

    def __init__(self, num_filters: int, kernel_size: int, stride: int):
        super().__init__()
        if not 0 < stride <= kernel_size:
            raise ValueError(f"stride must be in 1..kernel_size ({kernel_size}), got {stride}")
        self.kernel_size = kernel_size
        self.stride = stride
        # No bias: the basis is a linear transform of the waveform (Conv-TasNet eq. 1).
        self.conv = nn.Conv1d(1, num_filters, kernel_size, stride=stride, bias=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        edge = self.kernel_size - self.stride
        # Size arithmetic on wav.shape stays symbolic under torch.jit.trace, so a trace
        # taken at one length pads correctly at any other.
        rest = (self.kernel_size - 2 * edge - wav.shape[-1]) % self.stride
        padded = F.pad(wav.unsqueeze(1), (edge, edge + rest))
        return F.relu(self.conv(padded))


class WaveformDecoder(nn.Module):
    """TasNet's learned synthesis basis: overlap-add of ``num_filters`` basis signals
    (a transposed convolution), cropped to undo :class:`WaveformEncoder`'s padding.

    Input ``(batch, num_filters, frames)`` and the original length; output ``(batch, time)``.
    """

    def __init__(self, num_filters: int, kernel_size: int, stride: int):
        super().__init__()
        self.edge = kernel_size - stride
        self.deconv = nn.ConvTranspose1d(num_filters, 1, kernel_size, stride=stride, bias=False)

    def forward(self, feats: torch.Tensor, length: int) -> torch.Tensor:
        return self.deconv(feats)[:, 0].narrow(-1, self.edge, length)


def check_waveform(mixture: torch.Tensor) -> None:
    """Refuse anything but a ``(batch, time)`` waveform, in words."""
    if mixture.dim() != 2:
        raise ValueError(f"expected a (batch, time) waveform, got shape {tuple(mixture.shape)}")


class MaskingSeparator(nn.Module):
    """Encoder -> mask estimator -> decoder: ``(batch, time) -> (batch, C, time)``.

    A subclass sets ``self.encoder`` (a :class:`WaveformEncoder`), ``self.decoder`` (a
    :class:`WaveformDecoder`) and ``self.config`` (with ``num_sources``) in its ``__init__``,
    in whatever order it creates its other modules (the creation order decides which random
    numbers initialise which weights, and the attribute names are the checkpoints' keys), and
    implements :meth:`estimate_masks`. A model whose forward takes more than the mixture
    (Tune-In) overrides :meth:`forward` and still ends in :meth:`decode`.
    """

    encoder: WaveformEncoder
    decoder: WaveformDecoder

    def estimate_masks(self, feats: torch.Tensor) -> torch.Tensor:
        """Encoder output ``(batch, N, frames)`` -> masks ``(batch, C, N, frames)``."""
        raise NotImplementedError

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        """``(batch, time)`` -> ``(batch, num_sources, time)``."""
        check_waveform(mixture)
        feats = self.encoder(mixture)  # (batch, N, frames)
        return self.decode(feats, self.estimate_masks(feats), mixture.shape[-1])

    def decode(self, feats: torch.Tensor, masks: torch.Tensor, length: int) -> torch.Tensor:
        """Mask the encoder output ``(batch, N, frames)`` with ``masks`` ``(batch, C, N,
        frames)`` and decode each source: ``(batch, C, length)``.

        Without gradients the masks are multiplied in place (they become the masked
        sequences: one fewer ``(batch, C, N, frames)`` tensor alive), so a caller must not
        need them afterwards; pass them straight in. Not when the product's dtype is not
        theirs (autocast with float32 features: an in-place product would round), nor under
        ``torch.jit.trace``, whose sanity check traces again and must see the same graph.
        """
        if (torch.is_grad_enabled() or torch.jit.is_tracing()
                or torch.promote_types(masks.dtype, feats.dtype) != masks.dtype):
            sources = feats.unsqueeze(1) * masks
        else:
            sources = masks.mul_(feats.unsqueeze(1))
        del masks
        return self.decoder(sources.flatten(0, 1), length).unflatten(0, (-1, self.config.num_sources))
