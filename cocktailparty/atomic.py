"""Atomic writes: a temporary file beside the target, renamed onto it when complete.

Every writer that replaces a file in one step (audio, checkpoints, ONNX exports) takes its
temporary file from :func:`temporary_beside` and puts it in place with :func:`replace`, which
gives it the permissions a plain ``open(path, "w")`` would: 0666 less the umask for a new
file, the old file's mode for a replaced one. (``mkstemp``, and libraries that write through
their own temporary file such as safetensors, would leave every output 0600 whatever the
umask.)
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def temporary_beside(path: Path) -> str:
    """Create an empty hidden ``.<name>.XXXX.part`` file in ``path``'s folder; returns its name.

    Write it, then :func:`replace` it onto ``path`` (and unlink it on failure). Raises
    ``OSError`` as ``mkstemp`` does.
    """
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(handle)
    return name


def replace(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Rename the finished ``tmp`` onto ``path`` with the mode a plain write of ``path`` gives."""
    os.chmod(tmp, plain_write_mode(path))
    os.replace(tmp, path)


def plain_write_mode(path: str | os.PathLike) -> int:
    """The permission bits ``open(path, "w")`` would leave ``path`` with."""
    try:
        existing = os.stat(path)
        if stat.S_ISREG(existing.st_mode):
            return stat.S_IMODE(existing.st_mode)
    except OSError:
        pass
    return 0o666 & ~current_umask()


def current_umask() -> int:
    """The process's umask, read without changing it where the system says it (Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    # Elsewhere the only way to read it is to set it; put it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
