"""Speakers by name, as pure code: matching diarized speakers to known voices, the names and the
knownSpeakers parameter, and how speakers/ objects and the API's enrolments become tasks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from whisperless.cloud.events import Skip, jobs_from_payload
from whisperless.cloud.voices import VoiceTask
from whisperless.contract.options import TranscriptionOptions
from whisperless.contract.speakers import enrolment_name, parse_known_speakers, parse_voice_name
from whisperless.engine.document import completed_document
from whisperless.engine.merge import assign_speakers
from whisperless.engine.speakers import MATCH_THRESHOLD, name_speakers
from whisperless.engine.types import Diarization, Segment, Transcript, Turn, Word
from whisperless.errors import InvalidParameter


def unit(*values: float) -> np.ndarray:
    v = np.array(values, np.float32)
    return v / np.linalg.norm(v)


def at(similarity: float) -> np.ndarray:
    """A unit vector whose cosine similarity with unit(1, 0, 0) is ``similarity``."""
    return unit(similarity, np.sqrt(1 - similarity**2), 0)


def diarization(**centroids: np.ndarray) -> Diarization:
    labels = list(centroids)
    turns = [Turn(2.0 * i, 2.0 * i + 1.5, label) for i, label in enumerate(labels)]
    return Diarization(turns=turns, centroids=dict(centroids))


def test_each_speaker_takes_the_closest_voice_one_to_one():
    d = diarization(SPEAKER_00=unit(1, 0, 0), SPEAKER_01=unit(0, 1, 0), SPEAKER_02=unit(0, 0, 1))
    named, table = name_speakers(d, {"Bob": unit(0.1, 1, 0), "Alice": unit(1, 0.1, 0)})
    assert named.names == {"SPEAKER_00": "Alice", "SPEAKER_01": "Bob"}
    rows = {row["label"]: row for row in table}
    assert rows["SPEAKER_02"]["name"] is None  # a stranger keeps its label
    assert rows["SPEAKER_00"]["similarity"] == pytest.approx(0.995, abs=1e-3)


def test_two_speakers_never_share_a_name_even_when_both_are_close():
    d = diarization(SPEAKER_00=at(0.95), SPEAKER_01=at(0.9))
    named, _ = name_speakers(d, {"Alice": unit(1, 0, 0)})
    assert named.names == {"SPEAKER_00": "Alice"}  # the closer one; the other stays anonymous


def test_a_voice_below_the_threshold_names_no_one():
    below = MATCH_THRESHOLD - 0.05
    named, table = name_speakers(diarization(SPEAKER_00=at(below)), {"Alice": unit(1, 0, 0)})
    assert named.names == {}
    assert table == [{"label": "SPEAKER_00", "name": None, "similarity": pytest.approx(below, abs=1e-3)}]
    named, _ = name_speakers(diarization(SPEAKER_00=at(MATCH_THRESHOLD + 0.01)), {"Alice": unit(1, 0, 0)})
    assert named.names == {"SPEAKER_00": "Alice"}


def test_without_centroids_nothing_is_named():
    d = Diarization(turns=[Turn(0, 1, "A")])  # a pyannote hub pipeline gives no centroids
    named, table = name_speakers(d, {"Alice": unit(1, 0, 0)})
    assert named.names == {} and table == [{"label": "A", "name": None, "similarity": None}]


def test_names_replace_labels_in_words_segments_and_diarization_and_speakers_lists_them():
    d = diarization(SPEAKER_00=unit(1, 0, 0), SPEAKER_01=unit(0, 1, 0))
    named, table = name_speakers(d, {"Alice": unit(0, 1, 0), "Carol": unit(0, 0, 1)})
    words = [Word(" hello", 0.1, 0.6, 0.9), Word(" there", 2.1, 2.6, 0.9)]
    segments = assign_speakers([Segment(0.1, 2.6, "hello there", words)], named)
    doc = completed_document(
        "j", Transcript("en", segments), segments, named, duration=4, model="m", timings={}, speakers=table
    )
    assert [w["speaker"] for s in doc["segments"] for w in s["words"]] == ["SPEAKER_00", "Alice"]
    assert [s["speaker"] for s in doc["segments"]] == ["SPEAKER_00", "Alice"]
    assert [t["speaker"] for t in doc["diarization"]] == ["SPEAKER_00", "Alice"]
    assert doc["speakers"] == [
        {"label": "SPEAKER_00", "name": None, "similarity": 0.0},
        {"label": "SPEAKER_01", "name": "Alice", "similarity": 1.0},
    ]  # Carol, who did not speak, is simply absent


def test_voice_names():
    assert parse_voice_name("  Alice Smith ") == "Alice Smith"
    assert parse_voice_name("Zoë") == "Zoë"
    for bad in ("", "a,b", "a/b", "*", "SPEAKER_01", "x" * 65, "tab\there"):
        with pytest.raises(InvalidParameter) as caught:
            parse_voice_name(bad, "name")
        assert caught.value.field == "name"


def test_known_speakers_parameter():
    assert parse_known_speakers("Alice, Bob,Alice") == ("Alice", "Bob")
    assert parse_known_speakers(["*"]) == ("*",)
    options = TranscriptionOptions.from_params({"diarization": "true", "knownspeakers": "Alice,Bob"})
    assert options.known_speakers == ("Alice", "Bob")
    assert options.to_params()["knownSpeakers"] == "Alice,Bob"
    cases = {
        "knownSpeakers needs diarization": {"knownSpeakers": "Alice"},
        "at most 20": {"diarization": "true", "knownSpeakers": ",".join(f"p{i}" for i in range(21))},
        "either": {"diarization": "true", "knownSpeakers": "*,Alice"},
        "anonymous": {"diarization": "true", "knownSpeakers": "SPEAKER_00"},
    }
    for words, params in cases.items():
        with pytest.raises(InvalidParameter, match=words) as caught:
            TranscriptionOptions.from_params(params)
        assert caught.value.field == "knownSpeakers"


def _object_event(detail_type: str, key: str) -> dict:
    return {
        "detail-type": detail_type,
        "source": "aws.s3",
        "detail": {"bucket": {"name": "b"}, "object": {"key": key, "etag": "e"}},
    }


def test_speakers_objects_enrol_and_forget_the_bucket_s_voices_and_are_never_transcribed():
    assert enrolment_name("speakers/Alice Smith.wav") == "Alice Smith"
    assert enrolment_name("speakers/deeper/Alice.wav") is None
    assert enrolment_name("speakers/Alice.wav.json") is None
    [created] = jobs_from_payload(_object_event("Object Created", "speakers/Alice+Smith.wav"))
    assert created == VoiceTask("enrol", "b", "bucket:b", "Alice Smith", "speakers/Alice Smith.wav")
    [deleted] = jobs_from_payload(_object_event("Object Deleted", "speakers/Alice+Smith.wav"))
    assert deleted == VoiceTask("forget", "b", "bucket:b", "Alice Smith", None)
    for key in ("speakers/deeper/Alice.wav", "speakers/SPEAKER_01.wav", ".voices/abc", "speakers/Alice.wav.json"):
        [job] = jobs_from_payload(_object_event("Object Created", key))
        assert isinstance(job, Skip), key
    [other] = jobs_from_payload(_object_event("Object Deleted", "calls/a.wav"))
    assert isinstance(other, Skip)
    s3 = {"bucket": {"name": "b"}, "object": {"key": "speakers/Bo.mp3"}}
    record = {"eventName": "ObjectRemoved:Delete", "s3": s3}
    assert jobs_from_payload({"Records": [record]}) == [VoiceTask("forget", "b", "bucket:b", "Bo", None)]


def test_the_api_s_enrolment_message():
    message = {"voice": {"bucket": "b", "key": ".voices/abc", "owner": "client-a", "name": "Alice"}}
    [task] = jobs_from_payload(json.loads(json.dumps(message)))
    assert task == VoiceTask("enrol", "b", "client-a", "Alice", ".voices/abc")
    from whisperless.cloud.events import InvalidEvent

    with pytest.raises(InvalidEvent):  # only the API's clips, never any object in the bucket
        jobs_from_payload({"voice": {**message["voice"], "key": "calls/a.wav"}})


def test_openai_style_reference_voices():
    import base64

    from whisperless.contract.speakers import reference_voices

    clip = base64.b64encode(b"RIFF....WAVE").decode()
    assert reference_voices(["Alice"], [f"data:audio/wav;base64,{clip}"]) == [("Alice", b"RIFF....WAVE")]
    cases = [
        (["Alice", "Bob"], [f"data:audio/wav;base64,{clip}"], "known_speaker_references[]"),
        (["Alice"], ["https://example.com/a.wav"], "known_speaker_references[]"),
        (["Alice"], ["data:audio/wav;base64,@@@"], "known_speaker_references[]"),
        (["Alice", "Alice"], [f"data:audio/wav;base64,{clip}"] * 2, "known_speaker_names[]"),
        (["a/b"], [f"data:audio/wav;base64,{clip}"], "known_speaker_names[]"),
    ]
    for names, references, field in cases:
        with pytest.raises(InvalidParameter) as caught:
            reference_voices(names, references)
        assert caught.value.field == field, (names, references)


def test_openai_letters_skip_a_known_voice_s_name():
    from whisperless.cloud.openai_api import _speaker_letters

    segments = [{"speaker": s} for s in ("SPEAKER_00", "A", "SPEAKER_01", "SPEAKER_00", "Fiona")]
    # A voice enrolled as "A" keeps it; the anonymous speakers get the letters left, in order.
    assert _speaker_letters(segments) == {"SPEAKER_00": "B", "A": "A", "SPEAKER_01": "C", "Fiona": "Fiona"}
    many = [{"speaker": f"SPEAKER_{i:02d}"} for i in range(28)]
    assert list(_speaker_letters(many).values())[-3:] == ["Z", "AA", "AB"]


def test_workers_follow_a_cgroup_cpu_quota(monkeypatch, tmp_path):
    from whisperless.engine import onnx_models

    real_path = onnx_models.Path
    cpu_max = tmp_path / "cpu.max"
    monkeypatch.setattr(onnx_models, "Path", lambda p: cpu_max if p == "/sys/fs/cgroup/cpu.max" else real_path(p))
    monkeypatch.setattr(onnx_models.os, "sched_getaffinity", lambda pid: set(range(16)))
    cpu_max.write_text("200000 100000\n")  # a container limited to 2 CPUs on a 16-core host
    assert onnx_models.usable_cores() == 2
    cpu_max.write_text("150000 100000\n")
    assert onnx_models.usable_cores() == 2  # 1.5 CPUs: two threads share them
    cpu_max.write_text("max 100000\n")
    assert onnx_models.usable_cores() == 16
    cpu_max.unlink()
    assert onnx_models.usable_cores() == 16
