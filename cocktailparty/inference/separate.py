"""Inference: the :class:`Separator` API and the ``cocktail separate`` command.

A separator wraps a model with everything a recording needs before and after it: mixing
down to mono, resampling to the model's rate and back, chunking long recordings with
overlap (bounded memory), keeping each talker on the same track from chunk to chunk, and
putting the estimates back at the mixture's scale.

    >>> separator = Separator.from_pretrained()          # the bundled default
    >>> waveform, sample_rate = soundfile.read("meeting.wav")  # (frames,) or (frames, channels)
    >>> sources = separator(waveform, sample_rate)       # (num_sources, frames) at sample_rate
    >>> for sources in separator.separate_many(recordings):  # [(waveform, rate), ...], batched
    ...     ...

Pieces of equal length (the chunks of long recordings; whole short recordings of one
length, as a folder of clips often holds) run side by side in one model call, up to
``batch_seconds`` of audio. On CUDA that is the default, and the batches run through CUDA
graphs, in fp16 or bf16 where that is safe for the model (:mod:`.cuda_path`); elsewhere each piece
runs alone unless ``batch_seconds`` asks for more.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import sys
from collections import Counter, deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, NamedTuple, Sequence, Union

import numpy as np
import torch
from torch import nn

from ..core import audio
from ..core.checkpoint import load_model
from ..core.cpu import keep_freed_memory
from ..core.cuda_graphs import graphs_allowed
from ..core.device import resolve_device
from ..core.errors import AudioError, CocktailError
from ..core.progress import Bar, Stages
from .chunks import chunk_bounds
from .cuda_path import MAX_BATCH_SECONDS, CudaBatchRunner, check_precision

if TYPE_CHECKING:  # imported where used: voice_select loads only for extract and verify
    from .voice_select import VoiceSelector

log = logging.getLogger("cocktailparty")

Array = Union[np.ndarray, torch.Tensor]

# Debugging switches for the CUDA path, read when a Separator is made without the argument:
# COCKTAIL_PRECISION=fp32 (or bf16, fp16; default auto) and COCKTAIL_CUDA_GRAPHS=0.
PRECISION_ENV = "COCKTAIL_PRECISION"
# Batches left running on the device while the host collects the one before them and prepares
# the next (stitching, copies, reading): on CUDA the GPU then never waits for the host's share.
BATCHES_AHEAD = 1


class Separator:
    """Separate the talkers of a recording with a trained model.

    Args:
        model: a separation model, ``(batch, time) -> (batch, C, time)`` at
            ``model.config.sample_rate``; or a runner with ``sample_rate``,
            ``num_sources`` and a call ``(time,) -> (C, time)`` numpy, such as
            :class:`~cocktailparty.inference.onnxrun.OnnxRunner` (see :meth:`from_onnx`).
        device: where to run a torch model (default: CUDA when present).
        chunk_seconds: recordings longer than this are processed in chunks of this length,
            which bounds memory; ``None`` processes them whole.
        overlap_seconds: overlap between chunks, used both to align the talkers' order
            across chunks and to cross-fade.
        batch_seconds: at most this much audio per model call, in pieces of one length (see
            the module's notes). None: on CUDA :data:`~.cuda_path.MAX_BATCH_SECONDS`, less if
            the GPU's free memory asks for it; elsewhere one piece per call.
        precision: on CUDA ``"auto"`` (fp16, else bf16, when its output stays within 40 dB
            SNR of fp32's for this model, else fp32), ``"fp32"``, ``"bf16"`` or ``"fp16"``. On
            the CPU ``"bf16"`` runs the model under bf16 autocast, ``"auto"`` does so where
            the CPU has AMX bf16 units (:func:`cpu_has_bf16_matrix_units`), and any other
            value runs fp32. None: the ``COCKTAIL_PRECISION`` environment variable, else
            ``"auto"``.
        cuda_graphs: CUDA only: replay batch shapes that repeat from CUDA graphs. None: on
            unless the environment has ``COCKTAIL_CUDA_GRAPHS=0``.
    """

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device | None = None,
        chunk_seconds: float | None = 10.0,
        overlap_seconds: float = 2.0,
        *,
        batch_seconds: float | None = None,
        precision: str | None = None,
        cuda_graphs: bool | None = None,
    ):
        self._cuda = None
        if isinstance(model, nn.Module):
            self.device = resolve_device(device) if not isinstance(device, torch.device) else device
            self.model = model.to(self.device).eval()
            self._forward = self._torch_forward
            if self.device.type == "cpu":
                # Freed activations stay in the heap for the next ones instead of being
                # re-mapped page by page: a third of a CPU forward's time (see cpu.py).
                keep_freed_memory()
            self.sample_rate: int = model.config.sample_rate
            self.num_sources: int = model.config.num_sources
        else:
            # A runner (numpy in, numpy out): the chunking below never touches torch.
            self.device = None
            self.model = model
            self._forward = self._runner_forward
            self.sample_rate = model.sample_rate
            self.num_sources = model.num_sources
        if chunk_seconds is not None and overlap_seconds * 2 > chunk_seconds:
            raise ValueError("overlap_seconds must be at most half of chunk_seconds")
        self.chunk = None if chunk_seconds is None else int(chunk_seconds * self.sample_rate)
        self.overlap = int(overlap_seconds * self.sample_rate)
        self.batch_seconds = batch_seconds
        self.precision = requested_precision() if precision is None else check_precision(precision)
        self._cpu_bf16 = self.device is not None and self.device.type == "cpu" and cpu_runs_bf16(self.precision)
        if cuda_graphs is None:
            cuda_graphs = graphs_allowed()
        self.cuda_graphs = cuda_graphs
        if self.device is not None and self.device.type == "cuda":
            # The probe is as long as the longest piece that is batched: one chunk (10 s when
            # recordings run whole; longer ones then run one per call).
            probe = self.chunk or int(10.0 * self.sample_rate)
            self._cuda = CudaBatchRunner(self.model, self.device, self.precision, self.cuda_graphs, probe,
                                         self.sample_rate)
        self._budget: int | None = None

    @classmethod
    def from_pretrained(cls, name_or_path: str | None = None, device: str | None = None, **kwargs) -> "Separator":
        """A bundled model name, checkpoint path, config or architecture (see ``load_model``)."""
        device = resolve_device(device)
        return cls(load_model(name_or_path, device), device=device, **kwargs)

    @classmethod
    def from_onnx(cls, path: str, threads: int | None = None, **kwargs) -> "Separator":
        """An ONNX file from ``cocktail export``, run with onnxruntime on the CPU."""
        from .onnxrun import OnnxRunner

        return cls(OnnxRunner(path, threads=threads), **kwargs)

    def __call__(self, waveform: Array, sample_rate: int, progress: bool = False, *,
                 channels_first: bool | None = None) -> np.ndarray:
        """Separate one recording.

        Args:
            waveform: numpy or torch, as readers return it: ``(time,)``, ``(frames, channels)``
                (``soundfile.read``) or ``(channels, frames)`` (``torchaudio.load``,
                ``librosa.load(mono=False)``); channels are averaged. The channel axis is the
                one of at most 8 entries when the other is longer; otherwise the layout is
                ambiguous and refused unless ``channels_first`` gives it.
            sample_rate: its rate; the output comes back at the same rate.
            progress: show a progress bar over chunks.
            channels_first: ``True`` for ``(channels, time)``, ``False`` for ``(time, channels)``;
                ``None`` (default) tells them apart by the axes' lengths.

        Returns:
            float32 ``(num_sources, time)``, the same length as the input.
        """
        at_model_rate, length = self._to_model_rate(waveform, sample_rate, channels_first)
        estimates = self.separate_at_model_rate(at_model_rate, progress=progress)
        return self._to_input_rate(estimates, sample_rate, length)

    def separate_many(self, recordings: Iterable[tuple[Array, int]], progress: bool = False, *,
                      channels_first: bool | None = None) -> Iterator[np.ndarray]:
        """Separate many recordings, batching pieces of equal length across them.

        ``recordings``: ``(waveform, sample_rate)`` pairs, as :meth:`__call__` takes them; read
        lazily, a few batches ahead. Yields, in their order, what :meth:`__call__` returns
        for each (to float rounding: a row of a larger batch may round differently).
        """
        def at_model_rate():
            for waveform, rate in recordings:
                mixture, length = self._to_model_rate(waveform, rate, channels_first)
                yield (rate, length), mixture

        for (rate, length), estimates in self.separate_batched(at_model_rate(), progress=progress):
            yield self._to_input_rate(estimates, rate, length)

    def separate_at_model_rate(self, mixture: np.ndarray, progress: bool = False) -> np.ndarray:
        """``(time,)`` at the model's rate -> ``(C, time)``, chunked when long."""
        [(_, estimates)] = self.separate_batched([(None, mixture)], progress=progress)
        return estimates

    def separate_batched(self, mixtures: Iterable[tuple[Any, np.ndarray]],
                         progress: bool = False) -> Iterator[tuple[Any, np.ndarray]]:
        """The work of every ``separate`` method: ``(key, mixture (time,))`` pairs at the model's
        rate in, ``(key, estimates (C, time))`` out, in input order.

        Each mixture is cut into chunks (:meth:`chunk_starts`); chunks of one length wait in a
        queue until there are :meth:`pieces_per_batch` of them, which then run as one call.
        What waits is bounded: once the queued pieces add up to a batch's worth of audio
        (they have assorted lengths), they all run, each length as a smaller batch; and
        mixtures are read from ``mixtures`` only as earlier ones finish or wait. On CUDA a
        batch's estimates are collected only once the next batch is submitted
        (:data:`BATCHES_AHEAD`), so that the device works while the host stitches. So memory
        holds about one batch (two on CUDA), plus any finished outputs that wait for an earlier one.
        """
        queues: dict[int, list[_Piece]] = {}
        in_flight: deque[_Recording] = deque()
        submitted: deque[tuple[list[_Piece], Callable[[], Sequence[np.ndarray]]]] = deque()
        ahead = BATCHES_AHEAD if self._cuda is not None else 0  # elsewhere a batch is done when submitted
        with Bar(total=0, enabled=progress, desc="chunks", unit="chunk", leave=False) as bar:
            def collect() -> None:
                pieces, estimates = submitted.popleft()
                for piece, estimate in zip(pieces, estimates()):
                    piece.recording.add(piece.index, estimate)
                bar.update(len(pieces))
                self._collected(len(pieces))

            def run(pieces: list[_Piece]) -> None:
                submitted.append((pieces, self._submit_batch([p.samples for p in pieces])))
                while len(submitted) > ahead:
                    collect()

            def finished() -> Iterator[tuple[Any, np.ndarray]]:
                while in_flight and in_flight[0].done:
                    recording = in_flight.popleft()
                    yield recording.key, recording.output

            for key, mixture in mixtures:
                recording = _Recording(key, mixture, self.chunk_starts(mixture.shape[0]), self.chunk, self.overlap,
                                       self.num_sources)
                in_flight.append(recording)
                bar.total += len(recording.starts)
                bar.refresh()
                for piece in recording.pieces():
                    queues.setdefault(piece.samples.shape[0], []).append(piece)
                for length, queue in queues.items():
                    size = self.pieces_per_batch(length)
                    while len(queue) >= size:
                        run(queue[:size])
                        del queue[:size]
                if sum(length * len(queue) for length, queue in queues.items()) >= self._budget_samples():
                    for queue in queues.values():
                        if queue:
                            run(queue)
                    queues.clear()
                yield from finished()
            for queue in queues.values():
                if queue:
                    run(queue)
            while submitted:
                collect()
            yield from finished()

    def chunk_starts(self, length: int) -> list[int]:
        """Where each chunk of a ``length``-sample mixture starts: ``[0]`` when it runs whole."""
        return [start for start, _ in chunk_bounds(length, self.chunk, self.overlap)]

    def pieces_per_batch(self, length: int) -> int:
        """How many pieces of ``length`` samples one model call takes: as many as
        ``batch_seconds`` (or the CUDA default) holds, at least one; one for pieces longer
        than the CUDA path's probe, whose memory per sample it has not measured."""
        if self._cuda is not None and length > self._cuda.profile.probe_samples:
            return 1
        return max(1, self._budget_samples() // length)

    def _budget_samples(self) -> int:
        """Input samples per model call (0: one piece per call); measured on CUDA at first use."""
        if self._budget is None:
            if self._cuda is not None:
                limit = MAX_BATCH_SECONDS if self.batch_seconds is None else self.batch_seconds
                self._budget = self._cuda.budget_samples(limit)
            else:
                self._budget = int((self.batch_seconds or 0) * self.sample_rate)
        return self._budget

    def _to_model_rate(self, waveform: Array, sample_rate: int, channels_first: bool | None) -> tuple[np.ndarray, int]:
        """A recording as float32 mono ``(time,)`` at the model's rate, and its length in input samples."""
        samples = audio.as_mono(waveform, channels_first)
        length = samples.shape[0]
        if length == 0 or not np.isfinite(samples).all():
            audio.validate(samples, sample_rate, "waveform")  # raises the one-line AudioError
        at_model_rate = audio.resample(samples, sample_rate, self.sample_rate)
        if at_model_rate.shape[0] == 0:
            # A few samples at a higher rate can resample to none; give the model one sample.
            at_model_rate = np.zeros(1, np.float32) + samples.mean()
        return at_model_rate, length

    def _to_input_rate(self, estimates: np.ndarray, sample_rate: int, length: int) -> np.ndarray:
        """``(C, time)`` at the model's rate back at ``sample_rate``, exactly ``length`` samples long."""
        estimates = audio.resample(estimates, self.sample_rate, sample_rate)
        if estimates.shape[1] < length:
            estimates = np.pad(estimates, ((0, 0), (0, length - estimates.shape[1])))
        return estimates[:, :length]

    def _collected(self, count: int) -> None:
        """Called as each batch's estimates are in, with its number of pieces: a hook for
        progress reports (the service's jobs)."""

    def _submit_batch(self, pieces: list[np.ndarray]) -> Callable[[], Sequence[np.ndarray]]:
        """The only model call: ``B`` pieces of ``T`` samples -> a call that returns their
        ``(B, C, T)`` estimates, each at its piece's scale. On CUDA the batch is queued on the
        device and that call waits for it; elsewhere it has run already."""
        if self._cuda is not None:
            return self._cuda.submit(pieces).result
        stacked = np.stack(pieces)
        estimates = [match_mixture_scale(estimate, piece) for estimate, piece in zip(self._forward(stacked), stacked)]
        return lambda: estimates

    @torch.inference_mode()
    def _torch_forward(self, pieces: np.ndarray) -> np.ndarray:
        """``(B, T)`` -> ``(B, C, T)``, numpy, off CUDA."""
        with torch.autocast("cpu", dtype=torch.bfloat16) if self._cpu_bf16 else contextlib.nullcontext():
            return self.model(torch.from_numpy(pieces).to(self.device)).float().cpu().numpy()

    def _runner_forward(self, pieces: np.ndarray) -> list[np.ndarray]:
        """A runner's ``(time,) -> (C, time)`` call for each of ``(B, T)`` pieces."""
        return [self.model(piece) for piece in pieces]


def requested_precision() -> str:
    """The precision ``COCKTAIL_PRECISION`` asks for, "auto" when unset (checked)."""
    return check_precision(os.environ.get(PRECISION_ENV) or "auto", PRECISION_ENV)


def cpu_runs_bf16(precision: str | None = None) -> bool:
    """Whether the CPU path runs the model under bf16 autocast at ``precision`` (None: the
    ``COCKTAIL_PRECISION`` environment variable, else "auto"): "bf16" does, "auto" does where
    the CPU has AMX bf16 units, anything else runs fp32."""
    if precision is None:
        precision = requested_precision()
    return precision == "bf16" or (precision == "auto" and cpu_has_bf16_matrix_units())


def cpu_has_bf16_matrix_units() -> bool:
    """Whether this CPU has AMX with bf16 (Intel Xeon since Sapphire Rapids), where the CPU
    path's "auto" runs bf16 autocast.

    Measured there (Dec 2026, 2 cores, the default model): 10 s on 2 threads 2.88 s -> 1.44 s,
    ``cocktail separate`` on 10 minutes real-time factor 0.368 -> 0.227, peak RSS 655 -> 510
    MiB. The output is 35-37 dB SNR from fp32's, under the 40 dB the CUDA path asks of a
    half precision's probe, but what that bar guards did not move: SI-SNRi on 60 real-voice
    mixtures +0.0002 +- 0.006 dB (largest change 0.08 dB). CPUs without bf16 units emulate it
    and run slower than fp32, and AVX-512 BF16 alone was not measured: those keep fp32.
    A capability, not a timing probe, decides, so a file separates the same way every time.
    """
    capabilities = getattr(torch.cpu, "get_capabilities", None)  # public since torch 2.x
    try:
        return bool(capabilities is not None and capabilities().get("amx_bf16"))
    except Exception:  # an unknown CPU or build: fp32 is always right
        return False


class _Piece(NamedTuple):
    """One chunk of a recording in flight: ``samples (T,)`` is a view of its mixture."""

    recording: "_Recording"
    index: int
    samples: np.ndarray


class _Recording:
    """One mixture in flight: its chunks, and its output stitched from their estimates in chunk
    order, whatever order the estimates come back in.

    Stitching: each chunk's talkers are put in the order that best matches the previous
    chunk's over their overlap (:func:`best_order`), and the two cross-fade linearly there.
    """

    def __init__(self, key: Any, mixture: np.ndarray, starts: list[int], chunk: int | None, overlap: int,
                 num_sources: int):
        self.key, self.mixture, self.starts, self.chunk, self.overlap = key, mixture, starts, chunk, overlap
        self.length = mixture.shape[0]
        self.output: np.ndarray | None = None
        self._waiting: dict[int, np.ndarray] = {}
        self._next = 0
        self._previous_tail: np.ndarray | None = None
        if len(starts) > 1:
            self.output = np.zeros((num_sources, self.length), np.float32)
            self._fade_in = np.linspace(0.0, 1.0, overlap + 2, dtype=np.float32)[1:-1]

    def pieces(self) -> list[_Piece]:
        if len(self.starts) == 1:
            return [_Piece(self, 0, self.mixture)]
        return [_Piece(self, i, self.mixture[start : start + self.chunk]) for i, start in enumerate(self.starts)]

    @property
    def done(self) -> bool:
        return self._next == len(self.starts)

    def add(self, index: int, estimate: np.ndarray) -> None:
        """Chunk ``index``'s estimate ``(C, T)``, at its piece's scale."""
        self._waiting[index] = estimate
        while self._next in self._waiting:
            self._place(self._next, self._waiting.pop(self._next))
            self._next += 1
        if self.done:
            self.mixture = None  # the pieces were views of it; nothing needs it now

    def _place(self, index: int, estimate: np.ndarray) -> None:
        if len(self.starts) == 1:
            self.output = estimate
            return
        start, output = self.starts[index], self.output
        if self._previous_tail is not None:
            overlap = min(self.overlap, estimate.shape[1])
            estimate = estimate[best_order(self._previous_tail[:, :overlap], estimate[:, :overlap])]
            # Linear cross-fade over the overlap: the previous chunk fades out as this one
            # fades in, so the two estimates of the same talker sum to one copy.
            ramp = self._fade_in[:overlap]
            output[:, start : start + overlap] *= 1.0 - ramp
            estimate[:, :overlap] *= ramp
        output[:, start : start + estimate.shape[1]] += estimate
        # The part of this chunk that the next one overlaps, before any fading (the fade-in
        # above touches only the first `overlap` samples, and hop >= overlap).
        self._previous_tail = estimate[:, self.chunk - self.overlap :]


def match_mixture_scale(estimates: np.ndarray, mixture: np.ndarray) -> np.ndarray:
    """Rescale each estimate to the mixture's level and polarity.

    Models trained on SI-SNR output sources at an arbitrary scale (the bundled TDANet's are
    ~35 dB louder than its input) and, SI-SNR being blind to sign, possibly inverted. The
    gains are the least-squares fit of the mixture by the estimates, signs included, so the
    tracks add back up to the recording and an inverted talker is turned the right way up
    (chunk alignment relies on it). A leaky estimate may get a negative gain: that is a
    polarity, not silence (clipping it to zero once silenced a talker). When estimates are
    nearly collinear the fit can cancel huge opposite gains; if any track would exceed twice
    the mixture's RMS, each estimate gets its own projection gain instead, which never makes
    a track louder than the mixture.

    Args:
        estimates: ``(C, time)``.
        mixture: ``(time,)``.
    """
    est, mix = estimates.astype(np.float64), mixture.astype(np.float64)
    energy = np.einsum("ct,ct->c", est, est)
    gains = np.linalg.lstsq(est.T, mix, rcond=None)[0]
    if np.any(gains ** 2 * energy > 4.0 * (mix @ mix)):
        gains = est @ mix / np.maximum(energy, 1e-20)
    return (est * gains[:, None]).astype(np.float32)


def best_order(reference: np.ndarray, estimate: np.ndarray) -> list[int]:
    """The order of ``estimate``'s rows that best matches ``reference``'s rows.

    Both are ``(C, time)``; the match maximises the summed correlation, exhaustively for
    small C and by the Hungarian algorithm beyond.
    """
    ref = reference - reference.mean(axis=1, keepdims=True)
    est = estimate - estimate.mean(axis=1, keepdims=True)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True) + 1e-8
    est /= np.linalg.norm(est, axis=1, keepdims=True) + 1e-8
    similarity = ref @ est.T  # (C_ref, C_est)
    count = similarity.shape[0]
    if count <= 4:
        best = max(itertools.permutations(range(count)), key=lambda p: sum(similarity[i, p[i]] for i in range(count)))
        return list(best)
    from scipy.optimize import linear_sum_assignment

    _, columns = linear_sum_assignment(-similarity)
    return list(columns)


def output_names(inputs: list[str]) -> dict[Path, Path]:
    """Every audio file under ``inputs`` -> the name its outputs start with, under ``-o``.

    The name is the file's path inside the folder given, without its extension
    (``x/a.wav`` -> ``x/a``), or the stem of a file given by name. Files of one run that would
    share a name keep their extension in it (``a.mp3``, ``a.ogg`` -> ``a-mp3``, ``a-ogg``);
    any that still clash (``x/a.wav`` and ``y/a.wav`` given as files) are numbered in input
    order (``a-wav``, ``a-wav-2``). So no two inputs of a run share an output. Names are
    compared ignoring case, as a case-insensitive file system would.
    """
    found = audio.find_audio_inputs(inputs)
    if not found:
        raise CocktailError(f"no audio files found in {', '.join(map(str, inputs))}")

    def key(name: Path) -> str:
        return name.as_posix().casefold()

    names = {path: relative.with_suffix("") for path, relative in found}
    shared = Counter(key(name) for name in names.values())
    for path, name in names.items():
        if shared[key(name)] > 1 and path.suffix:
            names[path] = name.with_name(f"{name.name}-{path.suffix[1:]}")
    wanted, given = {key(name) for name in names.values()}, set()
    for path, name in names.items():
        candidate, number = name, 2
        while key(candidate) in given or (candidate != name and key(candidate) in wanted):
            candidate, number = name.with_name(f"{name.name}-{number}"), number + 1
        names[path] = candidate
        given.add(key(candidate))
    return names


def process_files(names: dict[Path, Path], separator: Separator, out_dir: Path, endings: list[str], desc: str,
                  force: bool, quiet: bool, progress: bool = False,
                  keep: Callable[[np.ndarray], np.ndarray] | None = None) -> int:
    """Run ``separator`` over the files of ``names`` (from :func:`output_names`), writing its
    output ``i`` for a file to ``out_dir / (name + endings[i])``; ``keep``, when given, first
    maps a file's outputs ``(C, time)`` at the model's rate to the ``(K, time)`` to write.

    Files are read a few batches ahead of the model, so that pieces of several files share
    a model call (:meth:`Separator.separate_batched`); outputs are written as each file
    finishes, in input order. Existing outputs are skipped unless ``force``; a file that
    cannot be read or written is reported in one line and the others still run. ``quiet``
    leaves out the line per file on stdout, ``progress`` shows bars over files and chunks.
    Returns the exit status: 1 when any file failed.
    """
    failed = 0
    with Bar(total=len(names), enabled=progress, tick=1.0, desc=desc, unit="file") as files:
        def readable() -> Iterator[tuple[tuple[Path, list[Path], int, int], np.ndarray]]:
            nonlocal failed
            for path, name in names.items():
                targets = [out_dir / name.with_name(name.name + ending) for ending in endings]
                if not force and any(t.exists() for t in targets):
                    log.warning("%s: %s exists; skipping (use --force to overwrite)",
                                path, ", ".join(str(t) for t in targets if t.exists()))
                    files.update()
                    continue
                try:
                    samples, rate = audio.read(path, min_seconds=0.01)
                    mixture, length = separator._to_model_rate(samples, rate, None)
                except AudioError as err:
                    log.error("%s", err)
                    failed += 1
                    files.update()
                    continue
                yield (path, targets, rate, length), mixture

        for (path, targets, rate, length), estimates in separator.separate_batched(readable(), progress=progress):
            try:
                # All tracks of a file appear together or not at all (see audio.write_all).
                if keep is not None:
                    estimates = keep(estimates)
                audio.write_all(targets, separator._to_input_rate(estimates, rate, length)[: len(targets)], rate)
            except AudioError as err:
                log.error("%s", err)
                failed += 1
                continue
            finally:
                files.update()
            if not quiet:
                files.write(f"{path} -> {', '.join(str(t) for t in targets)}", file=sys.stdout)  # above the bar
    if failed:
        log.error("%d of %d file(s) failed", failed, len(names))
    return 1 if failed else 0


# --------------------------------------------------------------------------------------------
# One known talker: cocktail extract / cocktail verify and the page's extraction (a
# separator and a speaker embedder, voice_select.py; or talker-aware models, models/conditioning.py)
# --------------------------------------------------------------------------------------------


class TalkerPicker(NamedTuple):
    """How ``extract`` and ``verify`` find the enrolled talker.

    ``embedder`` None: ``model`` is talker-aware and its own speaker vectors decide (Tune-In's
    extractor and steering vectors). Otherwise ``model`` separates and ``embedder`` picks the
    output closest to the enrollment (:mod:`.voice_select`).
    """

    model: nn.Module
    name: str  # the model's name or path, as given or the bundled default's
    embedder: Any = None  # a voice_select.SpeakerEmbedder
    embedder_name: str | None = None

    @property
    def sample_rate(self) -> int:
        """The model's rate: enrollments are read at it."""
        return int(self.model.config.sample_rate)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def calibrated_threshold(self) -> tuple[float | None, str | None]:
        """verify's decision threshold for this picker and where it comes from: a Tune-In
        checkpoint's ``verify_threshold``, or for a bundled separator and embedder
        :data:`~.voice_select.CALIBRATED_THRESHOLDS`; ``(None, None)`` when none was calibrated."""
        from ..core.checkpoint import checkpoint_file, read_metadata
        from .voice_select import calibrated_threshold

        if self.embedder is None:
            ckpt = checkpoint_file(self.name)
            threshold = read_metadata(ckpt).get("verify_threshold") if ckpt else None
            return (threshold, f"calibrated in {ckpt.name}") if threshold is not None else (None, None)
        threshold = calibrated_threshold(self.name, self.embedder_name)
        return (threshold, f"calibrated for {self.name} with {self.embedder_name}") if threshold is not None \
            else (None, None)


def load_talker_picker(model: str | None, device: str | torch.device | None, what: str,
                       embedder: str | None = None) -> TalkerPicker:
    """The model (and embedder) that ``extract`` / ``verify`` (``what``) run.

    - no ``model`` and no ``embedder``: the bundled default separator, selecting with the
      default embedder (on real voices this beats the bundled Tune-In model: README);
    - ``embedder`` given: ``model`` (default: the bundled default separator) separates and
      ``embedder`` (``voice_select.load_embedder``) selects;
    - a talker-aware ``model`` (Tune-In): its own speaker vectors;
    - any other ``model``: a plain separator, selecting with the default embedder.

    A model that needs more than the mixture, or gives one output, cannot separate first:
    refused in words.
    """
    from ..core.checkpoint import DEFAULT_MODEL
    from ..models.conditioning import extra_inputs, require_talkers
    from .voice_select import DEFAULT_EMBEDDER, load_embedder

    device = resolve_device(device)
    name = model or DEFAULT_MODEL
    loaded = load_model(name, device)
    talker_aware = callable(getattr(loaded, "speaker_vectors", None))
    if embedder is None and talker_aware:
        try:
            require_talkers(loaded, f"'{what}'", name)
        except CocktailError as err:  # e.g. Tune-In in Autopilot mode, a separator all the same
            raise CocktailError(f"{err}; or pass --embedder to separate with it and keep the output closest to "
                                f"the enrollment's voice") from None
        return TalkerPicker(loaded, name)
    if extra_inputs(loaded) or int(loaded.config.num_sources) < 2:
        raise CocktailError(f"'{what}' with a separator keeps the output closest to the enrollment's voice, and "
                            f"model {name!r} does not separate two or more talkers from the mixture alone")
    embedder = embedder or DEFAULT_EMBEDDER
    return TalkerPicker(loaded, name, load_embedder(embedder, device), embedder)


def separate_and_pick(separator: Separator, selector: VoiceSelector, waveform: Array, sample_rate: int,
                      before_each: Callable[[int], None] | None = None) -> tuple[np.ndarray, float]:
    """The enrolled talker of one recording, by separating first (what ``verify`` scores and
    the page's extraction keeps): ``waveform`` at ``sample_rate`` (as :meth:`Separator.__call__`
    takes it) is separated into ``(C, time)`` and each output embedded, once, by ``selector``
    (``before_each`` as for :meth:`~.voice_select.VoiceSelector.similarities`).

    Returns the output closest to the enrollment, ``(time,)`` at ``sample_rate``, and its
    cosine, the verification score.
    """
    tracks = separator(waveform, sample_rate)
    index, score = selector.closest(tracks, sample_rate, before_each)
    return tracks[index], score


def _read_enrollment(path, sample_rate: int) -> np.ndarray:
    """The enrollment at the model's rate, refused (in words) when too short to describe a voice."""
    from ..eval.verification import MIN_ENROLLMENT_SECONDS

    samples, _ = audio.read(path, sample_rate=sample_rate)
    seconds = samples.shape[-1] / sample_rate
    if seconds < MIN_ENROLLMENT_SECONDS:
        raise CocktailError(f"{path}: the enrollment is {seconds:.2f} s long; at least {MIN_ENROLLMENT_SECONDS:g} s "
                            f"of the talker is needed (a few seconds is better; the paper enrolls with 16 s)")
    return samples


def extract_files(enroll: str | Path, inputs: list[str], out: str | Path, model: str | None = None,
                  device: str | torch.device | None = None, force: bool = False, quiet: bool = False,
                  progress: bool = False, embedder: str | None = None) -> int:
    """Keep the talker of the recording ``enroll`` in every audio file under ``inputs``:
    ``out/NAME_E.wav`` (NAME from :func:`output_names`, E the enrollment's stem), written by
    :func:`process_files` (``force``, ``quiet``, ``progress`` and the exit status as there).
    ``model`` and ``embedder``: see :func:`load_talker_picker` (None, None: the bundled default
    separator, selecting by voice)."""
    from .voice_select import VoiceSelector

    names = output_names(inputs)
    with Stages("extract", 2, progress) as stages:
        stages.start("loading the model")
        picker = load_talker_picker(model, device, "extract", embedder)
        enroll_path = Path(enroll)
        rate = picker.sample_rate
        enrollment = _read_enrollment(enroll_path, rate)
        stages.start("embedding the enrollment")
        keep = None
        if picker.embedder is None:
            separator = Separator(picker.model.extractor(enrollment), device=picker.device)
        else:
            separator = Separator(picker.model, device=picker.device)
            selector = VoiceSelector(picker.embedder, enrollment, rate)

            def keep(tracks: np.ndarray) -> np.ndarray:  # (C, time) -> (1, time)
                return tracks[[selector.pick(tracks, rate)]]
    return process_files(names, separator, Path(out), [f"_{enroll_path.stem}.wav"],
                         desc="extracting", force=force, quiet=quiet, progress=progress, keep=keep)


def verify_files(enroll: str | Path, inputs: list[str], model: str | None = None,
                 device: str | torch.device | None = None, threshold: float | None = None,
                 progress: bool = False, embedder: str | None = None) -> dict:
    """Score whether the talker of the recording ``enroll`` speaks in each audio file under
    ``inputs``. ``model`` and ``embedder``: see :func:`load_talker_picker`. ``threshold`` None:
    the calibrated one (a Tune-In checkpoint's ``verify_threshold``; for a bundled separator
    and embedder, :data:`~.voice_select.CALIBRATED_THRESHOLDS`), or no decisions without one.

    Returns ``{"threshold", "threshold_source", "results": [{"file", "score", "decision"}],
    "failed": files that could not be read, "files": files found}``.
    """
    from ..eval.verification import SteeringScorer
    from .voice_select import VoiceSelector

    files = audio.find_audio_files(inputs)
    if not files:
        raise CocktailError(f"no audio files found in {', '.join(map(str, inputs))}")
    with Stages("verify", 2, progress) as stages:
        stages.start("loading the model")
        picker = load_talker_picker(model, device, "verify", embedder)
        rate = picker.sample_rate
        stages.start("embedding the enrollment")
        enrollment = _read_enrollment(enroll, rate)
        if picker.embedder is None:
            scorer = SteeringScorer(picker.model)
            target = scorer.embed_enrollment(enrollment, rate)

            def score(samples: np.ndarray, file_rate: int) -> float:
                return scorer.score(target, samples, file_rate)
        else:
            separator = Separator(picker.model, device=picker.device)
            selector = VoiceSelector(picker.embedder, enrollment, rate)

            def score(samples: np.ndarray, file_rate: int) -> float:
                return separate_and_pick(separator, selector, samples, file_rate)[1]
    source = "--threshold"
    if threshold is None:
        threshold, source = picker.calibrated_threshold()
        if threshold is None and picker.embedder is None:
            log.warning("the model has no calibrated threshold (checkpoint metadata 'verify_threshold'); printing "
                        "scores without decisions: calibrate with 'python benchmarks/verification.py --calibrate "
                        "OUT.safetensors' or pass --threshold")
        elif threshold is None:
            log.warning("no calibrated threshold for %s with embedder %s; printing scores without decisions: pass "
                        "--threshold (benchmarks/real_voices.py --select-separator M --select E prints the EER "
                        "point of validation trials)", picker.name, picker.embedder_name)
    results, failed = [], 0
    with Bar(files, enabled=progress, tick=1.0, desc="verifying", unit="file") as bar:
        for path in bar:
            try:
                samples, file_rate = audio.read(path, min_seconds=0.01)
            except AudioError as err:
                log.error("%s", err)
                failed += 1
                continue
            value = score(samples, file_rate)
            decision = None if threshold is None else bool(value >= threshold)
            results.append({"file": str(path), "score": round(value, 6), "decision": decision})
    return {"threshold": threshold, "threshold_source": source, "results": results, "failed": failed,
            "files": len(files)}
