"""A long recording through ``cocktail separate``: peak memory and real-time factor.

Issue 7, item 2: a 10-minute 16 kHz recording must separate on the 2-core development CPU
with peak RSS under 2 GB at a real-time factor under 0.5. This script

1. synthesizes a two-talker mixture of that length (or takes ``--input FILE``): two voiced,
   syllable-like harmonic talkers at different pitches, the louder one changing every few
   seconds. Cost does not depend on what is said, nor on the weights, so the untrained
   paper-config TDANet (``--model tdanet``) measures what a trained one would cost;
2. runs the real command line, ``cocktailparty.cli.main(["separate", ...])``, in a fresh
   Python process, which reads its own high-water RSS (``VmHWM`` in /proc/self/status) after
   the command returns: the whole process (Python, torch, the model, the recording, the
   outputs), not just a forward. As a cross-check the parent samples the child's VmRSS every
   50 ms. The child's ``ru_maxrss`` from ``os.wait4`` is printed too but is not the figure:
   it inherits the parent's own high-water mark across fork + exec (here the parent's peak
   while synthesizing the recording, about 1 GB for 10 minutes);
3. prints wall time (the whole process: start-up, model build, reading, separating,
   writing), RTF = wall time / recording length, peak RSS, the chunk settings and threads,
   and the machine load; exits 1 if peak RSS >= 2 GB or RTF >= 0.5.

    python benchmarks/long_recording.py                        # 10 min, --model tdanet
    python benchmarks/long_recording.py --minutes 1 --model tdanet
    python benchmarks/long_recording.py --input meeting.wav --model my.safetensors
    python benchmarks/long_recording.py --json
    python benchmarks/long_recording.py --memory-curve 5,10,20,40   # chunk length vs memory

``--memory-curve`` prints, for each chunk length, what one forward adds to the loaded model
and the whole process's peak (``profile.peak_memory_mb``: a fresh process per length), to
choose ``chunk_seconds``: TDANet's attention is quadratic in length, at its coarsest scale.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from targets import mark  # benchmarks/targets.py, beside this script

RATE = 16000
MAX_RSS_MB = 2048.0
MAX_RTF = 0.5

# The child: the real CLI, then its own high-water RSS and the settings it ran with.
CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from cocktailparty.cli import main
import torch
from cocktailparty.inference.separate import Separator
import inspect
rc = main(sys.argv[2:])
wall = time.perf_counter() - t0
with open("/proc/self/status") as f:
    hwm_kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
defaults = inspect.signature(Separator.__init__).parameters
with open(sys.argv[1], "w") as f:
    json.dump({"rc": rc, "wall_in_child_s": wall, "vmhwm_mb": hwm_kib / 1024,
               "torch_threads": torch.get_num_threads(),
               "chunk_seconds": defaults["chunk_seconds"].default,
               "overlap_seconds": defaults["overlap_seconds"].default}, f)
sys.exit(rc)
"""


def synthesize(seconds: float, rate: int = RATE, switch_seconds: float = 4.0, seed: int = 0):
    """Two syllable-like harmonic talkers; the louder one changes every ``switch_seconds``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n, dtype=np.float64) / rate
    talkers = []
    for k, (f0, rate_hz) in enumerate([(115.0, 4.0), (210.0, 5.0)]):
        # Pitch wanders slowly; syllables are raised-cosine bursts with random gaps.
        wander = np.cumsum(rng.standard_normal(n // rate + 2))[np.minimum((t).astype(int), n // rate + 1)]
        f = f0 * (1 + 0.05 * np.tanh(wander / 5)) * (1 + 0.03 * np.sin(2 * np.pi * 0.7 * t + k))
        phase = 2 * np.pi * np.cumsum(f) / rate
        voice = sum(np.sin(h * phase) / h for h in range(1, 12))
        syllables = 0.5 - 0.5 * np.cos(2 * np.pi * rate_hz * t)
        gate = rng.random(int(seconds * rate_hz) + 2) > 0.25
        voice *= syllables * gate[(t * rate_hz).astype(int)]
        talkers.append(voice / np.abs(voice).max())
    louder_first = (np.floor(t / switch_seconds) % 2 == 0)
    gains = np.where(louder_first, [[0.5], [0.15]], [[0.15], [0.5]])
    sources = (np.stack(talkers) * gains).astype(np.float32)
    return sources.sum(0), sources


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def run(args) -> dict:
    import soundfile

    with tempfile.TemporaryDirectory(prefix="cocktail-long-") as tmp:
        tmp = Path(tmp)
        if args.input:
            mixture_path = Path(args.input)
            info = soundfile.info(str(mixture_path))
            seconds, rate = info.frames / info.samplerate, info.samplerate
        else:
            mixture, _ = synthesize(args.minutes * 60)
            mixture_path = tmp / "meeting.wav"
            soundfile.write(mixture_path, mixture, RATE, subtype="PCM_16")
            seconds, rate = mixture.shape[0] / RATE, RATE
            del mixture, _
        # benchmarks/cpu_speed.py passes model=None and device=None (the command with no
        # flags) and cli_extra (--backend onnx ...).
        device = getattr(args, "device", "cpu")
        cli_args = ["-q", "separate", str(mixture_path), "-o", str(tmp / "out"), "--force",
                    *(["--model", args.model] if args.model else []), *(["--device", device] if device else []),
                    *getattr(args, "cli_extra", [])]
        env = dict(os.environ, **(getattr(args, "env", None) or {}))
        if args.threads:
            env["OMP_NUM_THREADS"] = str(args.threads)
        load_before = load_average()
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp / "child.json"), *cli_args], env=env)
        # Poll the child's RSS while it runs: a third, independent view of its peak.
        sampled_kib = 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            try:
                with open(f"/proc/{proc.pid}/status") as f:
                    sampled_kib = max([sampled_kib] + [int(x.split()[1]) for x in f if x.startswith("VmRSS:")])
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"long_recording: 'cocktail separate' failed with status {proc.returncode}")
        child = json.loads((tmp / "child.json").read_text())
        outputs = sorted(p.name for p in (tmp / "out").iterdir())
    return {
        "model": args.model, "recording_s": seconds, "sample_rate": rate, "wall_s": wall,
        "rtf": wall / seconds, "peak_rss_mb": child["vmhwm_mb"], "ru_maxrss_mb": usage.ru_maxrss / 1024,
        "sampled_rss_mb": sampled_kib / 1024,
        # CPU seconds (user + system) of the child: unlike wall time, barely moved by other
        # processes on the machine, so it tells a slow run from a loaded machine.
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "torch_threads": child["torch_threads"], "chunk_seconds": child["chunk_seconds"],
        "overlap_seconds": child["overlap_seconds"], "cpu_count": os.cpu_count(),
        "load_before": load_before, "load_after": load_average(), "outputs": outputs,
    }


def memory_curve(model: str, lengths: list[float], threads: int | None) -> int:
    import torch

    from cocktailparty.eval.memory_speed import peak_memory_mb

    threads = threads or torch.get_num_threads()
    print(f"{model}, {threads} thread(s): peak memory of one forward per chunk length")
    print(f"{'chunk s':>8} {'forward adds MiB':>17} {'process peak MiB':>17}")
    for seconds in lengths:
        details: dict = {}
        added = peak_memory_mb(model, seconds=seconds, threads=threads, details=details)
        print(f"{seconds:>8g} {added:>17.0f} {details['rss_mb']:>17.0f}", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="synthesized length (default: %(default)s)")
    parser.add_argument("--input", help="separate this recording instead of a synthesized one")
    parser.add_argument("--model", default="tdanet", help="--model for cocktail separate (default: %(default)s, "
                        "untrained: cost does not depend on the weights)")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for the child (default: torch's own choice)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--memory-curve", metavar="S1,S2,...", help="only print peak memory per chunk length (s)")
    args = parser.parse_args()
    if args.memory_curve:
        return memory_curve(args.model, [float(x) for x in args.memory_curve.split(",")], args.threads)
    r = run(args)
    ok_rss, ok_rtf = r["peak_rss_mb"] < MAX_RSS_MB, r["rtf"] < MAX_RTF
    if args.json:
        print(json.dumps(dict(r, pass_rss=ok_rss, pass_rtf=ok_rtf), indent=2))
    else:
        print(f"recording       {r['recording_s'] / 60:.1f} min at {r['sample_rate']} Hz, model {r['model']}")
        print(f"chunks          {r['chunk_seconds']} s with {r['overlap_seconds']} s overlap; "
              f"torch threads {r['torch_threads']} of {r['cpu_count']} cores")
        print(f"wall time       {r['wall_s']:.1f} s (whole process: start-up, model, read, separate, write)")
        print(f"real-time factor {r['rtf']:.3f}  (target < {MAX_RTF})  {mark(ok_rtf)}")
        print(f"peak RSS        {r['peak_rss_mb']:.0f} MiB (VmHWM of the CLI process)  (target < {MAX_RSS_MB:.0f})  "
              f"{mark(ok_rss)}")
        print(f"  cross-checks  RSS sampled every 50 ms: max {r['sampled_rss_mb']:.0f} MiB; wait4 ru_maxrss "
              f"{r['ru_maxrss_mb']:.0f} MiB")
        print(f"CPU time        {r['cpu_s']:.1f} s user + system ({r['cpu_s'] / r['recording_s']:.3f} s per second "
              f"of audio, all threads)")
        print(f"load average    {r['load_before']} before, {r['load_after']} after")
        print(f"outputs         {', '.join(r['outputs'])}")
    return 0 if ok_rss and ok_rtf else 1


if __name__ == "__main__":
    sys.exit(main())
