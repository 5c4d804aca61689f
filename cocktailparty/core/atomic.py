"""Atomic writes: a temporary file beside the target, renamed onto it when complete.

Every writer that replaces a file in one step (audio, checkpoints, ONNX exports, manifests,
metadata, configs) goes through here: :func:`writing` (or :func:`write_text` /
:func:`write_bytes`) hands out a temporary file from :func:`temporary_beside` and puts it in
place with :func:`replace`, which gives it the permissions a plain ``open(path, "w")`` would:
0666 less the umask for a new file, the old file's mode for a replaced one. (``mkstemp``, and libraries that write through
their own temporary file such as safetensors, would leave every output 0600 whatever the
umask.)

:func:`ensure_writable_dir` and :func:`ensure_writable_file` check an output location before
a command starts work that would be lost if its results could not be written there.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import CocktailError


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


@contextlib.contextmanager
def writing(path: str | os.PathLike) -> Iterator[str]:
    """``with writing(path) as tmp:`` write ``tmp`` (a new, empty file beside ``path``); when
    the block ends normally it replaces ``path`` in one step, otherwise it is removed and
    ``path`` is left as it was."""
    tmp = temporary_beside(Path(path))
    try:
        yield tmp
        replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | os.PathLike, text: str, newline: str | None = None) -> None:
    """Replace ``path`` with ``text`` in UTF-8, atomically.

    ``newline`` as for :func:`open`: None turns ``"\n"`` into the platform's line ending (as
    ``Path.write_text`` does, for JSON and YAML); ``""`` writes the text as it is, for text
    that carries its own line endings (CSV from :mod:`csv`, whose rows end in ``"\r\n"``
    or as its writer was told).
    """
    with writing(path) as tmp, open(tmp, "w", encoding="utf-8", newline=newline) as handle:
        handle.write(text)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data``, atomically."""
    with writing(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)


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


# --------------------------------------------------------------------------------------------
# Output locations, checked before a command's long work starts
# --------------------------------------------------------------------------------------------


def ensure_writable_dir(path: str | os.PathLike, what: str) -> None:
    """Raise a one-line :class:`~cocktailparty.core.errors.CocktailError` unless ``path`` is a
    folder, or can be made one, that this process can create files in.

    ``what`` names the location for the message (a flag such as ``"--out"``). Nothing is
    created: the nearest folder that exists is tried with a temporary file, removed at once.
    """
    path = Path(path)
    _probe(_nearest_folder(path, path, what), path, what)


def ensure_writable_file(path: str | os.PathLike, what: str) -> None:
    """As :func:`ensure_writable_dir`, for a file ``path`` to be written (or replaced)."""
    path = Path(path)
    if path.is_dir():
        raise _unwritable(path, what, "it is a folder, not a file")
    if path.exists() and not os.access(path, os.W_OK):
        raise _unwritable(path, what, "no permission to write it")
    _probe(_nearest_folder(path.parent, path, what), path, what)


def _nearest_folder(folder: Path, path: Path, what: str) -> Path:
    """``folder`` or its nearest existing parent; a file on the way is an error about ``path``."""
    for candidate in (folder, *folder.parents):
        if candidate.is_dir():
            return candidate
        if os.path.lexists(candidate):
            reason = "it is a file, not a folder" if candidate == path else f"{candidate} is a file, not a folder"
            raise _unwritable(path, what, reason)
    return Path(".")


def _probe(folder: Path, path: Path, what: str) -> None:
    try:
        handle, name = tempfile.mkstemp(prefix=".cocktail-write-test-", dir=folder)
    except OSError as err:
        if err.errno == errno.EROFS:
            reason = f"{folder} is on a read-only file system"
        elif err.errno == errno.ENOSPC:
            reason = f"no space left on the disk of {folder}"
        elif err.errno in (errno.EACCES, errno.EPERM, errno.ENOENT):
            # ENOENT: a folder of a virtual file system such as /proc, which takes no new files.
            reason = f"no permission to create files in {folder}"
        else:
            reason = f"{err.strerror} in {folder}"
        raise _unwritable(path, what, reason) from None
    os.close(handle)
    os.unlink(name)


def _unwritable(path: Path, what: str, reason: str) -> CocktailError:
    return CocktailError(f"{what} {path}: cannot write output there ({reason}); choose another {what}")
