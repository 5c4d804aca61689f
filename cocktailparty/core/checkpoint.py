"""Model files: safetensors weights with the architecture and its config as JSON metadata.

Loading one never executes code (no pickle). :func:`load_model` is how every command turns
the user's ``--model M`` into a module: a bundled pretrained name, an architecture name, a
config (a YAML file, or ``X`` for ``cocktailparty/configs/X.yaml``), or a checkpoint path.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable

import torch
from safetensors import SafetensorError
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..models import ARCHITECTURES, build_model, config_class
from . import atomic
from .config import CONFIG_DIR, load_config
from .errors import CocktailError

log = logging.getLogger("cocktailparty")

FORMAT = "cocktailparty/1"
PRETRAINED_DIR = Path(__file__).parent.parent / "pretrained"
DEFAULT_MODEL = "tdanet-rooms16k"
DEFAULT_ENROLLED_MODEL = "tunein-online-synth8k"  # extract / verify: needs a speaker space
# For telephone-band audio: trained at 8 kHz, it separates 8 kHz recordings better than the
# 16 kHz default does after upsampling them (its model card).
DEFAULT_NARROWBAND_MODEL = "tdanet-real8k"


def default_model_for(sample_rates: Iterable[int]) -> str:
    """The bundled default for inputs at ``sample_rates``: :data:`DEFAULT_NARROWBAND_MODEL`
    when every one is at 8 kHz or less, else :data:`DEFAULT_MODEL`."""
    rates = list(sample_rates)
    if rates and max(rates) <= 8000 and DEFAULT_NARROWBAND_MODEL in bundled_models():
        return DEFAULT_NARROWBAND_MODEL
    return DEFAULT_MODEL


def save(model: nn.Module, path: str | os.PathLike, metadata: dict[str, Any] | None = None,
         dtype: torch.dtype | None = None) -> Path:
    """Write ``model``'s weights and config atomically; ``metadata`` values are JSON-encoded.

    ``dtype`` stores the floating-point tensors in that type (the bundled models use float16:
    half the download, and :func:`load` casts them back into the model's float32)."""
    path = Path(path)
    meta = {
        "format": FORMAT,
        "architecture": model.architecture,
        "config": json.dumps(dataclasses.asdict(model.config)),
    }
    meta.update({key: json.dumps(value) for key, value in (metadata or {}).items()})
    # safetensors refuses shared or non-contiguous storage; clone keeps each tensor its own.
    tensors = {name: t.detach().cpu().contiguous().clone() for name, t in model.state_dict().items()}
    if dtype is not None:
        tensors = {name: t.to(dtype) if t.is_floating_point() else t for name, t in tensors.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.writing(path) as tmp:
        save_file(tensors, tmp, metadata=meta)
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's metadata with JSON values decoded; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise CocktailError(f"{path}: no such checkpoint file")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise CocktailError(f"{path}: not a readable safetensors checkpoint (corrupted or truncated: {err})") from None
    if raw.get("format") != FORMAT:
        raise CocktailError(f"{path}: a safetensors file, but not a cocktailparty model (no '{FORMAT}' metadata)")
    meta = {key: value for key, value in raw.items() if key in ("format", "architecture")}
    for key, value in raw.items():
        if key not in meta:
            try:
                meta[key] = json.loads(value)
            except ValueError:
                raise CocktailError(f"{path}: checkpoint metadata '{key}' is not valid JSON (the file is damaged)") from None
    for key in ("architecture", "config"):
        if key not in meta:
            raise CocktailError(f"{path}: checkpoint metadata has no '{key}' entry (the file is damaged)")
    return meta


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Build the model a checkpoint describes and load its weights (eval mode)."""
    meta = read_metadata(path)
    if not isinstance(meta["config"], dict):
        raise CocktailError(f"{path}: checkpoint metadata 'config' is not a mapping (the file is damaged)")
    try:
        model = build_model(meta["architecture"], **meta["config"])
    except CocktailError as err:
        # Say which file asked for the unknown architecture or config field.
        raise CocktailError(f"{path}: {err}") from None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            state = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise CocktailError(f"{path}: checkpoint data is corrupted or truncated ({err})") from None
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in state.items()}
    if expected != found:
        missing = expected.keys() - found.keys()
        unexpected = found.keys() - expected.keys()
        reshaped = [n for n in expected.keys() & found.keys() if expected[n] != found[n]]
        raise CocktailError(
            f"{path}: weights do not fit a {meta['architecture']} with this config "
            f"({len(missing)} missing, {len(unexpected)} unexpected, {len(reshaped)} wrongly shaped tensors)"
        )
    model.load_state_dict(state)
    return model.to(device).eval()


def copy_with_metadata(source: str | os.PathLike, out: str | os.PathLike, metadata: dict[str, Any],
                       dtype: torch.dtype | None = None) -> Path:
    """Copy the checkpoint ``source`` to ``out`` with ``metadata`` added to (or replacing
    entries of) its own; weights unchanged, or stored as ``dtype`` (see :func:`save`)."""
    meta = {k: v for k, v in read_metadata(source).items() if k not in ("format", "architecture", "config")}
    meta.update(metadata)
    return save(load(source), out, meta, dtype=dtype)


def checkpoint_file(spec: str) -> Path | None:
    """The safetensors file a ``--model`` names: a bundled model's or a checkpoint path;
    None for configs and architecture names."""
    if (PRETRAINED_DIR / f"{spec}.safetensors").is_file():
        return PRETRAINED_DIR / f"{spec}.safetensors"
    path = Path(spec)
    if path.suffix == ".safetensors" or (path.is_file() and path.suffix not in (".yaml", ".yml")):
        return path
    return None


def bundled_models() -> list[str]:
    """Names of the pretrained models shipped inside the package."""
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.safetensors"))


def load_model(spec: str | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """Resolve ``--model`` into an eval-mode module on ``device``.

    ``spec`` may be ``None`` (the bundled default), a bundled name, a checkpoint path, a
    config file path or the name of one in ``cocktailparty/configs/``, or an architecture
    name (its default config). The last two give untrained weights, with a warning.
    """
    if spec is None and DEFAULT_MODEL not in bundled_models():
        raise CocktailError(
            "no pretrained model is bundled with this version yet; pass --model with a checkpoint "
            "you trained (cocktail train ... writes RUN_DIR/best.safetensors)"
        )
    spec = spec or DEFAULT_MODEL
    weights = checkpoint_file(spec)
    if weights is not None:
        return load(weights, device)
    path = Path(spec)
    config_path = path if path.suffix in (".yaml", ".yml") else CONFIG_DIR / f"{spec}.yaml"
    if config_path.is_file():
        model_cfg = dict(load_config(config_path).get("model") or {})
        architecture = model_cfg.pop("architecture", None)
        if not architecture:
            raise CocktailError(f"{config_path}: has no model.architecture entry")
        model = build_model(architecture, **model_cfg)
    elif spec in ARCHITECTURES or _is_architecture(spec):
        model = build_model(spec)
    else:
        # A bundled model's recipe is a config of the same name: name each choice once.
        configs = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        choices = dict.fromkeys(bundled_models() + configs + sorted(ARCHITECTURES))
        raise CocktailError(
            f"model {spec!r} is not a bundled model, config, architecture or checkpoint file; "
            f"choose from: {', '.join(choices) or 'none'}"
        )
    log.warning("model %s: untrained weights (architecture only); pass a checkpoint to get real output", spec)
    return model.to(device).eval()


def _is_architecture(name: str) -> bool:
    try:
        config_class(name)
        return True
    except CocktailError:
        return False
