"""Shared test plumbing: moto resources wired as template.yaml wires them, and a real
HTTP callback receiver on 127.0.0.1."""

from __future__ import annotations

import base64
import copy
import functools
import http.server
import json
import re
import threading
import time
import unicodedata
from pathlib import Path
from urllib.parse import urlsplit

from whisperless.cloud.context import ACCOUNT, REGION
from whisperless.local import lambda_host
from whisperless.local.lambda_host import LambdaContext, Routes, api_event, load_handler

# The one Lambda host (context, handler loader), re-exported for the tests.
__all__ = ["ACCOUNT", "REGION", "LambdaContext", "load_handler"]

ROOT = Path(__file__).resolve().parents[1]


def set_aws_env(monkeypatch) -> None:
    """Fake credentials for moto, no tracing, and no endpoint override leaking in from the shell."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "Whisperless",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


def wire_bucket_to_queue(
    s3, sqs, events, bucket: str, queue_name: str = "jobs", queue_attributes: dict[str, str] | None = None
) -> str:
    """Bucket -> EventBridge Object Created (our outputs excluded) and Object Deleted under speakers/
    -> SQS, as the template's rules; returns the queue URL."""
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}})
    queue = sqs.create_queue(QueueName=queue_name, Attributes=queue_attributes or {})["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for rule, name in (("AudioUploadedRule", "audio-uploaded"), ("SpeakerDeletedRule", "speaker-deleted")):
        pattern = copy.deepcopy(_template()["Resources"][rule]["Properties"]["EventPattern"])
        pattern["detail"]["bucket"]["name"] = [bucket]  # the template's !Ref AudioBucket
        events.put_rule(Name=name, EventPattern=json.dumps(pattern))
        events.put_targets(Rule=name, Targets=[{"Id": "queue", "Arn": queue_arn}])
    return queue


def wire_events_to_queue(
    events, sqs, bus: str, pattern: dict | None = None, name: str = "job-events", queue: str | None = None
) -> str:
    """An EventBridge rule on ``bus`` (default pattern: whisperless's events) -> ``queue`` (default: a
    new SQS queue); returns the queue's URL."""
    queue = queue or sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=name, EventBusName=bus, EventPattern=json.dumps(pattern or {"source": ["whisperless"]}))
    events.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": "queue", "Arn": queue_arn}])
    return queue


def drain_events(sqs, queue: str) -> list[dict]:
    """Every event the rule delivered so far (EventBridge envelopes), removing them from the queue."""
    out = []
    while messages := receive(sqs, queue):
        for message in messages:
            out.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    return out


def sqs_event(messages: list[dict], queue_arn: str = f"arn:aws:sqs:{REGION}:{ACCOUNT}:jobs") -> dict:
    """Lambda's SQS event for received messages (as the event source mapping builds it)."""
    return lambda_host.sqs_event(messages, queue_arn, REGION)


def receive(sqs, queue: str, wait: int = 0) -> list[dict]:
    return sqs.receive_message(
        QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=wait, AttributeNames=["All"]
    ).get("Messages", [])


def create_tables(dynamodb, tables: dict[str, str]) -> None:
    """{table name: hash key attribute}, all string keys, on-demand."""
    for table, key in tables.items():
        dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )


def create_voices_table(dynamodb, name: str = "voices") -> None:
    """The voices table exactly as template.yaml declares it."""
    props = _template()["Resources"]["VoicesTable"]["Properties"]
    dynamodb.create_table(TableName=name, **{k: props[k] for k in ("KeySchema", "AttributeDefinitions", "BillingMode")})


def create_jobs_table(dynamodb, name: str = "jobs") -> None:
    """The jobs table exactly as template.yaml declares it (keys and the per-client index)."""
    props = _template()["Resources"]["JobsTable"]["Properties"]
    dynamodb.create_table(
        TableName=name,
        **{k: props[k] for k in ("KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes", "BillingMode")},
    )


class Receiver:
    """A real HTTP callback receiver on 127.0.0.1: answers a scripted list of statuses
    (the last repeats), optionally after a delay; records every request it got. A GET is
    answered with ``content`` (a file server for URL jobs)."""

    def __init__(self, statuses=(200,), delay: float = 0.0, content: bytes = b""):
        self.statuses = list(statuses)
        self.delay = delay
        self.content = content
        self.requests: list[tuple[dict, bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                self._answer(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

            def do_GET(self):  # noqa: N802
                self._answer(b"")

            def _answer(self, body: bytes) -> None:
                with receiver.lock:
                    receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                if receiver.delay:
                    time.sleep(receiver.delay)
                content = receiver.content if self.command == "GET" and status == 200 else b""
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)
                except OSError:
                    pass  # the caller gave up (timeout)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# ------------------------------------------------------------------ API Gateway v2 events


@functools.cache
def _template() -> dict:
    from whisperless.local.cloudformation import load_source

    return load_source(ROOT / "template.yaml")


@functools.cache
def template_routes() -> Routes:
    """The HTTP API's routes as template.yaml declares them (after the SAM transform)."""
    from whisperless.local.cloudformation import api_routes, translate

    return Routes(api_routes(translate(_template())))


def to_event(prepared) -> dict:
    """An HTTP API (payload v2) event for a prepared ``requests`` request, as API Gateway builds it."""
    parts = urlsplit(prepared.url)
    headers = {name.lower(): value for name, value in prepared.headers.items()}
    headers.update(
        {
            "host": parts.netloc,
            "x-forwarded-proto": "https",
            "x-forwarded-port": "443",
            "x-forwarded-for": "198.51.100.23",
        }
    )
    body = prepared.body or b""
    if isinstance(body, str):
        body = body.encode("utf-8")
    return api_event(
        prepared.method,
        parts.path,
        query=parts.query,
        headers=headers,
        body=body,
        routes=template_routes(),
        domain=parts.netloc,
        source_ip="198.51.100.23",
    )


class Answer:
    def __init__(self, raw: dict):
        self.status = raw["statusCode"]
        self.headers = {k.lower(): v for k, v in (raw.get("headers") or {}).items()}
        body = raw.get("body") or ""
        if raw.get("isBase64Encoded"):
            body = base64.b64decode(body).decode()
        self.text = body
        media = self.headers.get("content-type", "application/json")
        self.json = json.loads(body) if body and "json" in media else None


# ------------------------------------------------------------------ personal data in made speech

#: A made call with a name, a phone number, a card number and an e-mail address (espeak-ng).
SPEECH_SAID = (
    "Hi, this is Maria Garcia. Call me back at five five five, one two one two. "
    "My card number is four one one one, one one one one, one one one one, one one one one. "
    "Send an email to garcia at gmail dot com, please."
)
#: What of it the models write, whatever else they get wrong (tiny.en falls back to sampling on
#: these voices, so its words vary from run to run: "Garcia"/"García", "gmail" as "email.com" or
#: "detail.com"); the tests first check that the unredacted result holds every one of them, so
#: they cannot pass vacuously.
SECRETS_SPEECH = ["Garcia", "1212", "1111", ".com"]
_TEXT_KEYS = ("text", "word")


def silence_wav(seconds: float) -> bytes:
    """``seconds`` of digital silence as a 16 kHz WAV file."""
    import numpy as np

    from whisperless.engine.audio import wav_bytes

    return wav_bytes(np.zeros(round(16000 * seconds), np.float32))


def made_speech(path: Path) -> Path:
    from bench.synth import say

    say(SPEECH_SAID, "en-us+m3", path, speed=150)
    return path


def _strings(value) -> list[str]:
    """The text a result carries: ``text``/``word`` values of a document (walked), or the lines of a
    rendering (SRT/VTT timing lines left out); a JSON string is parsed and walked."""
    if isinstance(value, dict):
        out = []
        for key, item in value.items():
            if isinstance(item, str):
                out += [item] if key in _TEXT_KEYS else []
            else:
                out += _strings(item)
        return out
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    if isinstance(value, (bytes, str)):
        text = value.decode() if isinstance(value, bytes) else value
        try:
            return _strings(json.loads(text))
        except ValueError:
            return [line for line in text.splitlines() if "-->" not in line and not line.strip().isdigit()]
    return []


_DIGIT_WORDS = dict(zip("zero one two three four five six seven eight nine".split(), "0123456789", strict=True))


def holds(text: str, secret: str) -> bool:
    """``secret`` in ``text`` (any case); a number also when its digits are split or spelled
    ("1-2-1-2", "one, two, one, two")."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))
    if secret.lower() in plain:
        return True
    spelled = re.sub(r"[a-z]+", lambda m: _DIGIT_WORDS.get(m.group(), " "), plain)
    return secret.isdigit() and secret in re.sub(r"\D", "", spelled)


def heard_secrets(unredacted, secrets=SECRETS_SPEECH, at_least: int = 2) -> list[str]:
    """The ``secrets`` the ASR wrote in an unredacted result: the ones whose absence elsewhere proves
    the redaction. tiny.en samples on these voices and now and then garbles one ("555 32" for
    "five five five, one two one two"); the name and ``at_least`` of them must be heard, so a
    test built on them cannot pass vacuously."""
    strings = _strings(unredacted)
    heard = [secret for secret in secrets if any(holds(s, secret) for s in strings)]
    assert secrets[0] in heard and len(heard) >= at_least, f"the ASR heard only {heard} in {strings}"
    return heard


def assert_no_secrets(value, secrets, present: bool = False) -> None:
    """None of ``secrets`` in a document, a rendering or a callback body (``present``: all of them)."""
    strings = _strings(value)
    for secret in secrets:
        found = [s for s in strings if holds(s, secret)]
        if present:
            assert found, f"{secret!r} is not in {strings}"
        else:
            assert not found, f"{secret!r} leaked: {found}"


def long_recording(path: Path) -> Path:
    """Two minutes of real speech in which the same people come back: pyannote's sample (two
    speakers), an AMI excerpt (one), the sample again, another AMI excerpt (two). As 16 kHz WAV."""
    import numpy as np

    from bench.diarization_quality import TESTS_DATA, read_wav, sample_item
    from whisperless.engine.audio import wav_bytes

    sample = read_wav(sample_item().wav)
    parts = [sample, read_wav(TESTS_DATA / "trn02.wav"), sample, read_wav(TESTS_DATA / "trn03.wav")]
    path.write_bytes(wav_bytes(np.concatenate(parts)))
    return path
