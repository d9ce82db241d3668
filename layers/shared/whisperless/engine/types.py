"""What the engine's stages hand each other: timed words and segments, speaker turns."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Word:
    word: str
    start: float
    end: float
    probability: float
    speaker: str | None = None


@dataclass(frozen=True)
class Decoding:
    """How Whisper decoded the window a segment came from (Whisper's own segment statistics).
    A segment split into sentences or by speaker keeps its window's values."""

    seek: int
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


@dataclass
class Segment:
    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)
    speaker: str | None = None
    decoding: Decoding | None = None
    # Whisper's tokens for exactly this text; None once a split changed the text (re-encoded later).
    tokens: list[int] | None = None


@dataclass
class Transcript:
    language: str
    segments: list[Segment]


@dataclass(frozen=True)
class Turn:
    start: float
    end: float
    speaker: str


@dataclass
class Diarization:
    turns: list[Turn]  # may overlap: what the result's `diarization` lists
    exclusive: list[Turn]  # one speaker at a time: what words are matched against
