"""The checkpoint folder of a training run, and the optimizer and random-number state in it.

::

    RUN_DIR/checkpoints/step-00001234/   the newest ``training.keep_checkpoints`` checkpoints:
        model.safetensors                    the model (``cocktail separate --model`` reads it)
        train-state.safetensors              optimizer moments, RNG byte states, objective state
        train-state.json                     everything else + SHA-256 of the rest
    RUN_DIR/best.safetensors             the model with the best validation SI-SNRi

``train-state.json`` holds the data position (``epoch``, ``batch`` within it), the
scheduler, early-stopping and grad-scaler states, the optimizer's param groups, Python's and
NumPy's RNG states per process, running sums of the epoch's loss terms, and the SHA-256 of
both ``.safetensors`` files and of itself; ``train-state.safetensors`` holds the
optimizer's tensors (``optimizer/<param index>/<name>``), torch's CPU and CUDA RNG states
(``rng/<rank>/cpu``, ``rng/<rank>/cuda``) and the objective's state (``objective/<name>``).
Nothing is unpickled. A folder is written into a hidden one, synced, then renamed, so a
kill at any moment leaves either the whole checkpoint or none.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import logging
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..core import checkpoint
from ..core.errors import CocktailError
from ..models.sample_rate import with_sample_rate

log = logging.getLogger("cocktailparty")

STATE_FORMAT = "cocktailparty-train-state/1"
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_PREFIX = "step-"
MODEL_FILE = "model.safetensors"
STATE_TENSORS = "train-state.safetensors"
STATE_JSON = "train-state.json"
BEST_FILE = "best.safetensors"


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
        raise no_checkpoint_error(run_dir)
    for folder in folders:
        try:
            state, tensors, weights = read_checkpoint(folder)
            return folder, state, tensors, weights
        except CorruptCheckpoint as err:
            log.warning("%s; falling back to the previous checkpoint", err)
    raise CocktailError(f"{run_dir}: every checkpoint is corrupted ({len(folders)} tried); "
                        f"start again with: cocktail train --config {run_dir / 'config.yaml'} --out NEW_DIR")


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoint folders."""
    for old in checkpoint_dirs(run_dir)[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def remove_partial_writes(run_dir: Path) -> None:
    """Delete what a killed run left half-written: hidden checkpoint folders, the parts of
    atomic writes (best.safetensors, config.yaml)."""
    run_dir = Path(run_dir)
    for stale in (run_dir / CHECKPOINT_DIR).glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    for stale in run_dir.glob(".*.part"):
        stale.unlink(missing_ok=True)


def under(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``tensors`` whose names start with ``prefix``, the prefix removed
    (``under(t, "rng/0/")`` gives process 0's ``{"cpu": ..., "cuda": ...}``)."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def no_checkpoint_error(run_dir: Path) -> CocktailError:
    return CocktailError(
        f"{run_dir}: no checkpoint to resume from (expected {CHECKPOINT_DIR}/{CHECKPOINT_PREFIX}*/ "
        f"folders; the run may have stopped before its first one). Start it again with: "
        f"cocktail train --config {run_dir / 'config.yaml'} --out {run_dir}")


# Optimizer state <-> flat tensors + JSON (safetensors holds tensors only; nothing is pickled)


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


class StepSnapshot:
    """What training steps change, kept in memory to undo them: the weights and buffers of
    ``trainee`` (model and objective), ``optimizer``'s state and this process's random streams.
    Taken before a CUDA graph's warm-up steps and before a first compiled step, so that a run
    that captured, or fell back to eager, trains on exactly as if those steps had never run."""

    def __init__(self, trainee: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device):
        self.trainee, self.optimizer, self.device = trainee, optimizer, device
        self.module = {k: v.detach().clone() for k, v in trainee.state_dict(keep_vars=True).items()}
        self.optimizer_state = [{k: v.clone() for k, v in state.items() if isinstance(v, torch.Tensor)}
                                for state in optimizer.state.values()]
        self.rng = capture_rng(device)

    @torch.no_grad()
    def restore(self) -> None:
        for k, v in self.trainee.state_dict(keep_vars=True).items():
            v.detach().copy_(self.module[k])
        for i, state in enumerate(self.optimizer.state.values()):
            for k, v in state.items():
                if isinstance(v, torch.Tensor):
                    # State created since the snapshot starts from zero, as a fresh Adam's does (it
                    # stays allocated: a captured graph may already hold its address).
                    v.copy_(self.optimizer_state[i][k]) if i < len(self.optimizer_state) else v.zero_()
        restore_rng(*self.rng, self.device)


def load_init_weights(model: nn.Module, path: Path, architecture: str) -> None:
    """Load ``training.init_from`` (a model .safetensors of the same architecture) into ``model``."""
    meta = checkpoint.read_metadata(path)
    if meta["architecture"] != architecture:
        raise CocktailError(f"training.init_from {path}: a {meta['architecture']} model, but this run "
                            f"trains a {architecture}")
    rate, own_rate = meta["config"].get("sample_rate"), getattr(model.config, "sample_rate", None)
    if rate is not None and own_rate is not None and rate != own_rate:
        # A model of another rate: its filters resampled to this one (models/sample_rate.py).
        state = with_sample_rate(checkpoint.load(path), own_rate).state_dict()
        log.info("moved %s from %d Hz to %d Hz (encoder and decoder filters resampled)", path, rate, own_rate)
    else:
        state = load_file(str(path))
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CocktailError(f"training.init_from {path}: weights do not fit this model's config "
                            f"({str(err).splitlines()[0]})") from None
    log.info("starting from the weights of %s", path)
