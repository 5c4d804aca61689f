import importlib
import sys

import pytest
import torch

# The toy architectures (band-split-test, tiny-test-model, ...) are registered here, once, for
# every test; test modules import the classes from tests.toys and never register anything.
importlib.import_module("tests.toys")


@pytest.fixture(autouse=True)
def cpu_without_bf16_units(monkeypatch):
    """The Separator's CPU path as on a CPU without AMX bf16 units (fp32), whatever machine runs
    the tests; the tests of the bf16 choice patch it again."""
    monkeypatch.setattr("cocktailparty.inference.separate.cpu_has_bf16_matrix_units", lambda: False)


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
