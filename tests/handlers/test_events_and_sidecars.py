"""What a finished job tells the world besides <key>.json, against moto: exactly one EventBridge
event per job (an upload, an API job, a failed job, a duplicate storm, a rerun after a crash),
delivered by a real rule to an SQS queue; and the renderings asked for (``formats``) next to the
audio, written before the event, never starting a job themselves."""

from __future__ import annotations

import copy
import json
from collections import Counter

import boto3
import pytest
from moto import mock_aws

from support import (
    REGION,
    LambdaContext,
    create_jobs_table,
    create_tables,
    drain_events,
    load_handler,
    receive,
    set_aws_env,
    sqs_event,
    wire_bucket_to_queue,
    wire_events_to_queue,
)

BUCKET = "whisperless-test-audio"
BUS = "whisperless-test-events"


@pytest.fixture(scope="module")
def app_module():
    return load_handler("transcriber", "transcriber_events_app")


@pytest.fixture(scope="module")
def engine():
    from whisperless.engine import Engine

    return Engine(whisper_model="tiny.en")


@pytest.fixture
def aws(monkeypatch, app_module, engine):
    set_aws_env(monkeypatch)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        events = boto3.client("events", region_name=REGION)
        dynamodb = boto3.resource("dynamodb", region_name=REGION)
        queue = wire_bucket_to_queue(s3, sqs, events, BUCKET)
        events.create_event_bus(Name=BUS)
        event_queue = wire_events_to_queue(events, sqs, BUS)
        # As the template routes Transcription Requested events for the bucket to the job queue.
        requested = {"detail-type": ["Transcription Requested"], "detail": {"bucket": [BUCKET]}}
        wire_events_to_queue(events, sqs, BUS, requested, name="requested", queue=queue)
        create_jobs_table(dynamodb)
        create_tables(dynamodb, {"idempotency": "id", "apikeys": "keyHash"})
        from whisperless.cloud.runner import JobRunner
        from whisperless.config import Settings

        settings = Settings(
            bucket=BUCKET,
            jobs_table="jobs",
            idempotency_table="idempotency",
            api_keys_table="apikeys",
            queue_url=queue,
            event_bus=BUS,
            webhook_secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            result_wait_seconds=0,
        )
        app_module._runner = JobRunner(
            s3=s3, dynamodb=dynamodb, settings=settings, engine=engine, callback_sleep=lambda seconds: None
        )
        yield {
            "eventbridge": events,
            "s3": s3,
            "sqs": sqs,
            "queue": queue,
            "events": event_queue,
            "dynamodb": dynamodb,
            "settings": settings,
            "app": app_module,
        }
        app_module._runner = None


def _run_queue(aws) -> dict:
    """Deliver what is on the job queue to the handler, as Lambda's SQS event source would."""
    messages = receive(aws["sqs"], aws["queue"])
    assert messages, "nothing reached the job queue"
    reply = aws["app"].handler(sqs_event(messages), LambdaContext())
    for message in messages:
        aws["sqs"].delete_message(QueueUrl=aws["queue"], ReceiptHandle=message["ReceiptHandle"])
    return reply


def _events(aws) -> list[dict]:
    return drain_events(aws["sqs"], aws["events"])


@pytest.fixture(scope="module")
def clip(tmp_path_factory, sample_wav) -> bytes:
    from conftest import encode

    return encode(sample_wav, tmp_path_factory.mktemp("clip") / "clip.mp3", "libmp3lame", seconds=12).read_bytes()


def test_an_upload_gets_one_completed_event_after_its_result(aws, clip):
    aws["s3"].put_object(Bucket=BUCKET, Key="in/talk.mp3", Body=clip)
    assert _run_queue(aws) == {"batchItemFailures": []}
    (event,) = _events(aws)
    assert event["source"] == "whisperless" and event["detail-type"] == "Transcription Completed"
    detail = event["detail"]
    doc = json.loads(aws["s3"].get_object(Bucket=BUCKET, Key="in/talk.mp3.json")["Body"].read())
    assert detail == {
        "jobId": doc["id"],
        "status": "completed",
        "bucket": BUCKET,
        "key": "in/talk.mp3",
        "resultKey": "in/talk.mp3.json",
        "language": "en",
        "duration": doc["duration"],
        "speakers": None,
    }
    assert len(json.dumps(event)) < 2048  # small: no transcript inside
    record = aws["dynamodb"].Table("jobs").get_item(Key={"id": doc["id"]})["Item"]
    assert record["event"]["id"] == event["id"]


def test_an_api_job_event_names_its_client(aws, clip):
    from whisperless.cloud.api import Api
    from whisperless.cloud.apikeys import add_key

    add_key(aws["dynamodb"].Table("apikeys"), "wl_key", "client-a")
    api = Api(aws["settings"], s3=aws["s3"], dynamodb=aws["dynamodb"], sqs=aws["sqs"])
    boundary = "b0undary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.mp3"\r\n'
            f"Content-Type: audio/mpeg\r\n\r\n"
        ).encode()
        + clip
        + f"\r\n--{boundary}--\r\n".encode()
    )
    reply = api.create_transcription("client-a", body, f"multipart/form-data; boundary={boundary}")
    assert reply.status == 202  # no wait budget here: the job runs on the queue
    _run_queue(aws)
    (event,) = _events(aws)
    assert event["detail"]["jobId"] == reply.body["id"] and event["detail"]["clientId"] == "client-a"


def test_a_failed_job_gets_one_failed_event_with_its_error(aws):
    aws["s3"].put_object(Bucket=BUCKET, Key="bad/noise.wav", Body=b"RIFF\x00\x00" + bytes(range(256)) * 8)
    _run_queue(aws)
    (event,) = _events(aws)
    assert event["detail-type"] == "Transcription Failed"
    assert event["detail"]["status"] == "failed" and event["detail"]["error"]["code"] in {"not_audio", "corrupt_audio"}
    assert event["detail"]["language"] is None


def test_a_duplicate_storm_and_a_rerun_after_a_crash_publish_one_event(aws, clip):
    aws["s3"].put_object(Bucket=BUCKET, Key="dup/a.mp3", Body=clip)
    messages = receive(aws["sqs"], aws["queue"])
    event = sqs_event(messages)
    for _ in range(5):  # at-least-once delivery, in both entry shapes
        assert aws["app"].handler(copy.deepcopy(event), LambdaContext()) == {"batchItemFailures": []}
    aws["app"].handler(json.loads(event["Records"][0]["body"]), LambdaContext())
    # A crash after publishing but before the idempotency record completed: the job runs again
    # from the start (here: the idempotency record is gone), and its ending must not publish twice.
    table = aws["dynamodb"].Table("idempotency")
    for item in table.scan()["Items"]:
        table.delete_item(Key={"id": item["id"]})
    assert aws["app"].handler(copy.deepcopy(event), LambdaContext()) == {"batchItemFailures": []}
    jobs = aws["dynamodb"].Table("jobs").scan()["Items"]
    assert [int(j["attempts"]) for j in jobs] == [2]  # it really ran twice
    published = _events(aws)
    assert Counter(e["detail"]["jobId"] for e in published) == {jobs[0]["id"]: 1}


def test_renderings_are_written_next_to_the_audio_and_start_no_job(aws, clip):
    metadata = {"formats": "srt,vtt,txt", "diarization": "true"}
    aws["s3"].put_object(Bucket=BUCKET, Key="in/call.mp3", Body=clip, Metadata=metadata)
    _run_queue(aws)

    def read(key: str) -> str:
        return aws["s3"].get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()

    from whisperless.contract.formats import MAX_LINE_CHARS, to_srt, to_txt, to_vtt

    doc = json.loads(read("in/call.mp3.json"))
    assert doc["status"] == "completed" and doc["diarization"]
    srt, vtt, txt = read("in/call.mp3.srt"), read("in/call.mp3.vtt"), read("in/call.mp3.txt")
    assert (srt, vtt, txt) == (to_srt(doc), to_vtt(doc), to_txt(doc))
    assert srt.startswith("1\n00:00:") and vtt.startswith("WEBVTT\n\n")
    cue_lines = [line for block in srt.split("\n\n") for line in block.splitlines()[2:]]
    assert cue_lines and all(len(line) <= MAX_LINE_CHARS for line in cue_lines if " " in line)
    first_lines = [block.splitlines()[2] for block in srt.strip().split("\n\n")]
    assert all(line.startswith("[SPEAKER_0") for line in first_lines)  # speakers prefix each cue
    assert all(line.startswith("[SPEAKER_0") for line in txt.splitlines())
    head = aws["s3"].head_object(Bucket=BUCKET, Key="in/call.mp3.vtt")
    assert head["ContentType"].startswith("text/vtt")
    # Neither the result nor the renderings became jobs: the queue is empty after the job.
    assert receive(aws["sqs"], aws["queue"]) == []
    (event,) = _events(aws)
    assert event["detail"]["speakers"] == len({t["speaker"] for t in doc["diarization"]})


def test_a_bad_formats_value_fails_the_job_naming_the_field(aws, clip):
    aws["s3"].put_object(Bucket=BUCKET, Key="in/x.mp3", Body=clip, Metadata={"formats": "srt,docx"})
    _run_queue(aws)
    doc = json.loads(aws["s3"].get_object(Bucket=BUCKET, Key="in/x.mp3.json")["Body"].read())
    assert doc["status"] == "failed" and doc["error"]["field"] == "formats"
    keys = {o["Key"] for o in aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix="in/x.mp3")["Contents"]}
    assert keys == {"in/x.mp3", "in/x.mp3.json"}


def test_a_transcription_requested_event_is_a_job_like_an_upload(aws, clip):
    aws["s3"].put_object(Bucket=BUCKET, Key="library/old.mp3", Body=clip)
    receive(aws["sqs"], aws["queue"])  # its upload's own job is not what this test is about: drop it
    detail = {"bucket": BUCKET, "key": "library/old.mp3", "formats": ["txt"], "language": "en"}
    entry = {"Source": "my.app", "DetailType": "Transcription Requested", "Detail": json.dumps(detail)}
    put = aws["eventbridge"].put_events(Entries=[{**entry, "EventBusName": BUS}])
    event_id = put["Entries"][0]["EventId"]
    messages = receive(aws["sqs"], aws["queue"])
    assert len(messages) == 1
    for _ in range(2):  # EventBridge and SQS deliver at least once: the same event is one job
        assert aws["app"].handler(sqs_event(messages), LambdaContext()) == {"batchItemFailures": []}
    txt = aws["s3"].get_object(Bucket=BUCKET, Key="library/old.mp3.txt")["Body"].read().decode()
    assert "hello" in txt.lower()
    (event,) = _events(aws)
    assert event["detail"]["jobId"] == f"evt-{event_id}" and event["detail"]["key"] == "library/old.mp3"


def test_a_request_for_a_missing_object_fails_naming_the_key(aws):
    detail = {"bucket": BUCKET, "key": "library/none.mp3", "jobId": "my-job-1"}
    entry = {"Source": "my.app", "DetailType": "Transcription Requested", "Detail": json.dumps(detail)}
    aws["eventbridge"].put_events(Entries=[{**entry, "EventBusName": BUS}])
    _run_queue(aws)
    doc = json.loads(aws["s3"].get_object(Bucket=BUCKET, Key="library/none.mp3.json")["Body"].read())
    assert doc["id"] == "my-job-1" and doc["error"]["code"] == "file_not_found" and doc["error"]["field"] == "key"
    (event,) = _events(aws)
    assert event["detail-type"] == "Transcription Failed" and event["detail"]["jobId"] == "my-job-1"
