"""The contract's completed document, from the engine's results. Plain JSON types only."""

from __future__ import annotations

from typing import Any

from .merge import speaker_order
from .types import Diarization, Segment, Transcript


def _t(seconds: float) -> float:
    return round(float(seconds), 3)


def _segment_doc(segment: Segment, with_speakers: bool) -> dict[str, Any]:
    words = []
    for w in segment.words:
        word = {
            "word": w.word,
            "start": _t(w.start),
            "end": _t(w.end),
            "timestamp": _t(w.end),
            "probability": round(w.probability, 4),
        }  # clamped in transcribe
        if with_speakers:
            word["speaker"] = w.speaker
        words.append(word)
    doc: dict[str, Any] = {"start": _t(segment.start), "end": _t(segment.end), "text": segment.text}
    if with_speakers:
        doc["speaker"] = segment.speaker
    if segment.decoding is not None:
        # Whisper's own segment statistics, under Whisper's names (additive to the contract): what
        # OpenAI's verbose_json reports, and a quality signal (no_speech_prob, avg_logprob).
        decoding = segment.decoding
        doc["seek"] = decoding.seek
        doc["temperature"] = round(decoding.temperature, 2)
        doc["avg_logprob"] = round(decoding.avg_logprob, 4)
        doc["compression_ratio"] = round(decoding.compression_ratio, 4)
        doc["no_speech_prob"] = round(decoding.no_speech_prob, 4)
    if segment.tokens is not None:
        doc["tokens"] = segment.tokens
    doc["words"] = words
    return doc


def rounded_timings(timings: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 3) for k, v in timings.items()}


def completed_document(
    job_id: str,
    transcript: Transcript,
    segments: list[Segment],
    diarization: Diarization | None,
    *,
    duration: float,
    model: str,
    timings: dict[str, float],
    source: Any = None,
    speakers: list[dict] | None = None,
    chunks: int = 1,
) -> dict[str, Any]:
    """``speakers``: engine.speakers.name_speakers' table, when known voices were asked for;
    ``chunks``: how many chunk tasks the audio was split across (1: a single pass)."""
    with_speakers = diarization is not None
    doc: dict[str, Any] = {
        "id": job_id,
        "status": "completed",
        "language": transcript.language,
        "text": " ".join(s.text for s in segments if s.text).strip(),
        "segments": [_segment_doc(s, with_speakers) for s in segments],
    }
    if diarization is not None:
        labels = speaker_order(diarization.turns, diarization.names)
        doc["diarization"] = [
            {"startTime": _t(t.start), "stopTime": _t(t.end), "speaker": labels[t.speaker]} for t in diarization.turns
        ]
        if speakers is not None:
            # Additive: per diarized speaker, its anonymous label, the name it was given (or null)
            # and how alike the voices are (cosine similarity).
            anonymous = speaker_order(diarization.turns)
            doc["speakers"] = sorted(
                ({**row, "label": anonymous[row["label"]]} for row in speakers if row["label"] in anonymous),
                key=lambda row: row["label"],
            )
    doc["duration"] = _t(duration)
    doc["model"] = model
    doc["chunks"] = chunks
    doc["timings"] = rounded_timings(timings)
    if source is not None:
        doc["source"] = source
    return doc
