"""Speakers by name on the real local stack (`whisperless serve`): a voice enrolled from one real
meeting (AMI: FEE083's lone speech in trn06) names her in another meeting (trn09), through the
API and through the bucket; strangers get no name; another client can neither see nor use it;
bad enrolments are refused naming the field."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from localstack import local_aws, running_stack, stack_output
from support import silence_wav
from whisperless.cloud import apikeys
from whisperless.engine.speakers import MATCH_THRESHOLD

DATA = Path(__file__).resolve().parents[1] / "data" / "speakers"
ENROL = DATA / "trn06-fee083.wav"  # 8.1 s of FEE083 alone, from AMI excerpt trn06
MEETING = DATA / "trn09.wav"  # another AMI meeting where she speaks, with MEE094 and MEE095
KEY_B = "wl_speakers_client_b"


@pytest.fixture(scope="module")
def stack():
    with running_stack() as info:
        dynamodb = local_aws(info, "dynamodb", resource=True)
        apikeys.add_key(dynamodb.Table(stack_output(info, "ApiKeysTableName")), KEY_B, "client-b")
        info["voices"] = dynamodb.Table(stack_output(info, "VoicesTableName"))
        yield info


def _auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def _enrol(stack, key: str, name: str | None, data: bytes | None) -> requests.Response:
    fields = {"name": name} if name is not None else {}
    files = {"file": ("clip.wav", data)} if data is not None else {"unused": ("", b"")}
    return requests.post(f"{stack['api']}/v1/speakers", headers=_auth(key), data=fields, files=files, timeout=180)


def _named(document: dict, name: str) -> None:
    """``name`` is on some of the words, every other speaker is anonymous, and ``speakers`` says so."""
    rows = {row["label"]: row for row in document["speakers"]}
    named = [row for row in rows.values() if row["name"] == name]
    assert len(named) == 1 and named[0]["similarity"] >= MATCH_THRESHOLD, rows
    strangers = [row for row in rows.values() if row["name"] is None]
    assert strangers, rows  # trn09 has other people, and they get no name
    assert all(row["similarity"] < MATCH_THRESHOLD for row in strangers), rows
    word_speakers = [w["speaker"] for s in document["segments"] for w in s["words"]]
    assert name in word_speakers
    assert set(word_speakers) <= {name} | {row["label"] for row in strangers}
    assert {t["speaker"] for t in document["diarization"]} <= {name} | {row["label"] for row in strangers}
    assert name in {s["speaker"] for s in document["segments"]}


def test_a_voice_enrolled_through_the_api_names_her_in_another_meeting(stack):
    reply = _enrol(stack, stack["apiKey"], "Fiona", ENROL.read_bytes())
    assert reply.status_code == 201, reply.text
    assert reply.json()["name"] == "Fiona" and 2 <= reply.json()["seconds"] <= 8.2
    listed = requests.get(f"{stack['api']}/v1/speakers", headers=_auth(stack["apiKey"]), timeout=30).json()
    assert [v["name"] for v in listed["speakers"]] == ["Fiona"]
    # Embeddings only: the clip and its outcome are gone from the bucket.
    leftovers = local_aws(stack, "s3").list_objects_v2(Bucket=stack["bucket"], Prefix=".voices/")
    assert leftovers.get("KeyCount", 0) == 0
    assert set(stack["voices"].get_item(Key={"owner": "local", "name": "Fiona"})["Item"]) >= {"embedding"}

    with MEETING.open("rb") as audio:
        reply = requests.post(
            f"{stack['api']}/v1/transcriptions",
            headers=_auth(stack["apiKey"]),
            data={"diarization": "true", "knownSpeakers": "Fiona"},
            files={"file": ("trn09.wav", audio)},
            timeout=300,
        )
    assert reply.status_code == 200, reply.text
    _named(reply.json(), "Fiona")

    # Another client can neither see, use nor delete it.
    other = _auth(KEY_B)
    assert requests.get(f"{stack['api']}/v1/speakers", headers=other, timeout=30).json() == {"speakers": []}
    assert requests.delete(f"{stack['api']}/v1/speakers/Fiona", headers=other, timeout=30).status_code == 404
    refused = requests.post(
        f"{stack['api']}/v1/transcriptions",
        headers=other,
        data={"diarization": "true", "knownSpeakers": "Fiona"},
        files={"file": ("trn09.wav", MEETING.read_bytes())},
        timeout=60,
    )
    assert refused.status_code == 400 and refused.json()["error"]["field"] == "knownSpeakers", refused.text

    gone = requests.delete(f"{stack['api']}/v1/speakers/Fiona", headers=_auth(stack["apiKey"]), timeout=30)
    assert gone.status_code == 200 and gone.json() == {"name": "Fiona", "deleted": True}
    assert requests.get(f"{stack['api']}/v1/speakers", headers=_auth(stack["apiKey"]), timeout=30).json() == {
        "speakers": []
    }


@pytest.mark.parametrize(
    "name, data, status, field",
    [
        ("Nobody", silence_wav(5), 422, "file"),  # no speech at all
        ("Nobody", b"not audio at all", 422, "file"),
        (None, b"RIFF", 400, "name"),
        ("a,b", b"RIFF", 400, "name"),
        ("Nobody", None, 400, "file"),
    ],
)
def test_bad_enrolments_are_refused_naming_the_field(stack, name, data, status, field):
    reply = _enrol(stack, stack["apiKey"], name, data)
    assert reply.status_code == status, reply.text
    assert reply.json()["error"]["field"] == field


def _wait_for(s3, bucket: str, key: str, timeout: float = 240) -> dict:
    import json

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except s3.exceptions.NoSuchKey:
            time.sleep(0.5)
    raise AssertionError(f"{key} did not appear")


def test_a_speakers_object_enrols_the_bucket_s_voice_and_deleting_it_forgets_her(stack):
    s3, bucket = local_aws(stack, "s3"), stack["bucket"]
    s3.put_object(Bucket=bucket, Key="speakers/Fiona Smith.wav", Body=ENROL.read_bytes())
    outcome = _wait_for(s3, bucket, "speakers/Fiona Smith.wav.json")
    assert outcome["status"] == "completed" and outcome["name"] == "Fiona Smith", outcome
    assert s3.list_objects_v2(Bucket=bucket, Prefix="speakers/")["KeyCount"] == 2  # never transcribed

    metadata = {"diarization": "true", "knownspeakers": "Fiona Smith"}
    s3.put_object(Bucket=bucket, Key="calls/trn09.wav", Body=MEETING.read_bytes(), Metadata=metadata)
    _named(_wait_for(s3, bucket, "calls/trn09.wav.json"), "Fiona Smith")

    s3.delete_object(Bucket=bucket, Key="speakers/Fiona Smith.wav")
    deadline = time.monotonic() + 60
    while "Item" in stack["voices"].get_item(Key={"owner": f"bucket:{bucket}", "name": "Fiona Smith"}):
        assert time.monotonic() < deadline, "the voice was not forgotten"
        time.sleep(0.5)
    s3.put_object(Bucket=bucket, Key="calls/again.wav", Body=MEETING.read_bytes(), Metadata=metadata)
    failed = _wait_for(s3, bucket, "calls/again.wav.json")
    assert failed["status"] == "failed" and failed["error"]["field"] == "knownSpeakers", failed


def test_openai_style_references_name_her_for_one_request_without_enrolling(stack):
    import base64

    reference = "data:audio/wav;base64," + base64.b64encode(ENROL.read_bytes()).decode()
    with MEETING.open("rb") as audio:
        reply = requests.post(
            f"{stack['api']}/v1/transcriptions",
            headers=_auth(stack["apiKey"]),
            data=[("diarization", "true"), ("known_speaker_names[]", "Fi"), ("known_speaker_references[]", reference)],
            files={"file": ("trn09.wav", audio)},
            timeout=300,
        )
    assert reply.status_code == 200, reply.text
    _named(reply.json(), "Fi")
    s3 = local_aws(stack, "s3")
    # The clip is deleted once the job has ended (just after its result, which the reply waited for).
    deadline = time.monotonic() + 30
    while s3.list_objects_v2(Bucket=stack["bucket"], Prefix=f".voices/{reply.json()['id']}/").get("KeyCount", 0):
        assert time.monotonic() < deadline, "the request's clip was not deleted"
        time.sleep(0.2)
    # Nothing enrolled: the voice was for this request only.
    assert requests.get(f"{stack['api']}/v1/speakers", headers=_auth(stack["apiKey"]), timeout=30).json() == {
        "speakers": []
    }


def test_openai_sdk_known_speakers_name_her_in_diarized_json(stack):
    import base64

    import openai

    client = openai.OpenAI(
        base_url=f"{stack['api']}/v1", api_key=stack["apiKey"], _strict_response_validation=True, timeout=300
    )
    reference = "data:audio/wav;base64," + base64.b64encode(ENROL.read_bytes()).decode()
    with MEETING.open("rb") as audio:
        diarized = client.audio.transcriptions.create(
            model="gpt-4o-transcribe-diarize",
            file=audio,
            response_format="diarized_json",
            chunking_strategy="auto",
            known_speaker_names=["Fi"],
            known_speaker_references=[reference],
        )
    speakers = {segment.speaker for segment in diarized.segments}
    # She is called by her name; the two men, whom no clip names, by letters as OpenAI does.
    assert "Fi" in speakers and speakers - {"Fi"} and speakers - {"Fi"} <= {"A", "B", "C"}, speakers
    with MEETING.open("rb") as audio, pytest.raises(openai.BadRequestError) as refused:
        client.audio.transcriptions.create(
            model="whisper-1", file=audio, known_speaker_names=["Fi"], known_speaker_references=[reference]
        )
    assert refused.value.param == "known_speaker_names" and "diarized_json" in refused.value.message
