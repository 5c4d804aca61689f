"""The web application of ``cocktail serve``: the page, its static files and a small JSON API.

Routes (all answers JSON except the page and the files):

- ``GET /``: the page; ``GET /static/...``: its script and style, from the package.
- ``GET /api/info``: the models to choose from and the server's limits.
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

from .. import audio
from ..checkpoint import DEFAULT_ENROLLED_MODEL, DEFAULT_MODEL, bundled_models
from ..errors import AudioError, CocktailError
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


class BodyLimit:
    """ASGI middleware: refuse a request body over ``max_bytes`` with 413, whether its
    Content-Length says so up front or its stream only shows it on the way."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(int(declared), scope, receive, send)
        seen = 0
        started = False

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
            await self._refuse(seen, scope, receive, send)

    async def _refuse(self, size: int, scope, receive, send):
        limit = self.max_bytes / 1e6
        message = (f"the upload is {'over ' if size <= self.max_bytes else ''}{max(size, self.max_bytes + 1) / 1e6:.1f} MB; "
                   f"this server takes at most {limit:g} MB a request (cocktail serve --max-mb)")
        await JSONResponse({"error": message}, status_code=413, headers={"Connection": "close"})(scope, receive, send)


def _shown_name(upload: UploadFile, fallback: str) -> str:
    """The file name the user chose, for messages: its last path part, printable, short."""
    name = Path((upload.filename or "").replace("\\", "/")).name
    name = "".join(ch for ch in name if ch.isprintable())[:120]
    return name or fallback


def _stem(shown: str) -> str:
    """A safe download-name stem from a shown name: letters, digits, '.', '_' and '-'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(shown).stem).strip(".-")[:60] or "recording"


def create_app(model: str | None = None, device: str | torch.device = "cpu", limits: Limits | None = None,
               enrolled_model: str = DEFAULT_ENROLLED_MODEL, preload: bool = True) -> Starlette:
    """The application. ``model`` (a bundled name or checkpoint path, default the bundled
    default) is preselected; the page may choose it or any bundled model, nothing else."""
    limits = limits or Limits()
    default = model or DEFAULT_MODEL
    choices = list(dict.fromkeys([default] + bundled_models()))
    models = Models(torch.device(device), enrolled=enrolled_model)
    if preload:
        models.separation(default)  # a bad --model fails at start, and the first job is quick
    store = JobStore(max_pending=limits.max_pending, keep_seconds=limits.keep_seconds)

    def error(message: str, status: int = 400) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    async def info(request: Request) -> Response:
        return JSONResponse({"models": choices, "default": default, "enrolled_model": enrolled_model,
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
    app.add_middleware(BodyLimit, max_bytes=limits.max_bytes)
    app.state.store, app.state.models, app.state.limits = store, models, limits
    return app
