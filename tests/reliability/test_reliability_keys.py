"""Keys, job ids and parameters an uploader chooses, through the real transcriber handler on moto
(upload -> EventBridge -> SQS -> handler) with the real tiny.en engine:

- "+" versus space: twins in one folder each get their own transcript (S3 encodes keys in its
  events, EventBridge's included; they are decoded exactly once);
- a job id in the object's metadata is honoured only for the key its job was created for;
- a key too long for its result, and S3 errors that no retry fixes, end the job at once with a
  failed callback and a job record (never three runs and silence);
- a language or task the model cannot do is a failed document naming the field, before any work.
"""

from __future__ import annotations

import boto3
import pytest
import requests
from botocore.exceptions import ClientError
from moto import mock_aws
from reliability_common import (
    API_BASE,
    BUCKET,
    KEY_A,
    REGION,
    SECRET,
    Answer,
    CountingEngine,
    LambdaContext,
    Receiver,
    create_resources,
    handle_queue,
    load_handler,
    make_runner,
    result,
    set_aws_env,
    speech_clip,
    to_event,
)
from standardwebhooks.webhooks import Webhook

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


@pytest.fixture(scope="module")
def app_module():
    return load_handler("transcriber", "reliability_keys_transcriber_app")


@pytest.fixture(scope="module")
def api_module():
    return load_handler("api", "reliability_keys_api_app")


@pytest.fixture(scope="module")
def clips(sample_wav) -> dict[str, bytes]:
    # Different lengths, so a result shows (in its duration) which audio it transcribed.
    return {"short": speech_clip(sample_wav, 3.0, start=6.4), "long": speech_clip(sample_wav, 5.0, start=14.4)}


@pytest.fixture
def aws(monkeypatch, app_module, api_module):
    set_aws_env(monkeypatch)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        dynamodb = boto3.resource("dynamodb", region_name=REGION)
        queues = create_resources(s3, sqs, boto3.client("events", region_name=REGION), dynamodb)
        engine = CountingEngine()
        runner = make_runner(s3, dynamodb, app_module, engine)
        from whisperless.cloud import apikeys
        from whisperless.cloud.api import Api
        from whisperless.config import Settings

        apikeys.add_key(dynamodb.Table("apikeys"), KEY_A, "client-a")
        api_module._service = Api(
            Settings(
                bucket=BUCKET,
                jobs_table="jobs",
                api_keys_table="apikeys",
                queue_url=queues["queue"],
                result_wait_seconds=0,
            ),
            s3=s3,
            dynamodb=dynamodb,
            sqs=sqs,
            whisper_model="tiny.en",
        )
        yield {"s3": s3, "sqs": sqs, "jobs": dynamodb.Table("jobs"), "engine": engine, "runner": runner, **queues}
        app_module._runner = None
        api_module._service = None


def work(aws, app_module) -> list[str]:
    return handle_queue(app_module, aws["sqs"], aws["queue"], aws["queue_arn"])


def keys(aws) -> list[str]:
    return sorted(o["Key"] for o in aws["s3"].list_objects_v2(Bucket=BUCKET).get("Contents", []))


def api_call(api_module, method: str, path: str, **kwargs) -> Answer:
    prepared = requests.Request(
        method, API_BASE + path, headers={"Authorization": f"Bearer {KEY_A}"}, **kwargs
    ).prepare()
    return Answer(api_module.handler(to_event(prepared), LambdaContext("ApiFunction", 29)))


# ------------------------------------------------------------------ "+" versus space


def test_plus_and_space_twins_each_get_their_own_transcript(aws, app_module, clips):
    s3 = aws["s3"]
    s3.put_object(Bucket=BUCKET, Key="s3t/pl us.wav", Body=clips["short"])
    assert work(aws, app_module) == []
    first = result(s3, "s3t/pl us.wav")
    assert first["status"] == "completed" and first["duration"] == 3.0

    s3.put_object(Bucket=BUCKET, Key="s3t/pl+us.wav", Body=clips["long"])
    assert work(aws, app_module) == []
    plus = result(s3, "s3t/pl+us.wav")
    assert plus["status"] == "completed" and plus["duration"] == 5.0
    assert plus["source"] == {"bucket": BUCKET, "key": "s3t/pl+us.wav"} and plus["id"] != first["id"]
    assert result(s3, "s3t/pl us.wav") == first  # its twin's result was not rewritten
    assert keys(aws) == ["s3t/pl us.wav", "s3t/pl us.wav.json", "s3t/pl+us.wav", "s3t/pl+us.wav.json"]

    # The same upload as an S3 notification (AWS encodes "+" as %2B there): the same job, done once.
    head = s3.head_object(Bucket=BUCKET, Key="s3t/pl+us.wav")
    notification = {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": BUCKET},
                    "object": {"key": "s3t/pl%2Bus.wav", "eTag": head["ETag"], "size": head["ContentLength"]},
                },
            }
        ]
    }
    (outcome,) = app_module.handler(notification, LambdaContext())["results"]
    assert outcome["status"] == "completed" and outcome["jobId"] == plus["id"]
    assert aws["engine"].runs == 2


# ------------------------------------------------------------------ job ids in metadata


def test_a_job_id_in_metadata_is_honoured_only_for_the_key_it_was_created_for(aws, app_module, api_module, clips):
    answer = api_call(
        api_module, "POST", "/v1/transcriptions", data={"language": "en"}, files={"file": ("mine.wav", clips["short"])}
    )
    assert answer.status == 202, answer.json
    job_id = answer.json["id"]
    assert work(aws, app_module) == []
    mine = api_call(api_module, "GET", f"/v1/transcriptions/{job_id}").json
    assert mine["status"] == "completed" and mine["duration"] == 3.0

    # Someone with write access to another prefix claims the job in their upload's metadata.
    aws["s3"].put_object(Bucket=BUCKET, Key="elsewhere/theirs.wav", Body=clips["long"], Metadata={"jobid": job_id})
    assert work(aws, app_module) == []
    theirs = result(aws["s3"], "elsewhere/theirs.wav")
    assert theirs["status"] == "completed" and theirs["id"] != job_id  # a job of its own

    assert api_call(api_module, "GET", f"/v1/transcriptions/{job_id}").json == mine
    record = aws["jobs"].get_item(Key={"id": job_id})["Item"]
    assert record["key"] == f"uploads/{job_id}/mine.wav" and record["status"] == "completed"

    # A job still waiting for its presigned upload cannot be claimed either.
    upload = api_call(api_module, "POST", "/v1/uploads", json={"filename": "later.wav"})
    waiting = upload.json["id"]
    aws["s3"].put_object(Bucket=BUCKET, Key="elsewhere/early.wav", Body=clips["short"], Metadata={"jobid": waiting})
    assert work(aws, app_module) == []
    assert aws["jobs"].get_item(Key={"id": waiting})["Item"]["status"] == "awaiting_upload"
    assert api_call(api_module, "GET", f"/v1/transcriptions/{waiting}").json["status"] == "awaiting_upload"


# ------------------------------------------------------------------ keys S3 cannot hold a result for


def test_a_key_too_long_for_its_outputs_is_refused_at_once_with_a_callback_and_a_record(aws, app_module, clips):
    receiver = Receiver([200])
    try:
        # The longest output, <key>.unredacted.json, is exactly 1024 bytes for the first key; the
        # second key fits in S3 but its outputs do not.
        fits = "long/" + "k" * (1008 - len("long/") - len(".wav")) + ".wav"
        too_long = "long/" + "k" * (1009 - len("long/") - len(".wav")) + ".wav"
        assert (len(fits.encode()), len(too_long.encode())) == (1008, 1009)
        metadata = {"callbackurl": receiver.url, "redact": "pii", "redactionoutput": "redacted_and_unredacted"}
        for key in (fits, too_long):
            aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=clips["short"], Metadata=metadata)

        assert work(aws, app_module) == [] and work(aws, app_module) == []  # done at once, never redelivered
        assert result(aws["s3"], fits)["status"] == "completed"
        assert aws["engine"].runs == 1  # the refused one was never transcribed
        # Nothing half-written for the refused one.
        assert keys(aws) == sorted([fits, fits + ".json", fits + ".unredacted.json", too_long])

        records = {item["key"]: item for item in aws["jobs"].scan()["Items"]}
        refused = records[too_long]
        assert refused["status"] == "failed" and refused["error"]["code"] == "key_too_long"
        assert refused["error"]["field"] == "key" and int(refused["attempts"]) == 1
        documents = [Webhook(SECRET).verify(body, headers) for headers, body in receiver.requests]
        (failed,) = [d for d in documents if d["status"] == "failed"]
        assert failed["id"] == refused["id"] and failed["error"]["code"] == "key_too_long"
        assert "1024" in failed["error"]["message"] and len(receiver.requests) == 2
    finally:
        receiver.close()


@pytest.mark.parametrize("where", ["result write", "download"])
def test_an_s3_error_no_retry_can_fix_ends_the_job_once(aws, app_module, clips, monkeypatch, where):
    receiver = Receiver([200])
    try:
        key = f"permanent/{where.replace(' ', '-')}.wav"
        aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=clips["short"], Metadata={"callbackurl": receiver.url})
        tries: list[str] = []
        refusal = ClientError({"Error": {"Code": "InvalidArgument", "Message": "simulated"}}, "PutObject")
        if where == "result write":
            real = aws["s3"].put_object

            def put_object(**kwargs):
                if kwargs["Key"].endswith(".json"):
                    tries.append(kwargs["Key"])
                    raise refusal
                return real(**kwargs)

            monkeypatch.setattr(aws["runner"].s3, "put_object", put_object)
        else:
            archived = ClientError({"Error": {"Code": "InvalidObjectState", "Message": "archived"}}, "GetObject")

            def download_file(*args, **kwargs):
                tries.append(args[1])
                raise archived

            monkeypatch.setattr(aws["runner"].s3, "download_file", download_file)

        assert work(aws, app_module) == []  # not reported for redelivery
        assert len(tries) == 1
        record = aws["jobs"].scan()["Items"][0]
        assert record["status"] == "failed" and record["error"]["code"] == "storage_refused"
        (headers, body) = receiver.requests[0]
        document = Webhook(SECRET).verify(body, headers)
        assert document["status"] == "failed" and document["error"]["code"] == "storage_refused"
        if where == "download":
            assert result(aws["s3"], key) == document  # the write itself still works: the document is there
            assert aws["engine"].runs == 0
    finally:
        receiver.close()


# ------------------------------------------------------------------ parameters from metadata


@pytest.mark.parametrize(
    "metadata, field",
    [({"language": "de"}, "language"), ({"task": "translate"}, "task"), ({"language": "xx"}, "language")],
)
def test_what_the_model_cannot_do_is_a_failed_document_naming_the_field(aws, app_module, clips, metadata, field):
    aws["s3"].put_object(Bucket=BUCKET, Key="params/a.wav", Body=clips["short"], Metadata=metadata)
    assert work(aws, app_module) == []
    document = result(aws["s3"], "params/a.wav")
    assert document["status"] == "failed" and document["error"]["field"] == field
    assert aws["engine"].runs == 0  # refused before the download and the engine


@pytest.mark.parametrize("language", ["en-US", "EN_us", "en"])
def test_locale_tags_in_metadata_are_the_base_language(aws, app_module, clips, language):
    aws["s3"].put_object(Bucket=BUCKET, Key="params/b.wav", Body=clips["short"], Metadata={"language": language})
    assert work(aws, app_module) == []
    document = result(aws["s3"], "params/b.wav")
    assert document["status"] == "completed" and document["language"] == "en"
