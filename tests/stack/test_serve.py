"""`whisperless serve` for real: a subprocess on free ports, driven as a user would."""

from __future__ import annotations

import json
import socket
import time

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from localstack import local_aws, running_stack
from support import Receiver, assert_no_secrets, heard_secrets, made_speech

SEED_FIELDS = {
    "fileType": "",
    "diarization": "",
    "numSpeakers": "",
    "initialPrompt": "",
    "language": "",
    "task": "",
    "callbackURL": "",
}


@pytest.fixture(scope="module")
def clip(tmp_path_factory, sample_wav):
    from conftest import encode

    return encode(sample_wav, tmp_path_factory.mktemp("serve") / "clip.mp3", "libmp3lame", seconds=12)


@pytest.fixture(scope="module")
def stack():
    with running_stack("--allow-local-callbacks") as info:
        yield info
    proc = info["process"]
    assert proc.returncode == 0, proc.stderr.read()[-2000:]
    with socket.socket() as s:  # the API port is released
        assert s.connect_ex(("127.0.0.1", int(info["api"].rsplit(":", 1)[1]))) != 0


def test_startup_line_has_everything_a_script_needs(stack):
    assert set(stack) >= {"api", "s3", "bucket", "eventBus", "apiKey", "webhookSecret"}
    assert stack["eventBus"] == "whisperless-local-events"  # created from the template's EventBus
    assert stack["webhookSecret"].startswith("whsec_")


def test_the_seed_client_gets_the_result(stack, clip):
    with clip.open("rb") as audio:
        reply = requests.post(
            f"{stack['api']}/v1/transcriptions",
            headers={"Authorization": f"Bearer {stack['apiKey']}"},
            data={**SEED_FIELDS, "diarization": "true"},
            files={"file": audio},
            timeout=60,
        )
    assert reply.status_code == 200, reply.text
    doc = reply.json()
    assert doc["status"] == "completed" and "hello" in doc["text"].lower()
    assert doc["diarization"] and all("speaker" in w for s in doc["segments"] for w in s["words"])
    status = requests.get(
        f"{stack['api']}/v1/transcriptions/{doc['id']}",
        headers={"Authorization": f"Bearer {stack['apiKey']}"},
        timeout=10,
    ).json()
    assert status["status"] == "completed"


def test_a_wrong_key_is_refused(stack, clip):
    with clip.open("rb") as audio:
        reply = requests.post(
            f"{stack['api']}/v1/transcriptions",
            headers={"Authorization": "Bearer nope"},
            data=SEED_FIELDS,
            files={"file": audio},
            timeout=30,
        )
    assert reply.status_code == 401


def test_an_s3_upload_gets_its_result_next_to_it(stack, clip):
    s3 = local_aws(stack, "s3")
    s3.upload_file(str(clip), stack["bucket"], "in/a talk.mp3", ExtraArgs={"Metadata": {"language": "en"}})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            doc = json.loads(s3.get_object(Bucket=stack["bucket"], Key="in/a talk.mp3.json")["Body"].read())
            break
        except s3.exceptions.NoSuchKey:
            time.sleep(0.5)
    else:
        pytest.fail("no result appeared next to the upload")
    assert doc["status"] == "completed" and doc["language"] == "en"
    # Only the audio and its result: the result itself started no job.
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=stack["bucket"], Prefix="in/")["Contents"]]
    assert sorted(keys) == ["in/a talk.mp3", "in/a talk.mp3.json"]


def test_a_local_callback_receives_the_signed_result(stack, clip):
    receiver = Receiver([200])
    try:
        with clip.open("rb") as audio:
            reply = requests.post(
                f"{stack['api']}/v1/transcriptions",
                headers={"Authorization": f"Bearer {stack['apiKey']}"},
                data={**SEED_FIELDS, "callbackURL": receiver.url},
                files={"file": audio},
                timeout=60,
            )
        assert reply.status_code == 202  # with a callback the API answers at once
        deadline = time.monotonic() + 120
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.2)
        headers, body = receiver.requests[0]
        doc = Webhook(stack["webhookSecret"]).verify(body, headers)
        assert doc["id"] == reply.json()["id"] and doc["status"] == "completed"
    finally:
        receiver.close()


def test_loopback_callbacks_are_refused_unless_allowed(clip):
    with running_stack() as info:
        with clip.open("rb") as audio:
            reply = requests.post(
                f"{info['api']}/v1/transcriptions",
                headers={"Authorization": f"Bearer {info['apiKey']}"},
                data={**SEED_FIELDS, "callbackURL": "http://127.0.0.1:9/hook"},
                files={"file": audio},
                timeout=30,
            )
        assert reply.status_code == 400
        assert reply.json()["error"]["field"] == "callbackURL"


def test_a_redacted_job_through_the_api_leaks_nothing_and_keeps_the_copy_asked_for(stack, tmp_path):
    receiver = Receiver([200])
    try:
        with made_speech(tmp_path / "call.wav").open("rb") as audio:
            reply = requests.post(
                f"{stack['api']}/v1/transcriptions",
                headers={"Authorization": f"Bearer {stack['apiKey']}"},
                data={
                    **SEED_FIELDS,
                    "language": "en",
                    "redact": "pii",
                    "redactionOutput": "redacted_and_unredacted",
                    "redactAudio": "true",
                    "callbackURL": receiver.url,
                },
                files={"file": audio},
                timeout=60,
            )
        assert reply.status_code == 202, reply.text
        deadline = time.monotonic() + 180
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.5)
        assert receiver.requests, "no callback"
        headers, body = receiver.requests[0]
        doc = Webhook(stack["webhookSecret"]).verify(body, headers)
        assert doc["status"] == "completed" and doc["redactions"]
        status = requests.get(
            f"{stack['api']}/v1/transcriptions/{doc['id']}",
            headers={"Authorization": f"Bearer {stack['apiKey']}"},
            timeout=10,
        ).json()
        assert status == doc
        s3 = local_aws(stack, "s3")
        key = doc["source"]["key"]
        listed = [o["Key"] for o in s3.list_objects_v2(Bucket=stack["bucket"], Prefix=key)["Contents"]]
        assert sorted(listed) == [key, key + ".json", key + ".redacted.wav", key + ".unredacted.json"]
        unredacted = s3.get_object(Bucket=stack["bucket"], Key=key + ".unredacted.json")["Body"].read()
        heard = heard_secrets(unredacted)
        assert_no_secrets(body, heard)
        assert_no_secrets(s3.get_object(Bucket=stack["bucket"], Key=key + ".json")["Body"].read(), heard)
    finally:
        receiver.close()
