"""benchmarks/speed.py: one table of every speed target for every model, and its exit status
(1 when a target is missed or was not measured, CUDA rows on a machine without CUDA included).
The CUDA side on a GPU: tests/gpu/test_speed_table.py."""

from __future__ import annotations

import pytest
import torch

from cocktailparty.core.checkpoint import bundled_models, load_model
from cocktailparty.models import build_model
from tests.helpers import load_benchmark

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_MODELS = ("tiny-tdanet16k", "tiny-tunein8k")


@pytest.fixture(scope="module")
def speed():
    return load_benchmark("speed")


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _table(out: str) -> list[list[str]]:
    """The table's rows as cells (split on the column gaps), header first."""
    lines = out.splitlines()
    header = next(k for k, line in enumerate(lines) if line.startswith("measurement"))
    rows = []
    for line in lines[header:]:
        if not line.strip() or line.startswith(("left out", "load average", "MISSED", "all targets")):
            break
        if not line.startswith("---"):
            rows.append([cell.strip() for cell in line.split("  ") if cell.strip()])
    return rows


def test_rows_pass_only_on_a_measured_met_target(speed):
    met = speed.Row("latency", "m", "ms", target=speed.Target("<", 10.0), value=9.0)
    just_over = speed.Row("latency", "m", "ms", target=speed.Target("<", 10.0), value=10.0)
    at_limit = speed.Row("rtf", "m", "", target=speed.Target("<=", 0.25), value=0.25)
    unmeasured = speed.Row("training", "m", "samples/s", target=speed.Target(">=", 150.0), failure="needs CUDA")
    reported = speed.Row("one hour", "m", "x real time", value=900.0)
    reported_unmeasured = speed.Row("one hour", "m", "x real time", failure="needs CUDA")
    assert (met.verdict, just_over.verdict, at_limit.verdict) == ("ok", "MISSED", "ok")
    assert unmeasured.verdict == "not measured: needs CUDA" and unmeasured.missed
    assert reported.verdict == "reported" and not reported.missed and not reported_unmeasured.missed
    assert speed.exit_status([met, at_limit, reported, reported_unmeasured]) == 0
    assert speed.exit_status([met, unmeasured]) == 1
    assert speed.exit_status([just_over, reported]) == 1


def test_the_authors_figures_apply_to_their_network_only(speed):
    wanted = {"tdanet-rooms16k", "tdanet-real8k", "tunein-online-synth8k"}
    if not wanted <= set(bundled_models()):
        pytest.skip("bundled models missing")
    assert speed.like_the_authors(load_model("tdanet-rooms16k"))
    assert speed.like_the_authors(load_model("tdanet-real8k"))  # 1 ms frames: the same work per second
    assert not speed.like_the_authors(load_model("tunein-online-synth8k"))
    assert not speed.like_the_authors(build_model("tdanet", channels=256))


def test_without_cuda_the_cuda_rows_are_not_measured_and_fail_the_run(speed, no_cuda, capsys):
    assert speed.main(["--smoke", "--only", "cuda"]) == 1
    out = capsys.readouterr().out
    table = _table(out)
    assert table[0] == list(speed.COLUMNS)
    assert {row[1] for row in table[1:]} == set(TINY_MODELS)
    assert all(row[0].startswith("CUDA") and row[-1] == "not measured: needs CUDA" for row in table[1:])
    # Every row with a target is named as missed; rows without one (the one-hour file) are not.
    with_target = [row for row in table[1:] if row[4] != "-"]
    missed = [line for line in out.splitlines() if line.startswith("MISSED: ")]
    assert len(missed) == len(with_target) == 2 * len(TINY_MODELS)
    assert "left out (--only): cpu-latency, cpu-separate, cpu-onnx" in out


@pytest.mark.slow
def test_a_part_and_a_model_can_be_chosen(speed, capsys):
    status = speed.main(["--smoke", "--only", "cpu-latency", "--models", "tiny-tunein8k"])
    table = _table(capsys.readouterr().out)
    assert [row[:2] for row in table[1:]] == [["CPU 1 s, 1 thread, median", "tiny-tunein8k"],
                                              ["CPU 1 s, 1 thread, thread CPU time", "tiny-tunein8k"]]
    for row in table[1:]:
        ours, reference, target, verdict = row[2:]
        assert ours.endswith(" ms") and float(ours.split()[0]) > 0
        # No authors' figure for a Tune-In: reported, so no target to miss.
        assert (reference, target, verdict) == ("-", "-", "reported")
    assert status == 0


def _onnx_rows(speed, monkeypatch, tmp_path, walls):
    """cpu-onnx's rows for a run of the three commands with these wall times (None: they fail)."""
    def runs(*args):
        if walls is None:
            raise RuntimeError("export failed")
        return {name: {"wall_s": wall} for name, wall in walls.items()}

    monkeypatch.setattr(speed.cpu_speed, "onnx_against_torch", runs)
    monkeypatch.setattr(speed.cpu_speed, "write_recording", lambda folder, minutes: tmp_path / "meeting.wav")
    who = speed.Subject("tiny", None, 16000, 2, authors=False)
    return speed.cpu_onnx(who, speed.SMOKE, tmp_path)


def test_onnx_is_timed_against_torchs_default_and_like_for_like_against_fp32(speed, monkeypatch, tmp_path):
    default, fp32 = _onnx_rows(speed, monkeypatch, tmp_path, {"torch": 10.0, "torch fp32": 20.0, "onnx": 15.0})
    # The target stays on torch as a user runs it; the fp32 ratio is beside it, reported.
    assert (default.value, default.verdict, default.missed) == (1.5, "MISSED", True)
    assert (fp32.value, fp32.verdict, fp32.missed) == (0.75, "reported", False)
    assert fp32.measurement == default.measurement.replace(" wall", " fp32 wall")
    text = speed.notes([default, fp32])
    assert "torch runs fp32 here by default" in text  # the suite's CPU has no bf16 units
    assert "fp32 only" in text and "no bf16 kernels" in text and "like for like" in text


def test_a_failed_onnx_run_leaves_both_rows_unmeasured(speed, monkeypatch, tmp_path):
    default, fp32 = _onnx_rows(speed, monkeypatch, tmp_path, None)
    assert default.value is None and fp32.value is None
    assert default.missed and not fp32.missed
    assert fp32.verdict == default.verdict == "not measured: failed: RuntimeError: export failed"


def test_unknown_models_are_refused(speed, capsys):
    with pytest.raises(SystemExit):
        speed.main(["--smoke", "--only", "cpu-latency", "--models", "tdanet-nowhere"])
    assert "unknown model(s) tdanet-nowhere" in capsys.readouterr().err


@pytest.mark.slow
def test_smoke_run_prints_every_part_for_every_model(speed, no_cuda, capsys):
    status = speed.main(["--smoke"])
    out = capsys.readouterr().out
    table = _table(out)
    assert table[0] == list(speed.COLUMNS) and all(len(row) == len(speed.COLUMNS) for row in table[1:])
    for model in TINY_MODELS:
        measurements = [row[0] for row in table[1:] if row[1] == model]
        assert len(measurements) == 15  # 2 model(x), 2 eager, 2 eager training, 2 Separator, fast-path training,
        # 2 latency, RTF, RSS, 2 onnx
        assert sum(m.startswith("CUDA") for m in measurements) == 9
    cpu = [row for row in table[1:] if row[0].startswith("CPU")]
    assert cpu and all(row[2] != "-" and row[-1] in ("ok", "MISSED", "reported") for row in cpu), cpu
    assert status == 1  # the CUDA rows with targets, not measured here
    assert "note, CPU separate 0.05 min, onnx / torch fp32 wall: onnxruntime runs this model in fp32 only" in out
