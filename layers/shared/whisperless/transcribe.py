"""Speech to timed words with faster-whisper."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy stays out of the API layer, which imports the result types
    import numpy as np

from .audio import SAMPLE_RATE
from .errors import InvalidParameter
from .options import TranscriptionOptions

# Batched inference pays off on long audio (BENCHMARKS.md: 1.5x at 1 min, 2.3x at 10 and 60 min on
# 2 CPU cores, same or better WER); short clips stay sequential.
BATCHED_MIN_SECONDS = float(os.environ.get("WHISPERLESS_BATCHED_MIN_SECONDS", "60"))
# Chunks per batch. On CPU, 4 is as fast as 8 or 16 (the encoder costs the same per chunk) and each
# step of 4 saves ~300 MB of decoder cache (beam 5 x 1500 encoder frames per chunk): a 60-minute
# job peaks at 2.6 GB instead of 3.2 GB. On CUDA batching is what makes it fast: 8 (not measured
# here: no GPU on the benchmark machine).
_BATCH_SIZE_ENV = os.environ.get("WHISPERLESS_BATCH_SIZE")
BATCH_SIZE = int(_BATCH_SIZE_ENV) if _BATCH_SIZE_ENV else None
CPU_BATCH_SIZE, CUDA_BATCH_SIZE = 4, 8
BEAM_SIZE = int(os.environ.get("WHISPERLESS_BEAM_SIZE", "5"))


@dataclass
class Word:
    word: str
    start: float
    end: float
    probability: float
    speaker: str | None = None


@dataclass
class Segment:
    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)
    speaker: str | None = None


@dataclass
class Transcript:
    language: str
    segments: list[Segment]


def check_model_supports(multilingual: bool, options: TranscriptionOptions) -> None:
    """English-only models can neither translate nor transcribe other languages: say so."""
    if multilingual:
        return
    if options.task == "translate":
        raise InvalidParameter("task 'translate' needs a multilingual model; this model is English-only",
                               field="task")
    if options.language not in (None, "en"):
        raise InvalidParameter(
            f"language {options.language!r} needs a multilingual model; this model is English-only",
            field="language",
        )


def transcribe(model, audio: np.ndarray, options: TranscriptionOptions) -> Transcript:
    check_model_supports(model.model.is_multilingual, options)
    language = options.language if model.model.is_multilingual else "en"
    kwargs = dict(
        language=language,
        task=options.task,
        initial_prompt=options.initial_prompt,
        word_timestamps=True,
        vad_filter=True,  # Silero VAD: no invented words on silence or noise
        beam_size=BEAM_SIZE,
    )
    batched = audio.size / SAMPLE_RATE >= BATCHED_MIN_SECONDS
    if batched:
        from faster_whisper import BatchedInferencePipeline

        batch_size = BATCH_SIZE or (CUDA_BATCH_SIZE if model.model.device == "cuda" else CPU_BATCH_SIZE)
        segments, info = BatchedInferencePipeline(model).transcribe(audio, batch_size=batch_size, **kwargs)
    else:
        segments, info = model.transcribe(audio, **kwargs)

    out = []
    for seg in segments:  # a generator: decoding happens here
        words = [
            Word(word=w.word, start=float(w.start), end=float(w.end),
                 probability=min(1.0, max(0.0, float(w.probability))))
            for w in (seg.words or [])
        ]
        out.append(Segment(start=float(seg.start), end=float(seg.end), text=seg.text.strip(), words=words))
    return Transcript(language=info.language, segments=out)
