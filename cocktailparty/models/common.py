"""Layers and sequence helpers shared by several architectures.

- normalisations (:class:`GlobalLayerNorm`, :class:`ChannelLayerNorm`, :func:`make_norm`) and
  mask nonlinearities (:func:`mask_activation`), by their papers' names;
- :func:`segment` / :func:`overlap_add`: cutting a frame sequence into half-overlapping
  chunks and putting it back, as DPRNN's dual path and Tune-In's GALR blocks do;
- :func:`sinusoidal_encoding`: the Transformer's positional code (TDANet, GALR).

Everything here is written so that ``torch.jit.trace`` keeps sizes symbolic: an ONNX export
traced at one length must run at any other (see :mod:`cocktailparty.inference.export`).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

NORMS = ("gLN", "cLN")
MASK_ACTIVATIONS = ("sigmoid", "relu", "none")


# --- normalisation and mask nonlinearity --------------------------------------------------

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


def make_norm(kind: str, channels: int) -> nn.Module:
    """``gLN`` (over channels and time, per utterance) or ``cLN`` (over channels per frame).

    ``cLN`` here is the channel-wise layer norm; Conv-TasNet's causal *cumulative* LN is not
    offered because the causal setting is not implemented.
    """
    if kind == "gLN":
        return GlobalLayerNorm(channels)
    if kind == "cLN":
        return ChannelLayerNorm(channels, eps=1e-8)
    raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {kind!r}")


def mask_activation(kind: str) -> nn.Module:
    """The nonlinearity that turns a mask head's output into masks: ``sigmoid`` (Conv-TasNet),
    ``relu``, or ``none`` (DPRNN's gated output is already the mask)."""
    if kind == "sigmoid":
        return nn.Sigmoid()
    if kind == "relu":
        return nn.ReLU()
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"mask_activation must be one of {', '.join(MASK_ACTIVATIONS)}, got {kind!r}")


# --- traceable shapes ---------------------------------------------------------------------

def ones_following(x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Ones of ``x``'s shape, computed from ``x``'s values (1 whatever they are, NaN included).

    ``torch.ones_like(x)`` or ``torch.arange(x.shape[0])`` depend on ``x``'s shape only, and
    the TorchScript ONNX exporter folds such subgraphs into constants of the traced shape
    when its shape inference loses track of a size (as it does through :func:`segment`):
    the graph then fails at any other length. An op that reads the values cannot be folded.
    """
    return torch.where(torch.isnan(x), 1.0, 1.0).to(dtype or x.dtype)


# --- half-overlapping chunks --------------------------------------------------------------

def _on(axis_from_end: int, index: slice) -> tuple:
    """An indexing tuple that applies ``index`` to the axis ``axis_from_end`` places before
    the last (0: the last axis) and leaves every other axis whole."""
    return (Ellipsis, index) + (slice(None),) * axis_from_end


def segment(x: torch.Tensor, size: int, dim: int = -1, edges: bool = True) -> torch.Tensor:
    """Cut axis ``dim`` of ``x`` (``frames`` long) into half-overlapping chunks of ``size``:
    that axis becomes two, ``(chunks, size)``; e.g. ``(batch, channels, frames)`` with
    ``dim=-1`` gives ``(batch, channels, chunks, size)`` and ``(batch, frames, D)`` with
    ``dim=1`` gives ``(batch, chunks, size, D)``.

    Two paddings, one per model family:

    - ``edges=True`` (DPRNN): one hop of zeros on each side, so that every frame lies in
      exactly two chunks, and on the right up to a whole number of hops.
    - ``edges=False`` (GALR): only the right end is padded, to a whole number of hops and
      to at least one chunk, so the first and last hop of frames lie in one chunk instead of
      two. That saves ``2 * size`` positions per block, 3% of Tune-In's cost at 1 s with
      ``size=256``: its Table 1 budget (28.4 GFLOPs, a third of DPRNN's) has no room for them.

    Built from pads and reshapes, with size arithmetic that stays symbolic under
    ``torch.jit.trace`` (no ``unfold`` with a Python loop or data-dependent sizes), so it
    exports.
    """
    if size < 2 or size % 2:
        raise ValueError(f"segment size must be even (segments overlap by half), got {size}")
    dim = dim % x.dim()
    after = x.dim() - 1 - dim  # axes after the cut one
    hop = size // 2
    frames = x.shape[dim]
    if edges:
        left, right = hop, hop + (-frames) % hop
    else:
        padded = frames + (-frames) % hop
        # Inputs shorter than a chunk get one: max(need, 0) written as arithmetic, which stays
        # symbolic under torch.jit.trace (sizes are tensors there) as well as for plain ints.
        need = size - padded
        left, right = 0, padded - frames + (need + abs(need)) // 2
    # F.pad lists (left, right) pairs from the last axis backwards.
    halves = F.pad(x, (0, 0) * after + (left, right)).unflatten(dim, (-1, hop))  # (..., chunks + 1, hop, ...)
    return torch.cat([halves[_on(after + 1, slice(None, -1))], halves[_on(after + 1, slice(1, None))]], dim=dim + 1)


def overlap_add(chunks: torch.Tensor, frames: int, dim: int = -1, edges: bool = True) -> torch.Tensor:
    """Inverse of :func:`segment` with the same ``edges``: the chunk axis ``dim - 1`` and the
    position axis ``dim`` of ``chunks`` become one axis of ``frames``; e.g. ``(batch, channels,
    chunks, size)`` with ``dim=-1`` gives ``(batch, channels, frames)`` and ``(..., chunks,
    size, D)`` with ``dim=-2`` gives ``(..., frames, D)``.

    - ``edges=True`` (DPRNN): each frame is the *sum* of its two chunk positions.
    - ``edges=False`` (GALR): each frame is the *mean* of its (one or two) positions, so
      frames at the ends, which lie in one chunk only, are not at half scale. Without
      gradients the halves accumulate in place into one buffer (a single output-sized
      tensor alive); with them, and in the ONNX export, every op is out of place.
    """
    after = chunks.dim() - 1 - dim % chunks.dim()  # axes after the position axis
    hop = chunks.shape[-1 - after] // 2
    first, second = chunks[_on(after, slice(None, hop))], chunks[_on(after, slice(hop, None))]
    # Zero halves appended after (before) the chunk axis: half j of the output is the first
    # half of chunk j plus the second half of chunk j - 1.
    append, prepend = (0, 0) * (after + 1) + (0, 1), (0, 0) * (after + 1) + (1, 0)
    # The chunk and position axes, counted from the end, merged into one.
    merge = (-2 - after, -1 - after)
    if edges:
        halves = F.pad(first, append) + F.pad(second, prepend)
        return halves.flatten(*merge).narrow(merge[0] + 1, hop, frames)
    if torch.is_grad_enabled():
        # Out of place, with every shape following the input's (this is also the path the
        # ONNX export traces: the in-place one below builds a shape out of traced sizes).
        # Each frame is the sum of its (one or two) halves over their count, both padded
        # with zeros to S + 1 halves; dividing by 1 or 2 is exact, as is * 0.5 below.
        halves = F.pad(first, append) + F.pad(second, prepend)
        ones = ones_following(chunks[(Ellipsis, slice(None, 1)) + (slice(None, 1),) * after])  # (..., S, 1, 1...)
        count = F.pad(ones, append) + F.pad(ones, prepend)
        return (halves / count).flatten(*merge)[_on(after, slice(None, frames))]
    cut = chunks.dim() - 1 - after  # the position axis, from the front
    shape = (*chunks.shape[:cut - 1], chunks.shape[cut - 1] + 1, hop, *chunks.shape[cut + 1:])
    # Accumulating in place into one buffer keeps a single output-sized tensor alive.
    halves = chunks.new_zeros(shape)  # (..., S + 1, hop, ...)
    halves[_on(after + 1, slice(None, -1))] += first
    halves[_on(after + 1, slice(1, None))] += second
    halves[_on(after + 1, slice(1, -1))] *= 0.5  # inner halves lie in two chunks, the end ones in one
    return halves.flatten(*merge).narrow(merge[0] + 1, 0, frames)


# --- positions ----------------------------------------------------------------------------

def positions(like: torch.Tensor) -> torch.Tensor:
    """``0, 1, ..., length - 1`` as float32 ``(length, 1)`` for ``like`` ``(length, ...)``,
    counted off ``like`` (a cumulative sum of ones, exact in float32 up to 2**24) rather
    than from its length as a number, so that an ONNX export traced at one length keeps
    following the input's."""
    return ones_following(like.flatten(1)[:, :1], torch.float32).cumsum(0) - 1


def sinusoidal_encoding(position: torch.Tensor, dim: int) -> torch.Tensor:
    """The Transformer's positional encoding, for any length (no table to outgrow):
    ``position`` float32 ``(length, 1)`` -> float32 ``(length, dim)``, interleaved: even
    channels carry sines, odd ones cosines, of frequencies ``1 / 10000^(2i / dim)``.

    ``position`` is ``torch.arange(length)[:, None]`` or, for a traced length,
    :func:`positions`; both are exact integers, so both give the same code.
    """
    rate = torch.exp(torch.arange(0, dim, 2, device=position.device, dtype=torch.float32)
                     * (-math.log(10000.0) / dim))
    angle = position * rate
    return torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(-2)[:, :dim]
