"""Progress on the terminal, for every command that can take more than a few seconds.

:func:`progress_enabled` is the one place that decides whether progress is drawn: on a
terminal, unless ``cocktail -q``. A command's handler asks it once and passes the answer to
the library function as ``progress=``; library functions draw only when told to (their
callers decide, as the command does). Bars go to stderr, so stdout stays the command's result.

- :class:`Bar`: a tqdm bar over a loop; with ``tick``, its clock also moves while one long
  step runs.
- :class:`Stages`: one line for work done in a few long steps that are not loops
  (``export 1/2: tracing the model [00:12]``).
- :class:`LogHandler`: ``cocktail``'s log lines, printed above a bar instead of into its line.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

from tqdm import tqdm


def progress_enabled(quiet: bool = False, stream=None) -> bool:
    """Whether to draw progress: not ``quiet`` and ``stream`` (default: stderr) is a terminal.

    Progress redraws one line in place; in a log file or a pipe that is noise, so it is
    shown on terminals only (the info lines that logging prints are kept either way).
    """
    if quiet:
        return False
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no such method, or a closed stream
        return False


def _has_no_size(stream) -> bool:
    """A terminal that reports 0 columns or 0 lines (``script`` without a size, some
    containers): tqdm would fit its bar to that and draw nothing."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, ValueError, OSError):
        return False
    return size.columns <= 0 or size.lines <= 0


class Bar(tqdm):
    """A tqdm bar on stderr, drawn only when ``enabled``.

    ``tick``: also redraw every ``tick`` seconds from a thread, so that elapsed time keeps
    moving through a step that takes long (one file, one chunk); not around code that forks
    workers (a DataLoader's), which could inherit a stream's lock mid-write. Other arguments
    are tqdm's.
    """

    def __init__(self, iterable=None, *, enabled: bool, tick: float = 0.0, **kwargs):
        self._ticking, self._ticker = threading.Event(), None
        kwargs.setdefault("file", sys.stderr)
        if enabled and _has_no_size(kwargs["file"]):
            kwargs.update(dynamic_ncols=False, ncols=kwargs.get("ncols") or 80, nrows=20)
        else:
            kwargs.setdefault("dynamic_ncols", True)
        super().__init__(iterable, disable=not enabled, **kwargs)
        if tick > 0 and not self.disable:
            self._ticker = threading.Thread(target=self._tick, args=(tick,), daemon=True)
            self._ticker.start()

    def _tick(self, every: float) -> None:
        while not self._ticking.wait(every):
            self.refresh()

    def close(self) -> None:
        self._ticking.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5.0)  # a redraw under way ends before the line is cleared
        super().close()


class Stages:
    """One line, ``WHAT i/N: STAGE [elapsed]``, for work done in ``total`` long steps that are
    not loops; call :meth:`start` as each begins. Cleared when closed (use it in ``with``)."""

    def __init__(self, what: str, total: int, enabled: bool):
        self.what, self.total, self.index = what, total, 0
        self.bar = Bar(total=total, enabled=enabled, tick=1.0, leave=False, desc=what,
                       bar_format="{desc} [{elapsed}]")

    def start(self, stage: str) -> None:
        self.index += 1
        self.bar.set_description_str(f"{self.what} {self.index}/{self.total}: {stage}")

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> "Stages":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LogHandler(logging.StreamHandler):
    """Writes each record with ``tqdm.write``: a bar on the same stream is cleared, the line
    printed, the bar redrawn below it (a plain write when no bar is drawn)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
            self.flush()
        except Exception:
            self.handleError(record)
