"""The HTTP side of ``derain serve``: the page, its static files, and a small JSON API over the job queue.

Standard library only (``http.server``). An upload is either the file's raw bytes as the request body
(``POST /api/jobs?model=NAME&name=FILE``, as the page sends it) or a ``multipart/form-data`` form with one
file field (``curl -F file=@photo.jpg``), whose other fields (model, task, name, format, quality) count as
the query's. Every error is JSON ``{"error": "..."}`` with a 4xx status (5xx for a bug), and the server keeps
serving; a client that hangs up is no error.

API::

    GET    /api/health             {"status": "ok", models, device, job counts}
    GET    /api/config             models, default model, limits
    POST   /api/jobs?model=&task=&name=   queue a photo -> 202 {job}
    POST   /api/derain?model=&task=&name=&format=&quality=
                                   derain a photo and answer with the image itself (waits in the same queue;
                                   hanging up cancels it)
    GET    /api/jobs               every job's status
    GET    /api/jobs/ID            one job's status (state, stage, tiles_done/tiles_total, error)
    GET    /api/jobs/ID/input      the upright input as JPEG (the "before" view)
    GET    /api/jobs/ID/result     the full-resolution result: ?format=png (default, 16-bit when the input
                                   was), jpeg or webp, &quality=1..100; ?download=1: as an attachment
    DELETE /api/jobs/ID            forget a job; a running one is cancelled at its next tile
"""
from __future__ import annotations

import json
import re
import select
import socket
import sys
import webbrowser
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import PurePath
from urllib.parse import parse_qs, quote, urlsplit

from derain.errors import DerainError
from derain.inference.restore import InferenceOptions, resolve_device
from derain.serve.catalog import build_catalog
from derain.serve.jobs import Job, JobQueue
from derain.serve.uploads import RESULT_FORMATS, UploadError, encode_result, inspect_upload, parse_form

STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
# Everything the page loads comes from this server: a strict policy makes an accidental CDN link fail loudly.
CONTENT_POLICY = "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
_DRAIN_LIMIT = 256 * 1024 * 1024
_JOB_PATH = re.compile(r"^/api/jobs/(\d+)(/input|/result)?$")


@dataclass
class ServeConfig:
    """Everything ``derain serve`` needs to know."""

    host: str = "127.0.0.1"
    port: int = 8000
    weights: list[str] = field(default_factory=list)  # extra models, "[NAME=]CHECKPOINT"
    device: str = "auto"
    options: InferenceOptions = field(default_factory=InferenceOptions)
    max_upload_bytes: int = 50_000_000
    max_pixels: int = 50_000_000
    keep: int = 20  # finished jobs kept in memory
    open_browser: bool = False
    quiet: bool = False


class DerainServer(ThreadingHTTPServer):
    """A threading HTTP server that holds the configuration and the job queue."""

    daemon_threads = True

    def __init__(self, config: ServeConfig, jobs: JobQueue) -> None:
        if ":" in config.host:
            self.address_family = socket.AF_INET6
        self.config = config
        self.jobs = jobs
        super().__init__((config.host, config.port), Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host  # typeshed allows bytes; the server gives str
        host = "localhost" if host in ("127.0.0.1", "::1") else host
        return f"http://{host}:{port}/"

    def server_close(self) -> None:
        super().server_close()
        self.jobs.stop()

    def handle_error(self, request, client_address) -> None:
        """A client that hangs up (a closed tab, a killed script) is no error: nothing to print. Anything else
        is a bug and keeps its traceback."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def _json(payload: object) -> bytes:
    return json.dumps(payload).encode("utf-8")


def _safe_filename(name: str) -> str:
    """A plain file name (no folders, no control characters) for messages and downloads."""
    name = PurePath(name.replace("\\", "/")).name
    name = "".join(ch for ch in name if ch.isprintable() and ch not in '"/')
    return name[:200] or "photo"


def _result_format(params: dict[str, str]) -> tuple[str, int | None]:
    """``format`` and ``quality`` of a result request, checked: (a RESULT_FORMATS key, quality or None)."""
    fmt = (params.get("format") or "png").lower()
    if fmt not in RESULT_FORMATS:
        raise UploadError(HTTPStatus.BAD_REQUEST, f"unknown format {fmt!r}; choose png, jpeg, webp")
    text = params.get("quality")
    if text is None or text == "":
        return fmt, None
    if not text.isdigit() or not 1 <= int(text) <= 100:
        raise UploadError(HTTPStatus.BAD_REQUEST, f"quality must be a whole number from 1 to 100, not {text!r}")
    return fmt, int(text)


class Handler(BaseHTTPRequestHandler):
    """Routes requests to the page, the static files and the JSON API."""

    server: DerainServer
    protocol_version = "HTTP/1.1"  # keep-alive: the page polls the queue often

    # --- plumbing --------------------------------------------------------------------------------------
    def log_message(self, format: str, *args) -> None:  # the base class's name
        pass  # the terminal shows one line per photo (see JobQueue), not every poll

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CONTENT_POLICY)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, payload: object, status: int = 200) -> None:
        self._send(status, _json(payload), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._send_json({"error": message}, status)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a malformed request line, too many headers) as JSON, like ours."""
        self.close_connection = True
        self._error(code, message or HTTPStatus(code).phrase)

    def _host_allowed(self) -> bool:
        """On a loopback address, only loopback host names (stops DNS-rebinding pages from using the server)."""
        if self.server.config.host not in LOOPBACK:
            return True
        host = (self.headers.get("Host") or "").strip()
        hostname = urlsplit(f"//{host}").hostname or ""
        return hostname in LOOPBACK

    def _route(self, method: str) -> None:
        if not self._host_allowed():
            self._error(HTTPStatus.FORBIDDEN, "requests must address this server as localhost")
            return
        path = urlsplit(self.path).path
        try:
            if method == "GET":
                self._get(path)
            elif method == "POST" and path == "/api/jobs":
                self._post_job()
            elif method == "POST" and path == "/api/derain":
                self._post_derain()
            elif method == "DELETE" and _JOB_PATH.match(path):
                self._delete_job(path)
            else:
                self._error(HTTPStatus.METHOD_NOT_ALLOWED if path.startswith("/api/") else HTTPStatus.NOT_FOUND,
                            f"no such endpoint: {method} {path}")
        except UploadError as exc:
            self._error(exc.status, str(exc))

    def do_GET(self) -> None:  # http.server's naming
        self._route("GET")

    def do_HEAD(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def do_PUT(self) -> None:  # answered "no such endpoint", as JSON
        self._route("PUT")

    def do_PATCH(self) -> None:
        self._route("PATCH")

    # --- GET ---------------------------------------------------------------------------------------------
    def _get(self, path: str) -> None:
        if path in ("/", "/index.html"):
            self._static("index.html")
        elif path.startswith("/static/"):
            self._static(path[len("/static/"):])
        elif path == "/api/config":
            self._send_json(self._config())
        elif path == "/api/health":
            self._health()
        elif path == "/api/jobs":
            self._send_json({"jobs": self.server.jobs.statuses()})
        elif match := _JOB_PATH.match(path):
            self._get_job(match.group(1), match.group(2))
        else:
            self._error(HTTPStatus.NOT_FOUND, f"not found: {path}")

    def _static(self, name: str) -> None:
        suffix = PurePath(name).suffix
        folder = resources.files("derain.serve") / "static"
        # Only plain names of known types: no "..", no sub-folders, nothing but the page's own files.
        if "/" in name or name.startswith(".") or suffix not in STATIC_TYPES or not (folder / name).is_file():
            self._error(HTTPStatus.NOT_FOUND, f"not found: /static/{name}")
            return
        self._send(HTTPStatus.OK, (folder / name).read_bytes(), STATIC_TYPES[suffix])

    def _config(self) -> dict:
        config = self.server.config
        models = [choice.describe() for choice in self.server.jobs.catalog.values()]
        return {"models": models, "default_model": models[0]["name"],
                "max_upload_bytes": config.max_upload_bytes, "max_megapixels": config.max_pixels / 1e6,
                "tile": self.server.jobs.tile(models[0]["name"])}

    def _health(self) -> None:
        jobs = self.server.jobs
        ok = jobs.alive
        self._send_json({"status": "ok" if ok else "error", "models": list(jobs.catalog),
                         "device": str(jobs.device), "jobs": jobs.counts()},
                        HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE)

    def _get_job(self, job_id: str, part: str | None) -> None:
        job = self.server.jobs.get(job_id)
        if job is None:
            self._error(HTTPStatus.NOT_FOUND, f"no job {job_id} (finished jobs are kept for the "
                                              f"{self.server.config.keep} most recent photos)")
            return
        if part is None:
            self._send_json(self.server.jobs.status(job))
            return
        body = job.preview if part == "/input" else job.result
        if body is None:
            self._error(HTTPStatus.CONFLICT, f"job {job_id} is {job.state}: its "
                                             f"{'input' if part == '/input' else 'result'} is not ready"
                        + (f" ({job.error})" if job.error else ""))
            return
        if part == "/input":
            self._send(HTTPStatus.OK, body, "image/jpeg")
            return
        query = {key: values[0] for key, values in parse_qs(urlsplit(self.path).query).items()}
        self._send_result(job, *_result_format(query), attachment="download" in query)

    def _send_result(self, job: Job, fmt: str, quality: int | None, attachment: bool) -> None:
        """The job's result encoded as ``fmt``, named after the upload (``photo-derained.jpg``)."""
        _, mime, suffix = RESULT_FORMATS[fmt]
        if job.result is None:  # callers check that the job is done; a missing result is a bug, not a 409
            raise RuntimeError(f"job {job.id} has no result to send")
        body = encode_result(job.result, fmt, quality, job.jpeg)
        name = f"{PurePath(job.filename).stem}-derained{suffix}"
        disposition = f"{'attachment' if attachment else 'inline'}; filename*=UTF-8''{quote(name)}"
        self._send(HTTPStatus.OK, body, mime, {"Content-Disposition": disposition})

    # --- POST / DELETE -----------------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        limit = self.server.config.max_upload_bytes
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            self.close_connection = True
            raise UploadError(HTTPStatus.LENGTH_REQUIRED, "send the image as the request body with a Content-Length")
        try:
            length = int(length_text)
            if length < 0:
                raise ValueError(length)
        except ValueError:
            self.close_connection = True  # where the body ends is unknown: nothing more can be read from it
            raise UploadError(HTTPStatus.BAD_REQUEST, f"bad Content-Length {length_text!r}: it must be the "
                                                      "body's size in bytes") from None
        if length > limit:
            # Read and drop a moderately large body, so the client is not cut off mid-send and sees the
            # message; beyond that, close the connection rather than read gigabytes.
            self.close_connection = True
            if length <= limit + _DRAIN_LIMIT:
                left = length
                while left > 0:
                    chunk = self.rfile.read(min(1 << 20, left))
                    if not chunk:
                        break
                    left -= len(chunk)
            raise UploadError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                              f"the file is {length / 1e6:.1f} MB; this server accepts uploads up to "
                              f"{limit / 1e6:g} MB (derain serve --max-upload-mb)")
        data = self.rfile.read(length)
        if len(data) != length:
            self.close_connection = True
            raise UploadError(HTTPStatus.BAD_REQUEST, "the upload was cut off before its end")
        return data

    def _read_upload(self) -> tuple[bytes, dict[str, str]]:
        """The uploaded file's bytes and the request's parameters: the query's, and a form's text fields
        (``name`` defaults to the form's file name)."""
        params = {key: values[0] for key, values in parse_qs(urlsplit(self.path).query).items()}
        data = self._read_body()  # read first, so an early refusal never leaves the body in the connection
        content_type = self.headers.get("Content-Type") or ""
        if content_type.split(";")[0].strip().lower() == "multipart/form-data":
            form = parse_form(data, content_type)
            if form.filename and "name" not in params:
                params["name"] = form.filename
            params.update(form.fields)
            data = form.data
        return data, params

    def _submit(self, data: bytes, params: dict[str, str]) -> Job:
        """Check the upload and its model and task, and queue it."""
        catalog = self.server.jobs.catalog
        model = params.get("model") or next(iter(catalog))
        task = params.get("task") or None
        filename = _safe_filename(params.get("name") or "photo")
        if model not in catalog:
            raise UploadError(HTTPStatus.BAD_REQUEST,
                              f"unknown model {model!r}; this server offers: {', '.join(catalog)}")
        tasks = catalog[model].tasks
        if task is not None and task not in tasks:
            choose = f"; choose one of {', '.join(tasks)}" if tasks else " (it is not an all-in-one model)"
            raise UploadError(HTTPStatus.BAD_REQUEST, f"model {model!r} has no task {task!r}{choose}")
        if tasks and task is None:
            task = tasks[0]
        info = inspect_upload(data, self.server.config.max_pixels)
        return self.server.jobs.submit(filename, model, task, data, info)

    def _post_job(self) -> None:
        job = self._submit(*self._read_upload())
        self._send_json(self.server.jobs.status(job), HTTPStatus.ACCEPTED)

    def _post_derain(self) -> None:
        """Derain the upload and answer with the image, for scripts; it waits its turn in the page's queue."""
        data, params = self._read_upload()
        fmt, quality = _result_format(params)  # refuse a bad format before spending time on the photo
        job = self._submit(data, params)
        while not job.finished.wait(0.2):
            if self._client_gone():
                self.server.jobs.remove(job.id)  # cancels it: nobody is waiting for the result any more
                self.close_connection = True
                return
        self.server.jobs.remove(job.id)  # the result goes to the client; the queue need not keep it
        if job.state == "done":
            self._send_result(job, fmt, quality, attachment=False)
        elif job.state == "failed":
            status = HTTPStatus.INTERNAL_SERVER_ERROR if job.internal_error else HTTPStatus.UNPROCESSABLE_ENTITY
            self._error(status, job.error or "the photo failed")
        else:  # cancelled by a DELETE of its job, or never run because the server is stopping
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, "the photo was not processed: its job was removed or "
                                                        "the server is stopping")

    def _client_gone(self) -> bool:
        """Whether the client closed the connection while it waited (it has nothing more to send)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _delete_job(self, path: str) -> None:
        match = _JOB_PATH.match(path)
        if match is None:  # the dispatcher matched it before calling
            raise RuntimeError(f"not a job path: {path}")
        job_id = match.group(1)
        job = self.server.jobs.remove(job_id)
        if job is None:
            self._error(HTTPStatus.NOT_FOUND, f"no job {job_id}")
            return
        self._send_json({"deleted": job_id, "cancelled": job.cancelled})


def make_server(config: ServeConfig, catalog: dict | None = None, log=None) -> DerainServer:
    """Load the models, start the worker and bind the server (port 0 picks a free port); not yet serving.

    ``catalog`` replaces the models built from ``config.weights`` (tests pass their own).
    """
    if config.max_upload_bytes <= 0 or config.max_pixels <= 0:
        raise DerainError("--max-upload-mb and --max-megapixels must be positive")
    device = resolve_device(config.device)
    if catalog is None:
        catalog = build_catalog(config.weights, device)
    jobs = JobQueue(catalog, config.options, device, keep=config.keep, log=log)
    try:
        server = DerainServer(config, jobs)
    except OSError as exc:
        raise DerainError(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}"
                          + ("; choose another port with --port" if config.port else "")) from None
    jobs.start()
    return server


def serve(config: ServeConfig) -> int:
    """Run the web app until Ctrl+C; returns the exit status."""
    say = (lambda line: None) if config.quiet else (lambda line: print(line, flush=True))
    server = make_server(config, log=say)
    models = ", ".join(server.jobs.catalog)
    say(f"derain: serving on {server.url} (models: {models}; uploads up to {config.max_upload_bytes / 1e6:g} MB, "
        f"{config.max_pixels / 1e6:g} MP); press Ctrl+C to stop")
    if config.host not in LOOPBACK:
        say("derain: note: listening beyond this computer; anyone who can reach it can upload photos")
    if config.open_browser:
        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        say("derain: stopped")
    finally:
        server.server_close()
        server.jobs.stop()  # let the worker leave torch before the interpreter tears down under it
    return 0
