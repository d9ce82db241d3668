"""Plumbing shared by the reliability tests (tests/test_reliability_*.py); no tests here.

moto resources wired as template.yaml wires them (bucket -> EventBridge -> SQS with a
dead-letter queue), the handlers loaded from functions/*/app.py, a real callback
receiver on 127.0.0.1, API Gateway v2 events built from real ``requests`` calls, and
made audio (WAV headers written by hand, so every odd case is exactly what it claims)."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import numpy as np

from support import (  # noqa: F401 - shared with the reliability tests
    ACCOUNT,
    REGION,
    Answer,
    LambdaContext,
    Receiver,
    create_tables,
    load_handler,
    receive,
    set_aws_env,
    sqs_event,
    to_event,
    wire_bucket_to_queue,
)

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "whisperless-reliability"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
API_BASE = "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"
KEY_A = "wl_reliability_client_a"
KEY_OFF = "wl_reliability_disabled"


def create_resources(s3, sqs, events, dynamodb, *, visibility: int = 30, max_receives: int = 3) -> dict:
    """Bucket -> EventBridge (results excluded) -> job queue (redrive to a DLQ) and the tables."""
    dlq = sqs.create_queue(QueueName="jobs-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = wire_bucket_to_queue(
        s3,
        sqs,
        events,
        BUCKET,
        queue_attributes={
            "VisibilityTimeout": str(visibility),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives}),
        },
    )
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    create_tables(dynamodb, {"jobs": "id", "idempotency": "id", "apikeys": "keyHash"})
    return {"queue": queue, "dlq": dlq, "queue_arn": queue_arn}


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


# ------------------------------------------------------------------ made audio


def wav_bytes(
    *,
    rate: int = 16000,
    channels: int = 1,
    seconds: float = 1.0,
    data: bytes | None = None,
    claimed_data_bytes: int | None = None,
    tone: float = 440.0,
) -> bytes:
    """A 16-bit PCM WAV. ``claimed_data_bytes`` writes that size into the header
    whatever the data really is (a header that lies)."""
    if data is None:
        t = np.arange(int(rate * seconds)) / rate
        mono = (0.3 * np.sin(2 * np.pi * tone * t) * 32767).astype("<i2")
        data = np.repeat(mono[:, None], channels, axis=1).tobytes()
    size = len(data) if claimed_data_bytes is None else claimed_data_bytes
    header = (
        b"RIFF"
        + struct.pack("<I", min(size + 36, 0xFFFFFFFF))
        + b"WAVE"
        + b"fmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * channels * 2, channels * 2, 16)
        + b"data"
        + struct.pack("<I", size)
    )
    return header + data


def speech_clip(sample_wav: Path, seconds: float, start: float = 0.0) -> bytes:
    """``seconds`` of the real two-speaker sample from ``start``, as a 16 kHz mono WAV."""
    from whisperless.engine.audio import decode_audio

    audio = decode_audio(sample_wav)[int(start * 16000) : int((start + seconds) * 16000)]
    return wav_bytes(data=(np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())


# ------------------------------------------------------------------ the transcriber on moto


class CountingEngine:
    """The real engine (``tiny.en`` by default), counting its runs."""

    def __init__(self, model: str = "tiny.en"):
        from whisperless.engine import Engine

        self.engine = Engine(whisper_model=model)
        self.whisper_model = self.engine.whisper_model
        self.runs = 0

    def process(self, *args, **kwargs):
        self.runs += 1
        return self.engine.process(*args, **kwargs)


def make_runner(s3, dynamodb, app_module, engine, *, sleeps: list | None = None, **settings):
    """A JobRunner on the reliability resources, installed as ``app_module``'s runner."""
    from whisperless.cloud.runner import JobRunner
    from whisperless.config import Settings

    values = dict(
        bucket=BUCKET,
        jobs_table="jobs",
        idempotency_table="idempotency",
        api_keys_table="apikeys",
        webhook_secret=SECRET,
        allow_local_callbacks=True,
    )
    values.update(settings)
    runner = JobRunner(
        s3=s3,
        dynamodb=dynamodb,
        settings=Settings(**values),
        engine=engine,
        metrics=app_module.metrics,
        callback_sleep=(sleeps.append if sleeps is not None else lambda seconds: None),
        callback_timeout=(1.0, 2.0),
    )
    app_module._runner = runner
    return runner


def handle_queue(app_module, sqs, queue: str, queue_arn: str) -> list[str]:
    """Lambda's SQS event source, once: receive, invoke, delete what succeeded; the failed ids."""
    messages = receive(sqs, queue)
    if not messages:
        return []
    reply = app_module.handler(sqs_event(messages, queue_arn), LambdaContext())
    failed = [f["itemIdentifier"] for f in reply["batchItemFailures"]]
    for message in messages:
        if message["MessageId"] not in failed:
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    return failed
