"""Every way in becomes a job or an explained skip; garbage never crashes the parser."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from whisperless.cloud.events import InvalidEvent, ObjectJob, Skip, UrlJob, jobs_from_payload, jobs_from_sqs_body


def _s3(key, event="ObjectCreated:Put"):
    return {
        "Records": [
            {"eventName": event, "s3": {"bucket": {"name": "b"}, "object": {"key": key, "eTag": '"abc"', "size": 3}}}
        ]
    }


def test_s3_keys_are_url_decoded():
    [job] = jobs_from_payload(_s3("calls/2024/my+talk+%281%29.wav"))
    assert job == ObjectJob("b", "calls/2024/my talk (1).wav", "abc", None, 3)
    [job] = jobs_from_payload(_s3("r%C3%A9union/%C3%A9t%C3%A9.mp3"))
    assert job.key == "réunion/été.mp3"


def _eventbridge(key):
    return {"detail-type": "Object Created", "detail": {"bucket": {"name": "b"}, "object": {"key": key}}}


def test_plus_and_space_twins_are_told_apart_by_decoding_once():
    """S3 encodes a space as "+" and a literal "+" as %2B, in notifications and EventBridge
    events alike: decoding once names the very object, with no guess between twins."""
    for make in (_s3, _eventbridge):
        [plus] = jobs_from_payload(make("s3t/pl%2Bus.wav"))
        [space] = jobs_from_payload(make("s3t/pl+us.wav"))
        assert (plus.key, space.key) == ("s3t/pl+us.wav", "s3t/pl us.wav")
        [slash] = jobs_from_payload(make("a%2Fb%25c.wav"))  # '/' encoded or not, '%' as %25
        assert slash.key == "a/b%c.wav"


def test_results_and_non_audio_are_skipped_with_a_reason():
    assert isinstance(jobs_from_payload(_s3("a.wav.json"))[0], Skip)
    # Redacted audio is a .wav, but ours: it must never start a job (nor an unredacted copy).
    for output in ("calls/a.mp3.redacted.wav", "calls/a.mp3.unredacted.json", "a.wav.srt", "a.wav.vtt", "a.WAV.txt"):
        assert jobs_from_payload(_s3(output))[0] == Skip("our own output, not an upload", output)
    # A text file of one's own is simply not audio.
    assert jobs_from_payload(_s3("notes.txt"))[0] == Skip("not an audio file extension", "notes.txt")
    assert jobs_from_payload(_s3("notes.txt"))[0].reason == "not an audio file extension"
    assert isinstance(jobs_from_payload(_s3("a.wav", "ObjectRemoved:Delete"))[0], Skip)
    assert jobs_from_payload({"Event": "s3:TestEvent"})[0].reason == "S3 test event"


def test_eventbridge_and_job_messages():
    eb = {
        "detail-type": "Object Created",
        "detail": {"bucket": {"name": "b"}, "object": {"key": "x+y.mp3", "etag": "e", "version-id": "null"}},
    }
    assert jobs_from_payload(eb) == [ObjectJob("b", "x y.mp3", "e", None, None)]
    message = {
        "jobId": "j1",
        "bucket": "b",
        "key": "uploads/j1/a.mp3",
        "url": "https://example.com/a.mp3",
        "params": {"language": "en"},
    }
    assert jobs_from_sqs_body(json.dumps(message)) == [
        UrlJob("j1", "b", "uploads/j1/a.mp3", "https://example.com/a.mp3", {"language": "en"})
    ]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
shaped = (
    st.fixed_dictionaries(
        {
            "Records": st.lists(
                st.dictionaries(st.sampled_from(["eventName", "s3", "body"]), json_values, max_size=3), max_size=3
            )
        }
    )
    | st.fixed_dictionaries({"detail-type": st.sampled_from(["Object Created", "x"]), "detail": json_values})
    | st.fixed_dictionaries({"jobId": json_values, "bucket": json_values, "key": json_values, "url": json_values})
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values, shaped))
def test_arbitrary_payloads_give_jobs_skips_or_invalid_event(payload):
    try:
        jobs = jobs_from_payload(payload)
    except InvalidEvent as exc:
        assert exc.message
        return
    assert all(isinstance(j, (ObjectJob, UrlJob, Skip)) for j in jobs)
    assert all(isinstance(j.bucket, str) and j.bucket for j in jobs if not isinstance(j, Skip))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_sqs_bodies_never_crash(body):
    try:
        jobs_from_sqs_body(body)
    except InvalidEvent:
        pass


def test_transcription_requested_events():
    from whisperless.cloud.events import RequestedJob

    detail = {"bucket": "b", "key": "a b.mp3", "diarization": True, "formats": ["srt"]}
    event = {"id": "e-1", "detail-type": "Transcription Requested", "detail": detail}
    assert jobs_from_payload(event) == [
        RequestedJob("evt-e-1", "b", "a b.mp3", {"diarization": True, "formats": ["srt"]})
    ]
    assert jobs_from_payload({**event, "detail": {**detail, "jobId": "mine"}})[0].job_id == "mine"
    for bad in ({"bucket": "b"}, {**detail, "jobId": "../x"}, "text"):
        with pytest.raises(InvalidEvent):
            jobs_from_payload({**event, "detail": bad})


def test_long_job_tasks_and_the_hidden_prefix():
    from whisperless.cloud.events import ChunkJob, LongJob, MergeJob

    job = LongJob("job-1", "bucket", "a/long.mp3", "etag", None, {"diarization": "true"}, 16000 * 3600, 600.0, 6)
    assert jobs_from_payload(json.loads(json.dumps(ChunkJob(job, 5).message()))) == [ChunkJob(job, 5)]
    assert jobs_from_payload(json.loads(json.dumps(MergeJob(job).message()))) == [MergeJob(job)]
    for broken in (
        {**ChunkJob(job, 6).message()},  # index past the chunks
        {**MergeJob(job).message(), "jobId": "../x"},
        {**MergeJob(job).message(), "numSamples": 0},
        {**MergeJob(job).message(), "metadata": {"a": 1}},
        {**MergeJob(job).message(), "whisperlessTask": {"kind": "other"}},
    ):
        with pytest.raises(InvalidEvent):
            jobs_from_payload(broken)
    # Chunk parts in the bucket's working space never become jobs, whatever their name.
    (skip,) = jobs_from_payload(_s3(".whisperless/parts/job-1/00001.wav"))
    assert isinstance(skip, Skip) and "working space" in skip.reason


def test_a_job_message_with_a_job_id_that_is_not_one_is_malformed():
    # Found by the fuzz test: a non-ASCII id reached the result's S3 metadata, which refused it, and
    # the message came back for ever instead of being dropped as malformed.
    message = {"jobId": "\u0080", "bucket": "b", "key": "0", "url": "http://10.0.0.1/a.wav"}
    with pytest.raises(InvalidEvent, match="jobId"):
        jobs_from_payload(message)
