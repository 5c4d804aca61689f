"""The one decision about progress (a terminal, no -q), and the bars and stage lines drawn."""

from __future__ import annotations

import io
import logging
import os
import select
import time

import pytest

from cocktailparty.core.progress import Bar, LogHandler, Stages, progress_enabled


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_wanted_on_a_terminal_without_quiet_only(monkeypatch):
    assert progress_enabled(False, Terminal())
    assert not progress_enabled(True, Terminal())
    assert not progress_enabled(False, io.StringIO())  # a pipe or a log file
    closed = open(os.devnull, "w")
    closed.close()
    assert not progress_enabled(False, closed)  # isatty() raises
    assert not progress_enabled(False, object())  # no isatty at all
    monkeypatch.setattr("sys.stderr", Terminal())  # the default stream is stderr, looked up at call time
    assert progress_enabled(False) and not progress_enabled(True)


def test_a_disabled_bar_writes_nothing_and_still_iterates():
    stream = Terminal()
    assert list(Bar(range(3), enabled=False, file=stream, tick=0.01)) == [0, 1, 2]
    with Stages("work", 2, enabled=False) as stages:
        stages.start("first")
    assert stream.getvalue() == ""


@pytest.mark.slow
def test_stages_name_each_stage_and_their_clock_moves(capsys):
    with Stages("work", 2, enabled=True) as stages:
        stages.start("first step")
        time.sleep(1.3)  # one tick: the line is redrawn while a stage runs
        stages.start("second step")
    err = capsys.readouterr().err
    assert "work 1/2: first step [00:00]" in err and "work 1/2: first step [00:01]" in err
    assert "work 2/2: second step" in err
    assert err.endswith("\r")  # the line is cleared at the end, not left behind


def test_a_terminal_that_reports_no_size_still_gets_a_bar():
    """tqdm fits its bar to the terminal: one of 0 x 0 (``script`` without a size, some
    containers) got nothing at all."""
    master, slave = os.openpty()
    try:
        with open(slave, "w", closefd=False) as stream:
            assert os.get_terminal_size(stream.fileno()) == (0, 0)
            with Bar(total=2, enabled=True, file=stream, desc="work", mininterval=0) as bar:
                bar.update(2)
            stream.flush()
            chunks = []
            while select.select([master], [], [], 0.5)[0]:
                chunks.append(os.read(master, 65536))
            shown = b"".join(chunks).decode()
    finally:
        os.close(master)
        os.close(slave)
    assert "work: 100%" in shown and "2/2" in shown


def test_a_line_logged_during_a_bar_goes_above_it_not_into_it():
    stream = Terminal()
    log = logging.getLogger("cocktailparty.test-progress")
    handler = LogHandler(stream)
    log.addHandler(handler)
    try:
        with Bar(total=2, enabled=True, file=stream, desc="work") as bar:
            bar.update(1)
            log.warning("careful")
            bar.update(1)
    finally:
        log.removeHandler(handler)
    before, after = stream.getvalue().split("careful\n")
    assert "work:" in before and before.rsplit("\r", 1)[1].strip() == ""  # the bar's line was cleared first
    assert "work:" in after  # and the bar drawn again below the line
