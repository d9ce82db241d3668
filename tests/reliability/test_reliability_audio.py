"""Bad audio through the real transcriber handler (moto: upload -> EventBridge -> SQS ->
handler), and a message that keeps failing reaching the dead-letter queue with its reason.

Every bad input ends as a document next to the audio (the failed document, or an honest
transcript of what is really there), one signed callback carrying that document, a final
job record, and a message that is done (not reported for redelivery: the queue does not
spin on it)."""

from __future__ import annotations

import dataclasses
import json
import random
import time

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from reliability_common import (
    BUCKET,
    REGION,
    SECRET,
    LambdaContext,
    Receiver,
    create_resources,
    load_handler,
    receive,
    result,
    set_aws_env,
    sqs_event,
    wav_bytes,
)
from standardwebhooks.webhooks import Webhook


@pytest.fixture(scope="module")
def app_module():
    return load_handler("transcriber", "reliability_transcriber_app")


def _stack(monkeypatch, app_module, *, visibility: int = 30):
    set_aws_env(monkeypatch)
    mock = mock_aws()
    mock.start()
    s3 = boto3.client("s3", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    dynamodb = boto3.resource("dynamodb", region_name=REGION)
    queues = create_resources(s3, sqs, boto3.client("events", region_name=REGION), dynamodb, visibility=visibility)
    from whisperless.cloud.runner import JobRunner
    from whisperless.config import Settings
    from whisperless.engine import Engine

    settings = Settings(
        bucket=BUCKET,
        jobs_table="jobs",
        idempotency_table="idempotency",
        webhook_secret=SECRET,
        allow_local_callbacks=True,
        max_audio_bytes=64 * 1024 * 1024,
    )
    transcriber = JobRunner(
        s3=s3,
        dynamodb=dynamodb,
        settings=settings,
        engine=Engine(whisper_model="tiny.en"),
        metrics=app_module.metrics,
        callback_sleep=lambda seconds: None,
    )
    app_module._runner = transcriber
    return mock, {
        "s3": s3,
        "sqs": sqs,
        "jobs": dynamodb.Table("jobs"),
        "app": app_module,
        "transcriber": transcriber,
        **queues,
    }


@pytest.fixture
def aws(monkeypatch, app_module):
    mock, stack = _stack(monkeypatch, app_module)
    yield stack
    app_module._runner = None
    mock.stop()


def deliver_once(aws) -> tuple[dict, list[dict]]:
    """One round of Lambda's SQS event source: receive, invoke, delete what succeeded."""
    messages = receive(aws["sqs"], aws["queue"])
    if not messages:
        return {}, []
    reply = aws["app"].handler(sqs_event(messages, aws["queue_arn"]), LambdaContext())
    failed = {f["itemIdentifier"] for f in reply.get("batchItemFailures", [])}
    for message in messages:
        if message["MessageId"] not in failed:
            aws["sqs"].delete_message(QueueUrl=aws["queue"], ReceiptHandle=message["ReceiptHandle"])
    return reply, messages


def queue_depth(sqs, queue: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def _mp3(sample_wav, tmp_path_factory) -> bytes:
    from conftest import encode

    return encode(sample_wav, tmp_path_factory.mktemp("rel-audio") / "a.mp3", "libmp3lame", seconds=6).read_bytes()


@pytest.fixture(scope="module")
def mp3(sample_wav, tmp_path_factory) -> bytes:
    return _mp3(sample_wav, tmp_path_factory)


# name -> (key, body maker, expected: "failed" with codes, or "completed" with the honest duration)
BAD_AUDIO = {
    "zero bytes": ("bad/zero.wav", lambda mp3: b"", ("failed", {"empty_file"})),
    "random bytes named .wav": (
        "bad/random.wav",
        lambda mp3: random.Random(7).randbytes(48_000),
        ("failed", {"not_audio", "corrupt_audio"}),
    ),
    "text file named .mp3": ("bad/notes.mp3", lambda mp3: b"minutes of the meeting\n" * 200, ("failed", {"not_audio"})),
    "mp3 cut to its first 300 bytes": (
        "bad/cut-header.mp3",
        lambda mp3: mp3[:300],
        ("failed", {"not_audio", "corrupt_audio", "zero_length"}),
    ),
    "mp3 cut to its first third": ("bad/cut-third.mp3", lambda mp3: mp3[: len(mp3) // 3], ("completed", (1.0, 2.5))),
    "0.1 s clip": ("bad/short.wav", lambda mp3: wav_bytes(seconds=0.1), ("completed", (0.09, 0.11))),
    "10 minutes of silence": (
        "bad/silence.wav",
        lambda mp3: wav_bytes(data=bytes(16000 * 600 * 2)),
        ("completed", (599.9, 600.1)),
    ),
    "384 kHz WAV": ("bad/hirate.wav", lambda mp3: wav_bytes(rate=384_000, seconds=1.0), ("completed", (0.99, 1.01))),
    "16 channels": ("bad/16ch.wav", lambda mp3: wav_bytes(channels=16, seconds=2.0), ("completed", (1.99, 2.01))),
    "WAV header claiming 37 hours, 1 s of data": (
        "bad/liar.wav",
        lambda mp3: wav_bytes(seconds=1.0, claimed_data_bytes=0xFFFFFF00),
        ("completed", (0.99, 1.01)),
    ),
}


@pytest.mark.parametrize("case", list(BAD_AUDIO))
def test_bad_audio_gets_a_document_a_callback_and_no_redelivery(aws, mp3, case):
    key, make, (status, expected) = BAD_AUDIO[case]
    receiver = Receiver([200])
    try:
        aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=make(mp3), Metadata={"callbackurl": receiver.url})
        started = time.monotonic()
        reply, messages = deliver_once(aws)
        elapsed = time.monotonic() - started
        assert len(messages) == 1
        assert reply == {"batchItemFailures": []}  # done: the queue does not spin on it
        assert queue_depth(aws["sqs"], aws["queue"]) == 0

        doc = result(aws["s3"], key)
        assert doc is not None and doc["status"] == status, doc
        assert doc["source"] == {"bucket": BUCKET, "key": key}
        if status == "failed":
            assert doc["error"]["code"] in expected and doc["error"]["message"]
            assert set(doc) == {"id", "status", "error", "source"}
        else:
            low, high = expected
            assert low <= doc["duration"] <= high, doc["duration"]  # what is really there, not what a header says
            assert isinstance(doc["text"], str) and isinstance(doc["segments"], list)

        # One signed callback, carrying exactly the document next to the audio.
        assert len(receiver.requests) == 1
        headers, body = receiver.requests[0]
        assert Webhook(SECRET).verify(body, headers) == doc
        job = aws["jobs"].get_item(Key={"id": doc["id"]})["Item"]
        assert job["status"] == status and job["callback"]["delivered"] is True
        assert int(job["attempts"]) == 1
        assert elapsed < 60
    finally:
        receiver.close()


def test_an_oversized_upload_is_answered_not_retried(aws, mp3):
    """Checked from the object's size, before any download."""
    aws["transcriber"].settings = dataclasses.replace(aws["transcriber"].settings, max_audio_bytes=1000)
    aws["s3"].put_object(Bucket=BUCKET, Key="bad/big.mp3", Body=mp3)
    reply, _ = deliver_once(aws)
    assert reply == {"batchItemFailures": []}
    assert result(aws["s3"], "bad/big.mp3")["error"]["code"] == "audio_too_large"


# ------------------------------------------------------------------ the dead-letter queue


def test_a_url_job_failing_on_its_last_delivery_is_answered_before_the_dlq(aws, mp3, monkeypatch):
    """As for uploads: a URL job whose audio was fetched and stored, but cannot be read back
    on the message's last delivery, writes a retries_exhausted document and calls back."""
    from whisperless.cloud.events import UrlJob

    source, hook = Receiver(content=mp3), Receiver([200])
    try:

        def s3_down(*args, **kwargs):
            raise ClientError({"Error": {"Code": "InternalError", "Message": "internal error"}}, "GetObject")

        monkeypatch.setattr(aws["transcriber"].s3, "download_file", s3_down)
        job = UrlJob(
            job_id="j-last", bucket=BUCKET, key="uploads/j-last/a.mp3", url=source.url, params={"callbackURL": hook.url}
        )
        with pytest.raises(ClientError):  # the message fails, and the queue moves it to the DLQ
            aws["transcriber"].handle(job, LambdaContext(), receive_count=3)
        document = result(aws["s3"], "uploads/j-last/a.mp3")
        assert document["status"] == "failed" and document["error"]["code"] == "retries_exhausted"
        ((headers, body),) = hook.requests
        assert Webhook(SECRET).verify(body, headers)["error"]["code"] == "retries_exhausted"
    finally:
        source.close()
        hook.close()


def test_a_message_that_keeps_failing_lands_in_the_dlq_with_its_reason(monkeypatch, app_module, mp3, caplog):
    """maxReceiveCount 3, as template.yaml. S3 refuses every download (an infrastructure
    fault: retried, never answered as bad input). The third receive writes a
    retries_exhausted document; the queue then moves the message, unchanged, to the DLQ;
    the job record says why."""
    mock, aws = _stack(monkeypatch, app_module, visibility=1)
    try:
        transcriber = aws["transcriber"]
        downloads = []

        def s3_down(*args, **kwargs):
            downloads.append(args)
            raise ClientError(
                {"Error": {"Code": "InternalError", "Message": "We encountered an internal error"}}, "GetObject"
            )

        monkeypatch.setattr(transcriber.s3, "download_file", s3_down)
        aws["s3"].put_object(Bucket=BUCKET, Key="dlq/a.mp3", Body=mp3)

        receives = 0
        deadline = time.monotonic() + 20
        while queue_depth(aws["sqs"], aws["queue"]) and time.monotonic() < deadline:
            reply, messages = deliver_once(aws)
            if not messages:
                time.sleep(0.2)  # a failed message stays invisible for the 1 s visibility timeout
                continue
            receives += 1
            assert reply == {"batchItemFailures": [{"itemIdentifier": messages[0]["MessageId"]}]}
            assert messages[0]["Attributes"]["ApproximateReceiveCount"] == str(receives)
        assert receives == 3 and len(downloads) == 3

        (dead,) = receive(aws["sqs"], aws["dlq"])
        body = json.loads(dead["Body"])
        assert body["detail"]["object"]["key"] == "dlq/a.mp3"  # the original event, unchanged
        # The user is told on the last delivery: a failed document that says retries ran out.
        document = result(aws["s3"], "dlq/a.mp3")
        assert document["status"] == "failed" and document["error"]["code"] == "retries_exhausted"
        assert "InternalError" in document["error"]["message"]

        # "With its reason": the job record names the error and counts the attempts ...
        (job,) = aws["jobs"].scan()["Items"]
        assert job["status"] == "failed" and int(job["attempts"]) == 3
        assert job["lastError"]["code"] == "InternalError"
        assert "internal error" in job["lastError"]["message"]
        # ... and the log has one ERROR line per failed receive: message id, receive count, error.
        failures = [
            r.getMessage()
            for r in caplog.records
            if r.levelname == "ERROR" and "it will be redelivered, or moved to the dead-letter" in r.getMessage()
        ]
        assert len(failures) == 3
        for count, line in enumerate(failures, 1):
            assert f"message {dead['MessageId']} failed on receive {count}" in line and "InternalError" in line

        # Redriven after the outage, it completes.
        monkeypatch.undo()
        set_aws_env(monkeypatch)
        aws["sqs"].send_message(QueueUrl=aws["queue"], MessageBody=dead["Body"])
        reply, _ = deliver_once(aws)
        assert reply == {"batchItemFailures": []}
        assert result(aws["s3"], "dlq/a.mp3")["status"] == "completed"
    finally:
        app_module._runner = None
        mock.stop()
