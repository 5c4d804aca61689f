"""The model and the input a cost is measured on: the device, the model loaded (or rebuilt at
another sample rate: kernels given in ms change size with it) and a random input of
``(batch, time)`` samples."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..core.errors import CocktailError


def model_sample_rate(model: nn.Module, sample_rate: int | None = None) -> int:
    """``sample_rate`` if given, else the model's ``config.sample_rate``."""
    rate = sample_rate or getattr(getattr(model, "config", None), "sample_rate", None)
    if not rate:
        raise CocktailError("the model has no config.sample_rate; give --sample-rate")
    return int(rate)


def example_input(model: nn.Module, seconds: float, sample_rate: int | None = None, batch: int = 1,
                  device: str | torch.device | None = None) -> torch.Tensor:
    """A reproducible noise mixture ``(batch, round(seconds * rate))`` on the model's device."""
    if seconds <= 0:
        raise CocktailError(f"--seconds must be positive, got {seconds}")
    samples = round(seconds * model_sample_rate(model, sample_rate))
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, samples, generator=generator)
    return x.to(device if device is not None else device_of(model))


def device_of(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def cpu_copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).cpu()


def at_rate(model: nn.Module, sample_rate: int | None) -> nn.Module:
    """The same architecture built for ``sample_rate`` (kernels in ms change size with it);
    cost does not depend on weights, so untrained ones do."""
    config = getattr(model, "config", None)
    if (sample_rate is None or not dataclasses.is_dataclass(config) or not hasattr(model, "architecture")
            or getattr(config, "sample_rate", sample_rate) == sample_rate):
        return model
    from ..models import build_model

    fields = dataclasses.asdict(config)
    fields["sample_rate"] = sample_rate
    rebuilt = build_model(model.architecture, **fields)
    return rebuilt.to(device_of(model))


def resolve_model(model: nn.Module | str | None, sample_rate: int | None, device: torch.device | str) -> nn.Module:
    if not isinstance(model, nn.Module):
        from ..core.checkpoint import load_model

        model = load_model(model, device)
    else:
        model = model.to(device)
    return at_rate(model, sample_rate).eval()
