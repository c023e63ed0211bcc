"""The avitalk web app (Starlette): upload or record speech, read and edit the instruction, compare
samples, watch the face in the browser, download every export (docs/web-app.md).

HTTP API (JSON errors as ``{"error": "..."}`` with a 4xx status):

- ``GET /`` the page; ``GET /static/...`` its script, viewer and style sheet (no CDN: all local).
- ``GET /api/info`` models, motion space, fps, whether stage 1 is available, upload limits.
- ``POST /api/animate?instruction=TEXT&samples=N&seed=S&guidance=G`` with the audio file as the
  request body (WAV, FLAC, OGG or MP3; the page converts recordings to 16 kHz WAV before sending).
  Without ``instruction`` stage 1 describes the speech. Returns the job: its id, the instruction,
  the files of every sample as URLs.
- ``GET /api/jobs/{job}/{file}`` a file of a job (``render*.mp4`` is rendered on first request).

Uploads are limited in bytes (``max_upload_mb``) and seconds (``max_seconds``), checked by their
leading bytes and decoded before anything else happens; each request gets its own temporary
directory under the server's root (nothing is written anywhere else; file names are fixed, never
taken from the client). The models are shared; inference runs one request at a time (a lock), so
concurrent requests never mix and memory stays bounded. Old jobs are deleted beyond ``max_jobs``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATIC = Path(__file__).parent / "static"

#: Leading bytes of the accepted audio containers -> file suffix.
_MAGIC = ((b"RIFF", ".wav"), (b"fLaC", ".flac"), (b"OggS", ".ogg"), (b"ID3", ".mp3"))


def sniff_audio(head: bytes) -> str | None:
    """The file suffix for an accepted audio format judged by its first bytes, or None."""
    for magic, suffix in _MAGIC:
        if head.startswith(magic):
            if suffix == ".wav" and head[8:12] != b"WAVE":
                return None
            return suffix
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:  # MPEG audio frame sync
        return ".mp3"
    return None


@dataclass
class Job:
    """One animate request: its private directory, the files it may serve, what lazy renders need."""

    id: str
    dir: Path
    files: set[str]
    motions: list[Any] = field(default_factory=list)
    audio: Any = None
    caption: str = ""


@dataclass(frozen=True)
class ServerConfig:
    """Limits of the web app.

    Attributes:
        max_upload_mb: largest accepted request body.
        max_seconds: longest accepted speech.
        max_samples: most style samples per request.
        max_jobs: jobs kept on disk (older ones are deleted).
    """

    max_upload_mb: float = 20.0
    max_seconds: float = 60.0
    max_samples: int = 4
    max_jobs: int = 16


class JobStore:
    """Per-request directories under one private root; the newest ``max_jobs`` are kept."""

    def __init__(self, max_jobs: int, root: Path | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="avitalk-serve-")) if root is None else root
        self.max_jobs = max_jobs
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.lock = threading.Lock()

    def new(self) -> Job:
        job_id = secrets.token_urlsafe(12)
        job = Job(job_id, Path(tempfile.mkdtemp(prefix="job-", dir=self.root)), set())
        return job

    def add(self, job: Job) -> None:
        with self.lock:
            self.jobs[job.id] = job
            while len(self.jobs) > self.max_jobs:
                _, old = self.jobs.popitem(last=False)
                remove_job_dir(old.dir)

    def get(self, job_id: str) -> Job | None:
        with self.lock:
            return self.jobs.get(job_id)

    def close(self) -> None:
        with self.lock:
            for job in self.jobs.values():
                remove_job_dir(job.dir)
            self.jobs.clear()
        with contextlib.suppress(OSError):
            for p in self.root.iterdir():
                remove_job_dir(p)
            self.root.rmdir()


def remove_job_dir(path: Path) -> None:
    """Delete a job directory: flat, made by us, holding only files we wrote."""
    if not path.is_dir():
        return
    for p in path.iterdir():
        with contextlib.suppress(OSError):
            p.unlink()
    with contextlib.suppress(OSError):
        path.rmdir()


def create_app(pipeline: Any, config: ServerConfig | None = None, *, store: JobStore | None = None) -> Any:
    """The Starlette application around a loaded :class:`avitalk.pipeline.Pipeline`."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from avitalk.errors import AvitalkError

    cfg = config or ServerConfig()
    jobs = store or JobStore(cfg.max_jobs)
    compute = threading.Lock()  # one inference at a time: shared models, bounded memory
    max_bytes = int(cfg.max_upload_mb * 1024 * 1024)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    async def info(request: Request) -> Response:
        synth = pipeline.synthesizer
        return JSONResponse(
            {
                "models": str(pipeline.models_dir) if pipeline.models_dir else None,
                "space": synth.space.key,
                "fps": synth.config.fps,
                "stage1": pipeline._describer is not None,
                "max_upload_mb": cfg.max_upload_mb,
                "max_seconds": cfg.max_seconds,
                "max_samples": cfg.max_samples,
            }
        )

    def _params(request: Request) -> dict[str, Any]:
        q = request.query_params
        unknown = set(q) - {"instruction", "samples", "seed", "guidance"}
        if unknown:
            raise AvitalkError(f"unknown parameter {', '.join(sorted(unknown))}")
        try:
            samples = int(q.get("samples", "1"))
            seed = int(q["seed"]) if q.get("seed", "") != "" else None
            guidance = float(q["guidance"]) if q.get("guidance", "") != "" else None
        except ValueError:
            raise AvitalkError("samples and seed must be integers, guidance a number") from None
        if not 1 <= samples <= cfg.max_samples:
            raise AvitalkError(f"samples must be between 1 and {cfg.max_samples}")
        if guidance is not None and not 0.0 <= guidance <= 20.0:
            raise AvitalkError("guidance must be between 0 and 20")
        text = q.get("instruction")
        if text is not None and len(text) > 4000:
            raise AvitalkError("instruction is too long (at most 4000 characters)")
        return {"instruction": text if text and text.strip() else None, "samples": samples, "seed": seed}

    async def animate(request: Request) -> Response:
        try:
            params = _params(request)
            guidance = request.query_params.get("guidance")
            declared = request.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                return error(413, f"upload too large (limit {cfg.max_upload_mb:g} MB)")
            body = bytearray()
            async for part in request.stream():
                body += part
                if len(body) > max_bytes:
                    return error(413, f"upload too large (limit {cfg.max_upload_mb:g} MB)")
            if not body:
                return error(400, "no audio in the request body")
            suffix = sniff_audio(bytes(body[:16]))
            if suffix is None:
                return error(415, "unsupported audio: send WAV, FLAC, OGG or MP3")
            job = jobs.new()
            try:
                result = await run_in_threadpool(
                    _run, job, bytes(body), suffix, params, float(guidance) if guidance else None
                )
            except BaseException:
                remove_job_dir(job.dir)
                raise
        except AvitalkError as e:
            return error(422, str(e))
        jobs.add(job)
        return JSONResponse(result)

    def _run(job: Job, body: bytes, suffix: str, params: dict[str, Any], guidance: float | None) -> dict[str, Any]:
        from avitalk.audio.io import load_audio
        from avitalk.pipeline import output_name

        upload = job.dir / f"upload{suffix}"  # fixed name inside the request's own directory
        upload.write_bytes(body)
        try:
            audio = load_audio(upload)
        finally:
            upload.unlink()
        if audio.duration > cfg.max_seconds:
            raise AvitalkError(f"speech is {audio.duration:.1f} s long; the limit is {cfg.max_seconds:g} s")
        with compute:
            result = pipeline.animate(
                audio,
                instruction=params["instruction"],
                samples=params["samples"],
                seed=params["seed"],
                guidance=guidance,
                out_dir=job.dir,
                formats=("instruction", "npz", "glb", "csv"),
            )
        job.motions, job.audio, job.caption = result.motions, result.audio, result.instruction
        job.files = {p.name for p in result.paths}
        n = len(result.samples)
        job.files |= {output_name("mp4", i, n) for i in range(n)}  # rendered on first download
        base = f"/api/jobs/{job.id}/"
        return {
            "job": job.id,
            "instruction": result.instruction,
            "described": result.described,
            "segments": [{"start": s.start, "end": s.end, "text": s.text} for s in result.timeline.segments],
            "duration": result.audio.duration,
            "fps": result.motions[0].fps,
            "n_frames": result.motions[0].n_frames,
            "files": {k: base + p.name for k, p in result.files.items()},
            "samples": [
                {
                    "index": s.index,
                    "files": {**{k: base + p.name for k, p in s.files.items()}, "mp4": base + output_name("mp4", i, n)},
                }
                for i, s in enumerate(result.samples)
            ],
            "timings": result.timings,
        }

    async def job_file(request: Request) -> Response:
        job = jobs.get(request.path_params["job"])
        name = request.path_params["name"]
        if job is None or name not in job.files:
            return error(404, "no such job or file (jobs are kept for a limited time)")
        path = job.dir / name
        if name.endswith(".mp4") and not path.is_file():
            index = int(name[len("render_") : -4]) - 1 if name != "render.mp4" else 0
            try:
                await run_in_threadpool(_render, job, path, index)
            except AvitalkError as e:
                return error(422, str(e))
        media = {".glb": "model/gltf-binary", ".csv": "text/csv", ".txt": "text/plain; charset=utf-8"}
        media[".npz"], media[".mp4"] = "application/octet-stream", "video/mp4"
        return FileResponse(path, media_type=media.get(path.suffix, "application/octet-stream"), filename=name)

    def _render(job: Job, path: Path, index: int) -> None:
        with compute:
            if not path.is_file():
                pipeline._render(path, job.motions[index], job.audio, job.caption, lambda *a: None)

    async def favicon(request: Request) -> Response:
        return Response(status_code=204)

    routes = [
        Route("/", index),
        Route("/favicon.ico", favicon),
        Route("/api/info", info),
        Route("/api/animate", animate, methods=["POST"]),
        Route("/api/jobs/{job}/{name}", job_file),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Any):
        yield
        jobs.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.jobs = jobs
    return app


def serve(
    pipeline: Any,
    host: str = "127.0.0.1",
    port: int = 8000,
    config: ServerConfig | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Run the app with uvicorn until interrupted (the job directories are removed at exit)."""
    import uvicorn

    app = create_app(pipeline, config)
    if on_ready is not None:
        on_ready(f"http://{host}:{port}/")
    try:
        uvicorn.run(app, host=host, port=port, log_level=os.environ.get("AVITALK_LOG_LEVEL", "warning"))
    finally:
        app.state.jobs.close()
