"""Plumbing shared by the reliability tests (tests/test_reliability_*.py); no tests here.

moto resources wired as template.yaml wires them (bucket -> EventBridge -> SQS with a
dead-letter queue), the handlers loaded from functions/*/app.py, a real callback
receiver on 127.0.0.1, API Gateway v2 events built from real ``requests`` calls, and
made audio (WAV headers written by hand, so every odd case is exactly what it claims)."""
from __future__ import annotations

import base64
import http.server
import importlib.util
import json
import struct
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
ACCOUNT = "123456789012"
BUCKET = "whisperless-reliability"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
API_BASE = "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"
KEY_A = "wl_reliability_client_a"
KEY_B = "wl_reliability_client_b"
KEY_OFF = "wl_reliability_disabled"


class Context:
    """A Lambda context with a fixed amount of time left."""

    def __init__(self, function_name: str = "TranscriberFunction", remaining_ms: int = 900_000):
        self.function_name = function_name
        self.memory_limit_in_mb = 10240
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"
        self.aws_request_id = "req-reliability"
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def load_handler(function: str, name: str):
    """functions/<function>/app.py as a fresh module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "functions" / function / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def set_aws_env(monkeypatch) -> None:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": REGION, "POWERTOOLS_TRACE_DISABLED": "true",
                        "POWERTOOLS_METRICS_NAMESPACE": "Whisperless"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


def create_resources(s3, sqs, events, dynamodb, *, visibility: int = 30, max_receives: int = 3) -> dict:
    """Bucket -> EventBridge (results excluded) -> job queue (redrive to a DLQ) and the tables."""
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration={"EventBridgeConfiguration": {}})
    dlq = sqs.create_queue(QueueName="jobs-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(QueueName="jobs", Attributes={
        "VisibilityTimeout": str(visibility),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives})})["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="audio-uploaded", EventPattern=json.dumps({
        "source": ["aws.s3"], "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": [BUCKET]}, "object": {"key": [{"anything-but": {"suffix": ".json"}}]}},
    }))
    events.put_targets(Rule="audio-uploaded", Targets=[{"Id": "queue", "Arn": queue_arn}])
    for table, key in (("jobs", "id"), ("idempotency", "id"), ("apikeys", "keyHash")):
        dynamodb.create_table(TableName=table, KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
                              AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
                              BillingMode="PAY_PER_REQUEST")
    return {"queue": queue, "dlq": dlq, "queue_arn": queue_arn}


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


def result(s3, key: str, bucket: str = BUCKET) -> dict | None:
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=key + ".json")["Body"].read())
    except s3.exceptions.NoSuchKey:
        return None


def wait_for(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Receiver:
    """A real HTTP callback receiver on 127.0.0.1: answers a scripted list of statuses
    (the last repeats), optionally after a delay; records every request it got."""

    def __init__(self, statuses=(200,), delay: float = 0.0):
        self.statuses = list(statuses)
        self.delay = delay
        self.requests: list[tuple[dict, bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                if receiver.delay:
                    time.sleep(receiver.delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
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
            "accountId": ACCOUNT, "apiId": "a1b2c3d4e5", "domainName": parts.netloc, "domainPrefix": "a1b2c3d4e5",
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


# ------------------------------------------------------------------ made audio


def wav_bytes(*, rate: int = 16000, channels: int = 1, seconds: float = 1.0, data: bytes | None = None,
              claimed_data_bytes: int | None = None, tone: float = 440.0) -> bytes:
    """A 16-bit PCM WAV. ``claimed_data_bytes`` writes that size into the header
    whatever the data really is (a header that lies)."""
    if data is None:
        t = np.arange(int(rate * seconds)) / rate
        mono = (0.3 * np.sin(2 * np.pi * tone * t) * 32767).astype("<i2")
        data = np.repeat(mono[:, None], channels, axis=1).tobytes()
    size = len(data) if claimed_data_bytes is None else claimed_data_bytes
    header = (b"RIFF" + struct.pack("<I", min(size + 36, 0xFFFFFFFF)) + b"WAVE"
              + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * channels * 2, channels * 2, 16)
              + b"data" + struct.pack("<I", size))
    return header + data


def speech_clip(sample_wav: Path, seconds: float, start: float = 0.0) -> bytes:
    """``seconds`` of the real two-speaker sample from ``start``, as a 16 kHz mono WAV."""
    from whisperless.audio import decode_audio

    audio = decode_audio(sample_wav)[int(start * 16000):int((start + seconds) * 16000)]
    return wav_bytes(data=(np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
