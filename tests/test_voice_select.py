"""Separate, then select by voice: ``inference.voice_select`` and ``cocktail extract`` /
``cocktail verify`` with a plain separator (``--embedder``).

The separator is the band-split toy (a talker per frequency band) and the embedder the
known-steering toy (a bump at the strongest pitch), so which output is which talker, and
how close each is to the enrollment, are known."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cocktailparty.cli import main
from cocktailparty.core import checkpoint
from cocktailparty.core.errors import CocktailError
from cocktailparty.inference import voice_select
from cocktailparty.inference.voice_select import (ResemblyzerEmbedder, TalkerModelEmbedder, VoiceSelector,
                                                  load_embedder)
from cocktailparty.models import build_model
from tests.helpers import HIGH_PITCH, LOW_PITCH, pitch_share, voice, voice_models
from tests.toys import TinyConfig, TinyModel

RATE = 8000
LOW, HIGH = LOW_PITCH, HIGH_PITCH  # the two talkers, on either side of the band split's cutoff

pytestmark = pytest.mark.usefixtures("one_thread")


def pitch_embedder(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    """A unit vector with a bump at the strongest frequency of 80-420 Hz: one talker's 'voice'."""
    spectrum = np.abs(np.fft.rfft(wav))
    freqs = np.fft.rfftfreq(len(wav), 1.0 / sample_rate)
    peak = freqs[np.argmax(spectrum * ((freqs > 80) & (freqs < 420)))]
    bump = np.exp(-(((np.linspace(80, 420, 69) - peak) / 6.0) ** 2))
    return bump / np.linalg.norm(bump)


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    """Enrollments of each talker, a mixture of both (the low one louder) and one of neither."""
    paths = {name: tmp_path / f"{name}.wav" for name in ("low", "high", "both", "neither")}
    sf.write(paths["low"], voice(LOW, 1.5, 0), RATE)
    sf.write(paths["high"], voice(HIGH, 1.5, 0), RATE)
    sf.write(paths["both"], voice(LOW, 1.2, 1) + 0.7 * voice(HIGH, 1.2, 2), RATE)
    sf.write(paths["neither"], voice(150.0, 1.2, 1) + voice(400.0, 1.2, 2), RATE)
    return paths


@pytest.fixture
def models(tmp_path) -> dict[str, str]:
    return voice_models(tmp_path)


# --- the selector -------------------------------------------------------------------------


def test_selector_picks_the_output_closest_to_the_enrollment():
    tracks = np.stack([voice(LOW, 1.0, 1), voice(HIGH, 1.0, 2), voice(150.0, 1.0, 3)])  # (C, time)
    for enrolled, expected in ((LOW, 0), (HIGH, 1), (150.0, 2)):
        selector = VoiceSelector(pitch_embedder, voice(enrolled, 1.3, 0), RATE)
        similarities = selector.similarities(tracks, RATE)
        assert similarities.shape == (3,)
        assert selector.pick(tracks, RATE) == expected
        assert similarities[expected] == pytest.approx(1.0, abs=1e-6) and np.delete(similarities, expected).max() < 0.5
        assert selector.score(tracks, RATE) == similarities.max()
        embedded = []  # one embedding per output, announced before it runs (serve's progress)
        assert selector.closest(tracks, RATE, embedded.append) == (expected, similarities.max())
        assert embedded == [0, 1, 2]
    # Verification: an enrolled talker in none of the outputs scores low.
    assert VoiceSelector(pitch_embedder, voice(400.0, 1.3, 0), RATE).score(tracks, RATE) < 0.5


def test_talker_model_embedder_is_the_enrollment_vector_of_verify():
    from cocktailparty.eval.verification import SteeringScorer

    model = build_model("known-steering-test")
    wav = voice(LOW, 1.5, 0)
    embedding = TalkerModelEmbedder(model)(wav, RATE)
    np.testing.assert_allclose(embedding, SteeringScorer(model).embed_enrollment(wav, RATE))
    assert np.linalg.norm(embedding) == pytest.approx(1.0)


def test_resemblyzer_is_optional_and_refused_in_words_when_missing(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "resemblyzer" else real_find_spec(name, *a))
    for make in (ResemblyzerEmbedder, lambda: load_embedder("resemblyzer")):
        with pytest.raises(CocktailError, match="pip install --no-deps resemblyzer"):
            make()


def test_embedder_names(models):
    assert isinstance(load_embedder(models["embedder"]), TalkerModelEmbedder)
    with pytest.raises(CocktailError, match="knows talkers by their voice.*is a band-split-test"):
        load_embedder(models["separator"])  # a separator has no voices to embed
    with pytest.raises(CocktailError, match="--embedder 'resemblizer': expected 'tunein', 'resemblyzer' or"):
        load_embedder("resemblizer")
    assert voice_select.calibrated_threshold("tdanet-rooms16k", checkpoint.DEFAULT_ENROLLED_MODEL) == \
        voice_select.calibrated_threshold("tdanet-rooms16k", "tunein")
    assert voice_select.calibrated_threshold("runs/mine.safetensors", "tunein") is None


# --- cocktail extract / verify with a separator ----------------------------------------------


@pytest.mark.parametrize("enrolled,kept,dropped", [("high", HIGH, LOW), ("low", LOW, HIGH)])
def test_extract_keeps_the_separated_output_of_the_enrolled_voice(tmp_path, files, models, enrolled, kept, dropped):
    out = tmp_path / "out"
    assert main(["-q", "extract", "--enroll", str(files[enrolled]), str(files["both"]), "-o", str(out),
                 "--model", models["separator"], "--embedder", models["embedder"], "--device", "cpu"]) == 0
    samples, rate = sf.read(out / f"both_{enrolled}.wav")
    assert rate == RATE and samples.shape == (int(1.2 * RATE),)
    assert pitch_share(samples, kept, RATE) > 10 * pitch_share(samples, dropped, RATE)


def test_verify_scores_the_closest_separated_output(tmp_path, files, models, capsys, caplog):
    args = ["verify", "--json", "--enroll", str(files["high"]), str(files["both"]), str(files["neither"]),
            "--model", models["separator"], "--embedder", models["embedder"], "--device", "cpu"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["threshold"] is None and "no calibrated threshold" in caplog.text  # a checkpoint of ours
    present, absent = (r["score"] for r in report["results"])
    assert present > 0.9 > 0.5 > absent
    # The score is the selector's: the largest cosine over the separated outputs.
    from cocktailparty.inference.separate import Separator

    separator = Separator(checkpoint.load_model(models["separator"]), device="cpu")
    selector = VoiceSelector(load_embedder(models["embedder"]), voice(HIGH, 1.5, 0), RATE)
    both, _ = sf.read(files["both"], dtype="float32")
    assert present == pytest.approx(selector.score(separator(both, RATE), RATE), abs=1e-5)

    assert main(args + ["--threshold", "0.7"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["threshold_source"] == "--threshold"
    assert [r["decision"] for r in report["results"]] == [True, False]


def test_a_plain_separator_selects_with_the_default_embedder(tmp_path, files, models, monkeypatch):
    """No --embedder with a plain separator: the default embedder (here replaced by the toy,
    the bundled Tune-In model being slow to run in a unit test)."""
    monkeypatch.setattr(voice_select, "DEFAULT_EMBEDDER", models["embedder"])
    out = tmp_path / "out"
    assert main(["-q", "extract", "--enroll", str(files["high"]), str(files["both"]), "-o", str(out),
                 "--model", models["separator"], "--device", "cpu"]) == 0
    assert (out / "both_high.wav").is_file()


def test_models_that_cannot_separate_first_are_refused(tmp_path, files, models, capsys):
    single = checkpoint.save(TinyModel(TinyConfig(num_sources=1)), tmp_path / "one.safetensors")
    for command in ("extract", "verify"):
        assert main([command, "--enroll", str(files["high"]), str(files["both"]), "--model", str(single),
                     "--embedder", models["embedder"], "--device", "cpu"]) == 1
        assert "does not separate two or more talkers" in capsys.readouterr().err


@pytest.mark.slow
def test_extract_and_verify_default_to_the_default_separator_and_tunein(tmp_path, files, capsys):
    """The bundled default separator and the bundled Tune-In model's speaker vectors, with the
    threshold calibrated for the pair."""
    assert main(["verify", "--json", "--enroll", str(files["high"]), str(files["both"]), "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["threshold_source"] == f"calibrated for {checkpoint.DEFAULT_MODEL} with tunein"
    assert report["threshold"] == voice_select.CALIBRATED_THRESHOLDS[(checkpoint.DEFAULT_MODEL, "tunein")]
    assert -1 <= report["results"][0]["score"] <= 1
    assert main(["-q", "extract", "--enroll", str(files["high"]), str(files["both"]), "-o", str(tmp_path / "x"),
                 "--device", "cpu"]) == 0
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["both_high.wav"]
