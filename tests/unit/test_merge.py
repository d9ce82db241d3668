"""Words get the speaker they overlap most (nearest if none); segments split on a change."""

from __future__ import annotations

from whisperless.contract.formats import to_srt, to_vtt
from whisperless.engine.merge import assign_speakers
from whisperless.engine.types import Diarization, Segment, Turn, Word


def _segment(*words):
    ws = [Word(w, s, e, 0.9) for w, s, e in words]
    return Segment(ws[0].start, ws[-1].end, "".join(w.word for w in ws).strip(), ws)


def test_words_take_the_most_overlapping_speaker_and_segments_split():
    turns = [Turn(0.0, 2.0, "B"), Turn(2.0, 4.0, "A")]
    seg = _segment((" Hi", 0.1, 0.5), (" there.", 0.6, 2.3), (" Hello", 2.5, 3.0), (" back.", 3.1, 3.6))
    out = assign_speakers([seg], Diarization(turns=turns, exclusive=turns))
    # B speaks first, so B is SPEAKER_00.
    assert [(s.text, s.speaker) for s in out] == [("Hi there.", "SPEAKER_00"), ("Hello back.", "SPEAKER_01")]
    assert out[0].start == 0.1 and out[0].end == 2.3 and out[1].start == 2.5


def test_a_word_in_no_turn_takes_the_nearest_one():
    turns = [Turn(0.0, 1.0, "X"), Turn(5.0, 6.0, "Y")]
    seg = _segment((" late", 4.2, 4.6))
    out = assign_speakers([seg], Diarization(turns=turns, exclusive=turns))
    assert out[0].speaker == "SPEAKER_01"


def test_subtitles_carry_speakers_and_times():
    doc = {"segments": [{"start": 61.5, "end": 63.25, "text": "Hi.", "speaker": "SPEAKER_00"}]}
    assert to_srt(doc) == "1\n00:01:01,500 --> 00:01:03,250\n[SPEAKER_00] Hi.\n"
    assert to_vtt(doc).startswith("WEBVTT\n\n00:01:01.500 --> 00:01:03.250\n[SPEAKER_00] Hi.")
