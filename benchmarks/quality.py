"""Every model trained for the same GPU time on the same data, scored on one held-out set.

Our small-scale version of the papers' comparison tables (TDANet Table 2, Tune-In Table 1):
Conv-TasNet, DPRNN, TDANet, Tune-In Autopilot and Tune-In Online, each from its paper config,
all at 8 kHz (the rate of the DPRNN, Conv-TasNet and Tune-In papers; TDANet's windows are in
milliseconds, so it runs at 8 kHz unchanged), trained by ``cocktail train`` on dynamic
mixtures of one speaker-labelled corpus for ``--budget`` seconds of training steps each
(``training.time_budget_s``: validation not counted), the papers' recipe otherwise, batch
8 x 2 s. Each model's best-validation checkpoint is then scored with ``cocktail evaluate``
on a fixed test set of unseen speakers. The ranking is whatever we observe: at a small
budget, fast-converging models win, which says nothing about where they end up.

    python benchmarks/quality.py --corpus data/corpus --test-set data/test-2mix \\
        --budget 300 --out runs/quality [--models tdanet,dprnn] [--device cuda] [--cuda-graph]

Training and scoring may happen on different machines: ``--train-only`` on the GPU, then the
same command with ``--test-set`` where RUN_DIRs (best.safetensors, config.yaml, logs) were
copied; ``--train-only --stop-after SECONDS`` fits it into fixed-length slots (exit 75 until
every model's budget is spent). A RUN/test.json that already scored the whole test set (same
path) is reused.

Prints one table (params and MACs per second of audio at 8 kHz, the budget, training steps and
samples/s, best validation SI-SNRi, test SI-SNRi and SDRi with 95% intervals) and writes
``OUT/quality.json``. A model whose budget is spent is not retrained on a rerun (delete its
folder to retrain); one interrupted by a signal resumes where it stopped. Exits 1 if a model
fails to train or evaluate, or scores below 0 dB SI-SNRi.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from cocktailparty.train.engine import EXIT_SLOT_ENDED  # noqa: E402  (cocktail train --stop-after's status)

# name: (config, extra overrides)
MODELS = {
    "convtasnet": ("configs/convtasnet-wsj0.yaml", []),
    "dprnn": ("configs/dprnn-wsj0.yaml", []),
    "tdanet": ("configs/tdanet-lrs2.yaml", ["model.sample_rate=8000"]),
    "tunein-autopilot": ("configs/tunein-autopilot-wsj0.yaml", []),
    "tunein-online": ("configs/tunein-online-wsj0.yaml", []),
}
RATE = 8000


class SlotEnded(Exception):
    """--stop-after's time came while training the named model (saved; a rerun resumes it)."""


def train(name: str, args, out: Path) -> Path:
    config, extra = MODELS[name]
    run_dir = out / name
    common = [
        f"data.corpus={args.corpus}", "data.dynamic_mixing=true", "data.segment_seconds=2.0",
        f"data.sample_rate={RATE}", f"data.epoch_length={args.epoch_length}", "data.valid_max_items=64",
        "training.batch_size=8", f"training.num_workers={args.workers}", f"training.precision={args.precision}",
        f"training.time_budget_s={args.budget}", "training.epochs=100000", "training.early_stop_epochs=null",
        "training.log_every=50", "training.checkpoint_every=100000",
        # Stated, not left to the trainer's auto: the table reports how each model trained (from
        # its config.yaml), and compile time would come out of a model's budget.
        "training.compile=false",
        # Tune-In has not yet been captured as a graph on a GPU: it trains eagerly until it has.
        f"training.cuda_graph={'true' if args.cuda_graph and not name.startswith('tunein') else 'false'}",
    ]
    sets = [x for kv in common + extra for x in ("--set", kv)]
    done = run_dir / "budget-spent"  # best.safetensors alone exists from the first validation on
    if done.is_file():
        print(f"== {name}: already trained in {run_dir}", flush=True)
        return run_dir
    if (run_dir / "checkpoints").is_dir():  # interrupted before its budget was spent
        cmd = ["--resume", str(run_dir), "--set", f"training.time_budget_s={args.budget}"]
    else:
        cmd = ["--config", str(ROOT / config), "--out", str(run_dir), *sets]
    device = ["--device", args.device] if args.device else []
    if args.stop_at is not None:
        left = args.stop_at - time.monotonic()
        if left < 30:  # not worth a model's set-up
            raise SlotEnded(name)
        cmd += ["--stop-after", f"{left:.0f}"]
    print(f"== {name}: training for {args.budget:g} s", flush=True)
    # check: a run stopped by a signal exits 128 + signal and is resumed by the next invocation.
    result = subprocess.run([sys.executable, "-m", "cocktailparty.cli", "-q", "train", *device, *cmd], cwd=ROOT)
    if result.returncode == EXIT_SLOT_ENDED:
        raise SlotEnded(name)
    result.check_returncode()
    done.touch()
    return run_dir


def untrained(run_dir: Path):
    """The run's architecture from its config.yaml, for counting params and MACs (no weights
    needed: they may stay on the machine that trained them)."""
    from cocktailparty.core.config import load_config
    from cocktailparty.models import build_model

    model_cfg = dict(load_config(run_dir / "config.yaml")["model"])
    return build_model(model_cfg.pop("architecture"), **model_cfg)


def scores(run_dir: Path, args) -> dict:
    """``cocktail evaluate``'s summary for the best checkpoint on ``--test-set``. A complete
    earlier scoring of the same test set (RUN/test.json) is reused, also one made elsewhere
    whose test set was built by the same command into the same path."""
    from cocktailparty.data.mixture_datasets import open_mixture_dataset
    from cocktailparty.eval.evaluate import evaluate

    cached = run_dir / "test.json"
    if cached.is_file() and args.limit is None:
        previous = json.loads(cached.read_text())
        size = len(open_mixture_dataset(args.test_set, split="test").ids)
        summary = previous.get("summary") or {}
        if previous.get("data") == str(Path(args.test_set).resolve()) and summary.get("si_snri", {}).get("n") == size:
            return summary
    return evaluate(str(run_dir / "best.safetensors"), args.test_set, run_dir / "test.csv", device=args.device,
                    limit=args.limit, progress=False)


def _rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def steps_and_speed(run_dir: Path) -> tuple[int, float]:
    """Steps trained (log.csv) and the median samples/s of steps.csv's windows after the
    first (which holds the set-up and compilation)."""
    epochs = _rows(run_dir / "log.csv")
    speeds = sorted(float(r["samples_per_s"]) for r in _rows(run_dir / "steps.csv")[1:] if r.get("samples_per_s"))
    return (int(epochs[-1]["step"]) if epochs else 0), (speeds[len(speeds) // 2] if speeds else float("nan"))


def best_valid(run_dir: Path) -> float:
    return max((float(r["valid_si_snri"]) for r in _rows(run_dir / "log.csv") if r["valid_si_snri"]),
               default=float("nan"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", required=True, help="speaker-labelled corpus (cocktail corpus build)")
    p.add_argument("--test-set", help="fixed two-talker test set of unseen speakers (cocktail mix)")
    p.add_argument("--train-only", action="store_true",
                   help="train (or resume) and stop: score later, e.g. on another machine, by a rerun")
    p.add_argument("--out", default="runs/quality")
    p.add_argument("--budget", type=float, default=300.0, help="seconds of training steps per model")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of " + ",".join(MODELS))
    p.add_argument("--device", default=None)
    p.add_argument("--precision", default="tf32", choices=("fp32", "tf32", "bf16"))
    p.add_argument("--cuda-graph", action="store_true", help="capture training steps as CUDA graphs where possible")
    p.add_argument("--epoch-length", type=int, default=2000, help="mixtures per epoch (one validation each)")
    p.add_argument("--workers", type=int, default=6)
    p.add_argument("--limit", type=int, help="score the first N test mixtures only")
    p.add_argument("--stop-after", type=float, metavar="SECONDS",
                   help="with --train-only: end this slot after SECONDS (each model's training saved and "
                   "resumable; cocktail train --stop-after) and exit 75; the same command continues")
    args = p.parse_args(argv)
    args.stop_at = None if args.stop_after is None else time.monotonic() + args.stop_after

    import torch

    from cocktailparty.core.config import load_config
    from cocktailparty.eval.macs import count_macs, count_parameters

    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        p.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    if not args.train_only and not args.test_set:
        p.error("--test-set is required unless --train-only")
    if args.stop_after is not None and not args.train_only:
        p.error("--stop-after needs --train-only (a slot ends training; scoring comes after)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.train_only:
        failed = []
        for name in names:
            try:
                train(name, args, out)
            except SlotEnded as slot:
                print(f"--stop-after: the slot ended while training {slot}; run the same command to continue",
                      file=sys.stderr)
                return EXIT_SLOT_ENDED
            except subprocess.CalledProcessError as err:
                print(f"{name}: failed: {err}", file=sys.stderr)
                failed.append(name)
        return 1 if failed else 0
    rows, failed = [], []
    for name in names:
        try:
            run_dir = train(name, args, out)
            summary = scores(run_dir, args)
            model = untrained(run_dir)
            steps, speed = steps_and_speed(run_dir)
            trained = load_config(run_dir / "config.yaml")["training"]
            step_kind = trained["precision"] + ("+graph" if trained.get("cuda_graph") else "")
            rows.append({"model": name, "params_m": count_parameters(model) / 1e6,
                         "gmacs_per_s": count_macs(model, 1.0) / 1e9, "budget_s": trained["time_budget_s"],
                         "step_kind": step_kind, "steps": steps, "samples_per_s": speed,
                         "valid_si_snri": best_valid(run_dir), "si_snri": summary["si_snri"],
                         "sdri": summary["sdri"]})
        except Exception as err:  # a failed run (CalledProcessError) must not hide the others
            print(f"{name}: failed: {err}", file=sys.stderr)
            failed.append(name)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    rows.sort(key=lambda r: -r["si_snri"]["mean"])
    print(f"\nEach model trained for 'budget' seconds of training steps (validation not counted), batch 8 x 2 s "
          f"at {RATE} Hz; test: {args.test_set}")
    print(f"{'model':18} {'params':>8} {'GMACs/s':>8} {'budget':>6} {'step':>10} {'steps':>6} {'smp/s':>6} "
          f"{'valid':>6} {'SI-SNRi (dB)':>14} {'SDRi (dB)':>14}")
    for r in rows:
        si, sd = r["si_snri"], r["sdri"]
        print(f"{r['model']:18} {r['params_m']:7.3f}M {r['gmacs_per_s']:8.2f} {r['budget_s']:6g} {r['step_kind']:>10} "
              f"{r['steps']:6d} {r['samples_per_s']:6.1f} {r['valid_si_snri']:6.2f} "
              f"{si['mean']:7.2f} ± {si['ci95']:4.2f} {sd['mean']:7.2f} ± {sd['ci95']:4.2f}")
    (out / "quality.json").write_text(json.dumps({"rows": rows, "failed": failed}, indent=1))
    below = [r["model"] for r in rows if r["si_snri"]["mean"] < 0]
    if failed or below:
        print(f"FAILED: {', '.join(failed)}" if failed else f"below 0 dB: {', '.join(below)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
