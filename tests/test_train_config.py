"""The typed training/data config: its README table, its sections, and the hooks protocol."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from cocktailparty.core.errors import CocktailError
from cocktailparty.train.config import (README_END, README_START, DataConfig, TrainingConfig, config_reference,
                                        resolve_config)
from cocktailparty.train.hooks import ModelHooks, find_hooks, hook_names

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_lists_the_config_keys_as_the_dataclasses_define_them():
    text = README.read_text()
    start, end = text.index(README_START), text.index(README_END) + len(README_END)
    assert text[start:end] == config_reference(), \
        "README's training config table is stale: paste in the output of python -m cocktailparty.train.config"


def test_every_key_has_a_doc_and_the_resolved_sections_follow_the_fields():
    for cls in (TrainingConfig, DataConfig):
        for f in dataclasses.fields(cls):
            assert f.metadata["doc"].strip(), f"{cls.__name__}.{f.name} has no doc"
    cfg = resolve_config({"model": {"architecture": "tdanet"}, "data": {"corpus": "x"}})
    assert list(cfg["training"]) == [f.name for f in dataclasses.fields(TrainingConfig)]
    assert list(cfg["data"]) == [f.name for f in dataclasses.fields(DataConfig)]
    # A resolved section reads back into its dataclass unchanged.
    assert TrainingConfig(**cfg["training"]).to_dict() == cfg["training"]
    assert DataConfig(**cfg["data"]).corpus == "x"


def test_sections_read_keys_as_attributes_only():
    t = TrainingConfig.from_dict({"clip_grad_norm": 1.0})
    assert t.grad_clip_norm == 1.0
    # One way to read a section: by attribute. Indexing by name belongs to the resolved config
    # (a dict); a section refusing it keeps code from drifting back to two ways.
    with pytest.raises(TypeError):
        t["grad_clip_norm"]
    with pytest.raises(CocktailError, match="unknown data key"):
        DataConfig.from_dict({"segment": 2.0}, "x.yaml")
    # Mutable defaults are not shared between instances.
    a, b = TrainingConfig(), TrainingConfig()
    a.betas.append(1.0)
    assert b.betas == [0.9, 0.999]


def test_hooks_are_found_by_the_protocol_and_absent_ones_are_none():
    assert hook_names() == tuple(f.name for f in dataclasses.fields(ModelHooks))

    class Plain(torch.nn.Module):
        pass

    class WithDiagnostics(torch.nn.Module):
        def training_diagnostics(self):
            return {"gain": 2.0}

    plain = find_hooks(Plain())
    assert all(getattr(plain, name) is None for name in hook_names()) and plain.diagnostics() == {}
    assert find_hooks(WithDiagnostics()).diagnostics() == {"gain": 2.0}
