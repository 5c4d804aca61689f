"""The Separator's CUDA path (cocktailparty/inference/cuda_path.py) on a real GPU.

Batches replayed from CUDA graphs give what eager batches give; batching across files and
chunks gives what each file alone gives; the CUDA output agrees with the CPU's; the precision
decision on a bundled model is the one its measured SNR calls for, and the output it leads
to stays near fp32's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cocktailparty.core.checkpoint import DEFAULT_MODEL, load_model
from cocktailparty.inference import cuda_path
from cocktailparty.inference.export import speech_like_mixtures
from cocktailparty.inference.separate import Separator
from cocktailparty.models import build_model
from tests.helpers import TINY_TDANET

RATE = 16000
TINY = dict(TINY_TDANET, sample_rate=RATE)


def speech(count: int, seconds: float, seed: int) -> list[np.ndarray]:
    generator = torch.Generator().manual_seed(seed)
    return list(speech_like_mixtures(count, int(seconds * RATE), RATE, generator).numpy())


def snr_db(estimate: np.ndarray, reference: np.ndarray) -> float:
    return cuda_path.snr_db(torch.from_numpy(estimate), torch.from_numpy(reference))


def tiny_model(device: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("tdanet", **TINY).to(device).eval()


def test_graph_replays_equal_eager_batches():
    # The graphs run the fused Triton kernels (gLN, LA), eager batches this small torch's ops.
    clips = [(x, RATE) for x in speech(12, 1.0, seed=0)]
    model = tiny_model("cuda")
    # 3 clips a call: 4 calls of one shape, so eager, capture + replay, replay, replay
    graphed = Separator(model, device="cuda", batch_seconds=3.0, precision="fp32", cuda_graphs=True)
    eager = Separator(model, device="cuda", batch_seconds=3.0, precision="fp32", cuda_graphs=False)
    with_graphs = list(graphed.separate_many(clips))
    without = list(eager.separate_many(clips))
    assert list(graphed._cuda.graphs.graphs) == [(3, RATE)]
    for a, b in zip(with_graphs, without):
        np.testing.assert_allclose(a, b, atol=1e-5 * np.abs(b).max())


def test_batches_across_files_and_chunks_equal_each_file_alone():
    model = tiny_model("cuda")
    recordings = [(x, RATE) for x in speech(9, 4.0, seed=1)] + [(speech(1, 95.0, seed=2)[0], RATE)]
    recordings.insert(3, (speech(1, 2.5, seed=3)[0], RATE))
    batched = Separator(model, device="cuda", precision="fp32")  # the default budget: all 4-s clips in one call
    alone = Separator(model, device="cuda", precision="fp32", batch_seconds=0.0)  # one piece per call
    for (mixture, rate), out in zip(recordings, batched.separate_many(recordings)):
        expected = alone(mixture, rate)
        assert out.shape == expected.shape
        assert snr_db(out, expected) > 60, "a row of a batch differs from the piece run alone"


def test_cuda_output_agrees_with_the_cpu():
    mixture = speech(1, 25.0, seed=4)[0]  # three chunks
    cuda = Separator.from_pretrained(DEFAULT_MODEL, device="cuda", precision="fp32")(mixture, RATE)
    cpu = Separator.from_pretrained(DEFAULT_MODEL, device="cpu")(mixture, RATE)
    # cuDNN's convolutions may run in TF32 (torch's default): close to, not equal to, fp32
    assert snr_db(cuda, cpu) > 40


def test_precision_decision_on_the_bundled_model():
    model = load_model(DEFAULT_MODEL, "cuda")
    separator = Separator(model, device="cuda")  # precision auto
    profile = separator._cuda.profile
    assert profile.bytes_per_sample > 0 and profile.probe_samples == separator.chunk
    generator = torch.Generator().manual_seed(cuda_path.PROBE_SEED)
    probe = speech_like_mixtures(cuda_path.PROBE_BATCH, separator.chunk, RATE, generator).cuda()
    with torch.inference_mode():
        fp32_out = cuda_path.forward_in(model, probe, "fp32")
        measured = {p: cuda_path.snr_db(cuda_path.forward_in(model, probe, p), fp32_out)
                    for p in cuda_path.HALF_PRECISIONS}
    print(f"{DEFAULT_MODEL}: SNR from fp32 on the probe {measured}; chosen: {profile.precision}")
    passing = [p for p in cuda_path.HALF_PRECISIONS if measured[p] >= cuda_path.MIN_SNR_DB]
    assert profile.precision == (passing[0] if passing else "fp32")
    # On other speech than the probe, the chosen precision stays near fp32 (5 dB of margin
    # below the probe's threshold: another input is not the probe).
    mixture = speech(1, 30.0, seed=5)[0]
    fp32 = Separator(model, device="cuda", precision="fp32")(mixture, RATE)
    chosen = separator(mixture, RATE)
    assert snr_db(chosen, fp32) > cuda_path.MIN_SNR_DB - 5


def test_the_batch_budget_is_sized_by_measured_memory():
    separator = Separator(tiny_model("cuda"), device="cuda")
    budget = separator._budget_samples()
    assert separator.chunk <= budget <= cuda_path.MAX_BATCH_SECONDS * RATE
    assert separator.pieces_per_batch(separator.chunk) == budget // separator.chunk
    assert separator.pieces_per_batch(separator.chunk + 1) == 1  # longer than the probe


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_an_hour_long_file_runs_in_batches_of_chunks(precision):
    """A shortened stand-in (3 minutes): 22 full chunks in calls of 8, 8 and 6 (the second
    captured as a graph), then the short last one."""
    model = tiny_model("cuda")
    mixture = speech(1, 180.0, seed=6)[0]
    batched = Separator(model, device="cuda", precision=precision, batch_seconds=80.0)
    out = batched(mixture, RATE)
    assert list(batched._cuda.graphs.graphs) == [(8, batched.chunk)]
    alone = Separator(model, device="cuda", precision=precision, batch_seconds=0.0)(mixture, RATE)
    assert snr_db(out, alone) > (60 if precision == "fp32" else 30)


def test_a_captured_batch_is_queued_without_waiting_for_the_device():
    """Once its shape is captured, a batch is submitted with no host synchronisation (torch's
    sync debug mode raises on one: an ``eigh``'s error check, a copy from pageable memory, a
    ``bool`` of a device tensor); two batches in flight give what one at a time gives; the
    estimates reach the host as new arrays, not views of page-locked memory."""
    runner = cuda_path.CudaBatchRunner(tiny_model("cuda"), torch.device("cuda"), "fp16", True, RATE, RATE)
    first, second = np.stack(speech(3, 1.0, seed=7)), np.stack(speech(3, 1.0, seed=8))
    for _ in range(2):  # eager, then captured: the replays are what is compared
        expected = [runner(first), runner(second)]
    assert list(runner.graphs.graphs) == [(3, RATE)]
    torch.cuda.set_sync_debug_mode("error")
    try:
        pending = [runner.submit(first), runner.submit(list(second))]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    outputs = [batch.result() for batch in pending]
    for out, want in zip(outputs, expected):
        # Replays of one graph, yet not bit for bit: cuDNN's transposed conv (the decoder) may sum with atomics.
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
        assert out.flags.owndata and not torch.from_numpy(out).is_pinned()


class LoudInside(torch.nn.Module):
    """Two halves of the mixture through a gain of 1e4 and back: under fp16 autocast the
    linear layer overflows for samples louder than 6.55 (fp16 tops out at 65504)."""

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        gain = torch.full((1, 1), 1e4, device=mixture.device)
        loud = torch.nn.functional.linear(mixture.unsqueeze(-1), gain)  # (B, T, 1)
        return (loud * 0.5e-4).expand(-1, -1, 2).transpose(1, 2)  # (B, 2, T)


def test_an_fp16_batch_that_overflows_on_the_gpu_runs_again_in_fp32():
    runner = cuda_path.CudaBatchRunner(LoudInside().eval(), torch.device("cuda"), "fp16", True, RATE, RATE)
    quiet = np.stack(speech(2, 1.0, seed=9))
    quiet *= 0.5 / np.abs(quiet).max()
    loud = quiet * 20  # peaks of 10
    assert np.allclose(runner(quiet), 0.5 * quiet[:, None], atol=1e-3) and not runner.overflowed
    for _ in range(3):  # eager, captured, replayed
        out = runner(loud)
        assert np.isfinite(out).all()
        np.testing.assert_allclose(out, np.broadcast_to(0.5 * loud[:, None], out.shape), rtol=1e-5, atol=1e-6)
    assert runner.overflowed
