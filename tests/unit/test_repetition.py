"""The engine's guard against runaway repetition, on what faster-whisper really produced when it
looped (base on pyannote's English sample told it is Korean or Cantonese, temperature fallback
off: bench/repetition.py), and on real speech that repeats itself a little."""

from __future__ import annotations

from whisperless.engine.types import Segment
from whisperless.engine.whisper import drop_runaway_repetition

# Segment starts of the Korean loop: "안녕하세요." ("hello"), one segment each, 21 times in 30 s.
KOREAN_LOOP = [6.4, 7.5, 8.3, 9.0, 9.9, 10.0, 10.6, 11.7, 12.5, 12.5, 14.0, 14.4, 15.9, 16.3, 18.0, 20.0, 22.7]


def segments(texts_and_starts) -> list[Segment]:
    return [Segment(start=start, end=start + 0.5, text=text, words=[]) for text, start in texts_and_starts]


def test_one_phrase_over_and_over_is_cut_to_a_few():
    kept = drop_runaway_repetition(segments(("안녕하세요.", t) for t in KOREAN_LOOP))
    assert [s.start for s in kept] == KOREAN_LOOP[:4]


def test_a_segment_that_loops_within_itself_is_left_out():
    looping = segments([(" Hello" + "." * 70, 6.4), ("He " * 300, 8.0), ("I didn't know you were there.", 9.0)])
    assert [s.text for s in drop_runaway_repetition(looping)] == ["I didn't know you were there."]


def test_speech_that_repeats_itself_a_little_is_kept():
    said = [
        ("Hello.", 6.4),
        ("Hello.", 7.0),
        ("Oh, hello.", 7.6),
        ("I didn't know you were there.", 8.4),
        ("No, no, no, no.", 10.0),
        ("Hello.", 12.0),
    ]
    assert drop_runaway_repetition(segments(said)) == segments(said)


def test_the_same_phrase_far_apart_is_kept():
    apart = segments(("Thank you.", 40.0 * i) for i in range(10))
    assert drop_runaway_repetition(apart) == apart


def test_a_number_read_out_is_kept_but_a_digit_loop_is_not():
    card = "My card number is 41, one, one, one, 1, 1, 1, 1, 1, 1, 1, 1, 1."  # tiny.en, made speech
    phone = "five five five, one two one two, five five five, one two one two"
    loop = "1-" * 120 + "1"
    kept = drop_runaway_repetition(segments([(card, 1.0), (phone, 5.0), (loop, 9.0)]))
    assert [s.text for s in kept] == [card, phone]
