"""Extraction and verification with any separator: separate, then pick the output by voice.

A plain separator (the bundled ``tdanet-rooms16k``) knows nothing of voices, but it
separates real people far better than the Tune-In model trained on TTS voices alone. Paired
with a speaker embedder it does what ``cocktail extract``, ``cocktail verify`` and the page of
``cocktail serve`` need:

- extract: separate the recording, embed every output and the enrollment, keep the output
  whose embedding is closest (cosine) to the enrollment's;
- verify: the score of a recording is that largest cosine ("is the enrolled talker one of
  the talkers here").

Embedders (``--embedder``):

- a talker-aware model's speaker vectors (:class:`TalkerModelEmbedder`): the bundled
  ``tunein-online-synth8k`` (``tunein``, the default: needs nothing beyond this package) or
  any talker-aware checkpoint;
- ``resemblyzer``: Resemblyzer's pretrained GE2E encoder (:class:`ResemblyzerEmbedder`), an
  optional dependency (``pip install --no-deps resemblyzer``), asked for only when chosen.

    >>> selector = VoiceSelector(load_embedder("tunein"), enrollment, 16000)
    >>> tracks = Separator.from_pretrained("tdanet-rooms16k")(mixture, 16000)   # (C, time)
    >>> kept = tracks[selector.pick(tracks, 16000)]                             # (time,)
    >>> score = selector.score(tracks, 16000)                                   # max cosine
"""

from __future__ import annotations

import importlib.util
from typing import Callable, Protocol

import numpy as np
import torch

from ..core.errors import CocktailError

RESEMBLYZER = "resemblyzer"
# --embedder name of the bundled talker-aware model, core.checkpoint.DEFAULT_ENROLLED_MODEL
ENROLLED_MODEL_ALIAS = "tunein"
DEFAULT_EMBEDDER = ENROLLED_MODEL_ALIAS

# verify's decision threshold for a bundled separator and embedder: the EER point of 120
# trials on the 5 validation voices of the real corpus (python benchmarks/real_voices.py
# --real-corpus data/corpus-real16k-v1 --sets, column "threshold"). Real voices, not TTS
# ones: the scores of separated real talkers are what verify sees.
CALIBRATED_THRESHOLDS: dict[tuple[str, str], float] = {
    ("tdanet-rooms16k", ENROLLED_MODEL_ALIAS): 0.8201,
    ("tdanet-rooms16k", RESEMBLYZER): 0.6887,
}


class SpeakerEmbedder(Protocol):
    """``(wav (time,), sample_rate) -> (D,)`` unit vector describing the one talker of ``wav``."""

    def __call__(self, wav: np.ndarray, sample_rate: int) -> np.ndarray: ...


class TalkerModelEmbedder:
    """A talker-aware model's speaker vectors of a one-talker recording, as one unit vector:
    the mean of its unit vectors over outputs and chunks, as ``cocktail verify`` embeds an
    enrollment (on one talker every output's vector reads that talker)."""

    def __init__(self, model: torch.nn.Module):
        from ..eval.verification import SteeringScorer

        self.scorer = SteeringScorer(model)

    def __call__(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        return self.scorer.embed_enrollment(wav, sample_rate)


class ResemblyzerEmbedder:
    """Resemblyzer's pretrained GE2E speaker encoder (the network of
    :class:`~cocktailparty.data.voices.VoiceEmbedder`, which reads only the weights file of
    the ``resemblyzer`` package). Refused in words when the package is not installed."""

    def __init__(self, device: str | torch.device = "cpu"):
        if importlib.util.find_spec(RESEMBLYZER) is None:
            raise CocktailError("--embedder resemblyzer needs Resemblyzer's pretrained weights: pip install "
                                "--no-deps resemblyzer (or use --embedder tunein, which needs nothing more)")
        from ..data.voices import VoiceEmbedder

        self.encoder = VoiceEmbedder(device=str(device))

    def __call__(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        return self.encoder.embed(np.asarray(wav, dtype=np.float32), sample_rate).astype(np.float64)


def load_embedder(name: str | None = None, device: str | torch.device = "cpu") -> SpeakerEmbedder:
    """``resemblyzer``, ``tunein`` (the bundled Tune-In model) or a talker-aware model's name
    or checkpoint; None: :data:`DEFAULT_EMBEDDER`."""
    from ..core.checkpoint import DEFAULT_ENROLLED_MODEL, load_model
    from ..models.conditioning import require_talkers

    name = name or DEFAULT_EMBEDDER
    if name == RESEMBLYZER:
        return ResemblyzerEmbedder(device)
    spec = DEFAULT_ENROLLED_MODEL if name == ENROLLED_MODEL_ALIAS else name
    expected = f"--embedder {name!r}: expected '{ENROLLED_MODEL_ALIAS}', '{RESEMBLYZER}' or a model that knows talkers by their voice"
    try:
        model = load_model(spec, device)
    except CocktailError as err:
        raise CocktailError(f"{expected} ({err})") from None
    if not callable(getattr(model, "speaker_vectors", None)):
        raise CocktailError(f"{expected} (a Tune-In checkpoint); {spec!r} is a "
                            f"{getattr(model, 'architecture', type(model).__name__)}")
    require_talkers(model, "--embedder", spec)  # e.g. Tune-In built without a speaker space
    return TalkerModelEmbedder(model)


def calibrated_threshold(separator: str, embedder: str) -> float | None:
    """verify's threshold for a bundled ``separator`` (its name as given) with ``embedder``
    (``tunein`` or the bundled Tune-In model's name, ``resemblyzer``), if one was calibrated."""
    from ..core.checkpoint import DEFAULT_ENROLLED_MODEL

    return CALIBRATED_THRESHOLDS.get((separator, ENROLLED_MODEL_ALIAS if embedder == DEFAULT_ENROLLED_MODEL else embedder))


class VoiceSelector:
    """Which output of a separation is the enrolled talker.

    Args:
        embedder: a :class:`SpeakerEmbedder`.
        enrollment: ``(time,)`` a recording of the talker at ``sample_rate``.
    """

    def __init__(self, embedder: SpeakerEmbedder, enrollment: np.ndarray, sample_rate: int):
        self.embedder = embedder
        self.target = _unit(embedder(enrollment, sample_rate))

    def similarities(self, tracks: np.ndarray, sample_rate: int,
                     before_each: Callable[[int], None] | None = None) -> np.ndarray:
        """``(C,)`` cosine between the enrollment and each output of ``tracks`` ``(C, time)``;
        ``before_each(i)``, when given, is called before output ``i`` is embedded (progress:
        an embedding can take as long as the separation)."""
        cosines = []
        for index, track in enumerate(tracks):
            if before_each is not None:
                before_each(index)
            cosines.append(float(_unit(self.embedder(track, sample_rate)) @ self.target))
        return np.array(cosines)

    def closest(self, tracks: np.ndarray, sample_rate: int,
                before_each: Callable[[int], None] | None = None) -> tuple[int, float]:
        """The index of the output of ``tracks`` ``(C, time)`` closest to the enrollment and its
        cosine, the verification score, from one embedding of each output (``before_each`` as
        for :meth:`similarities`)."""
        cosines = self.similarities(tracks, sample_rate, before_each)
        index = int(np.argmax(cosines))
        return index, float(cosines[index])

    def pick(self, tracks: np.ndarray, sample_rate: int) -> int:
        """The index of the output of ``tracks`` ``(C, time)`` closest to the enrollment."""
        return self.closest(tracks, sample_rate)[0]

    def score(self, tracks: np.ndarray, sample_rate: int) -> float:
        """Verification score: the largest cosine between the enrollment and an output."""
        return self.closest(tracks, sample_rate)[1]


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / (np.linalg.norm(x) + 1e-12)
