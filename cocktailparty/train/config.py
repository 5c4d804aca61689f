"""The ``training:`` and ``data:`` sections of a run config, as typed dataclasses.

:class:`TrainingConfig` and :class:`DataConfig` are the schema: each field's default is the
papers' recipe (TDANet Sec. 4.2, Tune-In's training section) and its ``doc`` says what it
means; the README's table of keys is rendered from them (:func:`config_reference`).
:func:`resolve_config` is the one place a config is checked: unknown keys, choices, ranges,
and the combinations that do not go together. Values keep the form the YAML gave them (a
learning rate written ``5e-4`` stays that), so ``RUN_DIR/config.yaml`` records exactly what
was asked for with every default filled in.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional, Union

from ..core import atomic
from ..core.errors import CocktailError

Range = list[float]  # [low, high], drawn uniformly

# training.compile, training.cuda_graph and training.precision: "auto" lets the trainer decide
# for the device it runs on (resolve_fast_path); any other value is the user's decision.
AUTO = "auto"
FAST_PATH_KEYS = ("compile", "cuda_graph")


def _key(default: Any, doc: str, *, choices: tuple = (), positive: bool = False) -> Any:
    """A config key: its default, what it means, the values it may take (``choices``), and
    whether it must be a positive integer. Mutable defaults are copied per instance."""
    meta = {"doc": doc, "choices": choices, "positive": positive}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


class _Section:
    """What both sections share: reading one from a mapping and writing it back as one. Keys
    are read as attributes (``t.lr``); the resolved dict that ``to_dict`` returns is the
    place to index by name."""

    NAME: ClassVar[str]
    SUMMARY: ClassVar[str]
    ALIASES: ClassVar[dict[str, str]] = {}

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config"):
        """The section from a config's mapping (missing keys take their defaults); raises a
        one-line error naming unknown keys and ``source``."""
        values = dict(values)
        for old, new in cls.ALIASES.items():
            if old in values:
                value = values.pop(old)
                values.setdefault(new, value)
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise CocktailError(f"{source}: unknown {cls.NAME} key(s) {', '.join(unknown)}; "
                                f"valid: {', '.join(sorted(known))}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The section as ``RUN_DIR/config.yaml`` records it, keys in field order."""
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(self)}


@dataclass
class TrainingConfig(_Section):
    """The ``training:`` section: optimizer, schedules, precision, checkpoints, logging."""

    NAME: ClassVar[str] = "training"
    SUMMARY: ClassVar[str] = "the optimizer, lr schedule and early stopping, precision, checkpoints and logs"
    ALIASES: ClassVar[dict[str, str]] = {"early_stop_epochs": "early_stop_patience_epochs",
                                         "clip_grad_norm": "grad_clip_norm"}

    optimizer: str = _key("adam", "The optimizer.", choices=("adam", "adamw", "sgd"))
    lr: float = _key(1e-3, "Learning rate (the schedule's starting point).")
    weight_decay: float = _key(0.0, "Weight decay.")
    betas: Range = _key([0.9, 0.999], "Adam/AdamW only: the moments' decay rates.")
    momentum: float = _key(0.9, "SGD only.")
    lr_schedule: Optional[dict[str, Any]] = _key(
        {"type": "plateau", "factor": 0.5, "patience_epochs": 15},
        "`plateau`: multiply the lr by `factor` after `patience_epochs` validations without a new best "
        "(optional `min_lr`); `step`: multiply by `factor` every `every_epochs` epochs; `cosine`: per step, "
        "from `lr` down to `min_lr` (default 0) over `total_steps` along half a cosine, after `warmup_steps` "
        "(default 0) of linear rise; `none` (or null): constant.")
    early_stop_patience_epochs: Optional[int] = _key(
        30, "Validations without a new best before training stops; null: never. Alias `early_stop_epochs`.")
    grad_clip_norm: Optional[float] = _key(
        5.0, "Clip the L2 norm of all gradients to this; null: no clipping. Alias `clip_grad_norm`.")
    loss: str = _key("si_snr", "Negative SI-SNR or SNR under u-PIT, for a model without a loss hook.",
                     choices=("si_snr", "snr"))
    pit: bool = _key(True, "False: outputs are scored in reference order, not the best permutation.")
    high_band_weight: float = _key(
        0.0, "Adds this weight x the negative SI-SNR of the outputs' high band to the default loss: "
             "SI-SNR alone lets a model drop the quiet top band of speech (a muffled voice).")
    high_band_from: float = _key(0.5, "Where the high band starts, a fraction of the Nyquist frequency, in (0, 1).")
    batch_size: int = _key(4, "The global batch: under torchrun each of W processes takes batch_size / W "
                              "items of it.", positive=True)
    epochs: int = _key(500, "At most this many epochs.", positive=True)
    max_steps_per_epoch: Optional[int] = _key(None, "Cap on an epoch's batches (e.g. to set an epoch length).")
    precision: str = _key(
        AUTO, "`tf32`: fp32 with TensorFloat-32 matrix products; `bf16`/`fp16`: autocast, fp16 adds a GradScaler. "
              "`auto`: bf16 for TDANet on a CUDA GPU with bf16 units (1.5x fp32's speed at the same quality, "
              "measured: README, Training), else fp32.",
        choices=(AUTO, "fp32", "tf32", "bf16", "fp16"))
    cuda_graph: Union[bool, str] = _key(
        AUTO, "Capture the whole step (forward, backward, clipping, optimizer) once as a CUDA graph and replay it: "
              "a launch-bound model runs 2-3x faster. Needs CUDA, one process, fixed-length items "
              "(data.segment_seconds), no fp16, no activation_checkpointing. `auto`: on when the run meets all "
              "of that, else off (the log says why); `true` refuses a run that does not; a capture that fails "
              "under `auto` warns and trains eagerly.")
    activation_checkpointing: bool = _key(
        False, "Recompute each block's activations in backward instead of keeping them: 0.28-0.32x the memory, "
               "1.1x the time (models with set_activation_checkpointing: Tune-In, for 16-s enrollments). "
               "Not with cuda_graph.")
    compile: Union[bool, str] = _key(
        AUTO, "torch.compile the model in place (a model may narrow it, e.g. TDANet compiles only its shared "
              "block). `auto`: on CUDA only. If compiling or the first compiled step fails, one warning names "
              "the error and training goes on without it (with the CUDA graph still, when that is on).")
    seed: int = _key(0, "Seeds the weights, dropout, the epochs' order and (by default) the training mixtures.")
    deterministic: bool = _key(False, "torch.use_deterministic_algorithms (bitwise GPU resumes).")
    num_workers: Optional[int] = _key(None, "DataLoader worker processes per training process; null: 4, or the "
                                            "CPU cores this process may use when fewer.")
    checkpoint_every: int = _key(500, "Steps between checkpoints; one is also written at every epoch end.",
                                 positive=True)
    time_budget_s: Optional[float] = _key(
        None, "Stop (checkpointed, resumable) once the training steps have taken this many seconds in all, "
              "validation not counted; the partial epoch is validated.")
    keep_checkpoints: int = _key(3, "Newest checkpoints kept (best.safetensors is separate).", positive=True)
    valid_every: int = _key(1, "Epochs between validations.", positive=True)
    valid_batch_size: Optional[int] = _key(None, "Null: batch_size when validation items have a fixed length, "
                                                 "else 1.")
    log_every: int = _key(50, "Steps per row of steps.csv and progress-bar update.", positive=True)
    shuffle: bool = _key(True, "Shuffle each epoch's order (drawn from seed and epoch).")
    stage: Optional[str] = _key(None, "Passed to the model's training_objective hook (e.g. Tune-In's stages).")
    objective: dict[str, Any] = _key({}, "Free-form options for the model's training_objective hook.")
    init_from: Optional[str] = _key(None, "A model .safetensors to start from (e.g. the previous stage).")
    ddp_find_unused_parameters: bool = _key(False, "DDP's find_unused_parameters (for models that leave "
                                                   "parameters out of some steps).")

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> "TrainingConfig":
        config = super().from_dict(values, source)
        schedule = config.lr_schedule
        # A plateau schedule fills in its defaults; another type takes only the keys it was given.
        if isinstance(schedule, dict) and schedule.get("type", "plateau") == "plateau":
            config.lr_schedule = {**cls().lr_schedule, **schedule}
        elif isinstance(schedule, dict):
            config.lr_schedule = dict(schedule)
        return config


@dataclass
class DataConfig(_Section):
    """The ``data:`` section: where mixtures come from and how they are drawn. The sample rate
    is the model's."""

    NAME: ClassVar[str] = "data"
    SUMMARY: ClassVar[str] = "where mixtures come from and how they are drawn (at the model's sample rate)"

    dataset: Optional[str] = _key(None, "A name, for the record (wsj0-2mix, lrs2-2mix, ...).")
    dynamic_mixing: Optional[bool] = _key(None, "Draw new mixtures every epoch from `corpus`; null: true when only "
                                                "corpus is set, false when only train_set is.")
    corpus: Any = _key(None, "Speaker-labelled corpus folder (manifest.csv or a LibriSpeech tree), or a list of "
                             "them mixed together (e.g. real and TTS speech).")
    corpus_weights: Optional[list[float]] = _key(None, "With a list of corpora: the probability that a talker comes "
                                                       "from each.")
    min_bandwidth: Optional[float] = _key(
        None, "Leave out utterances narrower than this fraction of the Nyquist frequency (manifest bandwidth_hz; "
              "e.g. 0.8: 6.4 kHz at 16 kHz).")
    train_set: Optional[str] = _key(None, "Fixed mixture set (wsj0-2mix / LibriMix / WHAM! / LRS2-2Mix layout).")
    valid_set: Optional[str] = _key(None, "Fixed validation set; required with a fixed train_set, else the "
                                          "corpus's valid split.")
    train_split: str = _key("train", "Split of the corpus or set to train on.")
    valid_split: str = _key("valid", "Split to validate on.")
    num_speakers: Optional[int] = _key(None, "Talkers per mixture; null: the model's num_sources.")
    segment_seconds: Optional[float] = _key(4.0, "Training items are cut (or padded) to this length.")
    valid_segment_seconds: Optional[float] = _key(None, "Null: whole validation mixtures.")
    valid_max_items: Optional[int] = _key(None, "Validate on the first N mixtures only.")
    mode: str = _key("min", "wsj0-2mix `min`/`max` (fixed sets; dynamic mixing without a segment).")
    sample_rate: Optional[int] = _key(None, "Must equal the model's when given.")
    sir: Optional[Range] = _key(None, "Relative talker level range, dB; null: mix_snr_db, else [0, 5].")
    mix_snr_db: Optional[Range] = _key(None, "The dataset's talker level range, as its papers state it.")
    level: Range = _key([-25.0, -25.0], "Range of the mixtures' common reference active level, dBFS.")
    noise: Any = _key(None, "A folder of noise recordings added to the mixtures (e.g. cocktail corpus noise).")
    snr: Range = _key([-6.0, 3.0], "Speech-to-noise range, dB.")
    music: Any = _key(None, "A folder of music added to the mixtures.")
    smr: Range = _key([-5.0, 5.0], "Speech-to-music range, dB.")
    music_as_source: bool = _key(False, "Make the music a separation target instead of interference.")
    speed: Optional[Range] = _key(None, "Range of speed factors, e.g. [0.95, 1.05].")
    rooms: Optional[str] = _key(None, "Room bank folder (cocktail corpus rooms): reverberant mixtures, early "
                                      "images as targets.")
    reverb_probability: float = _key(1.0, "With rooms: the share of mixtures put in a room (the rest stay dry).")
    eq: Optional[dict[str, Any]] = _key(
        None, "Dynamic mixing, training mixtures: random EQ of each talker's recording, which the target keeps. "
              "`{probability, bands, gain_db}`: a talker, with `probability`, gets `bands` biquads in series "
              "(low shelf, peaking or high shelf; 80 Hz to 0.8 x Nyquist, log-uniform), gains uniform within "
              "+-`gain_db`. Keys left out: `{probability: 0.5, bands: 3, gain_db: 6}`; null: off.")
    band_limit: Optional[dict[str, Any]] = _key(
        None, "Dynamic mixing, training mixtures: low-pass a mixture's talkers, noise and music alike (one "
              "channel), so the targets carry the input's band. `{probability, cutoff_hz}`: with `probability`, "
              "a cutoff uniform in `cutoff_hz` [low, high] (below Nyquist; 6th-order elliptic, -60 dB from "
              "1.32 x the cutoff). Keys left out: `{probability: 0.5, cutoff_hz: [3400, 7000]}`; null: off.")
    codec: Optional[dict[str, Any]] = _key(
        None, "Dynamic mixing, training mixtures: a lossy codec round trip of the mixture; the targets stay "
              "clean. `{probability, codecs, kbps}`: with `probability`, one of `codecs` (`opus`, `mp3`) at whole "
              "kbps uniform in `kbps` (10 to 64); length and alignment kept. Keys left out: "
              "`{probability: 0.5, codecs: [opus, mp3], kbps: [12, 32]}`; null: off.")
    distinct_persons: bool = _key(True, "Also keep one underlying person out of a mixture twice.")
    epoch_length: Optional[int] = _key(None, "Dynamic mixing: mixtures per epoch; null: one per utterance.")
    enrollment_seconds: Optional[float] = _key(None, "Dynamic mixing: add an enrollment per talker (Tune-In "
                                                     "Offline; paper: 16).")
    seed: Optional[int] = _key(None, "Seed of the training mixtures; null: training.seed.")
    valid_seed: int = _key(0, "Seed of the validation mixtures (and crops): fixed, so that runs with other seeds, "
                              "and warm restarts of a run, validate on the same items.")
    splits: Optional[dict[str, int]] = _key(None, "The dataset's split sizes, for the record.")


def resolve_config(cfg: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Check ``cfg`` and fill every training/data default; the result is what runs and what
    ``RUN_DIR/config.yaml`` records. Errors name the key and ``source`` (the file)."""
    cfg = copy.deepcopy(cfg)
    model_cfg = cfg.get("model")
    if not isinstance(model_cfg, dict) or not model_cfg.get("architecture"):
        raise CocktailError(f"{source}: needs a model: section with an architecture entry")
    for section in ("training", "data"):
        if cfg.get(section) is None:
            cfg[section] = {}
        if not isinstance(cfg[section], dict):
            raise CocktailError(f"{source}: '{section}' must be a mapping of keys to values")
    training = TrainingConfig.from_dict(cfg["training"], source)
    data = DataConfig.from_dict(cfg["data"], source)
    _check(training, data, source)
    cfg["training"], cfg["data"] = training.to_dict(), data.to_dict()
    return cfg


def _check(t: TrainingConfig, d: DataConfig, source: str) -> None:
    """Every check of a config's values (fills num_workers and a null lr_schedule)."""
    keys = dataclasses.fields(TrainingConfig)
    for f in keys:
        choices = f.metadata["choices"]
        value = getattr(t, f.name)
        if choices and value not in choices:
            raise CocktailError(f"{source}: training.{f.name} must be one of {', '.join(choices)}, "
                                f"got {value!r}")
    for name in FAST_PATH_KEYS:
        value = getattr(t, name)
        if not (isinstance(value, bool) or value == AUTO):
            raise CocktailError(f"{source}: training.{name} must be true, false or auto, got {value!r}")
    obstacle = cuda_graph_obstacle(t, d)
    if t.cuda_graph is True and obstacle:
        raise CocktailError(f"{source}: {obstacle}")
    sched = t.lr_schedule or {"type": "none"}
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
    t.lr_schedule = sched
    if not 0.0 < float(t.high_band_from) < 1.0 or float(t.high_band_weight) < 0:
        raise CocktailError(f"{source}: training.high_band_from must lie in (0, 1) (a fraction of the Nyquist "
                            f"frequency) and training.high_band_weight be 0 or more")
    for f in keys:
        value = getattr(t, f.name)
        if f.metadata["positive"] and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            hint = " (the paper leaves it open: set it for your hardware, e.g. --set training.batch_size=4)" \
                if f.name == "batch_size" and value is None else ""
            raise CocktailError(f"{source}: training.{f.name} must be a positive integer, got {value!r}{hint}")
    if t.num_workers is None:
        t.num_workers = default_num_workers()
    if int(t.num_workers) < 0:
        raise CocktailError(f"{source}: training.num_workers must be 0 or more")
    if not isinstance(t.objective, dict):
        raise CocktailError(f"{source}: training.objective must be a mapping")
    _check_channel_effects(d, source)


def _check_channel_effects(d: DataConfig, source: str) -> None:
    """Check data.eq, data.band_limit and data.codec, and fill in the keys a mapping left out
    (so config.yaml records every value used)."""
    from ..data.channel_effects import BandLimitSettings, CodecSettings, EqSettings

    for name, settings in (("eq", EqSettings), ("band_limit", BandLimitSettings), ("codec", CodecSettings)):
        try:
            parsed = settings.from_config(getattr(d, name), f"data.{name}")
        except CocktailError as err:
            raise CocktailError(f"{source}: {err}") from None
        setattr(d, name, parsed.to_config() if parsed is not None else None)


def cuda_graph_obstacle(t: TrainingConfig, d: DataConfig, device: Optional[str] = None,
                        processes: int = 1) -> Optional[str]:
    """Why this run cannot capture its step as a CUDA graph (a sentence naming the keys), or
    None. ``device`` (``"cpu"``, ``"cuda:0"``) and ``processes`` are the trainer's to give;
    without them only the config is judged."""
    if device is not None and not device.startswith("cuda"):
        return f"training.cuda_graph needs a CUDA device, not {device}"
    if processes > 1:
        return f"training.cuda_graph runs in one process, not under torchrun's {processes}"
    if t.precision == "fp16":
        return "training.cuda_graph does not go with fp16 (its GradScaler decides on the host); use bf16"
    if d.segment_seconds is None:
        return "training.cuda_graph replays fixed shapes; set data.segment_seconds"
    if t.activation_checkpointing:
        # Recomputation replays dropout's RNG state, which a captured graph would have to do on
        # the device; not tried yet, so refused rather than risked.
        return "training.activation_checkpointing does not go with training.cuda_graph yet; set one of them to false"
    return None


def resolve_fast_path(t: TrainingConfig, d: DataConfig, device: str, processes: int, source: str = "config",
                      model_precision: str = "fp32") -> str:
    """Set ``t.compile`` and ``t.cuda_graph`` to true or false and ``t.precision`` to a
    precision for a run on ``device`` with ``processes`` processes: ``auto`` becomes on where the
    run allows it (compile: on CUDA; the graph: no :func:`cuda_graph_obstacle`) and off otherwise,
    and the precision :func:`auto_precision` picks (``model_precision``: the model's
    ``auto_training_precision``); an explicit true the run cannot take is refused. Returns one
    line for the log: what the step uses, and why an ``auto`` is off."""
    precision_note = ""
    if t.precision == AUTO:
        t.precision, precision_note = auto_precision(device, model_precision)
    obstacle = cuda_graph_obstacle(t, d, device, processes)
    if t.cuda_graph is True and obstacle:
        raise CocktailError(f"{source}: {obstacle}")
    # Compiling pays on a GPU; on a CPU it needs a C++ toolchain and minutes for little gain.
    decisions = {"compile": (device.startswith("cuda"), f"not on CUDA but {device}"),
                 "cuda_graph": (obstacle is None, obstacle)}
    parts = []
    for name, label in (("compile", "torch.compile"), ("cuda_graph", "CUDA graph")):
        note = ""
        if getattr(t, name) == AUTO:
            allowed, why_not = decisions[name]
            setattr(t, name, allowed)
            note = " (auto)" if allowed else f" (auto: {why_not})"
        parts.append(f"{label} {'on' if getattr(t, name) else 'off'}{note}")
    parts.append(f"precision {t.precision}{precision_note}")
    return "training step: " + ", ".join(parts)


def auto_precision(device: str, model_precision: str = "fp32") -> tuple[str, str]:
    """``training.precision: auto`` on ``device``: the precision and the log's note on it.

    ``model_precision`` is what the model's class names for a CUDA GPU with bf16 units (its
    ``auto_training_precision`` attribute; fp32 when it names none), so that bf16 is taken only
    where its effect on quality was measured. TDANet names bf16: on one H200 it trains the
    default's config 1.5x as fast as fp32 (137 against 92 samples/s at 8 x 2 s), and 2500-step
    fine-tunes in bf16 and fp32 from the same weights scored alike on real and synthetic voices
    (README, "Training"). A CPU keeps fp32: bf16 training there is unmeasured, and without bf16
    units it is emulated and slower."""
    import torch

    if not device.startswith("cuda"):
        return "fp32", f" (auto: not on CUDA but {device})"
    if model_precision == "fp32":
        return "fp32", " (auto: this model's training in bf16 is unmeasured)"
    if not torch.cuda.is_bf16_supported(including_emulation=False):
        return "fp32", " (auto: this GPU has no bf16)"
    return model_precision, " (auto)"


def default_num_workers() -> int:
    """training.num_workers when a config names none: 4, or fewer on a machine with fewer cores
    (the DataLoader warns about more workers than the cores this process may run on)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return min(4, cores)


def write_config(path: Path, cfg: dict) -> None:
    """Write a resolved config as YAML, atomically (keys in the order they hold)."""
    import yaml

    atomic.write_text(path, yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None))


# --------------------------------------------------------------------------------------
# The README's table of keys
# --------------------------------------------------------------------------------------

README_START = "<!-- training-config: generated by python -m cocktailparty.train.config; do not edit -->"
README_END = "<!-- end of training-config -->"


def config_reference() -> str:
    """The README's tables of the ``training:`` and ``data:`` keys, rendered from the
    dataclasses (a test checks that the README holds exactly this)."""
    import yaml

    lines = [README_START]
    for cls in (TrainingConfig, DataConfig):
        lines += ["", f"The `{cls.NAME}:` section: {cls.SUMMARY}.", "",
                  "| key | default | meaning |", "| --- | --- | --- |"]
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            shown = yaml.safe_dump(default, default_flow_style=True, sort_keys=False, width=1000).strip().removesuffix("...").strip()
            doc = f.metadata["doc"]
            if f.metadata["choices"]:
                doc += " One of " + ", ".join(f"`{c}`" for c in f.metadata["choices"]) + "."
            if f.metadata["positive"]:
                doc += " A positive integer."
            lines.append(f"| `{f.name}` | `{shown}` | {doc.replace('|', '/')} |")
    lines += ["", README_END]
    return "\n".join(lines)


if __name__ == "__main__":
    print(config_reference())
