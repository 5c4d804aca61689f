"""TDANet and TDANet Large: shapes at any length, batch independence, determinism, gradient
flow, equivalences the fast paths rely on, tracing, configs and the paper's parameter counts.

Behaviour tests use a tiny config (few channels, 2 unfolds) so the file runs in seconds; the
full-size models are built for parameter counts and one forward pass.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from cocktailparty.core.config import CONFIG_DIR, load_config
from cocktailparty.models import build_model
from cocktailparty.models.common import sinusoidal_encoding
from cocktailparty.models.tdanet import TDANet, TDANetConfig, TDANetLarge, upsample_mul

TINY = dict(sample_rate=8000, bottleneck=8, channels=16, ffn_channels=32, heads=2, depth=3, unfolds=2)
PAPER_PARAMS = 2_300_000  # Table 2: 2.3M for both sizes

# Exact counts of our implementation (the authors' code: 2,330,439 and 2,316,391).
TDANET_PARAMS = 2_309_260
TDANET_LARGE_PARAMS = 2_299_916


def tiny(**overrides) -> TDANet:
    torch.manual_seed(0)
    return build_model("tdanet", **{**TINY, **overrides})


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("num_sources", [2, 3])
@pytest.mark.parametrize("length", [16001, 1237, 31, 3, 1])
def test_output_shape_any_length(num_sources, length, channels_last):
    # At 8 kHz the tiny config's window is 32 samples: 31, 3 and 1 are shorter than one window.
    model = tiny(num_sources=num_sources).eval()
    model.channels_last = channels_last
    with torch.inference_mode():
        out = model(torch.randn(2, length))
    assert out.shape == (2, num_sources, length)
    assert torch.isfinite(out).all()


def test_memory_formats_agree():
    # The CPU channels-last path (GEMM 1x1 convs, oneDNN depthwise) must compute the same function.
    model = tiny().eval()
    x = torch.randn(2, 4001)
    with torch.inference_mode():
        model.channels_last = False
        a = model(x)
        model.channels_last = True
        b = model(x)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_batch_independence():
    model = tiny().eval()
    x = torch.randn(3, 3001)
    with torch.inference_mode():
        together = model(x)
        alone = torch.cat([model(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


def test_eval_determinism():
    model = tiny().eval()
    x = torch.randn(2, 2500)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), model(x), rtol=0, atol=1e-6)


def test_training_mode_is_stochastic():
    # Dropout and DropPath are live in training mode and off in eval mode.
    model = tiny(dropout=0.5, drop_path=0.5).train()
    x = torch.randn(2, 2000)
    with torch.no_grad():
        assert not torch.allclose(model(x), model(x))


def test_gradient_reaches_every_parameter():
    model = tiny(num_sources=3).train()
    out = model(torch.randn(2, 3001))
    (out.square().mean() + out.mean()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} gets no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


def test_upsample_mul_is_nearest_interpolation_then_product():
    x, g = torch.randn(2, 5, 1, 24), torch.randn(2, 5, 1, 6)
    expected = x * F.interpolate(g, scale_factor=(1.0, 4.0), mode="nearest")
    torch.testing.assert_close(upsample_mul(x, g, 4), expected)
    torch.testing.assert_close(upsample_mul(x.contiguous(memory_format=torch.channels_last),
                                            g.contiguous(memory_format=torch.channels_last), 4), expected)


@pytest.mark.parametrize("channels_last", [True, False])
def test_inference_in_place_ops_compute_the_autograd_function(channels_last):
    """Under inference mode the LA layers and the gating write in place (fewer full-size
    temporaries); the result must be bit-identical to the autograd path's."""
    model = tiny().eval()
    model.channels_last = channels_last
    x = torch.randn(2, 3001, generator=torch.Generator().manual_seed(3))
    y_grad = model(x)
    assert y_grad.requires_grad
    with torch.inference_mode():
        y_inference = model(x)
    with torch.no_grad():
        y_no_grad = model(x)
    assert torch.equal(y_grad.detach(), y_inference)
    assert torch.equal(y_grad.detach(), y_no_grad)


def test_upsample_mul_in_place_under_no_grad_leaves_the_gate_alone():
    x, gate = torch.randn(1, 4, 1, 16), torch.randn(1, 4, 1, 4)
    expected = upsample_mul(x, gate, 4)
    gate_before = gate.clone()
    with torch.no_grad():
        got = upsample_mul(x, gate, 4)
    assert got.data_ptr() == x.data_ptr()  # written in place
    assert torch.equal(got, expected) and torch.equal(gate, gate_before)


def positional_encoding(length: int, channels: int, device: torch.device) -> torch.Tensor:
    """TDANet's position code d, ``(length, channels)``, as its forward builds it."""
    return sinusoidal_encoding(torch.arange(length, device=device, dtype=torch.float32)[:, None], channels)


def test_positional_encoding_any_length():
    pe = positional_encoding(20_000, 16, torch.device("cpu"))  # beyond a fixed 10000-row table
    assert pe.shape == (20_000, 16)
    torch.testing.assert_close(pe[:, 0], torch.arange(20_000.0).sin())
    torch.testing.assert_close(pe[:, 1], torch.arange(20_000.0).cos())


def test_attention_runs_over_time_not_batch():
    # The authors' code attends over the batch axis: with batch 1 every frame would then only
    # see itself. Here changing one late frame of the coarsest scale must move early outputs.
    torch.manual_seed(0)
    ga = tiny().block.ga.eval()
    g = torch.randn(1, 16, 1, 12)
    pe = positional_encoding(12, 16, g.device)
    h = g.clone()
    h[..., -1] += 5.0
    with torch.inference_mode():
        out_g, out_h = ga.attn(g.flatten(2).transpose(1, 2) + pe), ga.attn(h.flatten(2).transpose(1, 2) + pe)
    assert not torch.allclose(out_g[:, 0], out_h[:, 0])


def test_attention_input_is_layer_normalized_so_logits_stay_bounded():
    # Scaling G by 100 (weights grown by training) must not sharpen the attention: the
    # LayerNorm before "+ d" makes the MHSA input, hence its logits, independent of G's scale.
    torch.manual_seed(0)
    ga = tiny().block.ga.eval()
    g = torch.randn(1, 16, 1, 12)
    pe = positional_encoding(12, 16, g.device)
    with torch.inference_mode():
        seq = g.flatten(2).transpose(1, 2)
        small = ga.attn(ga.attn_in_norm(seq) + pe)
        large = ga.attn(ga.attn_in_norm(100 * seq) + pe)
    torch.testing.assert_close(small, large, atol=1e-4, rtol=1e-4)
    without = tiny(attention_input_norm=False)
    assert n_params(tiny()) - n_params(without) == 2 * 16  # LayerNorm weight and bias
    assert isinstance(without.block.ga.attn_in_norm, torch.nn.Identity)


def test_logit_gain_is_the_largest_logit_of_unit_inputs():
    torch.manual_seed(1)
    attn = tiny(heads=2).block.ga.attn
    with torch.no_grad():
        attn.in_proj.bias.zero_()
        attn.in_proj.weight.mul_(30)  # grown weights
    n, d = attn.in_proj.in_features, attn.in_proj.in_features // 2
    best = 0.0
    for h in range(2):
        w_q, w_k = attn.in_proj.weight[h * d:(h + 1) * d], attn.in_proj.weight[n + h * d:n + (h + 1) * d]
        u, _, vh = torch.linalg.svd((w_q.T @ w_k).detach())
        x_i, x_j = u[:, 0], vh[0]  # the pair of unit inputs that scores highest for this head
        best = max(best, float((w_q @ x_i) @ (w_k @ x_j)) / d ** 0.5)
        for _ in range(20):  # no other unit pair scores more
            a, b = torch.nn.functional.normalize(torch.randn(2, n), dim=-1)
            assert float((w_q @ a) @ (w_k @ b)) / d ** 0.5 <= attn.logit_gain() + 1e-4
    assert attn.logit_gain() == pytest.approx(best, rel=1e-4)


@pytest.mark.slow
def test_qk_norm_bounds_logits_by_the_temperature_however_weights_grow(tmp_path):
    from cocktailparty.inference.export import export_onnx
    from cocktailparty.inference.onnxrun import OnnxRunner

    torch.manual_seed(0)
    model = tiny(attention_qk_norm=True).eval()
    attn = model.block.ga.attn
    assert n_params(model) - n_params(tiny()) == 2  # one temperature per head
    x = torch.randn(1, 12, 16)
    with torch.inference_mode():
        before = attn(x)
        attn.in_proj.weight[:32].mul_(1000)  # q and k projections grow; v is untouched
        attn.in_proj.bias[:32].mul_(1000)
        after = attn(x)
    # Unit q and k: scaling their projections changes nothing, and logits are bounded.
    torch.testing.assert_close(before, after, atol=1e-4, rtol=1e-4)
    assert attn.logit_gain() == pytest.approx(8 ** 0.5)  # sqrt(d) at initialization, d = 16 / 2
    path = export_onnx(model, tmp_path / "qk.onnx")
    signal = torch.randn(1, 3000)
    with torch.inference_mode():
        np.testing.assert_allclose(OnnxRunner(path).forward(signal.numpy()), model(signal).numpy(), atol=1e-4)


def test_frames_divide_by_every_stride():
    model = tiny()
    for length in (1, 2, 31, 32, 33, 1237, 16000):
        frames = model._frames(length)
        assert frames % 2**model.config.depth == 0
        k, h = model.config.kernel, model.config.stride
        assert (frames - 1) * h + k >= length + 2 * (k - h)  # every sample under K/H windows


@pytest.mark.slow
def test_jit_trace():
    model = tiny().eval()
    x = torch.randn(1, 4000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, x, check_trace=False)
    with torch.inference_mode():
        torch.testing.assert_close(traced(x), model(x), rtol=1e-5, atol=1e-5)


def test_config_validation():
    with pytest.raises(ValueError, match="whole number of samples"):
        TDANet(TDANetConfig(sample_rate=8000, kernel_ms=4.0, stride_ms=0.3))
    with pytest.raises(ValueError, match="multiple of heads"):
        tiny(heads=3)
    with pytest.raises(ValueError, match=r"\(batch, time\)"):
        tiny()(torch.randn(4000))


def test_paper_sizes():
    base, large = TDANetConfig(), TDANetLarge().config
    assert (base.kernel, base.stride, base.num_basis) == (64, 16, 33)
    assert (large.kernel, large.stride, large.num_basis) == (32, 8, 17)


def test_param_counts_match_paper():
    torch.manual_seed(0)
    base, large = build_model("tdanet"), build_model("tdanet-large")
    assert n_params(base) == TDANET_PARAMS
    assert n_params(large) == TDANET_LARGE_PARAMS
    for model in (base, large):
        assert abs(n_params(model) - PAPER_PARAMS) <= 0.03 * PAPER_PARAMS
    # Num sources only changes the mask head: 128 x 33 weights + 33 biases per source.
    assert n_params(build_model("tdanet", num_sources=3)) == TDANET_PARAMS + 129 * 33


@pytest.mark.slow
def test_full_size_forward_at_odd_length():
    torch.manual_seed(0)
    model = build_model("tdanet").eval()
    with torch.inference_mode():
        out = model(torch.randn(1, 1237))
    assert out.shape == (1, 2, 1237) and torch.isfinite(out).all()


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("tdanet*.yaml")), ids=lambda p: p.stem)
def test_configs_build(path):
    cfg = dict(load_config(path)["model"])
    architecture = cfg.pop("architecture")
    model = build_model(architecture, **cfg)
    assert model.architecture == architecture
    assert abs(n_params(model) - PAPER_PARAMS) <= 0.03 * PAPER_PARAMS


def test_configs_exist():
    names = {p.stem for p in CONFIG_DIR.glob("tdanet*.yaml")}
    assert {"tdanet-lrs2", "tdanet-large-lrs2"} <= names


@pytest.mark.slow
def test_bf16_autocast_keeps_activations_bf16_and_waveform_fp32():
    model = tiny().eval()
    model.channels_last = False
    x = torch.randn(2, 3000)
    dtypes = {}
    model.block.down[1].register_forward_hook(lambda m, i, o: dtypes.update(norm=o.dtype))
    with torch.inference_mode():
        reference = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
    assert dtypes["norm"] == torch.bfloat16  # no fp32 round trip around the norms
    assert out.dtype == torch.float32
    err = (out - reference).square().sum() / reference.square().sum()
    assert err < 1e-2  # bf16 has 8 mantissa bits; 20 dB SNR is ample for a smoke check


def test_cuda_layer_norm_path_matches_group_norm_and_its_gradients():
    """The split-statistics gLN used on CUDA, run here on the CPU: same values as group_norm,
    and a hand-written backward that passes gradcheck in float64."""
    from cocktailparty.models.tdanet import GLN, _GLNFunction

    torch.manual_seed(0)
    norm = GLN(6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(3, 6, 1, 37) * 2 + 0.3
    expected = torch.nn.functional.group_norm(x, 1, norm.weight, norm.bias, norm.eps)
    torch.testing.assert_close(norm._split_statistics(x), expected, atol=1e-5, rtol=1e-5)
    x64 = torch.randn(2, 4, 1, 9, dtype=torch.float64, requires_grad=True)
    w64 = torch.rand(4, dtype=torch.float64, requires_grad=True)
    b64 = torch.randn(4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, w, b: _GLNFunction.apply(a, w, b, 1e-8), (x64, w64, b64))


def test_gln_backwards_eager_and_compiled_agree():
    """The two backwards of the CUDA gLN (torch's group-norm backward eagerly, the written-out
    maths under torch.compile) give the same gradients as autograd through group_norm, in
    float64, on a strided input."""
    from cocktailparty.models.tdanet import _GLNFunction, _gln_backward_written_out

    torch.manual_seed(0)
    x = (torch.randn(3, 40, 5, dtype=torch.float64) * 2 + 0.7).transpose(1, 2).unsqueeze(2).requires_grad_()
    w = torch.rand(5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, 5, 1, 40, dtype=torch.float64)
    reference = torch.autograd.grad(torch.nn.functional.group_norm(x, 1, w, b, 1e-8), (x, w, b), g)
    eager = torch.autograd.grad(_GLNFunction.apply(x, w, b, 1e-8), (x, w, b), g)
    var, mean = torch.var_mean(x.detach(), dim=(1, 2, 3), correction=0, keepdim=True)
    written_out = _gln_backward_written_out(g, x.detach(), w.detach(), mean, torch.rsqrt(var + 1e-8))
    for expected, *ours in zip(reference, eager, written_out):
        for got in ours:
            torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("stride,dilation,length,bias", [(1, 1, 37, True), (2, 1, 36, True), (2, 2, 32, False),
                                                          (1, 1, 3, False)])
def test_depthwise_taps_are_the_conv_and_its_gradients(stride, dilation, length, bias):
    """What a depthwise Conv runs under torch.compile (its k shifted copies, summed) gives the
    conv's values and gradients, at the strides, dilations and lengths the model uses."""
    from cocktailparty.models.tdanet import Conv

    torch.manual_seed(0)
    conv = Conv(6, 6, 5, stride=stride, groups=6, dilation=dilation, bias=bias).double()
    assert conv.depthwise and not Conv(6, 6, 1, groups=6).depthwise and not Conv(6, 12, 5, groups=6).depthwise
    x = torch.randn(2, 6, 1, length, dtype=torch.float64, requires_grad=True)
    expected = conv(x)
    got = conv._depthwise_as_taps(x)
    assert got.shape == expected.shape
    g = torch.randn_like(expected)
    wanted = [x, *conv.parameters()]
    for a, b in zip(torch.autograd.grad(got, wanted, g), torch.autograd.grad(expected, wanted, g)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("length", [36, 37, 5])
def test_a_stride_2_depthwise_conv_is_every_other_frame_of_its_stride_1_conv(length):
    """What an fp16 CUDA input runs (tests/gpu/test_depthwise_cuda.py checks that it does)."""
    from cocktailparty.models.tdanet import Conv

    torch.manual_seed(0)
    conv = Conv(6, 6, 5, stride=2, groups=6).double()
    x = torch.randn(2, 6, 1, length, dtype=torch.float64, requires_grad=True)
    expected = conv(x)
    got = conv._every_other_frame(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(expected)
    for a, b in zip(torch.autograd.grad(got, [x, conv.weight], g), torch.autograd.grad(expected, [x, conv.weight], g)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_the_first_use_of_the_kernels_says_so_where_they_are_not_compiled_yet(monkeypatch, caplog, tmp_path):
    import logging

    from cocktailparty.models import gln_triton

    cache = tmp_path / "triton-cache"
    monkeypatch.setattr(gln_triton, "kernel_cache_dir", lambda: cache)
    monkeypatch.setattr(gln_triton, "_gln", lambda *args: args[0])
    x = torch.randn(2, 4, 1, 8)
    with caplog.at_level(logging.INFO, logger="cocktailparty"):
        for cached in (False, True):
            monkeypatch.setattr(gln_triton, "_first_use_seen", False)  # a new process
            caplog.clear()
            for _ in range(2):
                assert gln_triton.gln(x, torch.ones(4), torch.zeros(4), 1e-8) is x
            said = [r.getMessage() for r in caplog.records]
            assert said == ([] if cached else [f"compiling TDANet's fused CUDA kernels: some seconds, once per machine "
                                               f"(cached in {cache})"])
            cache.mkdir(exist_ok=True)
            (cache / "kernel").write_text("compiled")


def test_kernels_failing_inside_a_capture_do_not_turn_them_off(monkeypatch, caplog):
    """A kernel that fails while a CUDA graph is captured fails the capture (reported by its
    caller, which then runs eagerly); the kernels stay on for the eager runs after it."""
    import logging

    from cocktailparty.models import gln_triton

    monkeypatch.setattr(gln_triton, "failure", None)

    def cannot_load(*args):
        raise RuntimeError("Triton Error [CUDA]: operation not permitted when stream is capturing")

    monkeypatch.setattr(gln_triton, "_gln", cannot_load)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    x = torch.randn(2, 4, 1, 8)
    with caplog.at_level(logging.WARNING, logger="cocktailparty"):
        assert gln_triton.gln(x, torch.ones(4), torch.zeros(4), 1e-8) is None
        assert gln_triton.failure is None and not caplog.records
        monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
        assert gln_triton.gln(x, torch.ones(4), torch.zeros(4), 1e-8) is None  # eagerly: final, with a warning
    assert gln_triton.failure.startswith("RuntimeError: Triton Error") and len(caplog.records) == 1


def test_inference_offers_the_kernels_every_norm_conv_la_layer_and_pooled_sum_and_declined_ones_change_nothing(
        monkeypatch):
    """Where gln_triton.usable says so (CUDA inference), the depthwise convs go to the kernels with
    their norms and what follows, the LA layers, eq. 3's sum and the attention's input and QK-norm
    too; each may answer None (kernels that cannot be built), and the torch path then gives exactly
    the output it always gives. (The projections' bias goes to the kernels on CUDA tensors only.)"""
    from cocktailparty.models import gln_triton

    torch.manual_seed(0)
    model = tiny(dropout=0.0, drop_path=0.0, attention_qk_norm=True).eval()
    x = torch.randn(2, 4000)
    with torch.no_grad():
        expected = model(x)
    offered = []
    monkeypatch.setattr(gln_triton, "usable", lambda t: not torch.is_grad_enabled())
    monkeypatch.setattr(gln_triton, "gln", lambda x, weight, bias, eps, activation=None, slope=None, conv=None,
                        x_bias=None: offered.append(("norm", activation, conv and (conv.kernel, conv.stride,
                                                                                   conv.bias is not None))))
    monkeypatch.setattr(gln_triton, "local_attention", lambda *args: offered.append(("la", args[3])))
    monkeypatch.setattr(gln_triton, "pooled_sum", lambda coarse, finer: offered.append(("pool", len(finer))))
    monkeypatch.setattr(gln_triton, "frame_norm", lambda *args: offered.append(("attention input", args[3])))
    monkeypatch.setattr(gln_triton, "unit_qk", lambda *args: offered.append(("qk norm", args[3])))
    with torch.no_grad():
        got = model(x)
    assert torch.equal(got, expected)
    kinds = set(offered)
    assert {("norm", "prelu", (5, 1, False)), ("norm", "prelu", (5, 2, False)),  # the down-sampling convs
            ("norm", None, (5, 1, True)),  # the FFN's depthwise conv (its ReLU comes after, in torch)
            ("norm", "sigmoid", (5, 1, False)), ("norm", None, (5, 1, False))} == {k for k in kinds if k[0] == "norm"}
    assert [k for k in offered if k[0] != "norm"] == [("pool", 3), ("attention input", torch.float32),
                                                      ("qk norm", torch.float32), ("la", 2), ("la", 4), ("la", 8)] * 2
    # The CPU's norms stay torch's (GLN offers the kernels CUDA tensors only): only conv + norm pairs came.
    assert all(k[2] is not None for k in offered if k[0] == "norm")


def test_fused_gln_kernels_that_cannot_be_built_warn_once_and_stay_off(monkeypatch, caplog):
    """Triton compiles a C launcher at its first kernel; without a C compiler that raises. The
    fused gLN then answers None (its caller runs torch's ops, tests/gpu/test_gln_triton.py) and
    is not tried again."""
    import logging

    from cocktailparty.models import gln_triton

    monkeypatch.setattr(gln_triton, "failure", None)

    def no_compiler(*args):
        raise RuntimeError("Failed to find C compiler. Please specify via CC environment variable.\nmore")

    monkeypatch.setattr(gln_triton, "_gln", no_compiler)
    x = torch.randn(2, 4, 1, 8)
    with caplog.at_level(logging.WARNING, logger="cocktailparty"):
        assert gln_triton.gln(x, torch.ones(4), torch.zeros(4), 1e-8, "prelu", torch.ones(1)) is None
        assert gln_triton.gln(x, torch.ones(4), torch.zeros(4), 1e-8) is None
    [record] = caplog.records
    assert "Failed to find C compiler" in record.getMessage() and "torch's ops" in record.getMessage()
    assert gln_triton.failure == "RuntimeError: Failed to find C compiler. Please specify via CC environment variable."
    monkeypatch.setattr(gln_triton, "AVAILABLE", True)
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))  # only the failure says no
    monkeypatch.setattr(gln_triton, "MIN_EAGER_ELEMENTS", 0)
    with torch.no_grad():
        assert not gln_triton.usable(x)
        monkeypatch.setattr(gln_triton, "failure", None)
        assert gln_triton.usable(x)


@pytest.mark.slow
def test_a_compiled_depthwise_conv_on_a_cpu_keeps_the_conv():
    # Inductor's vectorised CPU code for the taps' backward corrupted the heap (torch 2.13), so
    # only CUDA inputs take them (tests/gpu/test_fast_path.py checks that path).
    from cocktailparty.models.tdanet import Conv

    torch.manual_seed(0)
    conv = Conv(8, 8, 5, stride=2, groups=8)
    x = torch.randn(2, 8, 1, 40)
    calls = []
    taps = conv._depthwise_as_taps
    conv._depthwise_as_taps = lambda inp: calls.append(1) or taps(inp)
    torch.testing.assert_close(torch.compile(conv, dynamic=False)(x), F.conv2d(
        x, conv.weight.unsqueeze(2), conv.bias, (1, 2), (0, 2), 1, 8), rtol=1e-5, atol=1e-5)
    assert not calls


@pytest.mark.slow
def test_compiled_gln_gradients_match_eager():
    """Under torch.compile the gLN's backward is traced from the written-out maths; its
    gradients are the eager ones."""
    from cocktailparty.models.tdanet import _GLNFunction

    torch.manual_seed(0)
    x = torch.randn(2, 8, 1, 32, requires_grad=True)
    w, b = torch.rand(8, requires_grad=True), torch.randn(8, requires_grad=True)

    def loss(x, w, b):
        return _GLNFunction.apply(x, w, b, 1e-8).square().sum()

    eager = torch.autograd.grad(loss(x, w, b), (x, w, b))
    compiled = torch.autograd.grad(torch.compile(loss, dynamic=False)(x, w, b), (x, w, b))
    for got, expected in zip(compiled, eager):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_compile_narrows_to_the_shared_block_and_keeps_parameter_names():
    from cocktailparty.models import build_model

    model = build_model("tdanet", channels=32, bottleneck=16, ffn_channels=64, heads=4, unfolds=2)
    names = list(model.state_dict())
    model.compile()  # what `training.compile: true` calls
    assert model.block._compiled_call_impl is not None
    assert model._compiled_call_impl is None and model.encoder._compiled_call_impl is None
    assert list(model.state_dict()) == names


@pytest.mark.slow
def test_a_compiled_model_trains_on_a_second_input_shape():
    # By default torch.compile retraces a second shape with symbolic sizes, which Inductor
    # could not compile for this block (InductorError): a second training run in one process
    # crashed. (Eval mode's graph compiled; training's, with dropout and drop-path, did not.)
    torch.manual_seed(0)
    model = build_model("tdanet", sample_rate=16000, basis=9, bottleneck=8, channels=16, depth=2, unfolds=2,
                        heads=2, ffn_channels=16).train()
    model.compile()
    for batch, samples in ((4, 8000), (2, 3200)):
        estimate = model(torch.randn(batch, samples))
        estimate.square().mean().backward()
        assert estimate.shape == (batch, 2, samples) and torch.isfinite(estimate).all()
        assert all(p.grad is not None for p in model.block.parameters())


def test_compiled_says_whether_the_block_runs_compiled_until_the_trainer_undoes_it():
    from cocktailparty.train.engine import uncompile

    model = tiny()
    assert not model.compiled
    model.compile()  # lazy: nothing is compiled before a call
    assert model.compiled
    uncompile(model)
    assert not model.compiled
