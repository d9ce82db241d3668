"""The plain queue worker: the transcriber's jobs from the SQS queue, outside Lambda (GPU hosts,
any container): ``python -m whisperless.cloud.worker`` with the deployment's environment.
The Lambda handler and the local stack share :func:`process_message`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..config import Settings
from .context import LambdaContext
from .events import InvalidEvent, jobs_from_sqs_body
from .runner import DEFAULT_JOB_SECONDS, JobRunner

log = logging.getLogger(__name__)


def process_message(runner: JobRunner, body: str, context: Any = None, receive_count: int | None = None) -> list[dict]:
    """All jobs in one queue message; raises when the message must come back."""
    try:
        jobs = jobs_from_sqs_body(body)
    except InvalidEvent as exc:
        # Malformed messages can never succeed: log and drop them rather than loop.
        log.error("dropping malformed message: %s", exc.message)
        return [{"status": "skipped", "reason": exc.message}]
    return [runner.handle(job, context, receive_count) for job in jobs]


def job_seconds(sqs, queue_url: str, settings: Settings) -> float:
    """How long one job may hold its idempotency lock: the queue's visibility timeout (the
    message comes back then anyway, so a lock that outlived it would bounce every
    redelivery of a crashed worker's job into the dead-letter queue), or less when
    ``WORKER_JOB_SECONDS`` says so."""
    try:
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["VisibilityTimeout"])
        visibility = float(attributes["Attributes"]["VisibilityTimeout"])
    except Exception:  # noqa: BLE001 - no permission to read attributes: keep the function's timeout
        log.warning("cannot read the queue's visibility timeout; assuming %.0f s", DEFAULT_JOB_SECONDS)
        visibility = DEFAULT_JOB_SECONDS
    configured = settings.worker_job_seconds
    return min(visibility, configured) if configured else visibility


def run_worker(
    runner: JobRunner,
    sqs,
    queue_url: str,
    *,
    stop: Callable[[], bool] = lambda: False,
    wait_seconds: int = 10,
    once: bool = False,
) -> None:
    """Long-poll ``queue_url``; delete a message only after all its jobs are done."""
    seconds = job_seconds(sqs, queue_url, runner.settings)
    while not stop():
        reply = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=1,
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["ApproximateReceiveCount"],
        )
        for message in reply.get("Messages", []):
            receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1))
            try:
                process_message(runner, message["Body"], LambdaContext("worker", seconds), receives)
            except Exception:  # noqa: BLE001 - left on the queue: it comes back after the visibility timeout
                log.exception(
                    "message %s failed on receive %s; it will be redelivered, or moved to the "
                    "dead-letter queue after the queue's maxReceiveCount",
                    message.get("MessageId"),
                    receives,
                )
                continue
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        if once:
            return


def main() -> None:
    import boto3

    from ..config import settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = settings()
    if not config.queue_url:
        raise SystemExit("QUEUE_URL is not set: the worker needs the job queue to poll")
    runner = JobRunner(s3=boto3.client("s3"), dynamodb=boto3.resource("dynamodb"), settings=config)
    run_worker(runner, boto3.client("sqs"), config.queue_url)


if __name__ == "__main__":
    main()
