"""Sentiment per segment with VADER (a rule-based English lexicon: no model, no download).

Each segment gets ``sentiment: {label, score}``: ``score`` is VADER's compound score in [-1, 1],
``label`` is positive (>= 0.05), negative (<= -0.05) or neutral, VADER's own cut-offs. The document
gets ``sentiment``: the same for the whole recording (the duration-weighted mean of the segments'
scores, so a long calm stretch outweighs one sharp remark), and per speaker when diarized.
VADER scores English only; for other languages the document says so instead. How good it is on
sentences we labelled (and where it fails): BENCHMARKS.md.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

POSITIVE, NEGATIVE = 0.05, -0.05


@lru_cache(maxsize=1)
def load_vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def label(score: float) -> str:
    return "positive" if score >= POSITIVE else "negative" if score <= NEGATIVE else "neutral"


def score_text(text: str) -> float:
    return float(load_vader().polarity_scores(text)["compound"])


def _summary(scored: list[tuple[float, float]]) -> dict[str, Any]:
    """{label, score} of (score, seconds) pairs: the duration-weighted mean."""
    weight = sum(seconds for _, seconds in scored)
    mean = sum(score * seconds for score, seconds in scored) / weight if weight > 0 else 0.0
    return {"label": label(mean), "score": round(mean, 3)}


def add_sentiment(document: dict, *, language: str) -> None:
    """Score every segment of ``document`` in place and add the overall ``sentiment``."""
    if language != "en":
        document["sentiment"] = {"unavailable": f"sentiment is scored for English only, not {language!r}"}
        return
    overall: list[tuple[float, float]] = []
    speakers: dict[str, list[tuple[float, float]]] = {}
    for segment in document.get("segments", []):
        score = score_text(segment.get("text", ""))
        segment["sentiment"] = {"label": label(score), "score": round(score, 3)}
        if not segment.get("text"):
            continue
        pair = (score, max(0.0, segment["end"] - segment["start"]))
        overall.append(pair)
        if segment.get("speaker"):
            speakers.setdefault(segment["speaker"], []).append(pair)
    result = _summary(overall)
    if "diarization" in document:
        result["speakers"] = {name: _summary(pairs) for name, pairs in sorted(speakers.items())}
    document["sentiment"] = result
