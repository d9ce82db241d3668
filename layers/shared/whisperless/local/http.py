"""The local stack's HTTP front: what API Gateway does for the deployed API (route matching,
payload v2 events for the API function), plus the web page at ``/``."""

from __future__ import annotations

import base64
import http.server
import logging
import mimetypes
import socket
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..cloud.context import LambdaContext
from .lambda_host import api_event

if TYPE_CHECKING:
    from .stack import LocalStack

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent / "web"
_NOT_FOUND = b'{"message":"Not Found"}'  # API Gateway's own answer for a route it does not have


class ApiServer(http.server.ThreadingHTTPServer):
    # socketserver's default listen backlog is 5: a burst of clients (100 at once in the
    # load test) then sees connections reset. API Gateway queues far more than that.
    request_queue_size = socket.SOMAXCONN
    daemon_threads = True

    def __init__(self, stack: LocalStack, host: str, port: int):
        self.stack = stack
        super().__init__((host, port), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ApiServer

    def _serve(self, method: str) -> None:
        stack = self.server.stack
        parts = urlsplit(self.path)
        if method == "GET" and not parts.path.startswith("/v1/"):
            return self._static(parts.path)
        request_headers = dict(self.headers.items())
        cors = stack.cors.response_headers(request_headers) if stack.cors else {}
        if method == "OPTIONS" and stack.cors:  # API Gateway answers preflights itself
            allowed = stack.cors.preflight(request_headers)
            return self._send(204 if allowed else 404, allowed or {}, b"")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if stack.routes.match(method, parts.path) is None:  # API Gateway answers these itself
            return self._send(404, {"Content-Type": "application/json"}, _NOT_FOUND)
        event = api_event(
            method,
            parts.path,
            query=parts.query,
            headers=dict(self.headers.items()),
            body=body,
            routes=stack.routes,
            domain=f"{stack.host}:{stack.api_port}",
        )
        # The deployed function has 29 s (API Gateway's limit); locally the wait is the configured one.
        from ..config import settings

        timeout = max(29.0, settings().result_wait_seconds + 4)
        reply = stack.api_turns.handle(event, LambdaContext("ApiFunction", timeout))
        payload = reply.get("body") or ""
        data = base64.b64decode(payload) if reply.get("isBase64Encoded") else payload.encode()
        headers = {
            name: value
            for name, value in (reply.get("headers") or {}).items()
            if name.lower() not in ("content-length", "connection")
        }
        headers.update(cors)
        self._send(int(reply.get("statusCode", 200)), headers, data, reply.get("cookies") or [])

    def _send(self, status: int, headers: dict[str, str], data: bytes, cookies: list[str] | None = None) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        for cookie in cookies or ():
            self.send_header("Set-Cookie", cookie)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _static(self, path: str) -> None:
        name = "index.html" if path in ("/", "") else path.lstrip("/")
        file = (WEB_DIR / name).resolve()
        if WEB_DIR.resolve() not in file.parents or not file.is_file():
            self.send_error(404)
            return
        content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        self._send(200, {"Content-Type": content_type}, file.read_bytes())

    def do_GET(self):  # noqa: N802
        self._serve("GET")

    def do_POST(self):  # noqa: N802
        self._serve("POST")

    def do_PUT(self):  # noqa: N802
        self._serve("PUT")

    def do_DELETE(self):  # noqa: N802
        self._serve("DELETE")

    def do_OPTIONS(self):  # noqa: N802
        self._serve("OPTIONS")

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        log.debug("api: " + format, *args)
