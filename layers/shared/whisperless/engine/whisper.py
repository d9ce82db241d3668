"""Speech to timed words with faster-whisper."""

from __future__ import annotations

import logging
import re
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

from ..config import EngineSettings
from ..contract.languages import WHISPER_LANGUAGE_ORDER, ModelAbilities
from ..contract.options import TranscriptionOptions
from .audio import SAMPLE_RATE
from .types import Decoding, Segment, Transcript, Word

# Batched inference pays off on long audio (BENCHMARKS.md: 1.5x at 1 min, 2.3x at 10 and 60 min on
# 2 CPU cores, same or better WER); short clips stay sequential (EngineSettings.batched_min_seconds).
CPU_BATCH_SIZE, CUDA_BATCH_SIZE = 4, 8
# faster-whisper's own measure of a decoding stuck in a loop (its compression_ratio_threshold):
# text that zlib shrinks more than this is repetition, not speech. It re-decodes such a window at
# higher temperatures, but keeps the loop when every temperature loops (base on English speech
# told it is Korean: "안녕하세요." 21 times).
COMPRESSION_RATIO_LIMIT = 2.4
WINDOW_SECONDS = 30.0  # Whisper's window: the span the limit is meant for
# Numbers repeat digits for real ("four one one one, one one one one, ..." is a test card number)
# and compress like a loop. A segment that is mostly digits is kept unless it runs past the
# longest number people read out (a card's 19 digits, with room), as a decoding loop does
# ("1-1-1-1-..." to the token limit).
_DIGIT_WORDS = frozenset("zero oh one two three four five six seven eight nine".split())
MAX_SPOKEN_DIGITS = 24

log = logging.getLogger(__name__)


def loaded_abilities(model, name: str) -> ModelAbilities:
    """What the loaded model can do: English only, or the languages its tokenizer has a token for."""
    if not model.model.is_multilingual:
        return ModelAbilities(name, frozenset({"en"}))
    tokenizer = model.hf_tokenizer
    return ModelAbilities(
        name, frozenset(code for code in WHISPER_LANGUAGE_ORDER if tokenizer.token_to_id(f"<|{code}|>") is not None)
    )


def compression_ratio(text: str) -> float:
    """Text bytes over zlib-compressed bytes, as faster-whisper measures it."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def drop_runaway_repetition(segments: list[Segment]) -> list[Segment]:
    """Leave out what a decoding loop produced: a segment that repeats itself past faster-whisper's
    compression-ratio limit ("Hello......"), and a segment that repeats text already said within
    the last 30 s when that window's text then passes the limit (the same phrase over and over,
    one segment each). Real repetition ("Hello. Hello. Oh, hello.") stays under it."""
    kept: list[Segment] = []
    for segment in segments:
        text = segment.text.strip()
        if _a_spoken_number(text):
            kept.append(segment)
            continue
        if compression_ratio(text) > COMPRESSION_RATIO_LIMIT:
            log.warning("left out a looping segment at %.1f s: %.60r", segment.start, text)
            continue
        window = [k.text.strip() for k in kept if k.end > segment.start - WINDOW_SECONDS]
        said = " ".join(window)
        if text and text in said and compression_ratio(f"{said} {text}") > COMPRESSION_RATIO_LIMIT:
            log.warning("left out a repeated segment at %.1f s: %.60r", segment.start, text)
            continue
        kept.append(segment)
    return kept


def _a_spoken_number(text: str) -> bool:
    """Mostly digits (as figures or words), and no more of them than a number read out has."""
    tokens = re.findall(r"[^\W_]+", text.lower())
    digits = sum(len(t) if t.isdigit() else t in _DIGIT_WORDS for t in tokens)
    numeric = sum(t.isdigit() or t in _DIGIT_WORDS for t in tokens)
    return bool(tokens) and 2 * numeric >= len(tokens) and digits <= MAX_SPOKEN_DIGITS


def transcribe(
    model,
    audio: np.ndarray,
    options: TranscriptionOptions,
    settings: EngineSettings,
    checkpoint: Callable[[], None] | None = None,
    progress: Callable[[float], None] | None = None,
) -> Transcript:
    """``checkpoint``: called after each decoded segment (it raises to stop the run);
    ``progress``: told the end (seconds) of each decoded segment."""
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
        if checkpoint is not None:
            checkpoint()
        if progress is not None:
            progress(float(seg.end))
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
    return Transcript(language=info.language, segments=drop_runaway_repetition(out))


def text_tokens(model, text: str) -> list[int]:
    """Whisper's tokens for ``text`` as it would follow other text (leading space), no special tokens:
    the tokens of a segment whose text a split changed."""
    return list(model.hf_tokenizer.encode(" " + text.strip(), add_special_tokens=False).ids)
