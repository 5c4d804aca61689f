"""The one chunker gives each of its callers the chunks it always had."""

from cocktailparty.inference.chunks import chunk_bounds
from cocktailparty.inference.separate import Separator


def separator_starts(length, chunk, overlap):
    """The Separator's rule as it was written before the chunker was shared."""
    if chunk is None or length <= chunk:
        return [0]
    return list(range(0, max(length - overlap, 1), chunk - overlap))


def scorer_bounds(length, chunk, minimum):
    """The steering-vector scorer's rule as it was written before the chunker was shared."""
    if length <= chunk:
        return [(0, length)]
    bounds = [(s, min(s + chunk, length)) for s in range(0, length, chunk)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < minimum:
        bounds[-2:] = [(bounds[-2][0], length)]
    return bounds


def test_the_separators_chunks():
    for chunk, overlap in ((100, 20), (100, 50), (7, 3), (None, 0)):
        for length in range(1, 400):
            bounds = chunk_bounds(length, chunk, overlap)
            assert [s for s, _ in bounds] == separator_starts(length, chunk, overlap)
            assert all(stop == min(start + (chunk or length), length) for start, stop in bounds)


def test_the_scorers_chunks():
    for chunk, minimum in ((100, 30), (100, 0), (8, 8)):
        for length in range(1, 400):
            assert chunk_bounds(length, chunk, minimum=minimum) == scorer_bounds(length, chunk, minimum)


def test_separator_chunk_starts_uses_it():
    class Runner:
        sample_rate, num_sources = 100, 1

    separator = Separator(Runner(), chunk_seconds=1.0, overlap_seconds=0.2)
    assert separator.chunk_starts(250) == [0, 80, 160]
    assert separator.chunk_starts(100) == [0]
