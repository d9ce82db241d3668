"""Speech to timed words with faster-whisper."""

from __future__ import annotations

import numpy as np

from ..config import EngineSettings
from ..contract.languages import WHISPER_LANGUAGE_ORDER, ModelAbilities
from ..contract.options import TranscriptionOptions
from .audio import SAMPLE_RATE
from .types import Segment, Transcript, Word

# Batched inference pays off on long audio (BENCHMARKS.md: 1.5x at 1 min, 2.3x at 10 and 60 min on
# 2 CPU cores, same or better WER); short clips stay sequential (EngineSettings.batched_min_seconds).
CPU_BATCH_SIZE, CUDA_BATCH_SIZE = 4, 8


def loaded_abilities(model, name: str) -> ModelAbilities:
    """What the loaded model can do: English only, or the languages its tokenizer has a token for."""
    if not model.model.is_multilingual:
        return ModelAbilities(name, frozenset({"en"}))
    tokenizer = model.hf_tokenizer
    return ModelAbilities(
        name, frozenset(code for code in WHISPER_LANGUAGE_ORDER if tokenizer.token_to_id(f"<|{code}|>") is not None)
    )


def transcribe(model, audio: np.ndarray, options: TranscriptionOptions, settings: EngineSettings) -> Transcript:
    language = options.language if model.model.is_multilingual else "en"
    kwargs = dict(
        language=language,
        task=options.task,
        initial_prompt=options.initial_prompt,
        word_timestamps=True,
        vad_filter=True,  # Silero VAD: no invented words on silence or noise
        beam_size=settings.beam_size,
    )
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
        out.append(Segment(start=float(seg.start), end=float(seg.end), text=seg.text.strip(), words=words))
    return Transcript(language=info.language, segments=out)
