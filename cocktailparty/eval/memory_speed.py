"""Measuring what a forward pass takes at run time: peak memory (CPU: the resident-set
high-water mark in a fresh process; GPU: ``max_memory_allocated``) and time (median forward
time, real-time factor, a training step). The definitions: :mod:`cocktailparty.eval.profile`."""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

import torch
from torch import nn

from ..core.cuda_graphs import graphs_off
from ..core.errors import CocktailError
from .profile_inputs import at_rate, cpu_copy, device_of, example_input, model_sample_rate, resolve_model

log = logging.getLogger("cocktailparty")

MIB = 2**20


# --- peak memory --------------------------------------------------------------------------


def _read_status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise CocktailError(f"/proc/self/status has no {field}: peak memory needs Linux")


def _reset_high_water() -> bool:
    """Lower VmHWM to the current RSS (Linux >= 4.0), so the warm-up's peak does not hide ours."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


WARMUP_SECONDS = 0.25


def _memory_worker() -> None:
    """Child side of :func:`peak_memory_mb` on CPU: one JSON line with the forward's peak."""
    request = json.loads(sys.argv[1])
    torch.set_num_threads(request["threads"])
    for module in request.get("imports", []):
        __import__(module)
    if "pickle" in request:
        # Our own temporary file, written by the parent a moment ago.
        model = torch.load(request["pickle"], weights_only=False)
    elif "architecture" in request:
        from ..models import build_model

        model = build_model(request["architecture"], **request["config"])
    else:
        from ..core.checkpoint import load_model

        logging.disable(logging.WARNING)  # the parent already warned about untrained weights
        model = load_model(request["spec"], "cpu")
    model = at_rate(model, request["sample_rate"]).eval()
    rate, batch = request["sample_rate"], request["batch"]
    with torch.inference_mode():
        model(example_input(model, min(WARMUP_SECONDS, request["seconds"]), rate, batch, "cpu"))
        x = example_input(model, request["seconds"], rate, batch, "cpu")
        gc.collect()
        reset = _reset_high_water()
        before = _read_status_kib("VmHWM")
        y = model(x)
        after = _read_status_kib("VmHWM")
    del y
    print(json.dumps({"before_kib": before, "after_kib": after, "reset": reset}))


def memory_worker_env() -> dict[str, str]:
    """Environment for a child process that measures its own peak RSS: glibc's mmap threshold
    fixed at 128 KiB (else heap trimming moves RSS by ~10% run to run), and this process's
    import path, so the child imports whatever registered a model's class (a test module, a
    plugin)."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    env["PYTHONPATH"] = os.pathsep.join([p for p in sys.path if p] + [env.get("PYTHONPATH", "")])
    return env


def peak_memory_mb(model: nn.Module | str | None, seconds: float = 1.0, sample_rate: int | None = None,
                   batch: int = 1, device: str | torch.device = "cpu", threads: int = 1,
                   details: dict | None = None) -> float:
    """Peak memory in MiB that one inference forward adds on top of the loaded model.

    ``model`` is a module or a ``--model`` spec. On CPU the forward runs in a fresh Python
    process (so nothing this process allocated earlier hides the peak) with glibc's mmap
    threshold fixed at 128 KiB (else heap trimming moves RSS by ~10% run to run); the figure is
    VmHWM after the forward minus VmHWM reset to the RSS just before it. ``details``, if given,
    receives ``rss_mb``: the child's whole high-water RSS (torch itself included).
    """
    device = torch.device(device)
    if device.type == "cuda":
        module = resolve_model(model, sample_rate, device)
        x = example_input(module, seconds, sample_rate, batch, device)
        with torch.inference_mode():
            module(x[:, : round(WARMUP_SECONDS * model_sample_rate(module, sample_rate))])
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
            y = module(x)
            torch.cuda.synchronize(device)
            peak = torch.cuda.max_memory_allocated(device)
        del y
        return (peak - before) / MIB
    if device.type != "cpu":
        raise CocktailError(f"peak memory on {device.type} is not supported; use cpu or cuda")

    request: dict[str, Any] = {"seconds": seconds, "batch": batch, "threads": threads}
    with tempfile.TemporaryDirectory(prefix="cocktail-profile-") as tmp:
        if isinstance(model, nn.Module):
            request["sample_rate"] = model_sample_rate(model, sample_rate)
            request["imports"] = [type(model).__module__]
            if hasattr(model, "architecture") and dataclasses.is_dataclass(getattr(model, "config", None)):
                # Cost does not depend on weight values: rebuilding from the config suffices.
                request["architecture"] = model.architecture
                request["config"] = dataclasses.asdict(model.config)
            else:
                request["pickle"] = os.path.join(tmp, "model.pt")
                torch.save(model if device_of(model).type == "cpu" else cpu_copy(model), request["pickle"])
        else:
            module = resolve_model(model, None, "cpu")
            request["sample_rate"] = model_sample_rate(module, sample_rate)
            request["imports"] = [type(module).__module__]  # registers its architecture there too
            request["spec"] = model
            del module
        code = "from cocktailparty.eval.memory_speed import _memory_worker; _memory_worker()"
        proc = subprocess.run([sys.executable, "-c", code, json.dumps(request)], env=memory_worker_env(),
                              capture_output=True, text=True)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no message"]
        raise CocktailError(f"peak-memory measurement failed in its subprocess: {tail[0]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if not result["reset"]:
        log.warning("cannot reset VmHWM (/proc/self/clear_refs); peak memory is measured over the warm-up's peak")
    if details is not None:
        details["rss_mb"] = result["after_kib"] / 1024
    return (result["after_kib"] - result["before_kib"]) / 1024


# --- speed --------------------------------------------------------------------------------

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(step: Callable[[], Any], device: torch.device, repeats: int, budget_s: float,
               warmup: int = 2) -> tuple[float, int]:
    """Median wall time of ``step`` in ms after ``warmup`` calls; at least 3 timed runs, then
    stop at ``repeats`` or when ``budget_s`` is spent."""
    for _ in range(warmup):
        t0 = time.perf_counter()
        step()
        _sync(device)
        if time.perf_counter() - t0 > budget_s / 10:
            break  # a slow step is warm after one call; spend the budget on timed runs
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < max(repeats, 1):
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
        if len(times) >= min(3, repeats) and time.perf_counter() - started > budget_s:
            break
    return 1000 * statistics.median(times), len(times)


def real_time_factor(model: nn.Module, seconds: float = 1.0, sample_rate: int | None = None,
                     batch: int = 1, threads: int | None = 1, repeats: int = 10,
                     budget_s: float = 10.0) -> dict[str, float]:
    """Forward speed on the model's device: ``{"forward_ms", "rtf", "runs"}``.

    ``rtf`` is the median forward time over the audio duration (``seconds``; with a batch, the
    time per batch over ``seconds``, so divide by ``batch`` for per-track throughput). On CPU,
    ``threads`` intra-op threads (``None``: leave torch's setting) for the duration of the call.
    Every kernel is launched eagerly: a TDANet would replay the repeated input from a CUDA graph
    by itself (see :mod:`cocktailparty.core.cuda_graphs`), other models do not, and a cost table
    compares models alike.
    """
    device = device_of(model)
    x = example_input(model, seconds, sample_rate, batch, device)
    previous = torch.get_num_threads()
    if device.type == "cpu" and threads:
        torch.set_num_threads(threads)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), graphs_off():
            ms, runs = _median_ms(lambda: model(x), device, repeats, budget_s)
    finally:
        torch.set_num_threads(previous)
        model.train(was_training)
    return {"forward_ms": ms, "rtf": ms / 1000 / seconds, "runs": runs}


def train_step_ms(model: nn.Module, seconds: float = 1.0, sample_rate: int | None = None, batch: int = 1,
                  repeats: int = 10, budget_s: float = 10.0) -> dict[str, float]:
    """Median time of forward + loss + backward (no optimizer step) in train mode:
    ``{"fwd_bwd_ms", "train_peak_memory_mb" (CUDA only)}``. Gradients are cleared afterwards.
    Every kernel is launched eagerly, as in :func:`real_time_factor`."""
    device = device_of(model)
    x = example_input(model, seconds, sample_rate, batch, device)
    was_training = model.training
    model.train()

    def step() -> None:
        model(x).square().mean().backward()
        for p in model.parameters():
            p.grad = None

    try:
        with graphs_off():  # as real_time_factor: every kernel launched, whatever the model
            if device.type == "cuda":
                step()
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
                before = torch.cuda.memory_allocated(device)
            ms, _ = _median_ms(step, device, repeats, budget_s, warmup=1)
        result = {"fwd_bwd_ms": ms}
        if device.type == "cuda":
            result["train_peak_memory_mb"] = (torch.cuda.max_memory_allocated(device) - before) / MIB
    finally:
        model.train(was_training)
    return result
