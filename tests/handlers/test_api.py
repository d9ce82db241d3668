"""The HTTP API handler against moto, driven by API Gateway v2 events built from real
``requests`` calls (the seed client's own), so multipart bodies are exactly what a
client sends. No worker runs here: results are written the way the worker writes them."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
from botocore.config import Config
from moto import mock_aws

from support import (
    REGION,
    Answer,
    LambdaContext,
    create_jobs_table,
    create_tables,
    create_voices_table,
    load_handler,
    set_aws_env,
    to_event,
    wire_bucket_to_queue,
)
from whisperless.cloud import apikeys, netguard
from whisperless.cloud.api import Api
from whisperless.cloud.forms import ApiError, audio_name, parse_multipart, safe_filename
from whisperless.cloud.stores import ResultStore
from whisperless.config import Settings

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
BUCKET = "whisperless-test-audio"
BASE = "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"
KEY_A = "wl_test_key_for_client_a"
KEY_B = "wl_test_key_for_client_b"
KEY_OFF = "wl_test_disabled_key"
SAMPLE_KEY = "wl_test_4f9c2b7e1d8a6035c4e2f1a9b7d3e5c0"  # the key in events/apigw-v2-*.json
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256)) + b"\r\n\r\n--not-a-boundary\r\n"
PUBLIC_IP = "93.184.216.34"
# The seed client's form: every field sent, empty meaning unset.
SEED_FORM = {
    "fileType": "",
    "diarization": "true",
    "numSpeakers": "",
    "initialPrompt": "",
    "language": "",
    "task": "",
    "callbackURL": "",
}


class FakeTime:
    """A clock that moves only when slept on; ``on_sleep`` hooks run at each pause."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.on_sleep = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        for hook in self.on_sleep:
            hook()


@pytest.fixture(scope="module")
def app_module():
    return load_handler("api", "api_app")


@pytest.fixture(autouse=True)
def fake_dns(monkeypatch):
    def resolve(host, port):
        if host.endswith("example.com"):
            return [PUBLIC_IP]
        raise OSError(f"no DNS in tests for {host}")

    monkeypatch.setattr(netguard, "resolver", resolve)


@pytest.fixture
def aws(monkeypatch):
    set_aws_env(monkeypatch)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        events = boto3.client("events", region_name=REGION)
        dynamodb = boto3.resource("dynamodb", region_name=REGION)
        # Wired as template.yaml wires it, so an upload's own job message shows up on the queue.
        queue = wire_bucket_to_queue(s3, sqs, events, BUCKET)
        create_jobs_table(dynamodb)
        create_tables(dynamodb, {"apikeys": "keyHash"})
        create_voices_table(dynamodb)
        keys = dynamodb.Table("apikeys")
        apikeys.add_key(keys, KEY_A, "client-a")
        apikeys.add_key(keys, KEY_B, "client-b")
        apikeys.add_key(keys, KEY_OFF, "client-off", enabled=False)
        apikeys.add_key(keys, SAMPLE_KEY, "client-sample")
        yield {"s3": s3, "sqs": sqs, "queue": queue, "dynamodb": dynamodb, "jobs": dynamodb.Table("jobs")}


@pytest.fixture
def clock():
    return FakeTime()


@pytest.fixture
def make_api(aws, app_module, clock, monkeypatch):
    """Install an Api with the given settings as the handler's service."""

    def make(whisper_model: str = "base", **overrides) -> Api:
        values = dict(
            bucket=BUCKET,
            jobs_table="jobs",
            api_keys_table="apikeys",
            voices_table="voices",
            queue_url=aws["queue"],
            result_wait_seconds=0,
            max_audio_bytes=1024 * 1024,
        )
        values.update(overrides)
        presign = boto3.client(
            "s3",
            region_name=REGION,
            endpoint_url=f"https://s3.{REGION}.amazonaws.com",
            config=Config(signature_version="s3v4", s3={"addressing_style": "virtual"}),
        )
        api = Api(
            Settings(**values),
            s3=aws["s3"],
            dynamodb=aws["dynamodb"],
            sqs=aws["sqs"],
            presign_s3=presign,
            sleep=clock.sleep,
            clock=clock.clock,
            whisper_model=whisper_model,
        )
        monkeypatch.setattr(app_module, "_service", api)
        return api

    return make


@pytest.fixture
def api(make_api):
    return make_api()


# ------------------------------------------------------------------ events from requests


def invoke(app_module, event: dict, context: LambdaContext | None = None) -> Answer:
    return Answer(app_module.handler(event, context or LambdaContext("ApiFunction", 29)))


def call(
    app_module, method: str, path: str, *, key: str | None = KEY_A, context: LambdaContext | None = None, **kwargs
) -> Answer:
    headers = dict(kwargs.pop("headers", {}))
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    prepared = requests.Request(method, BASE + path, headers=headers, **kwargs).prepare()
    return invoke(app_module, to_event(prepared), context)


def seed_post(app_module, key: str | None = KEY_A, filename: str = "a.wav", data: bytes = WAV, **form) -> Answer:
    """The seed client's call: requests.post(url, headers=..., data={...}, files={"file": ...})."""
    return call(
        app_module, "POST", "/v1/transcriptions", key=key, data={**SEED_FORM, **form}, files={"file": (filename, data)}
    )


def stored_keys(aws) -> list[str]:
    return [o["Key"] for o in aws["s3"].list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def queued(aws) -> list[dict]:
    reply = aws["sqs"].receive_message(QueueUrl=aws["queue"], MaxNumberOfMessages=10, WaitTimeSeconds=0)
    return [json.loads(m["Body"]) for m in reply.get("Messages", [])]


def assert_nothing_stored(aws):
    assert stored_keys(aws) == []
    assert aws["jobs"].scan()["Items"] == []
    assert queued(aws) == []


COMPLETED = {
    "status": "completed",
    "language": "en",
    "text": "Hello World",
    "segments": [{"start": 0.0, "end": 3.0, "text": "Hello World", "words": []}],
}


# ------------------------------------------------------------------ file uploads


def test_seed_multipart_call_is_stored_and_queued_once(app_module, api, aws):
    answer = seed_post(app_module)

    assert answer.status == 202
    job_id = answer.json["id"]
    assert answer.json == {"id": job_id, "status": "queued", "statusUrl": f"/v1/transcriptions/{job_id}"}
    assert len(job_id) == 32 and int(job_id, 16) >= 0
    key = f"uploads/{job_id}/a.wav"
    assert stored_keys(aws) == [key]
    stored = aws["s3"].get_object(Bucket=BUCKET, Key=key)
    assert stored["Body"].read() == WAV
    # Only the fields that were set travel, plus our bookkeeping.
    assert stored["Metadata"] == {"jobid": job_id, "clientid": "client-a", "diarization": "true"}
    job = aws["jobs"].get_item(Key={"id": job_id})["Item"]
    assert job["status"] == "queued" and job["clientId"] == "client-a"
    assert job["bucket"] == BUCKET and job["key"] == key and job["params"] == {"diarization": "true"}
    # The upload's own S3 event is the only job message: the API sent none.
    messages = queued(aws)
    assert len(messages) == 1
    assert messages[0]["detail-type"] == "Object Created" and messages[0]["detail"]["object"]["key"] == key


def test_result_within_the_wait_is_returned_and_readable(app_module, make_api, aws, clock):
    make_api(result_wait_seconds=5)

    def worker_finishes():
        # Written exactly as the worker writes it: <audio key>.json next to the audio.
        if len(clock.sleeps) == 2:
            (key,) = [k for k in stored_keys(aws) if not k.endswith(".json")]
            job_id = key.split("/")[1]
            ResultStore(aws["s3"]).write(BUCKET, key, {"id": job_id, **COMPLETED}, job_id=job_id, audio=None)

    clock.on_sleep.append(worker_finishes)
    answer = seed_post(app_module)

    assert answer.status == 200
    job_id = answer.json["id"]
    assert answer.json == {"id": job_id, **COMPLETED}
    assert clock.sleeps[0] < clock.sleeps[1]  # backing off
    status = call(app_module, "GET", f"/v1/transcriptions/{job_id}")
    assert status.status == 200 and status.json == answer.json


def test_a_failed_input_answers_422_with_the_failed_document(app_module, make_api, aws, clock, tmp_path):
    from whisperless.contract.documents import failed_document
    from whisperless.engine.audio import decode_audio
    from whisperless.errors import AudioError

    make_api(result_wait_seconds=5)
    body = b"not audio at all"
    (tmp_path / "upload.wav").write_bytes(body)
    with pytest.raises(AudioError) as decoding:  # what the worker's decoder says of this upload
        decode_audio(tmp_path / "upload.wav")

    def worker_fails():
        (key,) = stored_keys(aws)
        ResultStore(aws["s3"]).write(
            BUCKET, key, failed_document(key.split("/")[1], decoding.value), job_id=key.split("/")[1], audio=None
        )

    clock.on_sleep.append(worker_fails)
    answer = seed_post(app_module, data=body)
    assert answer.status == 422
    assert answer.json["status"] == "failed" and answer.json["error"]["code"] == "not_audio"


@pytest.mark.parametrize("code", sorted(__import__("whisperless.errors").errors.AudioError.codes))
def test_every_decoder_failure_is_the_callers_fault(code):
    from whisperless.contract.documents import failed_document, input_was_bad
    from whisperless.errors import AudioError

    assert input_was_bad(failed_document("j", AudioError("bad", code=code)))


def test_no_result_within_the_wait_answers_202_within_the_budget(app_module, make_api, aws, clock):
    make_api(result_wait_seconds=3)
    answer = seed_post(app_module)
    assert answer.status == 202 and answer.json["status"] == "queued"
    assert answer.headers["location"] == answer.json["statusUrl"]
    assert sum(clock.sleeps) == pytest.approx(3)
    assert max(clock.sleeps) <= 2.0


def test_the_wait_leaves_the_lambda_time_to_answer(app_module, make_api, clock):
    make_api(result_wait_seconds=25)
    answer = call(
        app_module,
        "POST",
        "/v1/transcriptions",
        data=SEED_FORM,
        files={"file": ("a.wav", WAV)},
        context=LambdaContext("ApiFunction", 5),
    )
    assert answer.status == 202
    assert sum(clock.sleeps) == pytest.approx(3, abs=0.05)  # 5 s left (a real deadline), 2 s kept back


def test_with_a_callback_the_answer_is_immediate(app_module, make_api, clock):
    make_api(result_wait_seconds=25)
    answer = seed_post(app_module, callbackURL="https://hooks.example.com/whisperless")
    assert answer.status == 202
    assert clock.sleeps == []


def test_file_type_supplies_the_extension_and_names_are_sanitised(app_module, api, aws):
    answer = seed_post(app_module, filename="../../etc/my talk (1)", fileType="mp3")
    assert answer.status == 202
    assert stored_keys(aws) == [f"uploads/{answer.json['id']}/my_talk_1.mp3"]


def test_non_ascii_parameters_survive_as_rfc2047_metadata(app_module, api, aws):
    from email.header import decode_header, make_header

    answer = seed_post(app_module, initialPrompt="Zürich, Müller\nGrüezi")
    assert answer.status == 202
    (key,) = stored_keys(aws)
    value = aws["s3"].head_object(Bucket=BUCKET, Key=key)["Metadata"]["initialprompt"]
    assert value.isascii()
    assert str(make_header(decode_header(value))) == "Zürich, Müller\nGrüezi"


# ------------------------------------------------------------------ URL jobs


def test_url_job_sends_one_job_message(app_module, api, aws):
    body = {
        "url": "https://media.example.com/podcasts/episode%2042.MP3",
        "diarization": True,
        "numSpeakers": 2,
        "language": "",
        "task": "translate",
    }
    answer = call(app_module, "POST", "/v1/transcriptions", json=body)

    assert answer.status == 202
    job_id = answer.json["id"]
    assert stored_keys(aws) == []  # the worker fetches the audio
    (message,) = queued(aws)
    assert message == {
        "jobId": job_id,
        "bucket": BUCKET,
        "key": f"uploads/{job_id}/episode_42.MP3",
        "url": body["url"],
        "params": {"diarization": True, "numSpeakers": 2, "task": "translate"},
    }
    job = aws["jobs"].get_item(Key={"id": job_id})["Item"]
    assert job["status"] == "queued" and job["clientId"] == "client-a"


def test_url_without_an_audio_name_gets_a_neutral_one(app_module, api, aws):
    answer = call(app_module, "POST", "/v1/transcriptions", json={"url": "https://media.example.com/"})
    (message,) = queued(aws)
    assert message["key"] == f"uploads/{answer.json['id']}/audio.audio"


def test_sample_events_are_served(app_module, api, aws):
    event = json.loads((EVENTS / "apigw-v2-multipart.json").read_text())
    answer = invoke(app_module, event)
    assert answer.status == 202
    job_id = answer.json["id"]
    key = f"uploads/{job_id}/hello.wav"
    assert stored_keys(aws) == [key]
    metadata = aws["s3"].head_object(Bucket=BUCKET, Key=key)["Metadata"]
    assert metadata == {
        "jobid": job_id,
        "clientid": "client-sample",
        "filetype": "wav",
        "diarization": "true",
        "numspeakers": "2",
        "task": "transcribe",
    }

    event = json.loads((EVENTS / "apigw-v2-json.json").read_text())
    assert invoke(app_module, event).status == 202

    event = json.loads((EVENTS / "apigw-v2-get-status.json").read_text())
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/v1/transcriptions/{job_id}"
    event["pathParameters"] = {"id": job_id}
    status = invoke(app_module, event)
    assert status.status == 200 and status.json["status"] == "queued"


# ------------------------------------------------------------------ refused requests


@pytest.mark.parametrize(
    "form, field",
    [
        ({"task": "summarize"}, "task"),
        ({"numSpeakers": "two"}, "numSpeakers"),
        ({"language": "xx"}, "language"),
        ({"callbackURL": "http://10.0.0.1/hook"}, "callbackURL"),
        ({"diarization": "maybe"}, "diarization"),
        ({"initialPrompt": "x" * 3000}, "initialPrompt"),
        ({"redact": "PERSON,SHOE_SIZE"}, "redact"),
        ({"redact": "pii", "redactionOutput": "everything"}, "redactionOutput"),
        ({"redactAudio": "true"}, "redactAudio"),
        ({"sentiment": "very"}, "sentiment"),
    ],
)
def test_bad_form_parameters_are_refused_before_anything_is_stored(app_module, api, aws, form, field):
    answer = seed_post(app_module, **form)
    assert answer.status == 400, answer.json
    assert answer.json["error"]["field"] == field
    assert answer.json["error"]["code"] in ("invalid_parameter", "unsafe_url")
    assert answer.json["error"]["message"]
    assert_nothing_stored(aws)


@pytest.mark.parametrize(
    "request_kwargs, field",
    [
        ({"json": {"url": "http://169.254.169.254/latest/meta-data/"}}, "url"),
        ({"json": {"url": "https://media.example.com/a.mp3", "callbackURL": "http://10.0.0.1/hook"}}, "callbackURL"),
        ({"json": {"url": "ftp://media.example.com/a.mp3"}}, "url"),
        ({"json": {"url": "https://media.example.com/a.mp3", "task": "summarize"}}, "task"),
        ({"json": {"diarization": "true"}}, "file"),
        ({"json": {"url": ""}}, "file"),
        ({"data": SEED_FORM}, "file"),
        ({"data": {**SEED_FORM, "url": "https://media.example.com/a.mp3"}, "files": {"file": ("a.wav", WAV)}}, "url"),
        ({"data": SEED_FORM, "files": {"file": ("a.wav", b"")}}, "file"),
        ({"json": {"url": "https://media.example.com/a.mp3", "file": "UklGRg=="}}, "file"),
        ({"data": b"{not json", "headers": {"Content-Type": "application/json"}}, "body"),
        # Longer than an SQS message may be (1 MiB): was a 500 from send_message, after the job was stored.
        ({"json": {"url": "https://media.example.com/" + "a" * 1_100_000 + ".mp3"}}, "url"),
        ({"json": {"url": "https://media.example.com/" + "a" * 9000 + ".mp3"}}, "url"),
    ],
)
def test_bad_requests_name_the_field_and_store_nothing(app_module, api, aws, request_kwargs, field):
    answer = call(app_module, "POST", "/v1/transcriptions", **request_kwargs)
    assert answer.status == 400, answer.json
    assert answer.json["error"]["field"] == field
    assert_nothing_stored(aws)


@pytest.mark.parametrize(
    "model, form, field",
    [
        ("tiny.en", {"task": "translate"}, "task"),
        ("tiny.en", {"language": "de"}, "language"),
        ("base", {"language": "yue"}, "language"),  # base has no <|yue|> token: it would loop, slowly
    ],
)
def test_what_the_deployed_model_cannot_do_is_refused_before_anything_is_stored(
    app_module, make_api, aws, model, form, field
):
    make_api(whisper_model=model)
    answer = seed_post(app_module, **form)
    assert answer.status == 400 and answer.json["error"]["field"] == field, answer.json
    assert model in answer.json["error"]["message"]
    assert_nothing_stored(aws)
    upload = call(app_module, "POST", "/v1/uploads", json={"filename": "a.wav", **form})
    assert upload.status == 400 and upload.json["error"]["field"] == field
    assert_nothing_stored(aws)


@pytest.mark.parametrize("language", ["en-US", "en_US", "pt-BR", "jv"])
def test_locale_tags_and_iso_codes_are_accepted(app_module, make_api, aws, language):
    make_api(whisper_model="base")
    answer = seed_post(app_module, language=language)
    assert answer.status == 202, answer.json
    assert aws["jobs"].scan()["Items"][0]["params"]["language"] == language  # the worker normalises it again


def test_urlencoded_forms_work_for_url_jobs(app_module, api, aws):
    answer = call(
        app_module, "POST", "/v1/transcriptions", data={**SEED_FORM, "url": "https://media.example.com/a.mp3"}
    )
    assert answer.status == 202
    assert queued(aws)[0]["url"] == "https://media.example.com/a.mp3"


@pytest.mark.parametrize("key, status", [(None, 401), ("wl_not_a_key", 401), (KEY_OFF, 403)])
def test_keys_are_required_known_and_enabled(app_module, api, aws, key, status):
    answer = seed_post(app_module, key=key)
    assert answer.status == status
    assert answer.json["error"]["code"] in ("unauthorized", "forbidden")
    assert_nothing_stored(aws)
    assert call(app_module, "GET", "/v1/transcriptions/0123", key=key).status == status
    assert call(app_module, "POST", "/v1/uploads", key=key, json={"filename": "a.wav"}).status == status


def test_other_authorization_schemes_are_refused(app_module, api):
    answer = call(
        app_module,
        "GET",
        "/v1/transcriptions/abc",
        key=None,
        headers={"Authorization": "Basic " + base64.b64encode(b"a:b").decode()},
    )
    assert answer.status == 401 and answer.headers["www-authenticate"].startswith("Bearer")


def test_keys_never_reach_the_logs(app_module, api, capsys):
    call(app_module, "POST", "/v1/transcriptions", key="wl_secret_unknown_key", json={})
    seed_post(app_module)
    captured = capsys.readouterr()
    assert "wl_secret_unknown_key" not in captured.out + captured.err
    assert KEY_A not in captured.out + captured.err


def test_a_body_over_the_api_limit_is_413(app_module, make_api, aws):
    make_api(max_audio_bytes=50 * 1024 * 1024)
    answer = seed_post(app_module, data=b"\0" * (10 * 1024 * 1024 + 1))
    assert answer.status == 413
    assert "/v1/uploads" in answer.json["error"]["message"]
    assert_nothing_stored(aws)


def test_a_file_over_the_audio_limit_is_413(app_module, make_api, aws):
    make_api(max_audio_bytes=100)
    answer = seed_post(app_module)
    assert answer.status == 413 and answer.json["error"]["field"] == "file"
    assert_nothing_stored(aws)


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "audio/wav"])
def test_unsupported_content_types_are_415(app_module, api, aws, content_type):
    answer = call(app_module, "POST", "/v1/transcriptions", data=WAV, headers={"Content-Type": content_type})
    assert answer.status == 415 and answer.json["error"]["field"] == "Content-Type"
    assert_nothing_stored(aws)
    answer = call(
        app_module,
        "POST",
        "/v1/uploads",
        data=b"filename=a.wav",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status == 415


# ------------------------------------------------------------------ status


def test_only_the_owner_sees_a_job(app_module, api):
    job_id = seed_post(app_module).json["id"]
    mine = call(app_module, "GET", f"/v1/transcriptions/{job_id}")
    assert mine.status == 200 and mine.json == {
        "id": job_id,
        "status": "queued",
        "statusUrl": f"/v1/transcriptions/{job_id}",
        "progress": 0,
        "stage": "queued",
    }
    theirs = call(app_module, "GET", f"/v1/transcriptions/{job_id}", key=KEY_B)
    missing = call(app_module, "GET", "/v1/transcriptions/" + "0" * 32, key=KEY_B)
    assert theirs.status == missing.status == 404
    assert theirs.json["error"]["code"] == missing.json["error"]["code"] == "not_found"


def test_status_follows_the_job_record(app_module, api, aws):
    job_id = seed_post(app_module).json["id"]
    aws["jobs"].update_item(
        Key={"id": job_id},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": "processing"},
    )
    assert call(app_module, "GET", f"/v1/transcriptions/{job_id}").json["status"] == "processing"


def test_unknown_routes_are_json_404(app_module, api):
    answer = call(app_module, "GET", "/v1/nothing-here")
    assert answer.status == 404 and answer.json["error"]["code"] == "not_found"


# ------------------------------------------------------------------ presigned uploads


def test_presigned_upload_is_sigv4_with_signed_metadata(app_module, api, aws):
    body = {
        "filename": "long talk.m4a",
        "diarization": True,
        "numSpeakers": 2,
        "initialPrompt": "Zürich",
        "callbackURL": "https://hooks.example.com/whisperless",
    }
    answer = call(app_module, "POST", "/v1/uploads", json=body)

    assert answer.status == 201, answer.json
    job_id = answer.json["id"]
    assert answer.json["method"] == "PUT" and answer.json["expiresIn"] == 900
    assert answer.json["statusUrl"] == f"/v1/transcriptions/{job_id}"
    url = urlsplit(answer.json["uploadUrl"])
    assert url.scheme == "https" and url.netloc == f"{BUCKET}.s3.{REGION}.amazonaws.com"
    assert url.path == f"/uploads/{job_id}/long_talk.m4a"
    query = {name: values[0] for name, values in parse_qs(url.query).items()}
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert query["X-Amz-Expires"] == "900"
    headers = answer.json["headers"]
    assert headers["x-amz-meta-jobid"] == job_id and headers["x-amz-meta-clientid"] == "client-a"
    assert headers["x-amz-meta-diarization"] == "true" and headers["x-amz-meta-numspeakers"] == "2"
    assert headers["x-amz-meta-callbackurl"] == body["callbackURL"]
    assert all(value.isascii() for value in headers.values())
    # The metadata are part of the signature, so the client cannot change them.
    assert set(query["X-Amz-SignedHeaders"].split(";")) == {"host", *headers}
    assert aws["jobs"].get_item(Key={"id": job_id})["Item"]["status"] == "awaiting_upload"

    # The client's PUT, exactly as told; the object then starts the job like any upload.
    put = requests.put(answer.json["uploadUrl"], data=WAV, headers=headers)
    assert put.status_code == 200
    head = aws["s3"].head_object(Bucket=BUCKET, Key=f"uploads/{job_id}/long_talk.m4a")
    assert head["Metadata"]["jobid"] == job_id and head["ContentLength"] == len(WAV)
    status = call(app_module, "GET", f"/v1/transcriptions/{job_id}")
    assert status.status == 200 and status.json["status"] == "awaiting_upload"


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "filename"),
        ({"filename": ""}, "filename"),
        ({"filename": 5}, "filename"),
        ({"filename": "a.wav", "task": "summarize"}, "task"),
        ({"filename": "a.wav", "callbackURL": "http://169.254.169.254/"}, "callbackURL"),
    ],
)
def test_bad_upload_requests_store_nothing(app_module, api, aws, body, field):
    answer = call(app_module, "POST", "/v1/uploads", json=body)
    assert answer.status == 400 and answer.json["error"]["field"] == field
    assert_nothing_stored(aws)


# ------------------------------------------------------------------ OpenAPI


def test_openapi_document_needs_no_key_and_lists_the_routes(app_module, api):
    answer = call(app_module, "GET", "/v1/openapi.json", key=None)
    assert answer.status == 200
    paths = answer.json["paths"]
    assert "post" in paths["/v1/transcriptions"]
    assert "get" in paths["/v1/transcriptions/{job_id}"]
    assert "post" in paths["/v1/uploads"]
    multipart = paths["/v1/transcriptions"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert {"file", "diarization", "numSpeakers", "callbackURL", "language", "task"} <= set(multipart["properties"])
    assert answer.json["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"


def test_powertools_validation_errors_use_the_error_format(app_module):
    from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

    error = RequestValidationError([{"type": "missing", "loc": ("body", "filename"), "msg": "Field required"}])
    response = app_module._validation_error(error)
    assert response.status_code == 422
    assert response.body == {"error": {"code": "validation_error", "message": "Field required", "field": "filename"}}


# ------------------------------------------------------------------ pieces


def test_multipart_parsing_keeps_binary_files_exact():
    data = bytes(range(256)) * 64 + b"\r\n--x\r\n\r\n"
    prepared = requests.Request(
        "POST",
        BASE,
        data={"language": "de", "initialPrompt": "Grüße"},
        files={"file": ("Zürich café.wav", data, "audio/wav")},
    ).prepare()
    fields, upload = parse_multipart(prepared.body, prepared.headers["Content-Type"])
    assert fields == {"language": "de", "initialPrompt": "Grüße"}
    assert upload.data == data and upload.filename == "Zürich café.wav" and upload.content_type == "audio/wav"


def test_malformed_multipart_is_400():
    with pytest.raises(ApiError) as caught:
        parse_multipart(b"garbage", "multipart/form-data; boundary=abc")
    assert caught.value.status == 400
    with pytest.raises(ApiError):
        parse_multipart(b"", "multipart/form-data")


@pytest.mark.parametrize(
    "filename, file_type, content_type, expected",
    [
        ("a.wav", None, None, "a.wav"),
        ("talk.MP3", None, None, "talk.MP3"),
        ("C:\\Users\\me\\talk.flac", None, None, "talk.flac"),
        ("../../x", None, None, "x.audio"),
        ("notes.txt", None, None, "notes.txt.audio"),
        ("result.json", None, None, "result.json.audio"),
        ("recording", "m4a", None, "recording.m4a"),
        ("recording", ".ogg", None, "recording.ogg"),
        ("recording", None, "audio/mpeg", "recording.mp3"),
        ("recording", "nonsense", None, "recording.audio"),
        (None, None, None, "audio.audio"),
        ("...", None, None, "audio.audio"),
        ("Zürich café.wav", None, None, "Zürich_café.wav"),
    ],
)
def test_audio_names(filename, file_type, content_type, expected):
    assert audio_name(filename, file_type, content_type) == expected


def test_safe_filenames_have_no_path():
    assert "/" not in safe_filename("a/../../b") and "\\" not in safe_filename("a\\b")
    assert len(safe_filename("x" * 500 + ".wav")) <= 100


def test_api_keys_are_hashed_and_checked(aws):
    table = aws["dynamodb"].Table("apikeys")
    key = apikeys.new_key()
    assert key.startswith("wl_") and len(key) > 40 and key != apikeys.new_key()
    digest = apikeys.add_key(table, key, "client-x")
    item = table.get_item(Key={"keyHash": digest})["Item"]
    assert digest == apikeys.hash_key(key) and len(digest) == 64 and key not in json.dumps(item, default=str)
    assert apikeys.lookup(table, key) == "client-x"
    with pytest.raises(apikeys.UnknownKey):
        apikeys.lookup(table, key + "x")
    apikeys.set_enabled(table, key, False)
    with pytest.raises(apikeys.DisabledKey):
        apikeys.lookup(table, key)


def test_the_api_module_loads_no_models():
    code = (
        "import sys, whisperless.cloud.api; heavy = {'torch', 'faster_whisper', 'ctranslate2', 'pyannote', 'av'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ------------------------------------------------------------------ OpenAI's routes, the rest of the API


def openai_post(app_module, kind: str = "transcriptions", key: str | None = KEY_A, data=None, body: bytes = WAV):
    """What the openai SDK sends: multipart, array fields as name[] parts, the file last."""
    fields = [("model", "whisper-1"), *(data or [])]
    return call(app_module, "POST", f"/v1/audio/{kind}", key=key, data=fields, files={"file": ("a.wav", body)})


def test_openai_route_answers_413_with_the_job_when_the_wait_runs_out(app_module, make_api, aws, clock):
    make_api(result_wait_seconds=3)
    answer = openai_post(app_module)
    assert answer.status == 413 and answer.headers["x-should-retry"] == "false"  # the SDKs would not resubmit
    job_id = answer.headers["x-whisperless-job-id"]
    error = answer.json["error"]
    assert error["code"] == "audio_too_long_for_sync" and error["type"] == "invalid_request_error"
    assert f"/v1/transcriptions/{job_id}" in error["message"] and answer.headers["location"].endswith(job_id)
    assert sum(clock.sleeps) == pytest.approx(3)
    assert call(app_module, "GET", f"/v1/transcriptions/{job_id}").json["status"] == "queued"  # it goes on


def test_openai_route_renders_the_finished_job_and_maps_its_failure(app_module, make_api, aws, clock):
    from whisperless.contract.documents import failed_document
    from whisperless.errors import AudioError

    make_api(result_wait_seconds=5)
    outcome = {"document": {**COMPLETED, "duration": 3.0, "model": "tiny.en"}}

    def worker_writes():
        (key,) = [k for k in stored_keys(aws) if "/" in k and not k.endswith(".json")][-1:]
        ResultStore(aws["s3"]).write(
            BUCKET, key, {"id": key.split("/")[1], **outcome["document"]}, job_id=key.split("/")[1], audio=None
        )

    clock.on_sleep.append(worker_writes)
    answer = openai_post(app_module, data=[("response_format", "verbose_json"), ("timestamp_granularities[]", "word")])
    assert answer.status == 200 and answer.headers["x-whisperless-model"] == "tiny.en"
    assert answer.json["language"] == "english" and answer.json["words"] == []
    assert "segments" not in answer.json  # only word timestamps were asked for

    aws["s3"].delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in stored_keys(aws)]})
    outcome["document"] = failed_document("x", AudioError("not audio", code="not_audio"))
    failed = openai_post(app_module)
    assert failed.status == 400 and failed.json["error"] == {
        "message": "not audio",
        "type": "invalid_request_error",
        "param": "file",
        "code": "not_audio",
    }


@pytest.mark.parametrize(
    ("kind", "data", "param"),
    [
        ("transcriptions", [("stream", "true")], "stream"),
        ("transcriptions", [("response_format", "docx")], "response_format"),
        ("transcriptions", [("include[]", "logprobs"), ("response_format", "text")], "include"),
        ("transcriptions", [("known_speaker_references[]", "data:audio/wav;base64,AAA")], "known_speaker_references"),
        (
            "transcriptions",
            [("known_speaker_names[]", "Alice"), ("response_format", "diarized_json")],
            "known_speaker_references",  # a name without its clip
        ),
        (
            "transcriptions",
            [("known_speaker_names", "Alice"), ("response_format", "diarized_json")],
            "known_speaker_references",  # the same without the brackets: read, not dropped
        ),
        (
            "transcriptions",
            [("known_speaker_names[0]", "Alice"), ("response_format", "diarized_json")],
            "known_speaker_references",  # or with an index
        ),
        ("transcriptions", [("temperature", "1.5")], "temperature"),
        ("transcriptions", [("diarization", "true")], "diarization"),  # not an OpenAI field
        ("translations", [("language", "de")], "language"),  # translations take no language
        ("translations", [("response_format", "diarized_json")], "response_format"),
    ],
)
def test_openai_refusals_name_the_field_and_store_nothing(app_module, api, aws, kind, data, param):
    answer = openai_post(app_module, kind, data=data)
    assert answer.status == 400 and answer.json["error"]["param"] == param, answer.json
    assert_nothing_stored(aws)


def test_openai_errors_for_keys_and_sizes(app_module, make_api, aws):
    make_api(max_audio_bytes=64 * 1024 * 1024)
    unknown = openai_post(app_module, key="wl_nope")
    assert unknown.status == 401 and unknown.json["error"]["code"] == "invalid_api_key"
    big = openai_post(app_module, body=b"\0" * (10 * 1024 * 1024 + 1))
    assert big.status == 413 and big.json["error"]["param"] == "file"
    assert "10 MB" in big.json["error"]["message"] and "/v1/uploads" in big.json["error"]["message"]
    assert_nothing_stored(aws)


def _finish(aws, answer, document=None):
    job_id = answer.json["id"]
    key = next(k for k in stored_keys(aws) if k.startswith(f"uploads/{job_id}/"))
    ResultStore(aws["s3"]).write(BUCKET, key, document or {"id": job_id, **COMPLETED}, job_id=job_id, audio=None)
    from whisperless.cloud.stores import JobStore

    JobStore(aws["jobs"], ttl_days=1).finish(job_id, status="completed")
    return job_id, key


def test_renderings_of_a_job_and_their_refusals(app_module, api, aws):
    job_id, _ = _finish(aws, seed_post(app_module))
    srt = call(app_module, "GET", f"/v1/transcriptions/{job_id}", params={"format": "srt"})
    assert srt.status == 200 and srt.headers["content-type"].startswith("application/x-subrip")
    assert srt.text == "1\n00:00:00,000 --> 00:00:03,000\nHello World\n"
    pending = seed_post(app_module).json["id"]
    early = call(app_module, "GET", f"/v1/transcriptions/{pending}", params={"format": "vtt"})
    assert early.status == 409 and early.json["error"]["field"] == "format"
    bad = call(app_module, "GET", f"/v1/transcriptions/{job_id}", params={"format": "docx"})
    assert bad.status == 400 and bad.json["error"]["field"] == "format"


def test_listing_pages_through_ones_own_jobs_newest_first(app_module, api, aws):
    mine = [seed_post(app_module).json["id"] for _ in range(3)]
    seed_post(app_module, key=KEY_B)
    first = call(app_module, "GET", "/v1/transcriptions", params={"limit": "2"}).json
    rest = call(app_module, "GET", "/v1/transcriptions", params={"limit": "2", "after": first["next"]}).json
    assert [j["id"] for j in first["transcriptions"] + rest["transcriptions"]] == mine[::-1]
    assert rest["next"] is None
    # A cursor is only good for its own client's list.
    theirs = call(app_module, "GET", "/v1/transcriptions", key=KEY_B, params={"after": first["next"]})
    assert theirs.status == 400 and theirs.json["error"]["field"] == "after"
    assert call(app_module, "GET", "/v1/transcriptions", params={"limit": "0"}).status == 400


def test_deleting_removes_everything_of_ones_own_finished_job_only(app_module, api, aws):
    job_id, key = _finish(aws, seed_post(app_module))
    aws["s3"].put_object(Bucket=BUCKET, Key=key + ".srt", Body=b"1")
    running = seed_post(app_module).json["id"]
    assert call(app_module, "DELETE", f"/v1/transcriptions/{job_id}", key=KEY_B).status == 404
    assert call(app_module, "DELETE", f"/v1/transcriptions/{running}").status == 409
    gone = call(app_module, "DELETE", f"/v1/transcriptions/{job_id}")
    assert gone.status == 200 and gone.json == {"id": job_id, "deleted": True}
    assert not [k for k in stored_keys(aws) if k.startswith(f"uploads/{job_id}/")]
    assert aws["jobs"].get_item(Key={"id": job_id}).get("Item") is None
    assert call(app_module, "GET", f"/v1/transcriptions/{job_id}").status == 404


def test_health_needs_no_key(app_module, api):
    answer = call(app_module, "GET", "/v1/health", key=None)
    assert answer.status == 200 and answer.json == {"status": "ok"}


# ------------------------------------------------------------------ speakers by name


def _voice(aws, owner: str, name: str) -> None:
    from whisperless.cloud.voices import VoiceStore

    VoiceStore(aws["dynamodb"].Table("voices")).put(owner, name, bytes(192 * 4), 5.0)


def _enrol(app_module, key: str = KEY_A, data: bytes | None = WAV, **form) -> Answer:
    files = {"file": ("alice.wav", data)} if data is not None else {"x": ("", b"")}
    return call(app_module, "POST", "/v1/speakers", key=key, data=form, files=files)


def test_an_enrolment_stores_the_clip_out_of_the_upload_rule_s_way_and_queues_it(app_module, api, aws):
    answer = _enrol(app_module, name=" Alice Smith ")
    assert answer.status == 202 and answer.json == {"name": "Alice Smith", "status": "queued"}
    (key,) = stored_keys(aws)
    assert key.startswith(".voices/") and "." not in key[len(".voices/") :]  # no extension: never a job
    assert queued(aws) == [{"voice": {"bucket": BUCKET, "key": key, "owner": "client-a", "name": "Alice Smith"}}]


@pytest.mark.parametrize(
    "outcome, status, field",
    [
        ({"status": "completed", "name": "Alice", "seconds": 7.5}, 201, None),
        (
            {"status": "failed", "error": {"code": "too_little_speech", "message": "0.0 s", "field": "file"}},
            422,
            "file",
        ),
    ],
)
def test_an_enrolment_answers_what_the_transcriber_made_of_it(app_module, make_api, aws, clock, outcome, status, field):
    make_api(result_wait_seconds=5)

    def transcriber():  # what cloud.voices.VoiceRunner writes next to the clip
        (key,) = [k for k in stored_keys(aws) if not k.endswith(".json")]
        aws["s3"].put_object(Bucket=BUCKET, Key=key + ".json", Body=json.dumps({"id": "x", **outcome}).encode())

    clock.on_sleep.append(transcriber)
    answer = _enrol(app_module, name="Alice")
    assert answer.status == status, answer.json
    if field is None:
        assert answer.json == {"name": "Alice", "seconds": 7.5}
    else:
        assert answer.json["error"]["field"] == field and answer.json["error"]["code"] == "too_little_speech"
    assert not [k for k in stored_keys(aws) if k.endswith(".json")]  # the outcome is read once, then gone


@pytest.mark.parametrize(
    "form, data, field",
    [
        ({}, WAV, "name"),
        ({"name": "a,b"}, WAV, "name"),
        ({"name": "SPEAKER_00"}, WAV, "name"),
        ({"name": "A"}, None, "file"),
    ],
)
def test_bad_enrolments_are_refused_before_anything_is_stored(app_module, api, aws, form, data, field):
    answer = _enrol(app_module, data=data, **form)
    assert answer.status == 400 and answer.json["error"]["field"] == field
    assert_nothing_stored(aws)


def test_voices_are_their_client_s_own(app_module, api, aws):
    _voice(aws, "client-a", "Alice")
    _voice(aws, "client-b", "Bob")
    listed = call(app_module, "GET", "/v1/speakers").json["speakers"]
    assert [v["name"] for v in listed] == ["Alice"] and listed[0]["seconds"] == 5.0
    assert call(app_module, "DELETE", "/v1/speakers/Bob").status == 404  # another's: as if missing
    assert call(app_module, "DELETE", "/v1/speakers/Alice", key=KEY_B).status == 404
    gone = call(app_module, "DELETE", "/v1/speakers/Alice")
    assert gone.status == 200 and gone.json == {"name": "Alice", "deleted": True}
    assert call(app_module, "GET", "/v1/speakers").json == {"speakers": []}
    assert [v["name"] for v in call(app_module, "GET", "/v1/speakers", key=KEY_B).json["speakers"]] == ["Bob"]
    assert call(app_module, "GET", "/v1/speakers", key=None).status == 401


def test_known_speakers_must_be_the_caller_s_own_voices(app_module, api, aws):
    _voice(aws, "client-b", "Bob")
    refused = seed_post(app_module, knownSpeakers="Bob")
    assert refused.status == 400 and refused.json["error"]["field"] == "knownSpeakers"
    assert "Bob" in refused.json["error"]["message"]
    assert_nothing_stored(aws)
    _voice(aws, "client-a", "Alice")
    accepted = seed_post(app_module, knownSpeakers="Alice")
    assert accepted.status == 202
    (key,) = stored_keys(aws)
    assert aws["s3"].head_object(Bucket=BUCKET, Key=key)["Metadata"]["knownspeakers"] == "Alice"
    needs = seed_post(app_module, knownSpeakers="Alice", diarization="false")
    assert needs.status == 400 and needs.json["error"]["field"] == "knownSpeakers"


def test_openai_style_reference_voices_travel_with_the_job(app_module, api, aws):
    import base64

    reference = "data:audio/wav;base64," + base64.b64encode(WAV).decode()
    form = [("known_speaker_names[]", "Alice"), ("known_speaker_references[]", reference), ("diarization", "true")]
    answer = call(app_module, "POST", "/v1/transcriptions", data=form, files={"file": ("a.wav", WAV)})
    assert answer.status == 202, answer.json
    job_id = answer.json["id"]
    assert aws["s3"].get_object(Bucket=BUCKET, Key=f".voices/{job_id}/0")["Body"].read() == WAV
    (audio,) = [k for k in stored_keys(aws) if k.startswith("uploads/")]
    metadata = aws["s3"].head_object(Bucket=BUCKET, Key=audio)["Metadata"]
    assert metadata["knownspeakers"] == "Alice" and metadata["voicereferences"] == "1"

    refusals = {
        "knownSpeakers": [*form, ("knownSpeakers", "Alice")],
        "known_speaker_references[]": [("known_speaker_names[]", "Alice"), ("diarization", "true")],
    }
    for field, fields in refusals.items():
        refused = call(app_module, "POST", "/v1/transcriptions", data=fields, files={"file": ("a.wav", WAV)})
        assert refused.status == 400 and refused.json["error"]["field"] == field, refused.json
