"""An output location that cannot be written is a one-line error, found before any work.

Every command that writes is run through ``cocktailparty.cli.main`` with its output under
/proc (a folder that takes no new files, even for root: these tests run as root, so chmod
could not provoke "no permission"), below a regular file, or on a regular file (on a folder,
for a file output). The function that does the command's real work is replaced by one that
fails the test, so the check must come before it: `extract` used to run its model for 30 s
before finding out.
"""

import functools
import importlib

import numpy as np
import pytest
import soundfile

import cocktailparty.data.corpus  # noqa: F401  (imported so that their work can be replaced)
import cocktailparty.data.mixture_sets  # noqa: F401
import cocktailparty.data.noise  # noqa: F401
import cocktailparty.data.real.build  # noqa: F401
import cocktailparty.data.rooms  # noqa: F401
import cocktailparty.eval.demo  # noqa: F401
import cocktailparty.eval.evaluate  # noqa: F401
import cocktailparty.inference.export  # noqa: F401
import cocktailparty.inference.separate  # noqa: F401
import cocktailparty.train.engine  # noqa: F401
from cocktailparty.cli import main

# command line ({out}: the output location, {wav}: a real input, {dir}: a folder), whether the
# output is a folder (else a file), and the module attribute that does the command's work.
SEPARATING = "cocktailparty.inference.separate:Separator.separate_batched"
COMMANDS = {
    "separate": ("separate {wav} -o {out}", True, SEPARATING),
    "extract": ("extract --enroll {wav} {wav} -o {out}", True, SEPARATING),
    "demo": ("demo --out {out}", True, "cocktailparty.eval.demo:build_corpus"),
    "corpus build": ("corpus build --out {out}", True, "cocktailparty.data.corpus:build_corpus"),
    "corpus noise": ("corpus noise --out {out}", True, "cocktailparty.data.noise:build_noise_folder"),
    "corpus real": ("corpus real --out {out}", True, "cocktailparty.data.real.build:build_real_corpus"),
    "corpus rooms": ("corpus rooms --out {out}", True, "cocktailparty.data.rooms:RoomBank.build"),
    "mix": ("mix --corpus {dir} --out {out}", True, "cocktailparty.data.mixture_sets:write_mixture_set"),
    "train": ("train --config tdanet-lrs2 --out {out}", True, "cocktailparty.train.engine:Trainer.__init__"),
    "evaluate": ("evaluate --data {dir} --out {out}", False, "cocktailparty.eval.evaluate:evaluate"),
    "export": ("export --onnx {out}", False, "cocktailparty.inference.export:export_onnx"),
}
LOCATIONS = ("under-proc", "below-a-file", "on-a-file-or-folder")


def forbid(monkeypatch, target: str) -> None:
    """Replace ``module:attr.path`` with a function that fails the test if the work starts."""
    module_name, _, path = target.partition(":")
    owner = importlib.import_module(module_name)
    *parents, name = path.split(".")
    for parent in parents:
        owner = getattr(owner, parent)

    @functools.wraps(getattr(owner, name))  # main() reads the library's defaults from its signature
    def work_started(*args, **kwargs):
        raise AssertionError(f"{target} ran before the output location was checked")

    monkeypatch.setattr(owner, name, work_started)


@pytest.mark.parametrize("location", LOCATIONS)
@pytest.mark.parametrize("command", COMMANDS)
def test_unwritable_output_is_one_line_before_any_work(tmp_path, monkeypatch, capsys, command, location):
    line, folder, work = COMMANDS[command]
    forbid(monkeypatch, work)
    wav = tmp_path / "in.wav"
    soundfile.write(wav, 0.1 * np.sin(np.arange(8000) / 8.0).astype(np.float32), 16000)
    blocker = tmp_path / "blocker"
    blocker.write_text("keep me")
    name = "out" if folder else "out.csv" if command == "evaluate" else "out.onnx"
    out, reason = {
        "under-proc": (f"/proc/cocktail-test/{name}", "no permission to create files in /proc"),
        "below-a-file": (f"{blocker}/{name}", f"{blocker} is a file, not a folder"),
        "on-a-file-or-folder": ((str(blocker), "it is a file, not a folder") if folder
                                else (str(tmp_path), "it is a folder, not a file")),
    }[location]
    before = sorted(p.name for p in tmp_path.iterdir())

    status = main(line.format(out=out, wav=wav, dir=tmp_path).split())

    err = capsys.readouterr().err
    assert status != 0
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("cocktail: error: ") and out in lines[0] and reason in lines[0], lines[0]
    assert "choose another" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # the probe left nothing behind
    assert blocker.read_text() == "keep me"


def test_a_writable_new_folder_is_not_created_by_the_check(tmp_path, monkeypatch, capsys):
    """The check only looks: a command that then fails for another reason leaves no folder."""
    out = tmp_path / "new" / "deeper"
    assert main(["separate", str(tmp_path / "missing.wav"), "-o", str(out)]) == 1
    assert "missing.wav: no such file" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
