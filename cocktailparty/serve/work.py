"""What a ``cocktail serve`` job does: separate or extract one upload, draw its spectrograms.

The library does the work (:class:`~cocktailparty.inference.separate.Separator`; for
extraction, what ``cocktail extract`` and ``cocktail verify`` run by default: the separator
and speaker embedder of :func:`~cocktailparty.inference.separate.load_talker_picker`, joined
by :func:`~cocktailparty.inference.separate.separate_and_pick`; :mod:`cocktailparty.core.audio`);
this module only keeps the models loaded (once each), reports progress, and names the files
a job makes. Everything here runs in the job queue's single worker thread.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch

from ..core import audio
from ..core.checkpoint import DEFAULT_MODEL, load_model
from ..core.errors import CocktailError
from ..inference.separate import Separator, TalkerPicker, _read_enrollment, load_talker_picker, separate_and_pick
from ..inference.voice_select import DEFAULT_EMBEDDER, VoiceSelector
from .jobs import Job

# Spectrogram pictures: at most this many columns, whatever the recording's length.
MAX_COLUMNS = 1200


class Models:
    """The models a server uses, loaded once and kept: one separation model (the last one
    asked for), and for extraction a separator with the speaker embedder that picks the
    enrolled talker among its outputs (a :class:`TalkerPicker`, loaded at the first extraction).

    ``extract_model`` and ``embedder``: as ``cocktail extract --model M --embedder E`` takes
    them; None: its defaults (the bundled default separator, the default embedder).
    """

    def __init__(self, device: torch.device, extract_model: str | None = None, embedder: str | None = None):
        self.device = device
        # Named before they load, for the page: the names load_talker_picker gives them.
        self.extract_model = extract_model or DEFAULT_MODEL
        self.embedder = embedder or DEFAULT_EMBEDDER
        self._lock = threading.Lock()
        self._separation: tuple[str, torch.nn.Module] | None = None
        self._picker: TalkerPicker | None = None

    def separation(self, name: str) -> torch.nn.Module:
        with self._lock:
            if self._separation is None or self._separation[0] != name:
                self._separation = None  # let the previous model go before loading the next
                self._separation = (name, load_model(name, self.device))
            return self._separation[1]

    def talker_picker(self) -> TalkerPicker:
        """The extraction's separator and embedder. The embedder is always named, so even a
        talker-aware model separates first and the embedder picks (or is refused in words)."""
        with self._lock:
            if self._picker is None:
                self._picker = load_talker_picker(self.extract_model, self.device, "extract", self.embedder)
            return self._picker


class _Reporting(Separator):
    """A separator that tells its job how many of the recording's chunks are done."""

    job: Job | None = None
    span: tuple[float, float] = (0.0, 1.0)
    _done = _total = 0

    def separate_at_model_rate(self, mixture: np.ndarray, progress: bool = False) -> np.ndarray:
        self._total, self._done = len(self.chunk_starts(mixture.shape[0])), 0
        return super().separate_at_model_rate(mixture, progress)

    def _collected(self, count: int) -> None:
        self._done += count
        if self.job is not None:
            lo, hi = self.span
            self.job.report(f"separating: part {self._done} of {self._total}", lo + (hi - lo) * self._done / self._total)


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
    """Keep the enrolled talker of ``mixture`` as ``cocktail extract`` does: separate it, keep
    the output whose voice embedding is closest (cosine) to the enrollment's; that cosine is
    ``cocktail verify``'s score, decided by the threshold calibrated for the separator and
    embedder (no decision without one)."""
    job.report("reading the recordings", 0.02)
    samples, rate = _read(mixture, shown[0])
    job.report(f"loading {models.extract_model} and the embedder {models.embedder}", 0.04)
    picker = models.talker_picker()
    try:
        enrolled = _read_enrollment(enrollment, picker.sample_rate)
    except CocktailError as err:
        raise type(err)(str(err).replace(str(enrollment), shown[1])) from None
    job.report("embedding the enrollment", 0.07)
    selector = VoiceSelector(picker.embedder, enrolled, picker.sample_rate)
    separator = _separator(picker.model, picker.device, job, (0.1, 0.7))
    outputs = separator.num_sources

    def comparing(index: int) -> None:  # embedding an output can take as long as separating it
        job.report(f"comparing voices: output {index + 1} of {outputs}", 0.7 + 0.15 * index / outputs)

    target, score = separate_and_pick(separator, selector, samples, rate, comparing)
    threshold, source = picker.calibrated_threshold()
    decision = None if threshold is None else ("present" if score >= threshold else "absent")
    job.report("drawing spectrograms", 0.88)
    spectrogram(job.add_file("mixture.png"), samples, rate)
    audio.write(job.add_file("target.wav", download_as=f"{stems[0]}_{stems[1]}.wav"), target, rate)
    spectrogram(job.add_file("target.png"), target, rate)
    return {"model": picker.name, "embedder": picker.embedder_name, "rate": rate,
            "seconds": round(samples.shape[-1] / rate, 3), "mixture": {"spectrogram": "mixture.png"},
            "outputs": [{"label": f"the enrolled talker ({shown[1]})", "audio": "target.wav",
                         "spectrogram": "target.png"}],
            "verification": {"score": round(score, 4), "threshold": threshold, "threshold_source": source,
                             "decision": decision}}


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
