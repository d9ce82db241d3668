"""The contract's request parameters: empty means unset, bad values name their field."""

from __future__ import annotations

import pytest

from whisperless.contract.options import TranscriptionOptions
from whisperless.errors import InvalidParameter


def test_the_seed_clients_all_empty_form_means_defaults():
    seed = {
        "fileType": "",
        "diarization": "",
        "numSpeakers": "",
        "initialPrompt": "",
        "language": "",
        "task": "",
        "callbackURL": "",
    }
    assert TranscriptionOptions.from_params(seed) == TranscriptionOptions()


@pytest.mark.parametrize("raw,expected", [("true", True), ("TRUE", True), ("1", True), ("False", False), ("0", False)])
def test_diarization_accepts_form_booleans(raw, expected):
    assert TranscriptionOptions.from_params({"diarization": raw}).diarization is expected


def test_s3_metadata_names_are_lower_case_and_fall_back_to_defaults():
    meta = {"diarization": "true", "numspeakers": "2", "initialprompt": "Kubernetes", "language": "DE"}
    opts = TranscriptionOptions.from_params(meta, defaults={"task": "transcribe", "language": "en"})
    assert (opts.diarization, opts.num_speakers, opts.initial_prompt, opts.language) == (True, 2, "Kubernetes", "de")
    assert TranscriptionOptions.from_params({}, defaults={"language": "fr"}).language == "fr"


@pytest.mark.parametrize(
    "params,field",
    [
        ({"task": "summarize"}, "task"),
        ({"numSpeakers": "two"}, "numSpeakers"),
        ({"numSpeakers": "0"}, "numSpeakers"),
        ({"maxSpeakers": "1000"}, "maxSpeakers"),
        ({"minSpeakers": "4", "maxSpeakers": "2"}, "minSpeakers"),
        ({"language": "xx"}, "language"),
        ({"diarization": "maybe"}, "diarization"),
        ({"redact": "PERSON,SHOE_SIZE"}, "redact"),
        ({"redact": " , "}, "redact"),
        ({"redact": "pii", "redactionOutput": "both"}, "redactionOutput"),
        ({"redactionOutput": "redacted_and_unredacted"}, "redactionOutput"),
        ({"redactAudio": "true"}, "redactAudio"),
        ({"redact": "pii", "redactAudio": "loud"}, "redactAudio"),
        ({"sentiment": "yes please"}, "sentiment"),
    ],
)
def test_unknown_values_are_refused_naming_the_field(params, field):
    with pytest.raises(InvalidParameter) as err:
        TranscriptionOptions.from_params(params)
    assert err.value.field == field


def test_round_trip_through_contract_names():
    opts = TranscriptionOptions(diarization=True, num_speakers=2, language="en", initial_prompt="x")
    assert TranscriptionOptions.from_params(opts.to_params()) == opts


def test_redact_pii_means_every_identifier_type_and_lists_are_case_free():
    from whisperless.contract.redaction import OTHER_ENTITIES, PII_ENTITIES

    assert TranscriptionOptions.from_params({"redact": "PII"}).redact == PII_ENTITIES
    assert not set(OTHER_ENTITIES) & set(TranscriptionOptions.from_params({"redact": "pii"}).redact)
    picked = TranscriptionOptions.from_params({"redact": " email_address, Person ,PERSON"}).redact
    assert picked == ("PERSON", "EMAIL_ADDRESS")
    assert TranscriptionOptions.from_params({"redact": "pii,DATE_TIME"}).redact == PII_ENTITIES + ("DATE_TIME",)


def test_redaction_parameters_from_s3_metadata_names():
    meta = {"redact": "PERSON,PHONE_NUMBER", "redactionoutput": "Redacted_And_Unredacted", "redactaudio": "TRUE"}
    opts = TranscriptionOptions.from_params({**meta, "sentiment": "1"})
    assert opts.redact == ("PERSON", "PHONE_NUMBER")
    assert opts.keeps_unredacted and opts.redact_audio and opts.sentiment
    assert TranscriptionOptions.from_params(opts.to_params()) == opts
    assert opts.to_params()["redact"] == "PERSON,PHONE_NUMBER"
    assert not TranscriptionOptions.from_params({"redact": "pii"}).keeps_unredacted


@pytest.mark.parametrize(
    "raw,code",
    [
        ("en", "en"),
        ("EN", "en"),
        ("en-US", "en"),
        ("en_US", "en"),
        ("pt-BR", "pt"),
        ("zh-Hant-TW", "zh"),
        ("jv", "jw"),  # ISO 639-1 for Javanese; Whisper's token is <|jw|>
        ("jw", "jw"),
        ("nb", "no"),
        ("iw", "he"),
        ("yue-HK", "yue"),
        ("haw", "haw"),
    ],
)
def test_iso_codes_bcp47_tags_and_locales_become_whispers_code(raw, code):
    assert TranscriptionOptions.from_params({"language": raw}).language == code


@pytest.mark.parametrize("raw", ["xx", "xx-US", "english", "e", "en--US", "en-", "-en", "e n"])
def test_other_language_spellings_are_refused_naming_the_field(raw):
    with pytest.raises(InvalidParameter) as err:
        TranscriptionOptions.from_params({"language": raw})
    assert err.value.field == "language" and repr(raw) in err.value.message


@pytest.mark.parametrize("raw,expected", [("on", True), ("ON", True), ("off", False), ("yes", True), ("no", False)])
def test_an_html_checkbox_value_is_a_boolean(raw, expected):
    assert TranscriptionOptions.from_params({"diarization": raw}).diarization is expected


@pytest.mark.parametrize(
    "model,language,task,field",
    [
        ("tiny.en", None, "translate", "task"),
        ("tiny.en", "de", "transcribe", "language"),
        ("/models/my-distil.en", "fr", "transcribe", "language"),
        ("base", "yue", "transcribe", "language"),  # only the large-v3 generation has a <|yue|> token
        ("Systran/faster-whisper-small", "yue", "transcribe", "language"),
    ],
)
def test_a_model_refuses_what_it_cannot_do_naming_the_field(model, language, task, field):
    from whisperless.contract.languages import abilities_from_name, check_supported

    with pytest.raises(InvalidParameter) as err:
        check_supported(abilities_from_name(model), language, task)
    assert err.value.field == field and model in err.value.message


@pytest.mark.parametrize(
    "model,language,task",
    [
        ("tiny.en", "en", "transcribe"),
        ("tiny.en", None, "transcribe"),
        ("base", "de", "translate"),
        ("large-v3", "yue", "transcribe"),
        ("turbo", "yue", "transcribe"),
        ("/models/custom-conversion", "yue", "translate"),  # unknown by name: the loaded model decides
    ],
)
def test_a_model_accepts_what_it_can_do(model, language, task):
    from whisperless.contract.languages import abilities_from_name, check_supported

    check_supported(abilities_from_name(model), language, task)
