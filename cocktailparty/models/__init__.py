"""Separation models and the registry that maps architecture names to them.

Every model is a plain ``nn.Module`` built from a config dataclass. It takes a mixture
``(batch, time)`` of any length at ``config.sample_rate`` and returns the separated sources
``(batch, num_sources, time)``, same length. ``build_model("tdanet", num_sources=3)`` makes one.
"""

from .registry import ARCHITECTURES, build_model, config_class, register

__all__ = ["ARCHITECTURES", "build_model", "config_class", "register"]
