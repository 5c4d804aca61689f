"""Bad input never loses data and never shows a traceback.

Every case runs the real command line (``cocktailparty.cli.main``) and checks the same
promises: the exit status, a one-line error that names the file and the problem, no
traceback, no partial or temporary files left in the output folder, and outputs that
existed before untouched.
"""

import dataclasses
import json

import numpy as np
import pytest
import soundfile
import torch

from cocktailparty.cli import main
from cocktailparty.core import checkpoint
from cocktailparty.core.audio import resample
from cocktailparty.core.errors import AudioError
from cocktailparty.inference.separate import Separator
from tests.toys import Halves, HalvesConfig

RATE = 8000


@pytest.fixture()
def model_path(tmp_path):
    return checkpoint.save(Halves(HalvesConfig()), tmp_path / "model" / "halves.safetensors")


def speech_like(seconds=0.5, rate=RATE, channels=1):
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.shape)
    return np.tile(x.astype(np.float32), (channels, 1))


def separate(inputs, out, model_path, *extra):
    return main(["separate", *map(str, inputs), "-o", str(out), "--model", str(model_path), "--device", "cpu", *extra])


def snapshot(folder):
    """Every file under ``folder`` (hidden and temporary ones included) with its bytes."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def check_failure(capsys, caplog, status, expected_status, *fragments):
    """The run failed as it should: status, one line naming the file and problem, no traceback."""
    err = capsys.readouterr().err
    assert status == expected_status
    assert "Traceback" not in err and "Traceback" not in caplog.text
    messages = [r.getMessage() for r in caplog.records if r.levelname == "error"]
    messages += [line for line in err.splitlines() if line.startswith("cocktail: error:")]
    assert any(all(f in m for f in fragments) for m in messages), (fragments, messages)
    assert all("\n" not in m for m in messages)


# --- unreadable input -------------------------------------------------------------------------


def test_file_that_is_not_audio(tmp_path, model_path, capsys, caplog):
    bad = tmp_path / "notes.wav"
    bad.write_text("these are meeting notes, not a recording\n")
    out = tmp_path / "out"
    status = separate([bad], out, model_path)
    check_failure(capsys, caplog, status, 1, str(bad), "not a sound file")
    assert snapshot(out) == {}


def test_truncated_wav_header(tmp_path, model_path, capsys, caplog):
    good = tmp_path / "good.wav"
    soundfile.write(good, speech_like()[0], RATE)
    bad = tmp_path / "cut.wav"
    bad.write_bytes(good.read_bytes()[:30])  # stops inside the 'fmt ' chunk
    out = tmp_path / "out"
    status = separate([bad, good], out, model_path)
    check_failure(capsys, caplog, status, 1, str(bad), "not a sound file")
    # The bad file does not stop the good one.
    assert sorted(snapshot(out)) == ["good_s1.wav", "good_s2.wav"]


def test_wav_whose_data_is_cut_short(tmp_path, model_path, capsys, caplog):
    """A recording cut off mid-write (header promises more than is there): what is there separates."""
    good = tmp_path / "whole.wav"
    soundfile.write(good, speech_like(1.0)[0], RATE)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(good.read_bytes()[: 44 + 2 * RATE // 2])  # header + 0.5 s of 16-bit samples
    status = separate([cut], tmp_path / "out", model_path)
    assert status == 0 and "Traceback" not in capsys.readouterr().err
    s1, rate = soundfile.read(tmp_path / "out" / "cut_s1.wav")
    assert rate == RATE and s1.shape == (RATE // 2,)


def test_empty_file(tmp_path, model_path, capsys, caplog):
    empty = tmp_path / "empty.wav"
    empty.touch()
    out = tmp_path / "out"
    check_failure(capsys, caplog, separate([empty], out, model_path), 1, str(empty), "empty (0 bytes)")
    assert snapshot(out) == {}


def test_wav_header_with_no_samples(tmp_path, model_path, capsys, caplog):
    empty = tmp_path / "nothing.wav"
    soundfile.write(empty, np.zeros(0, np.float32), RATE)
    out = tmp_path / "out"
    check_failure(capsys, caplog, separate([empty], out, model_path), 1, str(empty), "no samples")
    assert snapshot(out) == {}


def test_one_sample_file_is_refused_in_words(tmp_path, model_path, capsys, caplog):
    """Below 10 ms there is no speech to separate: refused, saying how long the file is."""
    tiny = tmp_path / "tiny.wav"
    soundfile.write(tiny, np.array([0.5], np.float32), RATE)
    out = tmp_path / "out"
    check_failure(capsys, caplog, separate([tiny], out, model_path), 1, str(tiny), "1 sample", "at least 0.01 s")
    assert snapshot(out) == {}


def test_shortest_accepted_file_separates(tmp_path, model_path, capsys):
    """10 ms is enough, at any rate: also when resampling to the model's rate leaves few samples."""
    short = tmp_path / "short.wav"
    soundfile.write(short, speech_like(0.01, rate=44100)[0], 44100)
    assert separate([short], tmp_path / "out", model_path) == 0
    s1, rate = soundfile.read(tmp_path / "out" / "short_s1.wav")
    assert rate == 44100 and s1.shape == (441,)


def test_python_api_takes_any_length():
    separator = Separator(Halves(HalvesConfig()), device="cpu")
    for length in (1, 2, 5):
        assert separator(np.full(length, 0.1, np.float32), 48000).shape == (2, length)
    with pytest.raises(AudioError, match="no samples"):
        separator(np.zeros(0, np.float32), RATE)


@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_nan_or_inf_samples(tmp_path, model_path, capsys, caplog, bad_value):
    x = speech_like()[0]
    x[100:103] = bad_value
    bad = tmp_path / "damaged.wav"
    soundfile.write(bad, x, RATE, subtype="FLOAT")
    out = tmp_path / "out"
    check_failure(capsys, caplog, separate([bad], out, model_path), 1, str(bad), "3 NaN or infinite")
    assert snapshot(out) == {}
    # The Python API refuses them too, rather than returning NaN tracks.
    with pytest.raises(AudioError, match="NaN or infinite"):
        Separator(Halves(HalvesConfig()), device="cpu")(x, RATE)


def test_eight_channel_192khz_float(tmp_path, model_path, capsys):
    """Mixed down to mono, resampled to the model's rate and back: outputs at 192 kHz."""
    x = speech_like(0.5, rate=192000, channels=8) * np.linspace(0.2, 1.0, 8, dtype=np.float32)[:, None]
    big = tmp_path / "array.wav"
    soundfile.write(big, x.T, 192000, subtype="FLOAT")
    assert soundfile.info(str(big)).channels == 8
    assert separate([big], tmp_path / "out", model_path) == 0
    assert "Traceback" not in capsys.readouterr().err
    tracks = [soundfile.read(tmp_path / "out" / f"array_s{i}.wav") for i in (1, 2)]
    for samples, rate in tracks:
        assert rate == 192000 and samples.shape == (x.shape[1],) and np.isfinite(samples).all()
    # Scale-matched to the mixture: the two tracks add back up to the mono mix, as far as a
    # model at 8 kHz can hear it (the mix band-limited by the round trip 192k -> 8k -> 192k).
    heard = resample(resample(x.mean(0), 192000, RATE), RATE, 192000)
    total = tracks[0][0] + tracks[1][0]
    assert np.abs(total - heard).max() < 0.01


# --- folders ------------------------------------------------------------------------------------


def test_folder_with_no_audio(tmp_path, model_path, capsys, caplog):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "readme.txt").write_text("hello")
    (folder / "sub" / "table.csv").write_text("a,b\n1,2\n")
    out = tmp_path / "out"
    check_failure(capsys, caplog, separate([folder], out, model_path), 1, "no audio files found", str(folder))
    assert not out.exists()


def test_missing_input(tmp_path, model_path, capsys, caplog):
    missing = tmp_path / "nope.wav"
    check_failure(capsys, caplog, separate([missing], tmp_path / "out", model_path), 1, str(missing), "no such file")


# --- outputs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("below", [True, False], ids=["below-a-file", "is-a-file"])
def test_output_folder_that_cannot_be_made(tmp_path, model_path, capsys, caplog, below):
    """-o names a folder that cannot exist (a file is in the way): works as root, unlike chmod.
    (tests/test_cli_outputs.py checks every command that writes, before it starts work.)"""
    good = tmp_path / "a.wav"
    soundfile.write(good, speech_like()[0], RATE)
    blocker = tmp_path / "blocker"
    blocker.write_text("keep me")
    out = blocker / "out" if below else blocker
    check_failure(capsys, caplog, separate([good], out, model_path), 1, f"--out {out}: cannot write output there",
                  f"({blocker} is a file, not a folder)" if below else "(it is a file, not a folder)")
    assert blocker.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "blocker", "model"]


def test_failed_write_leaves_no_partial_set_and_keeps_old_outputs(tmp_path, model_path, capsys, caplog):
    """One track cannot be written (its name is taken by a folder): the other track is not
    written either, so a rerun does not skip a half-finished file, and --force replaces
    nothing until every track is ready."""
    good = tmp_path / "a.wav"
    soundfile.write(good, speech_like()[0], RATE)
    out = tmp_path / "out"
    out.mkdir()
    soundfile.write(out / "a_s1.wav", np.zeros(10, np.float32), RATE)
    (out / "a_s2.wav").mkdir()
    before = snapshot(out)
    check_failure(capsys, caplog, separate([good], out, model_path, "--force"), 1, "a_s2.wav")
    assert snapshot(out) == before  # old a_s1.wav untouched, no .part files

    (out / "a_s1.wav").unlink()
    check_failure(capsys, caplog, separate([good], out, model_path, "--force"), 1, "a_s2.wav")
    assert snapshot(out) == {}  # no lone a_s1.wav


def test_existing_outputs_are_not_overwritten(tmp_path, model_path, capsys, caplog):
    good = tmp_path / "a.wav"
    soundfile.write(good, speech_like()[0], RATE)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a_s1.wav").write_bytes(b"an older result")
    assert separate([good], out, model_path) == 0
    assert "exists; skipping" in caplog.text
    assert snapshot(out) == {"a_s1.wav": b"an older result"}


# --- checkpoints --------------------------------------------------------------------------------


def write_checkpoint(path, tensors, metadata):
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata=metadata)
    return path


def expect_model_refused(tmp_path, capsys, caplog, ckpt, *fragments):
    good = tmp_path / "a.wav"
    soundfile.write(good, speech_like()[0], RATE)
    out = tmp_path / "out"
    check_failure(capsys, caplog, separate([good], out, ckpt), 1, str(ckpt), *fragments)
    assert snapshot(out) == {}


def test_checkpoint_of_another_architecture(tmp_path, capsys, caplog):
    """Weights of one model under a header that names another: refused before any file runs."""
    tensors = {k: v.contiguous() for k, v in Halves(HalvesConfig()).state_dict().items()}
    ckpt = write_checkpoint(tmp_path / "mislabelled.safetensors", tensors,
                            {"format": checkpoint.FORMAT, "architecture": "tdanet", "config": "{}"})
    expect_model_refused(tmp_path, capsys, caplog, ckpt, "do not fit a tdanet")


def test_checkpoint_of_another_config(tmp_path, capsys, caplog):
    ckpt = checkpoint.save(Halves(HalvesConfig(channels=7)), tmp_path / "wide.safetensors")
    with __import__("safetensors").safe_open(str(ckpt), framework="pt") as f:
        tensors = {k: f.get_tensor(k).clone() for k in f.keys()}
        meta = dict(f.metadata())
    meta["config"] = json.dumps(dataclasses.asdict(HalvesConfig(channels=3)))
    write_checkpoint(ckpt, tensors, meta)
    expect_model_refused(tmp_path, capsys, caplog, ckpt, "do not fit a bad-input-test", "wrongly shaped")


@pytest.mark.parametrize("header,fragment", [
    ({"config": "{not json"}, "config"),
    ({"config": json.dumps({"channels": 3, "bogus": 1})}, "bogus"),
    ({"architecture": "no-such-model"}, "no-such-model"),
    ({"architecture": None}, "architecture"),
])
def test_checkpoint_with_a_damaged_header(tmp_path, capsys, caplog, header, fragment):
    tensors = {k: v.contiguous() for k, v in Halves(HalvesConfig()).state_dict().items()}
    meta = {"format": checkpoint.FORMAT, "architecture": "bad-input-test", "config": "{}"}
    meta.update(header)
    meta = {k: v for k, v in meta.items() if v is not None}
    ckpt = write_checkpoint(tmp_path / "odd.safetensors", tensors, meta)
    expect_model_refused(tmp_path, capsys, caplog, ckpt, fragment)


def test_truncated_checkpoint(tmp_path, model_path, capsys, caplog):
    cut = tmp_path / "cut.safetensors"
    data = model_path.read_bytes()
    cut.write_bytes(data[: len(data) - 40])
    expect_model_refused(tmp_path, capsys, caplog, cut, "corrupted or truncated")


def test_checkpoint_that_is_not_safetensors(tmp_path, capsys, caplog):
    junk = tmp_path / "model.pt"
    junk.write_bytes(b"\x80\x04\x95 a pickle, which we never load")
    expect_model_refused(tmp_path, capsys, caplog, junk, "not a readable safetensors checkpoint")


def test_foreign_safetensors_file(tmp_path, capsys, caplog):
    ckpt = write_checkpoint(tmp_path / "foreign.safetensors", {"w": torch.zeros(2)}, {"source": "another toolkit"})
    expect_model_refused(tmp_path, capsys, caplog, ckpt, "not a cocktailparty model")
