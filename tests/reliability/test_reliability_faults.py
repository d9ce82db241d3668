"""Faults around a job, through the real transcriber handler against moto: S3 and DynamoDB
failing, callback receivers that are slow, down or refusing, and a storm of duplicate
deliveries. What must hold: no result lost, none half-written, no job done twice (one
result write, one callback), and the job record says what happened."""

from __future__ import annotations

import copy
import json
import threading
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

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


@pytest.fixture(scope="module")
def app_module():
    return load_handler("transcriber", "reliability_faults_transcriber_app")


class CountingEngine:
    """The real tiny.en engine, counting runs; ``pause`` widens the window in which
    duplicates arrive while the job is in progress."""

    def __init__(self, pause: float = 0.0):
        from whisperless.engine import Engine

        self.engine = Engine(whisper_model="tiny.en")
        self.whisper_model = self.engine.whisper_model
        self.pause = pause
        self.runs = 0
        self.lock = threading.Lock()

    def process(self, *args, **kwargs):
        with self.lock:
            self.runs += 1
        time.sleep(self.pause)
        return self.engine.process(*args, **kwargs)


@pytest.fixture
def aws(monkeypatch, app_module):
    set_aws_env(monkeypatch)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        dynamodb = boto3.resource("dynamodb", region_name=REGION)
        queues = create_resources(s3, sqs, boto3.client("events", region_name=REGION), dynamodb)
        from whisperless.cloud.runner import JobRunner
        from whisperless.config import Settings

        engine = CountingEngine()
        sleeps: list[float] = []
        settings = Settings(
            bucket=BUCKET,
            jobs_table="jobs",
            idempotency_table="idempotency",
            webhook_secret=SECRET,
            allow_local_callbacks=True,
        )
        transcriber = JobRunner(
            s3=s3,
            dynamodb=dynamodb,
            settings=settings,
            engine=engine,
            metrics=app_module.metrics,
            callback_sleep=sleeps.append,
            callback_timeout=(1.0, 0.5),
        )
        app_module._runner = transcriber
        yield {
            "s3": s3,
            "sqs": sqs,
            "jobs": dynamodb.Table("jobs"),
            "app": app_module,
            "engine": engine,
            "transcriber": transcriber,
            "sleeps": sleeps,
            **queues,
        }
        app_module._runner = None


@pytest.fixture(scope="module")
def clip(sample_wav) -> bytes:
    from reliability_common import speech_clip

    return speech_clip(sample_wav, 3.0, start=3.0)


@pytest.fixture
def result_writes(aws, monkeypatch):
    """Successful PUTs of result documents, by key."""
    writes: dict[str, int] = {}
    real = aws["s3"].put_object

    def put_object(**kwargs):
        reply = real(**kwargs)
        if kwargs["Key"].endswith(".json"):
            writes[kwargs["Key"]] = writes.get(kwargs["Key"], 0) + 1
        return reply

    monkeypatch.setattr(aws["s3"], "put_object", put_object)
    return writes


def invoke(aws, messages) -> list[str]:
    """Lambda's SQS event source: invoke, delete what succeeded; returns the failed ids."""
    reply = aws["app"].handler(sqs_event(messages, aws["queue_arn"]), LambdaContext())
    failed = [f["itemIdentifier"] for f in reply["batchItemFailures"]]
    for message in messages:
        if message["MessageId"] not in failed:
            aws["sqs"].delete_message(QueueUrl=aws["queue"], ReceiptHandle=message["ReceiptHandle"])
    return failed


def redeliver(aws, messages) -> list[dict]:
    """What the queue does after the visibility timeout, without waiting for it."""
    for message in messages:
        aws["sqs"].change_message_visibility(
            QueueUrl=aws["queue"], ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    return receive(aws["sqs"], aws["queue"])


def job_of(aws, key: str) -> dict:
    (item,) = [i for i in aws["jobs"].scan()["Items"] if i.get("key") == key]
    return item


def aws_error(code: str, operation: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": f"simulated {code}"}, "ResponseMetadata": {"HTTPStatusCode": 503}},
        operation,
    )


# ------------------------------------------------------------------ S3


def test_a_failed_result_write_is_retried_and_nothing_is_half_written(aws, clip, result_writes, monkeypatch):
    receiver = Receiver([200])
    try:
        aws["s3"].put_object(Bucket=BUCKET, Key="s3/a.wav", Body=clip, Metadata={"callbackurl": receiver.url})
        real = aws["s3"].put_object
        failures = []

        def fail_once(**kwargs):
            if kwargs["Key"].endswith(".json") and not failures:
                failures.append(kwargs["Key"])
                raise aws_error("SlowDown", "PutObject")
            return real(**kwargs)

        monkeypatch.setattr(aws["s3"], "put_object", fail_once)
        messages = receive(aws["sqs"], aws["queue"])
        assert invoke(aws, messages) == [messages[0]["MessageId"]]  # reported: it comes back
        assert result(aws["s3"], "s3/a.wav") is None and receiver.requests == []
        job = job_of(aws, "s3/a.wav")
        assert job["status"] == "retrying" and job["lastError"]["code"] == "SlowDown"

        assert invoke(aws, redeliver(aws, messages)) == []
        assert result(aws["s3"], "s3/a.wav")["status"] == "completed"
        assert result_writes == {"s3/a.wav.json": 1} and len(receiver.requests) == 1
        assert job_of(aws, "s3/a.wav")["status"] == "completed"
    finally:
        receiver.close()


def test_an_unreadable_upload_is_retried_not_answered_as_bad_audio(aws, clip, monkeypatch):
    aws["s3"].put_object(Bucket=BUCKET, Key="s3/b.wav", Body=clip)
    monkeypatch.setattr(
        aws["transcriber"].s3,
        "download_file",
        lambda *a, **k: (_ for _ in ()).throw(aws_error("InternalError", "GetObject")),
    )
    messages = receive(aws["sqs"], aws["queue"])
    assert invoke(aws, messages) == [messages[0]["MessageId"]]
    assert result(aws["s3"], "s3/b.wav") is None  # no false "failed" document for good audio
    monkeypatch.undo()
    set_aws_env(monkeypatch)
    assert invoke(aws, redeliver(aws, messages)) == []
    assert result(aws["s3"], "s3/b.wav")["status"] == "completed"


# ------------------------------------------------------------------ DynamoDB


@pytest.mark.parametrize("table", ["jobs", "idempotency"])
def test_dynamodb_unavailable_reports_the_message_and_the_retry_completes(aws, clip, result_writes, monkeypatch, table):
    receiver = Receiver([200])
    try:
        aws["s3"].put_object(Bucket=BUCKET, Key=f"ddb/{table}.wav", Body=clip, Metadata={"callbackurl": receiver.url})
        messages = receive(aws["sqs"], aws["queue"])
        transcriber = aws["transcriber"]
        if table == "jobs":
            target, names = transcriber.jobs.table.meta.client, ("update_item", "put_item", "get_item")
        else:
            target, names = transcriber._dynamodb_client, ("put_item", "get_item", "update_item", "delete_item")
        with monkeypatch.context() as patch:
            for name in names:
                patch.setattr(
                    target, name, lambda *a, _n=name, **k: (_ for _ in ()).throw(aws_error("ServiceUnavailable", _n))
                )
            assert invoke(aws, messages) == [messages[0]["MessageId"]]
        assert result(aws["s3"], f"ddb/{table}.wav") is None and receiver.requests == []

        assert invoke(aws, redeliver(aws, messages)) == []
        doc = result(aws["s3"], f"ddb/{table}.wav")
        assert doc["status"] == "completed"
        assert result_writes == {f"ddb/{table}.wav.json": 1} and len(receiver.requests) == 1
        assert aws["engine"].runs == 1
    finally:
        receiver.close()


def test_dynamodb_failing_after_the_result_is_written_does_not_redo_the_job(aws, clip, result_writes, monkeypatch):
    """The result is the truth clients read first: a lost status update must not send the
    message back to transcribe, write and call back a second time."""
    receiver = Receiver([200])
    try:
        aws["s3"].put_object(Bucket=BUCKET, Key="ddb/finish.wav", Body=clip, Metadata={"callbackurl": receiver.url})
        jobs = aws["transcriber"].jobs
        real = jobs.finish
        monkeypatch.setattr(
            jobs, "finish", lambda *a, **k: (_ for _ in ()).throw(aws_error("InternalServerError", "UpdateItem"))
        )
        messages = receive(aws["sqs"], aws["queue"])
        assert invoke(aws, messages) == []
        monkeypatch.setattr(jobs, "finish", real)
        assert result(aws["s3"], "ddb/finish.wav")["status"] == "completed"
        assert result_writes == {"ddb/finish.wav.json": 1} and len(receiver.requests) == 1
        assert aws["engine"].runs == 1
    finally:
        receiver.close()


# ------------------------------------------------------------------ callbacks


@pytest.mark.parametrize("scenario", ["slow", "down", "404", "410", "500", "503-then-200"])
def test_callback_receivers_that_misbehave_never_cost_the_result(aws, clip, scenario):
    statuses = {"404": [404], "410": [410], "500": [500], "503-then-200": [503, 503, 200]}.get(scenario, [200])
    receiver = Receiver(statuses, delay=1.5 if scenario == "slow" else 0.0)  # the read timeout here is 0.5 s
    url = receiver.url
    if scenario == "down":
        receiver.close()  # nothing listens on the port any more
    try:
        key = f"cb/{scenario}.wav"
        aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=clip, Metadata={"callbackurl": url})
        started = time.monotonic()
        assert invoke(aws, receive(aws["sqs"], aws["queue"])) == []  # done whatever the receiver does
        elapsed = time.monotonic() - started
        doc = result(aws["s3"], key)
        assert doc["status"] == "completed"
        callback = job_of(aws, key)["callback"]
        attempts = int(callback["attempts"])
        if scenario in ("404", "410"):
            assert callback["delivered"] is False and attempts == 1 and int(callback["status"]) == int(scenario)
        elif scenario == "503-then-200":
            assert callback["delivered"] is True and attempts == 3
            assert aws["sleeps"] == [1, 2]  # backoff between the attempts
        else:  # slow, down, 500: retried to the limit, then recorded as not delivered
            assert callback["delivered"] is False and attempts == 5 and callback["error"]
            if scenario == "slow":
                assert "timed out" in callback["error"]
        if scenario != "down":
            assert len(receiver.requests) == attempts
            ids = {headers["webhook-id"] for headers, _ in receiver.requests}
            assert ids == {doc["id"]}  # one id on every attempt: receivers can de-duplicate
            for headers, body in receiver.requests:
                assert Webhook(SECRET).verify(body, headers) == doc
        assert elapsed < 15
    finally:
        receiver.close()


# ------------------------------------------------------------------ duplicates


def test_a_duplicate_storm_is_done_once(aws, clip, result_writes, monkeypatch):
    """The same upload delivered 20 times: 12 at once from threads (the plain worker's
    path), then 8 more through the Lambda handler in every entry shape. One transcription,
    one result write, one callback; every delivery ends completed (none lost)."""
    from whisperless.cloud.worker import process_message

    aws["engine"].pause = 0.5  # the concurrent deliveries arrive while the first is running
    receiver = Receiver([200])
    try:
        aws["s3"].put_object(Bucket=BUCKET, Key="storm/a.wav", Body=clip, Metadata={"callbackurl": receiver.url})
        (message,) = receive(aws["sqs"], aws["queue"])
        body = message["Body"]

        outcomes: list = []
        barrier = threading.Barrier(12)

        def deliver():
            barrier.wait()
            try:
                outcomes.append(process_message(aws["transcriber"], body)[0]["status"])
            except Exception as exc:  # noqa: BLE001 - in progress elsewhere: the queue would redeliver
                outcomes.append(type(exc).__name__)

        threads = [threading.Thread(target=deliver) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert len(outcomes) == 12 and outcomes.count("completed") >= 1
        busy = [o for o in outcomes if o != "completed"]
        assert busy, "the deliveries did not overlap"
        assert set(busy) <= {"IdempotencyAlreadyInProgressError"}
        # The busy ones come back from the queue later: now they find the job done.
        for _ in busy:
            assert process_message(aws["transcriber"], body)[0]["status"] == "completed"

        event = json.loads(body)
        s3_notification = {
            "Records": [
                {
                    "eventSource": "aws:s3",
                    "eventName": "ObjectCreated:Put",
                    "s3": {
                        "bucket": {"name": BUCKET},
                        "object": {
                            "key": "storm/a.wav",
                            "eTag": _etag(event["detail"]["object"]),
                            "size": event["detail"]["object"]["size"],
                        },
                    },
                }
            ]
        }
        for _ in range(4):  # SQS redeliveries
            fake = {**message, "MessageId": f"dup-{_}"}
            reply = aws["app"].handler(sqs_event([copy.deepcopy(fake)], aws["queue_arn"]), LambdaContext())
            assert reply == {"batchItemFailures": []}
        for direct in (event, event, s3_notification, s3_notification):  # EventBridge / S3 invoking directly
            assert aws["app"].handler(copy.deepcopy(direct), LambdaContext())["results"][0]["status"] == "completed"

        assert aws["engine"].runs == 1
        assert result_writes == {"storm/a.wav.json": 1}
        assert len(receiver.requests) == 1
        assert int(job_of(aws, "storm/a.wav")["attempts"]) == 1
    finally:
        receiver.close()


def _etag(obj: dict) -> str:
    return obj.get("etag") or obj.get("eTag")


# ------------------------------------------------------------------ the API with its stores down


@pytest.mark.parametrize("down", ["dynamodb", "s3", "sqs"])
def test_the_api_with_a_store_down_answers_a_clear_5xx_and_queues_nothing(aws, monkeypatch, down):
    import requests
    from reliability_common import API_BASE, KEY_A, Answer, to_event

    from whisperless.cloud import apikeys
    from whisperless.cloud.api import Api
    from whisperless.config import Settings

    dynamodb = boto3.resource("dynamodb", region_name=REGION)
    apikeys.add_key(dynamodb.Table("apikeys"), KEY_A, "client-a")
    module = load_handler("api", "reliability_faults_api_app")
    api = Api(
        Settings(
            bucket=BUCKET, jobs_table="jobs", api_keys_table="apikeys", queue_url=aws["queue"], result_wait_seconds=0
        ),
        s3=aws["s3"],
        dynamodb=dynamodb,
        sqs=aws["sqs"],
    )
    module._service = api
    broken = {
        "dynamodb": (api.jobs.table.meta.client, "put_item"),
        "s3": (aws["s3"], "put_object"),
        "sqs": (aws["sqs"], "send_message"),
    }[down]
    monkeypatch.setattr(*broken, lambda *a, **k: (_ for _ in ()).throw(aws_error("ServiceUnavailable", down)))
    kwargs = (
        {"json": {"url": "https://media.example.com/a.wav"}}
        if down == "sqs"
        else {"data": {"language": "en"}, "files": {"file": ("a.wav", wav_bytes())}}
    )
    prepared = requests.Request(
        "POST", API_BASE + "/v1/transcriptions", headers={"Authorization": f"Bearer {KEY_A}"}, **kwargs
    ).prepare()
    monkeypatch.setattr("whisperless.cloud.netguard.resolver", lambda host, port: ["93.184.216.34"])
    answer = Answer(module.handler(to_event(prepared), LambdaContext("ApiFunction", 29)))
    assert answer.status == 500
    assert answer.json == {"error": {"code": "internal_error", "message": "internal error; please retry later"}}
    # Nothing that would run a job the client was told failed: no audio stored, nothing queued.
    assert aws["s3"].list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0
    assert receive(aws["sqs"], aws["queue"]) == []
