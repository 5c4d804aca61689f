"""Inference: the :class:`Separator` API and the ``cocktail separate`` command.

A separator wraps a model with everything a recording needs before and after it: mixing
down to mono, resampling to the model's rate and back, chunking long recordings with
overlap (bounded memory), keeping each talker on the same track from chunk to chunk, and
putting the estimates back at the mixture's scale.

    >>> separator = Separator.from_pretrained()          # the bundled default
    >>> sources = separator(waveform, sample_rate)       # (num_sources, time) at sample_rate
"""

from __future__ import annotations

import itertools
import logging
import math
from pathlib import Path
from typing import Union

import numpy as np
import torch
from torch import nn

from . import audio
from .checkpoint import load_model
from .errors import AudioError, CocktailError

log = logging.getLogger("cocktailparty")

Array = Union[np.ndarray, torch.Tensor]


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(name: str | None) -> torch.device:
    if name is None:
        return default_device()
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CocktailError(f"--device {name!r}: not a device name (try cpu or cuda)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CocktailError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return device


class Separator:
    """Separate the talkers of a recording with a trained model.

    Args:
        model: a separation model, ``(batch, time) -> (batch, C, time)`` at
            ``model.config.sample_rate``.
        device: where to run it (default: CUDA when present).
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
        self.device = resolve_device(device) if not isinstance(device, torch.device) else device
        self.model = model.to(self.device).eval()
        self.sample_rate: int = model.config.sample_rate
        self.num_sources: int = model.config.num_sources
        if chunk_seconds is not None and overlap_seconds * 2 > chunk_seconds:
            raise ValueError("overlap_seconds must be at most half of chunk_seconds")
        self.chunk = None if chunk_seconds is None else int(chunk_seconds * self.sample_rate)
        self.overlap = int(overlap_seconds * self.sample_rate)

    @classmethod
    def from_pretrained(cls, name_or_path: str | None = None, device: str | None = None, **kwargs) -> "Separator":
        """A bundled model name, checkpoint path, config or architecture (see ``load_model``)."""
        device = resolve_device(device)
        return cls(load_model(name_or_path, device), device=device, **kwargs)

    def __call__(self, waveform: Array, sample_rate: int, progress: bool = False) -> np.ndarray:
        """Separate one recording.

        Args:
            waveform: ``(time,)`` mono or ``(channels, time)``; channels are averaged.
            sample_rate: its rate; the output comes back at the same rate.
            progress: show a progress bar over chunks.

        Returns:
            float32 ``(num_sources, time)``, the same length as the input.
        """
        samples = waveform.detach().cpu().numpy() if isinstance(waveform, torch.Tensor) else np.asarray(waveform)
        samples = samples.astype(np.float32, copy=False)
        if samples.ndim == 2:
            samples = samples.mean(axis=0)
        if samples.ndim != 1:
            raise ValueError(f"expected (time,) or (channels, time) audio, got shape {samples.shape}")
        length = samples.shape[0]
        at_model_rate = audio.resample(samples, sample_rate, self.sample_rate)
        estimates = self.separate_at_model_rate(at_model_rate, progress=progress)
        estimates = audio.resample(estimates, self.sample_rate, sample_rate)
        if estimates.shape[1] < length:
            estimates = np.pad(estimates, ((0, 0), (0, length - estimates.shape[1])))
        return estimates[:, :length]

    @torch.inference_mode()
    def separate_at_model_rate(self, mixture: np.ndarray, progress: bool = False) -> np.ndarray:
        """``(time,)`` at the model's rate -> ``(C, time)``, chunked when long."""
        length = mixture.shape[0]
        if self.chunk is None or length <= self.chunk:
            return self._run(mixture)
        hop = self.chunk - self.overlap
        starts = list(range(0, max(length - self.overlap, 1), hop))
        output = np.zeros((self.num_sources, length), np.float32)
        fade_in = np.linspace(0.0, 1.0, self.overlap + 2, dtype=np.float32)[1:-1]
        previous_tail: np.ndarray | None = None
        from tqdm import tqdm

        for start in tqdm(starts, desc="chunks", unit="chunk", disable=not progress, leave=False):
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

    def _run(self, mixture: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(mixture)).to(self.device).unsqueeze(0)
        estimates = self.model(x)[0].float().cpu().numpy()
        return match_mixture_scale(estimates, mixture)


def match_mixture_scale(estimates: np.ndarray, mixture: np.ndarray) -> np.ndarray:
    """Rescale each estimate so that their sum best matches the mixture (least squares).

    Models trained on scale-invariant losses output sources at an arbitrary scale; fitting
    one gain per source against the mixture puts them back at the recording's level and
    keeps that level consistent from chunk to chunk. Gains are kept non-negative.

    Args:
        estimates: ``(C, time)``.
        mixture: ``(time,)``.
    """
    est = estimates.astype(np.float64)
    gram = est @ est.T + 1e-8 * np.eye(est.shape[0])
    gains = np.linalg.solve(gram, est @ mixture.astype(np.float64))
    gains = np.clip(gains, 0.0, None)
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


def output_paths(source: Path, out_dir: Path, num_sources: int) -> list[Path]:
    return [out_dir / f"{source.stem}_s{i + 1}.wav" for i in range(num_sources)]


def cli_separate(args) -> int:
    from tqdm import tqdm

    files = audio.find_audio_files(args.inputs)
    if not files:
        raise CocktailError(f"no audio files found in {', '.join(args.inputs)}")
    separator = Separator.from_pretrained(args.model, device=args.device)
    out_dir = Path(args.out)
    failed = 0
    for path in tqdm(files, desc="separating", unit="file", disable=args.quiet or len(files) == 1):
        targets = output_paths(path, out_dir, separator.num_sources)
        if not args.force and any(t.exists() for t in targets):
            log.warning("%s: outputs exist in %s; skipping (use --force to overwrite)", path, out_dir)
            continue
        try:
            samples, rate = audio.read(path, min_seconds=0.01)
            sources = separator(samples, rate, progress=not args.quiet)
            for target, source in zip(targets, sources):
                audio.write(target, source, rate)
        except AudioError as err:
            log.error("%s", err)
            failed += 1
            continue
        if not args.quiet:
            print(f"{path} -> {', '.join(str(t) for t in targets)}")
    if failed:
        log.error("%d of %d file(s) failed", failed, len(files))
    return 1 if failed else 0


def cli_extract(args) -> int:
    raise CocktailError("'extract' needs a Tune-In model, which this version does not include yet")


def cli_verify(args) -> int:
    raise CocktailError("'verify' needs a Tune-In model, which this version does not include yet")
