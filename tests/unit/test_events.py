"""The sample events in events/ are real-shaped: they parse with Powertools' models and decode as intended.

Handlers and local tools are tested with these files, so a fixture that real AWS would never send
(or one missing a field AWS always sends) would hide bugs instead of finding them.
"""

from __future__ import annotations

import base64
import json
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from urllib.parse import unquote_plus

import pytest
from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayProxyEventV2Model,
    EventBridgeModel,
    S3EventNotificationEventBridgeModel,
    S3Model,
    SqsModel,
)

EVENTS = Path(__file__).resolve().parents[2] / "events"

# Object keys as uploaded; events carry them URL-encoded (spaces as "+", a literal "+" as %2B).
MY_TALK = "calls/2024/my talk (1).wav"
ZURICH = "interviews/Zürich café + müsli.mp3"


def load(name: str) -> dict:
    return json.loads((EVENTS / name).read_text(encoding="utf-8"))


def test_every_event_is_json():
    names = sorted(p.name for p in EVENTS.glob("*.json"))
    assert names, "no sample events"
    for name in names:
        assert isinstance(load(name), dict), name


def test_s3_put_parses_and_keys_decode():
    event = S3Model.model_validate(load("s3-put.json"))
    raw = [r.s3.object.key for r in event.Records]
    assert raw[0] == "calls/2024/my+talk+%281%29.wav"  # kept encoded, as S3 sends it
    assert [unquote_plus(k) for k in raw] == [MY_TALK, ZURICH]
    for record in event.Records:
        assert record.eventName.startswith("ObjectCreated:")
        assert record.s3.bucket.ownerIdentity.principalId
        assert record.s3.object.eTag and record.s3.object.sequencer
    assert event.Records[1].s3.object.versionId


def test_sqs_wrapped_s3_put():
    event = SqsModel.model_validate(load("sqs-s3-put.json"))
    (record,) = event.Records
    inner = S3Model.model_validate_json(record.body)
    assert unquote_plus(inner.Records[0].s3.object.key) == MY_TALK


def test_sqs_s3_test_event_is_not_a_notification():
    event = SqsModel.model_validate(load("sqs-s3-test-event.json"))
    body = json.loads(event.Records[0].body)
    assert body["Event"] == "s3:TestEvent"
    assert "Records" not in body  # a handler must skip it, not fail on it


def test_eventbridge_object_created():
    raw = load("eventbridge-object-created.json")
    generic = EventBridgeModel.model_validate(raw)
    assert generic.source == "aws.s3" and generic.detail_type == "Object Created"
    event = S3EventNotificationEventBridgeModel.model_validate(raw)
    assert unquote_plus(event.detail.object.key) == MY_TALK
    assert event.detail.bucket.name == raw["resources"][0].split(":::")[1]


def test_sqs_wrapped_eventbridge_object_created():
    event = SqsModel.model_validate(load("sqs-eventbridge-object-created.json"))
    inner = S3EventNotificationEventBridgeModel.model_validate_json(event.Records[0].body)
    assert unquote_plus(inner.detail.object.key) == MY_TALK


def test_job_message():
    event = SqsModel.model_validate(load("sqs-job-message.json"))
    body = json.loads(event.Records[0].body)
    assert set(body) == {"jobId", "bucket", "key", "params"}
    # The API enqueues raw keys (never URL-encoded).
    assert body["key"].endswith("meeting recording.m4a")
    assert body["params"]["task"] in ("transcribe", "translate")


@pytest.mark.parametrize(
    "name", ["sqs-s3-put.json", "sqs-s3-test-event.json", "sqs-eventbridge-object-created.json", "sqs-job-message.json"]
)
def test_sqs_md5_matches_body(name):
    import hashlib

    for record in load(name)["Records"]:
        assert hashlib.md5(record["body"].encode()).hexdigest() == record["md5OfBody"]


def test_apigw_json():
    event = APIGatewayProxyEventV2Model.model_validate(load("apigw-v2-json.json"))
    assert event.routeKey == "POST /v1/transcriptions"
    assert event.headers["authorization"].startswith("Bearer ")
    body = json.loads(event.body)
    assert body["url"].startswith("https://")
    assert "file" not in body


def test_apigw_get_status():
    event = APIGatewayProxyEventV2Model.model_validate(load("apigw-v2-get-status.json"))
    assert event.routeKey == "GET /v1/transcriptions/{id}"
    assert event.rawPath == f"/v1/transcriptions/{event.pathParameters['id']}"


def _multipart_parts(body: bytes, content_type: str) -> dict[str, tuple[str | None, bytes]]:
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    assert message.is_multipart()
    parts = {}
    for part in message.iter_parts():
        disposition = part.get("Content-Disposition", "")
        assert disposition.startswith("form-data")
        parts[part.get_param("name", header="content-disposition")] = (
            part.get_filename(),
            part.get_payload(decode=True),
        )
    return parts


def test_apigw_multipart():
    raw = load("apigw-v2-multipart.json")
    event = APIGatewayProxyEventV2Model.model_validate(raw)
    assert raw["isBase64Encoded"] is True
    body = base64.b64decode(event.body, validate=True)
    content_type = event.headers["content-type"]
    assert content_type.startswith("multipart/form-data; boundary=")
    boundary = content_type.split("boundary=", 1)[1]
    assert body.startswith(f"--{boundary}\r\n".encode())
    assert body.endswith(f"--{boundary}--\r\n".encode())
    assert int(event.headers["content-length"]) == len(body)

    parts = _multipart_parts(body, content_type)
    filename, audio = parts.pop("file")
    assert filename == "hello.wav"
    assert audio[:4] == b"RIFF" and audio[8:12] == b"WAVE"
    fields = {name: value.decode() for name, (_, value) in parts.items()}
    # The seed client's form fields, empty strings meaning "unset".
    assert {"fileType", "diarization", "numSpeakers", "callbackURL", "initialPrompt", "language", "task"} <= set(fields)
    assert fields["diarization"] == "true" and fields["language"] == ""
    assert "url" not in fields


def test_transcription_requested_and_completed_samples():
    from whisperless.cloud.eventbus import SOURCE, job_event
    from whisperless.cloud.events import RequestedJob, jobs_from_payload

    raw = load("eventbridge-transcription-requested.json")
    EventBridgeModel.model_validate(raw)
    (job,) = jobs_from_payload(raw)
    assert isinstance(job, RequestedJob) and job.key == MY_TALK and job.job_id == f"evt-{raw['id']}"
    assert job.params["numSpeakers"] == 2 and job.params["formats"] == "srt,vtt"

    published = load("eventbridge-transcription-completed.json")
    EventBridgeModel.model_validate(published)
    detail = published["detail"]
    document = {
        "status": "completed",
        "language": "en",
        "duration": 61.24,
        "diarization": [
            {"startTime": 0.0, "stopTime": 1.0, "speaker": "SPEAKER_00"},
            {"startTime": 1.0, "stopTime": 2.0, "speaker": "SPEAKER_01"},
        ],
    }
    assert published["source"] == SOURCE
    assert job_event(detail["jobId"], detail["bucket"], detail["key"], document) == detail  # what we publish
