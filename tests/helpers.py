"""Plain helpers shared by test modules (fixtures live in conftest.py, toy models in toys.py).

Test modules import from here, never from each other or from conftest.py.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

from cocktailparty.data.speaker_corpus import MANIFEST_COLUMNS


def write_manifest(root, rows: list[dict], corpus_info: dict | None = None) -> None:
    """Write a corpus's manifest.csv and corpus.json, as `cocktail corpus build` lays them out."""
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    (root / "corpus.json").write_text(json.dumps(corpus_info or {}), encoding="utf-8")


def load_benchmark(name: str):
    """Import ``benchmarks/<name>.py`` (a script, not a package module) for its tests."""
    folder = Path(__file__).resolve().parent.parent / "benchmarks"
    path = folder / f"{name}.py"
    if str(folder) not in sys.path:  # as when run as a script: its siblings (targets.py) import
        sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
