"""Tune-In on CUDA: the LSTM's batch of segments is padded to a multiple of 8 (cuDNN's fast
fp16 kernel wants it) without changing what comes out."""

from __future__ import annotations

import pytest
import torch

from cocktailparty.models.tunein.galr import LocallyRecurrent


@pytest.mark.parametrize("segments", [10, 16, 3])
def test_padding_the_segments_leaves_each_segments_output_alone(segments, monkeypatch):
    torch.manual_seed(0)
    layer = LocallyRecurrent(32, 16, inference_chunks=2).cuda()
    x = torch.randn(2, segments, 20, 32, device="cuda")
    batches = []
    monkeypatch.setattr(layer.rnn, "forward", lambda inp, forward=layer.rnn.forward: batches.append(inp.shape[0])
                        or forward(inp))
    with torch.no_grad():
        grouped = layer(x)  # inference: in inference_chunks groups, each padded
    whole = layer(x)  # with grad: one call
    assert len(batches) == 3 and all(b % 8 == 0 for b in batches)
    monkeypatch.setattr(LocallyRecurrent, "CUDA_BATCH_MULTIPLE", 1)
    with torch.no_grad():
        reference = layer(x)
    assert batches[3:] == [segments, segments]
    torch.testing.assert_close(grouped, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(whole.detach(), reference, rtol=1e-5, atol=1e-5)
    whole.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters())
