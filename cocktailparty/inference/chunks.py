"""The one rule for cutting a long recording into chunks a model runs on one at a time.

Used by the :class:`~cocktailparty.inference.separate.Separator` (overlapping chunks that it
cross-fades and re-orders), by the serve page to count them, and by the steering-vector
scorer and Offline enrollment of :mod:`cocktailparty.eval.verification` (chunks side by side).
"""

from __future__ import annotations


def chunk_bounds(length: int, chunk: int | None, overlap: int = 0, minimum: int = 0) -> list[tuple[int, int]]:
    """``(start, stop)`` of each chunk of a ``length``-sample signal; ``[(0, length)]`` when it
    fits in one chunk (or ``chunk`` is None).

    Chunks are ``chunk`` samples long and start every ``chunk - overlap`` samples, until one
    reaches the end: no chunk starts inside the last ``overlap`` samples, which the one
    before already covers.

    Args:
        overlap: samples that consecutive chunks share. The Separator overlaps its chunks
            (2 s by default) to match the talkers' order from one chunk to the next and to
            cross-fade; the scorers use 0, side by side.
        minimum: a last chunk shorter than this is merged into the one before (which then
            runs longer than ``chunk``). The scorers pass 1 s: a steering vector of a few
            samples' tail would be noise. The Separator passes 0: its last chunk is always
            longer than the overlap, and its memory bound is ``chunk``.
    """
    if chunk is None or length <= chunk:
        return [(0, length)]
    bounds = [(s, min(s + chunk, length)) for s in range(0, max(length - overlap, 1), chunk - overlap)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < minimum:
        bounds[-2:] = [(bounds[-2][0], length)]
    return bounds
