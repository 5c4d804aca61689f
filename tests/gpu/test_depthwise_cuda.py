"""Which kernel a TDANet depthwise conv takes on CUDA: in fp16 a stride-2 one reads every other
frame of cuDNN's stride-1 conv (torch runs a slower kernel of its own at stride 2)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from cocktailparty.models import tdanet as td


def test_fp16_stride_2_depthwise_convs_read_the_stride_1_conv_and_fp32_ones_do_not(monkeypatch):
    torch.manual_seed(0)
    conv = td.Conv(64, 64, 5, stride=2, groups=64).cuda()
    x = torch.randn(3, 64, 1, 1001, device="cuda")
    calls = []
    every_other = td.Conv._every_other_frame
    monkeypatch.setattr(td.Conv, "_every_other_frame", lambda self, y: calls.append(y.dtype) or every_other(self, y))
    expected = F.conv2d(x.double(), conv.weight.double().unsqueeze(2), conv.bias.double(), (1, 2), (0, 2), 1, 64)
    with torch.no_grad(), torch.autocast("cuda", torch.float16):
        half = conv(x.half())
    assert calls == [torch.float16] and half.dtype == torch.float16 and half.shape == expected.shape
    torch.testing.assert_close(half.double(), expected, rtol=2e-3, atol=2e-3 * float(expected.abs().max()))
    with torch.no_grad():
        single = conv(x)
    assert calls == [torch.float16]  # fp32 keeps the stride-2 conv: at stride 1 it too would run torch's kernel
    torch.testing.assert_close(single.double(), expected, rtol=1e-5, atol=1e-5)
