"""Paired comparison of two models scored on the same test set.

Two ``cocktail evaluate --out`` CSVs of the same mixtures differ mostly by how hard each
mixture is; the per-mixture difference removes that, so its 95% interval is often half the
width of either mean's. Prints, for B - A: both means over the mixtures they share, the mean
difference with its 95% interval (Student t, as ``cocktail evaluate`` gives a mean's), and on
how many mixtures B scored higher.

    cocktail evaluate --data data/test-real8k --model tdanet-real8k --out a.csv
    cocktail evaluate --data data/test-real8k --model runs/x/best.safetensors --out b.csv
    python benchmarks/paired.py a.csv b.csv                # SI-SNRi
    python benchmarks/paired.py a.csv b.csv --metric sdri
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from cocktailparty.eval.evaluate import mean_ci


@dataclass(frozen=True)
class Paired:
    """B - A over the ``n`` mixtures both files score."""

    n: int
    mean_a: float
    mean_b: float
    difference: float
    ci95: float
    b_better: int


def read_scores(path: Path, metric: str) -> dict[str, float]:
    """``{mixture id: score}`` of one evaluate CSV."""
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        if "id" not in columns or metric not in columns:
            raise SystemExit(f"{path}: needs the columns 'id' and {metric!r} (has: {', '.join(columns)})")
        return {row["id"]: float(row[metric]) for row in reader}


def compare(a: dict[str, float], b: dict[str, float]) -> Paired:
    """Paired statistics of ``b - a`` over their shared ids (at least two)."""
    shared = sorted(set(a) & set(b))
    if len(shared) < 2:
        raise SystemExit(f"the two files share {len(shared)} mixture ids; a paired comparison needs at least 2")
    diffs = [b[i] - a[i] for i in shared]
    difference = mean_ci(diffs)
    return Paired(n=len(shared), mean_a=statistics.fmean(a[i] for i in shared),
                  mean_b=statistics.fmean(b[i] for i in shared), difference=difference["mean"],
                  ci95=difference["ci95"], b_better=sum(d > 0 for d in diffs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path, help="evaluate CSV of model A")
    parser.add_argument("b", type=Path, help="evaluate CSV of model B, same test set")
    parser.add_argument("--metric", default="si_snri", help="column to compare (default si_snri)")
    args = parser.parse_args(argv)
    a, b = read_scores(args.a, args.metric), read_scores(args.b, args.metric)
    result = compare(a, b)
    unshared = len(set(a) ^ set(b))
    print(f"{args.metric}: A {result.mean_a:.2f}  B {result.mean_b:.2f}  B-A {result.difference:+.2f} "
          f"+- {result.ci95:.2f} (95%)  B higher on {result.b_better}/{result.n}"
          + (f"  ({unshared} mixtures in only one file left out)" if unshared else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
