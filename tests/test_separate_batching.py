"""Batched separation (issue #19 item 2): pieces of equal length share model calls, within
and across recordings, and give what separating each recording alone gives; on the CPU,
by default, nothing changes at all. Also the device-independent parts of the CUDA path
(cocktailparty/inference/cuda_path.py): the fp16/bf16/fp32 choice, the batch budget, the
capture-on-repeat policy of the CUDA graphs, and the on-device rescaling.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from torch import nn

from cocktailparty.inference import cuda_path
from cocktailparty.inference.separate import Separator, best_order, match_mixture_scale, process_files
from cocktailparty.models import build_model
from tests.helpers import TINY_TDANET
from tests.toys import BandSplit, BandSplitConfig, Halves, HalvesConfig

RATE = 8000


def tiny_tdanet() -> nn.Module:
    torch.manual_seed(0)
    return build_model("tdanet", **TINY_TDANET, sample_rate=RATE).eval()


def speech(seconds: float, seed: int) -> np.ndarray:
    """A two-talker speech-like mixture (float32, ``(time,)``) at RATE."""
    generator = torch.Generator().manual_seed(seed)
    from cocktailparty.inference.export import speech_like_mixtures

    return speech_like_mixtures(1, int(seconds * RATE), RATE, generator)[0].numpy()


class Recorder(nn.Module):
    """Wraps a model and records the shape of every batch it is given."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.config, self.shapes = model, model.config, []

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(mixture.shape))
        return self.model(mixture)


def one_chunk_at_a_time(model: nn.Module, mixture: np.ndarray, chunk: int, overlap: int) -> np.ndarray:
    """The Separator's loop as it was before batching (one model call per chunk, stitched as
    it ran): the CPU output must stay exactly this."""

    def run(piece):
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(piece)).unsqueeze(0)
            return match_mixture_scale(model(x)[0].float().numpy(), piece)

    length = mixture.shape[0]
    if length <= chunk:
        return run(mixture)
    hop = chunk - overlap
    starts = list(range(0, max(length - overlap, 1), hop))
    output = np.zeros((model.config.num_sources, length), np.float32)
    fade_in = np.linspace(0.0, 1.0, overlap + 2, dtype=np.float32)[1:-1]
    previous_tail = None
    for start in starts:
        piece = mixture[start : start + chunk]
        estimate = run(piece)
        if previous_tail is not None:
            o = min(overlap, piece.shape[0])
            estimate = estimate[best_order(previous_tail[:, :o], estimate[:, :o])]
            ramp = fade_in[:o]
            output[:, start : start + o] *= 1.0 - ramp
            estimate[:, :o] *= ramp
        output[:, start : start + estimate.shape[1]] += estimate
        previous_tail = estimate[:, hop:]
    return output


@pytest.mark.parametrize("make_model", [tiny_tdanet, lambda: BandSplit(BandSplitConfig())], ids=["tdanet", "band"])
def test_cpu_output_is_bit_identical_to_one_chunk_at_a_time(make_model):
    model = make_model()
    separator = Separator(model, device="cpu", chunk_seconds=1.0, overlap_seconds=0.25)
    chunk, overlap = RATE, RATE // 4
    # one chunk; several with a short last one; a last chunk flush with the end
    for samples in (RATE - 7, 3 * RATE + 123, 3 * (chunk - overlap) + overlap):
        mixture = speech(samples / RATE, seed=samples)
        expected = one_chunk_at_a_time(model, mixture, chunk, overlap)
        np.testing.assert_array_equal(separator.separate_at_model_rate(mixture), expected)
        np.testing.assert_array_equal(next(separator.separate_many([(mixture, RATE)])), expected)


def test_cpu_default_runs_one_piece_per_call():
    model = Recorder(Halves(HalvesConfig()))
    separator = Separator(model, device="cpu", chunk_seconds=1.0, overlap_seconds=0.25)
    list(separator.separate_many([(speech(0.5, 0), RATE), (speech(0.5, 1), RATE), (speech(2.5, 2), RATE)]))
    assert model.shapes == [(1, 4000), (1, 4000), (1, 8000), (1, 8000), (1, 8000)]


@pytest.mark.parametrize("make_model", [tiny_tdanet, lambda: BandSplit(BandSplitConfig())], ids=["tdanet", "band"])
def test_recordings_batched_across_files_equal_each_alone(make_model):
    """Same-length clips share calls, a long recording's chunks share calls (its short last
    chunk goes with nothing), and every output is what separating the recording alone gives."""
    model = make_model()
    lengths = [1.0, 0.7, 1.0, 3.3, 1.0, 0.7, 1.0, 1.0, 2.2, 1.0]
    recordings = [(speech(s, seed=i), RATE) for i, s in enumerate(lengths)]
    alone = Separator(model, device="cpu", chunk_seconds=1.0, overlap_seconds=0.25)
    recorder = Recorder(model)
    batched = Separator(recorder, device="cpu", chunk_seconds=1.0, overlap_seconds=0.25, batch_seconds=4.0)
    outputs = list(batched.separate_many(recordings))
    assert len(outputs) == len(recordings)
    for (mixture, rate), out in zip(recordings, outputs):
        expected = alone(mixture, rate)
        assert out.shape == expected.shape
        np.testing.assert_allclose(out, expected, atol=1e-5 * max(1.0, np.abs(expected).max()))
    # Pieces: 1-s clips and full chunks (8000 samples, four a call), the 0.7-s clips and the
    # 2.2-s recording's last chunk (5600), the 3.3-s recording's last chunk (2400). Full
    # batches run as they fill; once leftovers add up to 4 s, every length runs as it is.
    assert recorder.shapes == [(4, 8000),  # clips 0, 2 and two chunks of recording 3
                               (3, 8000), (1, 5600), (1, 2400),  # leftovers: 4 s of them with clip 4
                               (4, 8000),  # clips 6, 7 and both chunks of recording 8
                               (2, 5600), (1, 8000)]  # the end: clip 5, recording 8's last chunk; clip 9


def test_a_folder_of_equal_clips_runs_as_a_few_large_batches():
    model = Recorder(Halves(HalvesConfig()))
    clips = [(np.random.default_rng(i).standard_normal(40).astype(np.float32), RATE) for i in range(1000)]
    separator = Separator(model, device="cpu", batch_seconds=128 * 40 / RATE)
    outputs = list(separator.separate_many(clips))
    assert [s[0] for s in model.shapes] == [128] * 7 + [1000 - 7 * 128]
    alone = Separator(Halves(HalvesConfig()), device="cpu")
    for index in (0, 127, 128, 999):
        np.testing.assert_allclose(outputs[index], alone(*clips[index]), atol=1e-6)


def test_recordings_are_read_only_a_batch_ahead():
    """Memory stays bounded: mixtures are pulled as batches fill and outputs leave in order."""
    pulled, model = [], Recorder(Halves(HalvesConfig()))
    rng = np.random.default_rng(0)
    lengths = [400] * 9 + [401 + i for i in range(30)]  # a run of one length, then all different

    def recordings():
        for i, n in enumerate(lengths):
            pulled.append(i)
            yield rng.standard_normal(n).astype(np.float32), RATE

    separator = Separator(model, device="cpu", batch_seconds=4 * 400 / RATE)
    for done, out in enumerate(separator.separate_many(recordings())):
        assert out.shape == (2, lengths[done])
        ahead = len(pulled) - done  # read but not yet given back
        assert ahead <= 5, (done, ahead)
    assert pulled == list(range(len(lengths)))
    assert model.shapes[:2] == [(4, 400), (4, 400)]


def test_process_files_batches_a_folder_and_reports_a_bad_file(tmp_path, caplog):
    import soundfile

    from cocktailparty.core import audio

    names = {}
    for i in range(7):
        path = tmp_path / "in" / f"clip{i}.wav"
        path.parent.mkdir(exist_ok=True)
        if i == 3:
            path.write_bytes(b"RIFF not really a wav file")
        else:
            soundfile.write(path, speech(1.0, seed=i), RATE)
        names[path] = path.relative_to(tmp_path / "in").with_suffix("")
    model = Recorder(BandSplit(BandSplitConfig()))
    separator = Separator(model, device="cpu", batch_seconds=4.0)
    status = process_files(names, separator, tmp_path / "out", ["_s1.wav", "_s2.wav"], desc="separating",
                           force=False, quiet=True)
    assert status == 1 and "clip3.wav: not a sound file" in caplog.text
    assert [s[0] for s in model.shapes] == [4, 2]
    alone = Separator(BandSplit(BandSplitConfig()), device="cpu")
    for i in (0, 4, 6):
        samples, rate = audio.read(tmp_path / "in" / f"clip{i}.wav")
        written = np.stack([soundfile.read(tmp_path / "out" / f"clip{i}_s{k}.wav")[0] for k in (1, 2)])
        np.testing.assert_allclose(written, alone(samples, rate), atol=1e-4)  # 16-bit WAV
    assert not (tmp_path / "out" / "clip3_s1.wav").exists()


@pytest.mark.parametrize("bf16_units", [False, True])
def test_bf16_on_the_cpu_runs_under_autocast_and_auto_takes_it_where_the_cpu_has_bf16_units(monkeypatch, bf16_units):
    monkeypatch.setattr("cocktailparty.inference.separate.cpu_has_bf16_matrix_units", lambda: bf16_units)
    model = tiny_tdanet()
    mixture = speech(1.5, seed=5)
    fp32 = Separator(model, device="cpu", chunk_seconds=None, precision="fp32").separate_at_model_rate(mixture)
    seen = []
    monkeypatch.setattr(model, "forward", lambda x, f=model.forward: seen.append(torch.get_autocast_dtype("cpu")
                                                                             if torch.is_autocast_enabled("cpu")
                                                                             else None) or f(x))
    for precision in ("fp32", "fp16", "auto", "bf16"):
        seen.clear()
        out = Separator(model, device="cpu", chunk_seconds=None, precision=precision).separate_at_model_rate(mixture)
        bf16 = precision == "bf16" or (precision == "auto" and bf16_units)
        assert seen == [torch.bfloat16 if bf16 else None] and out.dtype == np.float32, precision
        if not bf16:
            np.testing.assert_array_equal(out, fp32)
        else:
            # Rounded, not another function: bf16's 8-bit mantissa keeps it tens of dB from fp32's.
            snr = 10 * np.log10((fp32 ** 2).sum() / ((fp32 - out) ** 2).sum())
            assert 15 < snr < 80, snr


def test_bf16_units_are_read_from_torchs_cpu_capabilities(monkeypatch):
    from cocktailparty.inference import separate

    monkeypatch.undo()  # the suite's fixture replaced the function under test
    for capabilities, expected in (({"amx_bf16": True}, True), ({"amx_bf16": False, "avx512_bf16": True}, False),
                                   ({}, False)):
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda c=capabilities: c)
        assert separate.cpu_has_bf16_matrix_units() is expected
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: 1 / 0)
    assert separate.cpu_has_bf16_matrix_units() is False


@pytest.mark.parametrize("bf16_units", [False, True])
def test_the_cpu_precision_follows_the_argument_else_the_environment(monkeypatch, bf16_units):
    from cocktailparty.inference.separate import cpu_runs_bf16

    monkeypatch.setattr("cocktailparty.inference.separate.cpu_has_bf16_matrix_units", lambda: bf16_units)
    assert [cpu_runs_bf16(p) for p in ("auto", "bf16", "fp32", "fp16")] == [bf16_units, True, False, False]
    monkeypatch.delenv("COCKTAIL_PRECISION", raising=False)
    assert cpu_runs_bf16() is bf16_units
    monkeypatch.setenv("COCKTAIL_PRECISION", "fp32")
    assert cpu_runs_bf16() is False


def test_precision_is_checked_on_any_device(monkeypatch):
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16, fp16"):
        Separator(Halves(HalvesConfig()), device="cpu", precision="half")
    monkeypatch.setenv("COCKTAIL_PRECISION", "half")
    with pytest.raises(ValueError, match="COCKTAIL_PRECISION"):
        Separator(Halves(HalvesConfig()), device="cpu")


# --- the precision choice ----------------------------------------------------------------


def test_choose_precision_takes_the_first_half_precision_within_40_db():
    def measured(fp16: float, bf16: float):
        seen = []

        def snr(precision: str) -> float:
            seen.append(precision)
            return {"fp16": fp16, "bf16": bf16}[precision]
        return snr, seen

    for fp16, bf16, chosen, tried in [(40.0, 60.0, "fp16", ["fp16"]), (39.9, 40.0, "bf16", ["fp16", "bf16"]),
                                      (float("nan"), 45.0, "bf16", ["fp16", "bf16"]),
                                      (39.9, 39.9, "fp32", ["fp16", "bf16"]),
                                      (float("inf"), 0.0, "fp16", ["fp16"])]:
        snr, seen = measured(fp16, bf16)
        assert cuda_path.choose_precision("auto", snr) == chosen
        assert seen == tried
    snr, seen = measured(50.0, 50.0)
    assert cuda_path.choose_precision("auto", snr, candidates=("bf16",)) == "bf16" and seen == ["bf16"]

    def fails(precision: str) -> float:
        raise RuntimeError(f"no {precision} kernel for this op")

    assert cuda_path.choose_precision("auto", fails) == "fp32"

    def never(precision: str) -> float:
        raise AssertionError("an explicit precision is not measured")

    for precision in ("fp32", "bf16", "fp16"):
        assert cuda_path.choose_precision(precision, never) == precision


class AutocastError(nn.Module):
    """Two halves of the mixture, off by a relative ``error`` (or NaN, or an exception) under
    autocast to fp16 and ``bf16_error`` under autocast to bf16 (the same unless given); no op
    that autocast changes, so the error is exactly the one given."""

    def __init__(self, error: float | str, bf16_error: float | str | None = None):
        super().__init__()
        self.errors = {torch.float16: error, torch.bfloat16: error if bf16_error is None else bf16_error}
        self.calls = 0
        self.config = HalvesConfig()

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = torch.stack([0.5 * mixture, 0.5 * mixture], 1)
        device = mixture.device.type
        if not torch.is_autocast_enabled(device):
            return out
        error = self.errors[torch.get_autocast_dtype(device)]
        if error == "nan":
            return out * float("nan")
        if error == "raise":
            raise RuntimeError("no half kernel")
        return out * (1 + error)


@pytest.mark.parametrize("fp16,bf16,expected", [(1e-3, None, "fp16"), ("nan", 1e-3, "bf16"), ("raise", 1e-3, "bf16"),
                                                (0.05, None, "fp32"), ("nan", None, "fp32"), ("raise", None, "fp32")])
def test_measure_model_picks_a_half_precision_only_within_40_db(fp16, bf16, expected):
    probe = torch.from_numpy(np.stack([speech(0.5, 0), speech(0.5, 1)]))
    profile = cuda_path.measure_model(AutocastError(fp16, bf16).eval(), probe, "auto")
    assert profile.precision == expected  # 1e-3 relative is 60 dB, 5% is 26 dB
    assert profile.probe_samples == 4000 and profile.bytes_per_sample == 0  # no CUDA memory here


def test_a_model_is_measured_once():
    model = AutocastError(1e-3).eval()
    first = cuda_path.model_profile(model, torch.device("cpu"), "auto", 800, RATE)
    assert model.calls == 2  # fp32 and fp16
    assert cuda_path.model_profile(model, torch.device("cpu"), "auto", 800, RATE) is first
    assert model.calls == 2
    assert cuda_path.model_profile(model, torch.device("cpu"), "fp32", 800, RATE).precision == "fp32"
    assert model.calls == 3  # another requested precision: measured again (fp32 only)


def test_an_fp16_batch_that_overflows_runs_again_in_fp32(caplog):
    model = AutocastError(float("inf")).eval()  # every fp16 output overflows
    runner = cuda_path.CudaBatchRunner(model, torch.device("cpu"), "fp16", graphs=False, probe_samples=800,
                                       sample_rate=RATE)
    pieces = np.stack([speech(0.1, 0), speech(0.1, 1)])
    caplog.set_level(logging.WARNING, logger="cocktailparty")
    for _ in range(2):
        out = runner(pieces)
        assert np.allclose(out, 0.5 * pieces[:, None], atol=1e-6)  # the fp32 halves
    assert runner.profile.precision == "fp16" and runner.overflowed
    assert model.calls == 1 + 2 * 2  # the profile's fp32 forward, then fp16 and fp32 per batch
    assert len(caplog.records) == 1 and "fp16 batch overflowed" in caplog.records[0].getMessage()


def test_snr_db():
    ref = torch.tensor([1.0, -1.0, 1.0, -1.0])
    assert cuda_path.snr_db(ref, ref) == math.inf
    assert cuda_path.snr_db(ref * 1.01, ref) == pytest.approx(40.0)
    assert math.isnan(cuda_path.snr_db(ref * float("nan"), ref))


def test_batch_budget():
    # 320 s at 16 kHz, unless 40% of free memory holds fewer samples' activations
    assert cuda_path.batch_budget(10**12, 1000.0, 16000) == 320 * 16000
    assert cuda_path.batch_budget(10**9, 1000.0, 16000) == 400_000
    assert cuda_path.batch_budget(10**9, 1000.0, 16000, max_seconds=10.0) == 160_000
    assert cuda_path.batch_budget(10, 1000.0, 16000) == 1
    assert cuda_path.batch_budget(10**9, 0.0, 16000) == 320 * 16000


# --- the mixture's scale, on the device ---------------------------------------------------


def scale_cases() -> list[tuple[np.ndarray, np.ndarray]]:
    """(estimates (C, T), mixture (T,)) pairs: the numpy function's own test cases."""
    rng = np.random.default_rng(0)
    true = np.linalg.qr(rng.standard_normal((8000, 2)))[0].T.astype(np.float32)
    a, b = rng.standard_normal((2, 8000))
    a -= b * (a @ b) / (b @ b)
    return [
        (true * np.array([[0.1], [3.0]], np.float32), true.sum(0)),  # recoverable gains
        (np.stack([-40.0 * a, 7.0 * b]).astype(np.float32), (a + b).astype(np.float32)),  # inverted
        (50.0 * np.stack([a + 0.5 * b, 0.3 * b + 0.2 * a]).astype(np.float32),
         (a + 0.3 * b).astype(np.float32)),  # leaky: a negative gain
        (30.0 * np.stack([a, a + 0.01 * b]).astype(np.float32), (a + b).astype(np.float32)),  # collinear
        (np.stack([a, np.zeros_like(a)]).astype(np.float32), (a + b).astype(np.float32)),  # a silent track
    ]


def test_rescale_batch_agrees_with_match_mixture_scale():
    cases = scale_cases()
    estimates = torch.from_numpy(np.stack([e for e, _ in cases]))
    mixtures = torch.from_numpy(np.stack([m for _, m in cases]))
    out = cuda_path.rescale_batch(estimates, mixtures)
    assert out.dtype == torch.float32 and out.shape == estimates.shape
    for row, (e, m) in zip(out.numpy(), cases):
        expected = match_mixture_scale(e, m)
        np.testing.assert_allclose(row, expected, atol=1e-5 * max(1.0, np.abs(expected).max()))


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_symmetric_pinv_agrees_with_torchs_at_every_rank(size):
    generator = torch.Generator().manual_seed(size)
    for rank in range(size + 1):
        # Gram matrices of rank `rank`, at scales from 1e-3 to 1e3 (the cutoff is relative)
        factors = torch.randn(20, size, rank, generator=generator, dtype=torch.float64)
        rows = factors @ torch.randn(20, rank, 50, generator=generator, dtype=torch.float64)
        rows = rows * 10.0 ** torch.randint(-3, 4, (20, 1, 1), generator=generator)
        gram = rows @ rows.transpose(1, 2)
        expected = torch.linalg.pinv(gram, hermitian=True)
        ours = cuda_path.symmetric_pinv(gram)
        scale = expected.abs().amax((1, 2), keepdim=True).clamp_min(1e-300)
        assert ((ours - expected).abs() / scale).max() < 1e-9, rank
    # equal diagonal entries (a 45-degree rotation) and an already diagonal matrix
    special = torch.tensor([[[2.0, 1.0], [1.0, 2.0]], [[3.0, 0.0], [0.0, -4.0]]], dtype=torch.float64)
    torch.testing.assert_close(cuda_path.symmetric_pinv(special), torch.linalg.inv(special))


def test_on_cuda_a_batch_is_collected_only_after_the_next_is_submitted():
    """The CUDA path leaves one batch running on the device while the host stitches the one
    before it; outputs are as before. (The runner here is the CUDA one on the CPU.)"""
    model = Halves(HalvesConfig())
    clips = [(np.random.default_rng(i).standard_normal(400).astype(np.float32), RATE) for i in range(6)]
    separator = Separator(model, device="cpu")
    runner = cuda_path.CudaBatchRunner(model, torch.device("cpu"), "fp32", False, separator.chunk, RATE)
    separator._cuda, separator._budget = runner, 2 * 400  # two clips a batch
    events = []
    submit = runner.submit

    def watched_submit(pieces):
        number = sum(kind == "submit" for kind, _ in events)
        events.append(("submit", number))
        pending = submit(pieces)
        result = pending.result

        def watched_result():
            events.append(("collect", number))
            return result()

        pending.result = watched_result
        return pending

    runner.submit = watched_submit
    outputs = list(separator.separate_many(clips))
    assert events == [("submit", 0), ("submit", 1), ("collect", 0), ("submit", 2), ("collect", 1), ("collect", 2)]
    alone = Separator(Halves(HalvesConfig()), device="cpu")
    for (mixture, rate), out in zip(clips, outputs):
        np.testing.assert_allclose(out, alone(mixture, rate), atol=1e-6)


def test_refused_page_locked_memory_leaves_pageable_copies_with_one_warning(monkeypatch, caplog):
    real_empty = torch.empty

    def refusing(*args, pin_memory=False, **kwargs):
        if pin_memory:
            raise RuntimeError("CUDA error: out of memory")
        return real_empty(*args, **kwargs)

    def runner() -> cuda_path.CudaBatchRunner:
        return cuda_path.CudaBatchRunner(Halves(HalvesConfig()), torch.device("cpu"), "fp32", graphs=False,
                                         probe_samples=800, sample_rate=RATE)

    pieces = [speech(0.1, 0), speech(0.1, 1)]
    expected = runner()(pieces)
    refused = runner()
    refused.page_locked = True  # as on CUDA
    monkeypatch.setattr(torch, "empty", refusing)
    caplog.set_level(logging.WARNING, logger="cocktailparty")
    for _ in range(2):
        np.testing.assert_array_equal(refused(pieces), expected)
    assert not refused.page_locked
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["page-locked host memory refused"]


def test_the_cuda_batch_call_runs_on_the_cpu_too():
    """Without graphs, CudaBatchRunner needs no GPU: the Separator's CUDA plumbing (the probe,
    batches across files, rescaling on the device) run on the CPU gives the CPU path's output
    to rounding. Only the budget, measured from free GPU memory, is set by hand."""
    model = tiny_tdanet()
    recordings = [(speech(s, seed=i), RATE) for i, s in enumerate([1.0, 1.0, 3.3, 0.7, 1.0])]
    separator = Separator(model, device="cpu", chunk_seconds=1.0, overlap_seconds=0.25)
    separator._cuda = cuda_path.CudaBatchRunner(model, torch.device("cpu"), "fp32", False, separator.chunk, RATE)
    separator._budget = 4 * RATE  # what budget_samples would measure on a GPU
    outputs = list(separator.separate_many(recordings))
    assert separator._cuda.profile == cuda_path.ModelProfile("fp32", 0.0, RATE)
    alone = Separator(model, device="cpu", chunk_seconds=1.0, overlap_seconds=0.25)
    for (mixture, rate), out in zip(recordings, outputs):
        expected = alone(mixture, rate)
        np.testing.assert_allclose(out, expected, atol=1e-5 * max(1.0, np.abs(expected).max()))


# --- benchmarks/separate_throughput.py -----------------------------------------------------


def test_the_throughput_benchmark_refuses_without_cuda(monkeypatch, capsys):
    from tests.helpers import load_benchmark

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert load_benchmark("separate_throughput").main([]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_the_throughput_benchmark_smoke_run_prints_its_table(capsys):
    from tests.helpers import load_benchmark

    assert load_benchmark("separate_throughput").main(["--smoke", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "folder: 20 x 0.5 s" in out and "one file of 0.5 min" in out and "x real time" in out


def test_the_runner_calls_the_model_without_its_own_graphs():
    # The runner captures its batches itself: a model's inference graphs inside it would only hold memory.
    from cocktailparty.core.cuda_graphs import graphs_allowed
    from tests.helpers import recording_graphs_allowed

    Watched, allowed = recording_graphs_allowed(Halves)
    model = Watched(HalvesConfig()).eval()
    runner = cuda_path.CudaBatchRunner(model, torch.device("cpu"), "fp32", graphs=False, probe_samples=800,
                                       sample_rate=RATE)
    runner(np.zeros((2, 800), dtype=np.float32))
    assert allowed and not any(allowed)
    assert graphs_allowed()

