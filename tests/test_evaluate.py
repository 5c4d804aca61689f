import csv
import json

import numpy as np
import pytest
import soundfile
import torch

from cocktailparty.cli import main
from cocktailparty.core import checkpoint
from cocktailparty.core.errors import CocktailError
from cocktailparty.eval.evaluate import mean_ci, evaluate
from tests.toys import BandSplit, BandSplitConfig


def write_test_set(root, count=4, rate=8000, seconds=1.0):
    """A wsj0-2mix style tt/{mix,s1,s2} set of low-tone + high-tone mixtures."""
    rng = np.random.default_rng(0)
    t = np.arange(int(rate * seconds)) / rate
    for sub in ("mix", "s1", "s2"):
        (root / "tt" / sub).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        s1 = 0.3 * np.sin(2 * np.pi * rng.uniform(150, 600) * t)
        s2 = 0.3 * np.sin(2 * np.pi * rng.uniform(1800, 3000) * t) + 0.01 * rng.standard_normal(t.size)
        for sub, signal in (("mix", s1 + s2), ("s1", s1), ("s2", s2)):
            soundfile.write(root / "tt" / sub / f"utt{i}.wav", signal.astype(np.float32), rate, subtype="FLOAT")
    return root


def independent_si_snr(est, ref):
    est = est - est.mean()
    ref = ref - ref.mean()
    projection = np.dot(est, ref) / np.dot(ref, ref) * ref
    return 10 * np.log10(np.sum(projection**2) / np.sum((est - projection) ** 2))


@pytest.fixture()
def model_path(tmp_path):
    return str(checkpoint.save(BandSplit(BandSplitConfig()), tmp_path / "band.safetensors"))


@pytest.mark.slow
def test_rows_match_direct_scores_and_summary(tmp_path, model_path):
    data = write_test_set(tmp_path / "set")
    summary = evaluate(model_path, data, tmp_path / "r.csv", device="cpu", progress=False)
    rows = list(csv.DictReader(open(tmp_path / "r.csv")))
    assert [r["id"] for r in rows] == [f"utt{i}" for i in range(4)]
    model = BandSplit(BandSplitConfig())
    for row in rows:
        mix, _ = soundfile.read(data / "tt" / "mix" / f"{row['id']}.wav")
        refs = [soundfile.read(data / "tt" / s / f"{row['id']}.wav")[0] for s in ("s1", "s2")]
        est = model(torch.tensor(mix, dtype=torch.float32)[None])[0].detach().numpy().astype(np.float64)
        # The model puts the louder band first; pair by trying both orders.
        best = max(
            (np.mean([independent_si_snr(est[p[i]], refs[i]) for i in range(2)]), p) for p in ((0, 1), (1, 0))
        )
        improvement = best[0] - np.mean([independent_si_snr(mix, r) for r in refs])
        assert float(row["si_snri"]) == pytest.approx(improvement, abs=1e-3)
        assert float(row["sdri"]) > 10
    values = [float(r["si_snri"]) for r in rows]
    assert summary["si_snri"]["mean"] == pytest.approx(np.mean(values), abs=1e-5)
    assert summary["si_snri"]["n"] == 4
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["summary"]["sdri"]["mean"] == pytest.approx(summary["sdri"]["mean"])


@pytest.mark.slow
def test_resume_skips_scored_rows_and_drops_partial_line(tmp_path, model_path):
    data = write_test_set(tmp_path / "set", count=5)
    out = tmp_path / "r.csv"
    evaluate(model_path, data, out, device="cpu", limit=2, progress=False)
    assert len(list(csv.DictReader(open(out)))) == 2
    with open(out, "a") as handle:
        handle.write("utt2,1.0,2.")  # a run killed in the middle of a row
    first_rows = out.read_text().splitlines()[1:3]
    summary = evaluate(model_path, data, out, device="cpu", progress=False)
    lines = out.read_text().splitlines()
    assert lines[1:3] == first_rows  # untouched
    assert [line.split(",")[0] for line in lines[1:]] == ["utt0", "utt1", "utt2", "utt3", "utt4"]
    assert summary["si_snri"]["n"] == 5


@pytest.mark.slow
def test_resume_refuses_other_runs_results(tmp_path, model_path):
    data = write_test_set(tmp_path / "set", count=2)
    out = tmp_path / "r.csv"
    evaluate(model_path, data, out, device="cpu", progress=False)
    with pytest.raises(CocktailError, match="holds results of another run") as refused:
        evaluate(model_path, data, out, device="cpu", stoi=True, progress=False)
    # It says what differs, and only that.
    assert "(metrics si_snr, si_snri, sdr, sdri there, si_snr, si_snri, sdr, sdri, stoi now)" in str(refused.value)
    other = write_test_set(tmp_path / "other", count=2)
    with pytest.raises(CocktailError) as refused:
        evaluate(model_path, other, out, device="cpu", progress=False)
    assert f"(data '{data.resolve()}' there, '{other.resolve()}' now)" in str(refused.value)
    (tmp_path / "r.json").unlink()
    with pytest.raises(CocktailError, match="without the r.json that says which model and data it scored"):
        evaluate(model_path, data, out, device="cpu", progress=False)


def test_a_json_out_path_is_refused_before_any_work(tmp_path, model_path):
    """Its summary would be written to the same file as its rows (and overwrite them)."""
    data = write_test_set(tmp_path / "set", count=1)
    with pytest.raises(CocktailError, match=r"give the per-utterance CSV a \.csv name; the summary is written "
                                            r"beside it as r\.json"):
        evaluate(model_path, data, tmp_path / "r.json", device="cpu", progress=False)
    assert not (tmp_path / "r.json").exists()


def test_source_count_mismatch_is_explained(tmp_path):
    data = write_test_set(tmp_path / "set", count=1)
    three = checkpoint.save(BandSplit(BandSplitConfig(num_sources=3)), tmp_path / "three.safetensors")
    with pytest.raises(CocktailError, match="2 sources per mixture but the model separates 3"):
        evaluate(str(three), data, tmp_path / "r.csv", device="cpu", progress=False)


def test_confidence_interval_matches_t_distribution():
    values = [1.0, 2.0, 3.0, 4.0, float("nan")]
    result = mean_ci(values)
    # n = 4, sd = 1.2910, t(0.975, 3) = 3.1824: half-width = 3.1824 * 1.2910 / 2
    assert result["n"] == 4 and result["mean"] == pytest.approx(2.5)
    assert result["ci95"] == pytest.approx(3.18245 * 1.290994 / 2, rel=1e-4)


@pytest.mark.slow
def test_cli_prints_summary(tmp_path, model_path, capsys):
    data = write_test_set(tmp_path / "set", count=2)
    out = tmp_path / "res.csv"
    assert main(["-q", "evaluate", "--model", model_path, "--data", str(data), "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "si_snri" in printed and "sdri" in printed and str(out) in printed
    assert main(["-q", "evaluate", "--model", model_path, "--data", str(data), "--out", str(tmp_path / "hb.csv"),
                 "--device", "cpu", "--high-band"]) == 0
    assert "high_band_si_snri" in capsys.readouterr().out
    assert "high_band_si_snri" in next(csv.DictReader(open(tmp_path / "hb.csv")))
    assert main(["evaluate", "--model", model_path, "--data", str(tmp_path / "nowhere"), "--device", "cpu"]) == 1


def test_cli_shows_a_bar_on_a_terminal_only(tmp_path, model_path, run_cli):
    args = ["evaluate", "--model", model_path, "--data", write_test_set(tmp_path / "set", count=1),
            "--device", "cpu", "--out", tmp_path / "res.csv"]
    status, err = run_cli(args)
    assert status == 0 and "\revaluating:" in err and "1/1" in err
    run_cli.assert_silent(args, "evaluating")  # resumed: a bar over no mixtures would still show


@pytest.mark.slow
def test_default_out_is_named_as_help_says(tmp_path, model_path, monkeypatch, capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "(default: results-NAME.csv in the current folder, NAME being --model's name or file stem)" in help_text
    monkeypatch.chdir(tmp_path)
    assert main(["-q", "evaluate", "--model", model_path, "--data", str(write_test_set(tmp_path / "set", count=1)),
                 "--device", "cpu"]) == 0
    assert "per-utterance results: results-band.csv" in capsys.readouterr().out
    # Without --model: the bundled default's name.
    data = write_test_set(tmp_path / "set16k", count=1, rate=16000, seconds=0.5)
    assert main(["-q", "evaluate", "--data", str(data), "--device", "cpu"]) == 0
    assert "per-utterance results: results-tdanet-rooms16k.csv" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.glob("results-*")) == [
        "results-band.csv", "results-band.json", "results-tdanet-rooms16k.csv", "results-tdanet-rooms16k.json"]
