"""The transcriber Lambda against moto: upload -> EventBridge -> SQS -> handler ->
`<key>.json` next to the audio, signed callbacks to a real local server, duplicates
done once, bad audio answered with the failed document and no retry storm."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from urllib.parse import unquote_plus

import boto3
import pytest
from moto import mock_aws
from standardwebhooks.webhooks import Webhook

from support import (
    REGION,
    LambdaContext,
    Receiver,
    assert_no_secrets,
    create_tables,
    create_voices_table,
    heard_secrets,
    load_handler,
    made_speech,
    receive,
    set_aws_env,
    silence_wav,
    sqs_event,
    wire_bucket_to_queue,
)

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "whisperless-test-audio"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture(scope="module")
def app_module():
    return load_handler("transcriber", "transcriber_app")


@pytest.fixture
def aws(monkeypatch, app_module):
    set_aws_env(monkeypatch)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        events = boto3.client("events", region_name=REGION)
        dynamodb = boto3.resource("dynamodb", region_name=REGION)
        queue = wire_bucket_to_queue(s3, sqs, events, BUCKET)  # as template.yaml wires it
        create_tables(dynamodb, {"jobs": "id", "idempotency": "id"})
        create_voices_table(dynamodb)
        from whisperless.cloud.runner import JobRunner
        from whisperless.config import Settings
        from whisperless.engine import Engine

        settings = Settings(
            bucket=BUCKET,
            jobs_table="jobs",
            idempotency_table="idempotency",
            voices_table="voices",
            webhook_secret=SECRET,
            allow_local_callbacks=True,  # loopback receivers, tests only
            max_audio_bytes=50 * 1024 * 1024,
        )
        app_module._runner = JobRunner(
            s3=s3,
            dynamodb=dynamodb,
            settings=settings,
            engine=Engine(whisper_model="tiny.en"),
            metrics=app_module.metrics,
            callback_sleep=lambda seconds: None,
            download_backoff=(0.05, 0.05, 0.05),
        )
        yield {
            "s3": s3,
            "sqs": sqs,
            "queue": queue,
            "jobs": dynamodb.Table("jobs"),
            "voices": dynamodb.Table("voices"),
            "app": app_module,
        }
        app_module._runner = None


def _drain(aws) -> dict:
    """Receive what the bucket's notifications put on the queue, as Lambda's SQS event."""
    return sqs_event(receive(aws["sqs"], aws["queue"]))


def _invoke(aws, event) -> dict:
    return aws["app"].handler(event, LambdaContext())


def _result(aws, key):
    return json.loads(aws["s3"].get_object(Bucket=BUCKET, Key=key + ".json")["Body"].read())


@pytest.fixture(scope="module")
def clip(tmp_path_factory, sample_wav) -> bytes:
    from conftest import encode

    return encode(sample_wav, tmp_path_factory.mktemp("clip") / "clip.mp3", "libmp3lame", seconds=12).read_bytes()


@pytest.mark.parametrize("key", ["calls/2024/my talk (1).mp3", "réunions/été+hiver 50%.mp3"])
def test_upload_writes_the_result_next_to_the_audio(aws, clip, key):
    aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=clip, Metadata={"language": "en"})
    event = _drain(aws)
    assert len(event["Records"]) == 1
    reply = _invoke(aws, event)
    assert reply == {"batchItemFailures": []}
    doc = _result(aws, key)
    assert doc["status"] == "completed" and doc["language"] == "en"
    assert "hello" in doc["text"].lower()
    assert doc["source"] == {"bucket": BUCKET, "key": key}
    assert all(w["timestamp"] == w["end"] for s in doc["segments"] for w in s["words"])
    job = aws["jobs"].get_item(Key={"id": doc["id"]})["Item"]
    assert job["status"] == "completed" and job["resultKey"] == key + ".json"
    # Writing the result raised no new job: the rule excludes .json keys.
    assert _drain(aws)["Records"] == []


def test_object_metadata_parameters_are_honoured(aws, sample_wav):
    aws["s3"].put_object(
        Bucket=BUCKET,
        Key="meetings/sample.wav",
        Body=sample_wav.read_bytes(),
        Metadata={"diarization": "true", "numspeakers": "2", "language": "en"},
    )
    _invoke(aws, _drain(aws))
    doc = _result(aws, "meetings/sample.wav")
    assert {t["speaker"] for t in doc["diarization"]} == {"SPEAKER_00", "SPEAKER_01"}
    assert all("speaker" in w for s in doc["segments"] for w in s["words"])


def test_real_shaped_s3_notification_with_encoded_key(aws, clip):
    key = "calls/2024/my talk (1).wav"
    aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=clip)
    _drain(aws)  # the EventBridge copy is not used here
    event = json.loads((ROOT / "events/sqs-s3-put.json").read_text())
    body = json.loads(event["Records"][0]["body"])
    body["Records"][0]["s3"]["bucket"]["name"] = BUCKET
    body["Records"][0]["s3"]["object"]["key"] = "calls/2024/my+talk+%281%29.wav"
    event["Records"][0]["body"] = json.dumps(body)
    assert _invoke(aws, event) == {"batchItemFailures": []}
    assert _result(aws, key)["status"] == "completed"


def test_callback_is_signed_and_retried_until_it_succeeds_once(aws, clip):
    receiver = Receiver([500, 500, 200])
    try:
        aws["s3"].put_object(Bucket=BUCKET, Key="cb/ok.mp3", Body=clip, Metadata={"callbackurl": receiver.url})
        _invoke(aws, _drain(aws))
        assert len(receiver.requests) == 3
        ids = {headers["webhook-id"] for headers, _ in receiver.requests}
        assert len(ids) == 1
        headers, body = receiver.requests[-1]
        payload = Webhook(SECRET).verify(body, headers)  # raises if the signature is wrong
        assert payload == _result(aws, "cb/ok.mp3")
        job = aws["jobs"].get_item(Key={"id": payload["id"]})["Item"]
        assert job["callback"]["delivered"] is True and int(job["callback"]["attempts"]) == 3
    finally:
        receiver.close()


def test_unreachable_callback_keeps_the_result_and_records_the_failure(aws, clip):
    receiver = Receiver([503])
    try:
        aws["s3"].put_object(Bucket=BUCKET, Key="cb/down.mp3", Body=clip, Metadata={"callbackurl": receiver.url})
        assert _invoke(aws, _drain(aws)) == {"batchItemFailures": []}
        doc = _result(aws, "cb/down.mp3")
        assert doc["status"] == "completed"
        job = aws["jobs"].get_item(Key={"id": doc["id"]})["Item"]
        assert job["callback"]["delivered"] is False and job["callback"]["error"]
    finally:
        receiver.close()


def test_duplicate_events_do_the_work_once_and_call_back_once(aws, clip):
    receiver = Receiver([200])
    try:
        aws["s3"].put_object(Bucket=BUCKET, Key="dup/a.mp3", Body=clip, Metadata={"callbackurl": receiver.url})
        event = _drain(aws)
        for _ in range(3):  # at-least-once delivery, including via the other entry shape
            assert _invoke(aws, copy.deepcopy(event)) == {"batchItemFailures": []}
        assert _invoke(aws, json.loads(event["Records"][0]["body"]))["results"][0]["status"] == "completed"
        assert len(receiver.requests) == 1
        doc = _result(aws, "dup/a.mp3")
        assert int(aws["jobs"].get_item(Key={"id": doc["id"]})["Item"]["attempts"]) == 1
    finally:
        receiver.close()


def test_corrupt_audio_gets_the_failed_document_and_a_callback_without_retries(aws):
    receiver = Receiver([200])
    try:
        aws["s3"].put_object(
            Bucket=BUCKET,
            Key="bad/noise.wav",
            Body=b"RIFF\x00\x00" + bytes(range(256)) * 8,
            Metadata={"callbackurl": receiver.url},
        )
        assert _invoke(aws, _drain(aws)) == {"batchItemFailures": []}  # done: not redelivered
        doc = _result(aws, "bad/noise.wav")
        assert doc["status"] == "failed" and doc["error"]["code"] in {"not_audio", "corrupt_audio"}
        assert doc["source"] == {"bucket": BUCKET, "key": "bad/noise.wav"}
        assert json.loads(receiver.requests[0][1]) == doc
    finally:
        receiver.close()


def test_bad_metadata_parameter_fails_the_job_naming_the_field(aws, clip):
    aws["s3"].put_object(Bucket=BUCKET, Key="bad/params.mp3", Body=clip, Metadata={"task": "summarize"})
    _invoke(aws, _drain(aws))
    doc = _result(aws, "bad/params.mp3")
    assert doc["status"] == "failed" and doc["error"]["field"] == "task"


def test_non_jobs_are_skipped_not_failed(aws):
    test_event = json.loads((ROOT / "events/sqs-s3-test-event.json").read_text())
    assert _invoke(aws, test_event) == {"batchItemFailures": []}
    aws["s3"].put_object(Bucket=BUCKET, Key="notes/readme.txt", Body=b"hello")
    assert receive(aws["sqs"], aws["queue"]) == []  # the upload rule takes audio extensions only
    # Should such an event come anyway (another rule, a direct invocation), it is skipped.
    detail = {"bucket": {"name": BUCKET}, "object": {"key": "notes/readme.txt", "etag": "e"}}
    reply = _invoke(aws, {"detail-type": "Object Created", "source": "aws.s3", "detail": detail})
    assert reply == {
        "results": [{"status": "skipped", "reason": "not an audio file extension", "key": "notes/readme.txt"}]
    }
    assert "Contents" not in aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix="notes/readme.txt.json")


def test_infrastructure_failure_reports_the_message_for_redelivery(aws, clip):
    aws["s3"].put_object(Bucket=BUCKET, Key="infra/a.mp3", Body=clip)
    event = _drain(aws)
    aws["jobs"].delete()  # DynamoDB unavailable for this job
    reply = _invoke(aws, event)
    assert reply == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert "Contents" not in aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix="infra/a.mp3.json")


def _job_message_event(job_id: str, url: str, receive_count: int) -> dict:
    body = {
        "jobId": job_id,
        "bucket": BUCKET,
        "key": f"uploads/{job_id}/talk.mp3",
        "url": url,
        "params": {"callbackURL": ""},
    }
    return sqs_event(
        [
            {
                "MessageId": f"m-{job_id}-{receive_count}",
                "ReceiptHandle": "r",
                "Body": json.dumps(body),
                "Attributes": {"ApproximateReceiveCount": str(receive_count)},
            }
        ]
    )


def test_a_url_that_keeps_failing_is_retried_briefly_then_answered(aws):
    """An audio URL that keeps answering 503: retried a few times within the invocation (each
    failure on the job record), then the job fails with the failed document at once; the
    message is done, not walked through the queue's redeliveries."""
    source = Receiver([503])  # the "audio server", failing
    try:
        assert _invoke(aws, _job_message_event("j-flaky", source.url, receive_count=1)) == {"batchItemFailures": []}
        doc = _result(aws, "uploads/j-flaky/talk.mp3")
        assert doc["status"] == "failed" and doc["error"]["code"] == "url_unreachable"
        assert doc["error"]["field"] == "url" and "503" in doc["error"]["message"]
        assert len(source.requests) == 4
        record = aws["jobs"].get_item(Key={"id": "j-flaky"})["Item"]
        assert record["status"] == "failed" and int(record["downloadAttempts"]) == 4
    finally:
        source.close()


# ------------------------------------------------------------------ redaction


@pytest.fixture(scope="module")
def call_wav(tmp_path_factory) -> bytes:
    """Made speech with a name, a phone number, a card number and an e-mail address."""
    return made_speech(tmp_path_factory.mktemp("call") / "call.wav").read_bytes()


def _keys(aws, prefix: str) -> list[str]:
    return sorted(o["Key"] for o in aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []))


def test_a_redacted_job_leaves_personal_data_nowhere_but_the_copy_asked_for(aws, call_wav, clip):
    from whisperless.contract.formats import RENDERERS

    key = "calls/made call.wav"
    receiver = Receiver([200])
    try:
        metadata = {
            "language": "en",
            "redact": "pii",
            "redactionoutput": "redacted_and_unredacted",
            "redactaudio": "true",
            "sentiment": "true",
            "callbackurl": receiver.url,
        }
        aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=call_wav, Metadata=metadata)
        assert _invoke(aws, _drain(aws)) == {"batchItemFailures": []}
        doc = _result(aws, key)
        unredacted = json.loads(aws["s3"].get_object(Bucket=BUCKET, Key=key + ".unredacted.json")["Body"].read())
        heard = heard_secrets(unredacted)
        assert doc["status"] == "completed" and doc["redactions"] and doc["sentiment"]["label"]
        headers, body = receiver.requests[0]
        assert Webhook(SECRET).verify(body, headers) == doc
        for output in (doc, body, *(render(doc) for render in RENDERERS.values())):
            assert_no_secrets(output, heard)
        # The job record keeps parameters and timings, never transcript text.
        record = json.dumps(aws["jobs"].get_item(Key={"id": doc["id"]})["Item"], default=str)
        assert not any(secret in record.lower() for secret in ("garcia", "garcía", ".com"))
        audio = aws["s3"].get_object(Bucket=BUCKET, Key=key + ".redacted.wav")
        assert audio["Body"].read(4) == b"RIFF" and audio["ContentType"] == "audio/wav"
        assert _keys(aws, "calls/") == [key, key + ".json", key + ".redacted.wav", key + ".unredacted.json"]
        # Our outputs started no job. The result and the copy raised no message (the upload rule passes
        # audio extensions only); the redacted .wav is audio to the rule, so its message may come and
        # the worker skips it (the upload's own message may show again: a loaded machine outlasts its
        # visibility; it is a duplicate).
        messages = _drain(aws)
        queued = {unquote_plus(json.loads(r["body"])["detail"]["object"]["key"]) for r in messages["Records"]}
        assert queued <= {key, key + ".redacted.wav"}
        assert _invoke(aws, messages) == {"batchItemFailures": []}
        assert _keys(aws, "calls/") == [key, key + ".json", key + ".redacted.wav", key + ".unredacted.json"]
    finally:
        receiver.close()

    # New audio under the same key, without the copy or the audio (the same bytes again would be
    # a duplicate of the first job): no earlier copy outlives its request.
    aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=clip, Metadata={"language": "en", "redact": "pii"})
    assert _invoke(aws, _drain(aws)) == {"batchItemFailures": []}
    assert _keys(aws, "calls/") == [key, key + ".json"]
    assert "hello" in _result(aws, key)["text"].lower()


def test_without_redaction_no_extra_output_is_written(aws, clip):
    aws["s3"].put_object(Bucket=BUCKET, Key="plain/a.mp3", Body=clip, Metadata={"language": "en"})
    _invoke(aws, _drain(aws))
    assert _keys(aws, "plain/") == ["plain/a.mp3", "plain/a.mp3.json"]
    assert "redactions" not in _result(aws, "plain/a.mp3")


def test_an_unknown_entity_type_fails_the_job_naming_redact(aws, clip):
    aws["s3"].put_object(Bucket=BUCKET, Key="bad/redact.mp3", Body=clip, Metadata={"redact": "PERSON,SHOE_SIZE"})
    _invoke(aws, _drain(aws))
    doc = _result(aws, "bad/redact.mp3")
    assert doc["status"] == "failed" and doc["error"]["field"] == "redact" and "SHOE_SIZE" in doc["error"]["message"]


DATA = Path(__file__).resolve().parents[1] / "data" / "speakers"


def test_a_speakers_object_enrols_the_bucket_s_voice_is_never_transcribed_and_its_deletion_forgets_it(aws):
    fiona = (DATA / "trn06-fee083.wav").read_bytes()
    aws["s3"].put_object(Bucket=BUCKET, Key="speakers/Fiona.wav", Body=fiona)
    assert _invoke(aws, _drain(aws)) == {"batchItemFailures": []}
    outcome = _result(aws, "speakers/Fiona.wav")
    assert outcome["status"] == "completed" and outcome["name"] == "Fiona" and outcome["seconds"] >= 2
    item = aws["voices"].get_item(Key={"owner": f"bucket:{BUCKET}", "name": "Fiona"})["Item"]
    assert len(bytes(item["embedding"].value)) == 192 * 4  # the embedding only
    assert aws["jobs"].scan()["Items"] == []  # not a transcription
    # Too little speech: refused in the outcome, naming the file; no voice.
    aws["s3"].put_object(Bucket=BUCKET, Key="speakers/Quiet.wav", Body=silence_wav(4))
    assert _invoke(aws, _drain(aws)) == {"batchItemFailures": []}
    refused = _result(aws, "speakers/Quiet.wav")
    assert refused["status"] == "failed" and refused["error"]["code"] == "too_little_speech"
    assert refused["error"]["field"] == "file"
    assert "Item" not in aws["voices"].get_item(Key={"owner": f"bucket:{BUCKET}", "name": "Quiet"})

    aws["s3"].delete_object(Bucket=BUCKET, Key="speakers/Fiona.wav")
    assert _invoke(aws, _drain(aws)) == {"batchItemFailures": []}
    assert "Item" not in aws["voices"].get_item(Key={"owner": f"bucket:{BUCKET}", "name": "Fiona"})


def test_the_api_s_enrolment_keeps_the_embedding_only(aws):
    aws["s3"].put_object(Bucket=BUCKET, Key=".voices/abc", Body=(DATA / "trn06-fee083.wav").read_bytes())
    assert _drain(aws)["Records"] == []  # no audio extension: the upload rule never sees the clip
    message = {"voice": {"bucket": BUCKET, "key": ".voices/abc", "owner": "client-a", "name": "Fiona"}}
    aws["sqs"].send_message(QueueUrl=aws["queue"], MessageBody=json.dumps(message))
    event = _drain(aws)
    assert _invoke(aws, event) == {"batchItemFailures": []}
    assert _result(aws, ".voices/abc")["status"] == "completed"
    assert "Item" in aws["voices"].get_item(Key={"owner": "client-a", "name": "Fiona"})
    keys = [o["Key"] for o in aws["s3"].list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert keys == [".voices/abc.json"]  # the clip is gone; the API reads and deletes the outcome
    assert _invoke(aws, event) == {"batchItemFailures": []}  # a duplicate finds no clip: nothing to do
