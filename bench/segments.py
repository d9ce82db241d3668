"""Segment lengths before and after engine.segments (sentence-sized segments), and subtitle cues.

    .venv/bin/python bench/segments.py [--model base] [--minutes 10]

Transcribes the 10-minute corpus (bench/corpus.py: batched path) and pyannote's 30 s real sample
(sequential path) once each, then reports the segment length distribution as Whisper returned it
and after the split, the WER of both (the split moves no word, so it must be equal) and the
longest subtitle cue.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import whisperless  # noqa: E402,F401 - first: OpenMP wait policy, before torch loads
from bench.corpus import build, wer_by_kind  # noqa: E402
from bench.quality import SAMPLE_DIR, normalise, reference_text  # noqa: E402


def _row(name: str, segments, wer: float) -> str:
    seconds = sorted(s.end - s.start for s in segments)
    chars = sorted(len(s.text) for s in segments)
    p90 = seconds[int(0.9 * (len(seconds) - 1))]
    return (
        f"| {name} | {len(segments)} | {statistics.median(seconds):.1f} | {p90:.1f} | {seconds[-1]:.1f} "
        f"| {statistics.median(chars):.0f} | {chars[-1]} | {wer:.3f} |"
    )


def _words(segments) -> list[dict]:
    return [{"word": w.word, "start": w.start, "end": w.end} for s in segments for w in s.words]


def main() -> None:
    import jiwer

    from whisperless.config import engine_settings
    from whisperless.contract.formats import cues
    from whisperless.contract.options import TranscriptionOptions
    from whisperless.engine import models
    from whisperless.engine.audio import decode_audio
    from whisperless.engine.segments import sentence_segments
    from whisperless.engine.whisper import transcribe

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="base")
    parser.add_argument("--minutes", type=float, default=10)
    args = parser.parse_args()
    settings = engine_settings()
    whisper = models.load_whisper(args.model, settings)
    options = TranscriptionOptions(language="en")

    print(f"command: .venv/bin/python bench/segments.py --model {args.model} --minutes {args.minutes:g}")
    print("| audio | segments | median s | p90 s | max s | median chars | max chars | WER |")
    print("|---|---|---|---|---|---|---|---|")
    wav, parts = build(args.minutes)
    before = transcribe(whisper, decode_audio(wav), options, settings).segments
    after = sentence_segments(before)
    label = f"{args.minutes:g} min corpus (batched)"
    print(_row(f"{label}, Whisper's", before, wer_by_kind(_words(before), parts)["all"]))
    print(_row(f"{label}, split", after, wer_by_kind(_words(after), parts)["all"]))
    longest = after

    sample = transcribe(whisper, decode_audio(SAMPLE_DIR / "sample.wav"), options, settings).segments
    split = sentence_segments(sample)
    for name, segments in (("30 s sample (sequential), Whisper's", sample), ("30 s sample (sequential), split", split)):
        text = " ".join(s.text for s in segments)
        print(_row(name, segments, jiwer.wer(normalise(reference_text()), normalise(text))))

    doc = {"segments": [{"start": s.start, "end": s.end, "text": s.text, "words": _words([s])} for s in longest]}
    made = cues(doc)
    print(
        f"\nsubtitle cues of the split corpus: {len(made)}, longest {max(c.end - c.start for c in made):.1f} s, "
        f"longest line {max(len(line) for c in made for line in c.lines)} characters, "
        f"most lines {max(len(c.lines) for c in made)}"
    )


if __name__ == "__main__":
    main()
