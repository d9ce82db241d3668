"""Running our Lambda handlers outside Lambda, as Lambda would: the one place the local stack and
the tests load handlers, build the events Lambda's services send (SQS batches, API Gateway HTTP
API payload v2), and match requests to the template's routes.
"""

from __future__ import annotations

import base64
import importlib.util
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl

from ..cloud.context import ACCOUNT, REGION, LambdaContext

__all__ = ["LambdaContext", "Routes", "api_event", "load_handler", "sqs_event", "OneRequestAtATime"]

REPO = Path(__file__).resolve().parents[4]
FUNCTIONS = REPO / "functions"


def load_handler(function: str, module_name: str | None = None) -> ModuleType:
    """``functions/<function>/app.py`` as a fresh module of its own (its own globals and clients)."""
    path = FUNCTIONS / function / "app.py"
    spec = importlib.util.spec_from_file_location(module_name or f"whisperless_{function}_app", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"no handler at {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sqs_event(messages: Iterable[Mapping[str, Any]], queue_arn: str, region: str = REGION) -> dict:
    """Lambda's SQS event for messages as ``receive_message`` returned them (the event source mapping's shape)."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes") or {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for m in messages
        ]
    }


class Routes:
    """The HTTP API's routes (``METHOD /path/{param}``), matched as API Gateway matches them."""

    def __init__(self, routes: Iterable[tuple[str, str]]):
        self.routes = [(method.upper(), path) for method, path in routes]

    def match(self, method: str, path: str) -> tuple[str, dict[str, str]] | None:
        """(route key, path parameters), or None: API Gateway answers 404 without calling the function."""
        got = path.strip("/").split("/")
        for route_method, route in self.routes:
            if route_method not in (method.upper(), "ANY"):
                continue
            want = route.strip("/").split("/")
            if len(want) != len(got):
                continue
            params = {}
            for w, g in zip(want, got, strict=True):
                if w.startswith("{") and w.endswith("}") and g:
                    params[w[1:-1]] = g
                elif w != g:
                    break
            else:
                return f"{route_method} {route}", params
        return None


def api_event(
    method: str,
    path: str,
    *,
    query: str = "",
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    routes: Routes | None = None,
    domain: str = "localhost",
    source_ip: str = "127.0.0.1",
) -> dict:
    """An HTTP API (payload format 2.0) event, as API Gateway builds it for a request."""
    now = datetime.now(UTC)
    lowered = {str(k).lower(): str(v) for k, v in (headers or {}).items()}
    matched = routes.match(method, path) if routes else None
    route_key, params = matched or ("$default", {})
    text = lowered.get("content-type", "").startswith(("application/json", "text/")) and _utf8(body)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": query,
        "headers": lowered,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "local",
            "domainName": domain,
            "domainPrefix": domain.split(".")[0],
            "requestId": uuid.uuid4().hex,
            "routeKey": route_key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
            "http": {
                "method": method.upper(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": lowered.get("user-agent", ""),
            },
        },
        "isBase64Encoded": bool(body) and not text,
    }
    if body:
        event["body"] = body.decode("utf-8") if text else base64.b64encode(body).decode("ascii")
    if query:
        event["queryStringParameters"] = dict(parse_qsl(query, keep_blank_values=True))
    if params:
        event["pathParameters"] = params
    return event


def _utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class OneRequestAtATime:
    """The API handler for concurrent HTTP requests in one process.

    Powertools' resolver keeps the request being handled in class attributes
    (``BaseRouter.current_event``, ``lambda_context``) and in the app's ``context`` dict:
    in Lambda one execution environment serves one request at a time, but threads would
    read each other's request (another client's body, key or job). So requests take
    turns; the API's one long pause, waiting for a result, hands the turn on and takes
    its own request state back when it resumes."""

    def __init__(self, module: ModuleType):
        self.module = module
        self.lock = threading.RLock()
        module.service().sleep = self.sleep

    def handle(self, event: dict, context: Any) -> dict:
        with self.lock:
            return self.module.handler(event, context)

    def sleep(self, seconds: float) -> None:
        from aws_lambda_powertools.event_handler.api_gateway import BaseRouter

        app, logger = self.module.app, self.module.logger
        saved = (BaseRouter.current_event, BaseRouter.lambda_context, dict(app.context), logger.get_correlation_id())
        self.lock.release()
        try:
            time.sleep(seconds)
        finally:
            self.lock.acquire()
            BaseRouter.current_event, BaseRouter.lambda_context = saved[0], saved[1]
            app.context.clear()
            app.context.update(saved[2])
            logger.set_correlation_id(saved[3])
