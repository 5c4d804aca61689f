"""The one reading of a ``--device`` value: which torch device a command runs on.

Every command (separate, extract, evaluate, profile, serve, train) and the Python API pass
the user's device name through :func:`resolve_device`, so a bad name or a CUDA request
without CUDA is the same one-line error everywhere.
"""

from __future__ import annotations

import torch

from .errors import CocktailError, no_cuda


def default_device() -> torch.device:
    """CUDA when torch finds it, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(name: str | torch.device | None, *, supported: tuple[str, ...] | None = None,
                   purpose: str = "", cuda_index: int | None = None) -> torch.device:
    """``name`` (``cpu``, ``cuda``, ``cuda:1``, a :class:`torch.device`) as a device; ``None``
    is :func:`default_device`. Raises a one-line :class:`CocktailError` for a name torch does
    not know and for CUDA where there is none.

    Args:
        supported: device types the caller can run on (cost profiling: only ``("cpu",
            "cuda")``, since it reads memory from /proc or the CUDA allocator); another type
            is refused naming ``purpose``. None accepts any type torch knows.
        purpose: what the caller does, for that message (``"profiling"``).
        cuda_index: the index a CUDA device without one gets (training: ``set_device`` and
            CUDA graphs need an index, and each process of a distributed run takes its local
            rank). None leaves ``cuda`` as it is (the current CUDA device).
    """
    if name is None:
        device = default_device()
    else:
        try:
            device = torch.device(name)
        except RuntimeError:
            raise CocktailError(f"--device {name!r}: not a device name (try cpu, cuda or cuda:N)") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise no_cuda(name)
        if supported is not None and device.type not in supported:
            raise CocktailError(f"--device {device}: {purpose or 'this command'} supports "
                                f"{' and '.join(supported)}")
    if device.type == "cuda" and device.index is None and cuda_index is not None:
        device = torch.device("cuda", cuda_index)
    return device
