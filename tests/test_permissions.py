"""Files written atomically (temporary file, then rename) get the permissions a plain
``open(path, "w")`` would give: 0666 less the umask for a new file, the old mode for a
replaced one; never mkstemp's 0600 whatever the umask."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from cocktailparty.core import audio, checkpoint
from cocktailparty.inference.export import export_onnx
from cocktailparty.models import build_model

TINY_CONVTASNET = dict(num_filters=16, kernel_size=8, stride=4, bottleneck=8, hidden=16, skip=8,
                       num_layers=2, num_repeats=2)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture()
def umask():
    before = os.umask(0o022)
    yield os.umask
    os.umask(before)


@pytest.mark.parametrize("mask,expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_follow_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    model = build_model("convtasnet", **TINY_CONVTASNET).eval()
    written = [
        audio.write(tmp_path / "out.wav", np.zeros(800, np.float32), 8000),
        *audio.write_all([tmp_path / "s1.flac", tmp_path / "s2.flac"], [np.zeros(800, np.float32)] * 2, 8000),
        checkpoint.save(model, tmp_path / "model.safetensors"),
        export_onnx(model, tmp_path / "model.onnx", example_seconds=0.2),
    ]
    plain = tmp_path / "plain.txt"
    plain.write_text("written with open()")
    assert mode(plain) == expected
    assert {p.name: mode(p) for p in written} == {p.name: expected for p in written}
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_replacing_a_file_keeps_its_mode(tmp_path, umask):
    target = audio.write(tmp_path / "out.wav", np.zeros(800, np.float32), 8000)
    os.chmod(target, 0o640)
    audio.write(target, np.ones(800, np.float32) * 0.5, 8000)
    assert mode(target) == 0o640
    assert audio.read(target)[0].max() == pytest.approx(0.5, abs=1e-4)


def test_text_and_bytes_writers(tmp_path, umask):
    from cocktailparty.core import atomic

    umask(0o022)
    text, data = tmp_path / "a.json", tmp_path / "b.bin"
    atomic.write_text(text, "{}\n")
    atomic.write_bytes(data, b"\x00\x01")
    assert (text.read_text(), data.read_bytes()) == ("{}\n", b"\x00\x01")
    assert mode(text) == mode(data) == 0o644
    atomic.write_text(text, "a\r\nb\n", newline="")  # kept as written, for CSV
    assert text.read_bytes() == b"a\r\nb\n"


def test_a_failed_write_leaves_the_old_file(tmp_path):
    from cocktailparty.core import atomic

    target = tmp_path / "kept.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic.writing(target) as tmp:
            with open(tmp, "w") as handle:
                handle.write("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["kept.txt"]
