"""Render a result document as JSON, SRT, WebVTT or plain text.

Subtitle cues follow common captioning limits (the BBC's and Netflix's guidelines agree on
these): at most two lines of about 42 characters, at most ~7 s on screen, at least ~1 s. Cues
are built from the words' timings, so a long segment becomes several cues that each show while
their words are spoken; when diarized, each cue starts with its speaker. The API, the CLI and
the files written next to the audio all render through here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

MAX_LINE_CHARS = 42
MAX_LINES = 2
MAX_CUE_SECONDS = 7.0
MIN_CUE_SECONDS = 1.0
_BREAK_AFTER = (".", "?", "!", ",", ";", ":", "…", "。", "？", "！", "，")


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    lines: tuple[str, ...]


@dataclass(frozen=True)
class _Word:
    text: str  # with its leading space, as Whisper gives it
    start: float
    end: float


def _clock(seconds: float, decimal: str) -> str:
    millis = int(round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"


def _prefix(segment: dict[str, Any]) -> str:
    speaker = segment.get("speaker")
    return f"[{speaker}] " if speaker else ""


def _words(segment: dict[str, Any]) -> list[_Word]:
    words = [
        _Word(str(w.get("word", "")), float(w["start"]), float(w["end"]))
        for w in segment.get("words") or []
        if str(w.get("word", "")).strip()
    ]
    if words:
        return words
    # No word timings (a document from elsewhere): spread the segment's time over its words by length.
    parts = re.findall(r"\s*\S+", str(segment.get("text", "")))
    start, end = float(segment["start"]), float(segment["end"])
    total = sum(len(p) for p in parts) or 1
    out, at = [], start
    for part in parts:
        step = (end - start) * len(part) / total
        out.append(_Word(part, at, at + step))
        at += step
    return out


def _text(words: list[_Word]) -> str:
    return "".join(w.text for w in words).strip()


def _layout(words: list[_Word], prefix: str) -> tuple[str, ...] | None:
    """The words as at most MAX_LINES lines of at most MAX_LINE_CHARS (the speaker prefix on the
    first), lines as even as possible; None when they do not fit. A single word longer than a line
    gets a line of its own."""
    one = prefix + _text(words)
    if len(one) <= MAX_LINE_CHARS or len(words) == 1:
        return (one,)
    best: tuple[str, ...] | None = None
    for cut in range(1, len(words)):
        first, second = prefix + _text(words[:cut]), _text(words[cut:])
        if len(first) > MAX_LINE_CHARS or len(second) > MAX_LINE_CHARS:
            continue
        if best is None or max(len(first), len(second)) < max(len(line) for line in best):
            best = (first, second)
    return best


def _segment_cues(segment: dict[str, Any]) -> list[Cue]:
    prefix = _prefix(segment)
    cues: list[Cue] = []
    current: list[_Word] = []
    for word in _words(segment):
        candidate = current + [word]
        fits = _layout(candidate, prefix) is not None and word.end - candidate[0].start <= MAX_CUE_SECONDS
        if current and not fits:
            cues.append(_cue(current, prefix))
            candidate = [word]
        current = candidate
        # A cue that is well filled ends at punctuation rather than mid-clause in the next one.
        if word.text.strip().endswith(_BREAK_AFTER) and len(prefix + _text(current)) >= MAX_LINE_CHARS:
            cues.append(_cue(current, prefix))
            current = []
    if current:
        cues.append(_cue(current, prefix))
    return cues


def _cue(words: list[_Word], prefix: str) -> Cue:
    lines = _layout(words, prefix) or (prefix + _text(words),)
    return Cue(words[0].start, words[-1].end, lines)


def cues(doc: dict[str, Any]) -> list[Cue]:
    """The document's subtitle cues, in time order, each shown at least MIN_CUE_SECONDS when the
    next cue leaves room."""
    out = [cue for segment in doc.get("segments", []) for cue in _segment_cues(segment)]
    for i, cue in enumerate(out):
        if cue.end - cue.start < MIN_CUE_SECONDS:
            limit = out[i + 1].start if i + 1 < len(out) else cue.start + MIN_CUE_SECONDS
            out[i] = Cue(cue.start, max(cue.end, min(cue.start + MIN_CUE_SECONDS, limit)), cue.lines)
    return out


def to_srt(doc: dict[str, Any]) -> str:
    return "\n".join(
        f"{i}\n{_clock(c.start, ',')} --> {_clock(c.end, ',')}\n" + "\n".join(c.lines) + "\n"
        for i, c in enumerate(cues(doc), start=1)
    )


def to_vtt(doc: dict[str, Any]) -> str:
    body = (f"{_clock(c.start, '.')} --> {_clock(c.end, '.')}\n" + "\n".join(c.lines) + "\n" for c in cues(doc))
    return "WEBVTT\n\n" + "\n".join(body)


def to_txt(doc: dict[str, Any]) -> str:
    segments = doc.get("segments", [])
    if any(s.get("speaker") for s in segments):
        return "".join(f"{_prefix(s)}{s['text']}\n" for s in segments)
    return doc.get("text", "") + "\n"


def to_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"


RENDERERS = {"json": to_json, "srt": to_srt, "vtt": to_vtt, "txt": to_txt}
#: Media types of the renderings (served by the API, stored as the sidecars' Content-Type).
MEDIA_TYPES = {
    "json": "application/json",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "txt": "text/plain; charset=utf-8",
}
