"""Separation throughput on CUDA: hours of audio separated per second; exits 1 on a missed target.

Issue #19 item 2. Through the Separator with its default settings (on CUDA: batches across
files and chunks, CUDA graphs, fp16 or bf16 where it is safe for the model), on one GPU:

  * a folder: 1,000 recordings of 4 s at 16 kHz; target >= 3,000x real time;
  * one recording of 1 hour (reported; no target).

The recordings are synthetic speech-like two-talker mixtures held in memory (the cost does
not depend on what is said): reading and writing files is not measured, everything between
(mono, resampling, chunking, the model, stitching, rescaling, copies to and from the GPU) is.
Each workload runs twice through one Separator: the first pass includes measuring the model
(the precision probe and the memory budget) and capturing graphs; the second is the steady state
that a long folder or a service sees, and the target applies to it.

    python benchmarks/separate_throughput.py
    python benchmarks/separate_throughput.py --model tdanet-real8k --rate 8000
    python benchmarks/separate_throughput.py --batch-seconds 640     # another batch cap
    COCKTAIL_PRECISION=fp32 python benchmarks/separate_throughput.py  # force fp32 (or COCKTAIL_CUDA_GRAPHS=0)
    python benchmarks/separate_throughput.py --smoke --device cpu    # tiny model, short inputs: checks the script
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from targets import finish, mark  # benchmarks/targets.py, beside this script

TARGET_FOLDER_X = 3000.0
TINY = dict(basis=9, bottleneck=8, channels=16, depth=2, unfolds=2, heads=2, ffn_channels=16, dropout=0.0,
            drop_path=0.0)


def synthesize(count: int, seconds: float, rate: int, seed: int) -> list[np.ndarray]:
    """``count`` speech-like mixtures of ``seconds`` each, float32 ``(time,)``, made in blocks of
    a few minutes of audio (the synthesis works in float64 over whole rows)."""
    from cocktailparty.inference.export import speech_like_mixtures

    generator = torch.Generator().manual_seed(seed)
    length = int(seconds * rate)
    per_block = max(1, int(600 * rate) // length)
    out: list[np.ndarray] = []
    while len(out) < count:
        block = min(per_block, count - len(out))
        out.extend(speech_like_mixtures(block, length, rate, generator).numpy())
    return out


def one_hour(seconds: float, rate: int, seed: int) -> np.ndarray:
    """One long recording: minutes of speech-like audio end to end."""
    minute = min(60.0, seconds)
    pieces = synthesize(int(np.ceil(seconds / minute)), minute, rate, seed)
    return np.concatenate(pieces)[: int(seconds * rate)]


def timed_pass(separator, recordings: list[np.ndarray], rate: int, cuda: bool) -> tuple[float, float]:
    """Wall seconds to separate ``recordings`` (every output consumed), and peak GPU memory in GB."""
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    count = 0
    for sources in separator.separate_many((x, rate) for x in recordings):
        count += sources.shape[0] > 0
    wall = time.perf_counter() - start  # outputs are numpy: the GPU work behind them is done
    assert count == len(recordings)
    peak = torch.cuda.max_memory_allocated() / 1e9 if cuda else float("nan")
    return wall, peak


def settings(separator, piece: int) -> str:
    """What the Separator chose on this device: precision, pieces per call, graphs captured."""
    cuda = getattr(separator, "_cuda", None)
    if cuda is None:
        return f"{separator.pieces_per_batch(piece)} piece(s) per call, no CUDA path"
    graphs = len(cuda.graphs.graphs) if cuda.graphs is not None else "off"
    return (f"{cuda.profile.precision}, {separator.pieces_per_batch(piece)} x {piece / separator.sample_rate:g} s "
            f"per call, graphs captured: {graphs}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a bundled model or checkpoint (default: the bundled default)")
    parser.add_argument("--rate", type=int, default=16000, help="the recordings' rate (default: %(default)s)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--files", type=int, default=1000, help="recordings in the folder (default: %(default)s)")
    parser.add_argument("--file-seconds", type=float, default=4.0, help="each one's length (default: %(default)s)")
    parser.add_argument("--long-seconds", type=float, default=3600.0, help="the long recording (default: 1 hour)")
    parser.add_argument("--batch-seconds", type=float, default=None,
                        help="the Separator's batch_seconds (default: its own default)")
    parser.add_argument("--smoke", action="store_true", help="tiny model and inputs: exercise the script only")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: this benchmark measures the Separator's CUDA path and needs a GPU "
              "(--smoke --device cpu only checks the script)", file=sys.stderr)
        return 2

    from cocktailparty.core.checkpoint import DEFAULT_MODEL, load_model
    from cocktailparty.inference.separate import Separator
    from cocktailparty.models import build_model

    cuda = args.device == "cuda"
    if args.smoke:
        args.files, args.file_seconds, args.long_seconds = 20, 0.5, 30.0
        torch.manual_seed(0)
        model = build_model("tdanet", sample_rate=args.rate, **TINY)
        name = "tiny tdanet (smoke)"
    else:
        name = args.model or DEFAULT_MODEL
        model = load_model(name, args.device)
    separator = Separator(model, device=args.device, batch_seconds=args.batch_seconds)
    print(f"{torch.cuda.get_device_name() if cuda else 'CPU'}, torch {torch.__version__}, model {name} "
          f"at {separator.sample_rate} Hz, inputs at {args.rate} Hz, batch_seconds "
          f"{'default' if args.batch_seconds is None else args.batch_seconds}")
    folder = synthesize(args.files, args.file_seconds, args.rate, seed=0)
    long = one_hour(args.long_seconds, args.rate, seed=1)
    workloads = [(f"folder: {args.files} x {args.file_seconds:g} s", folder,
                  int(args.file_seconds * separator.sample_rate)),
                 (f"one file of {args.long_seconds / 60:g} min", [long], separator.chunk or long.shape[0])]
    print(f"  {'workload':<26} {'pass':<7} {'wall':>9} {'x real time':>12} {'h audio / s':>12} {'peak GPU':>9}")
    missed = []
    for what, recordings, piece in workloads:
        audio_seconds = sum(x.shape[0] for x in recordings) / args.rate
        for label in ("first", "second"):
            wall, peak = timed_pass(separator, recordings, args.rate, cuda)
            speed = audio_seconds / wall
            verdict = ""
            if label == "second" and what.startswith("folder") and not args.smoke:
                ok = speed >= TARGET_FOLDER_X
                verdict = f"{mark(ok)} (target >= {TARGET_FOLDER_X:g}x)"
                if not ok:
                    missed.append(f"{what}: {speed:.0f}x real time")
            print(f"  {what:<26} {label:<7} {wall:>8.3f}s {speed:>11.0f}x {speed / 3600:>12.3f} {peak:>7.2f} GB "
                  f"{verdict}", flush=True)
        print(f"    settings: {settings(separator, piece)}")
    if args.smoke:
        print("smoke run: targets not checked")
        return 0
    return finish(missed)


if __name__ == "__main__":
    sys.exit(main())
