"""Redaction and sentiment in the engine: Presidio (spaCy's English model) on made documents, on
pyannote's real recording (names and places) and on made speech (name, phone, card, e-mail):
the redacted result and every rendering of it hold none of the personal data."""

from __future__ import annotations

import pytest

from support import assert_no_secrets, heard_secrets, made_speech
from whisperless.contract.formats import RENDERERS
from whisperless.contract.options import TranscriptionOptions
from whisperless.contract.redaction import SUPPORTED_ENTITIES
from whisperless.engine import redact
from whisperless.engine.redact import digit_runs, redact_document


def _doc(*segments: str, language: str = "en") -> dict:
    """A document whose words are the space-separated tokens of each segment, 0.5 s apart."""
    out, clock = [], 0.0
    for text in segments:
        words = []
        for token in text.split():
            words.append({"word": " " + token, "start": clock, "end": clock + 0.4, "timestamp": clock + 0.4})
            clock += 0.5
        out.append({"start": words[0]["start"], "end": words[-1]["end"], "text": text, "words": words})
    return {"id": "j", "status": "completed", "language": language, "text": " ".join(segments), "segments": out}


def test_the_contract_names_only_types_the_analyzer_supports():
    assert set(SUPPORTED_ENTITIES) <= set(redact.supported_entities())


@pytest.mark.parametrize(
    "text, digits",
    [
        ("call five five five, one two one two now", ["5551212"]),
        ("it is 5, 5, 5, 1, 2, 1, 2.", ["5551212"]),
        ("card 4-1-1. 1-1-1-1 thanks", ["4111111"]),
        ("double five triple one two", ["551112"]),
        ("Oh, I see. one two", ["12"]),  # "oh" starts no number
        ("we sold 1,000,000 units", []),  # a written amount is not a digit run
        ("one and two", ["1", "2"]),
        ("Call me back at 5' 5\", 1-2-1-2 My card", ["551212"]),  # ASR's feet and inches
    ],
)
def test_spoken_digit_runs(text, digits):
    assert [run[2] for run in digit_runs(text)] == digits


def test_words_become_tags_with_their_times_and_texts_are_rebuilt():
    doc = _doc(
        "Hi, this is Maria Garcia, call me at five five five,",
        "one two one two or write to maria at example dot com.",
    )
    times = [(w["start"], w["end"]) for s in doc["segments"] for w in s["words"]]
    redact_document(doc, ["PERSON", "PHONE_NUMBER", "EMAIL_ADDRESS"], language="en")
    words = [w["word"] for s in doc["segments"] for w in s["words"]]
    assert [(w["start"], w["end"]) for s in doc["segments"] for w in s["words"]] == times
    assert words[3:5] == [" [PERSON]", " [PERSON]"]
    # The number read across the segment boundary is found whole.
    assert words[8:15] == [" [PHONE_NUMBER]"] * 7
    assert doc["segments"][0]["text"] == "Hi, this is [PERSON] call me at [PHONE_NUMBER]"
    assert doc["segments"][1]["text"] == "[PHONE_NUMBER] or write to [EMAIL_ADDRESS]"
    assert doc["text"] == " ".join(s["text"] for s in doc["segments"])
    # One redaction per span, the number's reaching from the first segment into the second.
    assert [r["type"] for r in doc["redactions"]] == ["PERSON", "PHONE_NUMBER", "EMAIL_ADDRESS"]
    assert (doc["redactions"][1]["start"], doc["redactions"][1]["end"]) == (times[8][0], times[14][1])
    assert set(doc["redactions"][0]) == {"type", "start", "end", "score"}
    assert doc["redactions"][0]["start"] == times[3][0] and doc["redactions"][0]["end"] == times[4][1]
    assert doc["redaction"] == {
        "entities": ["PERSON", "PHONE_NUMBER", "EMAIL_ADDRESS"],
        "language": "en",
        "recognizers": "spacy-ner+patterns",
    }
    assert_no_secrets(doc, ["Maria", "Garcia", "five", "5551212", "example"])


def test_a_number_asr_wrote_as_feet_and_inches_is_still_a_phone_number():
    doc = _doc("Hi, this is Maria. Call me back at 5' 5\", 1-2-1-2 My card number is")
    redact_document(doc, ["PHONE_NUMBER"], language="en")
    assert doc["text"] == "Hi, this is Maria. Call me back at [PHONE_NUMBER] My card number is"
    assert_no_secrets(doc, ["1212"])


def test_only_asked_types_are_redacted():
    doc = _doc("Maria Garcia lives in Denver, call 555 0100 123.")
    redact_document(doc, ["LOCATION"], language="en")
    assert doc["text"] == "Maria Garcia lives in [LOCATION] call 555 0100 123."


def test_other_languages_get_the_patterns_and_say_what_was_not_looked_for():
    doc = _doc(
        "Ich bin Anna Schmidt, schreiben Sie an anna.schmidt@example.de oder 4111 1111 1111 1111.", language="de"
    )
    redact_document(doc, ["PERSON", "EMAIL_ADDRESS", "CREDIT_CARD"], language="de")
    assert "[EMAIL_ADDRESS]" in doc["text"] and "[CREDIT_CARD]" in doc["text"]
    assert "Anna Schmidt" in doc["text"]  # named entities need a model of the language
    assert doc["redaction"]["recognizers"] == "patterns"
    assert doc["redaction"]["notLookedFor"] == ["PERSON"]
    assert "PERSON" in doc["redaction"]["note"] and "'de'" in doc["redaction"]["note"]


def test_sentiment_per_segment_overall_and_per_speaker():
    from whisperless.engine.sentiment import add_sentiment

    doc = _doc("Thank you, that was really helpful and friendly.", "This is terrible, I am very disappointed.")
    doc["segments"][0]["speaker"], doc["segments"][1]["speaker"] = "SPEAKER_00", "SPEAKER_01"
    doc["diarization"] = []
    add_sentiment(doc, language="en")
    assert [s["sentiment"]["label"] for s in doc["segments"]] == ["positive", "negative"]
    assert -1 <= doc["sentiment"]["score"] <= 1
    assert doc["sentiment"]["speakers"]["SPEAKER_00"]["label"] == "positive"
    assert doc["sentiment"]["speakers"]["SPEAKER_01"]["label"] == "negative"
    german = _doc("Das war sehr gut.", language="de")
    add_sentiment(german, language="de")
    assert "English only" in german["sentiment"]["unavailable"] and "sentiment" not in german["segments"][0]


def _all_outputs(document: dict) -> list[str]:
    return [render(document) for render in RENDERERS.values()]


def test_real_speech_names_and_places_are_gone_from_every_rendering(engine, sample_wav):
    options = TranscriptionOptions.from_params(
        {"redact": "PERSON,LOCATION", "redactionOutput": "redacted_and_unredacted", "sentiment": "true"}
    )
    result = engine.process(sample_wav, options)
    secrets = ["Diane", "Sheila", "Jersey", "Texas", "Chicago"]
    # The real recording says them, and the copy kept on request still holds them.
    assert all(secret in result.unredacted["text"] for secret in secrets), result.unredacted["text"]
    assert result.redacted_audio is None
    for rendering in [result.document, *_all_outputs(result.document)]:
        assert_no_secrets(rendering, secrets)
    assert {"PERSON", "LOCATION"} <= {r["type"] for r in result.document["redactions"]}
    assert result.document["sentiment"]["label"] in ("positive", "neutral", "negative")
    assert "redact" in result.document["timings"] and "redactions" not in result.unredacted


def test_made_speech_name_phone_card_and_email_are_gone(engine, tmp_path):
    from whisperless.engine.audio import decode_audio

    wav = made_speech(tmp_path / "call.wav")
    options = TranscriptionOptions.from_params(
        {"language": "en", "redact": "pii", "redactionOutput": "redacted_and_unredacted", "redactAudio": "true"}
    )
    result = engine.process(wav, options)
    heard = heard_secrets(result.unredacted)
    for rendering in [result.document, *_all_outputs(result.document)]:
        assert_no_secrets(rendering, heard)
    assert {"PERSON", "PHONE_NUMBER", "CREDIT_CARD", "EMAIL_ADDRESS"} <= {
        r["type"] for r in result.document["redactions"]
    }
    # The redacted audio: the same length, toned where each span was.
    assert result.redacted_audio is not None and result.redacted_audio[:4] == b"RIFF"
    (tmp_path / "redacted.wav").write_bytes(result.redacted_audio)
    original, toned = decode_audio(wav), decode_audio(tmp_path / "redacted.wav")
    assert abs(original.size - toned.size) <= 1
    first = result.document["redactions"][0]
    middle = int((first["start"] + first["end"]) / 2 * 16000)
    assert not (original[middle : middle + 160] == toned[middle : middle + 160]).all()
