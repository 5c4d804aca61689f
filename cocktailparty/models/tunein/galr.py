"""GALR: globally attentive, locally recurrent blocks (Lam et al., SLT 2021), the building
block of every space in Tune-In (Wang et al., AAAI 2021, "GALR Block" section).

The encoder's frame sequence ``(D, I)`` is cut into half-overlapping segments of ``K``
frames, ``(D, S, K)`` (:func:`cocktailparty.models.common.segment` with ``edges=False``: no
extra hop at the ends, see there). Each block then runs

- a locally recurrent layer inside every segment::

      L_s = LN(Lin(BiLSTM(X_{:,s,:}))) + X_{:,s,:}

- a globally attentive layer across segments: a 1x1 Conv2D maps the ``K`` intra-segment
  positions to ``Q << K`` (so attention runs ``Q`` times instead of ``K`` times), layer norm
  over ``D``, a positional embedding over the segment index, multi-head self-attention over
  the ``S`` segments, and a 1x1 Conv2D back from ``Q`` to ``K``::

      G = LN_D(Conv2D_{K->Q}(L)) + P,   X^ = Attn(G),   X = Conv2D_{Q->K}(X^)

Inside the blocks tensors are kept features-last, ``(batch, S, K, D)``: the LSTM, the
linear maps, the layer norms and the attention all read that layout without a transpose,
and the two 1x1 Conv2Ds over ``K`` are one matrix product each on it.

For Tune-In's speech-stimuli space the self-attention can be replaced by dual attention
(paper Eq. 3-4): keys and values are computed from ``r(Z_j) * G + h(Z_j)`` for each
steering vector ``Z_j``; see :class:`SegmentAttention`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..common import positions, sinusoidal_encoding


# --- layers -------------------------------------------------------------------------------

class LocallyRecurrent(nn.Module):
    """Intra-segment layer: ``L_s = LN(Lin(BiLSTM(X_s))) + X_s`` for every segment ``s``.

    Without gradients the segments go through in ``inference_chunks`` groups (a fixed
    count, so the graph traces the same at any length; the results are identical), each
    group's result written straight into its slice of the output, or, with ``inplace``,
    into the input itself. The LSTM's working memory is about three times its ``2H``-wide
    output, the largest thing a GALR forward holds; in groups it is a fraction of that,
    which keeps inference memory within Table 1's budget (730 MB against DPRNN's 1970).
    Training runs one call: the backward keeps every group's activations anyway, and one
    call is faster on a GPU.

    Input and output ``(batch, S, K, D)``.
    """

    def __init__(self, dim: int, hidden: int, inference_chunks: int = 1):
        super().__init__()
        self.rnn = nn.LSTM(dim, hidden, batch_first=True, bidirectional=True)
        self.proj = nn.Linear(2 * hidden, dim)
        self.norm = nn.LayerNorm(dim)
        self.inference_chunks = max(1, inference_chunks)

    # On CUDA the LSTM runs on a batch of segments padded to a multiple of this (see _layer).
    CUDA_BATCH_MULTIPLE = 8

    def _layer(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, K, D)`` -> ``(N, K, D)``. On CUDA, N is padded with zero segments to a multiple of
        :attr:`CUDA_BATCH_MULTIPLE` for the LSTM and cut back after it: in fp16 and bf16 cuDNN runs
        its tensor-core LSTM kernel only on such batches (H200, torch 2.11, Tune-In's sizes: 2,540
        segments 21.6 ms, 2,544 4.9 ms). The Separator's 80 files of 4 s at 8 kHz make 2,540 a call:
        Tune-In's fp16 pass on them went from 780 to 281 ms, the folder from 395x to 1,082x real time.
        fp32 has no such kernel and pays only the padding's copy."""
        pad = -x.shape[0] % self.CUDA_BATCH_MULTIPLE if x.is_cuda and not torch.jit.is_tracing() else 0
        if pad:
            hidden = self.rnn(F.pad(x, (0, 0, 0, 0, 0, pad)))[0][:-pad]
        else:
            hidden = self.rnn(x)[0]
        return self.norm(self.proj(hidden))

    def forward(self, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        # Shapes via flatten/view_as rather than ints read off x.shape: the ONNX exporter
        # freezes sizes of internal tensors at their traced values.
        flat = x.flatten(0, 1)  # (batch * S, K, D)
        if torch.is_grad_enabled():
            return x + self._layer(flat).view_as(x)
        out = flat if inplace else torch.empty_like(flat)
        # tensor_split always gives inference_chunks parts (some may be empty).
        for part, dest in zip(flat.tensor_split(self.inference_chunks), out.tensor_split(self.inference_chunks)):
            torch.add(part, self._layer(part), out=dest)
        return out.view_as(x)


class SegmentAttention(nn.Module):
    """Multi-head attention across segments, with optional top-down steering (Eq. 3-4).

    Without steering it is the Transformer's self-attention. With steering ``(r, h)``, each
    ``(batch, C, D)``, the queries still come from ``G`` but keys and values come from
    ``r_j * G + h_j`` for every speaker ``j``, giving one output per speaker; ``r = 1``,
    ``h = 0`` gives back self-attention exactly. The ``C`` outputs are averaged unless
    ``keep_streams`` (see :class:`GALRBlock`).

    Input ``G`` ``(batch, Q, S, D)``; output ``(batch, Q, S, D)``, or ``(batch, C, Q, S, D)``
    with ``keep_streams``.
    """

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"feature dimension {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.dropout = dropout
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        # (..., S, D) -> (..., heads, S, D / heads)
        return x.unflatten(-1, (self.heads, -1)).transpose(-3, -2)

    def forward(self, g: torch.Tensor, steer: tuple[torch.Tensor, torch.Tensor] | None = None,
                keep_streams: bool = False) -> torch.Tensor:
        q = self._split(self.query(g))
        if steer is None:
            memory = g
        else:
            scale, shift = steer  # (batch, C, D): r(Z_j), h(Z_j)
            memory = scale[:, :, None, None, :] * g.unsqueeze(1) + shift[:, :, None, None, :]
            q = q.unsqueeze(1).expand(-1, memory.shape[1], -1, -1, -1, -1)
        k, v = self._split(self.key(memory)), self._split(self.value(memory))
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)  # (..., heads, S, D / heads)
        if steer is not None and not keep_streams:
            # The output projection is linear, so averaging before it is the same and C times cheaper.
            y = y.mean(dim=1)
        return self.out(y.transpose(-3, -2).flatten(-2))


class GloballyAttentive(nn.Module):
    """Inter-segment layer (see the module docstring), with residual connections.

    ``X^ = LN(G + Dropout(Attn(G)))`` as in a Transformer encoder layer (its feed-forward
    sublayer is left out: Table 1's 2.3M parameters have no room for six of them), and the
    block output is ``L + LN(Conv2D_{Q->K}(X^))``. The paper's text ends the block at the
    ``Q -> K`` map; without the residual from ``L`` every block would squeeze the
    ``K``-frame detail through ``Q << K`` numbers, so we keep the residual (as in the GALR
    paper's Fig. 1 and its authors' code) at no parameter cost.

    Input ``L`` ``(batch, S, K, D)``; output ``(batch, S, K, D)``, or ``(batch, C, S, K, D)``
    with steering and ``keep_streams``.
    """

    def __init__(self, dim: int, segment_size: int, low_dim: int, heads: int, dropout: float):
        super().__init__()
        # A 1x1 Conv2D whose channels are the K intra-segment positions is a linear map on
        # that axis at every (d, s): K*Q + Q parameters, applied as one matmul on (K, D).
        self.down = nn.Linear(segment_size, low_dim)
        self.norm_in = nn.LayerNorm(dim)
        self.attn = SegmentAttention(dim, heads, dropout)
        self.drop = nn.Dropout(dropout)
        self.norm_attn = nn.LayerNorm(dim)
        self.up = nn.Linear(low_dim, segment_size)
        self.norm_out = nn.LayerNorm(dim)

    def forward(self, l: torch.Tensor, steer: tuple[torch.Tensor, torch.Tensor] | None = None,
                keep_streams: bool = False) -> torch.Tensor:
        g = torch.matmul(self.down.weight, l) + self.down.bias[:, None]  # (batch, S, Q, D)
        # P: a sinusoidal code of the segment index, counted off g (traceable at any S).
        pe = sinusoidal_encoding(positions(g[0]), g.shape[-1]).to(g.dtype)  # (S, D)
        g = self.norm_in(g) + pe[:, None, :]
        g = g.transpose(1, 2)  # (batch, Q, S, D): Q sequences of S segments
        a = self.attn(g, steer, keep_streams)
        if a.dim() == 5:  # one stream per speaker
            g, l = g.unsqueeze(1), l.unsqueeze(1)
        x = self.norm_attn(g + self.drop(a)).transpose(-3, -2)  # (..., S, Q, D)
        y = torch.matmul(self.up.weight, x).add_(self.up.bias[:, None])  # (..., S, K, D)
        # In place where it is safe (neither the matmul nor the layer norm needs its output
        # for backward; without gradients nothing needs L after this): every K-wide
        # temporary avoided is 4 MB per second of audio.
        if a.dim() == 4 and not torch.is_grad_enabled():
            return l.add_(self.norm_out(y))
        return self.norm_out(y).add_(l)


class GALRBlock(nn.Module):
    """One GALR block: locally recurrent layer, then globally attentive layer.

    Input ``(batch, S, K, D)``; output the same, or ``(batch, C, S, K, D)`` when steered
    with ``keep_streams`` (one stream per steering vector, for Tune-In's last block).
    Without gradients and with ``inplace``, the output may reuse (overwrite) the input's
    memory: for callers that do not need the input afterwards.
    """

    def __init__(self, dim: int, hidden: int, segment_size: int, low_dim: int, heads: int, dropout: float,
                 inference_chunks: int = 1):
        super().__init__()
        self.local = LocallyRecurrent(dim, hidden, inference_chunks)
        self.glob = GloballyAttentive(dim, segment_size, low_dim, heads, dropout)

    def forward(self, x: torch.Tensor, steer: tuple[torch.Tensor, torch.Tensor] | None = None,
                keep_streams: bool = False, inplace: bool = False) -> torch.Tensor:
        return self.glob(self.local(x, inplace), steer, keep_streams)
