"""What a model declares when it needs more than the mixture, or can tell talkers apart.

Training, separation, export, ONNX and verification read these declarations; none of them
asks which architecture it holds.

**Conditional separators.** A plain separator maps ``mixture (batch, time)`` to ``(batch,
C, time)``. A conditional one needs extra inputs as well, lists them in ``extra_inputs`` (a
tuple of :class:`ExtraInput`; absent or empty for a plain model) and takes each as a
keyword argument of ``forward``::

    model(mixture, **{i.name: value for i in model.extra_inputs})

Every extra input is audio at the model's rate, of its own length ``time_e``: ``(batch, C,
time_e)``, one recording per output, when ``per_source``, else ``(batch, time_e)``. The same
name is the key of a training batch that carries it (``data.enrollment_seconds`` adds
``"enrollment"``) and the name of the ONNX graph's extra input, whose batch and time axes
are dynamic. (Tune-In built in Offline mode declares ``enrollment``.)

**Talker-aware models** (:class:`TalkerAware`) know talkers by their voice: they give one
speaker vector per output, which ``cocktail verify`` compares with an enrollment's, and an
extractor that keeps one enrolled talker (``cocktail extract``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol, runtime_checkable

import torch
from torch import nn

from ..core.errors import CocktailError


@dataclass(frozen=True)
class ExtraInput:
    """One input a conditional separator needs besides the mixture.

    name: ``forward``'s keyword, the training batch's key, the ONNX graph's input name.
    per_source: ``(batch, C, time_e)`` (recording ``j`` goes with output ``j``) if True,
        else ``(batch, time_e)``; audio at the model's rate, any length.
    what: what it is, in words, for messages ("a recording of each target talker").
    """

    name: str
    per_source: bool
    what: str

    @property
    def shape(self) -> str:
        return "(batch, C, time_e)" if self.per_source else "(batch, time_e)"


def extra_inputs(model) -> tuple[ExtraInput, ...]:
    """The extra inputs ``model`` needs (empty for a plain separator)."""
    return tuple(getattr(model, "extra_inputs", ()))


def extra_arguments(model, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``forward``'s keyword arguments for ``model`` out of a training ``batch``; refuses, in
    words, a batch that lacks one (the data was not built for this model)."""
    missing = [i for i in extra_inputs(model) if i.name not in batch]
    if missing:
        raise CocktailError("the model needs " + "; ".join(f"'{i.name}' {i.shape}: {i.what}" for i in missing)
                            + ", which the data does not provide")
    return {i.name: batch[i.name] for i in extra_inputs(model)}


@runtime_checkable
class TalkerAware(Protocol):
    """A separator that knows talkers by their voice.

    ``require_speaker_space(what)``: raise :class:`CocktailError`, saying why in words, if this
    model as built cannot (e.g. it was built without the part that models speakers); ``what``
    names the task that needs it.

    ``speaker_vectors(mixture (batch, time)) -> (batch, C, D)``: one vector per output
    describing its talker, comparable by cosine with the vectors of another recording of
    the same talker (its enrollment).

    ``extractor(enrollment (time_e,), chunk_seconds) -> nn.Module``: a module ``(batch, time)
    -> (batch, 1, time)`` that keeps the enrolled talker, with ``config.sample_rate`` and
    ``config.num_sources == 1``, so that a :class:`~cocktailparty.inference.separate.Separator`
    runs it as any one-source model. The enrollment is at the model's rate, any length (long
    ones are read in chunks of ``chunk_seconds``).
    """

    def require_speaker_space(self, what: str) -> None: ...

    def speaker_vectors(self, mixture: torch.Tensor) -> torch.Tensor: ...

    def extractor(self, enrollment: torch.Tensor, chunk_seconds: float = 10.0) -> nn.Module: ...


def talker_architectures() -> list[str]:
    """The registered architectures whose models are :class:`TalkerAware`."""
    from .registry import ARCHITECTURES, _load_all

    _load_all()
    return sorted(name for name, (_, cls) in ARCHITECTURES.items()
                  if all(callable(getattr(cls, m, None)) for m in ("require_speaker_space", "speaker_vectors",
                                                                    "extractor")))


def require_talkers(model: nn.Module, what: str, name: str | None = None) -> None:
    """Refuse, in words, a model that cannot tell talkers apart, before any work is done.

    what: the task ("'extract'"). name: the model's name or path, for the message.
    """
    from ..core.checkpoint import DEFAULT_ENROLLED_MODEL

    label = f"model {name!r}" if name else "this model"
    check = getattr(model, "require_speaker_space", None)
    if not callable(check) or not callable(getattr(model, "speaker_vectors", None)):
        arch = getattr(model, "architecture", type(model).__name__)
        raise CocktailError(f"{what} needs a model that knows talkers by their voice "
                            f"(architectures: {', '.join(talker_architectures()) or 'none'}); {label} is a "
                            f"{arch}: pass --model with such a checkpoint, e.g. the bundled {DEFAULT_ENROLLED_MODEL}")
    try:
        check(what)
    except CocktailError as err:
        raise CocktailError(f"{label}: {err}") from None
