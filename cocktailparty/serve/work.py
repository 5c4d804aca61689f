"""What a ``cocktail serve`` job does: separate or extract one upload, draw its spectrograms.

The library does the work (:class:`~cocktailparty.inference.separate.Separator`, a talker-aware
model's extractor (:mod:`cocktailparty.models.conditioning`) and
:class:`~cocktailparty.eval.verification.SteeringScorer`, :mod:`cocktailparty.core.audio`); this module
only keeps the models loaded (one per kind), reports progress, and names the files a job
makes. Everything here runs in the job queue's single worker thread.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch

from ..core import audio
from ..core.checkpoint import DEFAULT_ENROLLED_MODEL, checkpoint_file, load_model, read_metadata
from ..core.errors import CocktailError
from ..inference.separate import Separator, _read_enrollment
from .jobs import Job

# Spectrogram pictures: at most this many columns, whatever the recording's length.
MAX_COLUMNS = 1200


class Models:
    """The models a server uses, loaded once and kept: one separation model (the last one
    asked for) and one talker-aware model for extraction."""

    def __init__(self, device: torch.device, enrolled: str = DEFAULT_ENROLLED_MODEL):
        self.device = device
        self.enrolled_name = enrolled
        self._lock = threading.Lock()
        self._separation: tuple[str, torch.nn.Module] | None = None
        self._enrolled: torch.nn.Module | None = None

    def separation(self, name: str) -> torch.nn.Module:
        with self._lock:
            if self._separation is None or self._separation[0] != name:
                self._separation = None  # let the previous model go before loading the next
                self._separation = (name, load_model(name, self.device))
            return self._separation[1]

    def enrolled(self) -> torch.nn.Module:
        from ..models.conditioning import require_talkers

        with self._lock:
            if self._enrolled is None:
                model = load_model(self.enrolled_name, self.device)
                require_talkers(model, "extraction", self.enrolled_name)
                self._enrolled = model
            return self._enrolled

    def threshold(self) -> float | None:
        """The enrolled model's calibrated verification threshold, if it has one."""
        ckpt = checkpoint_file(self.enrolled_name)
        return read_metadata(ckpt).get("verify_threshold") if ckpt else None


class _Reporting(Separator):
    """A separator that tells its job how many of the recording's chunks are done."""

    job: Job | None = None
    span: tuple[float, float] = (0.0, 1.0)
    _done = _total = 0

    def separate_at_model_rate(self, mixture: np.ndarray, progress: bool = False) -> np.ndarray:
        self._total, self._done = len(self.chunk_starts(mixture.shape[0])), 0
        return super().separate_at_model_rate(mixture, progress)

    def _run_batch(self, pieces: np.ndarray):
        out = super()._run_batch(pieces)
        self._done += len(pieces)
        if self.job is not None:
            lo, hi = self.span
            self.job.report(f"separating: part {self._done} of {self._total}", lo + (hi - lo) * self._done / self._total)
        return out


def _separator(model: torch.nn.Module, device: torch.device, job: Job, span: tuple[float, float]) -> _Reporting:
    """A separator for ``model`` whose chunks move ``job``'s progress across ``span``."""
    separator = _Reporting(model, device=device)
    separator.job, separator.span = job, span
    return separator


def _read(path: Path, shown: str, min_seconds: float = 0.01) -> tuple[np.ndarray, int]:
    """Decode an upload; its messages name the file the user chose, not our copy of it."""
    try:
        return audio.read(path, min_seconds=min_seconds)
    except CocktailError as err:
        raise type(err)(str(err).replace(str(path), shown)) from None


def separate_job(job: Job, models: Models, model_name: str, mixture: Path, shown: str, stem: str) -> dict:
    """Separate the upload ``mixture`` into ``s1.wav, s2.wav, ...`` with spectrograms."""
    job.report("reading the recording", 0.02)
    samples, rate = _read(mixture, shown)
    job.report(f"loading {model_name}", 0.05)
    separator = _separator(models.separation(model_name), models.device, job, (0.1, 0.85))
    sources = separator(samples, rate)
    job.report("drawing spectrograms", 0.88)
    spectrogram(job.add_file("mixture.png"), samples, rate)
    talkers = []
    for i, source in enumerate(sources, start=1):
        wav = job.add_file(f"s{i}.wav", download_as=f"{stem}_s{i}.wav")
        audio.write(wav, source, rate)
        spectrogram(job.add_file(f"s{i}.png"), source, rate)
        talkers.append({"label": f"talker {i}", "audio": f"s{i}.wav", "spectrogram": f"s{i}.png"})
    return {"model": model_name, "rate": rate, "seconds": round(samples.shape[-1] / rate, 3),
            "mixture": {"spectrogram": "mixture.png"}, "outputs": talkers}


def extract_job(job: Job, models: Models, mixture: Path, enrollment: Path, shown: tuple[str, str],
                stems: tuple[str, str]) -> dict:
    """Keep the enrolled talker of ``mixture``; score whether that talker speaks in it at all."""
    from ..eval.verification import SteeringScorer

    job.report("reading the recordings", 0.02)
    samples, rate = _read(mixture, shown[0])
    job.report(f"loading {models.enrolled_name}", 0.05)
    model = models.enrolled()
    model_rate = model.config.sample_rate
    try:
        enrolled = _read_enrollment(enrollment, model_rate)
    except CocktailError as err:
        raise type(err)(str(err).replace(str(enrollment), shown[1])) from None
    job.report("embedding the enrollment", 0.1)
    separator = _separator(model.extractor(enrolled), models.device, job, (0.15, 0.7))
    target = separator(samples, rate)[0]
    job.report("verifying the talker", 0.75)
    scorer = SteeringScorer(model)
    score = scorer.score(scorer.embed_enrollment(enrolled, model_rate), samples, rate)
    threshold = models.threshold()
    decision = None if threshold is None else ("present" if score >= threshold else "absent")
    job.report("drawing spectrograms", 0.85)
    spectrogram(job.add_file("mixture.png"), samples, rate)
    audio.write(job.add_file("target.wav", download_as=f"{stems[0]}_{stems[1]}.wav"), target, rate)
    spectrogram(job.add_file("target.png"), target, rate)
    return {"model": models.enrolled_name, "rate": rate, "seconds": round(samples.shape[-1] / rate, 3),
            "mixture": {"spectrogram": "mixture.png"},
            "outputs": [{"label": f"the enrolled talker ({shown[1]})", "audio": "target.wav",
                         "spectrogram": "target.png"}],
            "verification": {"score": round(score, 4), "threshold": threshold, "decision": decision}}


def spectrogram(path: Path, signal: np.ndarray, rate: int, width: float = 8.0, height: float = 1.6) -> Path:
    """A log-magnitude spectrogram PNG of ``signal``, drawn without pyplot (thread-safe), of at
    most :data:`MAX_COLUMNS` frames (see :func:`~cocktailparty.eval.spectrogram.spectrogram_db`)."""
    from matplotlib.figure import Figure

    from ..eval.spectrogram import spectrogram_db

    level = spectrogram_db(signal, rate, max_columns=MAX_COLUMNS)
    top = level.max() if np.isfinite(level).all() else 0.0
    fig = Figure(figsize=(width, height), dpi=80)
    ax = fig.add_axes((0.07, 0.22, 0.92, 0.74))
    seconds = np.asarray(signal).shape[0] / rate
    ax.imshow(level, origin="lower", aspect="auto", cmap="magma", vmin=top - 90, vmax=top,
              extent=(0, seconds, 0, rate / 2), interpolation="nearest")
    ax.set_xlabel("seconds", fontsize=8)
    ax.set_ylabel("kHz", fontsize=8)
    ax.yaxis.set_major_formatter(lambda value, _: f"{value / 1000:g}")
    ax.tick_params(labelsize=7)
    fig.savefig(path, format="png")
    return path
