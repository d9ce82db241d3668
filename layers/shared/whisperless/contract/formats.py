"""Render a result document as JSON, SRT, WebVTT or plain text."""

from __future__ import annotations

import json
from typing import Any


def _clock(seconds: float, decimal: str) -> str:
    millis = int(round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"


def _cue_text(segment: dict[str, Any]) -> str:
    speaker = segment.get("speaker")
    return f"[{speaker}] {segment['text']}" if speaker else segment["text"]


def to_srt(doc: dict[str, Any]) -> str:
    cues = [
        f"{i}\n{_clock(s['start'], ',')} --> {_clock(s['end'], ',')}\n{_cue_text(s)}\n"
        for i, s in enumerate(doc.get("segments", []), start=1)
    ]
    return "\n".join(cues)


def to_vtt(doc: dict[str, Any]) -> str:
    cues = [f"{_clock(s['start'], '.')} --> {_clock(s['end'], '.')}\n{_cue_text(s)}\n" for s in doc.get("segments", [])]
    return "WEBVTT\n\n" + "\n".join(cues)


def to_txt(doc: dict[str, Any]) -> str:
    segments = doc.get("segments", [])
    if any(s.get("speaker") for s in segments):
        return "".join(f"{_cue_text(s)}\n" for s in segments)
    return doc.get("text", "") + "\n"


def to_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"


RENDERERS = {"json": to_json, "srt": to_srt, "vtt": to_vtt, "txt": to_txt}
