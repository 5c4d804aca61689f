"""Every speed target of issue #19 in one table, for every bundled model; exits 1 when a target
is missed or could not be measured.

Columns: measurement | model | ours | reference | target | verdict. The parts (``--only``):

  cuda-eager      ``model(x)`` in fp32 with no flags: 1 s at batch 1 and at batch 10, and an eager
                  training step at batch 8 x 2 s (forward, SI-SNR, backward, clipping, Adam),
                  against the authors' eager TDANet on an H200; target: 1.5x their speed.
                  ``model(x)`` replays a repeated short input's shape from a CUDA graph by
                  itself, and in training its forward and backward
                  (``cocktailparty/core/cuda_graphs.py``); the same forwards and steps with
                  every kernel launched eagerly (``COCKTAIL_CUDA_GRAPHS=0``) are reported beside;
  cuda-separator  the Separator with its defaults: a folder of 1,000 recordings of 4 s (target
                  >= 3,000x real time) and one 1-hour recording (reported); the second pass
                  through one Separator counts (the first measures the model, captures graphs);
  cuda-training   the step ``cocktail train`` takes on CUDA with a config's defaults (its fast
                  path: the model compiled in place, the whole step one CUDA graph, in the
                  precision ``auto`` picks: bf16 for TDANet on a GPU with bf16 units), batch 8 x 2 s:
                  target >= 150 samples/s. Data loading is not in it;
  cpu-latency     one thread, 1 s: beat the authors' 361 ms median on the 2-core development CPU;
  cpu-separate    ``cocktail separate`` on a 10-minute recording, whole process: real-time factor
                  <= 0.25 and peak RSS < 1 GiB;
  cpu-onnx        ``--backend onnx`` against torch, same recording (2 minutes by default): onnx
                  wall time <= torch's as ``cocktail separate`` runs it (bf16 autocast on a CPU
                  with AMX bf16 units); beside it, reported, onnx against torch in fp32, the
                  only precision onnxruntime runs this model in (like for like).

``cuda`` and ``cpu`` name their three parts. Without CUDA the CUDA rows read "not measured:
needs CUDA" and count as missed: a CPU-only run never passes the whole table (``--only cpu``
leaves them out). The reference figures are the authors' TDANet, the paper's network at
16 kHz, so they stand beside (and set targets for) models of that network only (at any rate:
its frames are 1 ms apart); for the others those rows are reported with "-". Targets that are not ratios to a reference (3,000x,
150 samples/s, RTF, RSS, onnx vs torch) hold for every model. The CPU figures are for the
2-core development machine: other processes' load slows them (printed with the table).

    python benchmarks/speed.py                                  # everything this machine can run
    python benchmarks/speed.py --only cpu --models tdanet-rooms16k
    python benchmarks/speed.py --only cpu-latency               # the quick CPU rows (about a minute)
    python benchmarks/speed.py --smoke                          # tiny models and inputs: checks the script

The parts are the other benchmarks' measurements, imported: ``tdanet_speed.py`` (timing,
training steps), ``separate_throughput.py`` (the Separator's workloads), ``cpu_speed.py`` and
``long_recording.py`` (fresh-process CLI runs).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpu_speed  # noqa: E402  (benchmarks/cpu_speed.py)
import separate_throughput  # noqa: E402  (benchmarks/separate_throughput.py)
import tdanet_speed  # noqa: E402  (benchmarks/tdanet_speed.py)
from targets import finish, mark  # noqa: E402  (benchmarks/targets.py)

# Issue #19's figures for the authors' TDANet on an H200, fp32 eager, and its targets.
REF_1S_MS = tdanet_speed.REF["tdanet"]["gpu_1s_ms"]
REF_1S_BATCH10_MS = 52.0
REF_TRAIN_EAGER_SPS = 39.8
SPEEDUP = 1.5
MIN_FAST_TRAIN_SPS = 150.0

CUDA_PARTS = ("cuda-eager", "cuda-separator", "cuda-training")
CPU_PARTS = ("cpu-latency", "cpu-separate", "cpu-onnx")
GROUPS = {"cuda": CUDA_PARTS, "cpu": CPU_PARTS}
COLUMNS = ("measurement", "model", "ours", "reference", "target", "verdict")
TINY_TUNEIN = dict(mode="online", num_filters=16, feature_dim=8, hidden=6, segment_size=10, low_dim=3,
                   num_heads=2, generic_blocks=1, speaker_blocks=1, speech_blocks=1)


@dataclass(frozen=True)
class Sizes:
    """How much each part measures: the issue's workloads, or ``--smoke``'s tiny ones."""

    forward_seconds: float = 1.0
    train_batch: int = 8
    train_seconds: float = 2.0
    files: int = 1000
    file_seconds: float = 4.0
    long_minutes: float = 60.0
    separate_minutes: float = 10.0
    onnx_minutes: float = 2.0
    onnx_repeats: int = 2
    cpu_runs: int = 21
    cuda_runs: int = 30


SMOKE = Sizes(forward_seconds=0.1, train_batch=2, train_seconds=0.2, files=8, file_seconds=0.5, long_minutes=0.25,
              separate_minutes=0.05, onnx_minutes=0.05, onnx_repeats=1, cpu_runs=3, cuda_runs=3)


@dataclass(frozen=True)
class Target:
    """``value op limit`` must hold, op one of ``<``, ``<=``, ``>=``."""

    op: str
    limit: float

    def met(self, value: float) -> bool:
        return {"<": value < self.limit, "<=": value <= self.limit, ">=": value >= self.limit}[self.op]


@dataclass
class Row:
    """One line of the table; ``value`` stays None when the measurement was not taken, and
    ``failure`` says why."""

    measurement: str
    model: str
    unit: str
    fmt: str = "{:.1f}"
    reference: float | None = None
    target: Target | None = None
    value: float | None = None
    failure: str = ""
    note: str = ""  # printed under the table: what the figure means, where that is not obvious

    def _figure(self, number: float) -> str:
        return f"{self.fmt.format(number)} {self.unit}".strip()

    @property
    def verdict(self) -> str:
        if self.value is None:
            return f"not measured: {self.failure or 'skipped'}"
        return "reported" if self.target is None else mark(self.target.met(self.value))

    @property
    def missed(self) -> bool:
        """A target not met, or not measured."""
        return self.target is not None and (self.value is None or not self.target.met(self.value))

    def cells(self) -> tuple[str, ...]:
        return (self.measurement, self.model, "-" if self.value is None else self._figure(self.value),
                "-" if self.reference is None else self._figure(self.reference),
                "-" if self.target is None else f"{self.target.op} {self._figure(self.target.limit)}", self.verdict)


def attempt(row: Row, measure: Callable[[], float]) -> None:
    """Fill ``row`` with what ``measure`` returns; a measurement that fails on this stack is
    recorded as such and must not hide the others."""
    try:
        row.value = measure()
    except (Exception, SystemExit) as err:  # long_recording ends a failed CLI run with SystemExit
        row.failure = f"failed: {type(err).__name__}: {err}"[:100]


def render(rows: list[Row]) -> str:
    """The table: a header, a rule, one line per row."""
    lines = [COLUMNS] + [row.cells() for row in rows]
    widths = [max(len(line[k]) for line in lines) for k in range(len(COLUMNS))]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(text)


def notes(rows: list[Row]) -> str:
    """The rows' notes, one line per measurement that has one (the first model's wording)."""
    seen: dict[str, str] = {}
    for row in rows:
        if row.note and row.measurement not in seen:
            seen[row.measurement] = row.note
    return "\n".join(f"note, {measurement}: {note}" for measurement, note in seen.items())


def exit_status(rows: list[Row]) -> int:
    """1 when a row's target is missed or not measured (a ``MISSED:`` line each), else 0."""
    return finish([f"{row.measurement}, {row.model}: {row.cells()[2]} ({row.verdict})" for row in rows if row.missed])


def like_the_authors(model: torch.nn.Module) -> bool:
    """Whether the authors' figures compare with ``model``: theirs is the paper's TDANet
    (configs/tdanet-lrs2.yaml) at 16 kHz. Another architecture or size does other work per
    second of audio; another rate does not (TDANet's frames are 1 ms apart at any rate)."""
    from cocktailparty.core.config import CONFIG_DIR, load_config

    paper = dict(load_config(CONFIG_DIR / "tdanet-lrs2.yaml")["model"])
    if getattr(model, "architecture", None) != paper.pop("architecture"):
        return False
    config = dataclasses.asdict(model.config)
    return all(config.get(key) == value for key, value in paper.items() if key not in ("sample_rate", "dropout", "drop_path"))


@dataclass(frozen=True)
class Subject:
    """A model to measure: its name in the table, ``spec`` as ``--model`` takes it (None: the
    bundled default, as ``cocktail separate`` runs with no flags), its rate and whether the
    authors' figures apply to it."""

    name: str
    spec: str | None
    sample_rate: int
    num_sources: int
    authors: bool
    training_precision: str = "fp32"  # what ``training.precision: auto`` picks for it on this machine's GPU

    def reference(self, figure: float) -> float | None:
        """An authors' figure, where it compares with this model."""
        return figure if self.authors else None

    def faster_than(self, limit: float, op: str) -> Target | None:
        """A target set by an authors' figure, where it compares with this model."""
        return Target(op, limit) if self.authors else None


def subject(name: str, spec: str | None) -> Subject:
    from cocktailparty.core.checkpoint import load_model
    from cocktailparty.train.config import auto_precision
    from cocktailparty.train.hooks import auto_training_precision

    model = load_model(spec, "cpu")
    precision = auto_precision("cuda", auto_training_precision(model))[0]
    return Subject(name, spec, model.config.sample_rate, model.config.num_sources, like_the_authors(model), precision)


def cuda_eager(who: Subject, size: Sizes, measure: bool) -> list[Row]:
    """fp32 ``model(x)`` latency at batch 1 and 10 as a user gets it (the model replays a
    repeated shape from a CUDA graph by itself) and with every kernel launched eagerly
    (graphs off: reported beside the reference, no target); an eager fp32 training step."""
    batches = {1: REF_1S_MS, 10: REF_1S_BATCH10_MS}
    rows, eager_rows = [], []
    for batch, ref in batches.items():
        what = f"{size.forward_seconds:g} s x batch {batch}"
        rows.append(Row(f"CUDA model(x) fp32, {what}", who.name, "ms", "{:.2f}", who.reference(ref),
                        who.faster_than(ref / SPEEDUP, "<=")))
        eager_rows.append(Row(f"CUDA eager fp32 (graphs off), {what}", who.name, "ms", "{:.2f}", who.reference(ref)))
    what = f"{size.train_batch} x {size.train_seconds:g} s"
    train = Row(f"CUDA training eager fp32, {what}", who.name, "samples/s",
                "{:.1f}", who.reference(REF_TRAIN_EAGER_SPS), who.faster_than(REF_TRAIN_EAGER_SPS * SPEEDUP, ">="))
    eager_train = Row(f"CUDA training eager fp32 (graphs off), {what}", who.name, "samples/s", "{:.1f}",
                      who.reference(REF_TRAIN_EAGER_SPS))
    if not measure:
        return [*rows, *eager_rows, train, eager_train]
    from cocktailparty.core.checkpoint import load_model
    from cocktailparty.core.cuda_graphs import graphs_off

    torch.backends.cudnn.benchmark = True
    model = load_model(who.spec, "cuda")
    for batch, row, eager_row in zip(batches, rows, eager_rows):
        x = torch.randn(batch, int(size.forward_seconds * who.sample_rate), device="cuda")
        for measured, switch in ((row, contextlib.nullcontext), (eager_row, graphs_off)):
            def latency_ms() -> float:
                with torch.inference_mode(), switch():
                    return 1e3 * tdanet_speed.median_time(lambda: model(x), size.cuda_runs, cuda=True)

            attempt(measured, latency_ms)
    for measured, switch in ((train, contextlib.nullcontext), (eager_train, graphs_off)):
        def samples_per_s() -> float:
            with switch():
                return training_speed(who, size, "fp32", fast_path=False)

        attempt(measured, samples_per_s)
    return [*rows, *eager_rows, train, eager_train]


def training_speed(who: Subject, size: Sizes, precision: str, fast_path: bool) -> float:
    """Samples per second of training steps on CUDA in ``precision`` from the model's weights, at
    batch ``size.train_batch`` of ``size.train_seconds``; the fast path as ``cocktail train`` takes
    it when ``training.compile`` and ``training.cuda_graph`` are left at auto."""
    from cocktailparty.core.checkpoint import load_model

    torch.manual_seed(0)
    net = load_model(who.spec, "cuda").train()
    samples = int(size.train_seconds * who.sample_rate)
    mix = torch.randn(size.train_batch, samples, device="cuda")
    sources = torch.randn(size.train_batch, who.num_sources, samples, device="cuda")
    if fast_path:
        net.compile()  # in place, as the trainer does: a model may narrow it (TDANet: its shared block)
        step = tdanet_speed.graphed_train_step(net, mix, sources, precision)
    else:
        step = tdanet_speed.eager_train_step(net, mix, sources, precision)
    return size.train_batch / tdanet_speed.median_time(step, max(5, size.cuda_runs // 4), cuda=True)


def cuda_training(who: Subject, size: Sizes, measure: bool) -> list[Row]:
    """The trainer's default step: fast path, in the precision ``training.precision: auto`` picks."""
    precision = who.training_precision if measure else "auto"
    row = Row(f"CUDA training fast path {precision}, {size.train_batch} x {size.train_seconds:g} s", who.name,
              "samples/s", target=Target(">=", MIN_FAST_TRAIN_SPS))
    if measure:
        attempt(row, lambda: training_speed(who, size, precision, fast_path=True))
    return [row]


def cuda_separator(who: Subject, size: Sizes, measure: bool) -> list[Row]:
    """The Separator's steady-state speed in x real time, on recordings at the model's rate."""
    folder = Row(f"CUDA Separator, {size.files} files x {size.file_seconds:g} s", who.name, "x real time", "{:.0f}",
                 target=Target(">=", separate_throughput.TARGET_FOLDER_X))
    long = Row(f"CUDA Separator, one {size.long_minutes:g}-min file", who.name, "x real time", "{:.0f}")
    if not measure:
        return [folder, long]
    from cocktailparty.core.checkpoint import load_model
    from cocktailparty.inference.separate import Separator

    separator = Separator(load_model(who.spec, "cuda"), device="cuda")
    workloads = [(folder, lambda: separate_throughput.synthesize(size.files, size.file_seconds, who.sample_rate, seed=0)),
                 (long, lambda: [separate_throughput.one_hour(size.long_minutes * 60, who.sample_rate, seed=1)])]
    for row, recordings in workloads:
        def steady_speed() -> float:
            audio = recordings()
            seconds = sum(x.shape[0] for x in audio) / who.sample_rate
            separate_throughput.timed_pass(separator, audio, who.sample_rate, cuda=True)  # measures, captures
            return seconds / separate_throughput.timed_pass(separator, audio, who.sample_rate, cuda=True)[0]

        attempt(row, steady_speed)
    return [folder, long]


def cpu_latency(who: Subject, size: Sizes, folder: Path) -> list[Row]:
    """The median wall time of a 1-s forward on one thread, and its thread CPU time: unlike
    wall time, barely moved by other processes, so it tells a slow model from a loaded machine."""
    wall = Row("CPU 1 s, 1 thread, median", who.name, "ms", "{:.0f}", who.reference(cpu_speed.REF_CPU_1S_MS),
               who.faster_than(cpu_speed.REF_CPU_1S_MS, "<"))
    cpu = Row("CPU 1 s, 1 thread, thread CPU time", who.name, "ms", "{:.0f}")
    run: dict = {}

    def median_ms() -> float:
        run.update(cpu_speed.child_latency(who.spec, size.cpu_runs, keep_memory=True))
        return run["median_ms"]

    attempt(wall, median_ms)
    cpu.value, cpu.failure = run.get("cpu_median_ms"), wall.failure  # the same runs'
    return [wall, cpu]


def cpu_separate(who: Subject, size: Sizes, folder: Path) -> list[Row]:
    minutes = size.separate_minutes
    rtf = Row(f"CPU separate {minutes:g} min, real-time factor", who.name, "", "{:.3f}",
              target=Target("<=", cpu_speed.MAX_RTF))
    rss = Row(f"CPU separate {minutes:g} min, peak RSS", who.name, "MiB", "{:.0f}",
              target=Target("<", cpu_speed.MAX_RSS_MB))
    run: dict = {}

    def real_time_factor() -> float:
        run.update(cpu_speed.separate(cpu_speed.write_recording(folder, minutes), cpu_speed.model_flags(who.spec)))
        return run["rtf"]

    attempt(rtf, real_time_factor)
    rss.value, rss.failure = run.get("peak_rss_mb"), rtf.failure  # the same run's
    return [rtf, rss]


def cpu_onnx(who: Subject, size: Sizes, folder: Path) -> list[Row]:
    """onnx against torch as ``cocktail separate`` runs it (the target), and against torch in
    fp32, the precision onnxruntime runs (like for like; reported)."""
    measurement = f"CPU separate {size.onnx_minutes:g} min, onnx / torch"
    default = Row(f"{measurement} wall", who.name, "x", "{:.2f}", target=Target("<=", cpu_speed.MAX_ONNX_RATIO))
    fp32 = Row(f"{measurement} fp32 wall", who.name, "x", "{:.2f}", note=cpu_speed.ONNX_NOTE)
    default.note = (f"torch runs {cpu_speed.torch_default_precision()} here by default, as a user runs it "
                    f"(COCKTAIL_PRECISION=fp32 for the next row).")
    model_folder = folder / who.name
    model_folder.mkdir(exist_ok=True)
    runs: dict[str, dict] = {}

    def ratio() -> float:
        runs.update(cpu_speed.onnx_against_torch(who.spec, cpu_speed.write_recording(folder, size.onnx_minutes),
                                                 size.onnx_repeats, model_folder))
        return runs["onnx"]["wall_s"] / runs["torch"]["wall_s"]

    attempt(default, ratio)
    if runs:  # the same runs'
        fp32.value = runs["onnx"]["wall_s"] / runs["torch fp32"]["wall_s"]
    fp32.failure = default.failure
    return [default, fp32]


CUDA_MEASURES = {"cuda-eager": cuda_eager, "cuda-separator": cuda_separator, "cuda-training": cuda_training}
CPU_MEASURES = {"cpu-latency": cpu_latency, "cpu-separate": cpu_separate, "cpu-onnx": cpu_onnx}


def parts_chosen(only: list[str] | None) -> list[str]:
    """``--only``'s parts in table order, groups expanded; every part without it."""
    if not only:
        return [*CUDA_PARTS, *CPU_PARTS]
    wanted = {part for name in only for part in GROUPS.get(name, (name,))}
    return [part for part in (*CUDA_PARTS, *CPU_PARTS) if part in wanted]


def tiny_models(folder: Path) -> dict[str, str]:
    """``--smoke``'s models, saved as checkpoints in ``folder``: a TDANet and a Tune-In, so that
    the table holds a model of each kind. Their names and paths."""
    from cocktailparty.core.checkpoint import save
    from cocktailparty.models import build_model

    torch.manual_seed(0)
    models = {"tiny-tdanet16k": build_model("tdanet", sample_rate=16000, **separate_throughput.TINY),
              "tiny-tunein8k": build_model("tunein", sample_rate=8000, **TINY_TUNEIN)}
    return {name: str(save(model, folder / f"{name}.safetensors")) for name, model in models.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=[*GROUPS, *CUDA_PARTS, *CPU_PARTS],
                        help="run only these parts (default: all); the others are left out of the table")
    parser.add_argument("--models", nargs="+", help="bundled models to measure (default: every one)")
    parser.add_argument("--minutes", type=float, default=Sizes.separate_minutes,
                        help="cpu-separate's recording length (default: %(default)s)")
    parser.add_argument("--onnx-minutes", type=float, default=Sizes.onnx_minutes,
                        help="cpu-onnx's recording length (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=Sizes.cpu_runs,
                        help="timed 1-s forwards of cpu-latency (median; default: %(default)s)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny models and inputs, every part this machine can run: checks the script in seconds")
    args = parser.parse_args(argv)

    from cocktailparty.core.checkpoint import DEFAULT_MODEL, bundled_models

    parts = parts_chosen(args.only)
    cuda = torch.cuda.is_available()
    size = SMOKE if args.smoke else Sizes(separate_minutes=args.minutes, onnx_minutes=args.onnx_minutes,
                                          cpu_runs=args.runs)
    with tempfile.TemporaryDirectory(prefix="cocktail-speed-") as tmp:
        folder = Path(tmp)
        if args.smoke:
            specs = tiny_models(folder)
        else:
            # The default runs as a user runs it, with no --model flag.
            specs = {name: None if name == DEFAULT_MODEL else name for name in bundled_models()}
        unknown = sorted(set(args.models or ()) - set(specs))
        if unknown:
            parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(specs)}")
        subjects = [subject(name, spec) for name, spec in specs.items() if not args.models or name in args.models]

        print(f"speed table: {torch.cuda.get_device_name() if cuda else 'no CUDA device'}, {os.cpu_count()} CPU "
              f"cores, load average {cpu_speed.load()}, torch {torch.__version__}"
              f"{'; smoke run: tiny models and inputs' if args.smoke else ''}", flush=True)
        rows: list[Row] = []
        for part in parts:
            for who in subjects:
                print(f"  ... {part}, {who.name}", file=sys.stderr, flush=True)
                if part in CUDA_MEASURES:
                    part_rows = CUDA_MEASURES[part](who, size, measure=cuda)
                    for row in part_rows if not cuda else ():
                        row.failure = "needs CUDA"
                else:
                    part_rows = CPU_MEASURES[part](who, size, folder)
                rows += part_rows
    print(render(rows))
    if notes(rows):
        print(f"\n{notes(rows)}")
    left_out = [part for part in (*CUDA_PARTS, *CPU_PARTS) if part not in parts]
    if left_out:
        print(f"left out (--only): {', '.join(left_out)}")
    print(f"load average at the end {cpu_speed.load()}")
    return exit_status(rows)


if __name__ == "__main__":
    sys.exit(main())
