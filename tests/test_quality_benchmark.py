"""benchmarks/quality.py's slot handling (its training is measured on a GPU, not here)."""

from __future__ import annotations


import pytest

from tests.helpers import load_benchmark

@pytest.fixture(scope="module")
def quality():
    return load_benchmark("quality")


def test_stop_after_needs_train_only(quality, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        quality.main(["--corpus", str(tmp_path), "--test-set", str(tmp_path), "--stop-after", "600"])
    assert exit_info.value.code == 2
    assert "--stop-after needs --train-only" in capsys.readouterr().err


def test_a_slot_too_short_for_a_model_exits_75_before_training_it(quality, tmp_path, capsys):
    out = tmp_path / "q"
    status = quality.main(["--corpus", str(tmp_path), "--train-only", "--stop-after", "5", "--models", "dprnn",
                           "--out", str(out)])
    assert status == quality.EXIT_SLOT_ENDED == 75
    assert "the slot ended while training dprnn; run the same command to continue" in capsys.readouterr().err
    assert not (out / "dprnn").exists()
