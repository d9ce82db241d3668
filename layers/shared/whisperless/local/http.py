"""The local stack's HTTP front: what API Gateway does for the deployed API (route matching, its
10 MB payload limit, payload v2 events for the API function), plus the web page at ``/``.

It runs on Werkzeug's threaded WSGI server (already here: moto's server mode runs on it), chosen
over production WSGI servers such as waitress because it hands the request to the application
before reading the body, so that a request is judged on its head first:

- an unknown route is API Gateway's own 404, and malformed framing (a Content-Length that is not
  a number, or with chunked encoding too) a 400, without reading anything;
- a body over 10 MB by its Content-Length is refused (413) unread;
- every route but the OpenAPI document needs the API key, and it is checked before the body is
  read (a stranger's upload is not buffered);
- chunked bodies are read (up to the limit, then 413); every read from a client times out
  (``client_timeout``), so a stalled one is answered 408 and dropped.
After answering, Werkzeug discards whatever the client still sends, 10 MB at a time, so that it
sees the answer instead of a reset connection; memory stays bounded.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from werkzeug.exceptions import HTTPException
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler
from werkzeug.utils import send_from_directory
from werkzeug.wrappers import Request, Response

from ..cloud.api import MAX_BODY_BYTES, payload_too_large
from ..cloud.context import LambdaContext
from ..cloud.forms import ApiError
from .lambda_host import api_event

if TYPE_CHECKING:
    from .stack import LocalStack

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent / "web"
NOT_FOUND = b'{"message":"Not Found"}'  # API Gateway's own answer for a route it does not have
CLIENT_TIMEOUT_SECONDS = 30.0
# The routes that need no key (functions/api/app.py: security=[]); every other one is refused
# before its body is read.
OPEN_ROUTES = frozenset({"GET /v1/openapi.json", "GET /v1/health"})
_READ = 64 * 1024
_FORGET_INPUT = "whisperless.forget_input"


class _Handler(WSGIRequestHandler):
    timeout = CLIENT_TIMEOUT_SECONDS  # every socket read; set per server below

    def make_environ(self) -> dict:
        environ = super().make_environ()
        environ[_FORGET_INPUT] = self._forget_input
        return environ

    def _forget_input(self) -> None:
        # A socket file that timed out raises on every later read, and Werkzeug reads what is
        # left of the body after answering (to discard it): give it nothing to read instead.
        self.rfile = io.BytesIO()

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        log.debug("api: %s %s", self.requestline, code)


class ApiServer(ThreadedWSGIServer):
    # A burst of clients (100 at once in the load test) overflows a small listen backlog and
    # sees connections reset; API Gateway queues far more than that.
    request_queue_size = socket.SOMAXCONN

    def __init__(self, stack: LocalStack, host: str, port: int, client_timeout: float = CLIENT_TIMEOUT_SECONDS):
        self.stack = stack
        handler = type("Handler", (_Handler,), {"timeout": client_timeout})
        super().__init__(host, port, self.app, handler=handler)

    # -- the WSGI application -------------------------------------------------------------------
    def app(self, environ: dict, start_response) -> Any:
        request = Request(environ)
        try:
            response = self._respond(request)
        except HTTPException as exc:  # the static files' 404
            response = exc.get_response(environ)
        if self.stack.cors and request.method != "OPTIONS":  # as API Gateway adds them to every answer
            response.headers.update(self.stack.cors.response_headers(dict(request.headers.items())))
        return response(environ, start_response)

    def _respond(self, request: Request) -> Response:
        stack = self.stack
        raw = urlsplit(request.environ.get("REQUEST_URI") or request.full_path)
        path, query = raw.path, raw.query
        if request.method == "GET" and not path.startswith("/v1/"):
            return send_from_directory(
                WEB_DIR, "index.html" if path in ("/", "") else path.lstrip("/"), request.environ
            )
        if request.method == "OPTIONS" and stack.cors:  # API Gateway answers preflights itself
            allowed = stack.cors.preflight(dict(request.headers.items()))
            return Response(b"", 204 if allowed else 404, headers=allowed or {})
        route = stack.routes.match(request.method, path)
        if route is None:  # API Gateway answers these itself
            return Response(NOT_FOUND, 404, content_type="application/json")
        try:
            length = _declared_length(request.environ)
            if length is not None and length > MAX_BODY_BYTES:
                raise payload_too_large()
            if route[0] not in OPEN_ROUTES:
                stack.authenticate(dict(request.headers.items()))
            body = _read_body(request.environ, length)
        except ApiError as exc:
            return _error(exc)
        event = api_event(
            request.method,
            path,
            query=query,
            headers=dict(request.headers.items()),
            body=body,
            routes=stack.routes,
            domain=f"{stack.host}:{stack.api_port}",
        )
        reply = stack.api_turns.handle(event, LambdaContext("ApiFunction", stack.api_timeout()))
        payload = reply.get("body") or ""
        data = base64.b64decode(payload) if reply.get("isBase64Encoded") else payload.encode()
        response = Response(data, int(reply.get("statusCode", 200)))
        for name, value in (reply.get("headers") or {}).items():
            if name.lower() not in ("content-length", "connection"):
                response.headers[name] = value
        for cookie in reply.get("cookies") or ():
            response.headers.add("Set-Cookie", cookie)
        return response


def _declared_length(environ: dict) -> int | None:
    """The body's length from Content-Length (0 without one); None when chunked."""
    declared = environ.get("CONTENT_LENGTH", "").strip()
    encoding = environ.get("HTTP_TRANSFER_ENCODING", "").strip().lower()
    if encoding:
        if encoding != "chunked":
            raise ApiError(
                501, "not_implemented", f"Transfer-Encoding {encoding!r} is not supported", field="Transfer-Encoding"
            )
        if declared:  # two framings: the way requests get smuggled past a front end
            raise ApiError(
                400, "invalid_request", "send Content-Length or chunked encoding, not both", field="Content-Length"
            )
        return None
    if not declared:
        return 0
    if not (declared.isascii() and declared.isdigit()):
        raise ApiError(
            400, "invalid_request", f"Content-Length {declared[:40]!r} is not a length", field="Content-Length"
        )
    return int(declared)


def _read_body(environ: dict, length: int | None) -> bytes:
    """The body, never more than the limit: ``length`` bytes, or a chunked stream to its end."""
    stream = environ["wsgi.input"]
    wanted = MAX_BODY_BYTES + 1 if length is None else length
    parts: list[bytes] = []
    got = 0
    try:
        while got < wanted:
            chunk = stream.read(min(_READ, wanted - got))
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
    except TimeoutError:
        environ[_FORGET_INPUT]()
        raise ApiError(408, "request_timeout", "the request body stopped arriving", field="body") from None
    except OSError as exc:  # Werkzeug's chunked decoder: a malformed chunk
        raise ApiError(400, "invalid_request", f"the chunked body is malformed: {exc}", field="body") from None
    if length is None and got > MAX_BODY_BYTES:
        raise payload_too_large()
    if length is not None and got < length:
        raise ApiError(400, "invalid_request", "the body is shorter than its Content-Length", field="body")
    return b"".join(parts)


def _error(exc: ApiError) -> Response:
    response = Response(json.dumps(exc.body()), exc.status, content_type="application/json")
    for name, value in exc.headers.items():
        response.headers[name] = value
    return response
