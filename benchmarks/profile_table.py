"""Cost table over several models, in the shape of TDANet's Table 3 and Tune-In's Table 1.

    python benchmarks/profile_table.py                     # every registered architecture
    python benchmarks/profile_table.py dprnn tdanet@8000   # chosen models, optional @RATE

Prints a markdown table: parameters, MACs and GFLOPs (= 2 x MACs, Tune-In's unit) per second
of audio, peak inference memory and CPU real-time factor (one thread unless --threads). Models
at their paper setting are checked against the figures their papers (or our own targets) state;
the command exits with status 1 if one misses, so a change that alters a model's size shows.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

from cocktailparty.core.errors import CocktailError
from cocktailparty.eval import profile, profile_inputs
from cocktailparty.models import ARCHITECTURES, config_class

# The rate each architecture's paper reports its cost at (1 s of audio).
PAPER_RATES = {"tdanet": 16000, "tdanet-large": 16000, "dprnn": 8000, "convtasnet": 8000, "tunein": 8000}

# Paper figures for the default (paper) config of each architecture at its paper rate:
# inclusive ranges of parameters and of G MACs per second of audio.
TARGETS = {
    "tdanet": {"params": (2.3e6 * 0.97, 2.3e6 * 1.03), "gmacs": (4.5, 4.8)},  # TDANet Table 3
    "tdanet-large": {"gmacs": (8.8, 9.3)},
    "dprnn": {"params": (2.6e6 * 0.97, 2.6e6 * 1.03), "gmacs": (40.0, 45.0)},  # 84.6 GFLOPs in Tune-In
    "convtasnet": {"params": (5.05e6 * 0.97, 5.05e6 * 1.03), "gmacs": (4.7, 5.3)},
}


def default_models() -> list[str]:
    config_class(next(iter(PAPER_RATES)))  # imports every model file, filling the registry
    return sorted(ARCHITECTURES)


def parse_model(item: str) -> tuple[str, int | None]:
    spec, _, rate = item.partition("@")
    return spec, int(rate) if rate else PAPER_RATES.get(spec)


def check(result: dict, module_config, architecture: str) -> str:
    """'ok', '-' (no target for this model/setting), or what missed."""
    target = TARGETS.get(architecture)
    if target is None or result["sample_rate"] != PAPER_RATES.get(architecture):
        return "-"
    paper = dataclasses.asdict(config_class(architecture)())
    if {k: v for k, v in dataclasses.asdict(module_config).items() if k != "sample_rate"} != \
            {k: v for k, v in paper.items() if k != "sample_rate"}:
        return "-"  # not the paper's setting
    misses = []
    lo, hi = target.get("params", (None, None))
    if lo is not None and not lo <= result["params"] <= hi:
        misses.append(f"params {result['params'] / 1e6:.3f} M not in {lo / 1e6:.3f}-{hi / 1e6:.3f} M")
    lo, hi = target.get("gmacs", (None, None))
    if lo is not None and not lo <= result["gmacs_per_second_of_audio"] <= hi:
        misses.append(f"{result['gmacs_per_second_of_audio']:.2f} G MACs not in {lo}-{hi}")
    return "MISS: " + "; ".join(misses) if misses else "ok"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", metavar="MODEL[@RATE]",
                        help="--model specs (default: every registered architecture at its paper rate)")
    parser.add_argument("--seconds", type=float, default=1.0, help="input length (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for timing (default: %(default)s)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocess")
    parser.add_argument("--no-timing", action="store_true", help="skip the real-time factor")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # every model here is untrained on purpose
    try:
        return _run(args)
    finally:
        logging.disable(logging.NOTSET)


def _run(args: argparse.Namespace) -> int:

    rows, missed = [], False
    for item in args.models or default_models():
        spec, rate = parse_model(item)
        try:
            module = profile_inputs.resolve_model(spec, rate, "cpu")
            result = profile.profile_model(module, seconds=args.seconds, sample_rate=rate, device="cpu",
                                           threads=args.threads, memory=not args.no_memory,
                                           timing=not args.no_timing)
        except CocktailError as err:
            print(f"profile_table: {spec}: {err}", file=sys.stderr)
            return 2
        verdict = check(result, module.config, module.architecture) if hasattr(module, "config") else "-"
        missed |= verdict.startswith("MISS")
        per_s = args.seconds
        rows.append([
            spec, f"{result['sample_rate'] // 1000} kHz", f"{result['params'] / 1e6:.3f}",
            f"{result['macs'] / per_s / 1e9:.2f}", f"{2 * result['macs'] / per_s / 1e9:.2f}",
            "-" if result["peak_memory_mb"] is None else f"{result['peak_memory_mb']:.1f}",
            "-" if result["rtf"] is None else f"{result['rtf']:.3f}", verdict,
        ])

    threads = f"{args.threads} thread{'s' if args.threads != 1 else ''}"
    header = ["Model", "Rate", "Params (M)", "MACs (G/s)", "GFLOPs (/s)", "Peak mem (MiB)",
              f"RTF (CPU, {threads})", "Paper target"]
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join(("-" * (w + 1)) + (":" if 1 < i < 7 else "-") for i, w in enumerate(widths)) + "|")
    for r in rows:
        print("| " + " | ".join(c.rjust(w) if 1 < i < 7 else c.ljust(w)
                                for i, (c, w) in enumerate(zip(r, widths))) + " |")
    print(f"\n{args.seconds:g} s of audio, batch 1. MACs count matrix products and convolutions "
          "(LSTM gates and attention included; GFLOPs = 2 x MACs). Peak memory: RSS high-water rise "
          "of one forward in a fresh process, MiB. RTF: median forward time / audio duration.")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
