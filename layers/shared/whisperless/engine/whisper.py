"""Speech to timed words with faster-whisper."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..config import EngineSettings
from ..contract.options import TranscriptionOptions
from ..errors import InvalidParameter
from .audio import SAMPLE_RATE
from .types import Decoding, Segment, Transcript, Word

# Batched inference pays off on long audio (BENCHMARKS.md: 1.5x at 1 min, 2.3x at 10 and 60 min on
# 2 CPU cores, same or better WER); short clips stay sequential (EngineSettings.batched_min_seconds).
CPU_BATCH_SIZE, CUDA_BATCH_SIZE = 4, 8


def check_model_supports(multilingual: bool, options: TranscriptionOptions) -> None:
    """English-only models can neither translate nor transcribe other languages: say so."""
    if multilingual:
        return
    if options.task == "translate":
        raise InvalidParameter("task 'translate' needs a multilingual model; this model is English-only", field="task")
    if options.language not in (None, "en"):
        raise InvalidParameter(
            f"language {options.language!r} needs a multilingual model; this model is English-only",
            field="language",
        )


def transcribe(model, audio: np.ndarray, options: TranscriptionOptions, settings: EngineSettings) -> Transcript:
    check_model_supports(model.model.is_multilingual, options)
    language = options.language if model.model.is_multilingual else "en"
    kwargs: dict[str, Any] = dict(
        language=language,
        task=options.task,
        initial_prompt=options.initial_prompt,
        word_timestamps=True,
        vad_filter=True,  # Silero VAD: no invented words on silence or noise
        beam_size=settings.beam_size,
    )
    if options.temperature:  # 0 or unset: faster-whisper's own fallback schedule (0.0, 0.2, ... 1.0)
        kwargs["temperature"] = options.temperature
    if audio.size / SAMPLE_RATE >= settings.batched_min_seconds:
        from faster_whisper import BatchedInferencePipeline

        batch_size = settings.batch_size or (CUDA_BATCH_SIZE if model.model.device == "cuda" else CPU_BATCH_SIZE)
        segments, info = BatchedInferencePipeline(model).transcribe(audio, batch_size=batch_size, **kwargs)
    else:
        segments, info = model.transcribe(audio, **kwargs)

    out = []
    for seg in segments:  # a generator: decoding happens here
        words = [
            Word(
                word=w.word,
                start=float(w.start),
                end=float(w.end),
                probability=min(1.0, max(0.0, float(w.probability))),
            )
            for w in (seg.words or [])
        ]
        decoding = Decoding(
            seek=int(seg.seek),
            temperature=float(seg.temperature or 0.0),
            avg_logprob=float(seg.avg_logprob),
            compression_ratio=float(seg.compression_ratio),
            no_speech_prob=float(seg.no_speech_prob),
        )
        out.append(
            Segment(
                start=float(seg.start),
                end=float(seg.end),
                text=seg.text.strip(),
                words=words,
                decoding=decoding,
                tokens=[int(t) for t in seg.tokens],
            )
        )
    return Transcript(language=info.language, segments=out)


def text_tokens(model, text: str) -> list[int]:
    """Whisper's tokens for ``text`` as it would follow other text (leading space), no special tokens:
    the tokens of a segment whose text a split changed."""
    return list(model.hf_tokenizer.encode(" " + text.strip(), add_special_tokens=False).ids)
