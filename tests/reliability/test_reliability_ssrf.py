"""SSRF end to end (tests/test_netguard.py has the 66 address-level refusals).

Through the real API handler: an unsafe ``url`` or ``callbackURL`` is a 400 naming the
field, nothing is stored or queued, and no connection is opened. Through the real
transcriber handler: a callback (or a ``url``) whose host resolves to a private address
by the time the worker acts (an S3 upload never validated by the API, or DNS that changed
after the API's check) is never attempted; the result is still written and the refusal
recorded on the job."""

from __future__ import annotations

import json
import socket

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
    LambdaContext,
    Receiver,
    create_resources,
    load_handler,
    receive,
    result,
    set_aws_env,
    sqs_event,
    to_event,
    wav_bytes,
)

from whisperless.cloud import apikeys, netguard

PUBLIC = "93.184.216.34"
DNS = {
    "media.example.com": [PUBLIC],
    "hooks.example.com": [PUBLIC],
    "internal.example.com": ["10.0.0.5"],
    "rebind.example.com": ["127.0.0.1"],
    "metadata.example.com": ["169.254.169.254"],
    "ecs-creds.example.com": ["169.254.170.2"],
    "mixed.example.com": [PUBLIC, "192.168.1.10"],
    "ula.example.com": ["fd00::1"],
    "mapped.example.com": ["::ffff:10.1.2.3"],
    "cgnat.example.com": ["100.64.0.1"],
}

UNSAFE = [
    "http://127.0.0.1/a.wav",
    "http://localhost/a.wav",
    "http://[::1]/a.wav",
    "http://2130706433/a.wav",
    "http://0x7f.0.0.1/a.wav",
    "http://0177.0.0.1/a.wav",
    "http://127.1/a.wav",
    "http://[::ffff:127.0.0.1]/a.wav",
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://100.100.100.200/latest/meta-data/",
    "http://10.0.0.1/a.wav",
    "http://172.16.5.4:8080/a.wav",
    "http://192.168.0.1/a.wav",
    "http://0.0.0.0/a.wav",
    "http://internal.example.com/a.wav",
    "http://rebind.example.com/a.wav",
    "http://metadata.example.com/latest/meta-data/",
    "http://ecs-creds.example.com/v2/credentials",
    "http://mixed.example.com/a.wav",
    "http://ula.example.com/a.wav",
    "http://mapped.example.com/a.wav",
    "http://cgnat.example.com/a.wav",
    "http://nowhere.invalid/a.wav",
    "https://media.example.com:22/a.wav",
    "http://user:pass@media.example.com/a.wav",
    "file:///etc/passwd",
    "gopher://media.example.com/_a",
    "ftp://media.example.com/a.wav",
    "http://media.example.com\\@10.0.0.1/a.wav",
    "http://media.example.com%2F@10.0.0.1/",
    "http:///a.wav",
    " http://10.0.0.1/",
]


@pytest.fixture
def dns(monkeypatch):
    def resolve(host, port):
        if host in DNS:
            return list(DNS[host])
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(netguard, "resolver", resolve)


@pytest.fixture
def connections(monkeypatch):
    """Every outgoing connection: refused unless it is to a test receiver on 127.0.0.1."""
    opened: list = []
    allowed_ports: set[int] = set()
    real_connect = socket.socket.connect

    def connect(sock, address):
        opened.append(address)
        if address[0] == "127.0.0.1" and address[1] in allowed_ports:
            return real_connect(sock, address)
        raise AssertionError(f"a connection was attempted to {address!r}")

    monkeypatch.setattr(socket.socket, "connect", connect)
    return {"opened": opened, "allow": allowed_ports}


def _moto():
    s3 = boto3.client("s3", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    dynamodb = boto3.resource("dynamodb", region_name=REGION)
    queues = create_resources(s3, sqs, boto3.client("events", region_name=REGION), dynamodb)
    return {"s3": s3, "sqs": sqs, "dynamodb": dynamodb, "jobs": dynamodb.Table("jobs"), **queues}


# ------------------------------------------------------------------ through the API


@pytest.fixture(scope="module")
def api_stack():
    """One moto for the whole module (refusals store nothing; each worker test uses its
    own keys), and the real API handler on it."""
    from whisperless.cloud.api import Api
    from whisperless.config import Settings

    mp = pytest.MonkeyPatch()
    set_aws_env(mp)
    with mock_aws():
        aws = _moto()
        module = load_handler("api", "reliability_ssrf_api_app")
        apikeys.add_key(aws["dynamodb"].Table("apikeys"), KEY_A, "client-a")
        module._service = Api(
            Settings(
                bucket=BUCKET,
                jobs_table="jobs",
                api_keys_table="apikeys",
                queue_url=aws["queue"],
                result_wait_seconds=0,
            ),
            s3=aws["s3"],
            dynamodb=aws["dynamodb"],
            sqs=aws["sqs"],
            sleep=lambda s: None,
        )
        yield module, aws
    mp.undo()


@pytest.fixture
def api_app(api_stack):
    return api_stack[0]


@pytest.fixture
def aws(api_stack):
    return api_stack[1]


def _post(app, **kwargs) -> Answer:
    prepared = requests.Request(
        "POST", API_BASE + "/v1/transcriptions", headers={"Authorization": f"Bearer {KEY_A}"}, **kwargs
    ).prepare()
    return Answer(app.handler(to_event(prepared), LambdaContext("ApiFunction", 29)))


def _stored(aws) -> tuple:
    """Everything a request could have left behind: objects, job records, queued messages."""
    objects = [o["Key"] for o in aws["s3"].list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    jobs = sorted(item["id"] for item in aws["jobs"].scan()["Items"])
    depth = aws["sqs"].get_queue_attributes(QueueUrl=aws["queue"], AttributeNames=["All"])["Attributes"]
    return objects, jobs, depth["ApproximateNumberOfMessages"], depth["ApproximateNumberOfMessagesNotVisible"]


@pytest.mark.parametrize("url", UNSAFE)
def test_an_unsafe_url_is_a_400_naming_url(api_app, aws, dns, connections, url):
    before = _stored(aws)
    answer = _post(api_app, json={"url": url, "language": "en"})
    assert answer.status == 400, answer.json
    assert answer.json["error"]["field"] == "url"
    assert answer.json["error"]["code"] in ("unsafe_url", "invalid_parameter")
    assert _stored(aws) == before
    assert connections["opened"] == []


@pytest.mark.parametrize("url", UNSAFE)
def test_an_unsafe_callback_url_is_a_400_naming_callback_url(api_app, aws, dns, connections, url):
    # The seed client's multipart form, with a file: the callback alone is at fault.
    before = _stored(aws)
    answer = _post(api_app, data={"callbackURL": url, "diarization": ""}, files={"file": ("a.wav", wav_bytes())})
    assert answer.status == 400, answer.json
    assert answer.json["error"]["field"] == "callbackURL"
    assert _stored(aws) == before
    assert connections["opened"] == []


def test_a_safe_url_still_passes(api_app, aws, dns, connections):
    answer = _post(
        api_app, json={"url": "https://media.example.com/a.wav", "callbackURL": "https://hooks.example.com/whisperless"}
    )
    assert answer.status == 202
    assert connections["opened"] == []  # the API checks addresses; it never fetches
    (message,) = receive(aws["sqs"], aws["queue"])  # leave the shared stack as found
    aws["sqs"].delete_message(QueueUrl=aws["queue"], ReceiptHandle=message["ReceiptHandle"])
    aws["jobs"].delete_item(Key={"id": answer.json["id"]})


# ------------------------------------------------------------------ through the worker


@pytest.fixture
def worker(aws, monkeypatch):
    """The transcriber handler with loopback callbacks allowed (for the test receiver):
    every other private address stays refused."""
    from whisperless.cloud.runner import JobRunner
    from whisperless.config import Settings
    from whisperless.engine import Engine

    module = load_handler("transcriber", "reliability_ssrf_transcriber_app")
    settings = Settings(
        bucket=BUCKET,
        jobs_table="jobs",
        idempotency_table="idempotency",
        webhook_secret=SECRET,
        allow_local_callbacks=True,
    )
    module._runner = JobRunner(
        s3=aws["s3"],
        dynamodb=aws["dynamodb"],
        settings=settings,
        engine=Engine(whisper_model="tiny.en"),
        metrics=module.metrics,
        callback_sleep=lambda s: None,
    )
    yield module
    module._runner = None


def _run(worker, aws) -> dict:
    messages = receive(aws["sqs"], aws["queue"])
    assert messages
    return worker.handler(sqs_event(messages, aws["queue_arn"]), LambdaContext())


PRIVATE_CALLBACKS = [
    "http://internal.example.com/hook",
    "http://metadata.example.com/hook",
    "http://mixed.example.com/hook",
    "http://mapped.example.com/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00::1]/hook",
]


@pytest.mark.parametrize("callback", PRIVATE_CALLBACKS)
def test_a_callback_resolving_to_a_private_address_is_never_attempted(worker, aws, dns, connections, callback):
    key = f"direct/{PRIVATE_CALLBACKS.index(callback)}.wav"  # uploaded straight to S3: never seen by the API
    aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=wav_bytes(), Metadata={"callbackurl": callback})
    assert _run(worker, aws) == {"batchItemFailures": []}
    doc = result(aws["s3"], key)
    assert doc["status"] == "completed"  # the result never depends on the callback
    job = aws["jobs"].get_item(Key={"id": doc["id"]})["Item"]
    assert job["callback"]["delivered"] is False and int(job["callback"]["attempts"]) == 0
    assert "address" in job["callback"]["error"] or "resolve" in job["callback"]["error"]
    assert connections["opened"] == []


def test_dns_that_turns_private_after_the_api_check_is_refused_at_fetch_time(
    worker, aws, dns, connections, monkeypatch
):
    """The API checked media.example.com (public); by the time the worker fetches, it
    resolves to the metadata address. The job fails as unsafe_url; the failure callback
    reaches the (loopback) receiver; nothing else is contacted."""
    receiver = Receiver([200])
    connections["allow"].add(int(receiver.url.split(":")[2].split("/")[0]))
    try:
        job_id = "0123456789abcdef0123456789abcdef"
        aws["jobs"].put_item(Item={"id": job_id, "status": "queued", "clientId": "client-a"})
        message = {
            "jobId": job_id,
            "bucket": BUCKET,
            "key": f"uploads/{job_id}/a.wav",
            "url": "https://media.example.com/a.wav",
            "params": {"callbackURL": receiver.url},
        }
        monkeypatch.setitem(DNS, "media.example.com", ["169.254.169.254"])
        aws["sqs"].send_message(QueueUrl=aws["queue"], MessageBody=json.dumps(message))
        assert _run(worker, aws) == {"batchItemFailures": []}
        doc = result(aws["s3"], f"uploads/{job_id}/a.wav")
        assert doc["status"] == "failed" and doc["error"]["code"] == "unsafe_url"
        assert doc["error"]["field"] == "url"
        assert [json.loads(body) for _, body in receiver.requests] == [doc]
        assert all(address[0] == "127.0.0.1" for address in connections["opened"])
    finally:
        receiver.close()


def test_a_loopback_callback_is_refused_when_local_callbacks_are_off(worker, aws, dns, connections):
    from dataclasses import replace

    worker._runner.settings = replace(worker._runner.settings, allow_local_callbacks=False)
    aws["s3"].put_object(
        Bucket=BUCKET,
        Key="direct/b.wav",
        Body=wav_bytes(),
        Metadata={"callbackurl": "http://rebind.example.com:8080/hook"},
    )
    assert _run(worker, aws) == {"batchItemFailures": []}
    doc = result(aws["s3"], "direct/b.wav")
    job = aws["jobs"].get_item(Key={"id": doc["id"]})["Item"]
    assert job["callback"]["delivered"] is False and "loopback" in job["callback"]["error"]
    assert connections["opened"] == []
