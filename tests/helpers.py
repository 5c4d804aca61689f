"""Plain helpers shared by test modules (fixtures live in conftest.py, toy models in toys.py).

Test modules import from here, never from each other or from conftest.py.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

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


def write_tone_corpus(root: Path, rate: int) -> Path:
    """A speaker corpus at ``root`` for training runs: three train and two valid speakers, two
    tone 'utterances' of 1 s each."""
    rows = []
    for index, (split, speaker) in enumerate([("train", "a"), ("train", "b"), ("train", "c"),
                                              ("valid", "v"), ("valid", "w")]):
        for u in range(2):
            rel = f"{split}/{speaker}/{speaker}-{u}.flac"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            t = np.arange(rate) / rate
            sf.write(str(root / rel), (0.2 * np.sin(2 * np.pi * (120 + 40 * index) * t + u)).astype(np.float32), rate)
            rows.append({"utterance_id": f"{speaker}-{u}", "path": rel, "speaker": speaker, "person": speaker,
                         "split": split, "sample_rate": rate})
    write_manifest(root, rows)
    return root
