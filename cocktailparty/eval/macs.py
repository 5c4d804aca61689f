"""Counting parameters and multiply-accumulates (MACs) of one forward pass, the way the
papers' cost tables do (the definitions: :mod:`cocktailparty.eval.profile`). torch's
``FlopCounterMode`` counts FLOPs = 2 x MACs; :data:`FLOP_FORMULAS` adds the kernels it does
not know (LSTM layers, fused attention)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .profile_inputs import example_input

aten = torch.ops.aten


# --- MAC formulas for the kernels FlopCounterMode does not know ---------------------------
# Shapes arrive in place of tensors (FlopCounterMode's shape wrapper); each formula returns
# FLOPs = 2 x MACs so that it adds up with torch's own formulas.


def _prod(shape) -> int:
    return math.prod(int(s) for s in shape)


def _tokens(input_shape) -> int:
    """Time steps x batch seen by each RNN layer: ``(T, B, I)``, ``(B, T, I)`` or packed ``(N, I)``."""
    return _prod(input_shape[:-1])


def _rnn_layer_flop(input_shape, w_ih_shape, w_hh_shape, *args, out_shape=None, **kwargs) -> int:
    # mkldnn_rnn_layer: one layer, one direction; biases (weight2/3) are adds.
    return 2 * _tokens(input_shape) * (_prod(w_ih_shape) + _prod(w_hh_shape))


def _rnn_layer_backward_flop(input_shape, w_ih_shape, w_hh_shape, *args, out_shape=None, **kwargs) -> int:
    # Every product of the forward has two in the backward: gradient to its input, to its weight.
    return 2 * _rnn_layer_flop(input_shape, w_ih_shape, w_hh_shape)


def _rnn_stack_flop(input_shape, weight_shapes, *args, out_shape=None, **kwargs) -> int:
    # cuDNN/MIOpen get all layers' weights as one list: each matrix (w_ih, w_hh, and w_hr with
    # a projection) multiplies one vector per token; 1-D entries are biases.
    return 2 * _tokens(input_shape) * sum(_prod(w) for w in weight_shapes if len(w) == 2)


def _rnn_stack_backward_flop(input_shape, weight_shapes, *args, out_shape=None, **kwargs) -> int:
    return 2 * _rnn_stack_flop(input_shape, weight_shapes)


def _attention_macs(q_shape, k_shape, v_shape) -> int:
    """``(..., L_q, d)``, ``(..., L_k, d)``, ``(..., L_k, d_v)``: ``Q K^T`` then ``A V``.

    Leading dimensions are those of the query (grouped-query attention shares key heads).
    """
    lead = _prod(q_shape[:-2])
    lq, d = int(q_shape[-2]), int(q_shape[-1])
    lk, dv = int(k_shape[-2]), int(v_shape[-1])
    return lead * lq * lk * (d + dv)


def _sdpa_flop(q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * _attention_macs(q_shape, k_shape, v_shape)


def _sdpa_backward_flop(grad_shape, q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs) -> int:
    # Same five products as torch's formula for the CUDA kernels: scores recomputed, then the
    # gradients to the scores, V, Q and K.
    lead = _prod(q_shape[:-2])
    lq, d = int(q_shape[-2]), int(q_shape[-1])
    lk, dv = int(k_shape[-2]), int(v_shape[-1])
    return 2 * lead * lq * lk * (3 * d + 2 * dv)


def _native_mha_flop(q_shape, k_shape, v_shape, embed_dim, num_heads, qkv_w_shape, qkv_b_shape,
                     proj_w_shape, *args, out_shape=None, **kwargs) -> int:
    # nn.MultiheadAttention's eval-mode fast path, (batch, L, E) inputs: input projections,
    # attention over all heads together (heads x head_dim = E), output projection.
    batch = _prod(q_shape[:-2])
    lq, lk, e = int(q_shape[-2]), int(k_shape[-2]), int(embed_dim)
    projections = batch * (lq + 2 * lk) * e * e + batch * lq * _prod(proj_w_shape)
    return 2 * (projections + batch * lq * lk * 2 * e)


def _encoder_layer_flop(src_shape, embed_dim, num_heads, qkv_w_shape, qkv_b_shape, proj_w_shape,
                        proj_b_shape, use_gelu, norm_first, eps, nw1, nb1, nw2, nb2,
                        ffn_w1_shape, ffn_b1_shape, ffn_w2_shape, *args, out_shape=None, **kwargs) -> int:
    # nn.TransformerEncoderLayer's eval-mode fast path: self-attention block plus the FFN.
    batch = _prod(src_shape[:-2])
    length, e = int(src_shape[-2]), int(embed_dim)
    matrices = _prod(qkv_w_shape) + _prod(proj_w_shape) + _prod(ffn_w1_shape) + _prod(ffn_w2_shape)
    return 2 * (batch * length * matrices + batch * length * length * 2 * e)


def _mv_flop(mat_shape, vec_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * _prod(mat_shape)


def _addmv_flop(self_shape, mat_shape, vec_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * _prod(mat_shape)


def _dot_flop(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * _prod(a_shape)


def _addbmm_flop(self_shape, a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    b, m, k = a_shape
    return 2 * int(b) * int(m) * int(k) * int(b_shape[-1])


def _formulas() -> dict[Any, Callable[..., int]]:
    table = {
        # LSTM on CPU (oneDNN), forward and training backward.
        "mkldnn_rnn_layer": _rnn_layer_flop,
        "mkldnn_rnn_layer_backward": _rnn_layer_backward_flop,
        # LSTM/GRU/RNN on CUDA and ROCm. (_thnn_fused_lstm_cell/_gru_cell are deliberately
        # absent: they only combine gates whose products were already counted as matmuls.)
        "_cudnn_rnn": _rnn_stack_flop,
        "_cudnn_rnn_backward": _rnn_stack_backward_flop,
        "miopen_rnn": _rnn_stack_flop,
        "miopen_rnn_backward": _rnn_stack_backward_flop,
        # Fused attention kernels torch has no formula for (it has the CUDA ones).
        "_scaled_dot_product_flash_attention_for_cpu": _sdpa_flop,
        "_scaled_dot_product_flash_attention_for_cpu_backward": _sdpa_backward_flop,
        "_scaled_dot_product_fused_attention_overrideable": _sdpa_flop,
        "_scaled_dot_product_fused_attention_overrideable_backward": _sdpa_backward_flop,
        "_native_multi_head_attention": _native_mha_flop,
        "_transformer_encoder_layer_fwd": _encoder_layer_flop,
        # Matrix-vector products (a Linear applied to one unbatched vector).
        "mv": _mv_flop,
        "addmv": _addmv_flop,
        "dot": _dot_flop,
        "addbmm": _addbmm_flop,
    }
    known = torch.utils.flop_counter.flop_registry
    found = {}
    for name, formula in table.items():
        op = getattr(aten, name, None)  # absent in some builds
        if op is not None and op not in known:  # never shadow a formula torch grew meanwhile
            found[op] = formula
    return found


FLOP_FORMULAS: dict[Any, Callable[..., int]] = _formulas()


@dataclasses.dataclass
class MacCount:
    """MACs of one forward: ``total``, per module (dotted names below the model, ``""`` is the
    whole model) and per operator (``"aten.convolution"``, ``"aten.mkldnn_rnn_layer"``, ...)."""

    total: int
    by_module: dict[str, int]
    by_op: dict[str, int]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements; a tensor shared by several modules counts once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def mac_breakdown(model: nn.Module, seconds: float = 1.0, sample_rate: int | None = None, batch: int = 1,
                  inputs: torch.Tensor | tuple | None = None, depth: int = 2) -> MacCount:
    """Count the MACs of ``model(inputs)`` (default: a ``(batch, seconds * rate)`` mixture).

    Runs one forward in eval mode without gradients on the model's own device. ``by_module``
    keeps names up to ``depth`` dots below the model; a module called several times (shared
    weights) accumulates all its calls.
    """
    if inputs is None:
        inputs = example_input(model, seconds, sample_rate, batch)
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS) as counter:
            model(*args)
    finally:
        model.train(was_training)
    counts = counter.get_flop_counts()
    root = type(model).__name__
    tracked = {name[len(root) + 1:]: _halve(sum(ops.values()), name) for name, ops in counts.items()
               if name == root or name.startswith(root + ".")}
    by_module = _by_depth(tracked, depth)
    by_op = {str(op): _halve(flops, str(op)) for op, flops in counts.get("Global", {}).items()}
    total = sum(by_op.values())
    return MacCount(total=total, by_module=by_module, by_op=by_op)


def _by_depth(tracked: dict[str, int], depth: int) -> dict[str, int]:
    """Totals for every module name at most ``depth`` levels below the model.

    Only modules that were called are tracked, so a container such as an ``nn.ModuleList``
    (indexed, never called) gets the sum of its outermost called descendants.
    """
    def level(name: str) -> int:
        return 0 if not name else name.count(".") + 1

    def ancestors(name: str) -> list[str]:
        parts = name.split(".") if name else []
        return [".".join(parts[:i]) for i in range(len(parts))]

    names = {a for n in tracked for a in ancestors(n) + [n] if level(a) <= depth}
    totals = {}
    for prefix in names:
        if prefix in tracked:
            totals[prefix] = tracked[prefix]
            continue
        below = [n for n in tracked if prefix == "" or n.startswith(prefix + ".")]
        outermost = [n for n in below if not any(a in tracked and level(a) > level(prefix) for a in ancestors(n))]
        totals[prefix] = sum(tracked[n] for n in outermost)
    return dict(sorted(totals.items()))


def count_macs(model: nn.Module, seconds: float = 1.0, sample_rate: int | None = None, batch: int = 1,
               inputs: torch.Tensor | tuple | None = None) -> int:
    """MACs of one forward on a ``seconds``-long input (see the module docstring for what counts)."""
    return mac_breakdown(model, seconds, sample_rate, batch, inputs, depth=0).total


def _halve(flops: int, what: str) -> int:
    if flops % 2:
        raise AssertionError(f"odd FLOP count {flops} for {what}: a formula is not in 2 x MAC units")
    return flops // 2
