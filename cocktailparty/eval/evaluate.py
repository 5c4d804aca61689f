"""``cocktail evaluate``: a model's SI-SNRi and SDRi on a test set, per utterance and on average.

The model runs on each whole mixture at its own rate, and its raw output is scored, as the
papers score it (no rescaling, no chunking). One CSV row per mixture is appended and flushed
as soon as it is scored, so a run that is stopped resumes where it was: rows already in the
CSV are skipped. A JSON file beside the CSV records the model and data it belongs to (so a
resume never mixes two models' rows) and, at the end, the summary.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from pathlib import Path

import numpy as np
import torch

from ..core.checkpoint import DEFAULT_MODEL, load_model
from ..core.device import resolve_device
from ..core.errors import CocktailError
from ..core.progress import Bar
from ..data.mixture_datasets import open_mixture_dataset
from .metrics.utterance import utterance_scores

log = logging.getLogger("cocktailparty")

SUMMARY_METRICS = ("si_snri", "sdri", "si_snr", "sdr", "pesq", "stoi", "high_band_si_snri")


def evaluate(
    model_spec: str | None,
    data: str | os.PathLike,
    out_csv: str | os.PathLike,
    device: str | None = None,
    pesq: bool = False,
    stoi: bool = False,
    limit: int | None = None,
    progress: bool = True,
    split: str | None = "test",
    high_band: bool = False,
) -> dict:
    """Score ``model_spec`` on the fixed mixture set at ``data``; returns the summary.

    ``data`` may be a split folder itself (``mix/``, ``s1/``, ...) or a corpus root, from
    which ``split`` is taken.

    The summary maps each metric to ``{"mean", "ci95", "n"}``: the mean over mixtures (each
    mixture's score is the mean over its sources) and the half-width of its 95% confidence
    interval (Student t).
    """
    out_csv = Path(out_csv)
    if _identity_path(out_csv) == out_csv:
        raise CocktailError(f"--out {out_csv}: give the per-utterance CSV a .csv name; the summary is "
                            f"written beside it as {out_csv.stem}.json")
    device = resolve_device(device)
    model = load_model(model_spec, device)
    rate = model.config.sample_rate
    dataset = open_mixture_dataset(data, split=split, sample_rate=rate)
    if dataset.num_sources != model.config.num_sources:
        raise CocktailError(
            f"{data}: has {dataset.num_sources} sources per mixture but the model separates "
            f"{model.config.num_sources}"
        )
    metrics = (["si_snr", "si_snri", "sdr", "sdri"] + (["pesq"] if pesq else []) + (["stoi"] if stoi else [])
               + (["high_band_si_snri"] if high_band else []))
    columns = ["id"] + metrics + [f"si_snri_s{i + 1}" for i in range(dataset.num_sources)]
    identity = {"model": str(model_spec or "default"), "data": str(Path(data).resolve()), "metrics": metrics}
    done = _resume(out_csv, identity, columns)
    indices = [i for i, item_id in enumerate(dataset.ids) if item_id not in done]
    if limit is not None:
        indices = [i for i in indices if i < limit]
    if done:
        log.info("%s: %d mixtures already scored; resuming with %d more", out_csv, len(done), len(indices))

    with open(out_csv, "a", newline="") as handle:
        writer = csv.writer(handle)
        if not done:
            writer.writerow(columns)
        for index in Bar(indices, enabled=progress, desc="evaluating", unit="mix"):
            item = dataset[index]
            with torch.inference_mode():
                estimates = model(item["mixture"].to(device).unsqueeze(0))[0].float().cpu()
            scores = utterance_scores(
                estimates, item["sources"], item["mixture"], sample_rate=rate,
                compute_pesq=pesq, compute_stoi=stoi, compute_high_band=high_band,
            )
            row = [item["id"]] + [f"{np.mean(scores[m]):.6f}" for m in metrics]
            row += [f"{v:.6f}" for v in scores["si_snri"]]
            writer.writerow(row)
            handle.flush()

    rows = _read_rows(out_csv)
    if limit is not None:
        wanted = set(dataset.ids[:limit])
        rows = [r for r in rows if r["id"] in wanted]
    summary = {m: mean_ci([float(r[m]) for r in rows]) for m in metrics}
    identity["summary"] = summary
    _identity_path(out_csv).write_text(json.dumps(identity, indent=2) + "\n")
    return summary


def _identity_path(out_csv: Path) -> Path:
    return out_csv.with_suffix(".json")


def _resume(out_csv: Path, identity: dict, columns: list[str]) -> set[str]:
    """Ids already scored in ``out_csv`` for the same model and data; empty for a new run."""
    meta_path = _identity_path(out_csv)
    if not out_csv.exists():
        out_csv.parent.mkdir(parents=True, exist_ok=True)
        meta_path.write_text(json.dumps(identity, indent=2) + "\n")
        return set()
    if not meta_path.exists():
        raise CocktailError(f"{out_csv}: exists, but without the {meta_path.name} that says which model and data "
                            f"it scored; choose another --out or delete it")
    previous = json.loads(meta_path.read_text())
    differences = [f"{key} {_shown(previous.get(key))} there, {_shown(identity[key])} now"
                   for key in ("model", "data", "metrics") if previous.get(key) != identity[key]]
    if differences:
        raise CocktailError(f"{out_csv}: holds results of another run ({'; '.join(differences)}); "
                            f"choose another --out or delete it")
    with open(out_csv, newline="") as handle:
        text = handle.read()
    if not text.endswith("\n"):
        # The run was stopped while writing a row: drop the partial line.
        text = text[: text.rfind("\n") + 1]
        out_csv.write_text(text)
    lines = text.splitlines()
    if not lines or lines[0].split(",") != columns:
        raise CocktailError(f"{out_csv}: its columns do not match this evaluation; choose another --out")
    return {r["id"] for r in _read_rows(out_csv)}


def _shown(value) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else repr(value)


def _read_rows(out_csv: Path) -> list[dict]:
    with open(out_csv, newline="") as handle:
        return list(csv.DictReader(handle))


def mean_ci(values: list[float]) -> dict:
    """Mean and 95% confidence half-width (Student t) of finite values."""
    from scipy import stats

    finite = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    n = int(finite.size)
    if n == 0:
        return {"mean": float("nan"), "ci95": float("nan"), "n": 0}
    mean = float(finite.mean())
    if n == 1:
        return {"mean": mean, "ci95": float("nan"), "n": 1}
    half_width = float(stats.t.ppf(0.975, n - 1) * finite.std(ddof=1) / math.sqrt(n))
    return {"mean": mean, "ci95": half_width, "n": n}


def format_summary(summary: dict) -> str:
    width = max(8, *(len(m) for m in summary))
    lines = [f"{'metric':<{width}} {'mean':>8} {'95% CI':>9} {'n':>6}"]
    for metric, s in summary.items():
        lines.append(f"{metric:<{width}} {s['mean']:8.2f} {'±' + format(s['ci95'], '.2f'):>9} {s['n']:6d}")
    return "\n".join(lines)


def default_out(model_spec: str | None) -> Path:
    """``results-NAME.csv``: NAME is ``--model``'s name, or its file's name without the extension
    (the bundled default's name without ``--model``), as ``cocktail evaluate --help`` says."""
    model = Path(model_spec or DEFAULT_MODEL)
    name = model.stem if model.suffix in (".safetensors", ".yaml", ".yml", ".onnx") else model.name
    return Path(f"results-{name}.csv")
