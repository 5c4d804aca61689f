"""Errors that are meant for the person running the tool.

Anything raised as a :class:`CocktailError` is printed by the command line as one line
(``cocktail: error: <message>``) with no traceback: the message must say which file or
setting is wrong, what is wrong with it, and, where it helps, what to do instead.
"""


class CocktailError(Exception):
    """A problem with the user's input or environment, reported without a traceback."""


class AudioError(CocktailError):
    """A sound file that cannot be read, written or used."""


class DatasetLayoutError(CocktailError):
    """A corpus folder that does not have the layout its loader expects."""


def no_cuda(device) -> CocktailError:
    """Every command's one wording for ``--device cuda...`` where torch finds no CUDA."""
    return CocktailError(f"--device {device}: CUDA is not available (no GPU, or a torch build without CUDA); "
                         f"use --device cpu")


def describe_error(err: BaseException) -> str:
    """An exception as one short line for a message: its type and its message's first line,
    with the next line too when the first only introduces it (torch.compile's "backend='inductor'
    raised:")."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    text = " ".join(lines[:2]) if lines[0].endswith(":") and len(lines) > 1 else lines[0]
    return f"{type(err).__name__}: {text}"
