"""Words get the speaker whose turns hold them, phrases stay whole across a boundary inside them,
and segments split where the speaker changes."""

from __future__ import annotations

from whisperless.contract.formats import to_srt, to_vtt
from whisperless.engine.merge import assign_speakers, word_speakers
from whisperless.engine.types import Diarization, Segment, Turn, Word


def _segment(*words):
    ws = [Word(w, s, e, 0.9) for w, s, e in words]
    return Segment(ws[0].start, ws[-1].end, "".join(w.word for w in ws).strip(), ws)


def test_words_take_the_most_overlapping_speaker_and_segments_split():
    turns = [Turn(0.0, 2.0, "B"), Turn(2.0, 4.0, "A")]
    seg = _segment((" Hi", 0.1, 0.5), (" there.", 0.6, 2.3), (" Hello", 2.5, 3.0), (" back.", 3.1, 3.6))
    out = assign_speakers([seg], Diarization(turns=turns))
    # B speaks first, so B is SPEAKER_00.
    assert [(s.text, s.speaker) for s in out] == [("Hi there.", "SPEAKER_00"), ("Hello back.", "SPEAKER_01")]
    assert out[0].start == 0.1 and out[0].end == 2.3 and out[1].start == 2.5


def test_a_word_in_no_turn_takes_the_nearest_one():
    turns = [Turn(0.0, 1.0, "X"), Turn(5.0, 6.0, "Y")]
    seg = _segment((" late", 4.2, 4.6))
    out = assign_speakers([seg], Diarization(turns=turns))
    assert out[0].speaker == "SPEAKER_01"


def test_a_boundary_inside_a_phrase_does_not_split_it():
    # pyannote's sample as our pipeline turns it: A's turn runs on 0.5 s into B's first words
    # (they overlap from 14.31 s). Word by word, "And" and "I'm" are as much A's as B's and
    # "Sheila" is mostly B's; no pause inside the phrase, so it is all B's.
    turns = [Turn(10.41, 14.78, "A"), Turn(14.31, 17.89, "B")]
    phrase = [(" And", 14.38, 14.5), (" I'm", 14.5, 14.76), (" Sheila", 14.76, 15.06), (" in", 15.06, 15.2)]
    assert word_speakers([Word(w, s, e, 0.9) for w, s, e in phrase], turns) == ["B", "B", "B", "B"]


def test_the_speaker_changes_at_the_pause_when_a_turn_ends_late():
    # A's turn ends 0.25 s into B's first word, after a pause: the word is B's, though most of
    # it lies in A's turn.
    turns = [Turn(0.0, 2.25, "A"), Turn(2.25, 5.0, "B")]
    timed = [(" Right.", 1.0, 1.4), (" So", 2.0, 2.4), (" we", 2.4, 2.6), (" ship", 2.6, 3.0)]
    words = [Word(w, s, e, 0.9) for w, s, e in timed]
    assert word_speakers(words, turns) == ["A", "B", "B", "B"]
    out = assign_speakers([_segment(*timed)], Diarization(turns=turns))
    assert [(s.text, s.speaker) for s in out] == [("Right.", "SPEAKER_00"), ("So we ship", "SPEAKER_01")]


def test_clear_evidence_beats_the_cost_of_a_change():
    # A two-word interjection wholly inside another speaker's turn, with no pause around it, is
    # kept; a change there costs less than the words' evidence.
    turns = [Turn(0.0, 1.0, "A"), Turn(1.0, 1.6, "B"), Turn(1.6, 3.0, "A")]
    timed = [(" you", 0.5, 1.0), (" Yes,", 1.0, 1.3), (" sure.", 1.3, 1.6), (" Well", 1.6, 2.2)]
    assert word_speakers([Word(w, s, e, 0.9) for w, s, e in timed], turns) == ["A", "B", "B", "A"]


def test_without_turns_words_have_no_speaker():
    assert word_speakers([Word(" hi", 0.0, 0.3, 0.9)], []) == [None]


def test_subtitles_carry_speakers_and_times():
    doc = {"segments": [{"start": 61.5, "end": 63.25, "text": "Hi.", "speaker": "SPEAKER_00"}]}
    assert to_srt(doc) == "1\n00:01:01,500 --> 00:01:03,250\n[SPEAKER_00] Hi.\n"
    assert to_vtt(doc).startswith("WEBVTT\n\n00:01:01.500 --> 00:01:03.250\n[SPEAKER_00] Hi.")
