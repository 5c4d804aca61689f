"""onnxruntime vs PyTorch CPU forward time on the papers' full-size configs.

Exports each model (checked against PyTorch by export_onnx itself: it fails on a
mismatch), then times one forward pass of batch 1 at each length and thread count: the
median of ``--repeats`` runs after one warm-up, wall time. Exits non-zero if an export or
the agreement check fails.

    python benchmarks/onnx_speed.py                      # 1 s, 1 and 2 threads
    python benchmarks/onnx_speed.py --seconds 1 10
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cocktailparty.core.checkpoint import load_model
from cocktailparty.core.errors import CocktailError
from cocktailparty.inference.export import DEFAULT_TOLERANCE, export_onnx
from cocktailparty.inference.onnxrun import OnnxRunner

CONFIGS = ("tdanet-lrs2", "tdanet-large-lrs2", "dprnn-wsj0", "convtasnet-wsj0")


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up: allocator, oneDNN primitives, onnxruntime's first-run planning
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(CONFIGS))
    parser.add_argument("--seconds", nargs="+", type=float, default=[1.0])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    rows, failed = [], False
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            model = load_model(name, "cpu")
            path = Path(tmp) / f"{name}.onnx"
            try:
                start = time.perf_counter()
                export_onnx(model, path)  # raises on disagreement beyond DEFAULT_TOLERANCE x peak
                export_s = time.perf_counter() - start
            except CocktailError as err:
                print(f"{name}: export failed: {err}", file=sys.stderr)
                failed = True
                continue
            rate = model.config.sample_rate
            for seconds in args.seconds:
                x = np.random.default_rng(0).standard_normal((1, int(seconds * rate))).astype(np.float32)
                xt = torch.from_numpy(x)
                with torch.inference_mode():
                    reference = model(xt).numpy()
                for threads in args.threads:
                    torch.set_num_threads(threads)
                    runner = OnnxRunner(path, threads=threads)
                    diff = float(np.abs(runner.forward(x) - reference).max())
                    if diff > DEFAULT_TOLERANCE * max(1.0, float(np.abs(reference).max())):
                        print(f"{name}: onnxruntime differs by {diff:.3g} at {seconds} s", file=sys.stderr)
                        failed = True
                    with torch.inference_mode():
                        torch_ms = median_ms(lambda: model(xt), args.repeats)
                    ort_ms = median_ms(lambda: runner.forward(x), args.repeats)
                    rows.append((name, seconds, threads, torch_ms, ort_ms, diff, export_s))
                    print(f"  {name} {seconds:g}s {threads}t: torch {torch_ms:.0f} ms, onnxruntime {ort_ms:.0f} ms",
                          file=sys.stderr, flush=True)

    print(f"\n{'model':<20}{'audio':>7}{'threads':>9}{'torch ms':>10}{'ort ms':>9}{'speed-up':>10}"
          f"{'max |diff|':>12}{'export s':>10}")
    for name, seconds, threads, torch_ms, ort_ms, diff, export_s in rows:
        print(f"{name:<20}{seconds:>6g}s{threads:>9}{torch_ms:>10.0f}{ort_ms:>9.0f}{torch_ms / ort_ms:>9.2f}x"
              f"{diff:>12.1e}{export_s:>10.1f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
