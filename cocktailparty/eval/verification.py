"""Speaker verification on mixtures with a talker-aware model's speaker vectors (Tune-In's
steering vectors: the paper's Fig. 2) and the threshold calibration behind ``cocktail verify``.

A *trial* pairs a clean enrollment utterance of one speaker with a test mixture of two
talkers at 0-5 dB: in a target trial the enrolled speaker is one of the two, in a non-target
trial neither is (nor anyone built from the same recorded person). Trials come from a
held-out, speaker-labelled corpus split (``cocktail corpus build`` splits by person), so every
speaker is unseen in training::

    >>> corpus = SpeakerCorpus.open("corpus", split="test")
    >>> trials = make_trials(corpus, 400, seed=0, exclude=SpeakerCorpus.open("corpus", split="train"))
    >>> scores = score_trials(trials, {"tune-in": SteeringScorer(model)})["tune-in"]
    >>> calibration = calibrate(scores, labels(trials))       # threshold at the EER point

How a talker-aware model scores (:class:`SteeringScorer`; the interface is
:class:`~cocktailparty.models.conditioning.TalkerAware`): its speaker vectors, one per output
(for Tune-In the steering vectors ``Z_j`` of Eq. 2 with the recording as its own speaker
memory, as the paper's Tune-InCE model does on masked test data). An enrollment becomes the
unit mean of its ``C`` unit vectors (on clean speech every one reads the one talker there;
long enrollments are cut into chunks and every chunk's vectors are averaged). A test
recording scores the largest cosine between the enrollment vector and any of its vectors
(any chunk, any ``j``): "is the enrolled talker one of the talkers here". External encoders
(:class:`ResemblyzerEncoder`) score the cosine of one utterance embedding per side.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Optional, Protocol, Sequence, Union

import numpy as np
import torch
from torch import nn

from ..core import audio
from ..core.errors import CocktailError
from ..data.levels import peak_limit
from ..models.conditioning import require_talkers
from ..inference.chunks import chunk_bounds

log = logging.getLogger("cocktailparty")

PathLike = Union[str, Path]

MIN_ENROLLMENT_SECONDS = 0.5  # below this a talker's voice is hardly characterised at all
CHUNK_SECONDS = 10.0  # speaker vectors per chunk of this length: bounded memory on long files
MIN_CHUNK_SECONDS = 1.0  # a shorter tail joins the chunk before it instead of standing alone
REFERENCE_LEVEL_DB = -25.0  # active level the trial talkers are centred on (the corpus's RMS level)
MAX_PEAK = 0.9  # as the mixers: scale the whole trial down when the mixture would clip
SCORING = "tunein-steering-cosine/1"  # what a stored threshold was calibrated for


# --------------------------------------------------------------------------------------------
# Trials
# --------------------------------------------------------------------------------------------


@dataclass
class Trial:
    """One verification trial (all audio at ``sample_rate``).

    ``test`` holds the two talkers of the test mixture; ``test[0]`` is the *test talker*,
    the enrolled speaker in a target trial (its clean signal is the "clean test" side of the
    reference system), and ``test[1]`` the interferer. ``sir_db`` is ``test[0]``'s level
    minus ``test[1]``'s, ``+-(0..5)`` dB: the target is as often the quieter talker as the
    louder.
    """

    id: str
    label: int  # 1: the enrolled speaker talks in the test mixture; 0: not
    speaker: str  # the enrolled speaker
    enrollment: Path  # a clean utterance of `speaker`, never the one in the mixture
    test: list  # [(path, speaker, start, gain_db)] x 2; each cut to `length` samples from `start`
    length: int
    sample_rate: int
    sir_db: float


def _speaker_set(exclude) -> tuple[set, set]:
    """Speakers and persons of a training corpus (or a plain list of speaker names)."""
    if exclude is None:
        return set(), set()
    if hasattr(exclude, "speakers") and hasattr(exclude, "persons"):
        return set(exclude.speakers), set(exclude.persons)
    names = set(exclude)
    return names, names


def make_trials(corpus, num_trials: int = 400, seed: int = 0, sir: Sequence[float] = (0.0, 5.0),
                max_seconds: float = 6.0, sample_rate: Optional[int] = None, exclude=None,
                split: Optional[str] = "test") -> list[Trial]:
    """A seeded, balanced list of trials from a held-out corpus split.

    Args:
        corpus: a :class:`~cocktailparty.data.speaker_corpus.SpeakerCorpus` or a corpus folder
            (then ``split`` is read from it).
        num_trials: half target (rounded down), half non-target, alternating.
        seed: the same seed and corpus give the same trials.
        sir: range of the level difference between the two talkers, dB (paper: 0-5).
        max_seconds: cap on the mixture length; a mixture is as long as its shorter
            utterance ('min' mode, so the talkers overlap throughout) up to this cap.
        sample_rate: the trials' rate; default the corpus's.
        exclude: the training corpus (or its speaker names): a trial speaker or person found
            there is an error, since verification must be on unseen speakers.

    Returns:
        ``num_trials`` :class:`Trial` objects.
    """
    from ..data.speaker_corpus import SpeakerCorpus
    from ..data.levels import talker_gains_db
    from ..data.mixture_plan import load_speech

    if not isinstance(corpus, SpeakerCorpus):
        corpus = SpeakerCorpus.open(corpus, split=split)
    if num_trials < 2:
        raise CocktailError(f"num_trials must be at least 2 (one target, one non-target), got {num_trials}")
    bad_speakers, bad_persons = _speaker_set(exclude)
    overlap = sorted((set(corpus.speakers) & bad_speakers) | (set(corpus.persons) & bad_persons))
    if overlap:
        raise CocktailError(f"{corpus.name}: speakers/persons {', '.join(overlap[:5])} also occur in training; "
                            f"verification trials need unseen speakers (use the corpus's test split)")
    person_of = {s: corpus[corpus.by_speaker[s][0]].person for s in corpus.speakers}
    enrollable = [s for s in corpus.speakers if len(corpus.by_speaker[s]) >= 2]
    if not enrollable:
        raise CocktailError(f"{corpus.name}: no speaker has two utterances; a target trial needs one to "
                            f"enroll and another to test")
    if len(corpus.persons) < 3:
        raise CocktailError(f"{corpus.name}: has {len(corpus.persons)} distinct persons; non-target trials "
                            f"need the enrolled one and two others")
    rate = int(sample_rate or corpus.sample_rate)
    rng = np.random.default_rng(seed)
    order = [enrollable[int(i)] for i in rng.permutation(len(enrollable))]
    lengths: dict[int, int] = {}

    def length_of(u: int) -> int:
        if u not in lengths:
            lengths[u] = load_speech(corpus[u].path, rate).shape[-1]
        return lengths[u]

    def other_speaker(avoid_persons: set) -> str:
        pool = [s for s in corpus.speakers if person_of[s] not in avoid_persons]
        return pool[int(rng.integers(0, len(pool)))]

    def pick(pool: list[int]) -> int:
        return pool[int(rng.integers(0, len(pool)))]

    trials = []
    for i in range(num_trials):
        label = 1 if i % 2 == 0 and i < 2 * (num_trials // 2) else 0
        speaker = order[i // 2 % len(order)]  # each speaker enrolls as often as the others
        enroll = pick(corpus.by_speaker[speaker])
        if label:
            first = pick([u for u in corpus.by_speaker[speaker] if u != enroll])
        else:
            first = pick(corpus.by_speaker[other_speaker({person_of[speaker]})])
        second_speaker = other_speaker({person_of[speaker], corpus[first].person})
        second = pick(corpus.by_speaker[second_speaker])
        total = min(length_of(first), length_of(second), int(round(max_seconds * rate)))
        r = float(rng.uniform(*sir)) * (1.0 if rng.random() < 0.5 else -1.0)
        starts = [int(rng.integers(0, length_of(u) - total + 1)) for u in (first, second)]
        pieces = [load_speech(corpus[u].path, rate)[start:start + total] for u, start in zip((first, second), starts)]
        gains = talker_gains_db(pieces, rate, [r], REFERENCE_LEVEL_DB)
        test = [(corpus[u].path, corpus[u].speaker, start, 0.0 if gain is None else gain)
                for u, start, gain in zip((first, second), starts, gains)]
        trials.append(Trial(f"t{i:05d}_{corpus[enroll].id}_{corpus[first].id}_{corpus[second].id}", label,
                            speaker, corpus[enroll].path, test, total, rate, r))
    return trials


def labels(trials: Sequence[Trial]) -> np.ndarray:
    """``(N,)`` 0/1 labels of the trials."""
    return np.array([t.label for t in trials], dtype=np.int64)


class RenderedTrial(NamedTuple):
    enrollment: np.ndarray  # (T_e,) the clean enrollment utterance
    mixture: np.ndarray  # (T,) the two talkers
    clean: np.ndarray  # (T,) the test talker alone, at its level in the mixture


def render_trial(trial: Trial) -> RenderedTrial:
    """The trial's audio, float32 at ``trial.sample_rate``."""
    from ..data.mixture_plan import load_speech

    parts = []
    for path, _, start, gain in trial.test:
        x = load_speech(path, trial.sample_rate)[start:start + trial.length].astype(np.float64)
        parts.append(x * 10.0 ** (gain / 20.0))
    mixture = parts[0] + parts[1]
    scale = peak_limit([mixture, parts[0]], MAX_PEAK)
    enrollment = load_speech(trial.enrollment, trial.sample_rate)
    return RenderedTrial(enrollment.astype(np.float32), (mixture * scale).astype(np.float32),
                         (parts[0] * scale).astype(np.float32))


# --------------------------------------------------------------------------------------------
# Scorers
# --------------------------------------------------------------------------------------------


class Scorer(Protocol):
    """What :func:`score_trials` needs from a system."""

    test_audio: str  # "mixture" or "clean": which side of the trial it is scored on

    def embed_enrollment(self, wav: np.ndarray, sample_rate: int) -> np.ndarray: ...

    def score(self, enrollment: np.ndarray, wav: np.ndarray, sample_rate: int) -> float: ...




def _unit(x: np.ndarray) -> np.ndarray:
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-12)


class SteeringScorer:
    """Scores with a talker-aware model's speaker vectors (see the module docstring).

    Args:
        model: a :class:`~cocktailparty.models.conditioning.TalkerAware` model (Tune-In with
            a speaker space).
        device: where it runs (default: the model's).
        chunk_seconds: speaker vectors are computed per chunk of this length.
        test_audio: which side of a trial it scores (``"mixture"``, the paper's setting).
    """

    def __init__(self, model: nn.Module, device: str | torch.device | None = None,
                 chunk_seconds: float = CHUNK_SECONDS, test_audio: str = "mixture"):
        require_talkers(model, "scoring with speaker vectors")
        self.model = model.eval() if device is None else model.to(device).eval()
        self.device = next(model.parameters()).device
        self.sample_rate = int(model.config.sample_rate)
        self.chunk = int(chunk_seconds * self.sample_rate)
        self.minimum = int(MIN_CHUNK_SECONDS * self.sample_rate)
        self.test_audio = test_audio

    @torch.inference_mode()
    def vectors(self, wav, sample_rate: int, channels_first: bool | None = None) -> np.ndarray:
        """Unit speaker vectors of a recording, ``(chunks * C, D)``: audio at ``sample_rate``
        is resampled to the model's rate and cut into chunks. ``wav`` and ``channels_first``
        are as for the :class:`~cocktailparty.inference.separate.Separator`: ``(time,)``,
        ``(frames, channels)`` or ``(channels, frames)``, numpy or torch, channels averaged."""
        x = audio.resample(audio.as_mono(wav, channels_first), sample_rate, self.sample_rate)
        out = []
        for start, stop in chunk_bounds(x.shape[-1], self.chunk, minimum=self.minimum):
            piece = torch.from_numpy(np.ascontiguousarray(x[start:stop])).to(self.device).unsqueeze(0)
            z = self.model.speaker_vectors(piece)[0]  # (C, D)
            out.append(z.float().cpu().numpy())
        return _unit(np.concatenate(out).astype(np.float64))

    def embed_enrollment(self, wav, sample_rate: int, channels_first: bool | None = None) -> np.ndarray:
        """``(D,)`` unit vector: the mean of the enrollment's unit speaker vectors (``wav`` as
        for :meth:`vectors`)."""
        return _unit(self.vectors(wav, sample_rate, channels_first).mean(axis=0))

    def score(self, enrollment: np.ndarray, wav, sample_rate: int, channels_first: bool | None = None) -> float:
        """Largest cosine between the enrollment vector and the recording's speaker vectors
        (``wav`` as for :meth:`vectors`)."""
        return float((self.vectors(wav, sample_rate, channels_first) @ enrollment).max())


class EncoderScorer:
    """Scores with an external speaker encoder: cosine of one embedding per side.

    ``encoder(wav, sample_rate) -> (D,)`` embeds ``(time,)`` audio.
    """

    def __init__(self, encoder, test_audio: str = "mixture"):
        self.encoder, self.test_audio = encoder, test_audio

    def embed_enrollment(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        return _unit(np.asarray(self.encoder(wav, sample_rate), dtype=np.float64))

    def score(self, enrollment: np.ndarray, wav: np.ndarray, sample_rate: int) -> float:
        return float(self.embed_enrollment(wav, sample_rate) @ enrollment)


class ResemblyzerEncoder:
    """Resemblyzer's pretrained GE2E speaker encoder (weights ship inside its wheel, so it
    needs no network): the reference system of the benchmark. An optional dependency
    (``pip install resemblyzer``); constructing one without it raises a
    :class:`CocktailError` that says so."""

    RATE = 16000  # Resemblyzer's model rate

    def __init__(self, device: str = "cpu"):
        try:
            from resemblyzer import VoiceEncoder, preprocess_wav
        except ImportError as err:
            raise CocktailError(f"Resemblyzer is not installed ({err}); pip install resemblyzer") from None
        self._preprocess = preprocess_wav
        self._encoder = VoiceEncoder(device=device, verbose=False)

    def __call__(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        x = audio.resample(np.asarray(wav, dtype=np.float32), sample_rate, self.RATE)
        # preprocess_wav normalises the volume and trims long silences (webrtcvad), as
        # Resemblyzer's own pipeline does before embedding.
        x = self._preprocess(x, source_sr=self.RATE)
        if x.size < self.RATE // 4:  # all silence by its VAD: embed the raw audio instead
            x = audio.resample(np.asarray(wav, dtype=np.float32), sample_rate, self.RATE)
        return np.asarray(self._encoder.embed_utterance(x))


def score_trials(trials: Sequence[Trial], systems: dict, progress: bool = False) -> dict[str, np.ndarray]:
    """Score every trial with every system, rendering each trial once.

    Args:
        trials: from :func:`make_trials`.
        systems: name -> :class:`Scorer` (e.g. :class:`SteeringScorer`, :class:`EncoderScorer`).

    Returns:
        name -> ``(N,)`` float64 scores, higher meaning "the enrolled talker is there".
    """
    from tqdm import tqdm

    scores = {name: np.zeros(len(trials)) for name in systems}
    enrolled: dict[tuple[str, str], np.ndarray] = {}
    for i, trial in enumerate(tqdm(trials, desc="trials", unit="trial", disable=not progress, leave=False)):
        rendered = render_trial(trial)
        for name, system in systems.items():
            key = (name, str(trial.enrollment))
            if key not in enrolled:
                enrolled[key] = system.embed_enrollment(rendered.enrollment, trial.sample_rate)
            test = rendered.clean if system.test_audio == "clean" else rendered.mixture
            scores[name][i] = system.score(enrolled[key], test, trial.sample_rate)
    return scores


# --------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------


def eer_threshold(scores, labels) -> tuple[float, float]:
    """The threshold at the equal-error point and the EER there.

    Trials are accepted when ``score >= threshold``. The miss and false-alarm rates are read
    off the ROC (every threshold kept) and the crossing is interpolated linearly between the
    two neighbouring thresholds, like :func:`cocktailparty.eval.metrics.detection.eer`, so the EER returned
    equals that function's.

    Returns:
        ``(threshold, eer)``.
    """
    from .metrics.detection import _roc, eer

    fpr, tpr, thresholds = _roc(scores, labels)
    gap = (1.0 - tpr) - fpr  # 1 at reject-all, -1 at accept-all, decreasing
    i = int(np.nonzero(gap <= 0)[0][0])
    if gap[i] == 0 or i == 0 or not np.isfinite(thresholds[i - 1]):
        return float(thresholds[i]), eer(scores, labels)
    t = gap[i - 1] / (gap[i - 1] - gap[i])
    return float(thresholds[i - 1] + t * (thresholds[i] - thresholds[i - 1])), eer(scores, labels)


@dataclass
class Calibration:
    threshold: float
    eer: float
    auc: float
    min_dcf: float
    num_trials: int

    def as_metadata(self, **extra) -> dict:
        """The checkpoint metadata ``cocktail verify`` reads (``verify_threshold``)."""
        return {"verify_threshold": self.threshold,
                "verify_calibration": {"scoring": SCORING, "eer": self.eer, "auc": self.auc,
                                       "min_dcf": self.min_dcf, "trials": self.num_trials, **extra}}


def calibrate(scores, trial_labels) -> Calibration:
    """Threshold at the EER point of held-out trial scores, with AUC and minDCF."""
    from .metrics.detection import auc, min_dcf

    threshold, rate = eer_threshold(scores, trial_labels)
    return Calibration(threshold, rate, auc(scores, trial_labels), min_dcf(scores, trial_labels),
                       int(np.asarray(trial_labels).size))


def write_calibrated_checkpoint(source: PathLike, out: PathLike, calibration: Calibration, **extra) -> Path:
    """Copy the checkpoint ``source`` to ``out`` with the calibration in its metadata (the
    weights and every other metadata entry unchanged)."""
    from ..core.checkpoint import copy_with_metadata

    return copy_with_metadata(source, out, calibration.as_metadata(**extra))
