"""`whisperless serve` as the ecosystem sees it, on one running stack: the official openai SDK
(sync and async, every response_format, both endpoints, its errors), the stack's EventBridge bus
with a rule and a queue attached as a user would, renderings next to an upload, and the rest of
the API (renderings, listing, deletion, health, CORS).

The stack runs the multilingual ``base`` model, not ``tiny.en``: an English-only model refuses
translations, and the translations endpoint must be shown working."""

from __future__ import annotations

import asyncio
import json
import time
import warnings

import pytest
import requests

from localstack import local_aws, running_stack

openai = pytest.importorskip("openai")

MODEL = "base"


@pytest.fixture(scope="module")
def stack():
    with running_stack("--allow-local-callbacks", model=MODEL) as info:
        yield info


@pytest.fixture(scope="module")
def clip(tmp_path_factory, sample_wav):
    from conftest import encode

    return encode(sample_wav, tmp_path_factory.mktemp("eco") / "clip.mp3", "libmp3lame", seconds=12)


@pytest.fixture(scope="module")
def event_queue(stack):
    """A rule on the stack's bus -> a queue, attached before any job runs (README's pattern)."""
    events, sqs = local_aws(stack, "events"), local_aws(stack, "sqs")
    queue = sqs.create_queue(QueueName="my-pipeline")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    pattern = {"source": ["whisperless"], "detail-type": ["Transcription Completed", "Transcription Failed"]}
    events.put_rule(Name="my-pipeline", EventBusName=stack["eventBus"], EventPattern=json.dumps(pattern))
    events.put_targets(Rule="my-pipeline", EventBusName=stack["eventBus"], Targets=[{"Id": "q", "Arn": arn}])
    return queue


def _client(stack, **kwargs):
    # Strict: the SDK checks every field's type against OpenAI's schema, as a typed client would.
    return openai.OpenAI(
        base_url=f"{stack['api']}/v1", api_key=stack["apiKey"], _strict_response_validation=True, **kwargs
    )


def test_every_transcription_format_through_the_official_sdk(stack, clip, event_queue):
    client = _client(stack)
    with clip.open("rb") as audio:
        raw = client.audio.transcriptions.with_raw_response.create(model="whisper-1", file=audio)
    assert raw.headers["x-whisperless-model"] == MODEL
    plain = raw.parse()
    assert "hello" in plain.text.lower() and plain.usage.seconds == 12
    job_id = raw.headers["x-whisperless-job-id"]

    def create(**kwargs):
        with clip.open("rb") as audio:
            return client.audio.transcriptions.create(model="whisper-1", file=audio, language="en", **kwargs)

    assert create(response_format="text") == plain.text + "\n"
    srt = create(response_format="srt")
    assert srt.startswith("1\n00:00:0") and " --> " in srt
    assert create(response_format="vtt").startswith("WEBVTT\n\n00:00:0")

    verbose = create(response_format="verbose_json", timestamp_granularities=["word", "segment"])
    assert isinstance(verbose, openai.types.audio.TranscriptionVerbose)
    assert verbose.language == "english" and verbose.task == "transcribe" and abs(verbose.duration - 12) < 0.1
    assert verbose.segments and all(s.end - s.start < 12 for s in verbose.segments)  # sentence-sized
    assert all(isinstance(t, int) for s in verbose.segments for t in s.tokens)
    assert verbose.words and all(0 <= w.probability <= 1 for w in verbose.words)  # additive: probability

    diarized = create(response_format="diarized_json")
    assert isinstance(diarized, openai.types.audio.TranscriptionDiarized)
    assert diarized.task == "transcribe" and diarized.segments
    speakers = {s.speaker for s in diarized.segments}
    assert speakers <= set("ABCDEFGH") and len(speakers) >= 2  # OpenAI's labels, not SPEAKER_00
    assert all(s.type == "transcript.text.segment" and isinstance(s.id, str) for s in diarized.segments)

    # The same job, as the asynchronous API has it: rendered on request.
    headers = {"Authorization": f"Bearer {stack['apiKey']}"}
    vtt = requests.get(f"{stack['api']}/v1/transcriptions/{job_id}?format=vtt", headers=headers, timeout=10)
    assert vtt.status_code == 200 and vtt.headers["Content-Type"].startswith("text/vtt")
    assert vtt.text.startswith("WEBVTT")


def test_the_async_client_and_the_translations_endpoint(stack, clip):
    async def main():
        client = openai.AsyncOpenAI(
            base_url=f"{stack['api']}/v1", api_key=stack["apiKey"], _strict_response_validation=True
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the SDK marks translations deprecated
            with clip.open("rb") as audio:
                verbose = await client.audio.translations.create(
                    model="whisper-1", file=audio, response_format="verbose_json"
                )
            with clip.open("rb") as audio:
                text = await client.audio.translations.create(model="whisper-1", file=audio, response_format="text")
        with clip.open("rb") as audio:
            transcription = await client.audio.transcriptions.create(model="gpt-4o-transcribe", file=audio)
        return verbose, text, transcription

    verbose, text, transcription = asyncio.run(main())
    assert isinstance(verbose, openai.types.audio.TranslationVerbose) and verbose.language == "english"
    assert "hello" in verbose.text.lower() and verbose.segments
    assert "hello" in text.lower()
    assert "hello" in transcription.text.lower()


def test_errors_are_openai_shaped_with_the_status_the_sdk_maps(stack, clip):
    client = _client(stack, max_retries=0)
    with clip.open("rb") as audio:
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{stack['api']}/v1", api_key="wrong").audio.transcriptions.create(
                model="whisper-1", file=audio
            )
    cases = [
        ({"stream": True}, "stream"),
        ({"language": "xx"}, "language"),
        ({"response_format": "verbose_json", "timestamp_granularities": ["sentence"]}, "timestamp_granularities"),
        ({"extra_body": {"known_speaker_names": ["agent"]}}, "known_speaker_names"),
    ]
    for kwargs, param in cases:
        with clip.open("rb") as audio, pytest.raises(openai.BadRequestError) as caught:
            client.audio.transcriptions.create(model="whisper-1", file=audio, **kwargs)
        assert caught.value.param == param and caught.value.type == "invalid_request_error", caught.value
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(model="whisper-1", file=("noise.wav", b"RIFF" + bytes(3000)))
    assert caught.value.code in {"not_audio", "corrupt_audio", "empty_file"} and caught.value.param == "file"


def _receive_all(sqs, queue: str, seconds: float) -> list[dict]:
    found, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        for m in messages:
            found.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
    return found


def test_each_job_put_exactly_one_event_on_the_stack_bus(stack, event_queue):
    # Every job of the tests above (they ran first: pytest keeps the file's order) ended with one event.
    headers = {"Authorization": f"Bearer {stack['apiKey']}"}
    jobs = requests.get(f"{stack['api']}/v1/transcriptions?limit=100", headers=headers, timeout=10).json()
    finished = [j["id"] for j in jobs["transcriptions"] if j["status"] in ("completed", "failed")]
    events = _receive_all(local_aws(stack, "sqs"), event_queue, 3)
    assert sorted(e["detail"]["jobId"] for e in events) == sorted(finished)
    assert all(e["detail"]["clientId"] == "local" for e in events)
    assert {e["detail-type"] for e in events} == {"Transcription Completed", "Transcription Failed"}


def test_an_upload_with_formats_gets_its_renderings_next_to_it(stack, clip):
    s3 = local_aws(stack, "s3")
    s3.upload_file(str(clip), stack["bucket"], "in/talk.mp3", ExtraArgs={"Metadata": {"formats": "srt,vtt,txt"}})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket=stack["bucket"], Prefix="in/").get("Contents", [])}
        if "in/talk.mp3.json" in keys:
            break
        time.sleep(0.5)
    assert keys == {"in/talk.mp3", "in/talk.mp3.json", "in/talk.mp3.srt", "in/talk.mp3.vtt", "in/talk.mp3.txt"}
    doc = json.loads(s3.get_object(Bucket=stack["bucket"], Key="in/talk.mp3.json")["Body"].read())
    txt = s3.get_object(Bucket=stack["bucket"], Key="in/talk.mp3.txt")["Body"].read().decode()
    assert txt == doc["text"] + "\n"


def test_list_delete_health_and_cors(stack, clip):
    api, headers = stack["api"], {"Authorization": f"Bearer {stack['apiKey']}"}
    assert requests.get(f"{api}/v1/health", timeout=10).json() == {"status": "ok"}  # no key

    first = requests.get(f"{api}/v1/transcriptions?limit=2", headers=headers, timeout=10).json()
    second = requests.get(f"{api}/v1/transcriptions?limit=2&after={first['next']}", headers=headers, timeout=10).json()
    page = first["transcriptions"] + second["transcriptions"]
    assert len(page) == 4 and len({j["id"] for j in page}) == 4
    assert [j["createdAt"] for j in page] == sorted((j["createdAt"] for j in page), reverse=True)

    job = page[0]
    gone = requests.delete(f"{api}/v1/transcriptions/{job['id']}", headers=headers, timeout=10)
    assert gone.json() == {"id": job["id"], "deleted": True}
    assert requests.get(f"{api}/v1/transcriptions/{job['id']}", headers=headers, timeout=10).status_code == 404
    prefix = f"uploads/{job['id']}/"
    assert "Contents" not in local_aws(stack, "s3").list_objects_v2(Bucket=stack["bucket"], Prefix=prefix)

    origin = {"Origin": "https://app.example.com"}
    preflight = requests.options(
        f"{api}/v1/audio/transcriptions",
        headers={**origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"},
        timeout=10,
    )
    assert preflight.status_code == 204 and preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"]
    listed = requests.get(f"{api}/v1/transcriptions", headers={**headers, **origin}, timeout=10)
    assert listed.headers["Access-Control-Allow-Origin"] == "*"


def test_a_transcription_requested_event_on_the_stack_bus_is_a_job(stack):
    """Last: it starts a job without a client, which the event count above does not expect."""
    s3 = local_aws(stack, "s3")  # in/talk.mp3 is there from the renderings test
    detail = {"bucket": stack["bucket"], "key": "in/talk.mp3", "jobId": "requested-1", "diarization": True}
    entry = {"Source": "my.app", "DetailType": "Transcription Requested", "Detail": json.dumps(detail)}
    local_aws(stack, "events").put_events(Entries=[{**entry, "EventBusName": stack["eventBus"]}])
    deadline, doc = time.monotonic() + 120, {}
    while time.monotonic() < deadline and doc.get("id") != "requested-1":
        time.sleep(0.5)
        doc = json.loads(s3.get_object(Bucket=stack["bucket"], Key="in/talk.mp3.json")["Body"].read())
    assert doc.get("id") == "requested-1" and doc["status"] == "completed" and doc["diarization"]
