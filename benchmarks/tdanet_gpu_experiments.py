"""Scratch: profile TDANet on a GPU and measure the speed variants of issue 4 in one go.

Variants are toggled by swapping forward methods, so that the old and new code of
``cocktailparty/models/tdanet.py`` are timed on the same machine in the same run:

  old      the code before the GPU work: group_norm gLN, cudnn 1x1 convs
  gln      the model's CUDA gLN (var_mean split reduction, hand-written backward), cudnn 1x1 convs
  gln+mm   that gLN and 1x1 convs as batched GEMMs (the current model code)

Measured on an H200 (torch 2.11, 2026-11): the old code spent 24.9 of 29.2 ms of kernel time
per 1-s track in group_norm's RowwiseMoments kernel (one thread block per utterance), 72 of
153 ms per training step; with var_mean the 1-s kernel time is 10.2 ms, a CUDA-graphed
1-s track 11.1-11.5 ms (from 30.9) and the 60-s track 0.10 s (from 2.56). Eager runs on that
machine are bound by the host CPU's kernel launches (eager 1-s 43-53 ms against 11 ms as a
graph), hence the graphed training step in tdanet_speed.py.

For each: batch-1 1-s latency (eager / CUDA graph, fp32 / bf16 autocast) with the relative
error against the old eager fp32 output, training throughput at batch 8 x 2 s with peak
memory, and the 60-s track. Then profiles (top kernels by CUDA time) of old and new, TF32,
cudnn.benchmark off, and a compiled block (``model.block.compile()``). Prints a table last;
full logs go to ``--out``.

    PYTHONPATH=. python3 benchmarks/tdanet_gpu_experiments.py --out /tmp/x
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback

import torch
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.tdanet_speed import Memory, cuda_graph, median_time, si_snr_loss  # noqa: E402
from cocktailparty.models import build_model  # noqa: E402
from cocktailparty.models import tdanet  # noqa: E402

NEW_GLN, NEW_CONV = tdanet.GLN.forward, tdanet.Conv.forward


def old_gln(self, x):
    if x.dtype == self.weight.dtype:
        return F.group_norm(x, 1, self.weight, self.bias, self.eps)
    with torch.autocast(x.device.type, enabled=False):
        return F.group_norm(x, 1, self.weight.to(x.dtype), self.bias.to(x.dtype), self.eps)


def old_conv(self, x):
    if self.pointwise and x.is_contiguous(memory_format=torch.channels_last):
        return F.linear(x.permute(0, 2, 3, 1), self.weight.squeeze(2), self.bias).permute(0, 3, 1, 2)
    return F.conv2d(x, self.weight.unsqueeze(2), self.bias, (1, self.stride[0]), (0, self.padding[0]),
                    (1, self.dilation[0]), self.groups)


VARIANTS = {"old": (old_gln, old_conv), "gln": (NEW_GLN, old_conv), "gln+mm": (NEW_GLN, NEW_CONV)}


def use(variant: str) -> None:
    tdanet.GLN.forward, tdanet.Conv.forward = VARIANTS[variant]


ROWS: list[str] = []
LOG = None


def log(msg: str) -> None:
    print(msg, flush=True)
    if LOG:
        LOG.write(msg + "\n")
        LOG.flush()


def row(msg: str) -> None:
    ROWS.append(msg)
    log("ROW " + msg)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def ac(precision: str):
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16")


def profile(name: str, fn, steps: int = 3) -> None:
    from torch.profiler import ProfilerActivity, profile as prof
    fn()
    torch.cuda.synchronize()
    with prof(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
        for _ in range(steps):
            fn()
        torch.cuda.synchronize()
    ka = p.key_averages()
    key = "self_device_time_total" if hasattr(ka[0], "self_device_time_total") else "self_cuda_time_total"
    table = ka.table(sort_by=key, row_limit=25, max_name_column_width=90)
    log(f"=== profile {name} ({steps} steps), sorted by {key}\n{table}")
    kernels = [e for e in ka if getattr(e, key) > 0 and e.device_type.name == "CUDA"] or \
        [e for e in ka if getattr(e, key) > 0 and e.self_cpu_time_total == 0]
    kernels.sort(key=lambda e: -getattr(e, key))
    total = sum(getattr(e, key) for e in kernels)
    row(f"profile {name}: total kernel time {total / steps / 1e3:.2f} ms/step; top: " + "; ".join(
        f"{e.key[:50]} {getattr(e, key) / steps / 1e3:.2f}ms x{e.count // steps}" for e in kernels[:6]))


def train_step_fn(net, mix, sources, precision, fwd=None):
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    fwd = fwd or net

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with ac(precision):
            est = fwd(mix)
        loss = si_snr_loss(est, sources)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
    return step


def main() -> int:
    global LOG
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=".")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--profile-only", action="store_true", help="only profile the current code")
    parser.add_argument("--budget", type=float, default=500.0, help="seconds; later sections are skipped past it")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    LOG = open(os.path.join(args.out, "experiments.log"), "w")
    t_start = time.time()
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    log(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, cudnn {torch.backends.cudnn.version()}")

    torch.manual_seed(0)
    model = build_model("tdanet").to(dev).eval()
    state = model.state_dict()
    x1 = torch.randn(1, 16000, device=dev)
    x60 = torch.randn(1, 60 * 16000, device=dev)
    mix = torch.randn(8, 32000, device=dev)
    sources = torch.randn(8, 2, 32000, device=dev)
    if args.profile_only:
        with torch.inference_mode():
            profile("new infer fp32 1s b1", lambda: model(x1))
        for precision in ("fp32", "bf16"):
            net = build_model("tdanet").to(dev).train()
            profile(f"new train {precision} b8x2s", train_step_fn(net, mix, sources, precision), steps=2)
        for r in ROWS:
            log(r)
        return 0
    use("old")
    with torch.inference_mode():
        ref = model(x1).clone()

    def lat(tag, fn, check=True):
        try:
            with torch.inference_mode():
                out = fn().clone()
                t = median_time(fn, args.runs, True)
            row(f"{tag:<34} {t * 1e3:8.2f} ms   rel err {rel(out, ref):.1e}")
            return t
        except Exception as err:
            row(f"{tag:<34} failed {type(err).__name__}: {str(err)[:100]}")
            log(traceback.format_exc())

    def train(tag, net, precision, fwd=None, runs=6):
        try:
            step = train_step_fn(net, mix, sources, precision, fwd)
            with Memory(dev) as mem:
                t0 = time.time()
                step()
                torch.cuda.synchronize()
                first = time.time() - t0
                t = median_time(step, runs, True)
            row(f"{tag:<34} {8 / t:8.1f} samples/s  peak {mem.peak_gb:5.1f} GB  first step {first:.1f} s")
            return 8 / t
        except Exception as err:
            row(f"{tag:<34} failed {type(err).__name__}: {str(err)[:100]}")
            log(traceback.format_exc())

    # ---- profiles of the old code first: what dominates
    with torch.inference_mode():
        profile("old infer fp32 1s b1", lambda: model(x1))
    net = build_model("tdanet").to(dev).train()
    profile("old train fp32 b8x2s", train_step_fn(net, mix, sources, "fp32"), steps=2)
    del net

    for variant in ("old", "gln", "gln+mm"):
        use(variant)
        for precision in ("fp32", "bf16"):
            def run(p=precision):
                with ac(p):
                    return model(x1)
            lat(f"{variant} eager {precision}", run)
        for precision in ("fp32", "bf16"):
            lat(f"{variant} graph {precision}", cuda_graph(model, x1, precision))
        for precision in ("fp32", "bf16"):
            net = build_model("tdanet").to(dev).train()
            train(f"{variant} train {precision}", net, precision)
            del net
        if variant != "old":
            for precision in ("fp32", "bf16"):
                def run60(p=precision):
                    with ac(p):
                        return model(x60)
                with Memory(dev) as mem, torch.inference_mode():
                    t = median_time(run60, 3, True)
                row(f"{variant} 60s {precision:<22} {t:8.3f} s  peak {mem.peak_gb:.2f} GB")

    use("gln+mm")
    with torch.inference_mode():
        profile("new infer fp32 1s b1", lambda: model(x1))
    net = build_model("tdanet").to(dev).train()
    profile("new train fp32 b8x2s", train_step_fn(net, mix, sources, "fp32"), steps=2)
    profile("new train bf16 b8x2s", train_step_fn(net, mix, sources, "bf16"), steps=2)
    del net

    # cudnn.benchmark off: peak memory of the old layout (workspace probes?) and the new
    torch.backends.cudnn.benchmark = False
    for variant in ("old", "gln+mm"):
        use(variant)
        net = build_model("tdanet").to(dev).train()
        train(f"{variant} train fp32 cudnn.bench off", net, "fp32")
        del net
    torch.backends.cudnn.benchmark = True
    use("gln+mm")

    # TF32 (changes numerics: reported apart)
    torch.backends.cuda.matmul.allow_tf32 = True
    lat("gln+mm graph fp32 TF32", cuda_graph(model, x1, "fp32"))
    net = build_model("tdanet").to(dev).train()
    train("gln+mm train fp32 TF32", net, "fp32")
    del net
    torch.backends.cuda.matmul.allow_tf32 = False

    # compiled block: 16 unfolds share one compiled graph
    if not args.skip_compile and time.time() - t_start < args.budget:
        try:
            cm = build_model("tdanet").to(dev).eval()
            cm.load_state_dict(state)
            t0 = time.time()
            cm.block.compile()
            with torch.inference_mode():
                cm(x1)
            torch.cuda.synchronize()
            row(f"compile block (infer) first call {time.time() - t0:.1f} s")
            lat("compiled-block eager fp32", lambda: cm(x1))
            lat("compiled-block graph fp32", cuda_graph(cm, x1, "fp32"))
            lat("compiled-block graph bf16", cuda_graph(cm, x1, "bf16"))
            for precision in ("fp32", "bf16"):
                if time.time() - t_start > args.budget:
                    break
                net = build_model("tdanet").to(dev).train()
                net.block.compile()
                train(f"compiled-block train {precision}", net, precision)
                del net
        except Exception as err:
            row(f"compile failed {type(err).__name__}: {str(err)[:150]}")
            log(traceback.format_exc())

    log(f"\n==== summary ({time.time() - t_start:.0f} s)")
    for r in ROWS:
        log(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
