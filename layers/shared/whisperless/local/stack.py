"""``whisperless serve``: the whole product on one machine, no AWS account, no Docker.

- moto in server mode stands in for S3, SQS, DynamoDB, EventBridge and CloudFormation; the
  template is translated by aws-sam-translator and created there as a stack, with an event bus of
  its own that gets each job's Transcription Completed/Failed event
  (:mod:`whisperless.local.cloudformation`), so names and environments are the template's own;
- the HTTP API is the real API Lambda handler behind :mod:`whisperless.local.http`, fed API
  Gateway v2 events for the template's routes;
- a worker polls the job queue and calls the real transcriber Lambda handler with SQS events,
  deleting what it reports done, as Lambda's event source mapping does.
State lives in memory (moto): it is gone when the process stops.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from ..cloud.context import REGION, LambdaContext
from ..errors import ConfigError
from . import cloudformation
from .cors import Cors
from .http import CLIENT_TIMEOUT_SECONDS
from .lambda_host import REPO, OneRequestAtATime, Routes, load_handler, sqs_event

log = logging.getLogger(__name__)

STACK_NAME = "whisperless-local"
TEMPLATE = REPO / "template.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _usable_port(host: str, port: int, flag: str) -> int:
    """``port``, checked free now (so a busy one is one clear line, not a thread's traceback), or a free one for 0."""
    if not port:
        return free_port()
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"port {port} on {host} is not free ({exc.strerror}): another whisperless serve? "
                f"Stop it, or pass {flag} 0 for a free port",
                field=flag,
            ) from None
    return port


class LocalStack:
    def __init__(
        self,
        *,
        template: Path = TEMPLATE,
        api_port: int = 0,
        s3_port: int = 0,
        api_key: str | None = None,
        webhook_secret: str | None = None,
        allow_local_callbacks: bool = False,
        host: str = "127.0.0.1",
        client_timeout: float = CLIENT_TIMEOUT_SECONDS,
        workers: int = 1,
    ):
        """Ports 0 mean free ones; no key or secret means new ones (see :meth:`info`)."""
        self.source = cloudformation.load_source(template)
        self.translated = cloudformation.translate(self.source)
        self.routes = Routes(cloudformation.api_routes(self.translated))
        self.cors = Cors.from_translated(self.translated)
        self.host = host
        self.api_port = _usable_port(host, api_port, "--port")
        self.moto_port = _usable_port("127.0.0.1", s3_port, "--s3-port")
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.allow_local_callbacks = allow_local_callbacks
        self.client_timeout = client_timeout
        self.workers = max(1, workers)
        self._stop = threading.Event()
        self._count_lock = threading.Lock()
        self._jobs_running = 0  # jobs in a worker thread now (stop() interrupts only those)

    # -- the local AWS -------------------------------------------------------------------------
    def _start_moto(self) -> None:
        from moto.server import ThreadedMotoServer

        from .moto_fixes import behave_like_aws

        behave_like_aws()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request lines
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=self.moto_port, verbose=False)
        self.moto.start()
        self.endpoint = f"http://127.0.0.1:{self.moto_port}"
        # Every boto3 client in this process (the handlers' too) talks to moto.
        os.environ.update(
            {
                "AWS_ENDPOINT_URL": self.endpoint,
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION,
            }
        )

    def _deploy(self) -> None:
        import boto3

        from ..cloud.webhooks import new_secret

        session = boto3.Session()
        self.webhook_secret = self.webhook_secret or new_secret()
        secret_arn = session.client("secretsmanager").create_secret(
            Name=f"{STACK_NAME}-webhook-secret", SecretString=self.webhook_secret
        )["ARN"]
        # What the template fills from its parameters a caller may set, as `sam deploy
        # --parameter-overrides` would (WHISPERLESS_MODEL=tiny.en whisperless serve).
        parameters = {
            param: os.environ[variable]
            for variable, param in cloudformation.parameter_variables(self.source).items()
            if os.environ.get(variable)
        }
        parameters["ExistingWebhookSecretArn"] = secret_arn
        # A bus of its own, created by the template's EventBus resource, so that a user can attach a
        # rule and a queue to whisperless's events alone (EVENT_BUS_NAME=default uses the default bus).
        parameters.setdefault("EventBusName", f"{STACK_NAME}-events")
        self.deployment = cloudformation.deploy(session, self.translated, stack_name=STACK_NAME, parameters=parameters)
        self.bucket = self.deployment.physical["AudioBucket"]
        self.queue_url = self.deployment.physical["JobQueue"]
        self.queue_arn = self.deployment.queue_arn("JobQueue")
        self.event_bus = self.deployment.environments["TranscriberFunction"]["EVENT_BUS_NAME"]

    def _configure_functions(self) -> None:
        env = {**self.deployment.environments["TranscriberFunction"], **self.deployment.environments["ApiFunction"]}
        env.update(
            {
                "ALLOW_LOCAL_CALLBACKS": "true" if self.allow_local_callbacks else "false",
                "POWERTOOLS_TRACE_DISABLED": "true",
                "POWERTOOLS_METRICS_DISABLED": "true",
                "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
            }
        )
        os.environ.update(env)
        from ..config import engine_settings, settings

        settings.cache_clear()
        engine_settings.cache_clear()
        self.api = load_handler("api", "whisperless_local_api")
        self.api_turns = OneRequestAtATime(self.api)
        # Presigned uploads must point at the local S3, not at AWS's regional endpoint.
        import boto3
        from botocore.config import Config

        self.api.service().presign_s3 = boto3.client(
            "s3", endpoint_url=self.endpoint, config=Config(signature_version="s3v4", s3={"addressing_style": "path"})
        )
        self.transcriber = load_handler("transcriber", "whisperless_local_transcriber")

    def _create_api_key(self) -> None:
        import boto3

        from ..cloud.apikeys import add_key, new_key

        self.api_key = self.api_key or new_key()
        add_key(boto3.resource("dynamodb").Table(os.environ["API_KEYS_TABLE"]), self.api_key, "local")

    # -- the worker: the transcriber handler behind an SQS poller ------------------------------
    def _work(self) -> None:
        import boto3

        sqs = boto3.client("sqs")
        while not self._stop.is_set():
            try:
                reply = sqs.receive_message(
                    QueueUrl=self.queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=1, AttributeNames=["All"]
                )
            except Exception:  # noqa: BLE001 - moto stopping under us at shutdown
                if self._stop.is_set():
                    return
                raise
            messages = reply.get("Messages", [])
            if not messages or self._stop.is_set():  # stopping: take no more work
                continue
            with self._count_lock:
                self._jobs_running += 1
            try:
                reply = self.transcriber.handler(
                    sqs_event(messages, self.queue_arn), LambdaContext("TranscriberFunction", 900)
                )
            except Exception:  # noqa: BLE001 - like Lambda: the whole batch comes back later
                log.exception("transcriber handler failed")
                continue
            finally:
                with self._count_lock:
                    self._jobs_running -= 1
            failed = {f["itemIdentifier"] for f in (reply or {}).get("batchItemFailures", [])}
            for message in messages:
                if message["MessageId"] not in failed:
                    sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> dict:
        from .http import ApiServer

        self._start_moto()
        self._deploy()
        self._configure_functions()
        self._create_api_key()
        self.server = ApiServer(self, self.host, self.api_port, self.client_timeout)
        self._server_thread = threading.Thread(target=self.server.serve_forever, name="api", daemon=True)
        # N workers on the one transcriber handler (as N Lambda environments would take messages
        # at once): threads sharing its loaded models, each polling the queue.
        self._worker_threads = [
            threading.Thread(target=self._work, name=f"worker-{i}", daemon=True) for i in range(self.workers)
        ]
        for thread in (self._server_thread, *self._worker_threads):
            thread.start()
        return self.info()

    def info(self) -> dict[str, Any]:
        return {
            "api": f"http://{self.host}:{self.api_port}",
            "s3": self.endpoint,
            "bucket": self.bucket,
            "eventBus": self.event_bus,
            "apiKey": self.api_key,
            "webhookSecret": self.webhook_secret,
            "stack": STACK_NAME,
            "workers": self.workers,
            "chunkSeconds": self._chunk_seconds(),
        }

    @staticmethod
    def _chunk_seconds() -> float:
        from ..config import settings

        return settings().chunk_seconds

    def authenticate(self, headers: dict[str, str]) -> str:
        """The client behind a request's key (the API's own check), before its body is read.
        In turn with the API handler: they share the key table's client."""
        with self.api_turns.lock:
            return self.api.service().authenticate(headers)

    def api_timeout(self) -> float:
        """The API function's time: the deployed one has 29 s (API Gateway's limit); locally the
        result wait is whatever was configured."""
        from ..config import settings

        return max(29.0, settings().result_wait_seconds + 4)

    def interrupt(self) -> None:
        """Stop the running job at the engine's next checkpoint (seconds) instead of waiting for it."""
        self.transcriber.runner().interrupt()

    def stop(self, grace: float = 0.0) -> bool:
        """Take no more work, give the running job ``grace`` seconds to finish, then interrupt it
        (its state is in memory, so it is lost either way; what matters is stopping cleanly: a
        process leaving while CTranslate2 still decodes aborts). True when everything stopped."""
        self._stop.set()
        deadline = time.monotonic() + grace
        for thread in self._worker_threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._jobs_running:
            log.warning("a running job did not finish within %.0f s: interrupting it", grace)
            self.interrupt()
        for thread in self._worker_threads:  # an idle one ends with its queue poll (1 s)
            thread.join(60)
        self.server.shutdown()
        self.server.server_close()
        self._server_thread.join(30)
        self.moto.stop()
        return not any(thread.is_alive() for thread in self._worker_threads)
