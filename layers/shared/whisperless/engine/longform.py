"""Long recordings as many chunk tasks and one merge: the engine's half (no AWS here).

    plan(num_samples, chunk_seconds) -> [Chunk, ...]     which windows and seconds each task does
    Engine.transcribe_chunk(path, options, chunk, num_samples) -> ChunkOutput
        decodes only its range; Whisper on it (plus a margin each side) and, with diarization,
        diarization's local stage (segmentation + CAM++ embeddings) for its windows
    ChunkOutput.save / ChunkOutput.load                   one .npz per chunk (no pickle)
    Engine.merge_chunks([ChunkOutput, ...], options, ...) -> EngineResult
        diarization's global stage over every chunk's embeddings (one clustering: a person has one
        label across the whole recording), the words stitched at a silence, then what a single
        pass does: speakers onto words, sentence segments, the document (``chunks``: how many)

Where the transcripts join. Each chunk transcribes ``MARGIN`` seconds past both ends of its own
range, so the words near a boundary are decoded twice, each time with context on both sides. The
merge cuts the two transcripts at the longest silence within ``MARGIN / 2`` of the boundary: the
longest gap between the words either transcript heard there (Whisper's VAD filter leaves no words
in silence). Words left of the cut come from the earlier chunk, the rest from the later one, so no
word is cut, lost or written twice.

Diarization's grid is the file's (window k starts at k * step; chunks start on CAM++ block
boundaries), so the chunks' local outputs are exactly the single pass's (tests/engine).
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .audio import SAMPLE_RATE
from .diarization import DiarizationConfig, LocalOutput, chunk_audio_range, plan_chunks
from .types import Decoding, Segment, Transcript, Word

#: Seconds each chunk transcribes past its own range on both sides (the cut is searched in the middle half).
MARGIN = 15.0


@dataclass(frozen=True)
class Chunk:
    """One chunk task: its own seconds ``[start, end)``, its diarization windows, and what it decodes."""

    index: int
    total: int
    start: float
    end: float
    first_window: int
    windows: int

    def transcribe_range(self, duration: float) -> tuple[float, float]:
        return max(0.0, self.start - MARGIN), min(duration, self.end + MARGIN)

    def decode_range(self, num_samples: int, config: DiarizationConfig, diarization: bool) -> tuple[int, int]:
        """Samples ``[a, b)`` the chunk needs: its transcription range, and its windows' blocks."""
        t0, t1 = self.transcribe_range(num_samples / SAMPLE_RATE)
        a, b = round(t0 * SAMPLE_RATE), round(t1 * SAMPLE_RATE)
        if diarization:
            d0, d1 = chunk_audio_range(self.first_window, self.windows, num_samples, config)
            a, b = min(a, d0), max(b, d1)
        return a, min(b, num_samples)


def plan(num_samples: int, chunk_seconds: float, config: DiarizationConfig | None = None) -> list[Chunk]:
    """The chunks of a file: diarization's chunk grid (whole CAM++ blocks), each chunk owning the
    seconds from its first window's start to the next chunk's."""
    config = config or DiarizationConfig()
    grid = plan_chunks(num_samples, config, chunk_seconds)
    duration = num_samples / SAMPLE_RATE
    starts = [first * config.step for first, _ in grid] + [duration]
    return [
        Chunk(i, len(grid), starts[i], max(starts[i + 1], starts[i]), first, count)
        for i, (first, count) in enumerate(grid)
    ]


# ------------------------------------------------------------------------------------ chunk output


@dataclass
class ChunkOutput:
    """What one chunk task hands the merge: its transcript (times in the file's seconds) and,
    with diarization, its local stage's output."""

    index: int
    total: int
    num_samples: int
    start: float  # where the chunk's own seconds start (the stitch joins near there)
    transcript: Transcript
    local: LocalOutput | None
    seconds: float = 0.0  # the chunk task's compute time

    def save(self) -> bytes:
        """A compressed .npz: the transcript as JSON bytes, the local output's arrays."""
        header = {
            "index": self.index,
            "total": self.total,
            "num_samples": self.num_samples,
            "start": self.start,
            "seconds": self.seconds,
            "language": self.transcript.language,
            "segments": [_segment_json(s) for s in self.transcript.segments],
        }
        arrays: dict[str, np.ndarray] = {"header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
        if self.local is not None:
            arrays.update(
                step=np.asarray(self.local.step, np.float64),
                first_window=np.asarray(self.local.first_window, np.int64),
                activity=self.local.activity,
                embeddings=self.local.embeddings,
                clean=self.local.clean,
            )
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
        return buffer.getvalue()

    @classmethod
    def load(cls, data: bytes) -> ChunkOutput:
        with np.load(io.BytesIO(data), allow_pickle=False) as d:
            header = json.loads(d["header"].tobytes())
            local = None
            if "activity" in d:
                local = LocalOutput(
                    float(d["step"]),
                    int(d["first_window"]),
                    d["activity"],
                    d["embeddings"],
                    d["clean"],
                    int(header["num_samples"]),
                )
        transcript = Transcript(header["language"], [_segment_from_json(s) for s in header["segments"]])
        return cls(
            int(header["index"]),
            int(header["total"]),
            int(header["num_samples"]),
            float(header["start"]),
            transcript,
            local,
            float(header.get("seconds", 0.0)),
        )


def _segment_json(segment: Segment) -> dict:
    d = segment.decoding
    return {
        "start": segment.start,
        "end": segment.end,
        "text": segment.text,
        "words": [[w.word, w.start, w.end, w.probability] for w in segment.words],
        "decoding": None
        if d is None
        else [d.seek, d.temperature, d.avg_logprob, d.compression_ratio, d.no_speech_prob],
        "tokens": segment.tokens,
    }


def _segment_from_json(d: dict) -> Segment:
    decoding = None
    if d["decoding"] is not None:
        seek, temperature, avg_logprob, ratio, no_speech = d["decoding"]
        decoding = Decoding(int(seek), temperature, avg_logprob, ratio, no_speech)
    return Segment(
        start=d["start"],
        end=d["end"],
        text=d["text"],
        words=[Word(w, s, e, p) for w, s, e, p in d["words"]],
        decoding=decoding,
        tokens=d["tokens"],
    )


def shifted(transcript: Transcript, seconds: float) -> Transcript:
    """The transcript with every time moved by ``seconds`` (a range's times -> the file's)."""
    for segment in transcript.segments:
        segment.start += seconds
        segment.end += seconds
        for word in segment.words:
            word.start += seconds
            word.end += seconds
    return transcript


# ---------------------------------------------------------------------------------------- stitching


def cut_at_silence(before: Sequence[Segment], after: Sequence[Segment], boundary: float) -> float:
    """Where to join two overlapping transcripts near ``boundary``: the middle of the longest gap
    between the words either heard within ``MARGIN / 2`` of it (ties: the gap nearest the boundary);
    the boundary itself when nobody spoke there."""
    lo, hi = boundary - MARGIN / 2, boundary + MARGIN / 2
    spans = sorted(
        (max(w.start, lo), min(w.end, hi))
        for segments in (before, after)
        for s in segments
        for w in s.words
        if w.end > lo and w.start < hi
    )
    if not spans:
        return boundary
    merged: list[list[float]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    edges = [lo] + [x for span in merged for x in span] + [hi]
    gaps = [(edges[i], edges[i + 1]) for i in range(0, len(edges), 2)]
    best = max(gaps, key=lambda g: (round(g[1] - g[0], 3), -abs((g[0] + g[1]) / 2 - boundary)))
    return (best[0] + best[1]) / 2


def _kept(segment: Segment, lo: float, hi: float) -> Segment | None:
    """The part of ``segment`` whose words' middles lie in ``[lo, hi)``; None when nothing does."""
    if not segment.words:
        middle = (segment.start + segment.end) / 2
        return segment if lo <= middle < hi else None
    words = [w for w in segment.words if lo <= (w.start + w.end) / 2 < hi]
    if len(words) == len(segment.words):
        return segment
    if not words:
        return None
    text = "".join(w.word for w in words).strip()
    return Segment(words[0].start, words[-1].end, text, words, decoding=segment.decoding, tokens=None)


def stitch(parts: Sequence[ChunkOutput]) -> Transcript:
    """One transcript from the chunks' (sorted by index), joined at silences; its language the
    one most of the speech was heard in."""
    parts = sorted(parts, key=lambda p: p.index)
    cuts = [float("-inf")]
    for left, right in zip(parts, parts[1:], strict=False):
        cuts.append(cut_at_silence(left.transcript.segments, right.transcript.segments, right.start))
    cuts.append(float("inf"))
    segments: list[Segment] = []
    spoken: dict[str, float] = {}
    for i, part in enumerate(parts):
        for segment in part.transcript.segments:
            kept = _kept(segment, cuts[i], cuts[i + 1])
            if kept is not None:
                segments.append(kept)
                language = part.transcript.language
                spoken[language] = spoken.get(language, 0.0) + kept.end - kept.start
    language = max(spoken, key=lambda k: spoken[k]) if spoken else parts[0].transcript.language
    return Transcript(language, segments)
