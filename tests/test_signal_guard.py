"""HandlerGuard against libc's own view of the signal handlers (sigaction), in this process."""

from __future__ import annotations

import ctypes
import logging
import os
import signal

import pytest

from cocktailparty.core.signal_guard import HandlerGuard, c_handler, describe_handler

LIBC = ctypes.CDLL(None)
LIBC.signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
LIBC.signal.restype = ctypes.c_void_p


@pytest.fixture
def usr1_handler():
    """A Python handler for SIGUSR1 that records deliveries; the old one is put back after."""
    seen: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: seen.append(signum))
    yield seen
    signal.signal(signal.SIGUSR1, previous)


def _take_over(signum: int, handler: int) -> None:
    """What a native library does: sigaction straight from C, unseen by Python."""
    LIBC.signal(signum, handler)


def test_c_handler_reads_what_libc_installed(usr1_handler):
    _take_over(signal.SIGUSR1, 1)  # SIG_IGN
    assert c_handler(signal.SIGUSR1) == 1
    _take_over(signal.SIGUSR1, 0)  # SIG_DFL
    assert c_handler(signal.SIGUSR1) == 0
    getpid = ctypes.cast(LIBC.getpid, ctypes.c_void_p).value
    _take_over(signal.SIGUSR1, getpid)
    assert c_handler(signal.SIGUSR1) == getpid
    signal.signal(signal.SIGUSR1, signal.getsignal(signal.SIGUSR1))


def test_a_replaced_handler_is_named_and_restored(usr1_handler):
    guard = HandlerGuard([signal.SIGUSR1])
    guard.arm()
    assert guard.check() == []
    # A handler inside libc stands in for a library's (never delivered while it is in place).
    _take_over(signal.SIGUSR1, ctypes.cast(LIBC.getpid, ctypes.c_void_p).value)
    assert signal.getsignal(signal.SIGUSR1) is not signal.SIG_DFL  # Python cannot tell
    [message] = guard.check()
    assert message.startswith("SIGUSR1's handler had been replaced by a handler in ")
    assert "libc" in message and "getpid" in message and message.endswith("restored the trainer's")
    os.kill(os.getpid(), signal.SIGUSR1)
    assert usr1_handler == [signal.SIGUSR1]  # the Python handler runs again
    assert guard.check() == []


def test_an_ignored_signal_is_restored(usr1_handler):
    guard = HandlerGuard([signal.SIGUSR1])
    guard.arm()
    _take_over(signal.SIGUSR1, 1)
    [message] = guard.check()
    assert "SIG_IGN" in message
    os.kill(os.getpid(), signal.SIGUSR1)
    assert usr1_handler == [signal.SIGUSR1]


def test_describe_handler_names_the_dispositions():
    assert describe_handler(0).startswith("SIG_DFL")
    assert describe_handler(1).startswith("SIG_IGN")
    assert "no known shared object" in describe_handler(16)


def test_native_handlers_of_other_signals_are_reported_once(usr1_handler):
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGHUP, signal.SIGUSR2)}
    guard = HandlerGuard([signal.SIGUSR1])
    guard.arm()
    try:
        already = "\n".join(guard.new_foreign_handlers())  # under pytest: faulthandler's, in libpython
        assert "SIGUSR1" not in already and "SIGHUP" not in already  # Python's own handler is not foreign
        assert guard.new_foreign_handlers() == []
        getpid = ctypes.cast(LIBC.getpid, ctypes.c_void_p).value
        for signum in previous:
            _take_over(signum, getpid)
        [line] = guard.new_foreign_handlers()
        assert line.startswith("SIGHUP, SIGUSR2 now go to a handler in ") and "getpid" in line
        assert guard.new_foreign_handlers() == []  # said once
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def test_a_python_level_takeover_is_named_and_restored(usr1_handler):
    guard = HandlerGuard([signal.SIGUSR1])
    guard.arm()

    def someone_elses(signum, frame):
        raise AssertionError("the other module's handler ran")

    signal.signal(signal.SIGUSR1, someone_elses)
    [message] = guard.check()
    assert message.startswith("SIGUSR1's handler had been replaced by the Python handler "
                              f"{__name__}.test_a_python_level_takeover_is_named_and_restored.<locals>.someone_elses")
    os.kill(os.getpid(), signal.SIGUSR1)
    assert usr1_handler == [signal.SIGUSR1]


def test_python_handlers_of_other_signals_are_reported_too(usr1_handler):
    previous = signal.getsignal(signal.SIGUSR2)
    guard = HandlerGuard([signal.SIGUSR1])
    guard.arm()
    guard.new_foreign_handlers()
    try:
        signal.signal(signal.SIGUSR2, test_describe_handler_names_the_dispositions)
        assert guard.new_foreign_handlers() == [
            f"SIGUSR2 now go to the Python handler {__name__}.test_describe_handler_names_the_dispositions"]
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_tritons_routine_takeover_is_information_and_any_other_a_warning(caplog):
    from cocktailparty.train.signals import StopSignals

    stop = StopSignals(announce=False)
    culprits = ["SIGINT's handler had been replaced by a handler in /venv/triton/_C/libtriton.so; restored the trainer's",
                "SIGTERM's handler had been replaced by a handler in /opt/vendor/libcrashy.so; restored the trainer's"]
    stop.guard.check = lambda: culprits
    caplog.set_level("INFO", logger="cocktailparty")
    stop.keep_handlers(step=1)
    stop.keep_handlers(step=2)  # each culprit is told once
    # levelno, not levelname: the CLI renames the levels ("info") once any test has run it.
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, "step 1: " + culprits[0]), (logging.WARNING, "step 1: " + culprits[1])]


def test_a_native_takeover_inside_the_block_is_undone_from_any_thread(usr1_handler):
    import threading

    from cocktailparty.core.signal_guard import native_handlers_kept

    python_c_handler = c_handler(signal.SIGUSR1)
    getpid = ctypes.cast(LIBC.getpid, ctypes.c_void_p).value

    def compile_kernels():  # what Triton's LLVM does at its first compile, here off the main thread
        with native_handlers_kept([signal.SIGUSR1]):
            _take_over(signal.SIGUSR1, getpid)
            assert c_handler(signal.SIGUSR1) == getpid

    worker = threading.Thread(target=compile_kernels)
    worker.start()
    worker.join()
    assert c_handler(signal.SIGUSR1) == python_c_handler
    os.kill(os.getpid(), signal.SIGUSR1)
    assert usr1_handler == [signal.SIGUSR1]  # the Python handler runs again
    with native_handlers_kept([signal.SIGUSR1]):
        pass  # nothing replaced: nothing touched
    assert c_handler(signal.SIGUSR1) == python_c_handler
