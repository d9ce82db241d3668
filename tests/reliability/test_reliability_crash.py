"""Workers that stop: the real plain worker (``python -m whisperless.cloud.worker``) as a
subprocess against moto in server mode, and ``whisperless serve``.

- killed with SIGKILL mid-job: the message comes back after the queue's (short) visibility
  timeout, a second worker completes the job exactly once (one result write: the bucket is
  versioned, so a second write would show as a second version; one callback; nothing in the DLQ);
- stopped with SIGTERM: it takes no more work, lets the running job finish within its grace
  period, or else interrupts it and hands its message straight back; exit status 0 either way;
- a job longer than the visibility timeout: the heartbeat keeps its message from a second worker;
- ``whisperless serve`` stopped with SIGTERM mid-job: exit 0, no abort from CTranslate2."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request

import boto3
import numpy as np
import pytest
from moto.server import ThreadedMotoServer
from reliability_common import (
    BUCKET,
    REGION,
    ROOT,
    SECRET,
    Receiver,
    create_resources,
    result,
    speech_clip,
    wait_for,
)
from standardwebhooks.webhooks import Webhook

pytestmark = pytest.mark.stack  # starts the local stack (or moto's server and a worker) as processes

VISIBILITY = 4  # seconds; template.yaml uses 5400

# The real worker, with a marker file touched when transcription starts, so the test
# kills it inside the engine rather than guessing when that is.
WORKER = """
import pathlib, sys
import whisperless.engine as engine
real = engine.Engine.process
def process(self, *args, **kwargs):
    pathlib.Path(sys.argv[1]).touch()
    return real(self, *args, **kwargs)
engine.Engine.process = process
from whisperless.cloud.worker import main
main()
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def moto_server(monkeypatch):
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request lines
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"))  # backends are global
    for name, value in {
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    yield endpoint
    server.stop()


class Workers:
    """Plain worker subprocesses on the moto server's resources, logging to files."""

    def __init__(self, endpoint: str, queues: dict, tmp_path, **env: str):
        self.env = {
            **os.environ,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": REGION,
            "QUEUE_URL": queues["queue"],
            "BUCKET_NAME": BUCKET,
            "JOBS_TABLE": "jobs",
            "IDEMPOTENCY_TABLE": "idempotency",
            "WEBHOOK_SECRET": SECRET,
            "ALLOW_LOCAL_CALLBACKS": "true",
            "WHISPERLESS_MODEL": "tiny.en",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.env.pop("WORKER_JOB_SECONDS", None)
        self.tmp_path = tmp_path
        self.marker = tmp_path / "transcribing"  # touched when a worker starts transcribing
        self.procs: list[subprocess.Popen] = []

    def start(self) -> subprocess.Popen:
        log = open(self.tmp_path / f"worker{len(self.procs)}.log", "w")
        proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(self.marker)],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def log(self, index: int) -> str:
        return (self.tmp_path / f"worker{index}.log").read_text()

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for index in range(len(self.procs)):
            sys.stderr.write(f"--- worker{index}.log\n{self.log(index)[-3000:]}")


@pytest.fixture
def resources(moto_server):
    clients = {
        name: boto3.client(name, endpoint_url=moto_server, region_name=REGION) for name in ("s3", "sqs", "events")
    }
    dynamodb = boto3.resource("dynamodb", endpoint_url=moto_server, region_name=REGION)

    def create(visibility: int) -> dict:
        queues = create_resources(clients["s3"], clients["sqs"], clients["events"], dynamodb, visibility=visibility)
        clients["s3"].put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        return {**clients, "jobs": dynamodb.Table("jobs"), "endpoint": moto_server, **queues}

    return create


def queue_counts(aws, queue: str = "queue") -> tuple[str, str]:
    attributes = aws["sqs"].get_queue_attributes(QueueUrl=aws[queue], AttributeNames=["All"])["Attributes"]
    return attributes["ApproximateNumberOfMessages"], attributes["ApproximateNumberOfMessagesNotVisible"]


def result_versions(aws, key: str) -> int:
    return len(aws["s3"].list_object_versions(Bucket=BUCKET, Prefix=key + ".json").get("Versions", []))


def test_a_worker_killed_mid_job_leaves_the_job_to_the_next_exactly_once(resources, sample_wav, tmp_path):
    aws = resources(VISIBILITY)
    s3, jobs = aws["s3"], aws["jobs"]
    receiver = Receiver([200])
    workers = Workers(aws["endpoint"], aws, tmp_path)
    try:
        # 30 s of real speech: long enough that the kill lands inside the engine.
        s3.put_object(
            Bucket=BUCKET,
            Key="crash/talk.wav",
            Body=speech_clip(sample_wav, 30.0),
            Metadata={"callbackurl": receiver.url},
        )
        first = workers.start()
        wait_for(workers.marker.exists, 90, what="the first worker to start transcribing")
        time.sleep(0.5)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        assert first.returncode == -signal.SIGKILL
        # Killed mid-job: no result, no callback, the job record says processing.
        assert result(s3, "crash/talk.wav") is None and receiver.requests == []
        (job,) = jobs.scan()["Items"]
        assert job["status"] == "processing" and int(job["attempts"]) == 1
        killed_at = time.monotonic()

        workers.start()
        doc = wait_for(lambda: result(s3, "crash/talk.wav"), 120, interval=0.25, what="the result")
        took = time.monotonic() - killed_at
        assert doc["status"] == "completed" and "hello" in doc["text"].lower()
        wait_for(lambda: receiver.requests, 30, what="the callback")
        wait_for(lambda: queue_counts(aws) == ("0", "0"), 30, what="the message to be deleted")
        time.sleep(VISIBILITY + 1)  # had the message not been deleted, it would be back by now
        assert queue_counts(aws) == ("0", "0")

        assert result_versions(aws, "crash/talk.wav") == 1  # one result write
        assert len(receiver.requests) == 1  # one callback
        headers, body = receiver.requests[0]
        assert Webhook(SECRET).verify(body, headers) == doc
        (job,) = jobs.scan()["Items"]
        assert job["status"] == "completed" and int(job["attempts"]) == 2
        assert aws["sqs"].receive_message(QueueUrl=aws["dlq"]).get("Messages", []) == []
        print(f"recovered {took:.1f} s after the kill (visibility timeout {VISIBILITY} s)")
    finally:
        workers.close()
        receiver.close()


@pytest.mark.parametrize("grace", [60.0, 0.5])
def test_sigterm_mid_job_finishes_it_or_hands_it_back_and_exits_0(resources, sample_wav, tmp_path, grace):
    """SIGTERM while transcribing 60 s of speech. With a grace period long enough, the job
    finishes (result, callback, message deleted) and then the worker exits. With a short one, the
    job is interrupted at the engine's next checkpoint: no result, its message visible again at
    once (the visibility timeout here is 5 minutes), and another worker completes it once."""
    aws = resources(300)
    receiver = Receiver([200])
    workers = Workers(aws["endpoint"], aws, tmp_path, STOP_GRACE_SECONDS=str(grace))
    try:
        aws["s3"].put_object(
            Bucket=BUCKET, Key="stop/talk.wav", Body=long_speech(sample_wav), Metadata={"callbackurl": receiver.url}
        )
        first = workers.start()
        wait_for(workers.marker.exists, 90, what="the worker to start transcribing")
        signalled = time.monotonic()
        first.send_signal(signal.SIGTERM)
        first.wait(120)
        took = time.monotonic() - signalled
        assert first.returncode == 0, workers.log(0)[-2000:]
        assert "terminate called" not in workers.log(0)
        if grace > 1:
            assert result(aws["s3"], "stop/talk.wav")["status"] == "completed"
            assert len(receiver.requests) == 1 and queue_counts(aws) == ("0", "0")
            print(f"SIGTERM: the running job finished, then the worker exited, {took:.1f} s after the signal")
            return
        assert result(aws["s3"], "stop/talk.wav") is None and receiver.requests == []
        assert queue_counts(aws) == ("1", "0")  # handed back: visible now, not in 5 minutes
        (job,) = aws["jobs"].scan()["Items"]
        assert job["status"] == "retrying" and job["lastError"]["code"] == "interrupted"
        print(f"SIGTERM: the job was interrupted and handed back; the worker exited {took:.1f} s after the signal")

        second = workers.start()
        doc = wait_for(lambda: result(aws["s3"], "stop/talk.wav"), 180, interval=0.25, what="the result")
        assert doc["status"] == "completed"
        wait_for(lambda: receiver.requests, 30, what="the callback")
        assert result_versions(aws, "stop/talk.wav") == 1 and len(receiver.requests) == 1
        second.send_signal(signal.SIGTERM)  # idle: it stops within its long poll
        second.wait(30)
        assert second.returncode == 0
    finally:
        workers.close()
        receiver.close()


def test_a_job_longer_than_the_visibility_timeout_is_not_redelivered_while_it_runs(resources, sample_wav, tmp_path):
    """Visibility timeout 2 s, a job of several seconds, two workers: the heartbeat keeps the
    message invisible, so the second worker never receives it (without it, it would, after 2 s,
    and meet the job "in progress")."""
    aws = resources(2)
    workers = Workers(aws["endpoint"], aws, tmp_path)
    try:
        aws["s3"].put_object(Bucket=BUCKET, Key="long/talk.wav", Body=long_speech(sample_wav))
        workers.start()
        wait_for(workers.marker.exists, 90, what="a worker to start transcribing")
        started = time.monotonic()
        workers.start()
        doc = wait_for(lambda: result(aws["s3"], "long/talk.wav"), 180, interval=0.25, what="the result")
        took = time.monotonic() - started
        assert doc["status"] == "completed" and took > 4  # well past the visibility timeout
        wait_for(lambda: queue_counts(aws) == ("0", "0"), 30, what="the message to be deleted")
        (job,) = aws["jobs"].scan()["Items"]
        assert int(job["attempts"]) == 1
        logs = workers.log(0) + workers.log(1)
        assert "failed on receive" not in logs and "in progress" not in logs.lower()
        print(f"a {took:.0f} s job under a 2 s visibility timeout, delivered once")
    finally:
        workers.close()


def test_serve_stopped_mid_job_exits_0_without_an_abort(sample_wav):
    """``whisperless serve`` with a job running: SIGTERM stops it within its grace period (here
    1 s, then the job is interrupted), exit status 0, and no "terminate called without an active
    exception" from CTranslate2 threads left running at exit."""
    import requests

    from localstack import running_stack

    hook = Receiver([200])
    with running_stack("--allow-local-callbacks", env={"STOP_GRACE_SECONDS": "1"}) as info:
        reply = requests.post(
            f"{info['api']}/v1/transcriptions",
            headers={"Authorization": f"Bearer {info['apiKey']}"},
            data={"callbackURL": hook.url},  # answers at once
            files={"file": ("long.wav", long_speech(sample_wav))},
            timeout=60,
        )
        assert reply.status_code == 202, reply.text
        status_url = f"{info['api']}{reply.json()['statusUrl']}"
        wait_for(
            lambda: (
                requests.get(status_url, headers={"Authorization": f"Bearer {info['apiKey']}"}, timeout=10)
                .json()
                .get("status")
                == "processing"
            ),
            90,
            interval=0.2,
            what="the job to be running",
        )
        proc = info["process"]
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(90)
        took = time.monotonic() - signalled
        stderr = proc.stderr.read()
        assert proc.returncode == 0, stderr[-2000:]
        assert "terminate called" not in stderr and "Traceback" not in stderr, stderr[-2000:]
        assert hook.requests == []  # interrupted: never finished, so never called back
        print(f"serve: exit 0, {took:.1f} s after SIGTERM with a job running")
    hook.close()


def long_speech(sample_wav) -> bytes:
    """60 s of real speech (the 30 s sample twice), as a 16 kHz mono WAV."""
    from reliability_common import wav_bytes

    from whisperless.engine.audio import decode_audio

    audio = decode_audio(sample_wav)
    data = (np.clip(np.concatenate([audio, audio]), -1, 1) * 32767).astype("<i2").tobytes()
    return wav_bytes(data=data)
