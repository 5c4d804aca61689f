"""GALR blocks and Tune-In: segmentation, shapes in every mode, enrollment handling, the
Autopilot equivalence, gradients, the Tune-In losses on hand-made cases, and the Table 1
parameter counts.

Behaviour tests use tiny configs; only the parameter-count tests build full-size models
(no forward pass).
"""

from __future__ import annotations

import pytest
import torch

from cocktailparty.models.galr import GALRBlock, overlap_add, segment


# --- GALR ---------------------------------------------------------------------------------

@pytest.mark.parametrize("frames", [1, 7, 8, 9, 64, 101])
def test_segment_overlap_add_round_trip(frames):
    x = torch.randn(2, frames, 3)
    segs = segment(x, 16)
    assert segs.shape[2:] == (16, 3)
    # Half overlap: the second half of segment s is the first half of segment s + 1.
    assert torch.equal(segs[:, :-1, 8:], segs[:, 1:, :8])
    assert torch.equal(overlap_add(segs, frames), x)


def test_segment_count_has_no_edge_padding():
    # 4001 frames (1 s at 8 kHz, window 4) with K = 256: 4096 padded frames, 31 segments.
    assert segment(torch.zeros(1, 4001, 1), 256).shape[1] == 31
    assert segment(torch.zeros(1, 256, 1), 256).shape[1] == 1


def test_galr_block_shapes_and_steering_identity():
    torch.manual_seed(0)
    block = GALRBlock(dim=8, hidden=6, segment_size=10, low_dim=3, heads=2, dropout=0.1).eval()
    x = torch.randn(2, 5, 10, 8)
    with torch.no_grad():
        y = block(x)
        assert y.shape == x.shape
        # r = 1, h = 0 is self-attention (the Autopilot definition), in both output forms.
        ones, zeros = torch.ones(2, 3, 8), torch.zeros(2, 3, 8)
        torch.testing.assert_close(block(x, (ones, zeros)), y)
        streams = block(x, (ones, zeros), keep_streams=True)
        assert streams.shape == (2, 3, 5, 10, 8)
        torch.testing.assert_close(streams, y.unsqueeze(1).expand_as(streams))
        # Different steering vectors give different streams.
        r = torch.randn(2, 3, 8)
        streams = block(x, (r, zeros), keep_streams=True)
        assert not torch.allclose(streams[:, 0], streams[:, 1])


def test_galr_block_batch_items_independent():
    torch.manual_seed(0)
    block = GALRBlock(dim=8, hidden=6, segment_size=10, low_dim=3, heads=2, dropout=0.0).eval()
    x = torch.randn(3, 4, 10, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x)[1:2], block(x[1:2]))
