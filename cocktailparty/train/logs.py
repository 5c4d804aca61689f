"""The run's CSV logs::

    RUN_DIR/log.csv      one row per epoch: epoch, step, lr, train loss terms, valid_si_snri,
                         best_valid_si_snri, elapsed_s
    RUN_DIR/steps.csv    one row every ``training.log_every`` steps: window means of the loss
                         terms, the model's diagnostics, samples/s

A resumed run drops the rows written after its checkpoint, so the logs read as if the run had
never stopped.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Optional


class CsvLog:
    """An append-only CSV whose header is fixed by its first row; rows are flushed at once."""

    def __init__(self, path: Path):
        self.path = path
        self.fields: Optional[list[str]] = None
        if path.is_file():
            with open(path, newline="") as f:
                header = next(csv.reader(f), None)
            self.fields = header or None

    def write(self, row: dict) -> None:
        if self.fields is None:
            self.fields = list(row)
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(self.fields)
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.fields, extrasaction="ignore").writerow(row)

    def truncate_after(self, step: int) -> None:
        """Drop rows written after ``step`` (by a run that was then killed)."""
        if not self.path.is_file():
            return
        with open(self.path, newline="") as f:
            rows = list(csv.DictReader(f))
        kept = [r for r in rows if r.get("step") and int(r["step"]) <= step]
        if len(kept) != len(rows):
            with open(self.path, "w", newline="") as f:
                writer = csv.DictWriter(f, self.fields or list(rows[0]))
                writer.writeheader()
                writer.writerows(kept)


def fmt(value: Any) -> Any:
    """A float to 6 significant digits (a CSV cell); anything else as it is."""
    return f"{value:.6g}" if isinstance(value, float) else value

