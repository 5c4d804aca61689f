"""The job queue behind ``cocktail serve``: a private folder, one worker, bounded waiting.

Every upload becomes a :class:`Job` with a random id and its own folder inside one private
temporary folder (mode 0700). Files are only ever found through a job's own table of fixed
names, never through a path a client sends. One worker thread runs the jobs in the order
they came, so the models use the machine's cores one job at a time; at most ``max_pending``
jobs wait or run, and a further one is refused (:class:`Busy`). Finished jobs and their files
are removed ``keep_seconds`` after they finish, and everything at :meth:`JobStore.close`.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import secrets
import shutil
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..core.errors import CocktailError

log = logging.getLogger("cocktailparty")

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{22}$")  # secrets.token_urlsafe(16)


class Busy(CocktailError):
    """Too many jobs are waiting: the client is told to try again later."""


@dataclass
class Job:
    """One request's state. ``run`` does the work in the worker thread; it may call
    ``report(stage, fraction)`` and returns the result dict shown to the client."""

    id: str
    kind: str
    folder: Path
    run: Callable[["Job"], dict] | None = None
    state: str = "queued"  # queued -> running -> done | error
    stage: str = "waiting for its turn"
    progress: float = 0.0
    error: str | None = None
    result: dict = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)  # public name -> file in `folder`
    downloads: dict[str, str] = field(default_factory=dict)  # public name -> download file name
    created: float = field(default_factory=time.monotonic)
    finished: float | None = None

    def report(self, stage: str, fraction: float) -> None:
        self.stage, self.progress = stage, min(max(float(fraction), 0.0), 1.0)

    def add_file(self, name: str, download_as: str | None = None) -> Path:
        """Register ``name`` (a fixed name chosen by the server) as a file of this job."""
        path = self.folder / name
        self.files[name] = path
        if download_as:
            self.downloads[name] = download_as
        return path


class JobStore:
    """Jobs by id, their private folder, the worker thread and the clean-up.

    Args:
        max_pending: most jobs queued or running at once; more are refused with :class:`Busy`.
        keep_seconds: how long a finished job's files stay.
        root: parent of the private folder (default: the system's temporary folder).
    """

    def __init__(self, max_pending: int = 8, keep_seconds: float = 1800.0, root: str | None = None):
        self.max_pending = max_pending
        self.keep_seconds = keep_seconds
        self.folder = Path(tempfile.mkdtemp(prefix="cocktail-serve-", dir=root))  # mode 0700
        os.chmod(self.folder, 0o700)
        # Also removed at interpreter exit if close() is never called (a server killed by Ctrl-C).
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.folder), True)
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._closed = threading.Event()
        self._worker = threading.Thread(target=self._work, name="cocktail-serve-worker", daemon=True)
        self._worker.start()
        self._janitor = threading.Thread(target=self._sweep_now_and_then, name="cocktail-serve-janitor", daemon=True)
        self._janitor.start()

    # --- for the routes ------------------------------------------------------------------

    def new(self, kind: str) -> Job:
        """A job with a fresh id and an empty private folder; not queued yet (see :meth:`submit`)."""
        if self._closed.is_set():
            raise Busy("the server is shutting down")
        job_id = secrets.token_urlsafe(16)
        folder = self.folder / job_id
        folder.mkdir(mode=0o700)
        job = Job(job_id, kind, folder)
        with self._lock:
            self._jobs[job_id] = job
        return job

    def submit(self, job: Job, run: Callable[[Job], dict]) -> None:
        """Queue ``job``, or refuse it (its files removed) when ``max_pending`` jobs wait or run."""
        with self._lock:
            pending = sum(j.state in ("queued", "running") and j.run is not None for j in self._jobs.values())
            if pending >= self.max_pending:
                self._forget(job)
                raise Busy(f"the server is busy: {pending} jobs are already waiting or running; "
                           f"try again in a minute")
            job.run = run
        self._queue.put(job)

    def discard(self, job: Job) -> None:
        """Drop a job that was never queued (its upload was refused)."""
        with self._lock:
            self._forget(job)

    def get(self, job_id: str) -> Job | None:
        """The job with this id, or None; ids that do not look like ours are never looked up."""
        if not isinstance(job_id, str) or not ID_PATTERN.match(job_id):
            return None
        with self._lock:
            return self._jobs.get(job_id)

    def position(self, job: Job) -> int:
        """How many queued jobs are ahead of ``job`` (0 when it runs or is done)."""
        if job.state != "queued":
            return 0
        with self._lock:
            return sum(j.state in ("queued", "running") and j.run is not None and j.created < job.created
                       for j in self._jobs.values())

    def sweep(self, now: float | None = None) -> int:
        """Remove the jobs that finished more than ``keep_seconds`` ago; returns how many."""
        now = time.monotonic() if now is None else now
        with self._lock:
            old = [j for j in self._jobs.values() if j.finished is not None and now - j.finished >= self.keep_seconds]
            for job in old:
                self._forget(job)
        return len(old)

    def close(self) -> None:
        """Stop the worker (after its current job) and remove every file."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._queue.put(None)
        self._worker.join(timeout=30)
        with self._lock:
            self._jobs.clear()
        self._finalizer()

    # --- inside ----------------------------------------------------------------------------

    def _forget(self, job: Job) -> None:
        """Remove a job and its folder (the caller holds the lock)."""
        self._jobs.pop(job.id, None)
        shutil.rmtree(job.folder, ignore_errors=True)

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None or self._closed.is_set():
                return
            job.state = "running"
            job.report("starting", 0.0)
            try:
                result = job.run(job)
            except CocktailError as err:  # bad input: the CLI's one-line message
                job.error, job.state = str(err), "error"
            except Exception as err:  # a bug: the page still gets a line, the log the traceback
                log.exception("job %s failed", job.id)
                job.error, job.state = f"internal error ({type(err).__name__}: {err})", "error"
            else:
                job.result, job.state = result, "done"
                job.report("done", 1.0)
            job.finished = time.monotonic()

    def _sweep_now_and_then(self) -> None:
        interval = min(60.0, max(self.keep_seconds / 4, 0.5))
        while not self._closed.wait(interval):
            self.sweep()
