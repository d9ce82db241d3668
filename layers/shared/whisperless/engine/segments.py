"""Sentence-sized segments, whatever path produced them.

Batched decoding (files from ``batched_min_seconds`` on) decodes each VAD chunk of up to 30 s
without timestamps and returns it as one 20-50 s segment; sequential decoding gives 5-6 s
segments that often end a word or two into the next sentence ("... from Chicago. Oh" | "I'm
originally ..."). This step re-cuts the words of consecutive segments of one speaker on their
timings: after sentence-final punctuation, at long pauses, and what is still too long at the best
clause boundary or pause. Words keep their order and timings, so the words, hence the WER, are
unchanged.

It runs after the speaker merge: segments are then one speaker each, so a sentence never spans a
speaker change, and the length limit sees the pieces a speaker change made.
"""

from __future__ import annotations

from .types import Segment, Word

#: Longer segments are split at the best clause boundary or pause (a sentence, not a paragraph).
MAX_SEGMENT_SECONDS = 12.0
#: A pause this long ends a segment even without punctuation.
PAUSE_SECONDS = 1.0
_SENTENCE_END = (".", "?", "!", "…", "。", "？", "！", "؟", "।")
_CLAUSE_END = (",", ";", ":", "，", "、", "；", "：", "-", "–", "—")
_CLOSING = "\"')]}»”’"
# A full stop after these does not end a sentence ("Mr. Smith", "e.g. this").
_ABBREVIATIONS = frozenset("mr mrs ms dr prof st jr sr vs etc e.g i.e approx no".split())


def _ending(word: Word) -> str:
    return word.word.strip().rstrip(_CLOSING)


def _ends_sentence(word: Word) -> bool:
    text = _ending(word)
    if not text.endswith(_SENTENCE_END):
        return False
    return text.rstrip(".").lower() not in _ABBREVIATIONS


def _sentences(words: list[Word]) -> list[list[Word]]:
    """Cut after sentence-final punctuation and before long pauses."""
    pieces: list[list[Word]] = [[]]
    for i, word in enumerate(words):
        pieces[-1].append(word)
        last = i == len(words) - 1
        if not last and (_ends_sentence(word) or words[i + 1].start - word.end >= PAUSE_SECONDS):
            pieces.append([])
    return pieces


def _bounded(words: list[Word]) -> list[list[Word]]:
    """Split a piece over MAX_SEGMENT_SECONDS at its best cut, recursively: after clause
    punctuation first, then at the longest pause, searching the middle of the piece so that
    neither half is a scrap."""
    if len(words) < 2 or words[-1].end - words[0].start <= MAX_SEGMENT_SECONDS:
        return [words]
    start, end = words[0].start, words[-1].end
    span = end - start
    cuts = range(1, len(words))  # cut before words[i]
    middle = [i for i in cuts if 0.25 * span <= words[i].start - start <= 0.75 * span] or list(cuts)

    def score(i: int) -> tuple[bool, float]:
        return _ending(words[i - 1]).endswith(_CLAUSE_END), words[i].start - words[i - 1].end

    best = max(middle, key=score)
    return _bounded(words[:best]) + _bounded(words[best:])


def _runs(segments: list[Segment]) -> list[list[Segment]]:
    """Consecutive segments of one speaker, each with words: their words may form one sentence."""
    runs: list[list[Segment]] = []
    for segment in segments:
        last = runs[-1][-1] if runs else None
        if last is not None and last.words and segment.words and last.speaker == segment.speaker:
            runs[-1].append(segment)
        else:
            runs.append([segment])
    return runs


def _piece(words: list[Word], owners: dict[int, Segment]) -> Segment:
    """A segment of ``words``; the Whisper segment they all came from when they are all of it."""
    parents = [owners[id(w)] for w in words]
    whole = parents[0]
    if all(p is whole for p in parents) and len(words) == len(whole.words):
        return whole
    # Decoding statistics of the window most of the words came from.
    main = max(parents, key=lambda p: sum(q is p for q in parents))
    return Segment(
        start=words[0].start,
        end=words[-1].end,
        text="".join(w.word for w in words).strip(),
        words=words,
        speaker=main.speaker,
        decoding=main.decoding,
        tokens=None,  # the text changed: re-encoded by the pipeline
    )


def sentence_segments(segments: list[Segment]) -> list[Segment]:
    """The segments re-cut into sentence-sized ones (module docstring); segments without word
    timings are kept as they are."""
    out: list[Segment] = []
    for run in _runs(segments):
        if not run[0].words:
            out.extend(run)
            continue
        owners = {id(w): segment for segment in run for w in segment.words}
        words = [w for segment in run for w in segment.words]
        for sentence in _sentences(words):
            out.extend(_piece(piece, owners) for piece in _bounded(sentence))
    return out
