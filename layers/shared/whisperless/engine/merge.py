"""Give each word a speaker and split segments where the speaker changes."""

from __future__ import annotations

from bisect import bisect_right

from .types import Diarization, Segment, Turn, Word


def speaker_order(turns: list[Turn]) -> dict[str, str]:
    """Map pipeline labels to SPEAKER_00, SPEAKER_01, ... in order of first appearance."""
    mapping: dict[str, str] = {}
    for turn in sorted(turns, key=lambda t: (t.start, t.end)):
        if turn.speaker not in mapping:
            mapping[turn.speaker] = f"SPEAKER_{len(mapping):02d}"
    return mapping


def _speaker_for(word: Word, turns: list[Turn], starts: list[float]) -> str | None:
    """The turn overlapping the word most; the nearest turn when none overlaps."""
    if not turns:
        return None
    best, best_overlap = None, 0.0
    # Only turns starting before the word ends can overlap it; exclusive turns do not overlap
    # each other, so scanning back a few from that point is enough.
    hi = bisect_right(starts, word.end)
    for turn in reversed(turns[max(0, hi - 8) : hi]):
        overlap = min(word.end, turn.end) - max(word.start, turn.start)
        if overlap > best_overlap:
            best, best_overlap = turn, overlap
    if best is not None:
        return best.speaker
    nearest = min(turns, key=lambda t: max(t.start - word.end, word.start - t.end, 0.0))
    return nearest.speaker


def assign_speakers(segments: list[Segment], diarization: Diarization) -> list[Segment]:
    """Return new segments, each with one speaker, split wherever the word speaker changes."""
    labels = speaker_order(diarization.turns)
    exclusive = sorted(diarization.exclusive, key=lambda t: t.start)
    starts = [t.start for t in exclusive]
    out: list[Segment] = []
    for segment in segments:
        if not segment.words:
            continue
        current: list[Word] = []
        for word in segment.words:
            raw = _speaker_for(word, exclusive, starts)
            word.speaker = labels.get(raw) if raw is not None else None
            if current and word.speaker != current[-1].speaker:
                out.append(_segment_of(current, segment))
                current = []
            current.append(word)
        out.append(_segment_of(current, segment))
    return out


def _segment_of(words: list[Word], parent: Segment) -> Segment:
    whole = len(words) == len(parent.words)
    return Segment(
        start=words[0].start,
        end=words[-1].end,
        text="".join(w.word for w in words).strip(),
        words=words,
        speaker=words[0].speaker,
        decoding=parent.decoding,
        tokens=parent.tokens if whole else None,  # a split text is re-encoded by the pipeline
    )
