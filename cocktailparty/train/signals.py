"""Stop signals: Ctrl-C or a scheduler's SIGTERM ends training after the current step, with
a checkpoint, instead of losing every step since the last one."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
from typing import Iterator, Optional

from ..core.signal_guard import HandlerGuard

log = logging.getLogger("cocktailparty")

# Takeovers that every compiled CUDA run sees: torch.compile loads Triton, whose LLVM installs
# crash handlers at the first kernel compile (see signal_guard). Undoing them is routine, so
# they are logged as information; a warning there made every GPU run look broken.
ROUTINE_CULPRITS = ("libtriton",)


class StopSignals:
    """SIGINT/SIGTERM handlers that note the signal for the trainer to act on between steps.

    ``received`` is the first signal that came, or None. ``announce``: say on stderr what
    happens (the main process only). While :meth:`installed`, :meth:`keep_handlers` puts the
    handlers back when a native library or another module has replaced them.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, announce: bool = True):
        self.announce = announce
        self.received: Optional[int] = None
        self.guard = HandlerGuard(self.SIGNALS)
        self._takeovers: set[str] = set()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """The handlers in place for the block; the previous ones back after it."""
        previous = {sig: signal.getsignal(sig) for sig in self.SIGNALS}
        for sig in previous:
            signal.signal(sig, self._on_signal)
        self.guard.arm()
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame) -> None:
        if self.received is not None:
            # A second Ctrl-C: the user wants out now. A second SIGTERM is no such wish: GNU
            # timeout sends one to its child and then one to the child's process group, and
            # when the handler runs in between, quitting here would lose every step since the
            # last checkpoint.
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        self.received = signum
        if self.announce:
            try:
                print(f"\n{signal.Signals(signum).name}: finishing this step and saving a checkpoint "
                      f"(press Ctrl-C again to quit without saving)", file=sys.stderr)
            except OSError:
                # stderr may be a pipe whose reader the same signal ended (GNU timeout signals
                # its whole process group, `| tail` included): saying so must not cost the save.
                pass

    def keep_handlers(self, step: int) -> None:
        """Undo a takeover of SIGINT/SIGTERM by a native library or another Python module (see
        signal_guard), saying once per culprit what it was; ``step`` names the step (from 1)."""
        for message in self.guard.check():
            if message not in self._takeovers:
                self._takeovers.add(message)
                routine = any(culprit in message for culprit in ROUTINE_CULPRITS)
                log.log(logging.INFO if routine else logging.WARNING, "step %d: %s", step, message)

    def new_foreign_handlers(self) -> list[str]:
        """Native handlers newly installed for other signals, and whose they are."""
        return self.guard.new_foreign_handlers()
