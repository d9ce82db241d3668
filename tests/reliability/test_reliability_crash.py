"""A worker killed with SIGKILL in the middle of a job: the real plain worker
(``python -m whisperless.cloud.worker``) as a subprocess against moto in server mode.

The job's message comes back after the queue's (short) visibility timeout, a second
worker picks it up and the job completes exactly once: one result write (the bucket is
versioned, so a second write would show as a second version), one callback, nothing in
the dead-letter queue."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import boto3
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
    for name, value in {
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    yield endpoint
    server.stop()


def test_a_worker_killed_mid_job_leaves_the_job_to_the_next_exactly_once(moto_server, sample_wav, tmp_path):
    clients = {
        name: boto3.client(name, endpoint_url=moto_server, region_name=REGION) for name in ("s3", "sqs", "events")
    }
    dynamodb = boto3.resource("dynamodb", endpoint_url=moto_server, region_name=REGION)
    queues = create_resources(clients["s3"], clients["sqs"], clients["events"], dynamodb, visibility=VISIBILITY)
    s3, sqs, jobs = clients["s3"], clients["sqs"], dynamodb.Table("jobs")
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})

    receiver = Receiver([200])
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": moto_server,
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
    }
    env.pop("WORKER_JOB_SECONDS", None)
    marker = tmp_path / "transcribing"
    workers: list[subprocess.Popen] = []

    def start_worker() -> subprocess.Popen:
        log = open(tmp_path / f"worker{len(workers)}.log", "w")
        proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(marker)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        workers.append(proc)
        return proc

    try:
        # 30 s of real speech: long enough that the kill lands inside the engine.
        s3.put_object(
            Bucket=BUCKET,
            Key="crash/talk.wav",
            Body=speech_clip(sample_wav, 30.0),
            Metadata={"callbackurl": receiver.url},
        )
        first = start_worker()
        wait_for(marker.exists, 90, what="the first worker to start transcribing")
        time.sleep(0.5)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        assert first.returncode == -signal.SIGKILL
        # Killed mid-job: no result, no callback, the job record says processing.
        assert result(s3, "crash/talk.wav") is None and receiver.requests == []
        (job,) = jobs.scan()["Items"]
        assert job["status"] == "processing" and int(job["attempts"]) == 1
        killed_at = time.monotonic()

        start_worker()
        doc = wait_for(lambda: result(s3, "crash/talk.wav"), 120, interval=0.25, what="the result")
        took = time.monotonic() - killed_at
        assert doc["status"] == "completed" and "hello" in doc["text"].lower()
        wait_for(lambda: receiver.requests, 30, what="the callback")

        def drained():
            attributes = sqs.get_queue_attributes(QueueUrl=queues["queue"], AttributeNames=["All"])["Attributes"]
            return (
                attributes["ApproximateNumberOfMessages"] == attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
            )

        wait_for(drained, 30, what="the message to be deleted")
        time.sleep(VISIBILITY + 1)  # had the message not been deleted, it would be back by now
        assert drained()

        versions = s3.list_object_versions(Bucket=BUCKET, Prefix="crash/talk.wav.json").get("Versions", [])
        assert len(versions) == 1  # one result write
        assert len(receiver.requests) == 1  # one callback
        headers, body = receiver.requests[0]
        assert Webhook(SECRET).verify(body, headers) == doc
        (job,) = jobs.scan()["Items"]
        assert job["status"] == "completed" and int(job["attempts"]) == 2
        assert sqs.receive_message(QueueUrl=queues["dlq"]).get("Messages", []) == []
        print(f"recovered {took:.1f} s after the kill (visibility timeout {VISIBILITY} s)")
    finally:
        for proc in workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        receiver.close()
        for log in sorted(tmp_path.glob("worker*.log")):
            sys.stderr.write(f"--- {log.name}\n{log.read_text()[-3000:]}")
