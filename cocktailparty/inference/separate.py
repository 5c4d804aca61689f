"""Inference: the :class:`Separator` API and the ``cocktail separate`` command.

A separator wraps a model with everything a recording needs before and after it: mixing
down to mono, resampling to the model's rate and back, chunking long recordings with
overlap (bounded memory), keeping each talker on the same track from chunk to chunk, and
putting the estimates back at the mixture's scale.

    >>> separator = Separator.from_pretrained()          # the bundled default
    >>> waveform, sample_rate = soundfile.read("meeting.wav")  # (frames,) or (frames, channels)
    >>> sources = separator(waveform, sample_rate)       # (num_sources, frames) at sample_rate
"""

from __future__ import annotations

import itertools
import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Union

import numpy as np
import torch
from torch import nn

from ..core import audio
from ..core.checkpoint import load_model
from ..core.cpu import keep_freed_memory
from ..core.device import resolve_device
from ..core.errors import AudioError, CocktailError
from ..core.progress import Bar, Stages
from .chunks import chunk_bounds

log = logging.getLogger("cocktailparty")

Array = Union[np.ndarray, torch.Tensor]


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
    """

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device | None = None,
        chunk_seconds: float | None = 10.0,
        overlap_seconds: float = 2.0,
    ):
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
            self._forward = model
            self.sample_rate = model.sample_rate
            self.num_sources = model.num_sources
        if chunk_seconds is not None and overlap_seconds * 2 > chunk_seconds:
            raise ValueError("overlap_seconds must be at most half of chunk_seconds")
        self.chunk = None if chunk_seconds is None else int(chunk_seconds * self.sample_rate)
        self.overlap = int(overlap_seconds * self.sample_rate)

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
        samples = audio.as_mono(waveform, channels_first)
        length = samples.shape[0]
        if length == 0 or not np.isfinite(samples).all():
            audio.validate(samples, sample_rate, "waveform")  # raises the one-line AudioError
        at_model_rate = audio.resample(samples, sample_rate, self.sample_rate)
        if at_model_rate.shape[0] == 0:
            # A few samples at a higher rate can resample to none; give the model one sample.
            at_model_rate = np.zeros(1, np.float32) + samples.mean()
        estimates = self.separate_at_model_rate(at_model_rate, progress=progress)
        estimates = audio.resample(estimates, self.sample_rate, sample_rate)
        if estimates.shape[1] < length:
            estimates = np.pad(estimates, ((0, 0), (0, length - estimates.shape[1])))
        return estimates[:, :length]

    def separate_at_model_rate(self, mixture: np.ndarray, progress: bool = False) -> np.ndarray:
        """``(time,)`` at the model's rate -> ``(C, time)``, chunked when long."""
        length = mixture.shape[0]
        starts = self.chunk_starts(length)
        if len(starts) == 1:
            return self._run(mixture)
        hop = self.chunk - self.overlap
        output = np.zeros((self.num_sources, length), np.float32)
        fade_in = np.linspace(0.0, 1.0, self.overlap + 2, dtype=np.float32)[1:-1]
        previous_tail: np.ndarray | None = None
        for start in Bar(starts, enabled=progress, desc="chunks", unit="chunk", leave=False):
            piece = mixture[start : start + self.chunk]
            estimate = self._run(piece)
            if previous_tail is not None:
                overlap = min(self.overlap, piece.shape[0])
                estimate = estimate[best_order(previous_tail[:, :overlap], estimate[:, :overlap])]
                # Linear cross-fade over the overlap: the previous chunk fades out as this one
                # fades in, so the two estimates of the same talker sum to one copy.
                ramp = fade_in[:overlap]
                output[:, start : start + overlap] *= 1.0 - ramp
                estimate[:, :overlap] *= ramp
            output[:, start : start + estimate.shape[1]] += estimate
            # The part of this chunk that the next one overlaps, before any fading (the fade-in
            # above touches only the first `overlap` samples, and hop >= overlap).
            previous_tail = estimate[:, hop:]
        return output

    def chunk_starts(self, length: int) -> list[int]:
        """Where each chunk of a ``length``-sample mixture starts: ``[0]`` when it runs whole."""
        return [start for start, _ in chunk_bounds(length, self.chunk, self.overlap)]

    def _run(self, mixture: np.ndarray) -> np.ndarray:
        """The only model call: ``(time,)`` -> ``(C, time)`` at the mixture's scale."""
        return match_mixture_scale(self._forward(mixture), mixture)

    @torch.inference_mode()
    def _torch_forward(self, mixture: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(mixture)).to(self.device).unsqueeze(0)
        return self.model(x)[0].float().cpu().numpy()


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
                  force: bool, quiet: bool, progress: bool = False) -> int:
    """Run ``separator`` over the files of ``names`` (from :func:`output_names`), writing its
    output ``i`` for a file to ``out_dir / (name + endings[i])``.

    Existing outputs are skipped unless ``force``; a file that cannot be read or written is
    reported in one line and the others still run. ``quiet`` leaves out the line per file on
    stdout, ``progress`` shows bars over files and chunks. Returns the exit status: 1 when
    any file failed.
    """
    failed = 0
    with Bar(names.items(), enabled=progress, tick=1.0, desc=desc, unit="file") as files:
        for path, name in files:
            targets = [out_dir / name.with_name(name.name + ending) for ending in endings]
            if not force and any(t.exists() for t in targets):
                log.warning("%s: %s exists; skipping (use --force to overwrite)",
                            path, ", ".join(str(t) for t in targets if t.exists()))
                continue
            try:
                samples, rate = audio.read(path, min_seconds=0.01)
                # All tracks of a file appear together or not at all (see audio.write_all).
                audio.write_all(targets, separator(samples, rate, progress=progress)[: len(targets)], rate)
            except AudioError as err:
                log.error("%s", err)
                failed += 1
                continue
            if not quiet:
                files.write(f"{path} -> {', '.join(str(t) for t in targets)}", file=sys.stdout)  # above the bar
    if failed:
        log.error("%d of %d file(s) failed", failed, len(names))
    return 1 if failed else 0


# --------------------------------------------------------------------------------------------
# One known talker: cocktail extract / cocktail verify (talker-aware models,
# models/conditioning.py)
# --------------------------------------------------------------------------------------------


def load_talker_model(model: str | None, device: str | torch.device | None, what: str) -> nn.Module:
    """A talker-aware model (``model``: a name or checkpoint; None: the bundled enrolled default)
    for the command ``what``, refused in words when it cannot tell talkers apart
    (:func:`~cocktailparty.models.conditioning.require_talkers`)."""
    from ..core.checkpoint import DEFAULT_ENROLLED_MODEL
    from ..models.conditioning import require_talkers

    model = model or DEFAULT_ENROLLED_MODEL  # the default separator has no speaker space
    loaded = load_model(model, resolve_device(device))
    require_talkers(loaded, f"'{what}'", model)
    return loaded


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
                  progress: bool = False) -> int:
    """Keep the talker of the recording ``enroll`` in every audio file under ``inputs``:
    ``out/NAME_E.wav`` (NAME from :func:`output_names`, E the enrollment's stem), written by
    :func:`process_files` (``force``, ``quiet``, ``progress`` and the exit status as there).
    ``model``: a talker-aware model's name or checkpoint (None: the bundled enrolled default)."""
    names = output_names(inputs)
    with Stages("extract", 2, progress) as stages:
        stages.start("loading the model")
        talker_model = load_talker_model(model, device, "extract")
        enroll_path = Path(enroll)
        enrollment = _read_enrollment(enroll_path, talker_model.config.sample_rate)
        stages.start("embedding the enrollment")
        separator = Separator(talker_model.extractor(enrollment), device=next(talker_model.parameters()).device)
    return process_files(names, separator, Path(out), [f"_{enroll_path.stem}.wav"],
                         desc="extracting", force=force, quiet=quiet, progress=progress)


def verify_files(enroll: str | Path, inputs: list[str], model: str | None = None,
                 device: str | torch.device | None = None, threshold: float | None = None,
                 progress: bool = False) -> dict:
    """Score whether the talker of the recording ``enroll`` speaks in each audio file under
    ``inputs``. ``threshold`` None: the model's calibrated one (its checkpoint's
    ``verify_threshold``), or no decisions when it has none.

    Returns ``{"threshold", "threshold_source", "results": [{"file", "score", "decision"}],
    "failed": files that could not be read, "files": files found}``.
    """
    from ..core.checkpoint import DEFAULT_ENROLLED_MODEL, checkpoint_file, read_metadata
    from ..eval.verification import SteeringScorer

    files = audio.find_audio_files(inputs)
    if not files:
        raise CocktailError(f"no audio files found in {', '.join(map(str, inputs))}")
    with Stages("verify", 2, progress) as stages:
        stages.start("loading the model")
        talker_model = load_talker_model(model, device, "verify")
        scorer = SteeringScorer(talker_model)
        rate = scorer.sample_rate
        stages.start("embedding the enrollment")
        enrollment = scorer.embed_enrollment(_read_enrollment(enroll, rate), rate)
    source = "--threshold"
    if threshold is None:
        ckpt = checkpoint_file(model or DEFAULT_ENROLLED_MODEL)
        threshold = read_metadata(ckpt).get("verify_threshold") if ckpt else None
        source = f"calibrated in {ckpt.name}" if threshold is not None else None
        if threshold is None:
            log.warning("the model has no calibrated threshold (checkpoint metadata 'verify_threshold'); printing "
                        "scores without decisions: calibrate with 'python benchmarks/verification.py --calibrate "
                        "OUT.safetensors' or pass --threshold")
    results, failed = [], 0
    with Bar(files, enabled=progress, tick=1.0, desc="verifying", unit="file") as bar:
        for path in bar:
            try:
                samples, file_rate = audio.read(path, min_seconds=0.01)
            except AudioError as err:
                log.error("%s", err)
                failed += 1
                continue
            score = scorer.score(enrollment, samples, file_rate)
            decision = None if threshold is None else bool(score >= threshold)
            results.append({"file": str(path), "score": round(score, 6), "decision": decision})
    return {"threshold": threshold, "threshold_source": source, "results": results, "failed": failed,
            "files": len(files)}
