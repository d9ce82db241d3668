"""``whisperless serve``: the whole product on one machine, no AWS account, no Docker.

- moto in server mode stands in for S3, SQS, DynamoDB and EventBridge, with the
  bucket, tables, queues and upload rule created from template.yaml;
- the HTTP API is the real API Lambda handler, fed API Gateway v2 events built from
  each HTTP request;
- a worker polls the job queue and calls the real transcriber Lambda handler with
  SQS events, deleting what it reports done (as Lambda's event source mapping does).
State lives in memory (moto): it is gone when the process stops.
"""

from __future__ import annotations

import base64
import http.server
import importlib.util
import json
import logging
import mimetypes
import os
import signal
import socket
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit

from .template import ACCOUNT, REGION, LocalTemplate

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[3]
# Function variables that template.yaml fills from its Parameters.
PARAMETER_VARIABLES = ("WHISPERLESS_MODEL", "WHISPERLESS_DIARIZATION_MODEL", "DEFAULT_DIARIZATION", "DEFAULT_LANGUAGE",
                       "MAX_RECEIVE_COUNT",
                       "DEFAULT_TASK", "MAX_AUDIO_BYTES", "JOB_TTL_DAYS", "RESULT_WAIT_SECONDS")
WEB_DIR = Path(__file__).resolve().parent / "web"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _load_handler(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class LambdaContext:
    def __init__(self, function_name: str, timeout_seconds: float):
        self.function_name = function_name
        self.memory_limit_in_mb = 10240
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"
        self.aws_request_id = uuid.uuid4().hex
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class LocalStack:
    def __init__(self, *, template: Path, api_port: int = 0, api_key: str | None = None,
                 allow_local_callbacks: bool = False, host: str = "127.0.0.1"):
        self.template = LocalTemplate(template)
        self.host = host
        self.api_port = api_port or free_port()
        self.moto_port = free_port()
        self.api_key = api_key
        self.allow_local_callbacks = allow_local_callbacks
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- AWS stand-ins -----------------------------------------------------------------------
    def _start_moto(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request lines
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=self.moto_port, verbose=False)
        self.moto.start()
        self.endpoint = f"http://127.0.0.1:{self.moto_port}"
        # Every boto3 client in this process (the handlers' too) talks to moto.
        os.environ.update({"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "local",
                           "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION})

    def _create_resources(self) -> None:
        import boto3

        t = self.template
        s3, sqs = boto3.client("s3"), boto3.client("sqs")
        dynamodb, events = boto3.client("dynamodb"), boto3.client("events")
        for logical in t.of_type("AWS::S3::Bucket"):
            props = t.resources[logical].get("Properties", {})
            s3.create_bucket(Bucket=t.physical_name(logical))
            if props.get("NotificationConfiguration", {}).get("EventBridgeConfiguration", {}).get("EventBridgeEnabled"):
                s3.put_bucket_notification_configuration(
                    Bucket=t.physical_name(logical), NotificationConfiguration={"EventBridgeConfiguration": {}})
        for logical in t.of_type("AWS::DynamoDB::Table"):
            props = t.resolve(t.resources[logical]["Properties"])
            dynamodb.create_table(TableName=t.physical_name(logical), KeySchema=props["KeySchema"],
                                  AttributeDefinitions=props["AttributeDefinitions"], BillingMode="PAY_PER_REQUEST")
        # Dead-letter queues first: the others name them in their redrive policies.
        queues = sorted(t.of_type("AWS::SQS::Queue"),
                        key=lambda q: "RedrivePolicy" in t.resources[q].get("Properties", {}))
        for logical in queues:
            props = t.resources[logical].get("Properties", {})
            attributes = {"VisibilityTimeout": str(props.get("VisibilityTimeout", 30))}
            if "RedrivePolicy" in props:
                attributes["RedrivePolicy"] = json.dumps(t.resolve(props["RedrivePolicy"]))
            t.queue_urls[logical] = sqs.create_queue(QueueName=t.physical_name(logical),
                                                     Attributes=attributes)["QueueUrl"]
        for logical in t.of_type("AWS::Events::Rule"):
            props = t.resolve(t.resources[logical]["Properties"])
            events.put_rule(Name=t.physical_name(logical), EventPattern=json.dumps(props["EventPattern"]))
            events.put_targets(Rule=t.physical_name(logical),
                               Targets=[{"Id": target["Id"], "Arn": target["Arn"]} for target in props["Targets"]])
        self.bucket = t.physical_name(t.of_type("AWS::S3::Bucket")[0])
        self.queue_url = t.queue_urls["JobQueue"]

    def _configure_functions(self) -> None:
        from .webhooks import new_secret

        env = {**self.template.function_environment("TranscriberFunction"),
               **self.template.function_environment("ApiFunction")}
        self.webhook_secret = new_secret()
        env.update({
            "WEBHOOK_SECRET": self.webhook_secret,
            "ALLOW_LOCAL_CALLBACKS": "true" if self.allow_local_callbacks else "false",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
        })
        for name, value in env.items():
            # What is a deployment parameter in the template may be set by the caller, as
            # `sam deploy --parameter-overrides` would; everything else is this stack's.
            if not (name in PARAMETER_VARIABLES and os.environ.get(name)):
                os.environ[name] = value
        self.api = _load_handler(REPO / "functions" / "api" / "app.py", "whisperless_local_api")
        self.api_turns = _OneRequestAtATime(self.api)
        # Presigned uploads must point at the local S3, not at AWS's regional endpoint.
        import boto3
        from botocore.config import Config

        self.api.service().presign_s3 = boto3.client(
            "s3", endpoint_url=self.endpoint, config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
        self.transcriber = _load_handler(REPO / "functions" / "transcriber" / "app.py", "whisperless_local_transcriber")

    def _create_api_key(self) -> None:
        import boto3

        from .apikeys import add_key, new_key

        self.api_key = self.api_key or new_key()
        table = boto3.resource("dynamodb").Table(os.environ["API_KEYS_TABLE"])
        add_key(table, self.api_key, "local")

    # -- the worker: the transcriber handler behind an SQS poller ------------------------------
    def _work(self) -> None:
        import boto3

        sqs = boto3.client("sqs")
        while not self._stop.is_set():
            try:
                reply = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=1,
                                            AttributeNames=["All"])
            except Exception:  # noqa: BLE001 - moto stopping under us at shutdown
                if self._stop.is_set():
                    return
                raise
            messages = reply.get("Messages", [])
            if not messages:
                continue
            event = {"Records": [{
                "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                "attributes": m.get("Attributes", {}), "messageAttributes": {}, "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs", "eventSourceARN": self.template.arn("JobQueue"), "awsRegion": REGION,
            } for m in messages]}
            try:
                reply = self.transcriber.handler(event, LambdaContext("TranscriberFunction", 900))
            except Exception:  # noqa: BLE001 - like Lambda: the whole batch comes back later
                log.exception("transcriber handler failed")
                continue
            failed = {f["itemIdentifier"] for f in (reply or {}).get("batchItemFailures", [])}
            for message in messages:
                if message["MessageId"] not in failed:
                    sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    # -- the HTTP API: API Gateway v2 events for the API handler -------------------------------
    def api_event(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes) -> dict:
        now = datetime.now(timezone.utc)
        path_only = path.split("?", 1)[0]
        route = _route_key(method, path_only)
        event = {
            "version": "2.0", "routeKey": route, "rawPath": path_only, "rawQueryString": query,
            "headers": {k.lower(): v for k, v in headers.items()},
            "requestContext": {
                "accountId": ACCOUNT, "apiId": "local", "domainName": f"{self.host}:{self.api_port}",
                "domainPrefix": "local", "requestId": uuid.uuid4().hex, "routeKey": route, "stage": "$default",
                "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"), "timeEpoch": int(now.timestamp() * 1000),
                "http": {"method": method, "path": path_only, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                         "userAgent": headers.get("user-agent", "")},
            },
            "isBase64Encoded": True, "body": base64.b64encode(body).decode() if body else "",
        }
        if query:
            from urllib.parse import parse_qsl

            event["queryStringParameters"] = dict(parse_qsl(query))
        params = _path_parameters(path_only)
        if params:
            event["pathParameters"] = params
        return event

    def _http_server(self) -> http.server.ThreadingHTTPServer:
        stack = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self, method: str) -> None:
                parts = urlsplit(self.path)
                if method == "GET" and not parts.path.startswith("/v1/"):
                    return self._static(parts.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                event = stack.api_event(method, parts.path, parts.query, dict(self.headers.items()), body)
                # The deployed function has 29 s (API Gateway's limit); locally the wait is the configured one.
                timeout = max(29.0, float(os.environ.get("RESULT_WAIT_SECONDS", "25")) + 4)
                reply = stack.api_turns.handle(event, LambdaContext("ApiFunction", timeout))
                payload = reply.get("body") or ""
                data = base64.b64decode(payload) if reply.get("isBase64Encoded") else payload.encode()
                self.send_response(int(reply.get("statusCode", 200)))
                for name, value in (reply.get("headers") or {}).items():
                    if name.lower() not in ("content-length", "connection"):
                        self.send_header(name, value)
                for name, values in (reply.get("multiValueHeaders") or {}).items():
                    for value in values:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _static(self, path: str) -> None:
                name = "index.html" if path in ("/", "") else path.lstrip("/")
                file = (WEB_DIR / name).resolve()
                if WEB_DIR.resolve() not in file.parents or not file.is_file():
                    self.send_error(404)
                    return
                data = file.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", mimetypes.guess_type(file.name)[0] or "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802
                self._serve("GET")

            def do_POST(self):  # noqa: N802
                self._serve("POST")

            def do_PUT(self):  # noqa: N802
                self._serve("PUT")

            def do_DELETE(self):  # noqa: N802
                self._serve("DELETE")

            def log_message(self, fmt, *args):
                log.debug("api: " + fmt, *args)

        return _Server((self.host, self.api_port), Handler)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> dict:
        self._start_moto()
        self._create_resources()
        self._configure_functions()
        self._create_api_key()
        self.server = self._http_server()
        for target in (self.server.serve_forever, self._work):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self.info()

    def info(self) -> dict:
        return {"api": f"http://{self.host}:{self.api_port}", "s3": self.endpoint, "bucket": self.bucket,
                "apiKey": self.api_key, "webhookSecret": self.webhook_secret}

    def stop(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
        for thread in self._threads:
            thread.join(timeout=30)
        self.moto.stop()


class _OneRequestAtATime:
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

    def handle(self, event: dict, context) -> dict:
        with self.lock:
            return self.module.handler(event, context)

    def sleep(self, seconds: float) -> None:
        from aws_lambda_powertools.event_handler.api_gateway import BaseRouter

        app, logger = self.module.app, self.module.logger
        saved = (BaseRouter.current_event, BaseRouter.lambda_context, dict(app.context),
                 logger.get_correlation_id())
        self.lock.release()
        try:
            time.sleep(seconds)
        finally:
            self.lock.acquire()
            BaseRouter.current_event, BaseRouter.lambda_context = saved[0], saved[1]
            app.context.clear()
            app.context.update(saved[2])
            logger.set_correlation_id(saved[3])


class _Server(http.server.ThreadingHTTPServer):
    # socketserver's default listen backlog is 5: a burst of clients (100 at once in the
    # load test) then sees connections reset. API Gateway queues far more than that.
    request_queue_size = socket.SOMAXCONN


_ROUTES = (("POST", "/v1/transcriptions"), ("GET", "/v1/transcriptions/{id}"), ("POST", "/v1/uploads"),
           ("GET", "/v1/openapi.json"))


def _route_key(method: str, path: str) -> str:
    for route_method, route in _ROUTES:
        if route_method == method and _match(route, path) is not None:
            return f"{method} {route}"
    return f"{method} {path}"


def _match(route: str, path: str) -> dict | None:
    want, got = route.strip("/").split("/"), path.strip("/").split("/")
    if len(want) != len(got):
        return None
    params = {}
    for w, g in zip(want, got):
        if w.startswith("{"):
            params[w[1:-1]] = g
        elif w != g:
            return None
    return params


def _path_parameters(path: str) -> dict:
    for _, route in _ROUTES:
        params = _match(route, path)
        if params:
            return params
    return {}


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def serve(args) -> int:
    template = Path(args.template) if args.template else REPO / "template.yaml"
    stack = LocalStack(template=template, api_port=args.port or 0, api_key=args.api_key,
                       allow_local_callbacks=args.allow_local_callbacks)
    info = stack.start()
    print(f"whisperless local stack (state in memory: gone when this stops)\n"
          f"  API:      {info['api']}   (web page at {info['api']}/)\n"
          f"  S3:       {info['s3']}   bucket {info['bucket']}\n"
          f"  API key:  {info['apiKey']}\n"
          f"  callbacks signed with {info['webhookSecret']}"
          f"{'' if args.allow_local_callbacks else ' (loopback callbacks refused; --allow-local-callbacks)'}\n"
          f"Try:\n"
          f"  curl -H 'Authorization: Bearer {info['apiKey']}' -F file=@talk.mp3 -F diarization=true "
          f"{info['api']}/v1/transcriptions\n"
          f"  aws --endpoint-url {info['s3']} s3 cp talk.mp3 s3://{info['bucket']}/in/   "
          f"# then in/talk.mp3.json appears\n"
          f"Ctrl-C stops.", file=sys.stderr, flush=True)
    print(json.dumps(info), flush=True)
    # Ctrl-C and SIGTERM both stop cleanly (SIGINT is installed explicitly: background jobs inherit it ignored).
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("whisperless: stopping", file=sys.stderr)
    finally:
        stack.stop()
    return 0


def demo(args) -> int:
    """Start the stack in-process, upload the bundled real sample to its bucket with
    diarization on, wait for the result next to it, print it, and stop."""
    import boto3
    import pyannote.audio

    sample = Path(pyannote.audio.__file__).parent / "sample" / "sample.wav"
    stack = LocalStack(template=REPO / "template.yaml")
    info = stack.start()
    key = "demo/sample.wav"
    try:
        s3 = boto3.client("s3")
        print(f"demo: local stack up; uploading {sample.name} (30 s, two speakers) to s3://{info['bucket']}/{key} "
              "with x-amz-meta-diarization: true", file=sys.stderr, flush=True)
        started = time.monotonic()
        s3.upload_file(str(sample), info["bucket"], key, ExtraArgs={"Metadata": {"diarization": "true"}})
        while True:
            try:
                body = s3.get_object(Bucket=info["bucket"], Key=key + ".json")["Body"].read()
                break
            except s3.exceptions.NoSuchKey:
                if time.monotonic() - started > args.timeout:
                    print("demo: no result in time; see the log above", file=sys.stderr)
                    return 1
                time.sleep(0.5)
        document = json.loads(body)
        print(f"demo: s3://{info['bucket']}/{key}.json appeared after {time.monotonic() - started:.1f} s",
              file=sys.stderr)
        from .formats import RENDERERS

        sys.stdout.write(RENDERERS[args.format](document))
        print("\nNext:\n"
              "  .venv/bin/whisperless serve        # keep the stack running: HTTP API, S3, web page\n"
              "  curl -H 'Authorization: Bearer KEY' -F file=@talk.mp3 -F diarization=true "
              "http://127.0.0.1:PORT/v1/transcriptions\n"
              "  aws --endpoint-url http://127.0.0.1:S3PORT s3 cp talk.mp3 s3://BUCKET/in/   # in/talk.mp3.json appears\n"
              "  sam build && sam deploy --guided   # the same on AWS (template.yaml)", file=sys.stderr)
        return 0 if document.get("status") == "completed" else 1
    finally:
        stack.stop()
