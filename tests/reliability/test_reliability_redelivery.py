"""Redeliveries and retries, through the real handlers on moto with the real tiny.en engine:

- a crash (a BaseException out of the handler, so nothing is cleaned up, as with a killed
  process) between the result write and the callback, or between the callback and the job's
  idempotency record: the redelivery re-reads the written result instead of transcribing and
  writing again, and does not call back twice; the one window left (between the HTTP callback
  and recording it) re-sends the same document with the same webhook-id;
- a url whose server is down: a few attempts within seconds here (a minute in a deployment),
  each failure visible in GET, then the failed document and its callback, and the message done.
"""

from __future__ import annotations

import threading
import time

import boto3
import pytest
import requests
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
    receive,
    result,
    set_aws_env,
    speech_clip,
    sqs_event,
    to_event,
    wait_for,
)
from standardwebhooks.webhooks import Webhook

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")
BACKOFF = (0.4, 0.4, 0.4)


class Crash(BaseException):
    """The process dying at this point: no except clause of ours or Powertools' catches it."""


@pytest.fixture(scope="module")
def app_module():
    return load_handler("transcriber", "reliability_redelivery_transcriber_app")


@pytest.fixture(scope="module")
def api_module():
    return load_handler("api", "reliability_redelivery_api_app")


@pytest.fixture(scope="module")
def clip(sample_wav) -> bytes:
    return speech_clip(sample_wav, 3.0, start=6.4)


@pytest.fixture
def aws(monkeypatch, app_module, api_module):
    set_aws_env(monkeypatch)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        dynamodb = boto3.resource("dynamodb", region_name=REGION)
        queues = create_resources(s3, sqs, boto3.client("events", region_name=REGION), dynamodb)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})  # counts writes
        engine = CountingEngine()
        runner = make_runner(s3, dynamodb, app_module, engine)
        runner.download_backoff = BACKOFF
        from whisperless.cloud import apikeys
        from whisperless.cloud.api import Api
        from whisperless.config import Settings

        apikeys.add_key(dynamodb.Table("apikeys"), KEY_A, "client-a")
        settings = Settings(
            bucket=BUCKET,
            jobs_table="jobs",
            api_keys_table="apikeys",
            queue_url=queues["queue"],
            result_wait_seconds=0,
            allow_local_callbacks=True,
        )
        api_module._service = Api(settings, s3=s3, dynamodb=dynamodb, sqs=sqs, whisper_model="tiny.en")
        yield {
            "s3": s3,
            "sqs": sqs,
            "jobs": dynamodb.Table("jobs"),
            "idempotency": dynamodb.Table("idempotency"),
            "engine": engine,
            "runner": runner,
            **queues,
        }
        app_module._runner = None
        api_module._service = None


def versions(aws, key: str) -> int:
    return len(aws["s3"].list_object_versions(Bucket=BUCKET, Prefix=key + ".json").get("Versions", []))


def crash_then_redeliver(aws, app_module) -> dict:
    """Deliver the queued message and crash (where the test says); expire the job's locks (what
    time does after a crash) and deliver the message again. Returns the job record."""
    (message,) = receive(aws["sqs"], aws["queue"])
    with pytest.raises(Crash):
        app_module.handler(sqs_event([message], aws["queue_arn"]), LambdaContext())
    locks = aws["idempotency"].scan()["Items"]
    assert locks and all(lock["status"] == "INPROGRESS" for lock in locks)  # nothing cleaned up
    for lock in locks:
        aws["idempotency"].update_item(
            Key={"id": lock["id"]},
            UpdateExpression="SET in_progress_expiration = :past",
            ExpressionAttributeValues={":past": 1},
        )
    reply = app_module.handler(sqs_event([message], aws["queue_arn"]), LambdaContext())
    assert reply == {"batchItemFailures": []}
    return aws["jobs"].scan()["Items"][0]


@pytest.mark.parametrize("where", ["after the result write", "after the callback is recorded"])
def test_a_crash_after_a_step_does_not_repeat_it_on_redelivery(aws, app_module, clip, monkeypatch, where):
    receiver = Receiver([200])
    try:
        aws["s3"].put_object(Bucket=BUCKET, Key="crash/a.wav", Body=clip, Metadata={"callbackurl": receiver.url})
        runner = aws["runner"]
        if where == "after the result write":
            real_send = runner.callbacks.send
            crashes = []

            def send(*args, **kwargs):
                if not crashes:
                    crashes.append(1)
                    raise Crash
                return real_send(*args, **kwargs)

            monkeypatch.setattr(runner.callbacks, "send", send)
        else:
            real_record = runner.jobs.record_callback
            crashes = []

            def record_callback(*args, **kwargs):
                real_record(*args, **kwargs)
                if not crashes:
                    crashes.append(1)
                    raise Crash

            monkeypatch.setattr(runner.jobs, "record_callback", record_callback)

        record = crash_then_redeliver(aws, app_module)
        assert aws["engine"].runs == 1  # transcribed once
        assert versions(aws, "crash/a.wav") == 1  # written once
        assert len(receiver.requests) == 1  # called back once
        headers, body = receiver.requests[0]
        assert Webhook(SECRET).verify(body, headers) == result(aws["s3"], "crash/a.wav")
        assert record["status"] == "completed" and int(record["attempts"]) == 2
        assert record["callback"]["delivered"] is True and record["callback"]["resultEtag"] == record["result"]["etag"]
    finally:
        receiver.close()


def test_the_window_left_resends_the_same_callback_with_the_same_webhook_id(aws, app_module, clip, monkeypatch):
    """Between a callback's HTTP answer and the job record saying so, nothing can make the two
    one step: a crash there sends the same document again, with the same webhook-id, which
    Standard Webhooks receivers de-duplicate on. Still one transcription, one write."""
    receiver = Receiver([200])
    try:
        aws["s3"].put_object(Bucket=BUCKET, Key="crash/b.wav", Body=clip, Metadata={"callbackurl": receiver.url})
        runner, crashes = aws["runner"], []
        real_record = runner.jobs.record_callback

        def record_callback(*args, **kwargs):
            if not crashes:
                crashes.append(1)
                raise Crash
            return real_record(*args, **kwargs)

        monkeypatch.setattr(runner.jobs, "record_callback", record_callback)
        crash_then_redeliver(aws, app_module)
        assert aws["engine"].runs == 1 and versions(aws, "crash/b.wav") == 1
        assert len(receiver.requests) == 2
        ids = {headers["webhook-id"] for headers, _ in receiver.requests}
        bodies = {Webhook(SECRET).verify(body, headers)["id"] for headers, body in receiver.requests}
        assert len(ids) == 1 and ids == bodies
    finally:
        receiver.close()


def test_a_url_job_redelivered_after_its_download_does_not_fetch_again(aws, app_module, api_module, clip, monkeypatch):
    source = Receiver(content=clip)
    try:
        job_id = api_post(api_module, {"url": source.url})["id"]
        real_process, crashes = aws["engine"].process, []

        def process(*args, **kwargs):  # dies inside the engine, after the download and upload
            if not crashes:
                crashes.append(1)
                raise Crash
            return real_process(*args, **kwargs)

        monkeypatch.setattr(aws["engine"], "process", process)
        record = crash_then_redeliver(aws, app_module)
        assert record["id"] == job_id and record["status"] == "completed"
        assert len(source.requests) == 1  # fetched once
        # The upload's own event: the same job, done already.
        assert handle_queue(app_module, aws["sqs"], aws["queue"], aws["queue_arn"]) == []
        assert aws["engine"].runs == 1 and api_get(api_module, job_id)["status"] == "completed"
    finally:
        source.close()


# ------------------------------------------------------------------ a url whose server is down


def api_post(api_module, body: dict) -> dict:
    prepared = requests.Request(
        "POST", API_BASE + "/v1/transcriptions", headers={"Authorization": f"Bearer {KEY_A}"}, json=body
    ).prepare()
    answer = Answer(api_module.handler(to_event(prepared), LambdaContext("ApiFunction", 29)))
    assert answer.status == 202, answer.json
    return answer.json


def api_get(api_module, job_id: str) -> dict:
    prepared = requests.Request(
        "GET", f"{API_BASE}/v1/transcriptions/{job_id}", headers={"Authorization": f"Bearer {KEY_A}"}
    ).prepare()
    answer = Answer(api_module.handler(to_event(prepared), LambdaContext("ApiFunction", 29)))
    assert answer.status == 200
    return answer.json


def test_a_url_whose_server_is_down_is_answered_within_seconds_and_says_why_meanwhile(aws, app_module, api_module):
    down = Receiver()
    url = down.url.replace("/hook", "/talk.mp3")
    down.close()  # nothing listens there any more: connections are refused
    hook = Receiver([200])
    try:
        job_id = api_post(api_module, {"url": url, "callbackURL": hook.url})["id"]
        started = time.monotonic()
        worker = threading.Thread(
            target=handle_queue, args=(app_module, aws["sqs"], aws["queue"], aws["queue_arn"]), daemon=True
        )
        worker.start()

        def retrying():
            status = api_get(api_module, job_id)
            return status if status.get("lastError") else None

        meanwhile = wait_for(retrying, 10, interval=0.05, what="GET to show the last error")
        assert meanwhile["status"] == "retrying" and meanwhile["lastError"]["code"] == "fetch_failed"
        assert "connect" in meanwhile["lastError"]["message"] and meanwhile["lastError"]["at"]
        worker.join(30)
        took = time.monotonic() - started

        document = api_get(api_module, job_id)
        assert document["status"] == "failed" and document["error"]["code"] == "url_unreachable"
        assert document["error"]["field"] == "url" and "4 attempts" in document["error"]["message"]
        ((headers, body),) = hook.requests
        assert Webhook(SECRET).verify(body, headers) == document
        assert receive(aws["sqs"], aws["queue"]) == [] and receive(aws["sqs"], aws["dlq"]) == []  # done, not retried
        assert int(aws["jobs"].get_item(Key={"id": job_id})["Item"]["downloadAttempts"]) == 4
        assert took < 3 * sum(BACKOFF) + 5
        print(f"url server down: failed document after {took:.1f} s (backoff {BACKOFF})")
    finally:
        hook.close()


def test_a_url_whose_server_comes_back_completes(aws, app_module, api_module, clip):
    source = Receiver([503, 503, 200], content=clip)
    try:
        job_id = api_post(api_module, {"url": source.url})["id"]
        assert handle_queue(app_module, aws["sqs"], aws["queue"], aws["queue_arn"]) == []
        document = api_get(api_module, job_id)
        assert document["status"] == "completed" and len(source.requests) == 3
        record = aws["jobs"].get_item(Key={"id": job_id})["Item"]
        assert int(record["downloadAttempts"]) == 2 and record["lastError"]["code"] == "download_failed"
    finally:
        source.close()
