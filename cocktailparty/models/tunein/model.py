"""Tune-In (Wang, Lam, Su & Yu, "Tune-In: Training Under Negative Environments with
Interference for Attention Networks Simulating Cocktail Party Effect", AAAI 2021).

The model, with the paper's Eq. 1-4; the GALR blocks are in :mod:`.galr`, the training
objective (Eq. 5-7) in :mod:`.objective`, and what turns enrollment recordings into speaker
memory in :mod:`.enrollment`.

A TasNet encoder turns the mixture into frames ``(D, I)``, cut into half-overlapping
segments ``(D, S, K)``. GALR blocks then work in three spaces:

- the **generic-feature space**: ``B`` blocks shared by both tasks;
- the **speaker-knowledge space**: ``B1`` blocks and the Embedder, which projects ``D`` to
  ``C x D`` and averages over the ``K`` positions, giving ``C`` speaker feature sequences
  ``Y_j`` ``(D, S_j)``;
- the **speech-stimuli space**: ``B2`` blocks whose self-attention is replaced by dual
  attention (Eq. 3-4), then DPRNN's decoder (masks and the TasNet synthesis basis).

The spaces talk only through attention. Bottom-up, the generic features averaged over
``K`` query the speaker features (cross attention, Eq. 1) and the attended values averaged
over segments give one steering vector ``Z_j`` ``(D,)`` per speaker (Eq. 2). Top-down,
``r(Z_j)`` and ``h(Z_j)`` modulate the keys and values of every speech-space attention
(Eq. 3-4). At training time ``Z_j`` gets Gaussian noise ``N(0, 0.1)`` (or dropout).

Modes (``config.mode``, or the ``mode`` argument of :meth:`TuneIn.forward`):

- ``"autopilot"``: no speaker knowledge; ``r = 1`` and ``h = 0``, which is plain
  self-attention, so the speaker space is not run (a model built in this mode has none).
- ``"online"``: the speaker space reads the same mixture (``S_j = S``).
- ``"offline"``: the speaker space reads a separate enrollment of any length, clean or
  itself a mixture. :meth:`TuneIn.embed_enrollment` computes its speaker features once;
  pass them back as ``enrollment`` (or store them with :meth:`TuneIn.enroll`) and later
  calls skip that work. A model built in this mode declares the enrollment as its extra
  input (:mod:`cocktailparty.models.conditioning`), which is how training, export and ONNX
  know to pass one.

Output ``j`` is steered by ``Z_j``: the last speech block keeps one stream per steering
vector and the decoder's copy ``j`` reads stream ``j`` (see :meth:`TuneIn._speech_space`), so in
Offline mode the source enrolled as ``j`` comes out as output ``j``, and in training the
permutation can be read off the speaker embeddings (:mod:`.objective`).

Sizes: see ``cocktailparty/configs/tunein-*-wsj0.yaml`` for how ``B, B1, B2, K, Q`` were
derived from the paper's Table 1 (2.3M / 2.4M / 3.2M parameters; 28.4 / 28.9 / 37.3 GFLOPs
per second).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from ...core.errors import CocktailError
from ..common import make_norm, mask_activation, overlap_add, segment
from ..conditioning import ExtraInput
from ..registry import register
from ..tasnet import MaskingSeparator, WaveformDecoder, WaveformEncoder, check_waveform
from . import enrollment as _enrollment
from .enrollment import EnrolledTalker, SpeakerMemory
from .galr import GALRBlock

MODES = ("autopilot", "online", "offline")
EMBEDDING_REGULARIZERS = ("noise", "dropout", "none")

# What an Offline model takes besides the mixture (the conditional-separator interface).
ENROLLMENT = ExtraInput("enrollment", per_source=True,
                        what="a recording of each target talker, clean or mixed with others (Offline mode)")


@dataclass
class TuneInConfig:
    """Tune-In hyperparameters. Defaults: the WSJ0-2mix Online model of Table 1."""

    sample_rate: int = 8000
    num_sources: int = 2  # C
    mode: str = "online"  # "autopilot" builds no speaker space; "offline" needs enrollments
    num_filters: int = 128  # N: encoder basis size
    kernel_size: int = 4  # encoder window (samples); 16 for WSJ0-music
    stride: int = 2  # 50% window overlap, as in DPRNN
    feature_dim: int = 128  # D
    hidden: int = 128  # LSTM units per direction
    segment_size: int = 256  # K (frames); segments overlap by half
    low_dim: int = 8  # Q: the K positions are mapped to Q before attention
    num_heads: int = 8
    dropout: float = 0.1  # attention weights and the attention sublayer's output
    generic_blocks: int = 2  # B
    speaker_blocks: int = 2  # B1
    speech_blocks: int = 4  # B2
    embedding_regularizer: str = "noise"  # on Z_j at training time: "noise", "dropout", "none"
    embedding_noise: float = 0.1  # standard deviation of the Gaussian noise
    embedding_dropout: float = 0.1
    norm: str = "gLN"  # on the encoder output, as in DPRNN
    mask_activation: str = "none"  # DPRNN's gated output (tanh * sigmoid) is the mask
    inference_chunks: int = 4  # segment groups per LSTM call without gradients (memory only)


@dataclass
class TuneInOutput:
    """Everything :meth:`TuneIn.forward` computes, with ``return_details=True``.

    sources: ``(batch, C, time)``.
    steering: ``Z_j``, ``(batch, C, D)``, before the training-time noise; None in Autopilot.
    memory: the speaker features attended over (:class:`SpeakerMemory`); None in Autopilot.
    cross_attention: ``a_crs,j`` (Eq. 1), ``(batch, C, S, S_m)``; None in Autopilot.
    """

    sources: torch.Tensor
    steering: torch.Tensor | None = None
    memory: SpeakerMemory | None = None
    cross_attention: torch.Tensor | None = None


class CrossAttention(nn.Module):
    """Bottom-up cross attention (Eq. 1-2): generic features query the speaker features.

    Single-head, so that ``a_crs,j`` is one ``S x S_j`` map per speaker, as in Eq. 1; the
    scores are scaled by ``1/sqrt(D)`` as in Sperber et al.'s attention, which the paper says
    it follows (Eq. 1 omits the constant; it only re-parametrises Query).

    Input: queries ``(batch, S, D)`` (the generic output averaged over ``K``) and a
    :class:`SpeakerMemory`. Output: ``Z`` ``(batch, C, D)`` and ``a_crs`` ``(batch, C, S, S_m)``.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)

    def forward(self, queries: torch.Tensor, memory: SpeakerMemory) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.query(queries).unsqueeze(1)  # (batch, 1, S, D)
        k, v = self.key(memory.features), self.value(memory.features)  # (batch, C, S_m, D)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        if memory.valid is not None:
            scores = scores.masked_fill(~memory.valid[:, :, None, :], float("-inf"))
        attn = scores.softmax(dim=-1)  # Eq. 1
        # Eq. 2: sum over S_j of a * Value, averaged over the S queries; averaging the
        # weights first gives the same vector with one matrix-vector product.
        steering = torch.matmul(attn.mean(dim=2, keepdim=True), v).squeeze(2)
        return steering, attn


def _check(cfg: TuneInConfig) -> None:
    if cfg.mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {cfg.mode!r}")
    if cfg.embedding_regularizer not in EMBEDDING_REGULARIZERS:
        raise ValueError(f"embedding_regularizer must be one of {', '.join(EMBEDDING_REGULARIZERS)}, "
                         f"got {cfg.embedding_regularizer!r}")
    if cfg.num_sources < 1:
        raise ValueError(f"num_sources must be >= 1, got {cfg.num_sources}")
    if cfg.segment_size < 2 or cfg.segment_size % 2:
        raise ValueError(f"segment_size must be even (segments overlap by half), got {cfg.segment_size}")
    if not 1 <= cfg.low_dim <= cfg.segment_size:
        raise ValueError(f"low_dim (Q) must be in 1..segment_size, got {cfg.low_dim}")
    if cfg.speech_blocks < 1:
        raise ValueError("speech_blocks (B2) must be >= 1: the speech space is where the steering acts")
    if cfg.mode != "autopilot" and cfg.speaker_blocks < 0:
        raise ValueError(f"speaker_blocks (B1) must be >= 0, got {cfg.speaker_blocks}")


@register("tunein", TuneInConfig)
class TuneIn(MaskingSeparator):
    """Tune-In: encoder -> generic GALR blocks -> (speaker space, cross attention) ->
    steered speech GALR blocks -> DPRNN decoder.

    ``model(mixture)`` maps ``(batch, time)`` to ``(batch, C, time)`` in ``config.mode``
    (Offline mode then uses the enrollment stored by :meth:`enroll`). See
    :meth:`forward` for enrollments, other modes and the intermediate results.

    Interfaces (:mod:`cocktailparty.models.conditioning`): built in Offline mode it declares
    ``extra_inputs = (enrollment,)``; built with a speaker space (Online, Offline) it is
    talker-aware (:meth:`speaker_vectors`, :meth:`extractor`).
    """

    def __init__(self, config: TuneInConfig):
        super().__init__()
        _check(config)
        self.config = cfg = config
        dim, c = cfg.feature_dim, cfg.num_sources

        def blocks(count: int) -> nn.ModuleList:
            return nn.ModuleList(
                GALRBlock(dim, cfg.hidden, cfg.segment_size, cfg.low_dim, cfg.num_heads, cfg.dropout,
                          cfg.inference_chunks)
                for _ in range(count)
            )

        # Generic-feature space (with the front end).
        self.encoder = WaveformEncoder(cfg.num_filters, cfg.kernel_size, cfg.stride)
        self.norm = make_norm(cfg.norm, cfg.num_filters)
        self.bottleneck = nn.Conv1d(cfg.num_filters, dim, 1, bias=False)  # bias-free, as DPRNN's
        self.generic_blocks = blocks(cfg.generic_blocks)
        # Speaker-knowledge space and the two attentions between the spaces.
        self.has_speaker_space = cfg.mode != "autopilot"
        if self.has_speaker_space:
            self.speaker_blocks = blocks(cfg.speaker_blocks)
            self.embedder = nn.Linear(dim, c * dim)
            self.cross_attention = CrossAttention(dim)
            # r() and h() of Eq. 3-4, one pair for all speech blocks: the paper names one
            # pair, and Offline's 2.4M - 2.3M = 0.1M fits one pair (33k) plus the cross
            # attention (50k); a pair per block would add 0.13M on its own.
            self.steer_scale = nn.Linear(dim, dim)
            self.steer_shift = nn.Linear(dim, dim)
        # Speech-stimuli space and DPRNN's decoder.
        self.speech_blocks = blocks(cfg.speech_blocks)
        self.head_act = nn.PReLU()
        # DPRNN's 1x1 Conv2D from D to C x D: one copy of the features per source.
        self.head = nn.Linear(dim, c * dim)
        self.out_value = nn.Conv1d(dim, cfg.num_filters, 1)
        self.out_gate = nn.Conv1d(dim, cfg.num_filters, 1)
        self.mask_act = mask_activation(cfg.mask_activation)
        self.decoder = WaveformDecoder(cfg.num_filters, cfg.kernel_size, cfg.stride)
        self._enrolled: SpeakerMemory | None = None
        self.activation_checkpointing = False

    def set_activation_checkpointing(self, enabled: bool) -> None:
        """With gradients, keep only each GALR block's input for backward and run the block
        again there. Offline training needs it: the paper's 16-s enrollments put 16 times the
        mixture's audio through the generic and speaker blocks, and at batch 8 x 2 s their
        activations outgrow an H200 (141 GB); the cost is one more forward of the blocks."""
        self.activation_checkpointing = bool(enabled)

    def _block(self, block: GALRBlock, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if self.activation_checkpointing and torch.is_grad_enabled():
            # Non-reentrant: keyword arguments pass through, and dropout's RNG state is
            # replayed, so the recomputed block is the same function as the first pass.
            return checkpoint(block, x, *args, use_reentrant=False, **kwargs)
        return block(x, *args, **kwargs)

    # --- the three spaces -----------------------------------------------------------------

    def _encode(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(batch, time)`` -> encoder output ``(batch, N, I)`` and the generic space's output
        ``X^(B)`` ``(batch, S, K, D)``."""
        check_waveform(wav)
        feats = self.encoder(wav)
        # Segments without DPRNN's extra hop at the ends (edges=False; see common.segment).
        x = segment(self.bottleneck(self.norm(feats)).transpose(1, 2), self.config.segment_size, dim=1, edges=False)
        for block in self.generic_blocks:
            x = self._block(block, x, inplace=True)  # each input is this loop's own tensor
        return feats, x

    def _speaker_features(self, x: torch.Tensor) -> torch.Tensor:
        """Speaker-knowledge space and Embedder: ``X^(B)`` ``(batch, S, K, D)`` -> ``C``
        speaker feature sequences ``(batch, C, S, D)``."""
        for i, block in enumerate(self.speaker_blocks):
            x = self._block(block, x, inplace=i > 0)  # X^(B) itself still feeds the speech space
        # The Embedder projects D -> C x D and averages over K; the projection is linear, so
        # averaging first gives the same result K times cheaper.
        y = self.embedder(x.mean(dim=2))  # (batch, S, C * D)
        return y.unflatten(-1, (self.config.num_sources, -1)).transpose(1, 2)

    def _speech_space(self, x: torch.Tensor, steering: torch.Tensor | None) -> torch.Tensor:
        """Speech-stimuli space: ``X^(B)`` ``(batch, S, K, D)`` -> ``(batch, C, S, K, D)``
        (one stream per steering vector) or, in Autopilot, ``(batch, 1, S, K, D)``."""
        steer = None
        if steering is not None:
            z = self._regularize(steering)
            steer = (self.steer_scale(z), self.steer_shift(z))
        last = len(self.speech_blocks) - 1
        for i, block in enumerate(self.speech_blocks):
            # Every block averages its C dual-attention outputs back into one stream before
            # the next (costly) recurrent layer, except the last, whose stream j feeds the
            # decoder's copy j. Running the whole speech space once per speaker would cost
            # B2 more blocks in Offline mode; Table 1 has Offline only 0.5 GFLOPs (2%) above
            # Autopilot, which leaves room for the C attentions and nothing more.
            x = self._block(block, x, steer, keep_streams=i == last, inplace=True)
        return x if x.dim() == 5 else x.unsqueeze(1)

    def _masks(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """DPRNN's mask head: streams ``(batch, C or 1, S, K, D)`` -> masks ``(batch, C, N, I)``
        for ``frames`` (``I``) encoder frames; the caller hands over its only reference to
        ``x`` (see :meth:`forward`)."""
        cfg = self.config
        # Shapes follow the tensors (unflatten/flatten) rather than sizes read off them, which
        # an ONNX export would freeze at the traced ones.
        # DPRNN applies PReLU and a 1x1 Conv2D (D -> C x D) per segment position, then
        # overlap-adds. The conv is linear, so overlap-adding first (I frames instead of 2I
        # positions) gives the same result at half the cost (the mean instead of the sum is
        # a factor 2 in W). Stream j meets only copy j's weights: a grouped conv.
        y = overlap_add(self.head_act(x), frames, dim=-2, edges=False)  # (batch, C or 1, I, D)
        del x
        y = y.transpose(-1, -2).flatten(1, 2)  # (batch, C*D or D, I)
        weight = self.head.weight.unsqueeze(-1)  # (C*D, D, 1)
        y = F.conv1d(y, weight, self.head.bias, groups=y.shape[1] // cfg.feature_dim)
        y = y.unflatten(1, (cfg.num_sources, cfg.feature_dim)).flatten(0, 1)  # (batch * C, D, I)
        # The gated output layer. Activations run in place on the fresh conv outputs (the
        # convolutions do not need their outputs for backward); without gradients the
        # products do too, so inference holds no more than three (C, N, I) tensors.
        value = self.out_value(y).tanh_()
        gate = self.out_gate(y).sigmoid_()
        del y
        masks = self.mask_act(value * gate if torch.is_grad_enabled() else value.mul_(gate))
        return masks.unflatten(0, (-1, cfg.num_sources))

    def _regularize(self, steering: torch.Tensor) -> torch.Tensor:
        """Training-time embedding noise N(0, 0.1) or dropout on ``Z_j`` (paper, after Eq. 2)."""
        cfg = self.config
        if not self.training or cfg.embedding_regularizer == "none":
            return steering
        if cfg.embedding_regularizer == "noise":
            return steering + cfg.embedding_noise * torch.randn_like(steering)
        return F.dropout(steering, cfg.embedding_dropout, training=True)

    # --- enrollment and the interfaces (models/conditioning.py) ---------------------------

    @property
    def extra_inputs(self) -> tuple[ExtraInput, ...]:
        """Offline models need an enrollment ``(batch, C, time_e)`` besides the mixture:
        recording ``j`` steers output ``j``. Online and Autopilot models need nothing more."""
        return (ENROLLMENT,) if self.config.mode == "offline" else ()

    def require_speaker_space(self, what: str) -> None:
        """Refuse, in words, ``what`` (a task that needs speaker knowledge) in Autopilot."""
        if not self.has_speaker_space:
            raise CocktailError(f"this Tune-In model was built in autopilot mode and has no speaker space; "
                                f"{what} needs a model built in online or offline mode")

    def speaker_features(self, wav: torch.Tensor) -> torch.Tensor:
        """The Embedder's ``C`` speaker feature sequences ``Y_j`` of a recording: ``(batch,
        time)`` -> ``(batch, C, S, D)`` (encoder, generic and speaker spaces)."""
        return self._speaker_features(self._encode(wav)[1])

    def embed_enrollment(self, enrollment: torch.Tensor | Sequence[torch.Tensor]) -> SpeakerMemory:
        """Run the speaker-knowledge space on enrollment audio, once, for Offline mode: see
        :func:`.enrollment.embed_enrollment` for the layouts it takes. Returns a
        :class:`SpeakerMemory` to pass as ``enrollment`` to :meth:`forward`."""
        self.require_speaker_space("an enrollment")
        return _enrollment.embed_enrollment(self, enrollment)

    def speaker_vectors(self, mixture: torch.Tensor) -> torch.Tensor:
        """Talker-aware interface: Online mode's steering vectors ``Z_j`` (Eq. 2) of
        ``mixture`` ``(batch, time)``, ``(batch, C, D)``, whatever mode the model was built
        in (the mixture is its own speaker memory)."""
        return self.steering_vectors(mixture, mode="online")[0]

    def extractor(self, enrollment, chunk_seconds: float = 10.0, *, channels_first: bool | None = None) -> nn.Module:
        """Talker-aware interface: an :class:`~.enrollment.EnrolledTalker` that keeps the
        talker of ``enrollment`` (audio at the model's rate, any length and layout);
        ``(batch, time) -> (batch, 1, time)``."""
        self.require_speaker_space("extracting an enrolled talker")
        return EnrolledTalker(self, enrollment, chunk_seconds, channels_first=channels_first)

    def enroll(self, enrollment: torch.Tensor | Sequence[torch.Tensor] | SpeakerMemory | None) -> SpeakerMemory | None:
        """Compute and keep an enrollment's speaker features for later Offline calls (``None``
        forgets it). Not saved in checkpoints."""
        if enrollment is not None and not isinstance(enrollment, SpeakerMemory):
            enrollment = self.embed_enrollment(enrollment)
        self._enrolled = enrollment
        return enrollment

    # --- public entry points --------------------------------------------------------------

    def _resolve_mode(self, mode: str | None, enrollment) -> str:
        if mode is None:
            mode = "offline" if enrollment is not None else self.config.mode
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if mode != "autopilot":
            self.require_speaker_space(f"{mode} mode")
        if mode == "offline" and enrollment is None and self._enrolled is None:
            raise CocktailError("Tune-In offline mode needs an enrollment of the target talkers: pass one "
                                "(model(mixture, enrollment)) or store one first with model.enroll(...)")
        if mode != "offline" and enrollment is not None:
            raise ValueError(f"an enrollment is only used in offline mode, not {mode}")
        return mode

    def _memory(self, mode: str, x: torch.Tensor, enrollment) -> SpeakerMemory:
        if mode == "online":
            return SpeakerMemory(self._speaker_features(x))
        if enrollment is None:
            return self._enrolled
        if isinstance(enrollment, SpeakerMemory):
            return enrollment
        return self.embed_enrollment(enrollment)

    def steering_vectors(self, mixture: torch.Tensor, enrollment=None, *, mode: str | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor, SpeakerMemory]:
        """The steering vectors without running the speech space (speaker verification, and
        the speaker-augmentation stage that trains the speaker space alone).

        Returns ``Z`` ``(batch, C, D)``, ``a_crs`` ``(batch, C, S, S_m)`` and the memory.
        """
        mode = self._resolve_mode(mode, enrollment)
        if mode == "autopilot":
            raise ValueError("autopilot mode has no steering vectors")
        x = self._encode(mixture)[1]
        memory = self._memory(mode, x, enrollment)
        steering, attn = self.cross_attention(x.mean(dim=2), memory)
        return steering, attn, memory

    def forward(self, mixture: torch.Tensor, enrollment: torch.Tensor | Sequence[torch.Tensor] | SpeakerMemory | None = None,
                *, mode: str | None = None, return_details: bool = False) -> torch.Tensor | TuneInOutput:
        """Separate ``mixture`` ``(batch, time)`` into ``(batch, C, time)``.

        Args:
            enrollment: Offline mode's enrollment audio (see :meth:`embed_enrollment`) or its
                pre-computed :class:`SpeakerMemory`; giving one selects Offline mode.
            mode: ``"autopilot"``, ``"online"`` or ``"offline"``; default ``config.mode``.
            return_details: return a :class:`TuneInOutput` with the steering vectors, speaker
                features and cross-attention maps as well as the sources.
        """
        mode = self._resolve_mode(mode, enrollment)
        length = mixture.shape[-1]
        feats, x = self._encode(mixture)
        steering = attn = memory = None
        if mode != "autopilot":
            memory = self._memory(mode, x, enrollment)
            # Bottom-up query: the generic output averaged over the K intra-segment positions.
            steering, attn = self.cross_attention(x.mean(dim=2), memory)
        # X^(B) is handed over without a reference left here: without gradients the speech
        # space overwrites it and the mask head frees the last stream as soon as it has read
        # it; the masks, handed over to decode, become the masked sequences in place.
        handover = [x]
        del x
        sources = self.decode(feats, self._masks(self._speech_space(handover.pop(), steering), feats.shape[-1]), length)
        if return_details:
            return TuneInOutput(sources, steering, memory, attn)
        return sources

    # --- parameters by space and training stage -------------------------------------------

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by space: ``generic`` (front end and B blocks), ``speaker`` (B1 blocks,
        Embedder, cross attention: what produces ``Z_j``) and ``speech`` (``r``, ``h``, B2
        blocks, decoder: what ``Z_j`` steers)."""
        generic = [self.encoder, self.norm, self.bottleneck, self.generic_blocks]
        speaker = [self.speaker_blocks, self.embedder, self.cross_attention] if self.has_speaker_space else []
        speech = ([self.steer_scale, self.steer_shift] if self.has_speaker_space else []) + [
            self.speech_blocks, self.head_act, self.head, self.out_value, self.out_gate, self.decoder]
        return {name: [p for m in mods for p in m.parameters()]
                for name, mods in (("generic", generic), ("speaker", speaker), ("speech", speech))}

    def set_training_stage(self, stage: str) -> None:
        """Which parameters train (``requires_grad``), for the paper's training schedule.

        - ``"joint"``: all of them.
        - ``"speaker"``: external speaker augmentation, stage 1: only the speaker space
          trains, on extra speakers, with the speaker loss alone (use
          :meth:`steering_vectors`, which does not run the speech space).
        - ``"speech"``: stage 2: the speech space is fine-tuned on the original training set
          with the steering vectors of the now more general speaker space.
        """
        groups = self.parameter_groups()
        trainable = {"joint": ("generic", "speaker", "speech"), "speaker": ("speaker",), "speech": ("speech",)}
        if stage not in trainable:
            raise ValueError(f"stage must be one of {', '.join(trainable)}, got {stage!r}")
        for name, params in groups.items():
            for p in params:
                p.requires_grad_(name in trainable[stage])

    def training_objective(self, info) -> nn.Module | None:
        """The training engine's hook (:mod:`cocktailparty.train.engine`): freezes parameters for
        ``info.stage`` (see :meth:`set_training_stage`) and returns the
        :class:`~.objective.TuneInObjective`, built from ``info.options``
        (``training.objective`` in the config: weight, step, gamma, alpha, supervision,
        permutation, mode). Autopilot models train on SI-SNR alone: no objective."""
        stage = info.stage or "joint"
        self.set_training_stage(stage)
        if not self.has_speaker_space:
            if stage != "joint":
                raise CocktailError(f"training stage {stage!r} needs a Tune-In model with a speaker space")
            return None
        from .objective import TuneInObjective  # training code: not imported for inference

        speakers = len(info.speakers) if info.speakers else 0
        return TuneInObjective(speakers, self.config.feature_dim, stage=stage, **dict(info.options or {}))

    def parameters_in_use(self, mode: str | None = None) -> Iterator[nn.Parameter]:
        """The parameters a separation call in ``mode`` uses, as Table 1 counts them: Autopilot
        leaves out the speaker space and both attentions' extras; Offline leaves out the
        speaker blocks and the Embedder, which ran once, beforehand, on the enrollment."""
        mode = mode or self.config.mode
        groups = self.parameter_groups()
        skip: set[int] = set()
        if mode == "autopilot" and self.has_speaker_space:
            skip = {id(p) for p in groups["speaker"]}
            skip |= {id(p) for m in (self.steer_scale, self.steer_shift) for p in m.parameters()}
        elif mode == "offline":
            skip = {id(p) for m in (self.speaker_blocks, self.embedder) for p in m.parameters()}
        return (p for p in self.parameters() if id(p) not in skip)
