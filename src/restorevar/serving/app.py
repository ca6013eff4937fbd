"""`restorevar serve`: a local web page and HTTP API for restoring photos.

Standard library only (`http.server` + threads): nothing to install beyond restorevar itself.
Uploads are validated in the request thread (clear 4xx answers), then queued and restored by worker
threads (`serve_jobs`). The page is web/index.html + app.js; the API is described by web/openapi.json
and docs/serve.md.
"""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import ipaddress
import json
import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlsplit

from restorevar.serving.jobs import Job, JobQueue, ServeConfig, ServeError, has_analysis

log = logging.getLogger(__name__)

STATIC_FILES = {
    "/": ("index.html", "text/html"),
    "/index.html": ("index.html", "text/html"),
    "/static/app.js": ("app.js", "text/javascript"),
    "/static/style.css": ("style.css", "text/css"),
    "/openapi.json": ("openapi.json", "application/json"),
}
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}
HEADER_PARSER = email.parser.BytesHeaderParser(policy=email.policy.HTTP)
PAGE_POLICY = "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'"


# ------------------------------------------------------------------------------------ HTTP


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # seconds a silent connection may hold a thread
    server: RestoreServer

    def do_GET(self) -> None:
        self._handle(self._get)

    def do_POST(self) -> None:
        self._handle(self._post)

    def _handle(self, route) -> None:
        try:
            self._check_origin()
            route(urlsplit(self.path))
        except ServeError as err:
            self._json({"error": err.message}, err.status, retry_after=err.retry_after)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as err:  # noqa: BLE001 - the server keeps serving whatever one request does
            log.exception("request %s %s failed", self.command, self.path)
            self._json({"error": f"internal error: {type(err).__name__}"}, 500)

    def _get(self, url) -> None:
        if url.path in STATIC_FILES:
            body, kind = self.server.static[url.path]
            return self._send(200, body, kind, {"Content-Security-Policy": PAGE_POLICY, "Cache-Control": "no-cache"})
        if url.path == "/api/health":
            return self._json(self.server.health())
        parts = url.path.strip("/").split("/")
        if len(parts) in (3, 4) and parts[:2] == ["api", "jobs"]:
            job = self.server.jobs.get(parts[2])
            if len(parts) == 3:
                return self._json(job.public())
            if parts[3] in ("result", "input"):
                return self._send_image(job, parts[3])
        raise ServeError(404, f"no page at '{url.path[:80]}'; see /openapi.json for the API")

    def _post(self, url) -> None:
        if url.path not in ("/api/restore", "/api/jobs"):
            raise ServeError(404, f"no endpoint POST '{url.path[:80]}'; see /openapi.json for the API")
        query = parse_qs(url.query)
        task = query.get("task", ["restore"])[0]
        if task not in ("restore", "analysis") or (task == "analysis" and not self.server.is_analysis):
            raise ServeError(
                400,
                f"unknown task '{task[:40]}'; use task=restore"
                + (" or task=analysis" if self.server.is_analysis else ""),
            )
        use_resize = query.get("resize", ["0"])[0].lower() in ("1", "true", "yes")
        data = self._read_upload()
        self.server.jobs.reserve()
        job = self.server.jobs.submit(data, task=task, use_resize=use_resize)
        if url.path == "/api/jobs":
            return self._json(job.public() | {"poll": f"/api/jobs/{job.id}"}, 202)
        if not job.done.wait(self.server.config.sync_timeout_s):
            raise ServeError(504, f"job {job.id} is still running; poll /api/jobs/{job.id} for its result")
        self._send_image(job, "result")
        self.server.jobs.forget(job.id)  # the client has its copy; free the memory now

    def _read_upload(self) -> bytes:
        """The image bytes of a raw body or of the first file part of a multipart/form-data body."""
        limit = int(self.server.config.max_upload_mb * 2**20)
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            raise ServeError(411, "send the image with a Content-Length header (chunked uploads are not supported)")
        if int(length) > limit:
            self._drain(int(length))
            raise ServeError(
                413,
                f"upload is {int(length) / 2**20:.2f} MB, above this server's limit of "
                f"{self.server.config.max_upload_mb:g} MB; shrink the image or restart with "
                "--max-upload-mb",
            )
        body = self.rfile.read(int(length))
        if len(body) < int(length):
            raise ConnectionError("client closed the connection during the upload")
        kind = self.headers.get("Content-Type", "")
        if kind.startswith("multipart/form-data"):
            body = _file_part(kind, body)
        if not body:
            raise ServeError(400, "the upload is empty; send image bytes as the body or as a multipart 'file' field")
        return body

    def _drain(self, length: int) -> None:
        """Read and drop an over-large body (up to 1 GB) so the client sees the 413, not a reset."""
        self.close_connection = True
        left = min(length, 2**30)
        while left > 0 and (chunk := self.rfile.read(min(left, 2**20))):
            left -= len(chunk)

    def _check_origin(self) -> None:
        """Refuse other web sites' pages (Origin) and DNS-rebinding hosts (Host) on a loopback server."""
        origin, host = self.headers.get("Origin"), self.headers.get("Host", "")
        if origin and urlsplit(origin).netloc != host:
            raise ServeError(403, f"cross-origin request from '{origin[:80]}' refused; open the page from this server")
        if self.server.is_loopback and urlsplit(f"//{host}").hostname not in LOOPBACK_NAMES | {None}:
            raise ServeError(403, f"host '{host[:80]}' refused: this server only answers as localhost")

    def _send_image(self, job: Job, which: str) -> None:
        if job.status == "failed":
            raise ServeError(job.error_status, job.error or "failed")
        if job.status != "done":
            raise ServeError(409, f"job {job.id} is {job.status}; poll /api/jobs/{job.id} until it is done")
        body = job.result_png if which == "result" else job.input_png
        # No Content-Disposition file name: it would override the page's download name (photo_restored.png).
        self._send(200, body, "image/png", {"X-Job-Id": job.id, "X-Seconds": f"{job.finished - job.started:.3f}"})

    def _json(self, body: dict, status: int = 200, *, retry_after: int | None = None) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after else {}
        self._send(status, json.dumps(body).encode(), "application/json", headers)

    def _send(self, status: int, body: bytes, kind: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def _file_part(content_type: str, body: bytes) -> bytes:
    """The first file field (or a field named 'file'/'image') of a multipart/form-data body (RFC 7578)."""
    header = email.message.Message()
    header["Content-Type"] = content_type
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise ServeError(400, "multipart upload without a boundary; let the HTTP client build the form")
    for part in (b"\r\n" + body).split(b"\r\n--" + boundary.encode("latin-1"))[1:]:
        head, _, content = part.partition(b"\r\n\r\n")
        fields = HEADER_PARSER.parsebytes(head.lstrip(b"\r\n") + b"\r\n\r\n")
        disposition = fields.get("Content-Disposition")
        if disposition is not None and (
            disposition.params.get("filename") is not None or disposition.params.get("name") in ("file", "image")
        ):
            return content
    raise ServeError(400, "multipart upload has no file part; send the image in a field named 'file'")


class RestoreServer(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client never blocks shutdown

    def __init__(self, model, config: ServeConfig, *, model_name: str = "custom"):
        super().__init__((config.host, config.port), Handler)
        self.model, self.config, self.model_name = model, config, model_name
        self.is_loopback = _is_loopback(config.host)
        self.is_analysis = has_analysis()
        web = resources.files("restorevar.serving") / "web"
        # Read once and served from this table: a request path never names a file.
        self.static = {
            route: (web.joinpath(name).read_bytes(), f"{kind}; charset=utf-8")
            for route, (name, kind) in STATIC_FILES.items()
        }
        self.jobs = JobQueue(model, config)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}"

    def health(self) -> dict:
        config = self.config
        return {
            "status": "ok",
            "model": self.model_name,
            "image_size": self.model.image_size,
            "device": str(self.model.device),
            "queue": self.jobs.counts(),
            "concurrency": config.concurrency,
            "max_upload_mb": config.max_upload_mb,
            "max_pixels": config.max_pixels,
            "analysis": self.is_analysis,
        }

    def server_close(self) -> None:
        super().server_close()
        self.jobs.close()


def _is_loopback(host: str) -> bool:
    try:
        return host in LOOPBACK_NAMES or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def create_server(config: ServeConfig, model=None, *, name: str = "custom") -> RestoreServer:
    """Load the model (unless given) and bind; call `serve_forever()` on the result."""
    if config.concurrency < 1 or config.queue_size < 1 or config.max_upload_mb <= 0:
        raise ValueError("--concurrency and --queue-size must be >= 1 and --max-upload-mb > 0")
    if model is None:
        from restorevar.models.registry import load_model

        model, name = load_model(config.model), config.model or "default"
    if not _is_loopback(config.host):
        log.warning(
            "listening on %s: anyone who can reach this address can use the server; "
            "use --host 127.0.0.1 unless you mean it",
            config.host,
        )
    return RestoreServer(model, config, model_name=str(name))
