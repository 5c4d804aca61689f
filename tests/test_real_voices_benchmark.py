"""benchmarks/real_voices.py: which sets it builds, which model meets which target, its exit code."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from cocktailparty.core import checkpoint
from cocktailparty.eval.evaluate import evaluate
from tests.helpers import load_benchmark, write_manifest
from tests.toys import BandSplit, BandSplitConfig

@pytest.fixture(scope="module")
def bench():
    return load_benchmark("real_voices")


def _tone_corpus(root: Path) -> Path:
    """Test speakers of two 'sources', each a tone of its own pitch."""
    rows, rate = [], 16000
    t = np.arange(3 * rate) / rate
    for k, (speaker, source) in enumerate([("a-low", "alpha"), ("b-mid", "beta"), ("b-high", "beta")]):
        (root / "test" / speaker).mkdir(parents=True)
        for u in range(2):
            rel = f"test/{speaker}/{speaker}_{u}.flac"
            sf.write(str(root / rel), (0.2 * np.sin(2 * np.pi * (300 + 1500 * k + 40 * u) * t)).astype(np.float32),
                     rate)
            rows.append(dict(utterance_id=f"{speaker}_{u}", path=rel, speaker=speaker, person=speaker,
                             split="test", duration=3.0, sample_rate=rate, source=source))
    write_manifest(root, rows)
    return root


@pytest.mark.slow
def test_scores_each_model_at_its_rate_and_fails_on_missed_targets(bench, tmp_path, capsys):
    corpus = _tone_corpus(tmp_path / "real")
    wide = checkpoint.save(BandSplit(BandSplitConfig(sample_rate=16000)), tmp_path / "wide.safetensors")
    narrow = checkpoint.save(BandSplit(BandSplitConfig(sample_rate=8000)), tmp_path / "narrow.safetensors")
    other = checkpoint.save(BandSplit(BandSplitConfig(sample_rate=8000)), tmp_path / "other8k.safetensors")
    work = tmp_path / "work"
    status = bench.main(["--real-corpus", str(corpus), "--models", str(wide), str(narrow), str(other),
                         "--default", "wide", "--narrowband", "narrow",
                         "--mixtures", "3", "--trials", "0", "--work", str(work), "--device", "cpu"])
    out = capsys.readouterr().out
    assert status == 1  # the 16 kHz targets are far out of reach of a band splitter, and more
    table = [line.split() for line in out.splitlines() if line.startswith(("real-16k", "real-8k"))]
    assert [(row[0], row[1]) for row in table] == [("real-16k", "wide"), ("real-8k", "narrow"), ("real-8k", "other8k")]
    assert table[0][7] == "10.00" and table[1][7] == "9.00"  # each rate's target, on its own model
    assert "9.00" not in table[2]  # another 8 kHz model is scored, without the 8 kHz default's target
    # The per-source means come from the per-mixture CSV and the set's metadata.
    with open(work / "real-16k" / "metadata.csv", encoding="utf-8") as handle:
        mixtures = list(csv.DictReader(handle))
    with open(work / "results" / "wide-real-16k.csv", encoding="utf-8") as handle:
        scores = {r["id"]: float(r["si_snri"]) for r in csv.DictReader(handle)}
    with_alpha = [scores[m["mixture_id"]] for m in mixtures if "a-low" in (m["s1_speaker"], m["s2_speaker"])]
    assert f"alpha {np.mean(with_alpha):.1f}" in out
    with open(work / "results" / "wide-real-16k.csv", encoding="utf-8") as handle:
        high = [float(r["high_band_si_snri"]) for r in csv.DictReader(handle)]
    assert table[0][6] == f"{np.mean(high):.2f}"  # the top band's own SI-SNRi
    missed = [line for line in out.splitlines() if line.startswith("MISSED")]
    assert any("real-reverb: not built (needs --rooms" in line for line in missed)
    assert any("tts-16k: not built (no --synth-corpus)" in line for line in missed)
    assert any("extraction" in line for line in missed)
    summary = json.loads((work / "summary.json").read_text())
    assert len(summary["rows"]) == 3 and summary["failures"] == [line[len("MISSED: "):] for line in missed]
    # A second run reuses the sets (same mixtures) and the finished per-mixture rows; results of
    # an earlier run without the top-band column are scored again, not refused.
    before = (work / "real-16k" / "metadata.csv").read_bytes()
    old = work / "results" / "wide-real-16k.csv"
    old.unlink()
    old.with_suffix(".json").unlink()
    evaluate(str(wide), work / "real-16k", old, device="cpu", progress=False)  # without the top band
    assert bench.main(["--real-corpus", str(corpus), "--models", str(wide), "--default", "wide",
                       "--mixtures", "3", "--trials", "0", "--work", str(work), "--device", "cpu"]) == 1
    assert (work / "real-16k" / "metadata.csv").read_bytes() == before
    with open(old, encoding="utf-8") as handle:
        assert "high_band_si_snri" in next(csv.DictReader(handle))


@pytest.mark.slow
def test_extraction_and_verification_rows(bench, tmp_path, one_thread):
    corpus = _tone_corpus(tmp_path / "real")
    result = bench.extraction_and_verification(corpus, "tunein-online-synth8k", 4, "cpu")
    assert torch.is_grad_enabled()  # the caller's grad mode is left as it was
    assert result["model"] == "tunein-online-synth8k" and result["rate"] == 8000 and result["trials"] == 4
    # Two target trials: each picks one talker or the other, and the EER is a rate.
    assert result["right_talker"] in (0.0, 0.5, 1.0) and 0.0 <= result["eer"] <= 1.0
    assert np.isfinite(result["si_snri"])


def _pitch_corpus(root: Path) -> Path:
    """Talkers as sines at their own pitch (the known-steering toy's range), three test and
    three validation persons of two utterances each, at 16 kHz."""
    rows, rate = [], 16000
    t = np.arange(int(1.5 * rate)) / rate
    for split, pitches in (("test", (150.0, 260.0, 380.0)), ("valid", (170.0, 280.0, 400.0))):
        for f0 in pitches:
            speaker = f"{split}-{f0:g}"
            (root / split / speaker).mkdir(parents=True)
            for u in range(2):
                rel = f"{split}/{speaker}/{speaker}_{u}.flac"
                envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 3 * t + u)
                sf.write(str(root / rel), (0.3 * np.sin(2 * np.pi * f0 * t + u) * envelope).astype(np.float32), rate)
                rows.append(dict(utterance_id=f"{speaker}_{u}", path=rel, speaker=speaker, person=speaker,
                                 split=split, duration=1.5, sample_rate=rate, source="pitch"))
    write_manifest(root, rows)
    return root


def test_separate_then_select_rows_and_table(bench, tmp_path, monkeypatch, one_thread, capsys):
    import importlib.util

    from cocktailparty.models import build_model

    corpus = _pitch_corpus(tmp_path / "real")
    separator = checkpoint.save(BandSplit(BandSplitConfig(sample_rate=16000, cutoff_hz=320.0)),
                                tmp_path / "split.safetensors")
    embedder = str(checkpoint.save(build_model("known-steering-test"), tmp_path / "known.safetensors"))
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "resemblyzer" else real_find_spec(name, *a))
    rows = bench.selection(corpus, str(separator), [embedder, "resemblyzer"], 8, "cpu")
    assert torch.is_grad_enabled()
    assert "pip install --no-deps resemblyzer" in rows["resemblyzer"]["error"]  # a row saying why, no failure
    row, best = rows[embedder], rows["best output"]
    assert row["separator"] == "split" and row["rate"] == 16000 and row["trials"] == 8
    assert row["right_talker"] in (0.0, 0.25, 0.5, 0.75, 1.0) and 0.0 <= row["eer"] <= 1.0
    assert row["scores"].shape == row["labels"].shape == (8,) and row["labels"].sum() == 4
    # The better output by SI-SNR bounds what any selector reaches.
    assert best["si_snri"] >= row["si_snri"] - 1e-9 and "eer" not in best

    valid = bench.selection(corpus, str(separator), [embedder], 8, "cpu", split="valid")
    bench.print_selection(rows, valid, str(separator))
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith(embedder))
    threshold = float(line.split()[-3])
    assert -1.0 <= threshold <= 1.0
    accepted = row["scores"] >= threshold
    assert line.split()[-2:] == [f"{np.mean(~accepted[:: 2]):.2f}", f"{np.mean(accepted[1:: 2]):.2f}"]
    assert "resemblyzer    not run: " in out
