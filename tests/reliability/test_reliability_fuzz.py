"""Property-based fuzzing of everything a stranger (the API) or a misconfigured source
(events) can hand us, through the real handlers against moto.

API: multipart and JSON bodies, odd content types and headers, odd paths -> never a 5xx,
always a JSON answer; every refusal is a 4xx with an error code and message.
Events: S3 notifications, EventBridge events, SQS-wrapped anything and job messages ->
never a crash; garbage is skipped with a logged reason and never handed back to the queue
for redelivery (a message that can never succeed must not spin until the DLQ).
(tests/test_event_parsing.py fuzzes events.jobs_from_payload itself.)"""

from __future__ import annotations

import json
import math
import os
import uuid

import boto3
import pytest
import requests
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from moto import mock_aws
from reliability_common import (
    API_BASE,
    BUCKET,
    KEY_A,
    KEY_OFF,
    REGION,
    Answer,
    LambdaContext,
    create_resources,
    load_handler,
    set_aws_env,
    sqs_event,
    to_event,
)

from whisperless.cloud import apikeys, netguard

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")
# More examples for a deeper search: WHISPERLESS_FUZZ_EXAMPLES=5000 scripts/test tests/test_reliability_fuzz.py
FUZZ = settings(
    max_examples=int(os.environ.get("WHISPERLESS_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
API_STATUSES = {200, 201, 202, 400, 401, 403, 404, 405, 413, 415, 422}


@pytest.fixture(scope="module")
def moto_env():
    mp = pytest.MonkeyPatch()
    set_aws_env(mp)

    def no_dns(host, port):  # nothing here may reach the network
        if host.endswith("example.com"):
            return ["93.184.216.34"]
        raise OSError(f"no DNS in tests for {host}")

    mp.setattr(netguard, "resolver", no_dns)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        dynamodb = boto3.resource("dynamodb", region_name=REGION)
        queues = create_resources(s3, sqs, boto3.client("events", region_name=REGION), dynamodb)
        yield {"s3": s3, "sqs": sqs, "dynamodb": dynamodb, **queues}
    mp.undo()


# ------------------------------------------------------------------ the API


@pytest.fixture(scope="module")
def api_app(moto_env):
    from whisperless.cloud.api import Api
    from whisperless.config import Settings

    module = load_handler("api", "reliability_fuzz_api_app")
    keys = moto_env["dynamodb"].Table("apikeys")
    apikeys.add_key(keys, KEY_A, "client-a")
    apikeys.add_key(keys, KEY_OFF, "client-off", enabled=False)
    module._service = Api(
        Settings(
            bucket=BUCKET,
            jobs_table="jobs",
            api_keys_table="apikeys",
            queue_url=moto_env["queue"],
            result_wait_seconds=0,
            max_audio_bytes=64 * 1024,
        ),
        s3=moto_env["s3"],
        dynamodb=moto_env["dynamodb"],
        sqs=moto_env["sqs"],
        sleep=lambda seconds: None,
    )
    return module


def check_answer(raw: dict) -> Answer:
    assert raw["statusCode"] in API_STATUSES, raw
    answer = Answer(raw)
    if answer.status >= 400 and answer.status != 422:
        error = answer.json["error"]
        assert error["code"] and error["message"]
    return answer


def send(app, method: str, path: str, *, headers: dict | None = None, override: dict | None = None, **kwargs) -> Answer:
    prepared = requests.Request(method, API_BASE + path, headers=headers or {}, **kwargs).prepare()
    event = to_event(prepared)
    event["headers"].update({k.lower(): v for k, v in (override or {}).items()})
    return check_answer(app.handler(event, LambdaContext("ApiFunction", 29)))


CONTRACT = [
    "fileType",
    "diarization",
    "numSpeakers",
    "minSpeakers",
    "maxSpeakers",
    "callbackURL",
    "initialPrompt",
    "language",
    "task",
    "url",
    "file",
    "filename",
]
names = st.sampled_from(CONTRACT) | st.sampled_from([n.lower() for n in CONTRACT]) | st.text(max_size=12)
texts = st.text(max_size=40) | st.sampled_from(
    [
        "",
        " ",
        "true",
        "FALSE",
        "0",
        "1",
        "21",
        "-1",
        "two",
        "en",
        "xx",
        "translate",
        "summarize",
        "https://media.example.com/a.mp3",
        "http://10.0.0.1/",
        "http://[::1]/",
        "file:///etc/passwd",
        "x" * 3000,
        "Zürich\nGrüezi",
        "\x00",
        "=?UTF-8?B?w7w=?=",
    ]
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**45), max_value=10**45)
    | st.floats(allow_nan=True, allow_infinity=True)
    | texts
)
json_values = st.recursive(
    json_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(texts, c, max_size=3), max_leaves=12
)
filenames = (
    st.none()
    | st.text(max_size=30)
    | st.sampled_from(
        ["a.wav", "../../etc/passwd", "C:\\x\\y.mp3", "a.wav.json", "...", "été 50%.m4a", "a" * 300 + ".wav"]
    )
)
content_types = st.sampled_from(
    [
        "multipart/form-data",
        "multipart/form-data; boundary=",
        'multipart/form-data; boundary=""',
        "multipart/form-data; boundary=x; boundary=y",
        "multipart/mixed; boundary=abc",
        "application/json",
        "application/json; charset=latin-1",
        "APPLICATION/JSON",
        "application/x-www-form-urlencoded",
        "text/plain",
        "audio/wav",
        "",
        ";",
        "multipart/form-data; boundary=é",
        "application/json;;;",
    ]
) | st.text(max_size=40)
auth = st.sampled_from(
    [
        f"Bearer {KEY_A}",
        f"bearer   {KEY_A}  ",
        f"Bearer {KEY_OFF}",
        "Bearer",
        "Bearer ",
        "Basic YTpi",
        f"Bearer {KEY_A}x",
        "",
        "Bearer \u00e9\u00e9",
    ]
) | st.text(max_size=30)


@FUZZ
@given(
    fields=st.dictionaries(names, texts, max_size=6),
    filename=filenames,
    data=st.binary(max_size=2048),
    with_file=st.booleans(),
    part_type=st.none() | st.sampled_from(["audio/wav", "text/plain", "x/y", "audio/mpeg"]),
)
def test_fuzzed_multipart_requests_never_fail_on_our_side(api_app, fields, filename, data, with_file, part_type):
    files = {"file": (filename, data, part_type) if part_type else (filename, data)} if with_file else None
    answer = send(
        api_app, "POST", "/v1/transcriptions", headers={"Authorization": f"Bearer {KEY_A}"}, data=fields, files=files
    )
    if answer.status == 202:
        assert answer.json["statusUrl"].endswith(answer.json["id"])


@FUZZ
@given(
    body=json_values | st.dictionaries(names, json_values, max_size=6),
    route=st.sampled_from(["/v1/transcriptions", "/v1/uploads"]),
)
@example(body={"url": "https://media.example.com/a.mp3", "initialPrompt": math.nan}, route="/v1/transcriptions")
@example(body={"url": "https://media.example.com/a.mp3", "numSpeakers": math.inf}, route="/v1/transcriptions")
@example(body={"filename": "a.wav", "initialPrompt": -math.inf}, route="/v1/uploads")
@example(body={"url": "https://media.example.com/a.mp3", "language": 1e400}, route="/v1/transcriptions")
def test_fuzzed_json_requests_never_fail_on_our_side(api_app, body, route):
    raw = json.dumps(body, allow_nan=True).encode()
    send(
        api_app,
        "POST",
        route,
        headers={"Authorization": f"Bearer {KEY_A}", "Content-Type": "application/json"},
        data=raw,
    )


@FUZZ
@given(
    body=st.binary(max_size=512) | texts.map(str.encode),
    content_type=content_types,
    authorization=auth,
    extra=st.dictionaries(
        st.sampled_from(
            [
                "content-encoding",
                "transfer-encoding",
                "accept-encoding",
                "origin",
                "content-length",
                "x-forwarded-for",
                "cookie",
            ]
        ),
        texts,
        max_size=3,
    ),
    route=st.sampled_from(
        [
            ("POST", "/v1/transcriptions"),
            ("POST", "/v1/uploads"),
            ("GET", "/v1/transcriptions/abc"),
            ("GET", "/v1/openapi.json"),
        ]
    ),
)
def test_fuzzed_bodies_and_headers_never_fail_on_our_side(api_app, body, content_type, authorization, extra, route):
    method, path = route
    send(
        api_app,
        method,
        path,
        data=body if method == "POST" else None,
        override={"content-type": content_type, "authorization": authorization, **extra},
    )


@FUZZ
@given(
    job_id=st.text(max_size=60) | st.sampled_from(["", "..", "%00", "a" * 200, uuid.uuid4().hex]),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
)
def test_fuzzed_paths_never_fail_on_our_side(api_app, job_id, method):
    from urllib.parse import quote

    answer = send(
        api_app, method, "/v1/transcriptions/" + quote(job_id, safe=""), headers={"Authorization": f"Bearer {KEY_A}"}
    )
    assert answer.status in (200, 404, 405)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,  # nesting deeper than the JSON parser's recursion limit
        b'{"url": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        b'{"numSpeakers": ' + b"9" * 5000 + b"}",  # an integer longer than Python converts by default
        b"\xff\xfe{}",  # not UTF-8
        b'{"url": "https://media.example.com/a.mp3"}' * 2,
    ],
)
def test_pathological_json_is_a_400(api_app, body):
    answer = send(
        api_app,
        "POST",
        "/v1/transcriptions",
        headers={"Authorization": f"Bearer {KEY_A}", "Content-Type": "application/json"},
        data=body,
    )
    assert answer.status == 400 and answer.json["error"]["field"] == "body"


@pytest.mark.parametrize(
    "fields",
    [
        {"url": "https://media.example.com/a.mp3", "initialPrompt": math.nan},
        {"url": "https://media.example.com/a.mp3", "numSpeakers": math.inf},
        {"url": "https://media.example.com/a.mp3", "initialPrompt": -math.inf, "diarization": True},
        {"url": "https://media.example.com/a.mp3", "initialPrompt": 10**40},
        {"url": "https://media.example.com/a.mp3", "initialPrompt": 1e200},
    ],
)
def test_numbers_a_job_record_cannot_hold_are_a_400_naming_the_field(api_app, fields):
    raw = json.dumps(fields, allow_nan=True).encode()
    answer = send(
        api_app,
        "POST",
        "/v1/transcriptions",
        headers={"Authorization": f"Bearer {KEY_A}", "Content-Type": "application/json"},
        data=raw,
    )
    assert answer.status == 400
    assert answer.json["error"]["field"] in ("initialPrompt", "numSpeakers")


def test_deeply_nested_multipart_never_fails_on_our_side(api_app):
    body = b"x"
    for depth in range(3000, 0, -1):
        body = (
            (
                f'--b{depth}\r\nContent-Disposition: form-data; name="language"\r\n'
                f"Content-Type: multipart/mixed; boundary=b{depth + 1}\r\n\r\n"
            ).encode()
            + body
            + f"\r\n--b{depth}--\r\n".encode()
        )
    answer = send(
        api_app,
        "POST",
        "/v1/transcriptions",
        headers={"Authorization": f"Bearer {KEY_A}"},
        override={"content-type": "multipart/form-data; boundary=b1"},
        data=body,
    )
    assert answer.status == 400


# ------------------------------------------------------------------ events


class NoEngine:
    """No fuzzed event may reach transcription: the bucket holds no audio."""

    whisper_model = "none"

    def process(self, *args, **kwargs):
        raise AssertionError("a fuzzed event reached the engine")


@pytest.fixture(scope="module")
def transcriber_app(moto_env):
    from whisperless.cloud.runner import JobRunner
    from whisperless.config import Settings

    module = load_handler("transcriber", "reliability_fuzz_transcriber_app")
    settings = Settings(
        bucket=BUCKET,
        jobs_table="jobs",
        idempotency_table="idempotency",
        webhook_secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    )
    module._runner = JobRunner(
        s3=moto_env["s3"],
        dynamodb=moto_env["dynamodb"],
        settings=settings,
        engine=NoEngine(),
        metrics=module.metrics,
        callback_sleep=lambda s: None,
    )
    yield module
    module._runner = None


ev_text = st.text(max_size=30)
ev_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | ev_text
anything = st.recursive(
    ev_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(ev_text, c, max_size=3), max_leaves=10
)
keys = ev_text | st.sampled_from(
    [
        "a.wav",
        "my+talk+%281%29.mp3",
        "calls/x y.flac",
        "a.wav.json",
        "dir/",
        "noext",
        "%",
        "%ZZ.wav",
        "a" * 1100 + ".wav",
        "../../a.wav",
        "\u0000.wav",
        "é.MP3",
    ]
)
buckets = (
    st.sampled_from([BUCKET, "other-bucket", "Bad_Bucket!", "", "a" * 70, "xn--bcher-kva", "arn:aws:s3:::x", "a/b"])
    | ev_text
)
maybe = anything | st.just(None)
s3_object = st.fixed_dictionaries(
    {"key": keys | anything},
    optional={
        "eTag": maybe | st.just('"abc"'),
        "size": maybe,
        "versionId": maybe | st.just("null"),
        "sequencer": maybe,
    },
)
s3_record = st.fixed_dictionaries(
    {
        "s3": st.fixed_dictionaries(
            {"bucket": st.fixed_dictionaries({"name": buckets | anything}), "object": s3_object | anything}
        )
    },
    optional={
        "eventName": st.sampled_from(["ObjectCreated:Put", "ObjectRemoved:Delete"]) | anything,
        "eventSource": st.just("aws:s3") | anything,
    },
)
s3_event = st.fixed_dictionaries({"Records": st.lists(s3_record | anything, max_size=3)})
eb_object = st.fixed_dictionaries(
    {"key": keys | anything}, optional={"etag": maybe, "eTag": maybe, "version-id": maybe, "size": maybe}
)
eb_event = st.fixed_dictionaries(
    {
        "detail-type": st.sampled_from(["Object Created", "Object Deleted"]) | anything,
        "detail": st.fixed_dictionaries(
            {"bucket": st.fixed_dictionaries({"name": buckets | anything}), "object": eb_object | anything}
        )
        | anything,
    },
    optional={"source": st.just("aws.s3"), "version": st.just("0")},
)
job_message = st.fixed_dictionaries(
    {
        "jobId": ev_text | anything,
        "bucket": buckets | anything,
        "key": keys | anything,
        # Only URLs refused before any connection: a public one would really be fetched.
        "url": st.sampled_from(
            [
                "http://10.0.0.1/a.wav",
                "ftp://x/a.mp3",
                "https://nowhere.invalid/a.wav",
                "http://169.254.169.254/latest/meta-data/",
            ]
        )
        | anything,
    },
    optional={"params": anything | st.dictionaries(st.sampled_from(["language", "task", "numSpeakers"]), ev_text)},
)
payloads = s3_event | eb_event | job_message | anything | st.just({"Event": "s3:TestEvent"})
bodies = payloads.map(json.dumps) | st.text(max_size=80) | st.sampled_from(["", "{", "null", "[]", "{}"])


@pytest.fixture(scope="module")
def no_network():
    """The only thing a fuzzed job may fetch is a public example URL: refuse to connect at all."""
    mp = pytest.MonkeyPatch()

    def refuse(*args, **kwargs):
        raise AssertionError(f"a fuzzed event opened a connection: {args!r}")

    import urllib3

    mp.setattr(urllib3.HTTPConnectionPool, "urlopen", refuse)
    yield
    mp.undo()


@FUZZ
@given(batch=st.lists(bodies, min_size=1, max_size=3))
def test_fuzzed_sqs_messages_are_done_or_skipped_never_redelivered(transcriber_app, no_network, batch):
    messages = [{"MessageId": str(uuid.uuid4()), "ReceiptHandle": "rh", "Body": body} for body in batch]
    reply = transcriber_app.handler(sqs_event(messages), LambdaContext())
    assert reply == {"batchItemFailures": []}


@FUZZ
@given(event=s3_event | eb_event | anything.filter(lambda v: isinstance(v, dict)))
def test_fuzzed_direct_events_never_crash(transcriber_app, no_network, event):
    if (
        isinstance(event.get("Records"), list)
        and event["Records"]
        and isinstance(event["Records"][0], dict)
        and event["Records"][0].get("eventSource") == "aws:sqs"
    ):
        return  # that is the SQS shape, fuzzed above
    reply = transcriber_app.handler(event, LambdaContext())
    assert isinstance(reply, dict)
    for job in reply.get("results", []):
        assert job["status"] in ("skipped", "completed", "failed")
