"""Sentence-sized segments from word timings (engine.segments) and caption-sized subtitle cues
(contract.formats)."""

from __future__ import annotations

from whisperless.contract.formats import MAX_CUE_SECONDS, MAX_LINE_CHARS, cues, to_srt, to_vtt
from whisperless.engine.segments import MAX_SEGMENT_SECONDS, sentence_segments
from whisperless.engine.types import Decoding, Segment, Word

DECODING = Decoding(seek=0, temperature=0.0, avg_logprob=-0.2, compression_ratio=1.4, no_speech_prob=0.01)


def _segment(text: str, start: float = 0.0, step: float = 0.4, pauses: dict[int, float] | None = None) -> Segment:
    """One segment whose words follow each other every ``step`` s (plus ``pauses`` before word i)."""
    words, at = [], start
    for i, token in enumerate(text.split()):
        at += (pauses or {}).get(i, 0.0)
        words.append(Word(" " + token, at, at + step * 0.8, 0.9))
        at += step
    return Segment(words[0].start, words[-1].end, text, words, decoding=DECODING, tokens=[1, 2, 3])


def _texts(segments):
    return [s.text for s in segments]


def test_a_long_segment_splits_after_each_sentence():
    seg = _segment("Hello there. How are you today? I am fine! Thanks for asking.")
    out = sentence_segments([seg])
    assert _texts(out) == ["Hello there.", "How are you today?", "I am fine!", "Thanks for asking."]
    assert [w.word for s in out for w in s.words] == [w.word for w in seg.words]  # nothing lost or moved
    assert all(s.decoding == DECODING and s.tokens is None for s in out)  # window kept, text re-encoded later
    assert out[1].start == seg.words[2].start and out[1].end == seg.words[5].end


def test_abbreviations_do_not_end_a_sentence_and_a_short_segment_is_kept_whole():
    seg = _segment("Mr. Smith met Dr. Jones.")
    (out,) = sentence_segments([seg])
    assert out is seg and out.tokens == [1, 2, 3]


def test_a_sentence_that_runs_into_the_next_segment_is_made_whole_but_never_across_speakers():
    first = _segment("I am from Chicago. At", start=0.0)
    second = _segment("least they call me a Yankee.", start=first.end + 0.1)
    assert _texts(sentence_segments([first, second])) == ["I am from Chicago.", "At least they call me a Yankee."]
    first.speaker, second.speaker = "SPEAKER_00", "SPEAKER_01"
    assert _texts(sentence_segments([first, second])) == ["I am from Chicago.", "At", "least they call me a Yankee."]


def test_a_long_pause_ends_a_segment_without_punctuation():
    seg = _segment("so we went home and then we slept", pauses={4: 1.5})
    assert _texts(sentence_segments([seg])) == ["so we went home", "and then we slept"]


def test_a_run_on_sentence_is_cut_at_a_clause_then_held_under_the_limit():
    words = " ".join(f"word{i}," if i == 24 else f"word{i}" for i in range(60))
    out = sentence_segments([_segment(words, step=0.5)])
    assert all(s.end - s.start <= MAX_SEGMENT_SECONDS for s in out)
    assert any(s.text.endswith("word24,") for s in out)  # the comma near the middle, not an arbitrary word
    assert sum(len(s.words) for s in out) == 60


def _doc(*segments: Segment, speaker: str | None = None) -> dict:
    out = []
    for s in segments:
        doc = {"start": s.start, "end": s.end, "text": s.text}
        doc["words"] = [{"word": w.word, "start": w.start, "end": w.end} for w in s.words]
        if speaker:
            doc["speaker"] = speaker
        out.append(doc)
    return {"segments": out}


def test_cues_keep_to_two_lines_of_42_characters_and_seven_seconds():
    text = " ".join(["Subtitles", "should", "be", "readable", "at", "a", "glance,"] * 8)
    doc = _doc(_segment(text, step=0.3), speaker="SPEAKER_01")
    made = cues(doc)
    assert len(made) > 3
    for cue in made:
        assert 1 <= len(cue.lines) <= 2 and all(len(line) <= MAX_LINE_CHARS for line in cue.lines)
        assert cue.end - cue.start <= MAX_CUE_SECONDS
        assert cue.lines[0].startswith("[SPEAKER_01] ")
    assert " ".join(line.removeprefix("[SPEAKER_01] ") for c in made for line in c.lines) == text
    assert all(a.end <= b.start for a, b in zip(made, made[1:], strict=False))


def test_srt_and_vtt_number_and_time_each_cue():
    doc = _doc(_segment("Hello there.", start=1.0), _segment("Second one here.", start=5.0))
    srt = to_srt(doc)
    assert srt.startswith("1\n00:00:01,000 --> 00:00:02,000\nHello there.\n\n2\n00:00:05,000 --> ")
    assert to_vtt(doc).startswith("WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nHello there.\n\n00:00:05.000")
