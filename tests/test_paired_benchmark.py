"""benchmarks/paired.py: B - A per mixture over the shared ids, against numpy's figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "paired.py"


def _write(path: Path, ids, values, metric: str = "si_snri") -> Path:
    lines = [f"id,si_snr,{metric}"] + [f"{i},0.0,{float(v)!r}" for i, v in zip(ids, values)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_paired_difference_matches_numpy_and_ignores_unshared_mixtures(tmp_path):
    rng = np.random.default_rng(3)
    a = rng.normal(8.0, 3.0, 40)
    b = a + 0.4 + rng.normal(0.0, 0.5, 40)
    ids = [f"m{k:03d}" for k in range(40)]
    first = _write(tmp_path / "a.csv", ids + ["only-a"], list(a) + [99.0])
    second = _write(tmp_path / "b.csv", list(reversed(ids)) + ["only-b"], list(reversed(b)) + [-99.0])
    result = subprocess.run([sys.executable, str(SCRIPT), str(first), str(second)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    d = b - a
    ci = stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size)  # as cocktail evaluate's intervals
    expected = (f"si_snri: A {a.mean():.2f}  B {b.mean():.2f}  B-A {d.mean():+.2f} +- {ci:.2f} (95%)  "
                f"B higher on {int((d > 0).sum())}/40  (2 mixtures in only one file left out)")
    assert result.stdout.strip() == expected


def test_paired_refuses_a_missing_column_and_disjoint_files(tmp_path):
    first = _write(tmp_path / "a.csv", ["x", "y"], [1.0, 2.0])
    other = _write(tmp_path / "b.csv", ["p", "q"], [1.0, 2.0])
    for args, message in (([str(first), str(first), "--metric", "sdri"], "needs the columns"),
                          ([str(first), str(other)], "share 0 mixture ids")):
        result = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)
        assert result.returncode != 0 and message in result.stderr
