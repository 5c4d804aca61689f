"""gLN on CUDA: eager inference on a short input takes group_norm; other inference (longer inputs,
CUDA-graph captures) the fused Triton kernels where Triton is installed; training var_mean's path.
All give the same normalisation."""

from __future__ import annotations

import pytest
import torch

from cocktailparty.models import gln_triton
from cocktailparty.models import tdanet as td


def _gln(channels: int = 64) -> td.GLN:
    norm = td.GLN(channels).cuda()
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    return norm


def record_paths(monkeypatch) -> list[str]:
    """Which GPU-time path each gLN call takes from now on: "triton" (the fused kernels, for
    inference) or "var_mean" (_split_statistics); group_norm's calls record nothing."""
    paths = []
    split, fused = td.GLN._split_statistics, gln_triton.gln
    monkeypatch.setattr(td.GLN, "_split_statistics", lambda self, y: paths.append("var_mean") or split(self, y))
    monkeypatch.setattr(gln_triton, "gln", lambda *args: paths.append("triton") or fused(*args))
    return paths


CAPTURED_INFERENCE_PATH = "triton" if gln_triton.AVAILABLE else "var_mean"


@pytest.mark.parametrize("batch, frames", [(1, 63), (1, 1024), (1, 1025), (8, 512), (4, 1024), (1, 6000),
                                           (1, 2**18)])
def test_inference_gln_matches_the_training_formula(batch, frames, monkeypatch):
    norm = _gln()
    x = torch.randn(batch, 64, 1, frames, device="cuda") * 3 + 1
    reference = td._GLNFunction.apply(x, norm.weight, norm.bias, norm.eps)
    paths = record_paths(monkeypatch)
    with torch.no_grad():
        out = norm(x)
    small = frames <= td.GLN.GROUP_NORM_MAX_FRAMES and batch * frames <= td.GLN.GROUP_NORM_MAX_BATCH_FRAMES
    large = gln_triton.AVAILABLE and x.numel() >= gln_triton.MIN_EAGER_ELEMENTS
    assert paths == ([] if small else ["triton"] if large else ["var_mean"])
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-4)


def test_small_inference_gln_keeps_bf16_under_autocast():
    norm = _gln()
    x = torch.randn(2, 64, 1, 100, device="cuda")
    with torch.no_grad(), torch.autocast("cuda", torch.bfloat16):
        out = norm(x.bfloat16())
    assert out.dtype == torch.bfloat16
    reference = td._GLNFunction.apply(x, norm.weight, norm.bias, norm.eps)
    torch.testing.assert_close(out.float(), reference, rtol=0.05, atol=0.05)


def test_gln_inside_a_cuda_graph_capture_takes_the_gpu_time_path(monkeypatch):
    norm = _gln()
    x = torch.randn(1, 64, 1, 63, device="cuda")
    paths = record_paths(monkeypatch)
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad():
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            norm(x)  # warm-up outside the capture: eager, group_norm
        torch.cuda.current_stream().wait_stream(side)
        assert not paths
        if gln_triton.AVAILABLE:  # the capture cannot compile the kernels: a warm-up does
            gln_triton.gln(x, norm.weight, norm.bias, norm.eps)
            paths.clear()
        with torch.cuda.graph(graph):
            out = norm(x)
    graph.replay()
    assert paths == [CAPTURED_INFERENCE_PATH]
    torch.testing.assert_close(out, td._GLNFunction.apply(x, norm.weight, norm.bias, norm.eps))


def test_training_gln_on_cuda_uses_the_hand_written_backward():
    norm = _gln()
    x = torch.randn(1, 64, 1, 63, device="cuda", requires_grad=True)
    out = norm(x)
    assert out.grad_fn is not None and "_GLNFunction" in type(out.grad_fn).__name__


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-4), (torch.bfloat16, 3e-2)])
def test_training_gln_gradients_match_float64_autograd(dtype, tolerance):
    """The backward (torch's group-norm backward fed this forward's statistics) against
    autograd through group_norm in float64, on a transposed (non-contiguous) input as the GA
    module's norm gets, in fp32 and bf16."""
    torch.manual_seed(0)
    norm = _gln()
    base = torch.randn(3, 70, 64, device="cuda") * 2 + 0.5
    x = base.to(dtype).transpose(1, 2).unsqueeze(2).requires_grad_()  # (3, 64, 1, 70), strided
    grad_out = torch.randn(3, 64, 1, 70, device="cuda")
    out = norm(x)
    assert out.dtype == dtype
    out.backward(grad_out.to(dtype))
    x64 = x.detach().double().requires_grad_()
    w64, b64 = (p.detach().double().requires_grad_() for p in (norm.weight, norm.bias))
    torch.nn.functional.group_norm(x64, 1, w64, b64, norm.eps).backward(grad_out.double())
    for ours, reference in ((x.grad, x64.grad), (norm.weight.grad, w64.grad), (norm.bias.grad, b64.grad)):
        assert ours.dtype == (dtype if ours is x.grad else torch.float32)
        scale = reference.abs().max()
        assert (ours.double() - reference).abs().max() <= tolerance * scale


def test_training_gln_backward_launches_few_kernels():
    """Eager training is bound by kernel launches: one norm's backward stays within 6 CUDA
    kernels (autograd through var_mean and the affine map took ~25)."""
    from torch.profiler import ProfilerActivity, profile

    norm = _gln()
    x = torch.randn(8, 64, 1, 500, device="cuda", requires_grad=True)
    out = norm(x)
    grad_out = torch.randn_like(out)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        out.backward(grad_out)
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    assert 0 < len(kernels) <= 6, [e.name for e in kernels]
