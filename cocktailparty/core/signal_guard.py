"""Notice, name and undo a library's takeover of a signal the trainer handles.

Python's ``signal.signal`` installs one C function as the process's handler and runs the
Python callable from it. A native library that later calls ``sigaction`` itself replaces that
C function behind Python's back: ``signal.getsignal`` still reports the Python handler, but
the signal now does whatever the library wants (on the GPU machine, SIGTERM ended training
runs without their handler ever running, 5 of 5 times, while runs on CPU saved every
time). :class:`HandlerGuard` reads the C-level handler with ``sigaction``, so it sees the
takeover, names the shared object that did it (``dladdr``) and puts Python's handler back.
It also catches another Python module's ``signal.signal`` over the trainer's handler.

The culprit it named on the H200 machine (session 9): Triton's ``libtriton.so``, at the first
step's kernel compile, replaced SIGINT's and SIGTERM's handlers and installed its own for
SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGXCPU, SIGXFSZ and SIGSYS. That set is the one LLVM's
crash and cleanup handlers claim, and Triton links LLVM: such a handler cleans up and then
re-raises the signal with its default action, so the process dies without a word. CPU runs
never load Triton (inductor compiles C++ there), which is why they always saved.

POSIX only; elsewhere (Windows) the guard does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import signal
from typing import Any, Iterable, Iterator, Optional

log = logging.getLogger("cocktailparty")

# Enough room for any libc's struct sigaction (glibc x86-64: 152 bytes). On Linux and macOS
# the handler (a union of sa_handler and sa_sigaction) is its first field.
_SIGACTION_BYTES = 512


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def _libc() -> Optional[ctypes.CDLL]:
    try:
        libc = ctypes.CDLL(None)
        libc.sigaction  # noqa: B018 - absent on Windows
    except (OSError, AttributeError, TypeError):
        return None
    libc.sigaction.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    libc.sigaction.restype = ctypes.c_int
    return libc


_LIBC = _libc()


def _sigaction(signum: int) -> Optional[ctypes.Array]:
    """The process's ``struct sigaction`` for ``signum``, as bytes, or None where it cannot be read."""
    if _LIBC is None:
        return None
    found = ctypes.create_string_buffer(_SIGACTION_BYTES)
    return found if _LIBC.sigaction(int(signum), None, found) == 0 else None


def c_handler(signum: int) -> Optional[int]:
    """The address of the process's C-level handler for ``signum`` (0: default action,
    1: ignored), or None where it cannot be read."""
    found = _sigaction(signum)
    return None if found is None else ctypes.c_void_p.from_buffer(found).value or 0


@contextlib.contextmanager
def native_handlers_kept(signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Put back, when the block ends, any handler of ``signals`` that a native library replaced
    inside it (Triton's LLVM does at the process's first kernel compile: SIGTERM would then end
    the process at once and Ctrl-C skip Python's cleanup). Works from any thread, unlike
    ``signal.signal``: the saved ``struct sigaction`` goes back as it was. Two system calls per
    signal (a few microseconds): cheap beside a Triton launch, which costs the host tens."""
    saved = {signum: _sigaction(signum) for signum in signals}
    try:
        yield
    finally:
        for signum, before in saved.items():
            now = c_handler(signum)
            if before is not None and now is not None and now != (ctypes.c_void_p.from_buffer(before).value or 0):
                log.debug("%s's handler had been replaced by %s; put back", signal.Signals(signum).name,
                          describe_handler(now))
                _LIBC.sigaction(int(signum), before, None)


def describe_handler(address: int) -> str:
    """``address`` in words: SIG_DFL, SIG_IGN or the shared object (and symbol, where it
    has one) it lies in."""
    if address == 0:
        return "SIG_DFL (for SIGTERM: exit at once, saving nothing)"
    if address == 1:
        return "SIG_IGN (the signal ignored)"
    info = _DlInfo()
    try:
        found = _LIBC.dladdr(ctypes.c_void_p(address), ctypes.byref(info))
    except AttributeError:
        found = 0
    if not found or not info.dli_fname:
        return f"a handler at {address:#x} in no known shared object"
    where = info.dli_fname.decode(errors="replace")
    symbol = f" ({info.dli_sname.decode(errors='replace')})" if info.dli_sname else ""
    return f"a handler in {where}{symbol}"


def describe_python_handler(handler: Any) -> str:
    """A Python-level signal handler in words (what ``signal.getsignal`` returned)."""
    if handler in (signal.SIG_DFL, signal.SIG_IGN):
        return signal.Handlers(handler).name
    if handler is None:
        return "a handler installed outside Python"
    module = getattr(handler, "__module__", None) or "?"
    return f"the Python handler {module}.{getattr(handler, '__qualname__', repr(handler))}"


class HandlerGuard:
    """Watches the handlers of ``signals`` from :meth:`arm` on, at both levels: the Python
    callable (another Python module may call ``signal.signal``) and the C function behind it
    (a native library may call ``sigaction``). Arm it right after ``signal.signal`` installed
    the Python handlers; :meth:`check` (cheap: one system call per signal) then finds the
    ones replaced, reinstalls the armed handler and says what had replaced it."""

    def __init__(self, signals: Iterable[int]):
        self.signals = tuple(signals)
        self.expected: dict[int, tuple[Optional[int], Any]] = {}  # signal: (C address, Python handler)
        self.foreign: dict[int, str] = {}

    def arm(self) -> None:
        self.expected = {signum: (c_handler(signum), signal.getsignal(signum)) for signum in self.signals}
        self.foreign = {}  # the first new_foreign_handlers() reports those already there

    def check(self) -> list[str]:
        """One message per signal whose handler was replaced since :meth:`arm` (now restored)."""
        messages = []
        for signum, (address, handler) in self.expected.items():
            found_handler, found_address = signal.getsignal(signum), c_handler(signum)
            if found_handler is not handler:
                culprit = describe_python_handler(found_handler)
            elif None not in (address, found_address) and found_address != address:
                culprit = describe_handler(found_address)
            else:
                continue
            signal.signal(signum, handler)  # calls sigaction too: both levels are back
            restored = signal.getsignal(signum) is handler and c_handler(signum) == address
            messages.append(f"{signal.Signals(signum).name}'s handler had been replaced by {culprit}; "
                            + ("restored the trainer's" if restored else "could not restore the trainer's"))
        return messages

    def _foreign(self) -> dict[int, str]:
        """The other standard signals (1-31) with a handler of someone else's, described: a C
        function that is not Python's own (the one behind every Python handler, armed above),
        or a Python callable. SIGCHLD is left out: a DataLoader with workers always sets one."""
        python = {address for address, _ in self.expected.values()}
        found = {}
        for signum in range(1, 32):
            if signum in self.expected or signum == signal.SIGCHLD:
                continue
            address = c_handler(signum)
            if address not in (None, 0, 1) and address not in python:
                found[signum] = describe_handler(address)
                continue
            handler = signal.getsignal(signum)
            if callable(handler) and handler is not signal.default_int_handler:
                found[signum] = describe_python_handler(handler)
        return found

    def new_foreign_handlers(self) -> list[str]:
        """Handlers of other signals installed (or changed) since :meth:`arm` or the last call,
        one line per handler: which library took which signals, to find one that may take ours
        next. 31 system calls: call it now and then, not every step."""
        now = self._foreign()
        new = {signum: owner for signum, owner in now.items() if self.foreign.get(signum) != owner}
        self.foreign = now
        by_owner: dict[str, list[str]] = {}
        for signum, owner in sorted(new.items()):
            by_owner.setdefault(owner, []).append(signal.Signals(signum).name)
        return [f"{', '.join(names)} now go to {owner}" for owner, names in by_owner.items()]
