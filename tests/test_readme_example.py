"""The README's Python example runs as written.

The first ```python block of README.md is run in an empty folder that holds the sound
file(s) it reads (``...read("NAME")``): a 2 s stereo recording of two talkers at 44.1 kHz,
as ``soundfile.read`` returns it, ``(frames, channels)``. The example must get one track per
talker at the recording's length, and any sound file it writes must be readable at that length.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile

README = Path(__file__).resolve().parents[1] / "README.md"
RATE, SECONDS = 44100, 2.0

pytestmark = pytest.mark.usefixtures("one_thread")


def first_python_block(markdown: str) -> str:
    match = re.search(r"^```python[ \t]*\n(.*?)^```", markdown, re.S | re.M)
    assert match, "README.md has no ```python block"
    return match.group(1)


def files_read(code: str) -> list[str]:
    """The literal file names the example reads: soundfile.read("x.wav"), sf.read('x.flac'), ..."""
    return re.findall(r"""\bread\(\s*["']([^"'{}]+)["']""", code)


def two_talkers_stereo(frames: int) -> np.ndarray:
    """``(frames, 2)``: two voiced talkers (harmonics of different f0s, syllable envelopes)
    panned to different sides."""
    t = np.arange(frames) / RATE
    talkers = [sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6)) * (0.6 + 0.4 * np.sin(2 * np.pi * r * t))
               for f0, r in ((120.0, 3.0), (210.0, 4.3))]
    left, right = talkers[0] + 0.4 * talkers[1], 0.4 * talkers[0] + talkers[1]
    return (0.1 * np.stack([left, right], axis=1)).astype(np.float32)


def test_readme_python_example_runs_as_written(tmp_path, monkeypatch):
    code = first_python_block(README.read_text(encoding="utf-8"))
    inputs = files_read(code)
    assert inputs, "the README's Python example reads no file"
    frames = int(RATE * SECONDS)
    for name in inputs:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(tmp_path / name, two_talkers_stereo(frames), RATE)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - the README's own example

    sources = namespace.get("sources")
    if sources is not None:
        shape = tuple(np.shape(sources))
        assert len(shape) == 2 and 2 <= shape[0] <= 4 and shape[1] == frames, \
            f"sources has shape {shape}, not (talkers, {frames})"
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.relative_to(tmp_path).as_posix() not in inputs]
    for path in written:
        if path.suffix.lower() in (".wav", ".flac", ".ogg"):
            info = soundfile.info(str(path))
            assert info.frames == frames and info.samplerate == RATE, path.name
