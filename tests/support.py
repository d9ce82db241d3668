"""Shared test plumbing: moto resources wired as template.yaml wires them, and a real
HTTP callback receiver on 127.0.0.1."""
from __future__ import annotations

import base64
import http.server
import json
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
ACCOUNT = "123456789012"


def set_aws_env(monkeypatch) -> None:
    """Fake credentials for moto, no tracing, and no endpoint override leaking in from the shell."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": REGION, "POWERTOOLS_TRACE_DISABLED": "true",
                        "POWERTOOLS_METRICS_NAMESPACE": "Whisperless"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


def wire_bucket_to_queue(s3, sqs, events, bucket: str, queue_name: str = "jobs",
                         queue_attributes: dict[str, str] | None = None) -> str:
    """Bucket -> EventBridge Object Created (results excluded) -> SQS; returns the queue URL."""
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}})
    queue = sqs.create_queue(QueueName=queue_name, Attributes=queue_attributes or {})["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="audio-uploaded", EventPattern=json.dumps({
        "source": ["aws.s3"], "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": [bucket]}, "object": {"key": [{"anything-but": {"suffix": ".json"}}]}},
    }))
    events.put_targets(Rule="audio-uploaded", Targets=[{"Id": "queue", "Arn": queue_arn}])
    return queue


def sqs_event(messages: list[dict], queue_arn: str = f"arn:aws:sqs:{REGION}:{ACCOUNT}:jobs") -> dict:
    """Lambda's SQS event for received messages (as the event source mapping builds it)."""
    return {"Records": [{
        "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
        "attributes": m.get("Attributes") or {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
        "md5OfBody": m.get("MD5OfBody", ""), "eventSource": "aws:sqs", "eventSourceARN": queue_arn,
        "awsRegion": REGION} for m in messages]}


def receive(sqs, queue: str, wait: int = 0) -> list[dict]:
    return sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=wait,
                               AttributeNames=["All"]).get("Messages", [])


def create_tables(dynamodb, tables: dict[str, str]) -> None:
    """{table name: hash key attribute}, all string keys, on-demand."""
    for table, key in tables.items():
        dynamodb.create_table(TableName=table, KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
                              AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
                              BillingMode="PAY_PER_REQUEST")


class Context:
    """A Lambda context with a fixed amount of time left."""

    def __init__(self, function_name: str = "TranscriberFunction", remaining_ms: int = 900_000):
        self.function_name = function_name
        self.memory_limit_in_mb = 10240
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self.aws_request_id = "req-reliability"
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


class Receiver:
    """A real HTTP callback receiver on 127.0.0.1: answers a scripted list of statuses
    (the last repeats), optionally after a delay; records every request it got. A GET is
    answered with ``content`` (a file server for URL jobs)."""

    def __init__(self, statuses=(200,), delay: float = 0.0, content: bytes = b""):
        self.statuses = list(statuses)
        self.delay = delay
        self.content = content
        self.requests: list[tuple[dict, bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                self._answer(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

            def do_GET(self):  # noqa: N802
                self._answer(b"")

            def _answer(self, body: bytes) -> None:
                with receiver.lock:
                    receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                if receiver.delay:
                    time.sleep(receiver.delay)
                content = receiver.content if self.command == "GET" and status == 200 else b""
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)
                except OSError:
                    pass  # the caller gave up (timeout)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def load_handler(function: str, name: str):
    """functions/<function>/app.py as a fresh module of its own."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "functions" / function / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------ API Gateway v2 events

API_ROUTES = {("POST", "/v1/transcriptions"), ("POST", "/v1/uploads"), ("GET", "/v1/openapi.json")}


def to_event(prepared) -> dict:
    """An HTTP API (payload v2) event for a prepared ``requests`` request, as API Gateway builds it."""
    parts = urlsplit(prepared.url)
    headers = {name.lower(): value for name, value in prepared.headers.items()}
    headers.update({"host": parts.netloc, "x-forwarded-proto": "https", "x-forwarded-port": "443",
                    "x-forwarded-for": "198.51.100.23"})
    if (prepared.method, parts.path) in API_ROUTES:
        route_key, path_parameters = f"{prepared.method} {parts.path}", None
    elif prepared.method == "GET" and parts.path.startswith("/v1/transcriptions/"):
        route_key, path_parameters = "GET /v1/transcriptions/{id}", {"id": parts.path.rsplit("/", 1)[-1]}
    else:
        route_key, path_parameters = "$default", None
    body = prepared.body or b""
    if isinstance(body, str):
        body = body.encode("utf-8")
    text = headers.get("content-type", "").startswith(("application/json", "text/")) and _utf8(body)
    event = {
        "version": "2.0", "routeKey": route_key, "rawPath": parts.path, "rawQueryString": parts.query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012", "apiId": "a1b2c3d4e5", "domainName": parts.netloc, "domainPrefix": "a1b2c3d4e5",
            "requestId": "JKJbAgPLvHcEMNw=", "routeKey": route_key, "stage": "$default",
            "time": "12/Mar/2024:10:15:30 +0000", "timeEpoch": 1710238530648,
            "http": {"method": prepared.method, "path": parts.path, "protocol": "HTTP/1.1",
                     "sourceIp": "198.51.100.23", "userAgent": headers.get("user-agent", "")},
        },
        "isBase64Encoded": bool(body) and not text,
    }
    if body:
        event["body"] = body.decode("utf-8") if text else base64.b64encode(body).decode("ascii")
    if path_parameters:
        event["pathParameters"] = path_parameters
    return event


def _utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class Answer:
    def __init__(self, raw: dict):
        self.status = raw["statusCode"]
        self.headers = {k.lower(): v for k, v in (raw.get("headers") or {}).items()}
        body = raw.get("body") or ""
        if raw.get("isBase64Encoded"):
            body = base64.b64decode(body).decode()
        self.json = json.loads(body) if body else None
