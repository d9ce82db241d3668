"""The plain queue worker: the transcriber's jobs from the SQS queue, outside Lambda (GPU hosts,
any container): ``python -m whisperless.cloud.worker`` with the deployment's environment.
The Lambda handler and the local stack share :func:`process_message`."""

from __future__ import annotations

import logging
import signal
import threading
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


class Heartbeat:
    """Keeps a message invisible while its job runs: every third of the visibility timeout it is
    extended to a full one again, so a job longer than the timeout is not redelivered while it
    runs, and a crashed worker's message still comes back within one timeout."""

    def __init__(self, sqs, queue_url: str, receipt_handle: str, seconds: float):
        self.sqs, self.queue_url, self.receipt_handle = sqs, queue_url, receipt_handle
        self.seconds = max(1, int(seconds))
        self.beats = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqs-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._done.wait(self.seconds / 3):
            try:
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=self.receipt_handle, VisibilityTimeout=self.seconds
                )
                self.beats += 1
            except Exception as exc:  # noqa: BLE001 - the job goes on; the message may come back early
                log.warning("could not extend the message's visibility: %s", exc)


def run_worker(
    runner: JobRunner,
    sqs,
    queue_url: str,
    *,
    stop: Callable[[], bool] = lambda: False,
    wait_seconds: int = 10,
    once: bool = False,
) -> None:
    """Long-poll ``queue_url``; delete a message only after all its jobs are done. Once ``stop``
    says so, no more messages are taken; a job interrupted then (:meth:`JobRunner.interrupt`)
    hands its message straight back to the queue for another worker."""
    seconds = job_seconds(sqs, queue_url, runner.settings)
    while not stop():
        reply = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=1,
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["ApproximateReceiveCount"],
        )
        for message in reply.get("Messages", []):
            if stop():  # the signal came during the long poll: not started, handed straight back
                sqs.change_message_visibility(
                    QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
                continue
            receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1))
            try:
                with Heartbeat(sqs, queue_url, message["ReceiptHandle"], seconds):
                    process_message(runner, message["Body"], LambdaContext("worker", seconds), receives)
            except Exception:  # noqa: BLE001 - left on the queue: it comes back after the visibility timeout
                if runner.stopping.is_set():  # interrupted: another worker may take it now
                    log.warning("message %s interrupted: handed back to the queue", message.get("MessageId"))
                    sqs.change_message_visibility(
                        QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                    )
                    continue
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


def stop_on_signals(runner: JobRunner, grace: float) -> threading.Event:
    """SIGTERM (ECS, Kubernetes, systemd) and Ctrl-C stop the worker cleanly: no more messages are
    taken, the running job has ``grace`` seconds to finish, then it is interrupted and its message
    goes back to the queue. A second signal interrupts at once. Returns the "stopping" event."""
    stopping = threading.Event()

    def on_signal(signum, frame) -> None:
        if stopping.is_set():
            log.warning("second signal: interrupting the running job now")
            runner.interrupt()
            return
        log.warning(
            "%s: stopping; a running job has %.0f s to finish, then goes back to the queue",
            signal.Signals(signum).name,
            grace,
        )
        stopping.set()
        timer = threading.Timer(grace, runner.interrupt)
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stopping


def main() -> None:
    import boto3

    from ..config import settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = settings()
    if not config.queue_url:
        raise SystemExit("QUEUE_URL is not set: the worker needs the job queue to poll")
    sqs = boto3.client("sqs")
    runner = JobRunner(s3=boto3.client("s3"), dynamodb=boto3.resource("dynamodb"), settings=config, sqs=sqs)
    stopping = stop_on_signals(runner, config.stop_grace_seconds)
    run_worker(runner, sqs, config.queue_url, stop=stopping.is_set)
    log.info("worker stopped")


if __name__ == "__main__":
    main()
