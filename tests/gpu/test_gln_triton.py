"""gLN with the depthwise conv before it and the activation after it in two Triton kernels, and the LA
layer (cocktailparty/models/gln_triton.py), for CUDA inference: the values of the torch path at any
strides, dtypes and lengths, in the model too."""

from __future__ import annotations

import pytest
import torch

from cocktailparty.core.cuda_graphs import graphs_off
from cocktailparty.models import build_model, gln_triton
from cocktailparty.models import tdanet as td
from tests.helpers import TINY_TDANET


def reference(x: torch.Tensor, weight, bias, eps, activation=None, slope=None) -> torch.Tensor:
    x = x.double()
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    var = (x - mean).square().mean(dim=(1, 2, 3), keepdim=True)
    y = (x - mean) / torch.sqrt(var + eps) * weight.double().view(1, -1, 1, 1) + bias.double().view(1, -1, 1, 1)
    if activation == "prelu":
        y = torch.where(y >= 0, y, y * slope.double().view(1, -1, 1, 1))
    elif activation == "sigmoid":
        y = torch.sigmoid(y)
    return y


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("frames", [1, 63, 1024, 4016])
@pytest.mark.parametrize("activation,slopes", [(None, 0), ("prelu", 1), ("prelu", 24), ("sigmoid", 0)])
def test_the_kernels_compute_gln_and_its_activation(dtype, frames, activation, slopes):
    torch.manual_seed(frames)
    x = (torch.randn(3, 24, 1, frames, device="cuda") * 2 + 0.5).to(dtype)
    weight, bias = torch.randn(24, device="cuda"), torch.randn(24, device="cuda")
    slope = torch.rand(slopes, device="cuda") - 0.5 if slopes else None
    with torch.no_grad():
        got = gln_triton.gln(x, weight, bias, 1e-8, activation, slope)
    assert got is not None, gln_triton.failure
    assert got.dtype == dtype and got.shape == x.shape and got.is_contiguous()
    tolerance = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[dtype]
    expected = reference(x, weight, bias, 1e-8, activation, slope)
    torch.testing.assert_close(got.double(), expected, rtol=tolerance, atol=tolerance * float(expected.abs().max()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("frames", [1, 63, 2048, 4001])
@pytest.mark.parametrize("stride,kernel,bias,activation", [(1, 5, False, "prelu"), (2, 5, False, "prelu"),
                                                           (1, 5, True, None), (2, 3, True, "sigmoid")])
def test_a_depthwise_conv_runs_inside_the_norms_kernels(dtype, frames, stride, kernel, bias, activation):
    torch.manual_seed(frames + stride)
    x = (torch.randn(3, 24, 1, 2 * frames, device="cuda")[..., ::2] * 2 + 0.5).to(dtype)  # strided, as F_i are
    conv = torch.nn.Conv2d(24, 24, (1, kernel), (1, stride), (0, (kernel - 1) // 2), groups=24, bias=bias).cuda()
    weight, norm_bias, slope = torch.randn(24, device="cuda"), torch.randn(24, device="cuda"), torch.rand(24, device="cuda")
    slope = slope if activation == "prelu" else None
    with torch.no_grad():
        got = gln_triton.gln(x, weight, norm_bias, 1e-8, activation, slope,
                             gln_triton.Depthwise(conv.weight, conv.bias, stride))
        expected = reference(conv.double()(x.double()), weight, norm_bias, 1e-8, activation, slope)
    assert got is not None, gln_triton.failure
    assert got.dtype == dtype and got.shape == expected.shape and got.is_contiguous()
    tolerance = {torch.float32: 1e-5, torch.float16: 3e-3}[dtype]
    torch.testing.assert_close(got.double(), expected, rtol=tolerance, atol=tolerance * float(expected.abs().max()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("frames,factors", [(250, (16, 8, 4, 2)), (3, (4, 2)), (1000, (2,))])
def test_the_scales_pool_into_one_sum(dtype, frames, factors):
    torch.manual_seed(frames)
    coarse = torch.randn(3, 24, 1, frames, device="cuda").to(dtype)
    finer = [torch.randn(3, 24, 1, 2 * frames * f, device="cuda")[..., ::2].to(dtype) for f in factors]  # strided
    with torch.no_grad():
        got = gln_triton.pooled_sum(coarse, finer)
    assert got is not None, gln_triton.failure
    expected = coarse.double()
    for f, factor in zip(finer, factors):
        expected = expected + torch.nn.functional.avg_pool2d(f.double(), (1, factor), (1, factor))
    assert got.dtype == dtype and got.shape == coarse.shape and got.is_contiguous()
    tolerance = {torch.float32: 1e-6, torch.float16: 1e-3}[dtype]
    torch.testing.assert_close(got.double(), expected, rtol=tolerance, atol=tolerance * float(expected.abs().max()))


def test_strided_inputs_read_as_they_are_and_a_large_mean_does_not_cancel():
    torch.manual_seed(0)
    weight, bias = torch.randn(16, device="cuda"), torch.randn(16, device="cuda")
    base = torch.randn(2, 16, 1, 2 * 3000 + 1, device="cuda") + 1000.0  # mean >> spread: fp32 sums of squares would cancel
    views = [base[..., ::2], torch.randn(2, 3000, 16, device="cuda").transpose(1, 2).unsqueeze(2)]
    for x in views:
        assert not x.is_contiguous()
        with torch.no_grad():
            got = gln_triton.gln(x, weight, bias, 1e-8)
        # 1e-3: fp32's own step at 1000 (6e-5) times the weights; a variance that cancelled would be off by ~1.
        torch.testing.assert_close(got.double(), reference(x, weight, bias, 1e-8), rtol=1e-3, atol=1e-3)


def test_only_cuda_inference_without_compile_and_of_a_size_that_pays_takes_the_kernels(monkeypatch):
    x = torch.randn(2, 8, 1, 10, device="cuda")
    with torch.no_grad():
        assert not gln_triton.usable(x)  # eager and small: torch's launches cost the host less
        monkeypatch.setattr(gln_triton, "MIN_EAGER_ELEMENTS", x.numel())
        assert gln_triton.usable(x) and not gln_triton.usable(x.cpu()) and not gln_triton.usable(x.double())
        assert not gln_triton.usable(torch.randn(2, 8, 3, 10, device="cuda"))
    assert not gln_triton.usable(x)  # autograd on


def test_a_tdanet_in_fp16_inference_gives_the_torch_paths_output(monkeypatch):
    torch.manual_seed(0)
    model = build_model("tdanet", **dict(TINY_TDANET, sample_rate=8000, attention_qk_norm=True)).cuda().eval()
    x = torch.randn(3, 16000, device="cuda")
    calls = []
    fused = gln_triton.gln
    monkeypatch.setattr(gln_triton, "gln", lambda *args: calls.append((args[4], len(args) > 6 and args[6] is not None,
                                                                       len(args) > 7 and args[7] is not None))
                        or fused(*args))
    monkeypatch.setattr(td.GLN, "GROUP_NORM_MAX_FRAMES", 0)  # no short-input group_norm path
    monkeypatch.setattr(gln_triton, "MIN_EAGER_ELEMENTS", 0)  # the kernels at this size too
    layers = []
    fused_la, fused_pool, pooled = gln_triton.local_attention, gln_triton.pooled_sum, []
    monkeypatch.setattr(gln_triton, "local_attention", lambda *args: layers.append(args[3]) or fused_la(*args))
    monkeypatch.setattr(gln_triton, "pooled_sum", lambda coarse, finer: pooled.append(len(finer))
                        or fused_pool(coarse, finer))
    attention = []
    for name in ("frame_norm", "unit_qk", "add_affine"):
        kernel = getattr(gln_triton, name)
        monkeypatch.setattr(gln_triton, name, lambda *args, name=name, kernel=kernel: attention.append(name)
                            or kernel(*args))
    with torch.inference_mode(), graphs_off(), torch.autocast("cuda", torch.float16, cache_enabled=False):
        got = model(x).float()
        # the down-sampling convs with their norms and PReLU, the FFN's depthwise conv with its norm,
        # the projection's bias with its norm, other norms alone; the LA layers' gate factors, coarse
        # to fine, 2 passes
        assert {("prelu", True, False), (None, True, False), ("prelu", False, True), (None, False, False)} <= set(calls)
        assert layers == [2, 4] * 2
        assert pooled == [2, 2]  # eq. 3: the two finer scales pooled into the coarsest, each pass
        # the attention's input and QK-norm, the residual after each pass, the summation connection
        assert attention == ["frame_norm", "unit_qk", "add_affine", "add_affine", "frame_norm", "unit_qk", "add_affine"]
        monkeypatch.setattr(gln_triton, "AVAILABLE", False)
        expected = model(x).float()
    error = (got - expected).double().square().sum() / expected.double().square().sum()
    assert 10 * torch.log10(1 / error) > 50  # dB: fp16 rounding, not a different function


KEEPS_SIGTERM = """
import os, signal, sys
import torch
from cocktailparty.core.signal_guard import c_handler
signal.signal(signal.SIGTERM, lambda signum, frame: None)
python_handler = c_handler(signal.SIGTERM)
torch.manual_seed(0)
x = torch.randn(2, 16, 1, 300, device="cuda")
if sys.argv[1] == "model":
    from cocktailparty.models import build_model
    from tests.helpers import TINY_TDANET
    model = build_model("tdanet", **dict(TINY_TDANET, sample_rate=8000)).cuda().eval()
    with torch.inference_mode():
        for _ in range(2):  # the second call captures the model's own graph, which takes the kernels
            model(torch.randn(2, 8000, device="cuda"))
    from cocktailparty.core.cuda_graphs import _MODEL_GRAPHS
    assert len(_MODEL_GRAPHS[model].inference.graphs) == 1, "not captured"
elif sys.argv[1] == "separator":
    from cocktailparty.inference.separate import Separator
    from cocktailparty.models import build_model
    from tests.helpers import TINY_TDANET
    model = build_model("tdanet", **dict(TINY_TDANET, sample_rate=8000)).cuda().eval()
    # One clip a call: the second call's shape is captured, and the capture takes the kernels.
    separator = Separator(model, device="cuda", batch_seconds=1.0)
    list(separator.separate_many([(torch.randn(8000).numpy(), 8000)] * 3))
    assert len(separator._cuda.graphs.graphs) == 1, "not captured"
else:
    from cocktailparty.models import gln_triton
    with torch.no_grad():  # the kernels without gln()'s guard
        gln_triton._gln(x, torch.ones(16, device="cuda"), torch.zeros(16, device="cuda"), 1e-8, None, None, None)
torch.cuda.synchronize()
compiled = any(files for _, _, files in os.walk(os.environ["TRITON_CACHE_DIR"]))
from cocktailparty.models import gln_triton
print("compiled" if compiled else "nothing-compiled", "kept" if c_handler(signal.SIGTERM) == python_handler else "replaced",
      "fused" if gln_triton.failure is None else gln_triton.failure)
"""


@pytest.mark.parametrize("caller, expected", [("kernel", "replaced"), ("model", "kept"), ("separator", "kept")])
def test_sigterm_is_kept_through_the_kernels_first_compile(caller, expected, tmp_path):
    """In a fresh process with an empty kernel cache: Triton's first compile replaces SIGTERM's handler
    (so the check means something), and gln() puts it back, under a model or a Separator. And the
    kernels compile in the eager run before a capture, never inside it (loading one would fail the
    capture, and leave the process on torch's ops): the model's and the Separator's graphs are
    captured with them."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, TRITON_CACHE_DIR=str(tmp_path / "triton"))
    done = subprocess.run([sys.executable, "-c", KEEPS_SIGTERM, caller], capture_output=True, text=True, env=env,
                          timeout=240, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-3:] == ["compiled", expected, "fused"], done.stdout[-2000:]


def test_kernels_that_cannot_be_built_leave_the_model_on_torchs_path_with_one_warning(monkeypatch, caplog):
    import logging

    torch.manual_seed(0)
    model = build_model("tdanet", **dict(TINY_TDANET, sample_rate=8000)).cuda().eval()
    x = torch.randn(3, 16000, device="cuda")
    monkeypatch.setattr(gln_triton, "failure", None)
    monkeypatch.setattr(gln_triton, "MIN_EAGER_ELEMENTS", 0)

    def no_compiler(*args):
        raise RuntimeError("Failed to find C compiler. Please specify via CC environment variable.")

    monkeypatch.setattr(gln_triton, "_gln", no_compiler)
    with torch.inference_mode(), graphs_off(), caplog.at_level(logging.WARNING, logger="cocktailparty"):
        got = model(x)
        again = model(x)
        monkeypatch.setattr(gln_triton, "AVAILABLE", False)
        expected = model(x)
    assert len([r for r in caplog.records if "fused gLN kernels cannot run" in r.getMessage()]) == 1
    for out in (got, again):  # torch's path both times: the same kernels
        torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6 * float(expected.abs().max()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("coarse_frames, factor", [(2008, 2), (1004, 4), (36, 8), (248, 16)])
def test_the_la_kernels_compute_the_la_layer_on_the_gated_feature(dtype, coarse_frames, factor):
    torch.manual_seed(coarse_frames)
    la = td.LocalAttention(24, 5).cuda()
    with torch.no_grad():
        for parameter in la.parameters():
            parameter.normal_()
    coarse = torch.randn(3, 24, 1, coarse_frames, device="cuda").to(dtype)
    feature = torch.randn(3, 24, 1, 2 * coarse_frames, device="cuda").to(dtype)
    gate = torch.rand(3, 24, 1, 2 * coarse_frames // factor, device="cuda").to(dtype)
    with torch.no_grad():
        got = gln_triton.local_attention(coarse, feature, gate, factor, la.gate[0].weight, la.shift[0].weight,
                                         la.gate[1], la.shift[1])
        assert got is not None, gln_triton.failure
        expected = la.double()(td.upsample_mul(feature.double(), gate.double(), factor), coarse.double())
    assert got.dtype == dtype and got.shape == feature.shape
    tolerance = 1e-5 if dtype == torch.float32 else 2e-3
    torch.testing.assert_close(got.double(), expected, rtol=tolerance, atol=tolerance * float(expected.abs().max()))


@pytest.mark.parametrize("dtype, out_dtype", [(torch.float32, torch.float32), (torch.float16, torch.float16),
                                              (torch.float16, torch.float32)])
@pytest.mark.parametrize("channels, frames", [(512, 251), (24, 37), (5, 1)])
def test_the_attention_input_is_layer_norm_over_channels_plus_the_code(dtype, out_dtype, channels, frames):
    torch.manual_seed(channels)
    norm = torch.nn.LayerNorm(channels).cuda()
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = (torch.randn(3, channels, 1, frames + 4, device="cuda")[..., 2:-2] * 3 + 1).to(dtype)  # strided
    pe = torch.randn(frames, channels, device="cuda")
    with torch.no_grad():
        got = gln_triton.frame_norm(x, norm, pe, out_dtype)
    assert got is not None, gln_triton.failure
    expected = torch.nn.functional.layer_norm(x.double().flatten(2).transpose(1, 2), (channels,), norm.weight.double(),
                                              norm.bias.double(), norm.eps) + pe.double()
    assert got.dtype == out_dtype and got.shape == expected.shape and got.is_contiguous()
    tolerance = 1e-5 if out_dtype == torch.float32 else 2e-3
    torch.testing.assert_close(got.double(), expected, rtol=tolerance, atol=tolerance * float(expected.abs().max()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("batch, length, heads, head_dim", [(80, 251, 8, 64), (3, 50, 2, 8), (1, 1, 1, 16)])
def test_qk_norm_puts_each_head_vector_at_unit_length_times_the_temperature(dtype, batch, length, heads, head_dim):
    torch.manual_seed(length)
    qkv = torch.randn(batch, length, 3 * heads * head_dim, device="cuda").to(dtype)
    qkv[0, 0, :head_dim] = 0  # a zero query keeps F.normalize's floor
    temperature = torch.rand(heads, device="cuda") * 3 + 0.5
    with torch.no_grad():
        got = gln_triton.unit_qk(qkv, heads, temperature, dtype)
    assert got is not None, gln_triton.failure
    q, k, _ = qkv.double().view(batch, length, 3, heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    expected = (torch.nn.functional.normalize(q, dim=-1) * temperature.double().view(-1, 1, 1),
                torch.nn.functional.normalize(k, dim=-1))
    tolerance = 1e-5 if dtype == torch.float32 else 2e-3
    for out, want in zip(got, expected):
        assert out.dtype == dtype and out.shape == want.shape
        torch.testing.assert_close(out.double(), want, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_a_pointwise_convs_bias_is_added_before_the_norm(dtype):
    torch.manual_seed(1)
    x = torch.randn(2, 12, 1, 3000, device="cuda").to(dtype)
    x_bias, weight, bias = (torch.randn(12, device="cuda") for _ in range(3))
    with torch.no_grad():
        got = gln_triton.gln(x, weight, bias, 1e-8, None, None, None, x_bias * 2)
    assert got is not None, gln_triton.failure
    expected = reference((x.double() + 2 * x_bias.double().view(-1, 1, 1)).to(dtype), weight, bias, 1e-8)
    tolerance = 1e-5 if dtype == torch.float32 else 3e-3
    torch.testing.assert_close(got.double(), expected, rtol=tolerance, atol=tolerance * float(expected.abs().max()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_sums_with_a_bias_or_an_affine_map_and_prelu_take_one_pass(dtype):
    torch.manual_seed(2)
    a = torch.randn(3, 12, 1, 3000, device="cuda").to(dtype)
    b = torch.randn(3, 12, 1, 6000, device="cuda")[..., ::2].to(dtype)  # strided
    bias, scale, shift, slope = torch.randn(12, device="cuda"), torch.randn(12, 1, 1, device="cuda"), \
        torch.randn(12, device="cuda"), torch.full((1,), 0.2, device="cuda")
    total = a.double() + b.double()
    affine = total * scale.double().view(-1, 1, 1) + shift.double().view(-1, 1, 1)
    cases = [(dict(bias=bias), total + bias.double().view(-1, 1, 1)),
             (dict(scale=scale, shift=shift, activation="prelu", slope=slope), torch.where(affine >= 0, affine, 0.2 * affine))]
    tolerance = 1e-6 if dtype == torch.float32 else 1e-3
    for options, expected in cases:
        with torch.no_grad():
            got = gln_triton.add_affine(a, b, **options)
        assert got is not None, gln_triton.failure
        assert got.dtype == dtype and got.shape == a.shape and got.is_contiguous()
        torch.testing.assert_close(got.double(), expected, rtol=tolerance, atol=tolerance * float(expected.abs().max()))
