"""The web application of ``cocktail serve``: the page, its static files and a small JSON API.

Routes (all answers JSON except the page and the files):

- ``GET /``: the page; ``GET /static/...``: its script and style, from the package.
- ``GET /api/info``: the models to choose from, what extraction runs (``extract``: the
  separator ``model`` and the ``embedder`` that picks the voice) and the server's limits.
- ``POST /api/separate`` (form: ``mixture`` file, ``model`` name) and ``POST /api/extract``
  (form: ``mixture`` and ``enrollment`` files): 202 with the new job's ``id``; 400 with the
  one-line message for input that cannot be used, 413 for an upload over the size limit,
  503 when too many jobs wait.
- ``GET /api/jobs/{id}``: the job's state, progress, error or results.
- ``GET /api/jobs/{id}/files/{name}``: one of the job's files, by the fixed name the job gave
  it (``?download=1`` for an attachment named after the upload).
"""

from __future__ import annotations

import contextlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..core import audio
from ..core.checkpoint import DEFAULT_MODEL, bundled_models
from ..core.errors import AudioError, CocktailError
from .jobs import Busy, Job, JobStore
from .work import Models, extract_job, separate_job

STATIC = Path(__file__).parent / "static"


@dataclass
class Limits:
    max_bytes: int = 50_000_000  # one request, all its files together
    max_seconds: float = 600.0  # each recording
    max_pending: int = 8  # jobs queued or running
    keep_seconds: float = 1800.0  # how long results stay after a job ends


class TooLarge(Exception):
    pass


LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def _host_name(value: str) -> str:
    """``host`` of a Host header or an Origin's netloc (``[::1]:8000`` -> ``::1``)."""
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class Guard:
    """ASGI middleware in front of every route.

    - ``loopback_only``: answer only requests addressed to this machine by a loopback name, so
      a web page elsewhere cannot reach the server through a name it controls (DNS rebinding).
    - Uploads from another site's page (an ``Origin`` that is not this server) are refused, so
      a page elsewhere cannot queue work here.
    - A request body over ``max_bytes`` gets 413, whether its Content-Length says so up front
      or its stream only shows it on the way.
    """

    def __init__(self, app, max_bytes: int, loopback_only: bool = True):
        self.app, self.max_bytes, self.loopback_only = app, max_bytes, loopback_only

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope.get("headers") or ()}
        host = headers.get("host", "")
        if self.loopback_only and _host_name(host) not in LOOPBACK_NAMES:
            return await self._answer(421, f"this server answers to 127.0.0.1 or localhost only, not {host!r}",
                                      scope, receive, send)
        origin = headers.get("origin")
        if scope["method"] not in ("GET", "HEAD") and origin not in (None, "null"):
            if origin.split("://", 1)[-1] != host:
                return await self._answer(403, f"uploads from another site's page ({origin}) are refused",
                                          scope, receive, send)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await self._too_large(f"{int(declared) / 1e6:.3g} MB", scope, receive, send)
        seen, started = 0, False

        async def counting_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise TooLarge()
            return message

        async def watching_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except TooLarge:
            if started:
                raise
            await self._too_large(f"over {self.max_bytes / 1e6:g} MB", scope, receive, send)

    async def _too_large(self, size: str, scope, receive, send):
        await self._answer(413, f"the upload is {size}; this server takes at most {self.max_bytes / 1e6:g} MB "
                                f"a request (cocktail serve --max-mb)", scope, receive, send)

    @staticmethod
    async def _answer(status: int, message: str, scope, receive, send):
        await JSONResponse({"error": message}, status_code=status, headers={"Connection": "close"})(scope, receive, send)


def _shown_name(upload: UploadFile, fallback: str) -> str:
    """The file name the user chose, for messages: its last path part, printable, short."""
    name = Path((upload.filename or "").replace("\\", "/")).name
    name = "".join(ch for ch in name if ch.isprintable())[:120]
    return name or fallback


def _stem(shown: str) -> str:
    """A safe download-name stem from a shown name: letters, digits, '.', '_' and '-'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(shown).stem).strip(".-")[:60] or "recording"


def create_app(model: str | None = None, device: str | torch.device = "cpu", limits: Limits | None = None,
               extract_model: str | None = None, embedder: str | None = None, preload: bool = True,
               loopback_only: bool = True) -> Starlette:
    """The application. ``model`` (a bundled name or checkpoint path, default the bundled
    default) is preselected; the page may choose it or any bundled model, nothing else.
    Extraction separates with ``extract_model`` and keeps the output closest to the
    enrollment by ``embedder``'s voice embeddings (None, None: ``cocktail extract``'s defaults).
    ``loopback_only``: answer requests addressed to 127.0.0.1, localhost or ::1 only (for a
    server listening on this machine only; see :class:`Guard`)."""
    limits = limits or Limits()
    default = model or DEFAULT_MODEL
    choices = list(dict.fromkeys([default] + bundled_models()))
    models = Models(torch.device(device), extract_model=extract_model, embedder=embedder)
    if preload:
        models.separation(default)  # a bad --model fails at start, and the first job is quick
    store = JobStore(max_pending=limits.max_pending, keep_seconds=limits.keep_seconds)

    def error(message: str, status: int = 400) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    async def info(request: Request) -> Response:
        return JSONResponse({"models": choices, "default": default,
                             "extract": {"model": models.extract_model, "embedder": models.embedder},
                             "max_mb": limits.max_bytes / 1e6, "max_seconds": limits.max_seconds})

    def save_upload(upload, job: Job, name: str, fallback: str) -> tuple[Path, str]:
        """Copy an upload into the job's folder under a fixed name; check it is sound and not
        too long from its header. Returns (path, the name shown in messages)."""
        if not isinstance(upload, UploadFile):
            raise CocktailError(f"no {fallback} file was sent")
        shown = _shown_name(upload, fallback)
        suffix = Path(shown).suffix.lower()
        path = job.folder / (name + (suffix if suffix in audio.AUDIO_EXTENSIONS else ""))
        with open(path, "wb") as out:
            upload.file.seek(0)
            shutil.copyfileobj(upload.file, out, 1 << 20)
        try:
            header = audio.info(path)
        except AudioError as err:
            raise AudioError(str(err).replace(str(path), shown)) from None
        seconds = header.frames / header.samplerate if header.samplerate else 0.0
        if seconds > limits.max_seconds:
            raise AudioError(f"{shown}: is {seconds:.1f} s long; this server takes recordings of at most "
                             f"{limits.max_seconds:g} s (cocktail serve --max-minutes)")
        return path, shown

    async def submit(request: Request, kind: str) -> Response:
        try:
            form = await request.form(max_files=2, max_fields=4)
        except TooLarge:
            raise
        except Exception as err:  # a malformed form: say so in one line
            return error(f"the request is not a form upload ({err})")
        try:
            try:
                job = store.new(kind)
            except Busy as err:
                return error(str(err), 503)
            try:
                mixture, shown = await run_in_threadpool(save_upload, form.get("mixture"), job, "mixture",
                                                         "recording")
                if kind == "separate":
                    name = form.get("model") or default
                    if name not in choices:
                        raise CocktailError(f"model {name!r} is not offered here; choose from: {', '.join(choices)}")
                    run = lambda j: separate_job(j, models, name, mixture, shown, _stem(shown))  # noqa: E731
                else:
                    enroll, enroll_shown = await run_in_threadpool(save_upload, form.get("enrollment"), job,
                                                                   "enrollment", "enrollment")
                    run = lambda j: extract_job(j, models, mixture, enroll, (shown, enroll_shown),  # noqa: E731
                                                (_stem(shown), _stem(enroll_shown)))
                store.submit(job, run)  # refuses (and removes) it when too many wait
            except Busy as err:
                return error(str(err), 503)
            except CocktailError as err:
                store.discard(job)
                return error(str(err))
            except BaseException:
                store.discard(job)
                raise
        finally:
            await form.close()
        return JSONResponse({"id": job.id}, status_code=202)

    async def separate(request: Request) -> Response:
        return await submit(request, "separate")

    async def extract(request: Request) -> Response:
        return await submit(request, "extract")

    async def status(request: Request) -> Response:
        job = store.get(request.path_params["job_id"])
        if job is None:
            return error("no such job (it may have been removed: results are kept for a while only)", 404)
        body = {"id": job.id, "kind": job.kind, "state": job.state, "stage": job.stage,
                "progress": round(job.progress, 3), "position": store.position(job)}
        if job.state == "error":
            body["error"] = job.error
        if job.state == "done":
            body["result"] = job.result
        return JSONResponse(body)

    async def file(request: Request) -> Response:
        job = store.get(request.path_params["job_id"])
        name = request.path_params["name"]
        path = job.files.get(name) if job is not None and job.state == "done" else None
        if path is None or not path.is_file():
            return error("no such file", 404)
        media = "audio/wav" if name.endswith(".wav") else "image/png"
        headers = {"Cache-Control": "no-store"}
        if request.query_params.get("download") and name in job.downloads:
            headers["Content-Disposition"] = f'attachment; filename="{job.downloads[name]}"'
        return FileResponse(path, media_type=media, headers=headers)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        try:
            yield
        finally:
            store.close()

    app = Starlette(routes=[
        Route("/", index),
        Route("/api/info", info),
        Route("/api/separate", separate, methods=["POST"]),
        Route("/api/extract", extract, methods=["POST"]),
        Route("/api/jobs/{job_id}", status),
        Route("/api/jobs/{job_id}/files/{name}", file),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ], lifespan=lifespan)
    app.add_middleware(Guard, max_bytes=limits.max_bytes, loopback_only=loopback_only)
    app.state.store, app.state.models, app.state.limits = store, models, limits
    return app
