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


# A TDANet small enough for CPU tests and quick GPU ones: every part of the network, few channels.
TINY_TDANET = dict(basis=9, bottleneck=8, channels=16, depth=2, unfolds=2, heads=2, ffn_channels=16, dropout=0.0,
                   drop_path=0.0)


def recording_graphs_allowed(model_class: type) -> tuple[type, list[bool]]:
    """A subclass of ``model_class`` whose forward appends ``graphs_allowed()`` (whether a model
    may replay its own CUDA graphs there) to the returned list at every call."""
    from cocktailparty.core.cuda_graphs import graphs_allowed

    allowed: list[bool] = []

    class Watched(model_class):
        def forward(self, x):
            allowed.append(graphs_allowed())
            return super().forward(x)

    return Watched, allowed


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
    sys.modules[spec.name] = module  # as an import would: dataclasses look their module up there
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


# --- Two toy talkers to tell apart by voice (test_voice_select, test_serve) ---

# Their pitches, on either side of the cutoff of voice_models()' band split.
LOW_PITCH, HIGH_PITCH = 220.0, 310.0


def voice(f0: float, seconds: float, seed: int, rate: int = 8000) -> np.ndarray:
    """``(time,)`` a talker as a sine at its own pitch with a syllable-rate envelope."""
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * f0 * t + seed) * (0.55 + 0.45 * np.sin(2 * np.pi * 3 * t + seed))).astype(
        np.float32)


def pitch_share(samples: np.ndarray, f0: float, rate: int) -> float:
    """How much of ``samples`` ``(time,)`` is a sine at ``f0``: the correlation with one, any phase."""
    t = np.arange(len(samples)) / rate
    return float(np.hypot(samples @ np.sin(2 * np.pi * f0 * t), samples @ np.cos(2 * np.pi * f0 * t)))


def voice_models(folder: Path) -> dict[str, str]:
    """Checkpoints under ``folder`` to separate, then select by voice: a band-split separator
    with its cutoff between the two pitches, and the known-steering model as a talker-aware
    embedder (its vector is a bump at the strongest pitch: same talker -> cosine ~1)."""
    from cocktailparty.core import checkpoint
    from cocktailparty.models import build_model
    from tests.toys import BandSplit, BandSplitConfig

    split = BandSplit(BandSplitConfig(cutoff_hz=(LOW_PITCH + HIGH_PITCH) / 2))
    return {"separator": str(checkpoint.save(split, folder / "split.safetensors")),
            "embedder": str(checkpoint.save(build_model("known-steering-test"), folder / "known.safetensors"))}
