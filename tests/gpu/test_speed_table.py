"""benchmarks/speed.py on CUDA: every CUDA row of its smoke run is measured (tiny models and
inputs; whether they meet the targets says nothing at that size). The CPU side:
tests/test_speed_table.py."""

from __future__ import annotations

from tests.helpers import load_benchmark


def test_smoke_run_measures_every_cuda_row(capsys):
    speed = load_benchmark("speed")
    speed.main(["--smoke", "--only", "cuda"])
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(k for k, line in enumerate(lines) if line.startswith("measurement"))
    rows = [line for line in lines[header + 2:] if line.startswith("CUDA")]
    assert len(rows) == 18  # 9 rows for each of the two tiny models
    assert not [row for row in rows if "not measured" in row], out
