"""The transcriber's core: one job from S3 (or a URL) to a result next to the audio
and a signed callback. Shared by the Lambda handler, the GPU/plain worker
(``python -m whisperless.worker``) and the local stack.

Failure policy:
- the input's fault (bad audio, bad parameters, unsafe URL): the failed document is
  written and called back; the job is done, so the queue does not spin on it;
- our infrastructure's fault (S3, DynamoDB, network to S3): raise, so the message
  comes back and, after the queue's max receives, lands in the dead-letter queue.
Duplicates (S3 and SQS deliver at least once) are absorbed by Powertools Idempotency
keyed on bucket, key, ETag and version: one result write, one callback.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from .errors import WhisperlessError
from .events import ObjectJob, Skip, UrlJob
from .jobs import JobStore, ResultStore, job_id_for, result_key
from .options import TranscriptionOptions
from .metadata import BOOKKEEPING, CALLBACK, JOB_ID, read_metadata, upload_metadata
from .result import failed_document
from .settings import Settings

log = logging.getLogger(__name__)



class _Deadline:
    """Stands in for a Lambda context outside Lambda, so Powertools Idempotency can
    let an interrupted job's lock expire when the queue would redeliver it."""

    def __init__(self, seconds: float):
        self._end = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._end - time.monotonic()) * 1000))


class Transcriber:
    def __init__(self, *, s3, dynamodb, settings: Settings, engine=None, metrics=None,
                 callback_sleep: Callable[[float], None] = time.sleep,
                 callback_timeout: tuple[float, float] = (5, 15)):
        self.s3 = s3
        self.settings = settings
        self.jobs = JobStore(dynamodb.Table(settings.jobs_table), ttl_days=settings.job_ttl_days)
        self.results = ResultStore(s3)
        # Powertools writes low-level items; the resource's own client would re-serialise them,
        # so it gets a plain client on the same endpoint.
        resource_client = dynamodb.meta.client
        import boto3

        self._dynamodb_client = boto3.client("dynamodb", region_name=resource_client.meta.region_name,
                                             endpoint_url=resource_client.meta.endpoint_url)
        self._engine = engine
        self.metrics = metrics
        self.callback_sleep = callback_sleep
        self.callback_timeout = callback_timeout  # (connect, read) seconds per attempt
        self._object_runner = self._idempotent(self._process_object, "[bucket, key, etag, version_id]", "object")
        self._url_runner = self._idempotent(self._process_url, "job_id", "url")

    # -- idempotency -------------------------------------------------------------------
    def _idempotent(self, func, key_expression: str, prefix: str):
        from aws_lambda_powertools.utilities.idempotency import (
            DynamoDBPersistenceLayer,
            IdempotencyConfig,
            idempotent_function,
        )

        config = IdempotencyConfig(event_key_jmespath=key_expression, raise_on_no_idempotency_key=True,
                                   expires_after_seconds=24 * 3600)
        # One persistence layer per config: a shared one keeps the first config's key expression.
        store = DynamoDBPersistenceLayer(table_name=self.settings.idempotency_table,
                                         boto3_client=self._dynamodb_client)

        def call(job: dict):
            return func(job)

        call.__name__ = f"whisperless_{prefix}_job"
        wrapped = idempotent_function(call, data_keyword_argument="job", persistence_store=store, config=config)
        return config, wrapped

    @property
    def engine(self):
        if self._engine is None:
            from .engine import Engine

            self._engine = Engine()
        return self._engine

    @property
    def webhook_secret(self) -> str:
        # Not cached here: Powertools caches the secret for max_age, so a rotation is picked up.
        if self.settings.webhook_secret:
            return self.settings.webhook_secret
        if self.settings.webhook_secret_arn:
            from aws_lambda_powertools.utilities.parameters import get_secret

            return get_secret(self.settings.webhook_secret_arn, max_age=300)
        return ""

    # -- entry ---------------------------------------------------------------------------
    def handle(self, job: ObjectJob | UrlJob | Skip, context: Any = None, receive_count: int | None = None) -> dict:
        """Run one job. ``context``: the Lambda context, or None for the plain worker.
        ``receive_count``: how often the queue has delivered this message (None: not from a queue)."""
        if isinstance(job, Skip):
            log.info("skipped %s: %s", job.key or "event", job.reason)
            return {"status": "skipped", "reason": job.reason, "key": job.key}
        if self.settings.bucket and job.bucket != self.settings.bucket:
            # We may read and write only the deployment's bucket: anything else could never
            # succeed, and retrying it would only walk the message to the dead-letter queue.
            reason = f"bucket {job.bucket!r} is not this deployment's bucket"
            log.error("skipped %s: %s", job.key, reason)
            return {"status": "skipped", "reason": reason, "key": job.key}
        final = receive_count is not None and receive_count >= self.settings.max_receive_count
        return self._run(job, context or _Deadline(float(os.environ.get("WORKER_JOB_SECONDS", "900"))), final)

    def _run(self, job: ObjectJob | UrlJob, context: Any, final: bool) -> dict:
        config, runner = self._url_runner if isinstance(job, UrlJob) else self._object_runner
        config.register_lambda_context(context)
        # The flag rides along in the payload; the idempotency key is built from the job fields only.
        return runner(job={**asdict(job), "final_attempt": final})

    # -- S3 object -----------------------------------------------------------------------
    def _process_object(self, job: dict) -> dict:
        bucket = job["bucket"]
        found = self._head(bucket, job["key"]) or (job.get("raw_key") and self._head(bucket, job["raw_key"]))
        if not found:
            log.warning("object %s/%s is gone; nothing to transcribe", bucket, job["key"])
            return {"status": "skipped", "reason": "object no longer exists", "key": job["key"]}
        key, head = found
        metadata = read_metadata(head.get("Metadata", {}))
        job_id = metadata.get(JOB_ID) or job_id_for(bucket, key, job.get("etag"), job.get("version_id"))
        source = {"bucket": bucket, "key": key}
        self.jobs.start(job_id, bucket=bucket, key=key, params=_public_params(metadata))

        try:
            document = self._transcribe_object(job_id, bucket, key, head, metadata, source)
            self.results.write(bucket, key, document)  # one PUT: all or nothing
        except Exception as exc:
            self._record_retry(job_id, exc)
            if job.get("final_attempt"):
                self._give_up(job_id, bucket, key, exc, metadata.get(CALLBACK), source)
            raise  # the message comes back, or after its last delivery moves to the DLQ
        self._finish(job_id, document)
        delivery = self._call_back(metadata.get(CALLBACK), job_id, document)
        log.info("job %s %s: %s", job_id, document["status"], result_key(key))
        return {"status": document["status"], "jobId": job_id, "resultKey": result_key(key),
                "callback": delivery}

    def _head(self, bucket: str, key: str) -> tuple[str, dict] | None:
        try:
            return key, self.s3.head_object(Bucket=bucket, Key=key)
        except self.s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def _transcribe_object(self, job_id, bucket, key, head, metadata, source) -> dict:
        try:
            options = TranscriptionOptions.from_params(metadata, defaults=self.settings.defaults)
            size = int(head.get("ContentLength", 0))
            if size > self.settings.max_audio_bytes:
                raise WhisperlessError(
                    f"the audio is {size} bytes; the limit is {self.settings.max_audio_bytes}",
                    code="audio_too_large")
        except WhisperlessError as exc:
            return failed_document(job_id, exc, source)

        suffix = Path(key).suffix[:16]
        with tempfile.TemporaryDirectory(prefix="whisperless-") as tmp:
            local = Path(tmp) / f"audio{suffix}"
            self.s3.download_file(bucket, key, str(local))  # streams to disk; errors propagate (retry)
            try:
                return self.engine.run(local, options, job_id=job_id, source=source)
            except WhisperlessError as exc:
                log.info("job %s failed: %s", job_id, exc.message)
                return failed_document(job_id, exc, source)
            except Exception as exc:  # noqa: BLE001 - the same input would fail again: report, do not retry
                log.exception("job %s: engine failure", job_id)
                return failed_document(job_id, exc, source)

    # -- URL job (from the API) ------------------------------------------------------------
    def _process_url(self, job: dict) -> dict:
        from . import netguard

        bucket, key, job_id = job["bucket"], job["key"], job["job_id"]
        params = job["params"]
        metadata = upload_metadata(job_id, params)
        try:
            with tempfile.TemporaryDirectory(prefix="whisperless-") as tmp:
                local = Path(tmp) / "download"
                try:
                    netguard.download(job["url"], local, max_bytes=self.settings.max_audio_bytes, field="url",
                                      allow_loopback=self.settings.allow_local_callbacks)
                except (netguard.UnsafeURL, netguard.DownloadFailed, netguard.ResponseTooLarge) as exc:
                    if getattr(exc, "permanent", True):
                        return self._fail_without_audio(job_id, bucket, key, exc, metadata, {"url": job["url"]})
                    raise
                self.s3.upload_file(str(local), bucket, key, ExtraArgs={"Metadata": metadata})
            head = self.s3.head_object(Bucket=bucket, Key=key)
        except Exception as exc:
            self._record_retry(job_id, exc)
            if job.get("final_attempt"):
                self._give_up(job_id, bucket, key, exc, metadata.get(CALLBACK), {"url": job["url"]})
            raise
        # The upload also raises an S3 event for this object; both paths share this
        # idempotency key, so whichever comes second is a no-op. Same invocation: its deadline
        # and whether this is the message's last delivery carry over.
        return self._run(ObjectJob(bucket=bucket, key=key, etag=head["ETag"].strip('"'),
                                   version_id=head.get("VersionId")),
                         self._url_runner[0].lambda_context, job.get("final_attempt", False))

    def _fail_without_audio(self, job_id, bucket, key, exc, metadata, source) -> dict:
        document = failed_document(job_id, exc, source)
        self.results.write(bucket, key, document)
        self._finish(job_id, document)
        delivery = self._call_back(metadata.get(CALLBACK), job_id, document)
        return {"status": "failed", "jobId": job_id, "resultKey": result_key(key), "callback": delivery}

    def _give_up(self, job_id, bucket, key, exc, callback_url, source) -> None:
        """The last delivery failed too: tell the user (failed document, callback) before the
        message moves to the dead-letter queue. A redrive from there redoes the job and
        replaces the document. Best effort: what failed may be S3 itself."""
        document = failed_document(job_id, GaveUp(exc, self.settings.max_receive_count), source)
        try:
            self.results.write(bucket, key, document)
        except Exception:  # noqa: BLE001
            log.exception("job %s: could not write the failed document; the DLQ holds the message", job_id)
            return
        self._finish(job_id, document)
        self._call_back(callback_url, job_id, document)

    # -- job record ------------------------------------------------------------------------
    def _finish(self, job_id: str, document: dict) -> None:
        """Record the outcome. The result is already written, so a failure here must not
        make the message come back and the job run (and write, and call back) again:
        the result document is what the API and clients read first."""
        try:
            self.jobs.finish(job_id, status=document["status"], timings=document.get("timings"),
                             error=document.get("error"), duration=document.get("duration"))
        except Exception:  # noqa: BLE001
            log.exception("job %s: result written, but the job record could not be updated", job_id)
        self._record_metrics(document)

    def _record_retry(self, job_id: str, exc: BaseException) -> None:
        """Why this attempt failed, on the job record (best effort: DynamoDB may be what failed)."""
        reason = error_summary(exc)
        log.error("job %s: attempt failed (%s: %s); the message will be redelivered",
                  job_id, reason["code"], reason["message"])
        try:
            self.jobs.record_retry(job_id, reason)
        except Exception as record_exc:  # noqa: BLE001
            log.error("job %s: could not record the failure on the job record: %s", job_id,
                      error_summary(record_exc)["message"])

    # -- callback and metrics --------------------------------------------------------------
    def _call_back(self, url: str | None, job_id: str, document: dict) -> dict | None:
        if not url:
            return None
        from .webhooks import deliver

        if not self.webhook_secret:
            log.error("job %s: no webhook secret configured; callback not sent", job_id)
            outcome = {"delivered": False, "attempts": 0, "error": "no webhook secret configured"}
        else:
            outcome = deliver(url, document, secret=self.webhook_secret, msg_id=job_id,
                              allow_loopback=self.settings.allow_local_callbacks,
                              sleep=self.callback_sleep, timeout=self.callback_timeout).to_dict()
        try:
            self.jobs.record_callback(job_id, outcome)
        except Exception:  # noqa: BLE001 - the result is written; a lost record must not redo the job
            log.exception("job %s: could not record the callback outcome", job_id)
        return outcome

    def _record_metrics(self, document: dict) -> None:
        if self.metrics is None:
            return
        from aws_lambda_powertools.metrics import MetricUnit

        if document["status"] == "failed":
            self.metrics.add_metric(name="JobsFailed", unit=MetricUnit.Count, value=1)
            return
        self.metrics.add_metric(name="JobsCompleted", unit=MetricUnit.Count, value=1)
        duration = document.get("duration") or 0.0
        self.metrics.add_metric(name="AudioSeconds", unit=MetricUnit.Seconds, value=duration)
        timings = document.get("timings") or {}
        if duration and timings.get("total"):
            self.metrics.add_metric(name="RealTimeFactor", unit=MetricUnit.Count, value=duration / timings["total"])
        for stage, seconds in timings.items():
            self.metrics.add_metric(name=f"Stage_{stage}", unit=MetricUnit.Seconds, value=seconds)


class GaveUp(WhisperlessError):
    """A passing failure that outlasted the queue's redeliveries."""

    code = "retries_exhausted"

    def __init__(self, cause: BaseException, attempts: int):
        summary = error_summary(cause)
        super().__init__(f"gave up after {attempts} attempts; last error: {summary['code']}: {summary['message']}")


def error_summary(exc: BaseException) -> dict[str, str]:
    """{code, message} for an infrastructure failure: the AWS error code when there is one."""
    response = getattr(exc, "response", None)
    code = (response or {}).get("Error", {}).get("Code") if isinstance(response, dict) else None
    return {"code": str(code or type(exc).__name__), "message": str(exc)[:500] or type(exc).__name__}


def _public_params(metadata: dict[str, str]) -> dict[str, str]:
    """The job's request parameters as recorded (our own bookkeeping names left out)."""
    return {k: v for k, v in metadata.items() if k not in BOOKKEEPING}


# -- plain worker: the same jobs from an SQS queue, outside Lambda (GPU hosts, local stack) --
def process_message(transcriber: Transcriber, body: str, context: Any = None,
                    receive_count: int | None = None) -> list[dict]:
    """All jobs in one queue message; raises when the message must come back."""
    from .events import InvalidEvent, jobs_from_sqs_body

    try:
        jobs = jobs_from_sqs_body(body)
    except InvalidEvent as exc:
        # Malformed messages can never succeed: log and drop them rather than loop.
        log.error("dropping malformed message: %s", exc.message)
        return [{"status": "skipped", "reason": exc.message}]
    return [transcriber.handle(job, context, receive_count) for job in jobs]


def job_seconds(sqs, queue_url: str) -> float:
    """How long one job may hold its idempotency lock: the queue's visibility timeout (the
    message comes back then anyway, so a lock that outlived it would bounce every
    redelivery of a crashed worker's job into the dead-letter queue), or less when
    ``WORKER_JOB_SECONDS`` says so."""
    try:
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["VisibilityTimeout"])
        visibility = float(attributes["Attributes"]["VisibilityTimeout"])
    except Exception:  # noqa: BLE001 - no permission to read attributes: keep the old default
        log.warning("cannot read the queue's visibility timeout; assuming 900 s")
        visibility = 900.0
    configured = os.environ.get("WORKER_JOB_SECONDS")
    return min(visibility, float(configured)) if configured else visibility


def run_worker(transcriber: Transcriber, sqs, queue_url: str, *, stop: Callable[[], bool] = lambda: False,
               wait_seconds: int = 10, once: bool = False) -> None:
    """Long-poll ``queue_url``; delete a message only after all its jobs are done."""
    seconds = job_seconds(sqs, queue_url)
    while not stop():
        reply = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=wait_seconds,
                                    AttributeNames=["ApproximateReceiveCount"])
        for message in reply.get("Messages", []):
            try:
                process_message(transcriber, message["Body"], _Deadline(seconds),
                                int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1)))
            except Exception:  # noqa: BLE001 - left on the queue: it comes back after the visibility timeout
                receives = message.get("Attributes", {}).get("ApproximateReceiveCount", "?")
                log.exception("message %s failed on receive %s; it will be redelivered, or moved to the "
                              "dead-letter queue after the queue's maxReceiveCount", message.get("MessageId"), receives)
                continue
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        if once:
            return


def main() -> None:
    import boto3

    from .settings import settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = settings()
    if not config.queue_url:
        raise SystemExit("QUEUE_URL is not set: the worker needs the job queue to poll")
    transcriber = Transcriber(s3=boto3.client("s3"), dynamodb=boto3.resource("dynamodb"), settings=config)
    run_worker(transcriber, boto3.client("sqs"), config.queue_url)


if __name__ == "__main__":
    main()
