"""TDANet speed against the authors' implementation: prints a table, exits 1 on a missed target.

On a GPU it measures
  * batch-1 latency on a 1-s 16 kHz track (eager fp32 / bf16, CUDA graphs, the block
    compiled with torch.compile inside a CUDA graph),
  * a 60-s track: time and peak memory (eager fp32 / bf16),
  * training throughput at batch 8 x 2 s: forward, PIT-free SI-SNR loss, backward, gradient
    clipping and an Adam step (fp32 and bf16 autocast, eager and a compiled block, each also
    with the whole step captured as one CUDA graph), with peak memory;
on a CPU (or with ``--device cpu``) only the one-thread 1-s latency.

The targets: at least 2x the reference's GPU figures (36.5 ms for 1 s, 2.67 s for 60 s, 50
training samples/s on an H200, fp32), and beating its one-thread CPU latency (361 ms median
on the 2-core development machine). The best mode of each measurement counts; every mode is
printed. The reference figures are H200 numbers: compare on an H200.

    python benchmarks/tdanet_speed.py                  # CUDA if present, else CPU
    python benchmarks/tdanet_speed.py --no-compile     # skip torch.compile modes (minutes)
    python benchmarks/tdanet_speed.py --model tdanet-large
    python benchmarks/tdanet_speed.py --smoke          # tiny model, short inputs: checks the script
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from contextlib import nullcontext
from typing import Callable

import torch

from cocktailparty.core.cuda_graphs import graphs_off
from cocktailparty.models import build_model
from targets import finish, mark  # benchmarks/targets.py, beside this script

RATE = 16000
# The authors' implementation, as we measured it: on an H200 in fp32, and one thread of the
# 2-core development CPU.
REF = {
    "tdanet": {"gpu_1s_ms": 36.5, "gpu_60s_s": 2.67, "gpu_60s_gb": 1.45, "train_sps": 50.0, "train_gb": 11.0,
               "cpu_1s_ms": 361.0},
    "tdanet-large": {"cpu_1s_ms": 681.0},
}
SPEEDUP = 2.0
TINY = dict(bottleneck=16, channels=32, ffn_channels=64, heads=4, unfolds=2)


def median_time(fn: Callable[[], object], runs: int, cuda: bool) -> float:
    """Median seconds per call of ``fn`` after two warm-up calls."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(runs):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def autocast(kind: str, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16) if kind == "bf16" else nullcontext()


def cuda_graph(model: torch.nn.Module, x: torch.Tensor, precision: str) -> Callable[[], torch.Tensor]:
    """Capture one inference call; replaying it costs no per-kernel CPU launch overhead."""
    static_x = x.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.inference_mode(), autocast(precision, x.device), graphs_off():
        for _ in range(3):
            model(static_x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.inference_mode(), autocast(precision, x.device):
        static_y = model(static_x)

    def run() -> torch.Tensor:
        graph.replay()
        return static_y

    return run


def eager_train_step(net: torch.nn.Module, mix: torch.Tensor, sources: torch.Tensor,
                     precision: str) -> Callable[[], None]:
    """One training step, launched kernel by kernel: forward of ``mix`` ``(batch, time)``,
    PIT-free SI-SNR against ``sources`` ``(batch, sources, time)``, backward, gradient
    clipping and an Adam step."""
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast(precision, mix.device):
            est = net(mix)
        si_snr_loss(est, sources).backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()

    return step


def graphed_train_step(net: torch.nn.Module, mix: torch.Tensor, sources: torch.Tensor,
                       precision: str) -> Callable[[], None]:
    """One training step captured as a CUDA graph (PyTorch's whole-network capture recipe):
    Adam with its step count on the GPU (capturable), autocast without its weight-cast cache
    (a cache filled during capture would hold graph-pool memory), warm-up on a side stream.
    Dropout and DropPath draw fresh random numbers at every replay (graph-safe Philox)."""
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, capturable=True)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16", cache_enabled=False):
            est = net(mix)
        si_snr_loss(est, sources).backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), graphs_off():  # the warm-ups: no graphs of the model's own
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        step()  # backward writes fresh .grad tensors from the graph's pool; replays refill them
    return graph.replay


def snr_db(estimate: torch.Tensor, reference: torch.Tensor) -> float:
    err = (estimate.float() - reference.float()).square().sum()
    return float(10 * torch.log10(reference.float().square().sum() / err.clamp_min(1e-20)))


def si_snr_loss(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    estimate, target = estimate.float(), target.float()
    estimate = estimate - estimate.mean(-1, keepdim=True)
    target = target - target.mean(-1, keepdim=True)
    proj = (estimate * target).sum(-1, keepdim=True) / (target.square().sum(-1, keepdim=True) + 1e-8) * target
    ratio = proj.square().sum(-1) / ((estimate - proj).square().sum(-1) + 1e-8)
    return -10 * torch.log10(ratio + 1e-8).mean()


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str]] = []
        self.missed: list[str] = []

    def add(self, what: str, mode: str, ours: str, ref: str = "", verdict: str = "") -> None:
        self.rows.append((what, mode, ours, ref, verdict))
        print(f"  {what:<28} {mode:<26} {ours:>14} {ref:>12} {verdict}", flush=True)

    def target(self, what: str, mode: str, value: float, limit: float, unit: str, ref: float,
               higher_is_better: bool = False, fmt: str = "{:.1f}") -> None:
        ok = value >= limit if higher_is_better else value <= limit
        verdict = f"{mark(ok)} (target {'>=' if higher_is_better else '<='} {fmt.format(limit)} {unit})"
        self.add(what, "best: " + mode, f"{fmt.format(value)} {unit}", f"{fmt.format(ref)} {unit}", verdict)
        if not ok:
            self.missed.append(what)


def bench_cpu(args: argparse.Namespace, table: Table) -> None:
    from cocktailparty.core.cpu import keep_freed_memory

    torch.set_num_threads(1)
    # As the Separator runs on CPU (cocktail separate): without it a third of the forward
    # is page faults on re-mapped activations (see cocktailparty/core/cpu.py).
    keep_freed_memory()
    model = build_model(args.model, **(TINY if args.smoke else {})).eval()
    x = torch.randn(1, RATE // 10 if args.smoke else RATE)
    with torch.inference_mode():
        t = median_time(lambda: model(x), args.runs, cuda=False)
        # CPU time of this thread: unlike wall time, it leaves out time-slices lost to other
        # processes (not their cache and memory-bandwidth contention).
        cpu_times = []
        for _ in range(args.runs):
            t0 = time.thread_time()
            model(x)
            cpu_times.append(time.thread_time() - t0)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    ref = REF.get(args.model, {}).get("cpu_1s_ms")
    print(f"CPU, 1 thread, load average {load:.1f} on {os.cpu_count()} cores (others' load slows this)")
    table.add("CPU 1-s, thread CPU time", "fp32, 1 thread", f"{statistics.median(cpu_times) * 1e3:.1f} ms", "",
              "median; not the target, a check on load")
    if ref is None or args.smoke:
        table.add("CPU 1-s latency", "fp32, 1 thread", f"{t * 1e3:.1f} ms")
    else:
        table.target("CPU 1-s latency", "fp32, 1 thread", t * 1e3, ref, "ms", ref)


class Memory:
    """Peak GPU memory of a section beyond what was allocated before it (nothing on CPU)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.peak_gb = float("nan")

    def __enter__(self) -> "Memory":
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.synchronize()
            self.base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            self.peak_gb = (torch.cuda.max_memory_allocated() - self.base) / 1e9


def bench_gpu(args: argparse.Namespace, table: Table) -> None:
    """The GPU measurements; with ``--smoke --device cpu`` the same code runs on CPU, minus
    CUDA graphs and memory figures, to check the script itself."""
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    torch.backends.cudnn.benchmark = True
    ref = REF.get(args.model, REF["tdanet"])
    sizes = dict(one=RATE // 10, long=RATE, train=RATE // 5, batch=2) if args.smoke else \
        dict(one=RATE, long=60 * RATE, train=2 * RATE, batch=8)
    torch.manual_seed(0)
    model = build_model(args.model, **(TINY if args.smoke else {})).to(device).eval()
    print(f"{torch.cuda.get_device_name() if cuda else 'CPU'}, torch {torch.__version__}, "
          f"{sum(p.numel() for p in model.parameters()):,} parameters")

    # --- batch-1 latency, 1 s
    x = torch.randn(1, sizes["one"], device=device)
    with torch.inference_mode():
        reference_out = model(x)
    results: dict[str, float] = {}

    def latency(mode: str, fn: Callable[[], torch.Tensor]) -> None:
        try:
            # graphs_off: "eager" means eager here, not the model's own graph replays.
            with torch.inference_mode(), graphs_off():
                # Cloned: a replayed CUDA graph (ours or torch.compile's) overwrites its output.
                out = fn().clone()
                t = median_time(fn, args.runs, cuda)
        except Exception as err:  # a mode that fails on this stack must not hide the others
            table.add("1-s latency, batch 1", mode, "failed", "", f"{type(err).__name__}: {err}"[:80])
            return
        results[mode] = t
        table.add("1-s latency, batch 1", mode, f"{t * 1e3:.2f} ms", "", f"SNR vs fp32 {snr_db(out, reference_out):.0f} dB")

    def eager(precision: str, m: torch.nn.Module = model) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            with autocast(precision, device):
                return m(x)
        return run

    latency("eager fp32", eager("fp32"))
    latency("eager bf16 autocast", eager("bf16"))
    # The model runs NCHW on GPUs and channels-last on CPUs by default; try the other one too.
    model.channels_last = True
    latency("eager fp32 channels-last", eager("fp32"))
    latency("eager bf16 channels-last", eager("bf16"))
    if cuda:
        for precision in ("fp32", "bf16"):
            try:
                latency(f"CUDA graph {precision} channels-last", cuda_graph(model, x, precision))
            except Exception as err:
                table.add("1-s latency, batch 1", f"CUDA graph {precision} channels-last", "failed", "",
                          f"{type(err).__name__}: {err}"[:80])
    model.channels_last = None
    model_bf16 = build_model(args.model, **(TINY if args.smoke else {})).to(device).eval()
    model_bf16.load_state_dict(model.state_dict())
    model_bf16.to(torch.bfloat16)
    x_bf16 = x.bfloat16()
    latency("eager bf16 weights", lambda: model_bf16(x_bf16))
    graphs = [("fp32", model, x, "fp32"), ("bf16", model, x, "bf16"), ("bf16 weights", model_bf16, x_bf16, "fp32")]
    for name, net, inp, precision in graphs if cuda else []:
        try:
            latency(f"CUDA graph {name}", cuda_graph(net, inp, precision))
        except Exception as err:
            table.add("1-s latency, batch 1", f"CUDA graph {name}", "failed", "", f"{type(err).__name__}: {err}"[:80])
    if args.compile and cuda:
        # The 16 unfolds share one block: compiling the block compiles one graph and reuses
        # it 16 times (the whole model would be traced unrolled, 16x the compile work).
        # Default mode, inside our own CUDA graph: torch.compile's reduce-overhead graphs
        # hand back buffers that the next call overwrites.
        compiled = build_model(args.model, **(TINY if args.smoke else {})).to(device).eval()
        compiled.load_state_dict(model.state_dict())
        try:
            t0 = time.perf_counter()
            compiled.compile()
            with torch.inference_mode():
                compiled(x)
            torch.cuda.synchronize()
            table.add("compile time (inference)", "block, default mode", f"{time.perf_counter() - t0:.0f} s")
            latency("compiled block fp32", eager("fp32", compiled))
            for precision in ("fp32", "bf16"):
                latency(f"compiled block + graph {precision}", cuda_graph(compiled, x, precision))
        except Exception as err:
            table.add("1-s latency, batch 1", "compiled block", "failed", "", f"{type(err).__name__}: {err}"[:80])
        del compiled
    best = min(results, key=results.get)
    table.target("1-s latency, batch 1", best, results[best] * 1e3, ref["gpu_1s_ms"] / SPEEDUP, "ms", ref["gpu_1s_ms"],
                 fmt="{:.2f}")
    model_bf16 = x_bf16 = None  # frees its memory (not del: the lambda above closes over it)

    # --- 60 s, batch 1: time and peak memory
    x_long = torch.randn(1, sizes["long"], device=device)
    long_results: dict[str, float] = {}
    for precision in ("fp32", "bf16"):
        try:
            with Memory(device) as mem, torch.inference_mode():
                def run_long() -> torch.Tensor:
                    with autocast(precision, device):
                        return model(x_long)
                t = median_time(run_long, max(2, args.runs // 10), cuda)
        except RuntimeError as err:  # out of memory included
            table.add("60-s track", f"eager {precision}", "failed", "", f"{type(err).__name__}: {err}"[:80])
            continue
        long_results[f"eager {precision}"] = t
        table.add("60-s track", f"eager {precision}", f"{t:.3f} s", f"{ref['gpu_60s_s']:.2f} s",
                  f"peak {mem.peak_gb:.2f} GB (reference {ref['gpu_60s_gb']:.2f} GB)")
    if long_results:
        best = min(long_results, key=long_results.get)
        table.target("60-s track", best, long_results[best], ref["gpu_60s_s"] / SPEEDUP, "s", ref["gpu_60s_s"],
                     fmt="{:.3f}")
    else:
        table.missed.append("60-s track")
    x_long = None  # frees its memory (not del: run_long above closes over it)

    # --- training throughput, batch 8 x 2 s
    train_results: dict[str, float] = {}
    batch = sizes["batch"]
    mix = torch.randn(batch, sizes["train"], device=device)
    sources = torch.randn(batch, model.config.num_sources, sizes["train"], device=device)
    modes = [("eager", "fp32", None), ("eager", "bf16", None), ("eager", "fp32", True), ("eager", "bf16", True)]
    if args.compile and cuda:
        modes += [("compile", "fp32", None), ("compile", "bf16", None)]
    for how, precision, channels_last in modes:
        torch.manual_seed(0)
        net = build_model(args.model, **(TINY if args.smoke else {})).to(device).train()
        net.channels_last = channels_last
        if how == "compile":
            net.compile()
        step = eager_train_step(net, mix, sources, precision)

        mode = ("compiled block" if how == "compile" else how) + f" {precision}" + (" autocast" if precision == "bf16" else "") + (" ch-last" if channels_last else "")
        try:
            # graphs_off: "eager" is kernel by kernel here, not the model's own training graphs.
            with Memory(device) as mem, graphs_off():
                t0 = time.perf_counter()
                step()  # the first step compiles (and runs cudnn's algorithm search)
                if cuda:
                    torch.cuda.synchronize()
                first = time.perf_counter() - t0
                t = median_time(step, max(5, args.runs // 4), cuda)
        except Exception as err:
            table.add("training, batch 8 x 2 s", mode, "failed", "", f"{type(err).__name__}: {err}"[:80])
            continue
        train_results[mode] = batch / t
        table.add("training, batch 8 x 2 s", mode, f"{batch / t:.1f} samples/s", f"{ref['train_sps']:.0f} /s",
                  f"peak {mem.peak_gb:.1f} GB (ref {ref['train_gb']:.0f} GB), first step {first:.0f} s")
        if cuda and not channels_last:
            # The whole step (forward, loss, backward, clipping, Adam) as one CUDA graph: the
            # step launches thousands of small kernels, and on a slow host CPU their launch
            # cost, not the GPU, sets the pace. Same net, so a compiled block is reused.
            try:
                with Memory(device) as mem:
                    t = median_time(graphed_train_step(net, mix, sources, precision), max(5, args.runs // 4), cuda)
            except Exception as err:
                table.add("training, batch 8 x 2 s", mode + " + graph", "failed", "", f"{type(err).__name__}: {err}"[:80])
            else:
                train_results[mode + " + graph"] = batch / t
                table.add("training, batch 8 x 2 s", mode + " + graph", f"{batch / t:.1f} samples/s",
                          f"{ref['train_sps']:.0f} /s", f"peak {mem.peak_gb:.1f} GB")
        net = step = None  # frees the memory before the next mode
    if train_results:
        best = max(train_results, key=train_results.get)
        table.target("training, batch 8 x 2 s", best, train_results[best], ref["train_sps"] * SPEEDUP, "samples/s",
                     ref["train_sps"], higher_is_better=True)
        fp32 = max((v for k, v in train_results.items() if "fp32" in k), default=0.0)
        bf16 = max((v for k, v in train_results.items() if "bf16" in k), default=0.0)
        table.add("bf16 vs fp32 training", "best of each", f"{bf16 / max(fp32, 1e-9):.2f}x", "0.88x",
                  "pays" if bf16 > fp32 else "does not pay")
    else:
        table.missed.append("training, batch 8 x 2 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tdanet", help="tdanet or tdanet-large")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per measurement (median reported)")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip torch.compile modes")
    parser.add_argument("--smoke", action="store_true", help="tiny model and inputs: exercise the script only")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run with --device cpu", file=sys.stderr)
        return 2
    table = Table()
    print(f"TDANet speed, model {args.model}{' (smoke: tiny config)' if args.smoke else ''}")
    print(f"  {'measurement':<28} {'mode':<26} {'ours':>14} {'reference':>12}")
    if args.device == "cpu" and not args.smoke:
        bench_cpu(args, table)
    elif args.device == "cpu":
        bench_cpu(args, table)
        bench_gpu(args, table)
    else:
        bench_gpu(args, table)
    if args.smoke:
        print("smoke run: targets not checked")
        return 0
    return finish(table.missed)


if __name__ == "__main__":
    sys.exit(main())
