"""The benchmark scoring helpers: per-part WER and whole-file DER on made-up documents."""

from __future__ import annotations

import pytest

from bench.corpus import der_of, wer_by_kind
from bench.long_audio import label, parse_mode

PARTS = [
    {
        "kind": "real",
        "start": 0.0,
        "end": 4.0,
        "complete": True,
        "text": "hello there",
        "turns": [(0.0, 2.0, "a"), (2.0, 4.0, "b")],
    },
    {
        "kind": "synthetic",
        "start": 5.0,
        "end": 9.0,
        "complete": True,
        "text": "the report is due",
        "turns": [(5.0, 9.0, "c")],
    },
    {"kind": "real", "start": 10.0, "end": 11.0, "complete": False, "text": "cut off", "turns": []},
]


def word(text, start, end):
    return {"word": text, "start": start, "end": end}


def test_words_are_scored_against_the_part_they_fall_in():
    words = [
        word("Hello", 0.1, 0.5),
        word("there.", 0.6, 1.0),
        word("The", 5.1, 5.3),
        word("report", 5.4, 5.8),
        word("was", 6.0, 6.2),
        word("due", 6.3, 6.6),
        word("cut", 10.1, 10.3),
    ]  # an incomplete part: left out
    out = wer_by_kind(words, PARTS)
    assert out["real"] == 0.0
    assert out["synthetic"] == pytest.approx(0.25)
    assert out["all"] == pytest.approx(1 / 6)


def test_der_is_zero_for_the_reference_itself_and_labels_are_free():
    hyp = [(0.0, 2.0, "x"), (2.0, 4.0, "y"), (5.0, 9.0, "z")]
    assert der_of(hyp, PARTS) == pytest.approx(0.0)
    assert der_of([(0.0, 9.0, "x")], PARTS) > 0.3


def test_mode_names():
    assert parse_mode("seq") == ("seq", 0, 5)
    assert parse_mode("b8k1t2") == ("batched", 8, 1)
    assert label("b16") == "batched, batch 16, beam 5"


def test_redaction_scoring_aligns_spelled_and_written_numbers():
    from bench.redaction import score

    said = "call me at five five five, one two one two, Maria"
    entities = [("PHONE_NUMBER", "five five five, one two one two"), ("PERSON", "Maria")]
    heard = [" Call", " me", " at", " 555-1212,", " Maria", " please"]
    result = score(said, entities, heard, [False, False, False, True, False, True])
    total = result["total"]
    assert (total.tp, total.fn, total.fp) == (1, 1, 1)
    assert result["types"]["PHONE_NUMBER"].caught == 1 and result["types"]["PERSON"].caught == 0
    assert result["missed"] == ["PERSON 'Maria'"]
