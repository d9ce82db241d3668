"""Long recordings against moto: an upload longer than WHISPERLESS_CHUNK_SECONDS becomes chunk
tasks on the job queue, each done once whatever is delivered twice, counted on the job record so
that exactly one task queues the merge, which writes the one result and callback through the job's
one ending and leaves nothing under the hidden prefix. A chunk that keeps failing ends the job with
a failed document naming it."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from support import (
    REGION,
    LambdaContext,
    Receiver,
    create_tables,
    create_voices_table,
    load_handler,
    long_recording,
    receive,
    set_aws_env,
    wire_bucket_to_queue,
)

BUCKET = "whisperless-test-audio"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
KEY = "meetings/long.wav"


@pytest.fixture(scope="module")
def app_module():
    return load_handler("transcriber", "transcriber_long_app")


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    return long_recording(tmp_path_factory.mktemp("long") / "long.wav").read_bytes()


@pytest.fixture
def aws(monkeypatch, app_module):
    set_aws_env(monkeypatch)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        events = boto3.client("events", region_name=REGION)
        dynamodb = boto3.resource("dynamodb", region_name=REGION)
        queue = wire_bucket_to_queue(s3, sqs, events, BUCKET)
        create_tables(dynamodb, {"jobs": "id", "idempotency": "id"})
        create_voices_table(dynamodb)
        from whisperless.cloud.runner import JobRunner
        from whisperless.config import Settings
        from whisperless.engine import Engine

        settings = Settings(
            bucket=BUCKET,
            jobs_table="jobs",
            idempotency_table="idempotency",
            queue_url=queue,
            webhook_secret=SECRET,
            allow_local_callbacks=True,
            chunk_seconds=30,
            voices_table="voices",
        )
        runner = JobRunner(
            s3=s3,
            dynamodb=dynamodb,
            settings=settings,
            sqs=sqs,
            engine=Engine(whisper_model="tiny.en"),
            callback_sleep=lambda seconds: None,
        )
        app_module._runner = runner
        yield {
            "s3": s3,
            "sqs": sqs,
            "queue": queue,
            "jobs": dynamodb.Table("jobs"),
            "voices": dynamodb.Table("voices"),
            "runner": runner,
        }
        app_module._runner = None


def _tasks(aws) -> list:
    """Every job waiting on the queue (the messages are taken off it)."""
    from whisperless.cloud.events import jobs_from_sqs_body

    found = []
    while messages := receive(aws["sqs"], aws["queue"]):
        for message in messages:
            found.extend(jobs_from_sqs_body(message["Body"]))
            aws["sqs"].delete_message(QueueUrl=aws["queue"], ReceiptHandle=message["ReceiptHandle"])
    return found


def _hidden(aws) -> list[str]:
    listing = aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix=".whisperless/")
    return [o["Key"] for o in listing.get("Contents", [])]


def _upload(aws, recording, **metadata) -> str:
    from whisperless.cloud.events import ObjectJob

    aws["s3"].put_object(Bucket=BUCKET, Key=KEY, Body=recording, Metadata={"language": "en", **metadata})
    (upload,) = _tasks(aws)
    assert isinstance(upload, ObjectJob)
    reply = aws["runner"].handle(upload, LambdaContext(), 1)
    assert reply["status"] == "fanned_out" and reply["chunks"] == 4
    return reply["jobId"]


def test_a_long_upload_is_chunks_and_one_merge_done_once(aws, recording):
    from whisperless.cloud.events import ChunkJob, MergeJob

    receiver = Receiver()
    try:
        job_id = _upload(aws, recording, diarization="true", callbackurl=receiver.url)
        record = aws["jobs"].get_item(Key={"id": job_id})["Item"]
        assert record["chunks"] == 4 and record["stage"] == "chunks" and record["status"] == "processing"
        chunks = _tasks(aws)
        assert sorted(c.index for c in chunks if isinstance(c, ChunkJob)) == [0, 1, 2, 3]
        progress = []
        for task in chunks + chunks[:2]:  # two duplicate deliveries
            aws["runner"].handle(task, LambdaContext(), 1)
            progress.append(float(aws["jobs"].get_item(Key={"id": job_id})["Item"]["progress"]))
        assert progress == sorted(progress) and progress[0] < progress[3] < 1
        assert len(_hidden(aws)) == 4  # one part per chunk
        merges = _tasks(aws)
        assert len(merges) == 1 and isinstance(merges[0], MergeJob)
        assert not aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix=KEY + ".json").get("KeyCount")
        for _ in range(2):  # the merge delivered twice: one result, one callback
            reply = aws["runner"].handle(merges[0], LambdaContext(), 1)
            assert reply["status"] == "completed"
        assert len(receiver.requests) == 1  # the callback is made before the merge returns
    finally:
        receiver.close()
    doc = json.loads(aws["s3"].get_object(Bucket=BUCKET, Key=KEY + ".json")["Body"].read())
    assert doc["status"] == "completed" and doc["chunks"] == 4 and doc["id"] == job_id
    assert 119 < doc["duration"] < 121
    assert "hello" in doc["text"].lower() and "java" in doc["text"].lower()
    # The sample is played twice (0-30 s and 60-90 s, in different chunks): its two voices get the
    # same two labels both times.
    assert len(_voices(doc, 0, 30)) == 2 and _voices(doc, 0, 30) == _voices(doc, 60, 90)
    times = [s["start"] for s in doc["segments"]]
    assert times == sorted(times)
    record = aws["jobs"].get_item(Key={"id": job_id})["Item"]
    assert record["status"] == "completed" and record["progress"] == 1
    assert _hidden(aws) == [] and _tasks(aws) == []


def _voices(doc: dict, start: float, end: float, share: float = 0.15) -> set[str]:
    """The speakers holding at least ``share`` of the talk between ``start`` and ``end``."""
    talk: dict[str, float] = {}
    for turn in doc["diarization"]:
        overlap = min(turn["stopTime"], end) - max(turn["startTime"], start)
        if overlap > 0:
            talk[turn["speaker"]] = talk.get(turn["speaker"], 0.0) + overlap
    total = sum(talk.values())
    return {speaker for speaker, seconds in talk.items() if seconds >= share * total}


def test_the_count_queues_the_merge_once(aws, recording):
    """Even past the idempotency layer (its record expired, a second worker): the conditional
    count on the job record lets one task, the one that completes it, queue the merge."""
    from whisperless.cloud.events import MergeJob
    from whisperless.cloud.runner import Attempt

    job_id = _upload(aws, recording)
    chunks = _tasks(aws)
    for task in chunks:
        aws["runner"].handle(task, LambdaContext(), 1)
    merges = _tasks(aws)
    assert len(merges) == 1 and isinstance(merges[0], MergeJob)
    for task in chunks:  # every chunk again, straight to the work (no idempotency record)
        reply = aws["runner"]._process_chunk(Attempt(task))
        assert reply["status"] == "chunk_done" and reply["done"] == 4
    assert _tasks(aws) == []
    counted, done = aws["runner"].jobs.chunk_done(job_id, 0, 4)
    assert (counted, done) == (False, 4)


def test_a_chunk_that_keeps_failing_ends_the_job_naming_it(aws, recording, monkeypatch):
    from whisperless.cloud.events import ChunkJob

    engine = aws["runner"].engine
    real = engine.transcribe_chunk

    def flaky(path, options, chunk, num_samples, **kwargs):
        if chunk.index == 2:
            raise OSError("disk full")
        return real(path, options, chunk, num_samples, **kwargs)

    monkeypatch.setattr(engine, "transcribe_chunk", flaky)
    job_id = _upload(aws, recording)
    chunks = [c for c in _tasks(aws) if isinstance(c, ChunkJob)]
    bad = next(c for c in chunks if c.index == 2)
    for receives in (1, 2, 3):  # the queue's max receive count: 3
        with pytest.raises(OSError):
            aws["runner"].handle(bad, LambdaContext(), receives)
        record = aws["jobs"].get_item(Key={"id": job_id})["Item"]
        assert "chunk 3 of 4" in record["lastError"]["message"]
    doc = json.loads(aws["s3"].get_object(Bucket=BUCKET, Key=KEY + ".json")["Body"].read())
    assert doc["status"] == "failed" and doc["error"]["code"] == "retries_exhausted"
    assert "chunk 3 of 4" in doc["error"]["message"] and "disk full" in doc["error"]["message"]
    # That document is not final: a redrive of the chunk from the dead-letter queue may still
    # complete the job. Until then the other chunks do their part, but no merge is queued.
    for task in chunks:
        if task.index != 2:
            assert aws["runner"].handle(task, LambdaContext(), 1)["status"] == "chunk_done"
    assert _tasks(aws) == [] and len(_hidden(aws)) == 3  # the bucket's lifecycle rule expires them
    monkeypatch.setattr(engine, "transcribe_chunk", real)  # the redrive, once the cause is gone
    assert aws["runner"].handle(bad, LambdaContext(), 1)["status"] == "chunk_done"
    (merge,) = _tasks(aws)
    assert aws["runner"].handle(merge, LambdaContext(), 1)["status"] == "completed"
    doc = json.loads(aws["s3"].get_object(Bucket=BUCKET, Key=KEY + ".json")["Body"].read())
    assert doc["status"] == "completed" and doc["chunks"] == 4 and _hidden(aws) == []


def test_a_chunk_whose_audio_is_bad_fails_the_job_at_once(aws, recording, monkeypatch):
    from whisperless.cloud.events import ChunkJob
    from whisperless.errors import AudioError

    engine = aws["runner"].engine

    def broken(path, options, chunk, num_samples, **kwargs):
        raise AudioError("the audio data is corrupt or truncated", code="corrupt_audio")

    monkeypatch.setattr(engine, "transcribe_chunk", broken)
    job_id = _upload(aws, recording)
    chunks = [c for c in _tasks(aws) if isinstance(c, ChunkJob)]
    assert aws["runner"].handle(chunks[1], LambdaContext(), 1)["status"] == "failed"
    doc = json.loads(aws["s3"].get_object(Bucket=BUCKET, Key=KEY + ".json")["Body"].read())
    assert doc["status"] == "failed" and doc["error"]["code"] == "chunk_failed" and doc["id"] == job_id
    assert "chunk 2 of 4" in doc["error"]["message"] and "corrupt_audio" in doc["error"]["message"]
    assert aws["runner"].handle(chunks[1], LambdaContext(), 2)["status"] == "failed"  # a duplicate: the same answer
    for task in chunks:  # the job has ended for good: the rest do nothing
        if task.index != 1:
            assert aws["runner"].handle(task, LambdaContext(), 1)["status"] == "skipped"
    assert _tasks(aws) == [] and _hidden(aws) == []


def test_a_chunk_stopped_midway_comes_back_and_is_done_once(aws, recording):
    """A worker stopping (or killed) mid-chunk: nothing is written, the message comes back, the
    next delivery does the chunk."""
    from whisperless.cloud.events import ChunkJob
    from whisperless.errors import Interrupted

    job_id = _upload(aws, recording)
    chunks = {c.index: c for c in _tasks(aws) if isinstance(c, ChunkJob)}
    chunk = chunks[0]
    aws["runner"].stopping.set()
    try:
        with pytest.raises(Interrupted):
            aws["runner"].handle(chunk, LambdaContext(), 1)
    finally:
        aws["runner"].stopping.clear()
    assert _hidden(aws) == []
    record = aws["jobs"].get_item(Key={"id": job_id})["Item"]
    assert record["status"] == "retrying" and record["lastError"]["chunk"] == 0
    assert aws["runner"].handle(chunks[1], LambdaContext(), 1)["status"] == "chunk_done"
    assert aws["jobs"].get_item(Key={"id": job_id})["Item"]["status"] == "retrying"  # chunk 1 is not the one
    reply = aws["runner"].handle(chunk, LambdaContext(), 2)
    assert reply["status"] == "chunk_done" and reply["done"] == 2 and len(_hidden(aws)) == 2
    # The chunk that failed is done: the job runs again, and says what went wrong on the way.
    record = aws["jobs"].get_item(Key={"id": job_id})["Item"]
    assert record["status"] == "processing" and record["lastError"]["code"] == "interrupted"


def _dana_clip() -> bytes:
    """3.1 s of the sample's second speaker alone (its RTTM: speaker91 from 14.49 s, speaker90 until 14.70 s)."""
    from bench.diarization_quality import read_wav, sample_item
    from whisperless.engine.audio import SAMPLE_RATE, wav_bytes

    return wav_bytes(read_wav(sample_item().wav)[int(14.8 * SAMPLE_RATE) : int(17.9 * SAMPLE_RATE)])


@pytest.mark.parametrize("voice", ["enrolled", "request's clip"])
def test_a_long_job_names_its_known_speakers_at_the_merge(aws, recording, tmp_path, voice):
    """Known speakers on a recording that is split: the chunks are diarized apart, and the merge's
    one clustering names the voice wherever she speaks (the sample plays twice). The voice is
    enrolled for the bucket, or comes with the request (known_speaker_references[], which the API
    stores under .voices/ and names in the upload's metadata)."""
    import numpy as np

    from whisperless.cloud.events import ChunkJob
    from whisperless.cloud.stores import JobStore
    from whisperless.cloud.voices import VoiceStore
    from whisperless.contract.speakers import bucket_owner, reference_key

    if voice == "enrolled":
        clip = tmp_path / "dana.wav"
        clip.write_bytes(_dana_clip())
        enrolled = aws["runner"].engine.enrol(clip)
        VoiceStore(aws["voices"]).put(
            bucket_owner(BUCKET), "Dana", np.asarray(enrolled.embedding, "<f4").tobytes(), enrolled.speech_seconds
        )
        job_id = _upload(aws, recording, diarization="true", knownspeakers="Dana")
    else:  # as POST /v1/transcriptions leaves it
        job_id = "a" * 32
        JobStore(aws["jobs"], ttl_days=1).create(job_id, bucket=BUCKET, key=KEY, params={}, client_id="client-a")
        aws["s3"].put_object(Bucket=BUCKET, Key=reference_key(job_id, 0), Body=_dana_clip())
        metadata = {"jobid": job_id, "voicereferences": "1", "diarization": "true", "knownspeakers": "Dana"}
        assert _upload(aws, recording, **metadata) == job_id
        assert aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix=".voices/")["KeyCount"] == 1  # kept for the merge
    for task in _tasks(aws):
        assert isinstance(task, ChunkJob)
        aws["runner"].handle(task, LambdaContext(), 1)
    (merge,) = _tasks(aws)
    assert aws["runner"].handle(merge, LambdaContext(), 1)["status"] == "completed"
    doc = json.loads(aws["s3"].get_object(Bucket=BUCKET, Key=KEY + ".json")["Body"].read())
    assert doc["status"] == "completed" and doc["chunks"] == 4 and doc["id"] == job_id
    (named,) = [row for row in doc["speakers"] if row["name"] == "Dana"]
    assert all(row["name"] is None for row in doc["speakers"] if row is not named)  # the others stay anonymous
    dana = [s for s in doc["segments"] if s["speaker"] == "Dana"]
    # Her turns in both plays of the sample (0-30 s and 60-90 s), in different chunks.
    assert any(s["start"] < 30 for s in dana) and any(60 <= s["start"] < 90 for s in dana), dana
    assert {t["speaker"] for t in doc["diarization"]} >= {"Dana"}
    assert aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix=".voices/")["KeyCount"] == 0  # the clip is gone
