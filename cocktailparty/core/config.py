"""YAML run configs: one file per paper setting in ``cocktailparty/configs/`` (package data, so
a config's name works in any install), overridable with ``key=value``.

A config has a ``model:`` section (``architecture`` plus the fields of that architecture's
config dataclass) and, for training, ``data:`` and ``training:`` sections.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any, Iterable

import yaml

from .errors import CocktailError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-3`` as a string (it wants ``1.0e-3``); learning rates are
    written the short way, so floats in exponent form without a dot are resolved too."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str):
    return yaml.load(text, Loader=_Loader)


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CocktailError(f"{path}: no such config file")
    try:
        cfg = parse_yaml(path.read_text())
    except yaml.YAMLError as err:
        raise CocktailError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(cfg, dict):
        raise CocktailError(f"{path}: expected a mapping with model/data/training sections")
    return cfg


def apply_overrides(cfg: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``cfg`` with ``"section.key=value"`` entries set (values parsed as YAML)."""
    cfg = copy.deepcopy(cfg)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise CocktailError(f"--set {item!r}: expected KEY=VALUE, e.g. training.lr=5e-4")
        node = cfg
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise CocktailError(f"--set {item!r}: {part} is not a section")
        node[leaf] = parse_yaml(raw)
    return cfg
