"""Enrollments: what turns recordings of the target talkers into Tune-In's speaker memory.

In Offline mode the speaker-knowledge space reads an enrollment instead of the mixture: its
speaker features ``Y_j`` (the Embedder's output, :meth:`TuneIn.speaker_features`) are the
memory that the mixture's generic features query in the cross attention (Eq. 1), and the
attended values give the steering vectors (Eq. 2). Here:

- :class:`SpeakerMemory`: what the cross attention reads;
- :func:`embed_enrollment`: enrollment audio, in the layouts :meth:`TuneIn.forward` takes,
  to a memory;
- :func:`pooled_memory`: feature pools of different lengths, padded and masked into one;
- :class:`EnrolledTalker`: one enrolled talker kept out of a mixture, ``cocktail extract``'s
  model (:meth:`TuneIn.extractor`).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ...core import audio


class SpeakerMemory(NamedTuple):
    """What the speaker-knowledge space hands to the cross attention.

    ``features``: ``(batch, C, S_m, D)``, the sequence that steering vector ``j`` attends
    over; batch 1 is broadcast over any mixture batch. ``valid``: ``(batch, C, S_m)`` bool,
    False at padding (enrollments of different lengths), or None.
    """

    features: torch.Tensor
    valid: torch.Tensor | None = None


def pooled_memory(pools: Sequence[torch.Tensor]) -> SpeakerMemory:
    """One memory from ``C`` feature pools ``(batch, S_j, D)`` of different lengths: pool
    ``j`` becomes steering vector ``j``'s memory, zero-padded to the longest, with the
    padding marked invalid. ``features`` ``(batch, C, S_m, D)``, ``valid`` ``(batch, C, S_m)``."""
    longest = max(p.shape[1] for p in pools)
    features = torch.stack([F.pad(p, (0, 0, 0, longest - p.shape[1])) for p in pools], dim=1)
    valid = torch.stack([torch.arange(longest, device=features.device) < p.shape[1] for p in pools])
    return SpeakerMemory(features, valid.unsqueeze(0).expand(features.shape[0], -1, -1))


def embed_enrollment(model, enrollment: torch.Tensor | Sequence[torch.Tensor]) -> SpeakerMemory:
    """Run ``model``'s speaker-knowledge space on enrollment audio, once, for Offline mode.

    Args:
        model: a :class:`~.model.TuneIn` with a speaker space.
        enrollment: one of
            - ``(batch, C, time)``: one recording per source ``j`` in which that talker
              speaks, clean or mixed with other talkers. Steering vector ``j`` attends over
              all ``C`` speaker feature sequences the Embedder finds in recording ``j``
              (``S_m = C x S_e``): which of them holds the talker is not known, and picking
              the relevant parts is what the cross attention is for.
            - a list of ``C`` tensors ``(batch, time_j)``: the same, with recordings of
              different lengths (``valid`` masks the padding).
            - ``(batch, time)``: one recording in which all ``C`` talkers speak (an earlier
              part of the same conversation, say); steering vector ``j`` attends over the
              Embedder's ``j``-th sequence, exactly as in Online mode.

    Returns:
        a :class:`SpeakerMemory` to pass as ``enrollment`` to the model's ``forward``.
    """
    c = model.config.num_sources
    if isinstance(enrollment, torch.Tensor) and enrollment.dim() == 2:
        return SpeakerMemory(model.speaker_features(enrollment))
    if isinstance(enrollment, torch.Tensor):
        if enrollment.dim() != 3 or enrollment.shape[1] != c:
            raise ValueError(f"enrollment must be (batch, time), (batch, {c}, time) or a list of {c} "
                             f"(batch, time) tensors; got shape {tuple(enrollment.shape)}")
        batch = enrollment.shape[0]
        y = model.speaker_features(enrollment.flatten(0, 1))  # (batch * C, C, S_e, D)
        return SpeakerMemory(y.reshape(batch, c, -1, y.shape[-1]))
    if len(enrollment) != c:
        raise ValueError(f"expected {c} enrollment recordings (one per source), got {len(enrollment)}")
    return pooled_memory([model.speaker_features(e).flatten(1, 2) for e in enrollment])


class EnrolledTalker(nn.Module):
    """A Tune-In model narrowed to one enrolled talker: ``(batch, time) -> (batch, 1, time)``.

    It looks like any separation model with one source, so the
    :class:`~cocktailparty.inference.separate.Separator` reads, resamples, chunks, stitches
    and rescales for it unchanged.

    How the talker is picked depends on how the model was trained:

    - **Offline** models (Table 1's Tune-In Offline): output ``j`` is steered by enrollment
      ``j``, so the enrollment becomes source 1's speaker memory and output 1 is kept. The
      other talker(s) have no enrollment; their memory is the recording's own speaker
      features (the chunk being processed), i.e. *the mixture is the other talker's
      enrollment*. That is the form Offline training sees (an enrollment is the talker mixed
      with another person at 0-5 dB), and the cross attention is what picks the relevant
      parts; the target is steered by the clean enrollment either way.
    - **Online** models: the model separates as trained, and the output whose steering vector
      is closest (cosine) to the enrollment's (:class:`~cocktailparty.eval.verification.SteeringScorer`)
      is kept, chunk by chunk.

    Args:
        model: a Tune-In model with a speaker space.
        enrollment: at the model's rate, any length, clean or noisy, in any layout the
            :class:`~cocktailparty.inference.separate.Separator` takes (``(time,)``,
            ``(frames, channels)``, ``(channels, frames)``; numpy or torch; channels
            averaged); long ones are embedded in chunks of ``chunk_seconds`` whose speaker
            features are pooled.
        channels_first: the enrollment's layout when its shape does not tell (as for the
            Separator).
    """

    def __init__(self, model: nn.Module, enrollment, chunk_seconds: float = 10.0, *,
                 channels_first: bool | None = None):
        super().__init__()
        from types import SimpleNamespace

        # The verification scorer chunks a recording and averages its steering vectors; the
        # Online target is that same enrollment vector, so that extract and verify agree.
        from ...eval.verification import SteeringScorer
        from ...inference.chunks import chunk_bounds

        enrollment = audio.as_mono(enrollment, channels_first, "enrollment")

        self.model = model.eval()
        cfg = model.config
        self.config = SimpleNamespace(sample_rate=cfg.sample_rate, num_sources=1)
        self.offline = cfg.mode == "offline"
        device = next(model.parameters()).device
        if self.offline:
            rate = cfg.sample_rate
            pools = []
            with torch.inference_mode():
                for start, stop in chunk_bounds(enrollment.shape[-1], int(chunk_seconds * rate), minimum=rate):
                    piece = torch.from_numpy(np.ascontiguousarray(enrollment[start:stop])).to(device)[None]
                    # (1, C, S_e, D) -> (1, C * S_e, D): all C feature sequences the Embedder
                    # finds in the enrollment, as embed_enrollment pools one per source.
                    pools.append(model.embed_enrollment(piece).features.flatten(1, 2))
            self.register_buffer("pool", torch.cat(pools, dim=1), persistent=False)
        else:
            target = SteeringScorer(model, chunk_seconds=chunk_seconds).embed_enrollment(enrollment, cfg.sample_rate)
            self.register_buffer("target", torch.from_numpy(target).float().to(device), persistent=False)

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        batch = mixture.shape[0]
        if not self.offline:
            out = self.model(mixture, mode="online", return_details=True)
            z = F.normalize(out.steering.float(), dim=-1)  # (batch, C, D)
            pick = (z @ self.target).argmax(dim=1)  # (batch,)
            return out.sources[torch.arange(batch, device=pick.device), pick].unsqueeze(1)
        own = self.model.embed_enrollment(mixture).features.flatten(1, 2)  # (batch, C * S, D)
        c = self.model.config.num_sources
        memory = pooled_memory([self.pool.expand(batch, -1, -1)] + [own] * (c - 1))
        return self.model(mixture, memory)[:, :1]  # output 1 is steered by enrollment 1
