"""Tune-In's training objective (Wang et al., AAAI 2021, "Losses"): Eq. 5-7.

The speaker-knowledge space is trained with Tune-InCE (Eq. 5-6) against an EMA bank of
speaker embeddings ``E`` ``(N, D)``, plus a regularizer that keeps the bank from collapsing
(Eq. 7); the joint loss is ``L_SI-SNR + lambda (L_InCE + L_reg)``. "Tune-ID", the fully
supervised comparison, replaces the EMA bank with learnable token embeddings and the loss
with the usual softmax over them. Steering vector ``j`` steers output ``j`` (see
:mod:`.model`), so the permutation that pairs outputs with references also gives each
``Z_j`` its speaker.

:class:`TuneInObjective` is what :meth:`TuneIn.training_objective` hands to the training
engine (its ``training_objective`` hook, :mod:`cocktailparty.train.engine`).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ...core.errors import CocktailError
from ...eval.metrics.permutations import best_permutation, permute
from ...eval.metrics.signal_ratios import EPS, si_snr
from ...train.losses import pit_si_snr_loss

__all__ = [
    "SUPERVISIONS",
    "PERMUTATIONS",
    "TuneIDLoss",
    "TuneInCELoss",
    "TuneInObjective",
    "ema_bank_update",
    "embedding_permutation",
    "output_speakers",
]


def _gather(t: torch.Tensor) -> torch.Tensor:
    """Concatenate ``t`` from every process along dim 0 (itself when not distributed)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


def ema_bank_update(bank: torch.Tensor, steering: torch.Tensor, speaker_ids: torch.Tensor, step: float) -> torch.Tensor:
    """The bank after ``Delta E_{i_j} = step * (Z_j - E_{i_j})`` for every steering vector.

    Updates apply one after another in row-major ``(batch, C)`` order; a speaker seen ``k``
    times in the batch ends at ``(1-step)^k E + sum_m step (1-step)^(k-m) Z_m``, computed in
    closed form (no loop), differentiable in ``steering``.

    Args:
        bank: ``(N, D)``. steering: ``(..., D)``. speaker_ids: ``(...)`` int64 in ``[0, N)``.

    Returns:
        the new bank ``(N, D)`` (``bank`` itself is not modified).
    """
    z = steering.reshape(-1, steering.shape[-1]).to(bank.dtype)
    ids = speaker_ids.reshape(-1)
    same = ids[:, None] == ids[None, :]
    later = torch.triu(same, diagonal=1).sum(dim=1)  # updates of the same speaker after this one
    # Counted with index_add, not bincount: on CUDA bincount reads its input's maximum back to
    # the host, which a CUDA-graph capture of the training step cannot hold.
    count = torch.zeros(bank.shape[0], dtype=bank.dtype, device=bank.device).index_add(
        0, ids, torch.ones_like(ids, dtype=bank.dtype))
    decay = 1.0 - step
    weight = step * torch.pow(torch.full_like(z[:, 0], decay), later.to(bank.dtype))
    kept = torch.pow(torch.full_like(count, decay), count)
    return bank * kept[:, None] + torch.zeros_like(bank).index_add(0, ids, weight[:, None] * z)


class TuneInCELoss(nn.Module):
    """Tune-InCE (Eq. 5-6) and the collapse-preventing regularizer (Eq. 7).

    ``L_InCE = -log softmax_i(-alpha ||Z_j - E_i||^2)[i_j]``, averaged over all ``Z_j``;
    ``alpha = exp(log_alpha) > 0`` is learned. ``L_reg = -1/(gamma C) sum_j min_{i != i_j}
    log ||E_{i_j} - E_i||_1``, averaged over the batch.

    The bank ``E`` is a buffer (no gradient): InCE is taken against the bank as it was
    before this batch. ``L_reg`` is taken on the bank after this batch's EMA step, whose
    entries depend on ``Z_j`` through ``step * Z_j``: that is the only way Eq. 7 can push
    against a collapse of the steering vectors, since ``E`` itself is not learned. The bank
    moves (training mode, or ``update=True``) after the loss is computed; under DDP every
    process applies every process's update, so the banks stay equal.

    Args:
        num_speakers: ``N``, the training speakers. dim: ``D``.
        step: ``epsilon``, the EMA step. gamma: Eq. 7's ``gamma``. alpha: initial ``alpha``.
        init_std: the bank starts as ``N(0, init_std^2)`` vectors (distinct, so Eq. 7's
            logarithm starts finite).
    """

    def __init__(self, num_speakers: int, dim: int, step: float = 0.01, gamma: float = 1.0, alpha: float = 1.0,
                 init_std: float = 1.0):
        super().__init__()
        if num_speakers < 2:
            raise ValueError(f"Tune-InCE needs at least 2 training speakers, got {num_speakers}")
        if not 0.0 <= step <= 1.0 or gamma <= 0 or alpha <= 0:
            raise ValueError("need 0 <= step <= 1, gamma > 0 and alpha > 0")
        self.step, self.gamma = step, gamma
        self.register_buffer("bank", torch.randn(num_speakers, dim) * init_std)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(alpha)))

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp()

    def logits(self, steering: torch.Tensor) -> torch.Tensor:
        """``-alpha ||Z - E_i||^2`` for every bank entry: ``(..., N)``."""
        dist = (steering.float().unsqueeze(-2) - self.bank).pow(2).sum(dim=-1)
        return -self.alpha * dist

    def forward(self, steering: torch.Tensor, speaker_ids: torch.Tensor, update: bool | None = None
                ) -> dict[str, torch.Tensor]:
        """``steering`` ``(batch, C, D)``, ``speaker_ids`` ``(batch, C)`` (the speaker of each
        ``Z_j``) -> ``{"ince", "reg"}`` scalars."""
        z = steering.float()
        ince = F.cross_entropy(self.logits(z).flatten(0, -2), speaker_ids.flatten())
        updated = ema_bank_update(self.bank, z, speaker_ids, self.step)
        l1 = (updated[speaker_ids].unsqueeze(-2) - updated).abs().sum(dim=-1)  # (batch, C, N)
        l1 = l1.masked_fill(F.one_hot(speaker_ids, self.bank.shape[0]).bool(), float("inf"))
        reg = -l1.amin(dim=-1).clamp_min(1e-12).log().mean() / self.gamma
        if self.training if update is None else update:
            with torch.no_grad():
                self.bank.copy_(ema_bank_update(self.bank, _gather(z.detach()), _gather(speaker_ids), self.step))
        return {"ince": ince, "reg": reg}


class TuneIDLoss(nn.Module):
    """Tune-ID, the fully supervised comparison: learnable speaker token embeddings
    ``(N, D)`` in place of the EMA bank, and the conventional token-embedding loss (softmax
    cross-entropy over ``Z_j . E_i``) in place of Tune-InCE. Returns ``{"id"}``."""

    def __init__(self, num_speakers: int, dim: int):
        super().__init__()
        self.tokens = nn.Embedding(num_speakers, dim)

    @property
    def bank(self) -> torch.Tensor:
        return self.tokens.weight

    def forward(self, steering: torch.Tensor, speaker_ids: torch.Tensor, update: bool | None = None
                ) -> dict[str, torch.Tensor]:
        logits = steering.float() @ self.tokens.weight.float().t()
        return {"id": F.cross_entropy(logits.flatten(0, -2), speaker_ids.flatten())}


def embedding_permutation(steering: torch.Tensor, embeddings: torch.Tensor, speaker_ids: torch.Tensor) -> torch.Tensor:
    """The pairing of outputs and references read off the speaker embeddings (the training
    speed-up of the paper's Appendix 1.7): output ``s`` is steered by ``Z_s``, so it pairs
    with the reference whose speaker's embedding ``E`` is nearest, jointly over the batch
    item. Costs ``C x C`` distances in ``D`` dimensions instead of ``C x C`` SI-SNRs over the
    waveform, and leaves ``C`` SI-SNRs to compute instead of ``C^2``.

    Args:
        steering: ``(batch, C, D)``. embeddings: ``(N, D)`` (the bank or the tokens).
        speaker_ids: ``(batch, C)``, the speaker of each reference.

    Returns:
        ``perm`` ``(batch, C)``, the convention of :func:`pit_from_pairwise`.
    """
    targets = embeddings[speaker_ids].to(steering.dtype)  # (batch, C, D) in reference order
    cost = (steering.detach().unsqueeze(-2) - targets.unsqueeze(-3)).pow(2).sum(dim=-1)  # [b, s, j]
    return best_permutation(cost, maximize=False)


def output_speakers(perm: torch.Tensor, speaker_ids: torch.Tensor) -> torch.Tensor:
    """The speaker of each output (and steering vector): ``out[b, perm[b, j]] = ids[b, j]``."""
    return torch.empty_like(speaker_ids).scatter_(-1, perm, speaker_ids)


SUPERVISIONS = ("tune-in", "tune-id")
PERMUTATIONS = ("pit", "embedding", "enrolled")


class TuneInObjective(nn.Module):
    """Tune-In's training loss, ``L_SI-SNR + lambda (L_InCE + L_reg)``, with its state.

    Called as ``objective(model, batch)`` (the engine's hook, see :mod:`cocktailparty.train.engine`)
    with ``batch["mixture"]`` ``(B, T)``, ``batch["sources"]`` ``(B, C, T)``,
    ``batch["speaker_ids"]`` ``(B, C)`` and, for Offline training, ``batch["enrollment"]``
    (anything :meth:`TuneIn.embed_enrollment` takes). Returns ``{"loss", "si_snr", ...}``.

    Args:
        num_speakers: ``N``; 0 (no speaker labels) trains with SI-SNR alone.
        dim: the steering vectors' ``D``.
        weight: ``lambda``. step, gamma, alpha: of :class:`TuneInCELoss`.
        supervision: ``"tune-in"`` (EMA bank, Tune-InCE + L_reg) or ``"tune-id"``.
        permutation: ``"pit"`` (u-PIT on SI-SNR), ``"embedding"`` (:func:`embedding_permutation`) or
            ``"enrolled"``: output ``j`` is scored against reference ``j`` alone, for Offline
            training where enrollment ``j`` is of the talker of ``sources[:, j]`` (what
            ``cocktail extract`` relies on: the enrolled talker comes out as output ``j``). Under
            PIT an Offline model may ignore its enrollments and still reach the same loss.
        stage: ``"joint"``; ``"speaker"`` (speaker augmentation: the speaker loss alone, the
            speech space not run); ``"speech"`` (fine-tuning the speech space: SI-SNR alone).
        mode: the model's mode for training calls (None: the model's own, or Offline when the
            batch has an enrollment).
    """

    def __init__(self, num_speakers: int, dim: int, weight: float = 1.0, step: float = 0.01, gamma: float = 1.0,
                 alpha: float = 1.0, supervision: str = "tune-in", permutation: str = "pit", stage: str = "joint",
                 mode: str | None = None):
        super().__init__()
        if supervision not in SUPERVISIONS:
            raise ValueError(f"supervision must be one of {', '.join(SUPERVISIONS)}, got {supervision!r}")
        if permutation not in PERMUTATIONS:
            raise ValueError(f"permutation must be one of {', '.join(PERMUTATIONS)}, got {permutation!r}")
        if stage not in ("joint", "speaker", "speech"):
            raise ValueError(f"stage must be joint, speaker or speech, got {stage!r}")
        self.weight, self.permutation, self.stage, self.mode = weight, permutation, stage, mode
        self.speaker_loss: nn.Module | None = None
        if num_speakers:
            self.speaker_loss = (TuneInCELoss(num_speakers, dim, step, gamma, alpha) if supervision == "tune-in"
                                 else TuneIDLoss(num_speakers, dim))
        if stage == "speaker" and self.speaker_loss is None:
            raise ValueError("the speaker stage needs speaker labels (num_speakers > 0)")

    def _speaker_terms(self, steering: torch.Tensor, perm: torch.Tensor, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        # ids may label only the first references (speech vs music: the music, last, has no
        # speaker); the steering vector of the output paired with reference j gets ids[:, j].
        slots = perm[:, : ids.shape[-1]]
        steering = steering.gather(1, slots.unsqueeze(-1).expand(-1, -1, steering.shape[-1]))
        terms = self.speaker_loss(steering, ids)
        return {**terms, "speaker": sum(terms.values())}

    def forward(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        mixture, references = batch["mixture"], batch["sources"].float()
        ids, enrollment = batch.get("speaker_ids"), batch.get("enrollment")
        use_speakers = self.speaker_loss is not None and ids is not None and self.stage != "speech"
        if self.stage == "speaker":
            steering = model.steering_vectors(mixture, enrollment, mode=self.mode)[0]
            perm = embedding_permutation(steering, self.speaker_loss.bank, ids)
            terms = self._speaker_terms(steering, perm, ids)
            return {"loss": terms["speaker"], **terms}
        out = model(mixture, enrollment, mode=self.mode, return_details=True)
        estimates = out.sources.float()
        labelled = ids is not None and ids.shape[-1] == estimates.shape[1]
        if self.permutation == "enrolled":
            if enrollment is None:
                raise CocktailError("training.objective.permutation 'enrolled' pairs output j with enrollment j's "
                                    "talker: it needs enrollments (data.enrollment_seconds, Offline mode)")
            perm = torch.arange(estimates.shape[1], device=estimates.device).expand(estimates.shape[0], -1)
            si = -si_snr(estimates, references, eps=EPS).mean()
        elif self.permutation == "embedding" and use_speakers and labelled and out.steering is not None:
            perm = embedding_permutation(out.steering, self.speaker_loss.bank, ids)
            si = -si_snr(permute(estimates, perm), references, eps=EPS).mean()
        else:
            si, perm = pit_si_snr_loss(estimates, references)
        terms = {"si_snr": si}
        loss = si
        if use_speakers and out.steering is not None:
            speaker = self._speaker_terms(out.steering, perm, ids)
            terms.update(speaker)
            loss = loss + self.weight * speaker["speaker"]
        return {"loss": loss, **terms}
