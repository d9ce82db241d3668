"""Language codes as users send them, and what a Whisper model can do with them.

Users send ISO 639-1 codes (the contract), locale and BCP-47 tags (``en-US``, ``en_US``,
``pt-BR``) and the odd code Whisper spells differently (``jv``, Whisper's ``jw``); all become
the code Whisper's tokenizer knows. Which of those a model accepts depends on the model:
English-only models (``*.en``) take English only and cannot translate, and only the large-v3
generation knows Cantonese (``yue``, its 100th language token). Asked for a language token it
does not have, a model decodes with no language at all, slowly and into loops (``base`` with
``yue``: 23 s for 30 s of audio). Light: the API function checks requests with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath

from ..errors import InvalidParameter

# Whisper's language tokens in the tokenizer's order, each with the lowercase English name that
# Whisper, and so OpenAI's API, reports (openai/whisper, whisper/tokenizer.py): the first 99 are
# every multilingual model's, "yue" came with large-v3.
LANGUAGES = {
    "en": "english",
    "zh": "chinese",
    "de": "german",
    "es": "spanish",
    "ru": "russian",
    "ko": "korean",
    "fr": "french",
    "ja": "japanese",
    "pt": "portuguese",
    "tr": "turkish",
    "pl": "polish",
    "ca": "catalan",
    "nl": "dutch",
    "ar": "arabic",
    "sv": "swedish",
    "it": "italian",
    "id": "indonesian",
    "hi": "hindi",
    "fi": "finnish",
    "vi": "vietnamese",
    "he": "hebrew",
    "uk": "ukrainian",
    "el": "greek",
    "ms": "malay",
    "cs": "czech",
    "ro": "romanian",
    "da": "danish",
    "hu": "hungarian",
    "ta": "tamil",
    "no": "norwegian",
    "th": "thai",
    "ur": "urdu",
    "hr": "croatian",
    "bg": "bulgarian",
    "lt": "lithuanian",
    "la": "latin",
    "mi": "maori",
    "ml": "malayalam",
    "cy": "welsh",
    "sk": "slovak",
    "te": "telugu",
    "fa": "persian",
    "lv": "latvian",
    "bn": "bengali",
    "sr": "serbian",
    "az": "azerbaijani",
    "sl": "slovenian",
    "kn": "kannada",
    "et": "estonian",
    "mk": "macedonian",
    "br": "breton",
    "eu": "basque",
    "is": "icelandic",
    "hy": "armenian",
    "ne": "nepali",
    "mn": "mongolian",
    "bs": "bosnian",
    "kk": "kazakh",
    "sq": "albanian",
    "sw": "swahili",
    "gl": "galician",
    "mr": "marathi",
    "pa": "punjabi",
    "si": "sinhala",
    "km": "khmer",
    "sn": "shona",
    "yo": "yoruba",
    "so": "somali",
    "af": "afrikaans",
    "oc": "occitan",
    "ka": "georgian",
    "be": "belarusian",
    "tg": "tajik",
    "sd": "sindhi",
    "gu": "gujarati",
    "am": "amharic",
    "yi": "yiddish",
    "lo": "lao",
    "uz": "uzbek",
    "fo": "faroese",
    "ht": "haitian creole",
    "ps": "pashto",
    "tk": "turkmen",
    "nn": "nynorsk",
    "mt": "maltese",
    "sa": "sanskrit",
    "lb": "luxembourgish",
    "my": "myanmar",
    "bo": "tibetan",
    "tl": "tagalog",
    "mg": "malagasy",
    "as": "assamese",
    "tt": "tatar",
    "haw": "hawaiian",
    "ln": "lingala",
    "ha": "hausa",
    "ba": "bashkir",
    "jw": "javanese",
    "su": "sundanese",
    "yue": "cantonese",
}
WHISPER_LANGUAGE_ORDER = tuple(LANGUAGES)
WHISPER_LANGUAGES = frozenset(WHISPER_LANGUAGE_ORDER)
_FIRST_GENERATION = frozenset(WHISPER_LANGUAGE_ORDER[:99])

# ISO 639-1 (and superseded ISO) codes that Whisper spells otherwise.
ALIASES = {
    "jv": "jw",  # Javanese: ISO 639-1 jv, Whisper jw
    "nb": "no",  # Norwegian Bokmål: Whisper's "no"
    "iw": "he",  # Hebrew, the pre-1989 ISO code (Java and Android still send it)
    "in": "id",  # Indonesian, likewise
    "ji": "yi",  # Yiddish, likewise
}
# A BCP-47 tag or POSIX locale: the language subtag, then region/script/variant subtags.
_TAG = re.compile(r"([a-z]{2,3})(?:[-_][a-z0-9]{1,8})*")


def normalize_language(value: str) -> str:
    """The Whisper language code for an ISO 639-1 code, a BCP-47 tag or a locale
    (``en``, ``en-US``, ``en_US``, ``pt-BR``, ``zh-Hant-TW``, ``jv``)."""
    text = str(value).strip().lower()
    match = _TAG.fullmatch(text)
    code = ALIASES.get(match.group(1), match.group(1)) if match else None
    if code not in WHISPER_LANGUAGES:
        raise InvalidParameter(
            f"language {value!r} is not a language Whisper knows (use an ISO 639-1 code such as 'en', "
            "or a tag such as 'en-US')",
            field="language",
        )
    return code


@dataclass(frozen=True)
class ModelAbilities:
    """What one Whisper model can be asked: its language tokens, and whether it translates."""

    name: str
    languages: frozenset[str]

    @property
    def multilingual(self) -> bool:
        return self.languages != {"en"}


def abilities_from_name(name: str) -> ModelAbilities | None:
    """Abilities read from a model's name (the API has only the configured name, not the model):
    ``*.en`` are English-only, the large-v3 generation (``large-v3``, ``large``, ``turbo``,
    ``distil-large-v3``, ...) knows all 100 languages, the others the first 99. None when the
    name says nothing (a folder, an unknown hub id): the worker then checks the loaded model."""
    base = PurePath(name).name.lower().removeprefix("faster-whisper-").removeprefix("whisper-")
    if base.endswith(".en"):
        return ModelAbilities(name, frozenset({"en"}))
    if base in ("large", "turbo") or "large-v3" in base:
        return ModelAbilities(name, WHISPER_LANGUAGES)
    if base in ("tiny", "base", "small", "medium", "large-v1", "large-v2", "distil-large-v2"):
        return ModelAbilities(name, _FIRST_GENERATION)
    return None


def check_supported(abilities: ModelAbilities | None, language: str | None, task: str) -> None:
    """Refuse a language or task the model cannot honour, naming the field."""
    if abilities is None:
        return
    if task == "translate" and not abilities.multilingual:
        raise InvalidParameter(
            f"task 'translate' needs a multilingual model; {abilities.name} is English-only", field="task"
        )
    if language is not None and language not in abilities.languages:
        if not abilities.multilingual:
            reason = f"{abilities.name} is English-only"
        else:
            reason = f"{abilities.name} has no {language!r} token (only the large-v3 generation knows 'yue')"
        raise InvalidParameter(f"language {language!r} is not available: {reason}", field="language")
