"""Speaker verification on mixtures, calibration, the attention plot, and the
``cocktail extract`` / ``cocktail verify`` commands."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from cocktailparty.cli import main
from cocktailparty.core import checkpoint
from cocktailparty.core.errors import CocktailError
from cocktailparty.data.speaker_corpus import SpeakerCorpus
from cocktailparty.data.levels import active_level_db
from cocktailparty.eval.metrics.detection import auc, eer
from cocktailparty.models import build_model
from cocktailparty.eval.verification import (SteeringScorer, calibrate, eer_threshold, labels, make_trials,
                                             render_trial, score_trials, write_calibrated_checkpoint)
from cocktailparty.models.tunein import EnrolledTalker, SpeakerMemory
from cocktailparty.models.tunein.plot import plot_cross_attention

RATE = 8000
TINY = dict(num_filters=16, kernel_size=4, stride=2, feature_dim=8, hidden=6, segment_size=32, low_dim=3,
            num_heads=2, generic_blocks=1, speaker_blocks=1, speech_blocks=2)
# speaker -> (person, split, f0). s3 and s3b are one recorded person behind two voices.
SPEAKERS = {"a1": ("pa1", "train", 100.0), "a2": ("pa2", "train", 130.0),
            "t1": ("p1", "test", 160.0), "t2": ("p2", "test", 190.0), "t3": ("p3", "test", 220.0),
            "t3b": ("p3", "test", 250.0), "t4": ("p4", "test", 280.0), "t5": ("p5", "test", 310.0)}


pytestmark = pytest.mark.usefixtures("one_thread")


def voice(f0: float, seconds: float, seed: int, rate: int = RATE) -> np.ndarray:
    """A speaker as a sine at its own f0 with a syllable-rate envelope."""
    t = np.arange(int(seconds * rate)) / rate
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 3 * t + seed)
    return (0.3 * np.sin(2 * np.pi * f0 * t + seed) * envelope).astype(np.float32)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    rows = []
    for speaker, (person, split, f0) in SPEAKERS.items():
        for u in range(3):
            rel = f"{split}/{speaker}/{speaker}-{u}.flac"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(root / rel), voice(f0, 0.9 + 0.2 * u, u), RATE)
            rows.append({"utterance_id": f"{speaker}-{u}", "path": rel, "speaker": speaker, "person": person,
                         "split": split, "sample_rate": RATE})
    with open(root / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


# --- models: tests.toys.KnownSteering (steering vectors known), a tiny Tune-In -------------


def known(path: Path, **metadata) -> Path:
    return checkpoint.save(build_model("known-steering-test"), path, metadata)


def tiny(mode: str, **overrides) -> nn.Module:
    torch.manual_seed(0)
    return build_model("tunein", **{**TINY, "mode": mode, **overrides}).eval()


# --- trials -------------------------------------------------------------------------------


def test_trials_are_seeded_balanced_and_unseen(corpus_dir):
    test = SpeakerCorpus.open(corpus_dir, split="test")
    train = SpeakerCorpus.open(corpus_dir, split="train")
    trials = make_trials(test, 40, seed=3, exclude=train)
    again = make_trials(corpus_dir, 40, seed=3, exclude=train)
    assert [t.id for t in trials] == [t.id for t in again]
    assert [t.sir_db for t in trials] == [t.sir_db for t in again]
    assert [t.id for t in make_trials(test, 40, seed=4)] != [t.id for t in trials]
    assert labels(trials).sum() == 20
    person = {s: p for s, (p, _, _) in SPEAKERS.items()}
    for t in trials:
        assert 0.0 <= abs(t.sir_db) <= 5.0
        speakers = (t.speaker, t.test[0][1], t.test[1][1])
        assert not set(speakers) & set(train.speakers)  # unseen speakers only
        enrolled, first, second = speakers
        assert person[second] not in (person[enrolled], person[first])
        if t.label:
            assert first == enrolled and t.enrollment != t.test[0][0]
        else:
            assert person[first] != person[enrolled]
    # Both signs of the level difference occur, and the rendering honours it.
    assert min(t.sir_db for t in trials) < 0 < max(t.sir_db for t in trials)
    t = trials[0]
    rendered = render_trial(t)
    other = rendered.mixture - rendered.clean
    assert active_level_db(rendered.clean, RATE) - active_level_db(other, RATE) == pytest.approx(t.sir_db, abs=0.05)
    assert rendered.mixture.shape == (t.length,)


def test_trials_refuse_training_speakers(corpus_dir):
    everyone = SpeakerCorpus.open(corpus_dir)
    with pytest.raises(CocktailError, match="unseen speakers"):
        make_trials(everyone, 10, exclude=SpeakerCorpus.open(corpus_dir, split="train"))


# --- calibration --------------------------------------------------------------------------


def test_eer_threshold_on_known_scores():
    # Targets uniform on [0.2, 1.2], non-targets on [-0.2, 0.8]: miss(t) = t - 0.2 and
    # false alarm(t) = 0.8 - t meet at t = 0.5, EER 0.3.
    grid = np.linspace(0.0, 1.0, 2001)
    scores = np.concatenate([grid + 0.2, grid - 0.2])
    y = np.concatenate([np.ones_like(grid), np.zeros_like(grid)])
    threshold, rate = eer_threshold(scores, y)
    assert threshold == pytest.approx(0.5, abs=1e-3)
    assert rate == pytest.approx(0.3, abs=1e-3) and rate == eer(scores, y)
    accepted = scores >= threshold
    assert (~accepted[y == 1]).mean() == pytest.approx(accepted[y == 0].mean(), abs=2e-3)
    # Separable scores: the threshold lies between the classes.
    threshold, rate = eer_threshold([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])
    assert rate == 0.0 and 0.2 < threshold <= 0.8


def test_known_steering_vectors_verify_and_calibrate(corpus_dir, tmp_path):
    trials = make_trials(SpeakerCorpus.open(corpus_dir, split="test"), 24, seed=1)
    model = checkpoint.load(known(tmp_path / "known.safetensors"))
    scores = score_trials(trials, {"known": SteeringScorer(model)})["known"]
    y = labels(trials)
    assert auc(scores, y) > 0.95
    cal = calibrate(scores, y)
    assert cal.eer < 0.1 and cal.num_trials == 24
    out = write_calibrated_checkpoint(tmp_path / "known.safetensors", tmp_path / "cal.safetensors", cal, seed=1)
    meta = checkpoint.read_metadata(out)
    assert meta["verify_threshold"] == pytest.approx(cal.threshold)
    assert meta["verify_calibration"]["trials"] == 24 and meta["verify_calibration"]["seed"] == 1


def test_tunein_scores_on_trials(corpus_dir):
    """The real model's scoring plumbing: any chunking, finite cosines."""
    trials = make_trials(SpeakerCorpus.open(corpus_dir, split="test"), 4, seed=0)
    scorer = SteeringScorer(tiny("online"), chunk_seconds=1.0)
    scores = score_trials(trials, {"tune-in": scorer})["tune-in"]
    assert scores.shape == (4,) and np.all(np.abs(scores) <= 1.0 + 1e-6)
    assert scorer.vectors(voice(200.0, 2.5, 0), RATE).shape == (2 * 2, 8)  # 2 chunks (tail merged) x C


# --- attention plot -----------------------------------------------------------------------


@pytest.mark.parametrize("sources", [2, 3])
def test_attention_plot_has_a_panel_per_steering_vector(tmp_path, sources):
    import matplotlib.image

    model = tiny("online", num_sources=sources)
    mixture = voice(160.0, 0.8, 0) + voice(250.0, 0.8, 1)
    plot = plot_cross_attention(model, mixture, tmp_path / "a" / "attention.png", sample_rate=RATE)
    assert len(plot.panels) == 1 + sources and plot.panels[0] == "mixture"
    image = matplotlib.image.imread(plot.path)
    assert image.ndim == 3 and image.shape[0] > image.shape[1] / 2


def test_attention_plot_offline_and_refusals(tmp_path):
    model = tiny("offline")
    enrollment = torch.from_numpy(voice(160.0, 1.3, 2))[None]
    plot = plot_cross_attention(model, voice(160.0, 0.6, 0), tmp_path / "off.png", enrollment=enrollment)
    assert plot.path.stat().st_size > 1000 and len(plot.panels) == 3
    with pytest.raises(CocktailError, match="autopilot"):
        plot_cross_attention(tiny("autopilot"), voice(160.0, 0.6, 0), tmp_path / "x.png")
    with pytest.raises(CocktailError, match="Tune-In"):
        plot_cross_attention(build_model("convtasnet"), voice(160.0, 0.6, 0), tmp_path / "x.png")


# --- cocktail verify ----------------------------------------------------------------------


@pytest.fixture()
def recordings(tmp_path) -> dict:
    files = {"enroll": tmp_path / "alice.wav", "with": tmp_path / "with.wav", "without": tmp_path / "without.wav"}
    sf.write(files["enroll"], voice(220.0, 2.0, 0, 16000), 16000)  # another rate and length than the tests
    sf.write(files["with"], voice(220.0, 1.2, 1) + 0.7 * voice(310.0, 1.2, 2), RATE)
    sf.write(files["without"], voice(160.0, 1.5, 1, 11025) + voice(280.0, 1.5, 2, 11025), 11025)
    return files


def test_verify_uses_the_calibrated_threshold(tmp_path, recordings, capsys):
    ckpt = known(tmp_path / "known.safetensors", verify_threshold=0.5)
    args = ["verify", "--enroll", str(recordings["enroll"]), str(recordings["with"]), str(recordings["without"]),
            "--model", str(ckpt), "--device", "cpu"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].endswith("threshold: 0.5000 (calibrated in known.safetensors)")
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(str(tmp_path))}
    assert rows[str(recordings["with"])][2] == "present" and rows[str(recordings["without"])][2] == "absent"
    assert float(rows[str(recordings["with"])][1]) > 0.6 > 0.5 > float(rows[str(recordings["without"])][1])

    assert main(args + ["--threshold", "1.5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["threshold"] == 1.5 and report["threshold_source"] == "--threshold"
    assert [r["decision"] for r in report["results"]] == [False, False]
    assert [Path(r["file"]).name for r in report["results"]] == ["with.wav", "without.wav"]


@pytest.mark.slow
def test_verify_and_extract_with_the_bundled_calibrated_tunein(tmp_path, recordings, capsys):
    assert main(["verify", "--json", "--enroll", str(recordings["enroll"]), str(recordings["with"]),
                 "--model", "tunein-online-synth8k", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "tunein-online-synth8k" in report["threshold_source"] and 0 < report["threshold"] < 1
    assert -1 <= report["results"][0]["score"] <= 1
    assert main(["-q", "extract", "--enroll", str(recordings["enroll"]), str(recordings["with"]), "-o",
                 str(tmp_path / "x"), "--model", "tunein-online-synth8k", "--device", "cpu"]) == 0
    assert len(list((tmp_path / "x").glob("*.wav"))) == 1


def test_verify_without_a_threshold_prints_scores_only(tmp_path, recordings, capsys):
    ckpt = known(tmp_path / "plain.safetensors")
    assert main(["verify", "--json", "--enroll", str(recordings["enroll"]), str(recordings["with"]),
                 "--model", str(ckpt)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["threshold"] is None and report["results"][0]["decision"] is None
    assert report["results"][0]["score"] > 0.6


def test_verify_and_extract_refuse_wrong_models_and_short_enrollments(tmp_path, recordings, capsys):
    auto = str(checkpoint.save(tiny("autopilot"), tmp_path / "auto.safetensors"))
    enroll, recording = str(recordings["enroll"]), str(recordings["with"])
    # A Tune-In model without a speaker space knows no voices: not as the model...
    assert main(["extract", "--enroll", enroll, recording, "-m", auto]) == 1
    err = capsys.readouterr().err
    assert "autopilot mode" in err and "or pass --embedder" in err
    # ...nor as the embedder that picks a separator's output.
    separator = str(known(tmp_path / "separator.safetensors"))
    assert main(["verify", "--enroll", enroll, recording, "-m", separator, "--embedder", auto]) == 1
    assert "autopilot mode" in capsys.readouterr().err
    short = tmp_path / "short.wav"
    sf.write(short, voice(220.0, 0.2, 0), RATE)
    ckpt = known(tmp_path / "known.safetensors")
    assert main(["verify", "--enroll", str(short), str(recordings["with"]), "-m", str(ckpt)]) == 1
    assert "enrollment is 0.20 s long" in capsys.readouterr().err


@pytest.mark.slow
def test_verify_and_extract_show_their_stages_and_files_on_a_terminal_only(tmp_path, recordings, run_cli):
    model = checkpoint.save(tiny("online"), tmp_path / "online.safetensors")
    common = ["--enroll", recordings["enroll"], recordings["with"], recordings["without"], "--model", model,
              "--device", "cpu"]
    for command, files in (["verify", "verifying"], ["extract", "extracting"]):
        args = [command, *common] + (["-o", tmp_path / "out", "--force"] if command == "extract" else [])
        status, err = run_cli(args)
        assert status == 0
        assert f"{command} 1/2: loading the model" in err and f"{command} 2/2: embedding the enrollment" in err
        assert f"\r{files}:" in err and "2/2" in err
        run_cli.assert_silent(args, files, "loading the model")


# --- cocktail extract ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["offline", "online"])
def test_extract_writes_one_file_per_input_at_its_rate(tmp_path, recordings, mode, caplog):
    ckpt = checkpoint.save(tiny(mode), tmp_path / f"{mode}.safetensors")
    out = tmp_path / "out"
    inputs = [recordings["with"], recordings["without"]]
    args = ["extract", "--enroll", str(recordings["enroll"]), *map(str, inputs), "-o", str(out),
            "--model", str(ckpt), "--device", "cpu"]
    assert main(args) == 0
    written = sorted(out.iterdir())
    assert [p.name for p in written] == ["with_alice.wav", "without_alice.wav"]
    for source, target in zip(inputs, written):
        info, original = sf.info(str(target)), sf.info(str(source))
        assert info.samplerate == original.samplerate and info.frames == original.frames and info.channels == 1
    if mode == "online":
        return
    # No overwrite without --force; with it, the same result again (deterministic).
    before = [p.read_bytes() for p in written]
    for p in written:
        p.write_bytes(b"keep")
    caplog.clear()
    assert main(args) == 0
    assert "use --force" in caplog.text
    assert all(p.read_bytes() == b"keep" for p in written)
    assert main(args + ["--force"]) == 0
    assert [p.read_bytes() for p in written] == before


def test_extract_keeps_the_enrolled_output_of_an_offline_model(tmp_path):
    """Output 1 of the Offline model with enrollment 1 = the enrolled talker's steering;
    the extractor returns exactly that row, whatever the enrollment's length."""
    model = tiny("offline")
    enrollment = voice(220.0, 1.7, 0)
    mixture = torch.from_numpy(voice(220.0, 0.7, 1) + voice(310.0, 0.7, 2))[None]
    talker = EnrolledTalker(model, enrollment, chunk_seconds=1.0)  # two enrollment chunks, pooled
    assert talker.config.num_sources == 1
    with torch.no_grad():
        got = talker(mixture)
        pools = [model.embed_enrollment(torch.from_numpy(enrollment[a:b])[None]).features.flatten(1, 2)
                 for a, b in ((0, RATE), (RATE, len(enrollment)))]
        own = model.embed_enrollment(mixture).features.flatten(1, 2)
        target = torch.cat(pools, 1)
        n = max(target.shape[1], own.shape[1])
        pad = lambda p: torch.nn.functional.pad(p, (0, 0, 0, n - p.shape[1]))  # noqa: E731
        valid = torch.stack([torch.arange(n) < target.shape[1], torch.arange(n) < own.shape[1]])[None]
        expected = model(mixture, SpeakerMemory(torch.stack([pad(target), pad(own)], 1), valid))[:, :1]
    assert got.shape == (1, 1, mixture.shape[-1])
    torch.testing.assert_close(got, expected, atol=3e-4, rtol=1e-3)


# --- waveform layouts ---------------------------------------------------------------------


def test_enrollment_and_scoring_take_every_reader_layout():
    """soundfile's (frames, channels), torchaudio's (channels, frames) tensors and (time,)
    give one answer, as for the Separator; an ambiguous shape is refused in one line."""
    model = tiny("online")
    scorer = SteeringScorer(model)
    mono = voice(220.0, 1.5, 0)
    mixture = voice(220.0, 1.2, 1) + voice(310.0, 1.2, 2)
    enrollment = scorer.embed_enrollment(mono, RATE)
    for layout in (np.stack([mono, mono], axis=1), torch.from_numpy(np.stack([mono, mono])), mono[:, None]):
        np.testing.assert_allclose(scorer.embed_enrollment(layout, RATE), enrollment, atol=1e-5)
    expected = scorer.score(enrollment, mixture, RATE)
    assert scorer.score(enrollment, np.stack([mixture, mixture], axis=1), RATE) == pytest.approx(expected, abs=1e-5)
    with pytest.raises(CocktailError, match="channels_first"):
        scorer.embed_enrollment(np.zeros((6, 6), np.float32), RATE)

    offline = tiny("offline")
    pool = EnrolledTalker(offline, mono).pool
    for layout in (np.stack([mono, mono], axis=1), torch.from_numpy(np.stack([mono, mono]))):
        torch.testing.assert_close(EnrolledTalker(offline, layout).pool, pool, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(EnrolledTalker(offline, np.stack([mono, mono], axis=1), channels_first=False).pool,
                               pool, atol=1e-5, rtol=1e-5)
    with pytest.raises(CocktailError, match="channels_first"):
        EnrolledTalker(offline, np.zeros((20, 20), np.float32))
