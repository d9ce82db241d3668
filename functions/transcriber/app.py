"""Transcriber Lambda: S3 uploads (via SQS, EventBridge or directly) and API job
messages in; results next to the audio and signed callbacks out.

Thin on purpose: it parses the event and hands each job to whisperless.cloud.runner.
"""

from __future__ import annotations

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from whisperless.cloud.events import InvalidEvent, jobs_from_payload
from whisperless.cloud.runner import JobRunner
from whisperless.cloud.worker import process_message
from whisperless.config import settings

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"whisperless"})  # our logs as JSON too
metrics = Metrics()  # namespace: POWERTOOLS_METRICS_NAMESPACE (template.yaml)
tracer = Tracer()
# A fully failed batch is reported item by item rather than raised: same redelivery, clearer logs.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

_runner: JobRunner | None = None


def runner() -> JobRunner:
    """Built once per execution environment; models stay loaded between invocations."""
    global _runner
    if _runner is None:
        _runner = JobRunner(
            s3=boto3.client("s3"), dynamodb=boto3.resource("dynamodb"), settings=settings(), metrics=metrics
        )
    return _runner


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict, context) -> dict:
    records = event.get("Records") if isinstance(event, dict) else None
    if (
        isinstance(records, list)
        and records
        and isinstance(records[0], dict)
        and records[0].get("eventSource") == "aws:sqs"
    ):

        def record_handler(record: SQSRecord) -> list[dict]:
            receives = record.attributes.approximate_receive_count
            logger.append_keys(message_id=record.message_id, receive_count=receives)
            try:
                return process_message(runner(), record.body, context, int(receives or 1))
            except Exception as exc:
                # The reason, where operators look: after the queue's maxReceiveCount such a
                # message moves (unchanged) to the dead-letter queue; the job record has lastError.
                logger.exception(
                    f"message {record.message_id} failed on receive {receives} "
                    f"({type(exc).__name__}: {exc}); it will be redelivered, or moved to the "
                    "dead-letter queue after the queue's maxReceiveCount"
                )
                raise

        # A failing message is reported alone; the rest of the batch is not redelivered.
        return dict(
            process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
        )
    # Direct S3 notification or EventBridge event: an exception makes Lambda retry it, which
    # helps an infrastructure failure but never a malformed event: that is logged and skipped.
    try:
        jobs = jobs_from_payload(event)
    except InvalidEvent as exc:
        logger.error(f"skipping a malformed event: {exc.message}")
        return {"results": [{"status": "skipped", "reason": exc.message}]}
    return {"results": [runner().handle(job, context) for job in jobs]}
