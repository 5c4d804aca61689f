"""The Separator's path on a CUDA device: batches through CUDA graphs, in half precision where it is safe.

A :class:`~cocktailparty.inference.separate.Separator` on CUDA hands every batch of
equal-length pieces (chunks of long recordings, or whole short ones, side by side) to a
:class:`CudaBatchRunner`, which

- decides once per model (:func:`model_profile`) which precision to run in: the first of
  :data:`HALF_PRECISIONS` whose autocast output stays within :data:`MIN_SNR_DB` of fp32's,
  else fp32; and how many bytes of GPU memory a sample of input costs (which sizes the batches);
- runs a batch shape eagerly the first time it meets it and captures it as a CUDA graph the
  second time (:class:`ShapeGraphs`): fixed-length chunks repeat their shape batch after
  batch, so the graph's launch-free replays pay off, while a length met once (one file of
  an odd length) is never captured;
- puts every estimate back at its mixture's scale on the device (:func:`rescale_batch`), so
  the host only copies finished rows out;
- queues all of that without waiting for the device (:meth:`CudaBatchRunner.submit`: inputs
  and outputs go through page-locked memory, on copy streams beside the model's, the fp16 overflow check is a flag copied back with
  the estimates, the rescaling's pseudo-inverse needs no host synchronisation), so the
  Separator collects one batch and prepares the next while the GPU runs another.

The runner owns the graph policy for its batches: the model's own inference graphs
(:func:`~cocktailparty.core.cuda_graphs.replay_inference`) are off in its model calls
(:func:`forward_in`).

Everything except the CUDA calls themselves (the captures, the memory figures of
:func:`run_measuring_peak` and :func:`free_memory`) runs on any device, so the CPU tests
cover the logic. The CPU path of the Separator does not come here: it keeps its per-chunk
numpy code, bit for bit.
"""

from __future__ import annotations

import functools
import logging
import weakref
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..core.cuda_graphs import ShapeGraphs, capture_graph, graphs_off, one_line

log = logging.getLogger("cocktailparty")

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# A half precision is used only if its output stays this close to fp32's (the SNR of its output
# against fp32's as reference, on the probe). Issue #19's bar: at 40 dB the deviation is some
# 30 dB below the error separation itself leaves (the bundled models' SI-SNRi is 5-10 dB).
MIN_SNR_DB = 40.0
# What "auto" tries, in order. fp16 first: with fp16 inputs torch hands depthwise convs to
# cuDNN, while in bf16 it runs its own depthwise kernel, which took 42% of the default model's
# GPU time (H200, torch 2.11, 80 x 4 s per call: fp16 268 ms, bf16 374 ms, fp32 440 ms). fp16's
# 10 mantissa bits also keep the default 56 dB from fp32, where bf16's 7 keep 32-40, at the bar
# or under it. Its narrow range is the risk: an overflow on the probe gives NaN and rules it out, and
# a batch that overflows later is run again in fp32 (CudaBatchRunner).
HALF_PRECISIONS = ("fp16", "bf16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# The most audio one model call takes by default, at the model's rate: 32 chunks of 10 s or
# 80 files of 4 s. Meant to keep an H200 busy (not yet tuned on one: `--batch-seconds` of
# benchmarks/separate_throughput.py compares others) while the activations stay a few GB: a
# bundled TDANet peaks at 54 MB for 4 s of 16-kHz audio on the CPU, ~4.4 GB for 320 s.
MAX_BATCH_SECONDS = 320.0
# The share of free GPU memory one batch's activations may take: the graphs' shared pool holds
# as much again (see CudaBatchRunner), and the rest is headroom for fragmentation.
MEMORY_FRACTION = 0.4
PROBE_BATCH = 2
PROBE_SEED = 1234


@dataclass(frozen=True)
class ModelProfile:
    """What the CUDA path measured of a model, once.

    precision: ``"fp16"``, ``"bf16"`` or ``"fp32"``, as it runs.
    bytes_per_sample: peak GPU memory of an fp32 forward per input sample, measured on a batch
        of pieces of ``probe_samples`` (0 off CUDA).
    probe_samples: the probe's length. Longer pieces run one per call: memory per sample
        grows with length (TDANet's global attention is quadratic in it).
    """

    precision: str
    bytes_per_sample: float
    probe_samples: int


def check_precision(precision: str, name: str = "precision") -> str:
    """``precision`` if it is one of :data:`PRECISIONS`; else a ValueError naming ``name``
    (the argument, or the environment variable it came from)."""
    if precision not in PRECISIONS:
        raise ValueError(f"{name} must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def snr_db(estimate: torch.Tensor, reference: torch.Tensor) -> float:
    """SNR of ``estimate`` against ``reference`` (any equal shapes), in dB; inf when equal."""
    estimate, reference = estimate.double(), reference.double()
    error = (estimate - reference).square().sum()
    if error == 0:
        return float("inf")
    return float(10 * torch.log10(reference.square().sum() / error))  # NaN stays NaN


def choose_precision(requested: str, measure_snr: Callable[[str], float],
                     candidates: tuple[str, ...] = HALF_PRECISIONS) -> str:
    """The precision to run in: ``requested`` unless it is ``"auto"``; then the first of
    ``candidates`` whose ``measure_snr(precision)`` (its output against fp32's, in dB) reaches
    :data:`MIN_SNR_DB`, else ``"fp32"``. A NaN, or a model that fails in a precision, rules
    that precision out."""
    if check_precision(requested) != "auto":
        return requested
    for precision in candidates:
        try:
            snr = measure_snr(precision)
        except RuntimeError as err:  # an op without a half kernel: not worth failing the run for
            log.info("%s autocast failed on the probe (%s)", precision, one_line(err))
            continue
        log.info("%s output is %.1f dB SNR from fp32's on the probe (needed: %g dB)", precision, snr, MIN_SNR_DB)
        if snr >= MIN_SNR_DB:
            return precision
    log.info("running in fp32")
    return "fp32"


def forward_in(model: nn.Module, x: torch.Tensor, precision: str) -> torch.Tensor:
    """``model(x)`` as float32 ``(B, C, T)`` from ``x (B, T)``, under autocast for ``"bf16"`` and ``"fp16"``.

    Autocast's weight-cast cache is off: a cache filled while a CUDA graph is captured would
    hold casts made in the graph's pool, stale for the next call. The model's own inference
    graphs are off (:func:`~cocktailparty.core.cuda_graphs.graphs_off`): every model call of the
    runner comes through here, and the runner captures its batches itself.
    """
    autocast = torch.autocast(x.device.type, dtype=_DTYPES.get(precision, torch.bfloat16),
                              enabled=precision in _DTYPES, cache_enabled=False)
    with graphs_off(), autocast:
        return model(x).float()


def run_measuring_peak(fn: Callable[[], torch.Tensor], device: torch.device) -> tuple[torch.Tensor, int]:
    """``fn()`` and the peak GPU memory it allocated beyond what was allocated before (0 off CUDA)."""
    if device.type != "cuda":
        return fn(), 0
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    out = fn()
    torch.cuda.synchronize(device)
    return out, torch.cuda.max_memory_allocated(device) - before


@torch.inference_mode()
def measure_model(model: nn.Module, probe: torch.Tensor, requested: str) -> ModelProfile:
    """A model's :class:`ModelProfile` from one fp32 forward of ``probe (B, T)`` (on the model's
    device) and, for ``requested == "auto"``, one in each half precision tried (see
    :func:`choose_precision`) compared with it."""
    reference, peak = run_measuring_peak(lambda: forward_in(model, probe, "fp32"), probe.device)
    candidates = HALF_PRECISIONS
    if probe.is_cuda and not torch.cuda.is_bf16_supported():
        candidates = tuple(p for p in candidates if p != "bf16")
    precision = choose_precision(requested, lambda p: snr_db(forward_in(model, probe, p), reference), candidates)
    return ModelProfile(precision, peak / probe.numel(), probe.shape[-1])


# Per model object, so that Separators made again and again for one loaded model (the serve
# page makes one per job) measure it once. Weak: a model dropped by its owner is forgotten.
_PROFILES: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def model_profile(model: nn.Module, device: torch.device, requested: str, probe_samples: int,
                  sample_rate: int) -> ModelProfile:
    """:func:`measure_model` on a speech-like probe of ``PROBE_BATCH x probe_samples``, once
    per (model, requested precision, probe length)."""
    from .export import speech_like_mixtures  # the export check's inputs: what a separator meets

    key = (requested, probe_samples)
    cached = _PROFILES.setdefault(model, {})
    if key not in cached:
        generator = torch.Generator().manual_seed(PROBE_SEED)
        probe = speech_like_mixtures(PROBE_BATCH, probe_samples, sample_rate, generator).to(device)
        cached[key] = measure_model(model, probe, requested)
    return cached[key]


def free_memory(device: torch.device) -> int:
    """Bytes a batch may use on a CUDA ``device``: free on the device plus what torch's
    allocator holds unused."""
    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def batch_budget(free_bytes: int, bytes_per_sample: float, sample_rate: int,
                 max_seconds: float = MAX_BATCH_SECONDS) -> int:
    """Input samples per model call: ``max_seconds`` of audio, fewer if their activations
    would take more than :data:`MEMORY_FRACTION` of ``free_bytes``; at least 1."""
    by_memory = MEMORY_FRACTION * free_bytes / bytes_per_sample if bytes_per_sample > 0 else float("inf")
    return max(1, int(min(max_seconds * sample_rate, by_memory)))


# ----------------------------------------------------------------------------- scale


def symmetric_pinv(matrices: torch.Tensor, sweeps: int | None = None) -> torch.Tensor:
    """The pseudo-inverse of symmetric matrices ``(B, C, C)``, as ``torch.linalg.pinv(...,
    hermitian=True)`` gives it (eigenvalues under ``C * eps * max |eigenvalue|`` count as zero),
    without a host synchronisation.

    Why not torch's: on CUDA its ``eigh`` waits for the device to check for errors, so a batch's
    rescaling would stall the host until the model's forward is done, and the Separator could
    not prepare the next batch meanwhile. These matrices are tiny (C talkers), so cyclic Jacobi
    rotations, batched with torch ops, find the eigenvectors: a 2 x 2 matrix in one rotation,
    larger ones converge quadratically in a few sweeps (``sweeps``; default 1 for C <= 2, else 10).
    """
    size = matrices.shape[-1]
    if sweeps is None:
        sweeps = 1 if size <= 2 else 10
    a = matrices.clone()
    vectors = torch.eye(size, dtype=a.dtype, device=a.device).expand_as(a).clone()
    for _ in range(sweeps):
        for p in range(size - 1):
            for q in range(p + 1, size):
                apq, app, aqq = a[:, p, q], a[:, p, p], a[:, q, q]
                # The rotation that zeroes a[p, q] (the smaller of the two angles that do).
                zero = apq == 0
                theta = (aqq - app) / (2 * torch.where(zero, torch.ones_like(apq), apq))
                tangent = torch.where(theta >= 0, 1.0, -1.0) / (theta.abs() + torch.sqrt(theta * theta + 1))
                tangent = torch.where(zero, torch.zeros_like(tangent), tangent)
                cos = torch.rsqrt(tangent * tangent + 1)
                sin = tangent * cos
                rotation = torch.eye(size, dtype=a.dtype, device=a.device).repeat(a.shape[0], 1, 1)
                rotation[:, p, p], rotation[:, q, q], rotation[:, p, q], rotation[:, q, p] = cos, cos, sin, -sin
                a = rotation.transpose(1, 2) @ a @ rotation
                vectors = vectors @ rotation
    values = torch.diagonal(a, dim1=1, dim2=2)  # (B, C)
    cutoff = size * torch.finfo(a.dtype).eps * values.abs().amax(-1, keepdim=True)
    inverse = torch.where(values.abs() > cutoff, 1 / torch.where(values == 0, 1.0, values), 0.0)
    return (vectors * inverse.unsqueeze(1)) @ vectors.transpose(1, 2)


def rescale_batch(estimates: torch.Tensor, mixtures: torch.Tensor) -> torch.Tensor:
    """:func:`~cocktailparty.inference.separate.match_mixture_scale` for a batch, on the
    estimates' device and without waiting for it: ``(B, C, T)``, ``(B, T)`` -> float32 ``(B, C, T)``.

    The same fit: the gains that best rebuild each mixture from its estimates (least squares,
    signs included), or, where a track would then exceed twice the mixture's RMS (or the fit
    is not finite), each estimate's own projection gain. Solved in float64 through the
    C x C normal equations with a pseudo-inverse (:func:`symmetric_pinv`: minimum-norm gains for
    a rank-deficient fit, as numpy's lstsq gives), so it agrees with the numpy version to
    rounding (the gains are rounded to float32 before they scale the float32 estimates, where numpy
    scales in float64: an error of a unit in the last place). Why a second version: numpy's lstsq
    costs about 1 ms of host time per piece, a second per 1,000 files, more than an H200 takes to
    separate them. The CPU path keeps the numpy one, so its outputs stay bit-identical.
    """
    batch, talkers, _ = estimates.shape
    # One float64 copy of estimates and mixture side by side, and one batched product gives every
    # sum the fit needs: the Gram matrix, each estimate with the mixture, and each one's energy.
    rows = torch.empty((batch, talkers + 1, estimates.shape[-1]), dtype=torch.float64, device=estimates.device)
    rows[:, :talkers] = estimates
    rows[:, talkers] = mixtures
    products = rows @ rows.transpose(1, 2)  # (B, C + 1, C + 1)
    gram, correlation = products[:, :talkers, :talkers], products[:, :talkers, talkers]  # (B, C, C), (B, C)
    energy, mixture_energy = torch.diagonal(gram, dim1=1, dim2=2), products[:, talkers, talkers:]  # (B, C), (B, 1)
    gains = (symmetric_pinv(gram) @ correlation.unsqueeze(-1)).squeeze(-1)
    # Written as "not all within bounds" so that a NaN gain counts as too loud.
    too_loud = ~(gains.square() * energy <= 4.0 * mixture_energy).all(-1, keepdim=True)
    gains = torch.where(too_loud, correlation / energy.clamp_min(1e-20), gains)
    return estimates.float() * gains.float().unsqueeze(-1)


# ----------------------------------------------------------------------------- the runner


class CudaBatchRunner:
    """A model on a CUDA device as the Separator's batch call: ``B`` float32 numpy pieces of ``T``
    samples at the model's rate -> ``(B, C, T)`` float32 numpy estimates, each at its piece's
    scale. :meth:`submit` queues a batch on the device and returns at once; its
    :meth:`PendingBatch.result` waits for the estimates. So the host can collect one batch
    and prepare the next while the device runs another; ``runner(pieces)`` does both in turn.

    Args:
        model: in eval mode, on ``device``.
        precision: ``"auto"`` (fp16 or bf16 where it is safe for this model), ``"fp32"``, ``"bf16"``
            or ``"fp16"``.
        graphs: replay repeated batch shapes from CUDA graphs (:class:`ShapeGraphs`); False
            runs every batch eagerly (for debugging).
        probe_samples: the longest piece the Separator batches (its chunk length): the probe
            is this long.
        sample_rate: the model's rate (for the probe and the budget).

    All graphs share one memory pool. That is safe with batches in flight: everything that
    reads a graph's output (the rescaling, the overflow check) is queued on the same stream
    before the next replay, so a pool as large as the biggest shape's forward serves them all
    (the budget's :data:`MEMORY_FRACTION` counts it once).
    """

    def __init__(self, model: nn.Module, device: torch.device, precision: str, graphs: bool, probe_samples: int,
                 sample_rate: int):
        self.model, self.device = model, device
        self.requested, self.probe_samples, self.sample_rate = check_precision(precision), probe_samples, sample_rate
        self._profile: ModelProfile | None = None
        self.overflowed = False  # an fp16 batch had to run again in fp32
        self.page_locked = device.type == "cuda"  # copies through page-locked memory (False if refused)
        # Copies to and from the device run on streams of their own, beside the model's: a batch's
        # inputs go up while the batch before it runs, and its estimates come down while the next
        # one runs (on the model's stream they took 14 ms of a 1.5-s folder of 1,000 x 4 s, H200).
        self._uploads = torch.cuda.Stream(device) if self.page_locked else None
        self._downloads = torch.cuda.Stream(device) if self.page_locked else None
        self.graphs = None
        if graphs:
            capture = functools.partial(capture_graph, pool=torch.cuda.graph_pool_handle())
            self.graphs = ShapeGraphs(self._forward, capture=capture)

    @property
    def profile(self) -> ModelProfile:
        """Measured at the first use (two forwards of the probe), once per model."""
        if self._profile is None:
            self._profile = model_profile(self.model, self.device, self.requested, self.probe_samples,
                                          self.sample_rate)
        return self._profile

    def budget_samples(self, max_seconds: float) -> int:
        """Input samples per call: ``max_seconds`` of audio, or what fits in memory."""
        return batch_budget(free_memory(self.device), self.profile.bytes_per_sample, self.sample_rate, max_seconds)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return forward_in(self.model, x, self.profile.precision)

    def __call__(self, pieces: Sequence[np.ndarray]) -> np.ndarray:
        return self.submit(pieces).result()

    @torch.inference_mode()
    def submit(self, pieces: Sequence[np.ndarray]) -> "PendingBatch":
        """Queue the model on ``pieces`` (``B`` arrays of ``T`` samples, or a ``(B, T)`` array),
        their rescaling, and the copy of the estimates back to the host. On CUDA nothing here
        waits for the device, once a batch shape has been captured."""
        x = self._to_device(pieces)
        estimates = self.graphs(x) if self.graphs is not None else self._forward(x)
        # fp16 tops out at 65504: an input far louder than the probe may overflow inside.
        finite = torch.isfinite(estimates).all() if self.profile.precision == "fp16" else None
        return PendingBatch(self, x, rescale_batch(estimates, x), finite)

    def _to_device(self, pieces: Sequence[np.ndarray]) -> torch.Tensor:
        """``pieces`` stacked as float32 ``(B, T)`` on the device. On CUDA they are stacked into
        page-locked memory: a copy from pageable memory would first wait for everything queued
        on the stream (CUDA's rule for pageable transfers), the batch before this one included."""
        staging = self._page_locked((len(pieces), len(pieces[0])))
        if staging is not None:
            np.stack(pieces, out=staging.numpy())
            # torch's page-locked allocator keeps the block until this copy is done.
            with torch.cuda.stream(self._uploads):
                x = staging.to(self.device, non_blocking=True)
            model_stream = torch.cuda.current_stream(self.device)
            model_stream.wait_stream(self._uploads)
            x.record_stream(model_stream)  # its memory is not reused before the model's stream is done with it
            return x
        return torch.from_numpy(np.stack(pieces).astype(np.float32, copy=False)).to(self.device)

    def _page_locked(self, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor | None:
        """An empty page-locked host tensor, from torch's caching allocator (cheap once warm);
        None, with one warning, if the system refuses one: copies then take pageable memory."""
        if not self.page_locked:
            return None
        try:
            return torch.empty(shape, dtype=dtype, pin_memory=True)
        except RuntimeError as err:
            log.warning("page-locked host memory refused (%s); copies to and from the GPU will wait for it",
                        one_line(err))
            self.page_locked = False
            return None

    def copy_to_host(self, estimates: torch.Tensor, finite: torch.Tensor | None
                     ) -> tuple[torch.Tensor, torch.Tensor | None, torch.cuda.Event] | None:
        """Queue the copy of a batch's ``estimates`` and overflow flag ``finite`` (or None) into
        page-locked host memory, on the download stream once the model's stream has computed them:
        the host tensors and an event recorded after the copies; None where page-locked memory is
        refused (the caller's ``.cpu()`` copies then)."""
        host = self._page_locked(tuple(estimates.shape))
        flag = self._page_locked((), torch.bool) if finite is not None else None
        if not self.page_locked:  # one of them was refused
            return None
        self._downloads.wait_stream(torch.cuda.current_stream(estimates.device))
        with torch.cuda.stream(self._downloads):
            host.copy_(estimates, non_blocking=True)
            if flag is not None:
                flag.copy_(finite, non_blocking=True)
            done = torch.cuda.Event()
            done.record()
        for device_tensor in (estimates, finite):  # not reused before the copies are done
            if device_tensor is not None:
                device_tensor.record_stream(self._downloads)
        return host, flag, done

    def run_again_in_fp32(self, x: torch.Tensor) -> torch.Tensor:
        """The rescaled estimates of ``x`` from an fp32 forward, for a batch whose fp16 one overflowed."""
        if not self.overflowed:
            log.warning("an fp16 batch overflowed; it and any later such batch run again in fp32 "
                        "(COCKTAIL_PRECISION=bf16 or fp32 avoids the second run)")
        self.overflowed = True
        with torch.inference_mode():
            return rescale_batch(forward_in(self.model, x, "fp32"), x)


class PendingBatch:
    """A batch queued by :meth:`CudaBatchRunner.submit`: its estimates are being copied to
    page-locked host memory (on CUDA), and :meth:`result` waits for them."""

    def __init__(self, runner: CudaBatchRunner, x: torch.Tensor, estimates: torch.Tensor,
                 finite: torch.Tensor | None):
        self.runner, self.x, self.estimates, self.finite = runner, x, estimates, finite
        self.done: torch.cuda.Event | None = None
        copied = runner.copy_to_host(estimates, finite) if estimates.is_cuda else None
        if copied is not None:
            self.estimates, self.finite, self.done = copied

    def result(self) -> np.ndarray:
        """``(B, C, T)`` float32 estimates: a new array (never a view of page-locked memory,
        which is the system's to spare while a user keeps the outputs)."""
        if self.done is not None:
            self.done.synchronize()
        estimates = self.estimates
        if self.finite is not None and not bool(self.finite):
            estimates = self.runner.run_again_in_fp32(self.x)
        host = estimates.cpu().numpy()
        return host.copy() if estimates.is_pinned() else host
