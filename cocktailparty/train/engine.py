"""The training engine behind ``cocktail train``: the papers' recipe, resumable to the bit.

One run is one folder::

    RUN_DIR/config.yaml                  the resolved config (every default filled in)
    RUN_DIR/log.csv                      one row per epoch: epoch, step, lr, train loss terms,
                                         valid_si_snri, best_valid_si_snri, seconds
    RUN_DIR/steps.csv                    one row every ``log_every`` steps (window means)
    RUN_DIR/best.safetensors             the model with the best validation SI-SNRi
    RUN_DIR/checkpoints/step-00001234/   the newest ``keep_checkpoints`` checkpoints:
        model.safetensors                    the model (``cocktail separate --model`` reads it)
        train-state.safetensors              optimizer moments, RNG byte states, objective state
        train-state.json                     everything else (see below) + SHA-256 of the rest

Config (``training:`` and ``data:`` sections; defaults in :data:`TRAINING_DEFAULTS` and
:data:`DATA_DEFAULTS`, the papers' recipe): Adam at lr 1e-3; the lr halves when the
validation SI-SNRi has not improved for ``patience_epochs`` validations (torch's
``ReduceLROnPlateau`` counting: halved on the 16th epoch without a new best, as the TDANet
authors' code does); training stops after ``early_stop_patience_epochs`` (30) validations
without a new best, or after ``epochs``; gradients are clipped to L2 norm 5; the loss is
negative SI-SNR under utterance-level PIT. ``batch_size`` is the *global* batch: under
``torchrun`` each of the W processes takes ``batch_size / W`` items of it, so a recipe means
the same on one GPU or many.

Data: ``data.corpus`` (a speaker-labelled corpus: mixtures are drawn on the fly by
:class:`~cocktailparty.data.mixing.DynamicMixer`, a new set every epoch) or
``data.train_set``/``data.valid_set`` (fixed mixture sets in any layout that
:func:`~cocktailparty.data.mixture_datasets.open_mixture_dataset` reads). The sample rate is the
model's.

Model hooks (all optional, looked up by attribute; the engine never asks for a model's name):

``model.training_objective(info: TrainingInfo) -> nn.Module | None``
    Called once before the optimizer is built (and again on resume, before the saved state
    is loaded). Use it to freeze parameters for a training stage (``info.stage``, from
    ``training.stage``) and to build training-only state: an ``nn.Module`` whose parameters
    (e.g. Tune-ID's speaker token embeddings) are optimized with the model's and whose
    parameters and buffers (e.g. Tune-InCE's EMA speaker bank ``(N, D)``, ``N =
    len(info.speakers)``) are saved in ``train-state`` but not in ``model.safetensors``, which
    stays an inference model. If it returns a module, the engine computes the loss as
    ``objective(model, batch) -> dict``.
``model.training_step_loss(batch) -> dict[str, Tensor]``
    The loss when ``training_objective`` gave no module (a model without training state).
``model.training_diagnostics() -> dict[str, float]``
    Numbers about the model logged with each ``steps.csv`` row (e.g. TDANet's attention
    logit gain, an early warning of attention collapse).
``model.validation_estimates(batch) -> Tensor (batch, C, time)``
    What validation scores (eval mode, no grad); default ``model(batch["mixture"])``, or
    ``model(batch["mixture"], batch["enrollment"])`` when the data has enrollments.

Either loss form returns named scalar terms including ``"loss"`` (what is minimized); every
term is averaged over the epoch and logged (e.g. ``{"loss", "si_snr", "ince", "reg"}``).
``batch`` holds, on the training device: ``mixture (B, T)``, ``sources (B, C, T)``,
``speaker_ids (B, C)`` int64 (only for data from a speaker-labelled corpus; they index
``info.speakers``), ``id`` (list of str), ``noise``/``music`` ``(B, T)`` when the data has
them (with ``data.rooms``, ``sources`` of an item put in a room are its early images), and
``enrollment (B, C, T_e)``
with ``data.enrollment_seconds`` (row ``j``: another recording of the talker of
``sources[:, j]``, see :class:`WithEnrollment`). Hooks run under
autocast when ``precision`` is bf16/fp16: compute losses in float32. With several processes
the model and objective are wrapped together in DDP, which averages gradients and broadcasts
buffers from rank 0 before every forward; a buffer updated from the batch (an EMA) should
all-gather what it needs when ``torch.distributed`` is initialized. Without hooks the loss is ``training.loss`` (``si_snr`` or ``snr``) under u-PIT
on ``model(batch["mixture"])``.

Exact resume: ``train-state.json`` holds the data position (``epoch``, ``batch`` within it),
the scheduler, early-stopping and grad-scaler states, the optimizer's param groups, Python's
and NumPy's RNG states per process, running sums of the epoch's loss terms, and the SHA-256
of both ``.safetensors`` files and of itself; ``train-state.safetensors`` holds the
optimizer's tensors (``optimizer/<param index>/<name>``), torch's CPU and CUDA RNG states
(``rng/<rank>/cpu``, ``rng/<rank>/cuda``) and the objective's state (``objective/<name>``).
Nothing is unpickled. The epoch's order is a permutation drawn from ``(seed, epoch)`` and
every item is a function of ``(seed, epoch, index)``, so a resumed run sees exactly the
batches the uninterrupted one would have, with any number of DataLoader workers. On CPU a
resumed run ends with bit-identical weights; on GPU, as far as the kernels are deterministic
(``training.deterministic: true`` asks torch for deterministic algorithms).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import csv
import datetime
import hashlib
import json
import logging
import math
import os
import random
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from ..core import checkpoint
from ..core.config import apply_overrides, load_config
from ..core.errors import CocktailError, no_cuda
from ..core.progress import Bar, progress_enabled
from ..core.signal_guard import HandlerGuard
from ..eval.metrics.band import high_band_si_snr
from ..eval.metrics.permutations import permute
from ..eval.metrics.permutations import si_snri
from ..models import build_model
from .losses import pairwise_neg_si_snr, pairwise_neg_snr, pit_si_snr_loss, pit_snr_loss

log = logging.getLogger("cocktailparty")

# The exit status of a run that --stop-after ended: resumable, not done (sysexits' EX_TEMPFAIL,
# "try again later").
EXIT_SLOT_ENDED = 75
STATE_FORMAT = "cocktailparty-train-state/1"
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_PREFIX = "step-"
MODEL_FILE = "model.safetensors"
STATE_TENSORS = "train-state.safetensors"
STATE_JSON = "train-state.json"
BEST_FILE = "best.safetensors"

# The papers' recipe (TDANet Sec. 4.2, Tune-In's training section). Comments are the docs.
TRAINING_DEFAULTS: dict[str, Any] = {
    "optimizer": "adam",          # adam | adamw | sgd
    "lr": 1e-3,
    "weight_decay": 0.0,
    "betas": [0.9, 0.999],        # Adam/AdamW only
    "momentum": 0.9,              # SGD only
    "lr_schedule": {"type": "plateau", "factor": 0.5, "patience_epochs": 15},
    #   plateau: multiply by factor after patience_epochs validations without a new best
    #   step: multiply by factor every every_epochs epochs;  none: constant
    #   cosine: per step, from lr down to min_lr (default 0) over total_steps along half a
    #     cosine, after warmup_steps (default 0) of linear rise; min_lr from then on
    "early_stop_patience_epochs": 30,   # validations without a new best before stopping; null: never
    "grad_clip_norm": 5.0,        # L2 norm of all gradients; null: no clipping
    "loss": "si_snr",             # si_snr | snr, negative, under u-PIT (when the model has no hook)
    "pit": True,                  # false: outputs are scored in reference order
    "high_band_weight": 0.0,      # adds weight x -SI-SNR of the outputs' high band (the default loss
    "high_band_from": 0.5,        # only), above high_band_from x Nyquist: SI-SNR alone lets a model
                                  # drop the quiet top band of speech (a muffled voice)
    "batch_size": 4,              # global batch (split over processes under torchrun)
    "epochs": 500,                # at most
    "max_steps_per_epoch": None,  # cap on an epoch's batches (e.g. to set an epoch length)
    "precision": "fp32",          # fp32 | tf32 | bf16 | fp16 (tf32: fp32 with TensorFloat-32 matrix
                                  # products; bf16/fp16: autocast, fp16 adds a GradScaler)
    "cuda_graph": False,          # capture the whole step (forward, backward, clipping, optimizer)
                                  # once as a CUDA graph and replay it: a launch-bound model runs
                                  # 2-3x faster. Needs CUDA, one process, fixed-length items, no fp16
    "activation_checkpointing": False,  # recompute each block's activations in backward instead
                                  # of keeping them: 0.28-0.32x the memory, 1.1x the time (Tune-In
                                  # Offline on CPU, benchmarks/training_memory.py; models with
                                  # set_activation_checkpointing: Tune-In, for 16-s enrollments)
    "compile": False,             # torch.compile the model in place (model.compile(); a model may
                                  # narrow it, e.g. TDANet compiles only its shared block)
    "seed": 0,
    "deterministic": False,       # torch.use_deterministic_algorithms (bitwise GPU resumes)
    "num_workers": None,          # DataLoader worker processes per training process; null: 4, or
                                  # the CPU cores this process may use when fewer
    "checkpoint_every": 500,      # steps; a checkpoint is also written at every epoch end
    "time_budget_s": None,        # stop (checkpointed, resumable) once the training steps have
                                  # taken this many seconds in all, validation not counted
    "keep_checkpoints": 3,        # newest checkpoints kept (best.safetensors is separate)
    "valid_every": 1,             # epochs
    "valid_batch_size": None,     # default: batch_size when valid items have a fixed length, else 1
    "log_every": 50,              # steps per row of steps.csv and progress-bar update
    "shuffle": True,
    "stage": None,                # passed to the model's training_objective hook (e.g. Tune-In stages)
    "objective": {},              # free-form options for the model's training_objective hook
    "init_from": None,            # a model .safetensors to start from (e.g. the previous stage)
    "ddp_find_unused_parameters": False,
}
TRAINING_ALIASES = {"early_stop_epochs": "early_stop_patience_epochs", "clip_grad_norm": "grad_clip_norm"}

DATA_DEFAULTS: dict[str, Any] = {
    "dataset": None,              # a name, for the record (wsj0-2mix, lrs2-2mix, ...)
    "dynamic_mixing": None,       # null: true when only corpus is set, false when only train_set is
    "corpus": None,               # speaker-labelled corpus folder (manifest.csv or LibriSpeech tree),
                                  # or a list of them mixed together (e.g. real and TTS speech)
    "corpus_weights": None,       # with a list: probability that a talker comes from each corpus
    "min_bandwidth": None,        # leave out utterances narrower than this fraction of the Nyquist
                                  # frequency (manifest bandwidth_hz; e.g. 0.8: 6.4 kHz at 16 kHz)
    "train_set": None,            # fixed mixture set (wsj0-2mix / LibriMix / WHAM! / LRS2-2Mix layout)
    "valid_set": None,            # default with a fixed train_set: required; with a corpus: its valid split
    "train_split": "train",
    "valid_split": "valid",
    "num_speakers": None,         # talkers per mixture; default the model's num_sources
    "segment_seconds": 4.0,       # training items are cut (or padded) to this length
    "valid_segment_seconds": None,  # null: whole validation mixtures
    "valid_max_items": None,      # validate on the first N mixtures only
    "mode": "min",                # wsj0-2mix 'min'/'max' (fixed sets; dynamic mixing without a segment)
    "sample_rate": None,          # must equal the model's when given
    "sir": None,                  # relative talker level range, dB; default mix_snr_db, else [0, 5]
    "mix_snr_db": None,           # the dataset's talker level range, as its papers state it
    "level": [-25.0, -25.0],
    "noise": None, "snr": [-6.0, 3.0],
    "music": None, "smr": [-5.0, 5.0], "music_as_source": False,
    "speed": None,                # e.g. [0.95, 1.05]
    "rooms": None,                # room bank folder (cocktail corpus rooms): reverberant mixtures
    "reverb_probability": 1.0,    # with rooms: the share of mixtures put in a room (the rest stay dry)
    "distinct_persons": True,
    "epoch_length": None,         # dynamic mixing: mixtures per epoch; default one per utterance
    "enrollment_seconds": None,   # dynamic mixing: add an enrollment per talker (Tune-In Offline; paper: 16)
    "seed": None,                 # training mixtures; default training.seed
    "valid_seed": 0,              # validation mixtures (and crops): fixed, so that runs with other
                                  # seeds, and warm restarts of a run, validate on the same items
    "splits": None,               # the dataset's split sizes, for the record
}


# --------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------


def resolve_config(cfg: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Check ``cfg`` and fill every training/data default; the result is what runs and what
    ``RUN_DIR/config.yaml`` records. Errors name the key and the file."""
    cfg = copy.deepcopy(cfg)
    model_cfg = cfg.get("model")
    if not isinstance(model_cfg, dict) or not model_cfg.get("architecture"):
        raise CocktailError(f"{source}: needs a model: section with an architecture entry")
    for section in ("training", "data"):
        if cfg.get(section) is None:
            cfg[section] = {}
        if not isinstance(cfg[section], dict):
            raise CocktailError(f"{source}: '{section}' must be a mapping of keys to values")
    training = cfg["training"]
    for old, new in TRAINING_ALIASES.items():
        if old in training:
            value = training.pop(old)
            training.setdefault(new, value)
    _check_keys(training, TRAINING_DEFAULTS, "training", source)
    _check_keys(cfg["data"], DATA_DEFAULTS, "data", source)
    schedule = training.get("lr_schedule")
    cfg["training"] = {**copy.deepcopy(TRAINING_DEFAULTS), **training}
    if isinstance(schedule, dict) and schedule.get("type", "plateau") != "plateau":
        cfg["training"]["lr_schedule"] = dict(schedule)
    elif isinstance(schedule, dict):
        cfg["training"]["lr_schedule"] = {**TRAINING_DEFAULTS["lr_schedule"], **schedule}
    cfg["data"] = {**copy.deepcopy(DATA_DEFAULTS), **cfg["data"]}
    t = cfg["training"]
    _check_choice(t, "optimizer", ("adam", "adamw", "sgd"), source)
    _check_choice(t, "loss", ("si_snr", "snr"), source)
    _check_choice(t, "precision", ("fp32", "tf32", "bf16", "fp16"), source)
    if t["cuda_graph"]:
        if t["precision"] == "fp16":
            raise CocktailError(f"{source}: training.cuda_graph does not go with fp16 (its GradScaler "
                                f"decides on the host); use bf16")
        if cfg["data"]["segment_seconds"] is None:
            raise CocktailError(f"{source}: training.cuda_graph replays fixed shapes; set data.segment_seconds")
        if t["activation_checkpointing"]:
            # Recomputation replays dropout's RNG state, which a captured graph would have to
            # do on the device; not tried yet, so refused rather than risked.
            raise CocktailError(f"{source}: training.activation_checkpointing does not go with "
                                f"training.cuda_graph yet; set one of them to false")
    sched = t["lr_schedule"] or {"type": "none"}
    if not isinstance(sched, dict) or sched.get("type") not in ("plateau", "step", "cosine", "none"):
        raise CocktailError(f"{source}: training.lr_schedule.type must be plateau, step, cosine or none")
    if sched["type"] == "cosine":
        total, warmup = sched.get("total_steps"), sched.get("warmup_steps", 0)
        if not isinstance(total, int) or isinstance(total, bool) or total < 1:
            raise CocktailError(f"{source}: training.lr_schedule.total_steps must be a positive integer for "
                                f"the cosine schedule, got {total!r}")
        if not isinstance(warmup, int) or not 0 <= warmup < total:
            raise CocktailError(f"{source}: training.lr_schedule.warmup_steps must be an integer from 0 to "
                                f"total_steps - 1, got {warmup!r}")
    t["lr_schedule"] = sched
    if not 0.0 < float(t["high_band_from"]) < 1.0 or float(t["high_band_weight"]) < 0:
        raise CocktailError(f"{source}: training.high_band_from must lie in (0, 1) (a fraction of the Nyquist "
                            f"frequency) and training.high_band_weight be 0 or more")
    for key in ("batch_size", "epochs", "checkpoint_every", "keep_checkpoints", "valid_every", "log_every"):
        value = t[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            hint = " (the paper leaves it open: set it for your hardware, e.g. --set training.batch_size=4)" \
                if key == "batch_size" and value is None else ""
            raise CocktailError(f"{source}: training.{key} must be a positive integer, got {value!r}{hint}")
    if t["num_workers"] is None:
        t["num_workers"] = default_num_workers()
    if int(t["num_workers"]) < 0:
        raise CocktailError(f"{source}: training.num_workers must be 0 or more")
    if not isinstance(t["objective"], dict):
        raise CocktailError(f"{source}: training.objective must be a mapping")
    return cfg


def default_num_workers() -> int:
    """training.num_workers when a config names none: 4, or fewer on a machine with fewer cores
    (the DataLoader warns about more workers than the cores this process may run on)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return min(4, cores)


def _check_keys(section: dict, known: dict, name: str, source: str) -> None:
    unknown = sorted(set(section) - set(known))
    if unknown:
        raise CocktailError(
            f"{source}: unknown {name} key(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")


def _check_choice(section: dict, key: str, choices: tuple, source: str) -> None:
    if section[key] not in choices:
        raise CocktailError(f"{source}: training.{key} must be one of {', '.join(choices)}, got {section[key]!r}")


# --------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------


@dataclass
class Distributed:
    """Where this process sits among the ``torchrun`` processes (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "Distributed":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        return cls(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def _resolve_device(spec: Optional[str], dist: Distributed) -> torch.device:
    from ..inference.separate import resolve_device  # the one check of a device name (a bad one is one line)

    if spec:
        device = resolve_device(spec)
        if device.type == "cuda" and device.index is None:  # set_device (and graphs) need an index
            device = torch.device("cuda", dist.local_rank if dist.enabled else 0)
    elif torch.cuda.is_available():
        device = torch.device("cuda", dist.local_rank if dist.enabled else 0)
    else:
        device = torch.device("cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise no_cuda(spec)
        torch.cuda.set_device(device)
    return device


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------


def build_datasets(cfg: dict[str, Any], sample_rate: int, num_sources: int, source: str = "config"
                   ) -> tuple[Dataset, Dataset, Optional[list[str]]]:
    """``(train, valid, speakers)`` as the ``data:`` section describes; ``speakers`` is the
    training speakers' list (``speaker_ids`` index it) for corpus data, else None."""
    from ..data.mixture_datasets import open_mixture_dataset
    from ..data.mixing import DynamicMixer

    d, t = cfg["data"], cfg["training"]
    if d["sample_rate"] is not None and int(d["sample_rate"]) != int(sample_rate):
        raise CocktailError(f"{source}: data.sample_rate is {d['sample_rate']} but the model runs at "
                            f"{sample_rate} Hz; set model.sample_rate (or drop data.sample_rate)")
    dynamic = d["dynamic_mixing"]
    if dynamic is None:
        dynamic = bool(d["corpus"]) and not d["train_set"]
    if dynamic and not d["corpus"]:
        raise CocktailError(f"{source}: data.dynamic_mixing is on but data.corpus is not set; "
                            f"pass a speaker-labelled corpus folder: --set data.corpus=DIR")
    if not dynamic and not d["train_set"]:
        what = ("data.dynamic_mixing is false and data.train_set is not set"
                if d["corpus"] else "no training data: set data.corpus or data.train_set")
        raise CocktailError(f"{source}: {what} (e.g. --set data.train_set=DIR --set data.valid_set=DIR, "
                            f"or --set data.corpus=DIR for dynamic mixing)")
    seed = int(d["seed"] if d["seed"] is not None else t["seed"])
    valid_seed = int(d["valid_seed"])
    segment = d["segment_seconds"]
    valid_segment = d["valid_segment_seconds"]
    for key in ("corpus", "train_set", "valid_set", "noise", "music", "rooms"):
        for value in (d[key] if isinstance(d[key], (list, tuple)) else [d[key]]):
            if value and not Path(value).exists():
                raise CocktailError(f"{source}: data.{key}: {value} does not exist")
    speakers = None
    if dynamic:
        sir = d["sir"] if d["sir"] is not None else (d["mix_snr_db"] if d["mix_snr_db"] is not None else [0.0, 5.0])
        common = dict(num_speakers=int(d["num_speakers"] or num_sources), sample_rate=sample_rate,
                      mode=d["mode"], sir=sir, level=d["level"], noise=d["noise"], snr=d["snr"],
                      music=d["music"], smr=d["smr"], music_as_source=d["music_as_source"],
                      rooms=d["rooms"], reverb_probability=d["reverb_probability"],
                      distinct_persons=d["distinct_persons"], corpus_weights=d["corpus_weights"],
                      min_bandwidth=d["min_bandwidth"], seed=seed)
        train = DynamicMixer(d["corpus"], split=d["train_split"], segment=segment, speed=d["speed"],
                             length=d["epoch_length"], **common)
        speakers = list(train.speakers)
        if d["valid_set"]:
            valid = open_mixture_dataset(d["valid_set"], d["valid_split"], sample_rate=sample_rate,
                                         segment=valid_segment, seed=valid_seed, mode=d["mode"])
        else:
            valid = DynamicMixer(d["corpus"], split=d["valid_split"], segment=valid_segment,
                                 **dict(common, seed=valid_seed))
        if d["enrollment_seconds"]:
            train = WithEnrollment(train, float(d["enrollment_seconds"]))
            if isinstance(valid, DynamicMixer):
                valid = WithEnrollment(valid, float(d["enrollment_seconds"]))
    elif d["enrollment_seconds"]:
        raise CocktailError(f"{source}: data.enrollment_seconds needs dynamic mixing from a speaker-labelled "
                            f"corpus (data.corpus): fixed mixture sets do not say who speaks")
    else:
        train = open_mixture_dataset(d["train_set"], d["train_split"], sample_rate=sample_rate,
                                     segment=segment, seed=seed, mode=d["mode"])
        if not d["valid_set"]:
            raise CocktailError(f"{source}: data.valid_set is not set; validation SI-SNRi drives the lr "
                                f"schedule and early stopping: --set data.valid_set=DIR")
        valid = open_mixture_dataset(d["valid_set"], d["valid_split"], sample_rate=sample_rate,
                                     segment=valid_segment, seed=valid_seed, mode=d["mode"])
    return train, valid, speakers


class WithEnrollment(Dataset):
    """Dynamic mixtures plus an enrollment recording per talker, for Tune-In Offline training.

    Adds ``"enrollment": (C, T_e)`` to each item of a
    :class:`~cocktailparty.data.mixing.DynamicMixer`: row ``j`` is other utterances of the
    speaker of ``sources[j]`` (not those in the mixture, when the speaker has others),
    concatenated to ``seconds``, mixed with another person's speech at a relative level drawn
    from the mixer's ``sir`` range ("the same SIR range but with different interferences").
    A function of ``(seed, epoch, index)`` like the mixture itself.
    """

    def __init__(self, mixer, seconds: float):
        self.mixer, self.seconds = mixer, seconds
        corpus = mixer.corpus
        self._persons = {s: {corpus[u].person for u in corpus.by_speaker[s]} for s in corpus.speakers}

    def set_epoch(self, epoch: int) -> None:
        self.mixer.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.mixer)

    def __getitem__(self, index: int) -> dict:
        from ..data.levels import mix_pair

        item = self.mixer[index]
        mixer, corpus = self.mixer, self.mixer.corpus
        rate = mixer.sample_rate
        total = int(round(self.seconds * rate))
        rng = np.random.default_rng([mixer.seed, mixer.epoch, index, 0xE7])
        rows = []
        for sid in item["speaker_ids"].tolist():
            speaker = corpus.speakers[sid]
            target = self._speech(rng, corpus.by_speaker[speaker], item["id"], total)
            others = [s for s in corpus.speakers if not self._persons[s] & self._persons[speaker]]
            other = others[int(rng.integers(0, len(others)))] if others else speaker
            interference = self._speech(rng, corpus.by_speaker[other], item["id"], total)
            rows.append(mix_pair(target, interference, rate, rng, mixer.sir, mixer.level))
        item["enrollment"] = torch.from_numpy(np.stack(rows))
        return item

    def _speech(self, rng: np.random.Generator, pool: list[int], mixture_id: str, total: int) -> np.ndarray:
        from ..data.mixture_plan import load_speech

        corpus = self.mixer.corpus
        fresh = [u for u in pool if corpus[u].id not in mixture_id] or list(pool)
        order = [fresh[int(i)] for i in rng.permutation(len(fresh))]
        pieces, have, k = [], 0, 0
        while have < total:
            x = load_speech(corpus[order[k % len(order)]].path, self.mixer.sample_rate)
            pieces.append(x)
            have += x.shape[-1]
            k += 1
        joined = np.concatenate(pieces)
        start = int(rng.integers(0, joined.shape[-1] - total + 1))
        return joined[start:start + total]


def epoch_order(seed: int, epoch: int, size: int, shuffle: bool = True) -> np.ndarray:
    """The order of an epoch's items: a permutation drawn from ``(seed, epoch)`` alone."""
    if not shuffle:
        return np.arange(size)
    # The trailing constants keep this stream apart from the datasets' (seed, epoch, index) ones.
    return np.random.default_rng([seed, epoch, 0xC0C7, 0x7A11]).permutation(size)


class EpochBatches(Sampler):
    """Index lists of one epoch's batches ``[start, stop)`` for one process.

    Global batch ``b`` is ``order[b * G : (b + 1) * G]``; process ``r`` of ``W`` takes the
    ``r``-th of its ``W`` equal slices, so the data seen per step does not depend on ``W``.
    """

    def __init__(self, order: np.ndarray, global_batch: int, start: int, stop: int, rank: int = 0, world: int = 1):
        self.order, self.global_batch = order, global_batch
        self.start, self.stop = start, stop
        per = global_batch // world
        self.lo, self.hi = rank * per, (rank + 1) * per

    def __iter__(self) -> Iterator[list[int]]:
        for b in range(self.start, self.stop):
            base = b * self.global_batch
            yield self.order[base + self.lo: base + self.hi].tolist()

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def _worker_init(_: int) -> None:
    # Ctrl-C, GNU timeout and cluster schedulers signal the whole process group; the workers
    # leave the signal to the main process, which finishes its step and saves before exiting
    # (a worker killed by SIGTERM would abort the run with a DataLoader error instead).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _loader(dataset: Dataset, batches: Sampler, workers: int, seed: int, pin: bool) -> DataLoader:
    # A private generator: creating a loader otherwise draws its workers' base seed from the
    # global torch RNG, which would make dropout depend on where an epoch was resumed.
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_sampler=batches, num_workers=workers, pin_memory=pin,
                      worker_init_fn=_worker_init if workers else None, generator=generator,
                      collate_fn=_collate)


def _collate(items: list[dict]) -> dict:
    # Items put in a room (data.rooms) also carry their reverberant images; with
    # 0 < reverb_probability < 1 only some do, and default_collate fails on a key one item has
    # and another lacks. No objective trains on them yet, and a captured CUDA-graph step needs
    # every batch to hold the same keys: so batches never carry them.
    return default_collate([{k: v for k, v in item.items() if k != "reverberant"} for item in items])


# --------------------------------------------------------------------------------------
# Loss and the module that DDP wraps
# --------------------------------------------------------------------------------------


@dataclass
class TrainingInfo:
    """What the ``training_objective`` hook is told about the run.

    speakers: the training speakers (``batch["speaker_ids"]`` index it), or None when the
        data carries no speaker labels (fixed mixture sets).
    num_sources, sample_rate: of the model.
    stage: ``training.stage`` (e.g. Tune-In's ``"joint"``, ``"speaker"``, ``"speech"``), or None.
    options: ``training.objective``, free-form.
    device: where training runs.
    """

    speakers: Optional[list[str]]
    num_sources: int
    sample_rate: int
    stage: Optional[str]
    options: dict
    device: torch.device


class Trainee(nn.Module):
    """The model with its optional training objective: one module, so DDP sees all parameters
    and the loss hook runs inside DDP's forward (gradient hooks stay in place)."""

    def __init__(self, model: nn.Module, objective: Optional[nn.Module], loss: str = "si_snr", pit: bool = True,
                 high_band_weight: float = 0.0, high_band_from: float = 0.5):
        super().__init__()
        self.model = model
        self.objective = objective
        self.loss = loss
        self.pit = pit
        self.high_band_weight = high_band_weight
        self.high_band_from = high_band_from

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        if self.objective is not None:
            terms = self.objective(self.model, batch)
        elif hasattr(self.model, "training_step_loss"):
            terms = self.model.training_step_loss(batch)
        else:
            terms = default_loss(self.model(batch["mixture"]), batch["sources"], self.loss, self.pit,
                                 self.high_band_weight, self.high_band_from)
        if not isinstance(terms, dict) or "loss" not in terms:
            raise TypeError("a training loss hook must return a dict of scalar tensors with a 'loss' entry")
        return terms


def default_loss(estimates: torch.Tensor, sources: torch.Tensor, loss: str = "si_snr", pit: bool = True,
                 high_band_weight: float = 0.0, high_band_from: float = 0.5) -> dict[str, torch.Tensor]:
    """Negative SI-SNR (or SNR) in dB under u-PIT; ``estimates``/``sources`` ``(B, C, T)``.

    With ``high_band_weight`` > 0 the loss adds that weight times the negative SI-SNR of the
    outputs' high band (:func:`~cocktailparty.eval.metrics.band.high_band_si_snr`), outputs paired with
    references as the main term paired them; the terms are then logged apart too.
    """
    est, ref = estimates.float(), sources.float()
    if pit:
        fn = pit_si_snr_loss if loss == "si_snr" else pit_snr_loss
        value, perm = fn(est, ref)
        est = permute(est, perm)
    else:
        pair = (pairwise_neg_si_snr if loss == "si_snr" else pairwise_neg_snr)(est, ref)
        value = torch.diagonal(pair, dim1=-2, dim2=-1).mean()
    if not high_band_weight:
        return {"loss": value}
    high = -high_band_si_snr(est, ref, high_band_from).mean()
    return {"loss": value + high_band_weight * high, loss: value, "high_band": high}


# --------------------------------------------------------------------------------------
# Schedules: lr and early stopping
# --------------------------------------------------------------------------------------


class Recipe:
    """The lr schedule and the early-stopping counter, driven by validation SI-SNRi (dB).

    ``validated(score)`` after each validation returns True when training should stop;
    ``epoch_done()`` after every epoch steps an epoch-based schedule; ``step_done(step)``
    after every optimizer step sets a per-step schedule's lr for the next one.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: dict, early_stop: Optional[int]):
        self.optimizer, self.schedule = optimizer, schedule
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]  # the configured lr
        self.kind = schedule.get("type", "plateau")
        self.early_stop = early_stop
        self.best: Optional[float] = None
        self.best_epoch: Optional[int] = None
        self.bad = 0  # validations since the last new best
        if self.kind == "plateau":
            # abs threshold 0: any new best counts, as "the best model was not found" reads.
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="max", factor=float(schedule.get("factor", 0.5)),
                patience=int(schedule.get("patience_epochs", 15)), threshold=0.0, threshold_mode="abs",
                min_lr=float(schedule.get("min_lr", 0.0)))
        elif self.kind == "step":
            self.scheduler = torch.optim.lr_scheduler.StepLR(
                optimizer, step_size=int(schedule.get("every_epochs", 1)), gamma=float(schedule.get("factor", 0.5)))
        else:
            self.scheduler = None
        self.step_done(0)

    def validated(self, score: float, epoch: int) -> tuple[bool, bool]:
        """Record a validation score; returns ``(new_best, stop)``."""
        improved = self.best is None or score > self.best
        if improved:
            self.best, self.best_epoch, self.bad = float(score), epoch, 0
        else:
            self.bad += 1
        if self.kind == "plateau":
            self.scheduler.step(score)
        stop = self.early_stop is not None and self.bad >= int(self.early_stop)
        return improved, stop

    def epoch_done(self) -> None:
        if self.kind == "step":
            self.scheduler.step()

    def step_done(self, step: int) -> None:
        """Set a per-step schedule's lr for the step after ``step`` completed ones (also at
        the start and after a resume, which may have changed the schedule)."""
        if self.kind == "cosine":
            for group, base in zip(self.optimizer.param_groups, self.base_lrs):
                group["lr"] = cosine_lr(step, base, self.schedule)

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad": self.bad,
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.bad = state["best"], state["best_epoch"], state["bad"]
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])


def cosine_lr(step: int, base: float, schedule: dict) -> float:
    """The cosine schedule's lr for the step after ``step`` completed ones (see
    ``TRAINING_DEFAULTS``): a linear warm-up to ``base``, then half a cosine to ``min_lr``."""
    total, warmup = int(schedule["total_steps"]), int(schedule.get("warmup_steps", 0))
    floor = float(schedule.get("min_lr", 0.0))
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / (total - warmup))
    return floor + (base - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


# --------------------------------------------------------------------------------------
# Checkpoint files
# --------------------------------------------------------------------------------------


class CorruptCheckpoint(Exception):
    """A checkpoint folder whose files are missing, truncated or altered."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _json_checksum(state: dict) -> str:
    body = {k: v for k, v in state.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Checkpoint folders of a run, newest first."""
    root = Path(run_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX)
             and p.name[len(CHECKPOINT_PREFIX):].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]), reverse=True)


def write_checkpoint(run_dir: Path, step: int, model: nn.Module, tensors: dict[str, torch.Tensor],
                     state: dict, model_metadata: dict) -> Path:
    """Write ``checkpoints/step-<step>/`` atomically: into a hidden folder, synced, then renamed."""
    root = Path(run_dir) / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{CHECKPOINT_PREFIX}{step:08d}"
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    checkpoint.save(model, tmp / MODEL_FILE, model_metadata)
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / STATE_TENSORS))
    state = dict(state, format=STATE_FORMAT,
                 files={name: _sha256(tmp / name) for name in (MODEL_FILE, STATE_TENSORS)})
    state["checksum"] = _json_checksum(state)
    (tmp / STATE_JSON).write_text(json.dumps(state, indent=1, sort_keys=True))
    for name in (MODEL_FILE, STATE_TENSORS, STATE_JSON):
        _fsync(tmp / name)
    _fsync(tmp)
    if final.exists():  # the same step written again (e.g. a stop at an epoch's last batch)
        old = root / f".old-{final.name}-{os.getpid()}"
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)
    _fsync(root)
    return final


def read_checkpoint(folder: Path) -> tuple[dict, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``(state, train-state tensors, model tensors)``, verified against the recorded
    checksums; raises :class:`CorruptCheckpoint` naming the bad file."""
    folder = Path(folder)
    path = folder / STATE_JSON
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        raise CorruptCheckpoint(f"{path}: missing") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise CorruptCheckpoint(f"{path}: not valid JSON (truncated or corrupted: {err})") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CorruptCheckpoint(f"{path}: not a {STATE_FORMAT} file")
    if state.get("checksum") != _json_checksum(state):
        raise CorruptCheckpoint(f"{path}: checksum mismatch (corrupted)")
    for name, digest in state["files"].items():
        file = folder / name
        if not file.is_file():
            raise CorruptCheckpoint(f"{file}: missing")
        if _sha256(file) != digest:
            raise CorruptCheckpoint(f"{file}: checksum mismatch (truncated or corrupted)")
    try:
        tensors = load_file(str(folder / STATE_TENSORS))
        weights = load_file(str(folder / MODEL_FILE))
    except (SafetensorError, OSError, ValueError) as err:
        raise CorruptCheckpoint(f"{folder}: unreadable safetensors ({err})") from None
    return state, tensors, weights


def latest_checkpoint(run_dir: Path) -> tuple[Path, dict, dict, dict]:
    """The newest checkpoint that verifies; a bad one gets a one-line warning and is skipped."""
    run_dir = Path(run_dir)
    folders = checkpoint_dirs(run_dir)
    if not folders:
        raise _no_checkpoint(run_dir)
    for folder in folders:
        try:
            state, tensors, weights = read_checkpoint(folder)
            return folder, state, tensors, weights
        except CorruptCheckpoint as err:
            log.warning("%s; falling back to the previous checkpoint", err)
    raise CocktailError(f"{run_dir}: every checkpoint is corrupted ({len(folders)} tried); "
                        f"start again with: cocktail train --config {run_dir / 'config.yaml'} --out NEW_DIR")


def _no_checkpoint(run_dir: Path) -> CocktailError:
    return CocktailError(
        f"{run_dir}: no checkpoint to resume from (expected {CHECKPOINT_DIR}/{CHECKPOINT_PREFIX}*/ "
        f"folders; the run may have stopped before its first one). Start it again with: "
        f"cocktail train --config {run_dir / 'config.yaml'} --out {run_dir}")


# Optimizer state <-> flat tensors + JSON


def flatten_optimizer(sd: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for index, entries in sd["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{index}/{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict, current: torch.optim.Optimizer) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer/"):
            _, index, name = key.split("/", 2)
            state.setdefault(int(index), {})[name] = value
    for index, entries in meta["scalars"].items():
        state.setdefault(int(index), {}).update(entries)
    groups = copy.deepcopy(meta["param_groups"])
    # JSON turned tuples (Adam's betas) into lists; give them back their live types.
    for group, live in zip(groups, current.param_groups):
        for key, value in live.items():
            if isinstance(value, tuple) and isinstance(group.get(key), list):
                group[key] = tuple(group[key])
    return {"state": state, "param_groups": groups}


# RNG states


def capture_rng(device: torch.device) -> tuple[dict, dict[str, torch.Tensor]]:
    """This process's RNG states: JSON part (Python, NumPy) and tensors (torch CPU/CUDA)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    meta = {"python": [version, list(internal), gauss],
            "numpy": [kind, base64.b64encode(np.asarray(keys, dtype="<u4").tobytes()).decode(), int(pos),
                      int(has_gauss), float(cached)]}
    tensors = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        tensors["cuda"] = torch.cuda.get_rng_state(device)
    return meta, tensors


def restore_rng(meta: dict, tensors: dict[str, torch.Tensor], device: torch.device) -> None:
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, np.frombuffer(base64.b64decode(keys), dtype="<u4").copy(), pos, has_gauss, cached))
    torch.set_rng_state(tensors["cpu"])
    if device.type == "cuda" and "cuda" in tensors:
        torch.cuda.set_rng_state(tensors["cuda"], device)


# --------------------------------------------------------------------------------------
# Logs
# --------------------------------------------------------------------------------------


class CsvLog:
    """An append-only CSV whose header is fixed by its first row; rows are flushed at once."""

    def __init__(self, path: Path):
        self.path = path
        self.fields: Optional[list[str]] = None
        if path.is_file():
            with open(path, newline="") as f:
                header = next(csv.reader(f), None)
            self.fields = header or None

    def write(self, row: dict) -> None:
        if self.fields is None:
            self.fields = list(row)
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(self.fields)
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.fields, extrasaction="ignore").writerow(row)

    def truncate_after(self, step: int) -> None:
        """Drop rows written after ``step`` (by a run that was then killed)."""
        if not self.path.is_file():
            return
        with open(self.path, newline="") as f:
            rows = list(csv.DictReader(f))
        kept = [r for r in rows if r.get("step") and int(r["step"]) <= step]
        if len(kept) != len(rows):
            with open(self.path, "w", newline="") as f:
                writer = csv.DictWriter(f, self.fields or list(rows[0]))
                writer.writeheader()
                writer.writerows(kept)


def _fmt(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


# --------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------


class Trainer:
    """One training run in ``run_dir``, fresh or resumed (see the module docstring).

    Args:
        cfg: a config as :func:`resolve_config` returns it.
        run_dir: the run folder.
        resume: continue from the newest valid checkpoint of ``run_dir``.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``; default CUDA when present.
        progress: show progress bars on stderr: steps of each epoch (loss, lr, samples/s every
            ``log_every`` steps) and validation. ``cocktail train`` asks
            :func:`~cocktailparty.core.progress.progress_enabled` (a terminal, no ``-q``).
        stop_at: a ``time.monotonic()`` time after which the next step ends this process's
            training as a signal would (saved mid-epoch, resumable): the end of a fixed-length
            slot. Unlike ``training.time_budget_s`` it is not part of the run.
    """

    def __init__(self, cfg: dict, run_dir: str | os.PathLike, *, resume: bool = False,
                 device: Optional[str] = None, progress: bool = True, source: str = "config",
                 stop_at: Optional[float] = None):
        self.cfg, self.run_dir, self.progress, self.stop_at = cfg, Path(run_dir), progress, stop_at
        self.t = cfg["training"]
        self.dist = Distributed.from_env()
        self.device = _resolve_device(device, self.dist)
        if self.dist.enabled and not torch.distributed.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            torch.distributed.init_process_group(backend)
        if self.t["batch_size"] % self.dist.world:
            raise CocktailError(f"{source}: training.batch_size {self.t['batch_size']} (the global batch) "
                                f"must be a multiple of the {self.dist.world} processes")
        if self.t["deterministic"]:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
        self.seed = int(self.t["seed"])
        random.seed(self.seed)
        np.random.seed(self.seed)
        torch.manual_seed(self.seed)

        model_cfg = dict(cfg["model"])
        architecture = model_cfg.pop("architecture")
        self.model = build_model(architecture, **model_cfg)
        if self.t["activation_checkpointing"]:
            if not hasattr(self.model, "set_activation_checkpointing"):
                raise CocktailError(f"{source}: training.activation_checkpointing is not implemented for "
                                    f"{architecture} (only for models with set_activation_checkpointing: tunein)")
            self.model.set_activation_checkpointing(True)
        self.sample_rate = int(self.model.config.sample_rate)
        self.num_sources = int(getattr(self.model.config, "num_sources", 2))
        self.train_set, self.valid_set, speakers = build_datasets(cfg, self.sample_rate, self.num_sources, source)
        if self.t["init_from"] and not resume:
            self._init_from(Path(self.t["init_from"]), architecture)
        self.model.to(self.device)
        if self.t["cuda_graph"]:
            if self.device.type != "cuda":
                raise CocktailError(f"{source}: training.cuda_graph needs a CUDA device, not {self.device}")
            if self.dist.enabled:
                raise CocktailError(f"{source}: training.cuda_graph runs in one process; under torchrun "
                                    f"set training.cuda_graph=false")
        if self.t["precision"] == "tf32":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        if self.t["compile"]:
            self.model.compile()  # in place: parameter names, so checkpoints, are unchanged
        objective = None
        if hasattr(self.model, "training_objective"):
            info = TrainingInfo(speakers, self.num_sources, self.sample_rate, self.t["stage"],
                                dict(self.t["objective"]), self.device)
            objective = self.model.training_objective(info)
            if objective is not None:
                objective.to(self.device)
        self.trainee = Trainee(self.model, objective, self.t["loss"], self.t["pit"],
                               float(self.t["high_band_weight"]), float(self.t["high_band_from"])).to(self.device)
        self.params = [p for p in self.trainee.parameters() if p.requires_grad]
        if not self.params:
            raise CocktailError("nothing to train: every parameter is frozen (check training.stage)")
        self.optimizer = self._optimizer()
        self.recipe = Recipe(self.optimizer, self.t["lr_schedule"], self.t["early_stop_patience_epochs"])
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.t["precision"])
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.t["precision"] == "fp16")
        self.wrapped: nn.Module = self.trainee
        self.graphed: Optional[GraphedStep] = None
        if self.dist.enabled:
            self.wrapped = nn.parallel.DistributedDataParallel(
                self.trainee, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=bool(self.t["ddp_find_unused_parameters"]))
            # Dropout should differ between processes; the initial weights (broadcast by DDP) not.
            if self.dist.rank:
                torch.manual_seed(self.seed + 1_000_003 * self.dist.rank)
                np.random.seed((self.seed + 1_000_003 * self.dist.rank) % 2**32)
                random.seed(self.seed + 1_000_003 * self.dist.rank)

        # Position and running statistics (all saved in checkpoints).
        self.step = 0
        self.epoch = 0
        self.batch = 0  # next batch of the current epoch
        self.early_stopped = False
        self.sums: dict[str, float] = {}
        self.count = 0
        self.window: dict[str, float] = {}
        self.window_count = 0
        # Wall-clock throughput of the steps since the last steps.csv row (not saved: after a
        # resume it restarts with the steps this process ran).
        self.clock_start, self.clock_steps = time.perf_counter(), 0
        self.skipped = 0
        self.elapsed = 0.0
        self._stop_signal: Optional[int] = None
        self._signal_guard = HandlerGuard((signal.SIGINT, signal.SIGTERM))
        self._signal_takeovers: set[str] = set()

        self.n_batches = len(self.train_set) // self.t["batch_size"]
        if self.t["max_steps_per_epoch"]:
            self.n_batches = min(self.n_batches, int(self.t["max_steps_per_epoch"]))
        if self.n_batches < 1:
            raise CocktailError(f"{source}: the training set has {len(self.train_set)} items, fewer than "
                                f"one batch of {self.t['batch_size']}")

        self.epoch_log = CsvLog(self.run_dir / "log.csv")
        self.step_log = CsvLog(self.run_dir / "steps.csv")
        if resume:
            self._resume()
        elif self.dist.main:
            self._start_fresh()

    # --- set-up -------------------------------------------------------------------------

    def _optimizer(self) -> torch.optim.Optimizer:
        t = self.t
        lr, wd = float(t["lr"]), float(t["weight_decay"])
        # capturable: Adam keeps its step count on the GPU, so a CUDA graph can replay the update.
        adam = dict(lr=lr, weight_decay=wd, betas=tuple(t["betas"]), capturable=bool(t["cuda_graph"]))
        if t["optimizer"] == "adam":
            return torch.optim.Adam(self.params, **adam)
        if t["optimizer"] == "adamw":
            return torch.optim.AdamW(self.params, **adam)
        return torch.optim.SGD(self.params, lr=lr, weight_decay=wd, momentum=float(t["momentum"]))

    def _init_from(self, path: Path, architecture: str) -> None:
        meta = checkpoint.read_metadata(path)
        if meta["architecture"] != architecture:
            raise CocktailError(f"training.init_from {path}: a {meta['architecture']} model, but this run "
                                f"trains a {architecture}")
        try:
            self.model.load_state_dict(load_file(str(path)))
        except RuntimeError as err:
            raise CocktailError(f"training.init_from {path}: weights do not fit this model's config "
                                f"({str(err).splitlines()[0]})") from None
        log.info("starting from the weights of %s", path)

    def _start_fresh(self) -> None:
        if checkpoint_dirs(self.run_dir):
            raise CocktailError(f"{self.run_dir}: already holds a run with checkpoints; continue it with "
                                f"cocktail train --resume {self.run_dir}, or choose another --out")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for name in ("log.csv", "steps.csv", BEST_FILE):
            (self.run_dir / name).unlink(missing_ok=True)
        self.epoch_log, self.step_log = CsvLog(self.run_dir / "log.csv"), CsvLog(self.run_dir / "steps.csv")
        _write_yaml(self.run_dir / "config.yaml", self.cfg)

    def _resume(self) -> None:
        folder, state, tensors, weights = latest_checkpoint(self.run_dir)
        try:
            self.model.load_state_dict(weights)
        except RuntimeError as err:
            raise CocktailError(f"{folder / MODEL_FILE}: does not fit the model of {self.run_dir / 'config.yaml'} "
                                f"({str(err).splitlines()[0]})") from None
        if self.trainee.objective is not None:
            prefix = "objective/"
            self.trainee.objective.load_state_dict(
                {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        self.optimizer.load_state_dict(unflatten_optimizer(tensors, state["optimizer"], self.optimizer))
        self.recipe.load_state_dict(state["recipe"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.batch = state["step"], state["epoch"], state["batch"]
        self.early_stopped = state["early_stopped"]
        self.sums, self.count = state["sums"], state["count"]
        self.window, self.window_count = state["window"], state["window_count"]
        self.skipped, self.elapsed = state["skipped"], state["elapsed"]
        if state["n_batches"] != self.n_batches and self.batch:
            log.warning("the epoch length changed since this checkpoint (%d -> %d batches)",
                        state["n_batches"], self.n_batches)
        rng = state["rng"]
        if len(rng) == self.dist.world:
            restore_rng(rng[self.dist.rank], {k.split("/")[2]: v for k, v in tensors.items()
                                              if k.startswith(f"rng/{self.dist.rank}/")}, self.device)
        else:
            log.warning("the run was saved by %d process(es) and resumes on %d: random streams are "
                        "re-seeded, so it will not repeat the uninterrupted run bit for bit", len(rng), self.dist.world)
            torch.manual_seed(self.seed + 7919 * (self.step + 1) + self.dist.rank)
        if self.dist.main:
            for stale in (self.run_dir / CHECKPOINT_DIR).glob(".tmp-*"):
                shutil.rmtree(stale, ignore_errors=True)
            for stale in self.run_dir.glob(f".{BEST_FILE}.*.part"):
                stale.unlink(missing_ok=True)
            self.epoch_log.truncate_after(self.step)
            self.step_log.truncate_after(self.step)
        self.recipe.step_done(self.step)
        log.info("resuming %s from %s (epoch %d, batch %d of %d, step %d)", self.run_dir, folder.name,
                 self.epoch + 1, self.batch, self.n_batches, self.step)

    # --- the loop -----------------------------------------------------------------------

    @property
    def stop_signal(self) -> Optional[int]:
        """The signal (SIGINT, SIGTERM) that stopped this run, or None."""
        return self._stop_signal

    def fit(self) -> str:
        """Train until ``epochs``, early stopping, the time budget or a stop signal. Returns
        ``"finished"``, ``"early_stopped"``, ``"budget_spent"`` (the partial epoch validated;
        resumable), ``"stopped"`` (a signal or ``stop_at``; resumable) or ``"already_finished"``."""
        if not self.finished:
            self._preflight()
        if self.finished:
            log.info("%s: this run already finished (epoch %d, step %d%s); nothing to do", self.run_dir,
                     self.epoch, self.step, ", early stop" if self.early_stopped else
                     "; --set training.epochs=N trains on")
            return "already_finished"
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in previous:
            signal.signal(sig, self._on_signal)
        self._signal_guard.arm()
        try:
            return self._loop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _preflight(self) -> None:
        """Score one validation batch before training, so that a model/data mismatch shows up
        now and not after the first epoch (the random streams are left untouched)."""
        try:
            self.validate(max_batches=1)
        except CocktailError as err:
            hint = (" (data.enrollment_seconds adds enrollments to mixtures from a corpus)"
                    if "enroll" in str(err) and not self.cfg["data"]["enrollment_seconds"] else "")
            raise CocktailError(f"the model fails on the first validation batch: {err}{hint}") from None

    @property
    def finished(self) -> bool:
        return self.early_stopped or self.epoch >= self.t["epochs"]

    def _on_signal(self, signum: int, frame) -> None:
        if self._stop_signal is not None:
            # A second Ctrl-C: the user wants out now. A second SIGTERM is no such wish: GNU
            # timeout sends one to its child and then one to the child's process group, and
            # when the handler runs in between, quitting here would lose every step since the
            # last checkpoint.
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        self._stop_signal = signum
        if self.dist.main:
            try:
                print(f"\n{signal.Signals(signum).name}: finishing this step and saving a checkpoint "
                      f"(press Ctrl-C again to quit without saving)", file=sys.stderr)
            except OSError:
                # stderr may be a pipe whose reader the same signal ended (GNU timeout signals
                # its whole process group, `| tail` included): saying so must not cost the save.
                pass

    def _keep_signal_handlers(self) -> None:
        """Undo a takeover of SIGINT/SIGTERM by a native library or another Python module (see
        signal_guard), saying once per culprit what it was."""
        for message in self._signal_guard.check():
            if message not in self._signal_takeovers:
                self._signal_takeovers.add(message)
                log.warning("step %d: %s", self.step + 1, message)

    def _loop(self) -> str:
        outcome = "finished"
        while not self.finished:
            if self._train_epoch():
                if self._agree(self._budget_spent()) and not self._agree(self._stop_signal is not None):
                    # The budget ends this epoch early: validate it, so the run has a best model.
                    self._end_epoch()
                    self._save()
                    if self.dist.main:
                        best = "n/a" if self.recipe.best is None else f"{self.recipe.best:.2f} dB"
                        log.info("time budget spent at step %d; best valid SI-SNRi %s; model: %s; --resume "
                                 "with a larger training.time_budget_s trains on", self.step, best,
                                 self.run_dir / BEST_FILE)
                    return "budget_spent"
                return self._stopped()
            if self._end_epoch():
                outcome = "early_stopped"
                self.early_stopped = True
            self._save()
            if not self.finished and self._agree(self._stop_signal is not None or self.slot_ended):
                return self._stopped()
        if self.dist.main:
            best = self.recipe.best
            log.info("%s after %d epochs (%d steps); best valid SI-SNRi %s; model: %s", outcome.replace("_", " "),
                     self.epoch, self.step, f"{best:.2f} dB (epoch {self.recipe.best_epoch})" if best is not None
                     else "n/a", self.run_dir / BEST_FILE)
        return outcome

    def _stopped(self) -> str:
        self._save()
        if self.dist.main:
            why = signal.Signals(self._stop_signal).name if self._stop_signal else "--stop-after"
            log.info("stopped at step %d (epoch %d, batch %d of %d; %s); continue with: cocktail train --resume %s",
                     self.step, self.epoch + 1, self.batch, self.n_batches, why, self.run_dir)
        return "stopped"

    @property
    def slot_ended(self) -> bool:
        """Whether the ``stop_at`` time has come."""
        return self.stop_at is not None and time.monotonic() >= self.stop_at

    def _budget_spent(self, running: float = 0.0) -> bool:
        """Whether the training time (``elapsed`` plus ``running`` seconds not yet added to
        it) has reached ``training.time_budget_s``."""
        budget = self.t["time_budget_s"]
        return budget is not None and self.elapsed + running >= float(budget)

    def _agree(self, flag: bool) -> bool:
        """True on every process when ``flag`` is True on any."""
        if not self.dist.enabled:
            return flag
        value = torch.tensor([float(flag)], device=self.device)
        torch.distributed.all_reduce(value)
        return bool(value.item() > 0)

    def _train_epoch(self) -> bool:
        """Run the rest of the current epoch; True when a stop signal asks to save and exit."""
        t = self.t
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(self.epoch)
        order = epoch_order(self.seed, self.epoch, len(self.train_set), bool(t["shuffle"]))
        batches = EpochBatches(order, t["batch_size"], self.batch, self.n_batches, self.dist.rank, self.dist.world)
        loader = _loader(self.train_set, batches, int(t["num_workers"]), self.seed * 100003 + self.epoch,
                         self.device.type == "cuda")
        bar = self._bar(total=self.n_batches, initial=self.batch, desc=f"epoch {self.epoch + 1}/{t['epochs']}")
        started = time.monotonic()
        try:
            for batch in loader:
                terms = self._train_step(batch)
                self._keep_signal_handlers()
                self.step += 1
                self.recipe.step_done(self.step)
                self.batch += 1
                stop = self._accumulate(terms, self._budget_spent(time.monotonic() - started) or self.slot_ended)
                if bar is not None:
                    bar.update(1)
                if self.step % t["log_every"] == 0:
                    self._log_window(bar)
                    for line in self._signal_guard.new_foreign_handlers():
                        log.info("step %d: %s", self.step, line)
                if stop:
                    return True
                if self.step % t["checkpoint_every"] == 0 and self.batch < self.n_batches:
                    self.elapsed += time.monotonic() - started
                    started = time.monotonic()
                    self._save()
        finally:
            self.elapsed += time.monotonic() - started
            if bar is not None:
                bar.close()
        return False

    def _bar(self, **kwargs):
        if not (self.progress and self.dist.main):
            return None
        return Bar(enabled=True, unit="step", leave=False, **kwargs)

    def _autocast(self, cache: bool = True):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype, cache_enabled=cache)

    def _train_step(self, batch: dict) -> dict[str, torch.Tensor]:
        self.wrapped.train()
        if self.t["cuda_graph"]:
            if self.graphed is None:
                self.graphed = GraphedStep(self, batch)
            out = self.graphed(batch)
            if not torch.isfinite(out["grad_norm"]):  # a host sync, as _accumulate's that follows
                self._count_non_finite("gradients zeroed")
            return out
        batch = _to_device(batch, self.device)
        with self._autocast():
            terms = self.wrapped(batch)
        loss = terms["loss"]
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        clip = self.t["grad_clip_norm"]
        norm = nn.utils.clip_grad_norm_(self.params, float(clip) if clip else float("inf"))
        if self.scaler.is_enabled():
            self.scaler.step(self.optimizer)  # skips the step itself on inf/nan gradients
            self.scaler.update()
        elif torch.isfinite(norm):
            self.optimizer.step()
        else:
            # A non-finite gradient would poison Adam's moments for good; skip this batch.
            self._count_non_finite("batch skipped")
        out = {k: v.detach().float() for k, v in terms.items()}
        out["grad_norm"] = norm.detach().float()
        return out

    def _count_non_finite(self, action: str) -> None:
        self.skipped += 1
        log.warning("step %d: non-finite gradient norm; %s (%d so far)", self.step + 1, action, self.skipped)

    def _accumulate(self, terms: dict[str, torch.Tensor], stop: bool = False) -> bool:
        """Add a step's terms to the epoch and window sums (averaged over processes); returns
        whether any process received a stop signal or asks to ``stop``."""
        names = sorted(terms)
        values = torch.stack([terms[n].reshape(()) for n in names] + [
            torch.tensor(float(stop or self._stop_signal is not None), device=terms["loss"].device)])
        if self.dist.enabled:
            torch.distributed.all_reduce(values)
            values = values / self.dist.world  # the flag stays > 0 when any process set it
        numbers = values.cpu().tolist()
        for name, value in zip(names, numbers[:-1]):
            self.sums[name] = self.sums.get(name, 0.0) + value
            self.window[name] = self.window.get(name, 0.0) + value
        self.count += 1
        self.window_count += 1
        self.clock_steps += 1
        return numbers[-1] > 0

    def _log_window(self, bar) -> None:
        means = {k: v / max(1, self.window_count) for k, v in self.window.items()}
        lr = self.optimizer.param_groups[0]["lr"]
        now = time.perf_counter()
        samples_per_s = self.clock_steps * self.t["batch_size"] / max(now - self.clock_start, 1e-9)
        self.clock_start, self.clock_steps = now, 0
        if self.dist.main:
            # A model may report numbers about itself (e.g. TDANet's attention logit gain).
            diagnostics = self.model.training_diagnostics() if hasattr(self.model, "training_diagnostics") else {}
            self.step_log.write({"step": self.step, "epoch": self.epoch + 1, "lr": _fmt(lr),
                                 **{k: _fmt(v) for k, v in sorted(means.items())},
                                 **{k: _fmt(v) for k, v in sorted(diagnostics.items())},
                                 "samples_per_s": f"{samples_per_s:.1f}"})
            if bar is not None:
                bar.set_postfix({"loss": f"{means.get('loss', float('nan')):.3f}", "lr": f"{lr:.2e}",
                                 "samples/s": f"{samples_per_s:.1f}"})
        self.window, self.window_count = {}, 0

    def _end_epoch(self) -> bool:
        """Validate, step the schedules, log, save; True when early stopping ends the run."""
        t = self.t
        epoch = self.epoch + 1  # the epoch just finished, counted from 1
        lr = self.optimizer.param_groups[0]["lr"]
        score, new_best, stop = None, False, False
        if epoch % t["valid_every"] == 0 or epoch == t["epochs"]:
            score = self.validate()
            new_best, stop = self.recipe.validated(score, epoch)
            if new_best and self.dist.main:
                checkpoint.save(self.model, self.run_dir / BEST_FILE,
                                {"training": {"epoch": epoch, "step": self.step, "valid_si_snri": score}})
        self.recipe.epoch_done()
        means = {k: v / max(1, self.count) for k, v in sorted(self.sums.items())}
        if self.dist.main:
            self.epoch_log.write({
                "epoch": epoch, "step": self.step, "lr": _fmt(lr),
                **{f"train_{k}": _fmt(v) for k, v in means.items()},
                "valid_si_snri": _fmt(score) if score is not None else "",
                "best_valid_si_snri": _fmt(self.recipe.best) if self.recipe.best is not None else "",
                "elapsed_s": f"{self.elapsed:.1f}",
            })
            valid = (f"valid SI-SNRi {score:.2f} dB{' (new best)' if new_best else ''}"
                     if score is not None else "no validation")
            new_lr = self.optimizer.param_groups[0]["lr"]
            lr_text = f"lr {lr:.3g}" + (f" -> {new_lr:.3g}" if new_lr != lr else "")
            log.info("epoch %d/%d  step %d  %s  loss %.3f  %s", epoch, t["epochs"], self.step, lr_text,
                     means.get("loss", float("nan")), valid)
        self.epoch += 1
        self.batch = 0
        self.sums, self.count = {}, 0
        if stop and self.dist.main:
            log.info("early stop: no new best validation SI-SNRi in %d validations", self.recipe.bad)
        return stop

    @torch.no_grad()
    def validate(self, max_batches: Optional[int] = None) -> float:
        """Mean SI-SNRi (dB) over the validation mixtures (sources averaged per mixture)."""
        t, d = self.t, self.cfg["data"]
        model = self.model
        was_training = model.training
        model.eval()
        if hasattr(self.valid_set, "set_epoch"):
            self.valid_set.set_epoch(0)  # the same validation mixtures every epoch
        n = len(self.valid_set)
        if d["valid_max_items"]:
            n = min(n, int(d["valid_max_items"]))
        fixed = d["valid_segment_seconds"] is not None
        size = int(t["valid_batch_size"] or (max(1, t["batch_size"] // self.dist.world) if fixed else 1))
        mine = list(range(self.dist.rank, n, self.dist.world))
        batches = [mine[i:i + size] for i in range(0, len(mine), size)][:max_batches]
        loader = _loader(self.valid_set, batches, int(t["num_workers"]), self.seed, self.device.type == "cuda")
        total = torch.zeros(2, dtype=torch.float64, device=self.device)
        bar = self._bar(total=len(batches), desc="validation") if max_batches is None else None
        # Validation must not move the training's random streams, whatever a model does in eval.
        devices = [self.device] if self.device.type == "cuda" else []
        # Whole validation utterances vary in length: a compiled model would recompile for each
        # one (minutes per epoch, seen on an H200), so validation runs eagerly.
        eager = torch.compiler.set_stance("force_eager") if t["compile"] else contextlib.nullcontext()
        with torch.random.fork_rng(devices=devices, device_type=self.device.type if devices else "cuda"), eager:
            for batch in loader:
                batch = _to_device(batch, self.device)
                with self._autocast():
                    if hasattr(model, "validation_estimates"):
                        est = model.validation_estimates(batch)
                    elif "enrollment" in batch:
                        est = model(batch["mixture"], batch["enrollment"])
                    else:
                        est = model(batch["mixture"])
                improvement, _ = si_snri(est.float(), batch["sources"].float(), batch["mixture"].float())
                total[0] += improvement.double().mean(dim=-1).sum()
                total[1] += improvement.shape[0]
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
        if self.dist.enabled:
            torch.distributed.all_reduce(total)
        model.train(was_training)
        return float(total[0] / total[1].clamp(min=1))

    # --- checkpoints --------------------------------------------------------------------

    def _save(self) -> None:
        meta, rng_tensors = capture_rng(self.device)
        if self.dist.enabled:
            gathered: list = [None] * self.dist.world
            torch.distributed.all_gather_object(gathered, (meta, {k: v.cpu() for k, v in rng_tensors.items()}))
        else:
            gathered = [(meta, rng_tensors)]
        if self.dist.main:
            tensors, optim_meta = flatten_optimizer(self.optimizer.state_dict())
            for rank, (_, rt) in enumerate(gathered):
                tensors.update({f"rng/{rank}/{k}": v for k, v in rt.items()})
            if self.trainee.objective is not None:
                tensors.update({f"objective/{k}": v for k, v in self.trainee.objective.state_dict().items()})
            state = {
                "step": self.step, "epoch": self.epoch, "batch": self.batch, "n_batches": self.n_batches,
                "finished": self.finished, "early_stopped": self.early_stopped, "sums": self.sums, "count": self.count,
                "window": self.window, "window_count": self.window_count,
                "skipped": self.skipped, "elapsed": self.elapsed,
                "optimizer": optim_meta, "recipe": self.recipe.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
                "rng": [m for m, _ in gathered], "world_size": self.dist.world,
                "written": datetime.datetime.now().isoformat(timespec="seconds"),
            }
            write_checkpoint(self.run_dir, self.step, self.model, tensors, state,
                             {"training": {"epoch": self.epoch, "batch": self.batch, "step": self.step}})
            keep = int(self.t["keep_checkpoints"])
            for old in checkpoint_dirs(self.run_dir)[keep:]:
                shutil.rmtree(old, ignore_errors=True)
        if self.dist.enabled:
            torch.distributed.barrier()


class GraphedStep:
    """The training step (forward, loss, backward, clipping, optimizer update) captured once as
    a CUDA graph, then replayed for every batch: PyTorch's whole-network capture recipe.

    The batch is copied into static input tensors; the graph writes the loss terms into static
    outputs. Dropout draws fresh numbers at each replay (graph-safe Philox offsets). The update
    is captured reading each param group's lr from a device tensor, filled from the group's
    (float) lr before every replay, so a schedule may change the lr at any step without a new
    capture; everywhere else (schedulers, checkpoints, logs) the lr stays a plain float.
    A non-finite gradient cannot skip a replayed update: its gradients are zeroed instead (Adam's
    moments decay for one step, nothing is poisoned); the trainer counts it as skipped. Capturing runs
    three warm-up steps on the first batch (torch.compile and cuBLAS set themselves up there);
    their effect on the weights, optimizer, buffers and random streams is undone before the
    capture, so a graphed run trains on exactly the batches an eager one would.
    """

    WARMUP_STEPS = 3

    def __init__(self, trainer: "Trainer", batch: dict):
        self.trainer = trainer
        groups = trainer.optimizer.param_groups
        self.lrs = [torch.tensor(float(g["lr"]), device=trainer.device) for g in groups]
        self.static = {k: v.to(trainer.device).clone() if isinstance(v, torch.Tensor) else v
                       for k, v in batch.items()}
        saved = self._snapshot()
        floats = [g["lr"] for g in groups]
        torch.cuda.synchronize()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        try:
            for group, lr in zip(groups, self.lrs):
                group["lr"] = lr  # capturable Adam reads a tensor lr when the graph replays
            with torch.cuda.stream(stream):
                for _ in range(self.WARMUP_STEPS):
                    trainer.optimizer.zero_grad(set_to_none=True)
                    self._body()
            torch.cuda.current_stream().wait_stream(stream)
            self._restore(saved)
            trainer.optimizer.zero_grad(set_to_none=True)  # backward allocates .grad from the graph pool
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.outputs = self._body()
        except Exception as err:
            raise CocktailError(f"training.cuda_graph: the training step could not be captured as a CUDA graph "
                                f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
                                f"train without it: --set training.cuda_graph=false") from err
        finally:
            for group, lr in zip(groups, floats):
                group["lr"] = lr
        log.info("training step captured as a CUDA graph")

    def _body(self) -> dict[str, torch.Tensor]:
        trainer = self.trainer
        with trainer._autocast(cache=False):  # a weight-cast cache filled in capture would go stale
            terms = trainer.wrapped(self.static)
        terms["loss"].backward()
        clip = trainer.t["grad_clip_norm"]
        norm = nn.utils.clip_grad_norm_(trainer.params, float(clip) if clip else float("inf"))
        finite = torch.isfinite(norm)
        grads = [p.grad for p in trainer.params if p.grad is not None]
        torch._foreach_copy_(grads, [torch.where(finite, g, torch.zeros((), device=g.device)) for g in grads])
        trainer.optimizer.step()
        out = {k: v.detach().float() for k, v in terms.items()}
        out["grad_norm"] = norm.detach().float()
        return out

    def _snapshot(self) -> dict:
        trainer = self.trainer
        tensors = {f"m/{k}": v.detach().clone() for k, v in trainer.trainee.state_dict(keep_vars=True).items()}
        for i, state in enumerate(trainer.optimizer.state.values()):
            tensors.update({f"o/{i}/{k}": v.clone() for k, v in state.items() if isinstance(v, torch.Tensor)})
        return {"tensors": tensors, "had_state": len(trainer.optimizer.state),
                "rng": (torch.get_rng_state(), torch.cuda.get_rng_state(trainer.device))}

    @torch.no_grad()
    def _restore(self, saved: dict) -> None:
        trainer, tensors = self.trainer, saved["tensors"]
        for k, v in trainer.trainee.state_dict(keep_vars=True).items():
            v.detach().copy_(tensors[f"m/{k}"])
        for i, state in enumerate(trainer.optimizer.state.values()):
            for k, v in state.items():
                if isinstance(v, torch.Tensor):
                    # State that the warm-up created starts from zero, as a fresh Adam's would.
                    v.copy_(tensors[f"o/{i}/{k}"]) if saved["had_state"] else v.zero_()
        torch.set_rng_state(saved["rng"][0])
        torch.cuda.set_rng_state(saved["rng"][1], trainer.device)

    def __call__(self, batch: dict) -> dict[str, torch.Tensor]:
        for k, v in batch.items():
            if isinstance(v, torch.Tensor):
                self.static[k].copy_(v, non_blocking=True)
        for group, lr in zip(self.trainer.optimizer.param_groups, self.lrs):
            lr.fill_(group["lr"])
        self.graph.replay()
        return {k: v.clone() for k, v in self.outputs.items()}


def _to_device(batch: dict, device: torch.device) -> dict:
    non_blocking = device.type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()}


def _write_yaml(path: Path, cfg: dict) -> None:
    import yaml

    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None))
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def cli_train(args) -> int:
    """``cocktail train``: a fresh run from ``--config`` or a resumed one from ``--resume``."""
    stop_after = getattr(args, "stop_after", None)
    if stop_after is not None and not stop_after > 0:
        raise CocktailError(f"--stop-after {stop_after}: give a positive number of seconds")
    # cocktail's main() notes its start before importing torch, which is part of the slot too.
    stop_at = None if stop_after is None else getattr(args, "started", time.monotonic()) + stop_after
    overrides = list(getattr(args, "overrides", None) or [])
    out = getattr(args, "out", None)
    if args.resume:
        if args.config:
            raise CocktailError("--resume continues a run with its own RUN_DIR/config.yaml; drop --config "
                                "(use --set KEY=VALUE to change e.g. training.epochs)")
        run_dir = Path(args.resume)
        if not (run_dir / "config.yaml").is_file():
            raise CocktailError(f"{run_dir}: not a run folder (no config.yaml); give the folder a "
                                f"'cocktail train' run writes into")
        if not checkpoint_dirs(run_dir):
            raise _no_checkpoint(run_dir)
        source = str(run_dir / "config.yaml")
        cfg = resolve_config(apply_overrides(load_config(run_dir / "config.yaml"), overrides), source)
        if overrides and Distributed.from_env().main:
            _write_yaml(run_dir / "config.yaml", cfg)
    else:
        if not args.config:
            raise CocktailError("give --config NAME (a bundled config, e.g. tdanet-lrs2) or --config FILE.yaml "
                                "for a new run, or --resume RUN_DIR")
        source = str(args.config)
        config_path = Path(args.config)
        if not config_path.is_file() and not config_path.suffix:
            from ..core.config import CONFIG_DIR
            if (CONFIG_DIR / f"{args.config}.yaml").is_file():
                config_path = CONFIG_DIR / f"{args.config}.yaml"
        cfg = resolve_config(apply_overrides(load_config(config_path), overrides), source)
        if out:
            run_dir = Path(out)
        else:
            stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            run_dir = Path("runs") / f"{config_path.stem}-{stamp}"
    trainer = Trainer(cfg, run_dir, resume=bool(args.resume), device=getattr(args, "device", None),
                      progress=progress_enabled(getattr(args, "quiet", False)), source=source, stop_at=stop_at)
    if trainer.dist.main and not args.resume:
        log.info("training %s into %s (%d batches of %d per epoch, %s)", cfg["model"]["architecture"],
                 run_dir, trainer.n_batches, trainer.t["batch_size"], trainer.device)
    try:
        outcome = trainer.fit()
    finally:
        if trainer.dist.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    # A run stopped by a signal or --stop-after is resumable but not done: the shell's 128 +
    # signal number, or 75, tells scripts (benchmarks/quality.py, a scheduler) to come back
    # with --resume.
    if outcome == "stopped":
        return 128 + int(trainer.stop_signal) if trainer.stop_signal else EXIT_SLOT_ENDED
    return 0
