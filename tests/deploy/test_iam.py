"""Least privilege, enforced: whole jobs run with exactly the permissions template.yaml gives each
function, and what a function must not do is refused.

Every function here runs as its own process with its role's credentials (conftest), against moto
with IAM enforced on the real resource ARNs (S3 objects and buckets, queues, tables, secrets,
event buses); ``no_denials`` reads moto's audit of every decision, so an AccessDenied fails the
test even where the code under test catches it. What moto cannot judge is listed in README
(Deploying: what could still differ on AWS).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.exceptions import ClientError
from standardwebhooks.webhooks import Webhook

from deploy_common import function_tmp, run_sandboxed, wait_for_object
from support import Receiver
from whisperless.cloud.context import REGION
from whisperless.local.cloudformation import api_routes

ROOT = Path(__file__).resolve().parents[2]


def _called(account, role: str, since: int) -> set[str]:
    return {r["action"] for r in account.calls(role, since) if r["allowed"]}


def test_upload_to_result_record_and_callback(transcriber, account, hello_wav, no_denials):
    receiver = Receiver()
    mark = account.moto.mark()
    try:
        _, document = transcriber.job("calls/hello.wav", hello_wav, {"callbackurl": receiver.url, "language": "en"})
    finally:
        receiver.close()
    assert document["status"] == "completed" and "hello" in document["text"].lower()
    record = account.client("dynamodb").get_item(
        TableName=account.cpu.physical["JobsTable"], Key={"id": {"S": document["id"]}}
    )["Item"]
    assert record["status"]["S"] == "completed"
    assert record["callback"]["M"]["delivered"]["BOOL"] is True
    ((headers, body),) = receiver.requests
    assert Webhook(account.webhook_secret).verify(body, headers)["id"] == document["id"]
    # The job went through IAM: the role read the audio, wrote the result, kept the job record and
    # the idempotency record, read the signing secret; the event source mapping used the queue.
    assert {
        "s3:GetObject",
        "s3:PutObject",
        "dynamodb:UpdateItem",
        "dynamodb:PutItem",
        "secretsmanager:GetSecretValue",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
    } <= _called(account, "TranscriberFunctionRole", mark)


def test_url_job_through_the_api(api, transcriber, account, hello_wav, no_denials):
    server = Receiver(content=hello_wav)
    mark = account.moto.mark()
    try:
        answer = api.request("POST", "/v1/transcriptions", key=account.api_key, json_body={"url": server.url + ".wav"})
        assert answer.status in (200, 202), answer.json
        job_id = answer.json["id"]
        if answer.status == 202:  # the wait ran out (slow machine): the status resource has it later
            deadline = time.monotonic() + 240
            while answer.json.get("status") not in ("completed", "failed") and time.monotonic() < deadline:
                transcriber.check()
                time.sleep(1)
                answer = api.request("GET", f"/v1/transcriptions/{job_id}", key=account.api_key)
    finally:
        server.close()
    assert answer.json["status"] == "completed", answer.json
    assert {"dynamodb:GetItem", "dynamodb:PutItem", "sqs:SendMessage", "s3:GetObject", "s3:ListBucket"} <= _called(
        account, "ApiFunctionRole", mark
    ), "the API waited for the result (a missing key reads as 404 only with s3:ListBucket)"
    assert "s3:PutObject" in _called(account, "TranscriberFunctionRole", mark)  # the download, into the bucket


def test_every_api_route(api, transcriber, account, hello_wav, translated, no_denials):
    key = account.api_key
    exercised: set[str] = set()

    def call(method, path, **kwargs):
        answer = api.request(method, path, key=key, **kwargs)
        assert answer.status < 500, (method, path, answer.json)
        exercised.add(answer.route)
        return answer

    created = call("POST", "/v1/transcriptions", files={"file": ("hello.wav", hello_wav, "audio/wav")})
    job_id = created.json["id"]
    status = call("GET", f"/v1/transcriptions/{job_id}")
    assert status.status == 200 and status.json["id"] == job_id
    upload = call("POST", "/v1/uploads", json_body={"filename": "big.wav", "language": "en"})
    assert upload.status == 201, upload.json
    call("GET", "/v1/openapi.json")
    assert api.request("GET", "/v1/transcriptions/x", key="wl_not-a-key").status == 401

    # The presigned PUT is signed with the function's own credentials, so on AWS it succeeds only
    # if the API role may put that object. moto cannot check a presigned request under IAM, so the
    # same PUT is made with the role's credentials directly.
    url = urlsplit(upload.json["uploadUrl"])
    query = parse_qs(url.query)
    assert query["X-Amz-Credential"][0].split("/")[0] == account.credentials["ApiFunctionRole"]["AccessKeyId"]
    assert query["X-Amz-Security-Token"][0] == account.credentials["ApiFunctionRole"]["SessionToken"]
    bucket, object_key = url.hostname.split(".")[0], url.path.lstrip("/")
    metadata = {name[len("x-amz-meta-") :]: value for name, value in upload.json["headers"].items()}
    account.client("s3", "ApiFunctionRole").put_object(Bucket=bucket, Key=object_key, Body=hello_wav, Metadata=metadata)
    wait_for_object(transcriber.s3, bucket, object_key + ".json", check=transcriber.check)
    done = call("GET", f"/v1/transcriptions/{upload.json['id']}")
    assert done.json["status"] == "completed", done.json
    srt = call("GET", f"/v1/transcriptions/{upload.json['id']}?format=srt")
    assert srt.status == 200 and "-->" in srt.text
    listed = call("GET", "/v1/transcriptions")
    assert upload.json["id"] in {item["id"] for item in listed.json["transcriptions"]}
    # OpenAI's routes: the same job path, answered in OpenAI's shapes (a slow machine may run out
    # of the wait budget: 413 with the job, never a 5xx).
    wav = {"file": ("hello.wav", hello_wav, "audio/wav")}
    said = call("POST", "/v1/audio/transcriptions", files=wav, data={"model": "whisper-1"})
    assert said.status == 413 or "hello" in said.json["text"].lower(), said.json
    call("POST", "/v1/audio/translations", files=wav, data={"model": "whisper-1"})
    assert call("GET", "/v1/health").status == 200
    # Deleting a finished job removes its audio and result, under the API's own role.
    gone = call("DELETE", f"/v1/transcriptions/{upload.json['id']}")
    assert gone.status == 200, gone.json
    listing = account.client("s3").list_objects_v2(Bucket=bucket, Prefix=object_key)
    assert listing.get("KeyCount", 0) == 0, listing.get("Contents")

    # Speakers by name: the API stores the clip and queues it; the transcriber (its own role) makes
    # it a voice, deletes the clip; a job asking for it queries the voices under the transcriber's
    # role; the API lists and forgets it. A slow machine may answer 202 (still enrolling).
    clip = {
        "file": ("fiona.wav", (ROOT / "tests" / "data" / "speakers" / "trn06-fee083.wav").read_bytes(), "audio/wav")
    }
    enrolled = call("POST", "/v1/speakers", files=clip, data={"name": "Fiona"})
    assert enrolled.status in (201, 202), enrolled.json
    if enrolled.status == 202:
        wait_for_voice = time.monotonic() + 120
        while "Fiona" not in {v["name"] for v in call("GET", "/v1/speakers").json["speakers"]}:
            assert time.monotonic() < wait_for_voice, "the voice was not enrolled"
            time.sleep(1)
    assert [v["name"] for v in call("GET", "/v1/speakers").json["speakers"]] == ["Fiona"]
    named = call(
        "POST",
        "/v1/transcriptions",
        files={"file": ("hello.wav", hello_wav, "audio/wav")},
        data={"diarization": "true", "knownSpeakers": "Fiona", "language": "en"},
    )
    document = wait_for_object(transcriber.s3, bucket, f"uploads/{named.json['id']}/hello.wav.json")
    assert document["status"] == "completed" and "speakers" in document, document
    assert call("DELETE", "/v1/speakers/Fiona").status == 200

    # Every route the template declares was called (a route added later must be added here).
    assert exercised == {f"{method} {path}" for method, path in api_routes(translated)}


def test_plain_worker_under_the_gpu_role(account, gpu_image, artifacts_dir, lambda_fs, hello_wav, no_denials):
    """``docker run --entrypoint python whisperless:gpu -m whisperless.cloud.worker`` with the GPU
    function's environment, the job queue and the GPU role: its queue calls are the role's."""
    gpu = account.gpu
    tmp = function_tmp(artifacts_dir, "worker")
    env = {
        **gpu_image.environment(None if lambda_fs else tmp),
        **gpu.environments["GpuTranscriberFunction"],
        **account.role_environment("GpuTranscriberRole"),
        "QUEUE_URL": gpu.physical["JobQueue"],
        "AWS_ENDPOINT_URL": account.moto.endpoint,
        # What an operator sets for the worker (Lambda sets both itself; botocore reads the second).
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "ALLOW_LOCAL_CALLBACKS": "true",
    }
    mark = account.moto.mark()
    log = (artifacts_dir / "worker.log").open("wb")
    worker = run_sandboxed(
        [str(gpu_image.python), "-m", "whisperless.cloud.worker"],
        tmp,
        lambda_fs,
        cwd=gpu_image.task_root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    s3 = account.client("s3")
    bucket = gpu.physical["AudioBucket"]
    try:
        s3.put_object(Bucket=bucket, Key="gpu/hello.wav", Body=hello_wav, Metadata={"language": "en"})

        def alive():
            if worker.poll() is not None:
                raise AssertionError((artifacts_dir / "worker.log").read_text()[-4000:])

        document = wait_for_object(s3, bucket, "gpu/hello.wav.json", check=alive)
        deadline = time.monotonic() + 30  # the message is deleted after the result is written
        while "sqs:DeleteMessage" not in _called(account, "GpuTranscriberRole", mark) and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        log.close()
    assert document["status"] == "completed"
    assert {"sqs:GetQueueAttributes", "sqs:ReceiveMessage", "sqs:DeleteMessage"} <= _called(
        account, "GpuTranscriberRole", mark
    )


# --------------------------------------------------------------------------- what must be refused


REFUSED = [
    # The API signs nothing and reads no secret; it cannot mint keys, consume jobs, or delete
    # outside its bucket (it deletes a finished job's audio and results: DELETE /v1/transcriptions/{id}).
    (
        "ApiFunctionRole",
        "secretsmanager:GetSecretValue",
        lambda a, c: c("secretsmanager").get_secret_value(SecretId=a.webhook_secret_arn),
    ),
    (
        "ApiFunctionRole",
        "dynamodb:PutItem",
        lambda a, c: c("dynamodb").put_item(
            TableName=a.cpu.physical["ApiKeysTable"], Item={"keyHash": {"S": "x"}, "clientId": {"S": "x"}}
        ),
    ),
    (
        "ApiFunctionRole",
        "sqs:ReceiveMessage",
        lambda a, c: c("sqs").receive_message(QueueUrl=a.cpu.physical["JobQueue"], WaitTimeSeconds=0),
    ),
    ("ApiFunctionRole", "s3:GetObject", lambda a, c: c("s3").get_object(Bucket=a.other_bucket, Key="private.txt")),
    (
        "ApiFunctionRole",
        "s3:DeleteObject",
        lambda a, c: c("s3").delete_object(Bucket=a.other_bucket, Key="private.txt"),
    ),
    # The transcriber reads its one secret, writes only its bucket, and never sees API keys.
    (
        "TranscriberFunctionRole",
        "secretsmanager:GetSecretValue",
        lambda a, c: c("secretsmanager").get_secret_value(SecretId=a.neighbour_secret_arn),
    ),
    (
        "TranscriberFunctionRole",
        "s3:PutObject",
        lambda a, c: c("s3").put_object(Bucket=a.other_bucket, Key="x.json", Body=b"{}"),
    ),
    (
        "TranscriberFunctionRole",
        "s3:DeleteObject",
        lambda a, c: c("s3").delete_object(Bucket=a.cpu.physical["AudioBucket"], Key="calls/hello.wav"),
    ),
    (
        "TranscriberFunctionRole",
        "dynamodb:GetItem",
        lambda a, c: c("dynamodb").get_item(TableName=a.cpu.physical["ApiKeysTable"], Key={"keyHash": {"S": "x"}}),
    ),
    (
        "TranscriberFunctionRole",
        "dynamodb:PutItem",
        lambda a, c: c("dynamodb").put_item(TableName=a.gpu.physical["JobsTable"], Item={"id": {"S": "x"}}),
    ),
    # The transcriber queues long jobs' chunk and merge tasks on its job queue, and nowhere else.
    (
        "TranscriberFunctionRole",
        "sqs:SendMessage",
        lambda a, c: c("sqs").send_message(QueueUrl=a.cpu.physical["JobDeadLetterQueue"], MessageBody="{}"),
    ),
    # The GPU role consumes its own job queue only: not the dead letters, not another stack's audio.
    (
        "GpuTranscriberRole",
        "sqs:ReceiveMessage",
        lambda a, c: c("sqs").receive_message(QueueUrl=a.gpu.physical["JobDeadLetterQueue"], WaitTimeSeconds=0),
    ),
    (
        "GpuTranscriberRole",
        "sqs:SendMessage",
        lambda a, c: c("sqs").send_message(QueueUrl=a.gpu.physical["JobDeadLetterQueue"], MessageBody="{}"),
    ),
    (
        "GpuTranscriberRole",
        "s3:GetObject",
        lambda a, c: c("s3").get_object(Bucket=a.cpu.physical["AudioBucket"], Key="calls/hello.wav"),
    ),
]


@pytest.mark.parametrize(("role", "action", "attempt"), REFUSED, ids=[f"{r}-{a}" for r, a, _ in REFUSED])
def test_refused(account, role, action, attempt):
    session: boto3.Session = account.session(role)
    mark = account.moto.mark()
    with pytest.raises(ClientError) as raised:
        attempt(account, lambda service: account.moto.client(session, service))
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403, raised.value.response
    (denied,) = account.denials(mark)
    assert denied["action"] == action and account.role_of_key(denied["key"]) == role
