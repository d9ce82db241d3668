"""What the engine's stages hand each other: timed words and segments, speaker turns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


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
    # May overlap (two people at once): what the result's `diarization` lists, and what words are
    # matched against (merge.assign_speakers).
    turns: list[Turn]
    # Each speaker's voice (the `campplus` pipeline): a unit-length CAM++ embedding per turn label,
    # the space of diarization.Pipeline.voice_embedding. Empty for pyannote hub pipelines.
    centroids: dict[str, np.ndarray] = field(default_factory=dict)
    # Turn label -> an enrolled voice's name, for the speakers matched to one (engine.speakers);
    # the others get SPEAKER_nn.
    names: dict[str, str] = field(default_factory=dict)
