"""How a benchmark with targets reports them: ``ok`` / ``MISSED`` beside each figure, then
one ``MISSED: <what>`` line per missed target and exit status 1, or "all targets met" and 0.

Benchmarks run as scripts (``python benchmarks/NAME.py``), so they import this as ``targets``
from their own folder.
"""

from __future__ import annotations

from typing import Sequence


def mark(ok: bool) -> str:
    """The word printed beside a figure: ``ok`` or ``MISSED``."""
    return "ok" if ok else "MISSED"


def finish(missed: Sequence[str]) -> int:
    """Print the missed targets (or that all were met); returns the exit status."""
    for what in missed:
        print(f"MISSED: {what}")
    if missed:
        return 1
    print("all targets met")
    return 0
