import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from cocktailparty.data.speaker_corpus import MANIFEST_COLUMNS


@pytest.fixture()
def one_thread():
    """Tiny models run fastest on one thread, and CI's two cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class CliRun:
    """``run_cli(args, tty=True)`` runs ``cocktail ARGS`` in this process with stderr looking
    like a terminal (or not) and returns (exit status, what it wrote to stderr). Progress
    redraws its line with a carriage return, which nothing else writes."""

    def __init__(self, capsys, monkeypatch):
        self.capsys, self.monkeypatch = capsys, monkeypatch

    def __call__(self, args, tty: bool = True) -> tuple[int, str]:
        from cocktailparty.cli import main

        self.capsys.readouterr()
        self.monkeypatch.setattr(sys.stderr, "isatty", lambda: tty, raising=False)
        return main([str(a) for a in args]), self.capsys.readouterr().err

    def assert_silent(self, args, *words: str) -> None:
        """With -q on a terminal, and without -q in a pipe: exit 0 and no progress on stderr
        (no carriage return, none of ``words``)."""
        for argv, tty in ((["-q", *args], True), (list(args), False)):
            status, err = self(argv, tty)
            assert status == 0 and "\r" not in err and not any(w in err for w in words), (argv, tty, err)


@pytest.fixture()
def run_cli(capsys, monkeypatch) -> CliRun:
    return CliRun(capsys, monkeypatch)


def write_manifest(root, rows: list[dict], corpus_info: dict | None = None) -> None:
    """Write a corpus's manifest.csv and corpus.json, as `cocktail corpus build` lays them out."""
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    (root / "corpus.json").write_text(json.dumps(corpus_info or {}), encoding="utf-8")


def load_benchmark(name: str):
    """Import ``benchmarks/<name>.py`` (a script, not a package module) for its tests."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
