"""Names -> (config dataclass, model class). Model files register themselves on import."""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable

from torch import nn

from ..core.errors import CocktailError

# name -> (config dataclass, model class)
ARCHITECTURES: dict[str, tuple[type, type[nn.Module]]] = {}

# Modules that register architectures; imported on first lookup so that importing the
# registry stays cheap and model files can import shared parts without cycles.
_MODEL_MODULES = (
    "cocktailparty.models.tdanet",
    "cocktailparty.models.dprnn",
    "cocktailparty.models.convtasnet",
    "cocktailparty.models.tunein",
)


def register(name: str, config_cls: type) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: ``@register("tdanet", TDANetConfig)``."""
    if not dataclasses.is_dataclass(config_cls):
        raise TypeError(f"config for {name!r} must be a dataclass")

    def wrap(model_cls: type[nn.Module]) -> type[nn.Module]:
        model_cls.architecture = name  # written into checkpoints beside the config
        ARCHITECTURES[name] = (config_cls, model_cls)
        return model_cls

    return wrap


def _load_all() -> None:
    for module in _MODEL_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:  # a real missing dependency, not an absent model file
                raise


def config_class(name: str) -> type:
    _load_all()
    if name not in ARCHITECTURES:
        known = ", ".join(sorted(ARCHITECTURES)) or "none"
        raise CocktailError(f"unknown architecture {name!r}; known: {known}")
    return ARCHITECTURES[name][0]


def build_model(name: str, **config: Any) -> nn.Module:
    """Build architecture ``name`` with config fields overridden by ``config``."""
    cfg_cls = config_class(name)
    fields = {f.name for f in dataclasses.fields(cfg_cls)}
    unknown = sorted(set(config) - fields)
    if unknown:
        raise CocktailError(
            f"{name}: unknown config field(s) {', '.join(unknown)}; valid: {', '.join(sorted(fields))}"
        )
    return ARCHITECTURES[name][1](cfg_cls(**config))
