"""Tune-In's Table 1 costs against our configs, and Autopilot against our DPRNN.

    python benchmarks/tunein_table1.py            # MACs, params, and peak memory
    python benchmarks/tunein_table1.py --no-memory

Per 1 s at 8 kHz, batch 1. Parameters are those a separation call uses, as the paper counts
them (Offline leaves out the speaker space, which ran once on the enrollment beforehand: the
enrollment here is 16 s, the paper's length, embedded before counting). Targets: parameters
within 5% of Table 1, MACs within 15% of half its GFLOPs, and Autopilot at most 0.35x DPRNN's
MACs and 0.40x its peak memory. Exits 1 when one is missed.
"""

from __future__ import annotations

import argparse
import logging
import sys

import torch

from cocktailparty.core.checkpoint import load_model
from cocktailparty.eval import macs, memory_speed

RATE = 8000
ENROLLMENT_SECONDS = 16.0
# config -> (mode, Table 1 parameters, Table 1 GFLOPs per second of audio)
TABLE1 = {
    "tunein-autopilot-wsj0": ("autopilot", 2.3e6, 28.4),
    "tunein-offline-wsj0": ("offline", 2.4e6, 28.9),
    "tunein-online-wsj0": ("online", 3.2e6, 37.3),
}
MAX_MAC_RATIO, MAX_MEMORY_RATIO = 0.35, 0.40


def measure(spec: str, mode: str | None, memory: bool) -> dict:
    model = load_model(spec, "cpu")
    if mode == "offline":
        torch.manual_seed(0)
        with torch.inference_mode():
            model.enroll(torch.randn(1, model.config.num_sources, int(ENROLLMENT_SECONDS * RATE)) * 0.1)
    params = sum(p.numel() for p in (model.parameters_in_use(mode) if mode else model.parameters()))
    result = {"params": params, "macs": macs.count_macs(model, 1.0, RATE)}
    # The memory subprocess rebuilds the model from its config, without the stored enrollment,
    # so Offline's memory is not measured (the targets only concern Autopilot).
    result["memory"] = memory_speed.peak_memory_mb(model, 1.0, RATE) if memory and mode != "offline" else None
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # untrained weights on purpose: costs do not depend on them
    try:
        dprnn = measure("dprnn-wsj0", None, not args.no_memory)
        rows, misses = [], []
        for spec, (mode, paper_params, paper_gflops) in TABLE1.items():
            r = measure(spec, mode, not args.no_memory)
            gmacs, paper_gmacs = r["macs"] / 1e9, paper_gflops / 2
            verdict = []
            if abs(r["params"] / paper_params - 1) > 0.05:
                verdict.append("params")
            if abs(gmacs / paper_gmacs - 1) > 0.15:
                verdict.append("MACs")
            mac_ratio = r["macs"] / dprnn["macs"]
            mem_ratio = None if r["memory"] is None else r["memory"] / dprnn["memory"]
            if mode == "autopilot":
                if mac_ratio > MAX_MAC_RATIO:
                    verdict.append(f"MACs > {MAX_MAC_RATIO}x DPRNN")
                if mem_ratio is not None and mem_ratio > MAX_MEMORY_RATIO:
                    verdict.append(f"memory > {MAX_MEMORY_RATIO}x DPRNN")
            misses += [f"{spec}: {v}" for v in verdict]
            rows.append((spec, f"{r['params'] / 1e6:.3f}", f"{paper_params / 1e6:.1f}", f"{2 * gmacs:.1f}",
                         f"{paper_gflops:.1f}", f"{mac_ratio:.3f}",
                         "-" if mem_ratio is None else f"{r['memory']:.1f} ({mem_ratio:.2f}x)",
                         "MISS: " + ", ".join(verdict) if verdict else "ok"))
    finally:
        logging.disable(logging.NOTSET)
    header = ("config", "params M", "Table 1", "GFLOPs", "Table 1", "MACs / DPRNN", "peak MiB (/ DPRNN)", "target")
    widths = [max(len(row[i]) for row in rows + [header]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths)] + rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
    memory = "-" if dprnn["memory"] is None else f"{dprnn['memory']:.1f} MiB"
    print(f"\nDPRNN (dprnn-wsj0): {dprnn['params'] / 1e6:.3f} M params, {2 * dprnn['macs'] / 1e9:.1f} GFLOPs, "
          f"peak {memory}. 1 s at 8 kHz, batch 1; GFLOPs = 2 x MACs.")
    if misses:
        print("MISSED: " + "; ".join(misses))
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
