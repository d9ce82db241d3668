"""Runaway repetition: what the engine's guard (whisper.drop_runaway_repetition) leaves out.

Decodes pyannote's real two-speaker English sample with faster-whisper, once per case, and
reports the segments before and after the guard (and the WER for English, which must not move):

- English as the engine decodes it (temperature fallback on): the guard must leave it alone;
- the sample told it is Korean or Cantonese, with faster-whisper's temperature fallback off so
  that the decoding loops as it does when every temperature loops.

.venv/bin/python bench/repetition.py [--model base] [--cases en,ko:0,yue:0]
(a case is LANGUAGE or LANGUAGE:0 for temperature 0 only; "yue" bypasses the model check on purpose)
"""

from __future__ import annotations

import argparse
import sys
import time

import jiwer

import whisperless  # noqa: F401 - first: OpenMP wait policy and no telemetry, before torch/pyannote load
from bench.quality import SAMPLE_DIR, normalise, reference_text


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="base")
    parser.add_argument("--cases", default="en,ko:0,yue:0")
    args = parser.parse_args()
    from whisperless.config import EngineSettings
    from whisperless.engine import models
    from whisperless.engine.audio import decode_audio
    from whisperless.engine.types import Segment
    from whisperless.engine.whisper import drop_runaway_repetition

    settings = EngineSettings.from_env()
    model = models.load_whisper(args.model, settings)
    audio = decode_audio(SAMPLE_DIR / "sample.wav")
    print(f"command: {' '.join(sys.argv)}")
    print("| case | decode s | segments | kept | words before | words after | WER before | WER after |")
    print("|---|---|---|---|---|---|---|---|")
    for case in args.cases.split(","):
        language, _, temperature = case.partition(":")
        extra = {"temperature": float(temperature)} if temperature else {}
        started = time.perf_counter()
        decoded, _ = model.transcribe(
            audio,
            language=language,
            word_timestamps=True,
            vad_filter=True,
            beam_size=settings.beam_size,
            **extra,
        )
        segments = [Segment(float(s.start), float(s.end), s.text.strip(), []) for s in decoded]
        seconds = time.perf_counter() - started
        kept = drop_runaway_repetition(segments)
        before = " ".join(s.text for s in segments)
        after = " ".join(s.text for s in kept)
        wers = ("-", "-")
        if language == "en":
            reference = normalise(reference_text())
            wers = tuple(f"{jiwer.wer(reference, normalise(text)):.3f}" for text in (before, after))
        print(
            f"| {case} | {seconds:.1f} | {len(segments)} | {len(kept)} | {len(before.split())} | "
            f"{len(after.split())} | {wers[0]} | {wers[1]} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
