"""Give each word a speaker and split segments where the speaker changes.

Words are matched against the diarization's turns, overlap kept, by a Viterbi pass over the
whole word sequence rather than word by word. A word's evidence for a speaker is how much of it
that speaker's turns cover; changing speaker between two words costs ``SWITCH_COST`` (in words of
evidence), less across a pause (nothing from ``PAUSE`` s of silence on) and half after the end of
a sentence. So the speaker changes at pauses and sentence ends unless the other speaker's turns
clearly hold the words: a turn boundary that falls a few hundred milliseconds inside a phrase no
longer splits the phrase between two people, and at a hand-over the word said while the previous
turn is still open goes to the person the overlapping turn says spoke it. Measured on pyannote's
sample (cpWER: bench/quality.py, BENCHMARKS.md).
"""

from __future__ import annotations

import numpy as np

from .types import Diarization, Segment, Turn, Word

SWITCH_COST = 0.6
PAUSE = 0.5  # s of silence between two words that makes a change of speaker free
SENTENCE_END = (".", "?", "!")
MIN_WORD = 0.05  # s: shorter (or zero-length) word timings are widened to this
NEAREST_WEIGHT, NEAREST_SCALE = 0.1, 0.5  # a word in no turn leans a little to the nearest ones


def speaker_order(turns: list[Turn], names: dict[str, str] | None = None) -> dict[str, str]:
    """Map pipeline labels to SPEAKER_00, SPEAKER_01, ... in order of first appearance; a label
    with an enrolled voice's name (``names``, engine.speakers) maps to that name instead."""
    mapping: dict[str, str] = {}
    for turn in sorted(turns, key=lambda t: (t.start, t.end)):
        if turn.speaker not in mapping:
            mapping[turn.speaker] = f"SPEAKER_{len(mapping):02d}"
    return {label: (names or {}).get(label, anonymous) for label, anonymous in mapping.items()}


def _evidence(starts: np.ndarray, ends: np.ndarray, turns: list[Turn], speakers: list[str]) -> np.ndarray:
    """(words, speakers): the share of each word that each speaker's turns cover; for a word no
    turn of that speaker touches, a small weight that fades with the distance to the nearest one."""
    out = np.zeros((len(starts), len(speakers)))
    for k, speaker in enumerate(speakers):
        # The speaker's turns as disjoint sorted intervals, and the time they cover before each.
        merged: list[list[float]] = []
        for t in sorted((t for t in turns if t.speaker == speaker), key=lambda t: t.start):
            if merged and t.start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], t.end)
            else:
                merged.append([t.start, t.end])
        a, b = np.array(merged).T
        before = np.concatenate([[0.0], np.cumsum(b - a)])

        def covered(t: np.ndarray, a=a, b=b, before=before) -> np.ndarray:
            i = np.maximum(np.searchsorted(a, t, side="right") - 1, 0)
            return before[i] + np.clip(t - a[i], 0.0, b[i] - a[i])

        share = (covered(ends) - covered(starts)) / (ends - starts)
        nxt = np.minimum(np.searchsorted(a, ends, side="left"), len(a) - 1)
        prev = np.maximum(np.searchsorted(b, starts, side="right") - 1, 0)
        distance = np.maximum(np.minimum(np.abs(a[nxt] - ends), np.abs(starts - b[prev])), 0.0)
        out[:, k] = np.where(share > 0, np.minimum(share, 1.0), NEAREST_WEIGHT * np.exp(-distance / NEAREST_SCALE))
    return out


def word_speakers(words: list[Word], turns: list[Turn]) -> list[str | None]:
    """The speaker label of each word (in time order), by the Viterbi pass described above."""
    speakers = sorted({t.speaker for t in turns})
    if not words or not speakers:
        return [None] * len(words)
    starts = np.array([w.start for w in words])
    ends = np.maximum(np.array([w.end for w in words]), starts + MIN_WORD)
    evidence = _evidence(starts, ends, turns, speakers)
    stay = np.arange(len(speakers))
    score = evidence[0].copy()
    back = np.zeros((len(words), len(speakers)), int)
    for i in range(1, len(words)):
        gap = max(0.0, starts[i] - ends[i - 1])
        cost = SWITCH_COST * max(0.0, 1.0 - gap / PAUSE)
        if words[i - 1].word.strip().endswith(SENTENCE_END):
            cost *= 0.5
        best = int(score.argmax())
        keep = score >= score[best] - cost
        back[i] = np.where(keep, stay, best)
        score = np.where(keep, score, score[best] - cost) + evidence[i]
    path = [int(score.argmax())]
    for i in range(len(words) - 1, 0, -1):
        path.append(int(back[i, path[-1]]))
    return [speakers[k] for k in reversed(path)]


def assign_speakers(segments: list[Segment], diarization: Diarization) -> list[Segment]:
    """Return new segments, each with one speaker, split wherever the word speaker changes."""
    labels = speaker_order(diarization.turns, diarization.names)
    segments = [s for s in segments if s.words]
    words = [w for s in segments for w in s.words]
    for word, raw in zip(words, word_speakers(words, diarization.turns), strict=True):
        word.speaker = labels.get(raw) if raw is not None else None
    out: list[Segment] = []
    for segment in segments:
        current: list[Word] = []
        for word in segment.words:
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
