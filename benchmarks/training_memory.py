"""Training memory of Tune-In Offline, with and without activation checkpointing.

    python benchmarks/training_memory.py                       # CPU: batch 1, 4-s enrollments
    python benchmarks/training_memory.py --device cuda         # GPU: batch 8, the paper's 16 s
    python benchmarks/training_memory.py --batch 2 --enrollment-seconds 8

One training step (forward and backward of the paper-sized Offline model, its config in
configs/tunein-offline-wsj0.yaml) on 2-s mixtures at 8 kHz with one enrollment per talker:
the enrollments put 2 x E seconds per item through the generic and speaker blocks, against
the mixture's 2. Peak memory is the step's own: on CPU the rise of VmHWM in a fresh process
(glibc's mmap threshold fixed, as `cocktail profile` does), on CUDA max_memory_allocated.
Target: checkpointed peak at most 0.40x the plain one, with gradients equal (checked in
tests/test_tunein.py); where the plain step runs out of memory, that the checkpointed one
fits. Exits 1 when missed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml
from targets import finish  # benchmarks/targets.py, beside this script

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "tunein-offline-wsj0.yaml"
RATE, MIXTURE_SECONDS = 8000, 2.0
MAX_RATIO = 0.40
MIB = 2**20


def training_step(request: dict) -> dict:
    """Peak MiB and seconds of one step; ``{"oom": True}`` when the device runs out."""
    from cocktailparty.eval import memory_speed
    from cocktailparty.models import build_model

    device = torch.device(request["device"])
    torch.set_num_threads(request["threads"])
    cfg = yaml.safe_load(CONFIG.read_text())["model"]
    cfg.pop("architecture")
    torch.manual_seed(0)
    model = build_model("tunein", **cfg).to(device).train()
    model.set_activation_checkpointing(request["checkpointing"])
    batch, c = request["batch"], model.config.num_sources
    mixture = torch.randn(batch, int(MIXTURE_SECONDS * RATE), device=device)
    enrollment = torch.randn(batch, c, int(request["enrollment_seconds"] * RATE), device=device)

    def step(mix, enr):
        model(mix, enr).square().mean().backward()

    step(mixture[:1, :2000], enrollment[:1, :, :2000])  # warm-up: one-time allocations
    model.zero_grad(set_to_none=False)
    try:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
            start = time.perf_counter()
            step(mixture, enrollment)
            torch.cuda.synchronize(device)
            seconds = time.perf_counter() - start
            return {"peak_mib": (torch.cuda.max_memory_allocated(device) - before) / MIB, "seconds": seconds}
        reset = memory_speed._reset_high_water()
        before = memory_speed._read_status_kib("VmHWM")
        start = time.perf_counter()
        step(mixture, enrollment)
        seconds = time.perf_counter() - start
        peak = (memory_speed._read_status_kib("VmHWM") - before) / 1024
        return {"peak_mib": peak, "seconds": seconds, "reset": reset}
    except torch.OutOfMemoryError:
        return {"oom": True}


def measure(request: dict) -> dict:
    if request["device"] != "cpu":
        result = training_step(request)
        torch.cuda.empty_cache()
        return result
    from cocktailparty.eval.memory_speed import memory_worker_env

    # A fresh process per measurement: nothing allocated before hides the step's peak.
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(request)], env=memory_worker_env(),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"measurement failed: {(proc.stderr.strip().splitlines() or ['no message'])[-1]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    parser.add_argument("--batch", type=int, help="items per step (default: 1 on CPU, 8 on CUDA)")
    parser.add_argument("--enrollment-seconds", type=float, help="per talker (default: 4 on CPU, 16 on CUDA)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(training_step(json.loads(args.worker))))
        return 0
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    batch = args.batch or (8 if cuda else 1)
    seconds = args.enrollment_seconds or (16.0 if cuda else 4.0)
    results = {}
    for on in (False, True):
        request = {"device": args.device, "batch": batch, "enrollment_seconds": seconds, "threads": args.threads,
                   "checkpointing": on}
        results[on] = measure(request)
    plain, ckpt = results[False], results[True]
    misses = []
    if ckpt.get("oom"):
        misses.append("the checkpointed step runs out of memory")
    elif not plain.get("oom") and ckpt["peak_mib"] > MAX_RATIO * plain["peak_mib"]:
        misses.append(f"checkpointed peak above {MAX_RATIO}x the plain one")
    print(f"Tune-In Offline (configs/{CONFIG.name}), one training step on {args.device}: batch {batch} x "
          f"{MIXTURE_SECONDS:g}-s mixtures, {seconds:g}-s enrollment per talker")
    print("| activation checkpointing | peak MiB | step s |")
    print("|---|---|---|")
    for on in (False, True):
        r = results[on]
        cells = ("out of memory", "-") if r.get("oom") else (f"{r['peak_mib']:.0f}", f"{r['seconds']:.2f}")
        print(f"| {'on' if on else 'off'} | {cells[0]} | {cells[1]} |")
    if not plain.get("oom") and not ckpt.get("oom"):
        print(f"checkpointed / plain: memory {ckpt['peak_mib'] / plain['peak_mib']:.2f}x "
              f"(target <= {MAX_RATIO}x), time {ckpt['seconds'] / plain['seconds']:.2f}x")
    if any(r.get("reset") is False for r in results.values()):
        print("note: VmHWM could not be reset; peaks include the warm-up's")
    return finish(misses)


if __name__ == "__main__":
    sys.exit(main())
