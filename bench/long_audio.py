"""Long audio: sequential vs batched (faster_whisper.BatchedInferencePipeline) transcription,
speed and WER on the parts with references (bench/corpus.py files: real sample + espeak).

    .venv/bin/python bench/long_audio.py --minutes 10 --model base --modes seq,b4,b8,b8k1 --repeat 3

Modes: seq (sequential), bN (batched, batch N); a kN suffix sets the beam size (default 5), a
tN suffix the CTranslate2 CPU threads (default: the model's, WHISPERLESS_CPU_THREADS), e.g. b8k5t2.

Runs our own transcribe() (whisperless.engine.whisper) with the batching threshold forced on or
off, one warm model, variants alternated within each repeat; the median time is reported.
Real-time factor = audio seconds / transcription seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.corpus import build, wer_by_kind  # noqa: E402


def run_mode(model, audio, mode: str):
    from whisperless.config import EngineSettings
    from whisperless.contract.options import TranscriptionOptions
    from whisperless.engine.whisper import transcribe

    kind, batch, beam = parse_mode(mode)
    if kind == "seq":
        settings = EngineSettings.from_env(beam_size=beam, batched_min_seconds=float("inf"))
    else:
        settings = EngineSettings.from_env(beam_size=beam, batched_min_seconds=0.0, batch_size=batch)
    started = time.perf_counter()
    transcript = transcribe(model, audio, TranscriptionOptions(), settings)
    return time.perf_counter() - started, transcript


def parse_mode(mode: str) -> tuple[str, int, int]:
    """'seq' | 'b8' (batched, batch 8), with an optional beam size suffix: 'seqk1', 'b8k1'."""
    from whisperless.config import EngineSettings

    mode, _, _threads = mode.partition("t")
    head, _, beam = mode.partition("k")
    beam_size = int(beam) if beam else EngineSettings.from_env().beam_size
    if head == "seq":
        return "seq", 0, beam_size
    return "batched", int(head[1:]), beam_size


def threads_of(mode: str) -> int:
    return int(mode.partition("t")[2] or 0)


def label(mode: str) -> str:
    kind, batch, beam = parse_mode(mode)
    threads = threads_of(mode)
    return (
        ("sequential" if kind == "seq" else f"batched, batch {batch}")
        + f", beam {beam}"
        + (f", {threads} threads" if threads else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", default="10")
    parser.add_argument("--model", default="base")
    parser.add_argument("--modes", default="seq,b8")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    from whisperless.config import EngineSettings
    from whisperless.engine import models
    from whisperless.engine.audio import decode_audio

    settings = EngineSettings.from_env()
    loaded = {0: models.load_whisper(args.model, settings)}

    def model_for(mode: str):
        threads = threads_of(mode)
        if threads not in loaded:
            from faster_whisper import WhisperModel

            loaded[threads] = WhisperModel(
                models.resolve_whisper_model(args.model, settings),
                device="cpu",
                compute_type="int8",
                cpu_threads=threads,
            )
        return loaded[threads]

    print(
        f"command: .venv/bin/python bench/long_audio.py --minutes {args.minutes} --model {args.model} "
        f"--modes {args.modes} --repeat {args.repeat}"
    )
    print(f"machine: {os.cpu_count()} cores; load at start: {os.getloadavg()[0]:.2f}")
    print("| minutes | model | mode | median s | runs s | RTF | speed vs seq | WER real | WER synthetic | WER all |")
    print("|---" * 10 + "|")
    for minutes in args.minutes.split(","):
        wav, parts = build(float(minutes))
        audio = decode_audio(wav)
        modes = args.modes.split(",")
        times: dict[str, list[float]] = {m: [] for m in modes}
        wers: dict[str, dict] = {}
        for _ in range(args.repeat):
            for mode in modes:
                seconds, transcript = run_mode(model_for(mode), audio, mode)
                times[mode].append(seconds)
                words = [{"word": w.word, "start": w.start, "end": w.end} for s in transcript.segments for w in s.words]
                wers[mode] = wer_by_kind(words, parts)
                print(f"  ({mode}: {seconds:.1f} s, load {os.getloadavg()[0]:.2f})", file=sys.stderr, flush=True)
        duration = audio.size / 16000
        base = statistics.median(times["seq"]) if "seq" in times else None
        for mode in modes:
            med = statistics.median(times[mode])
            w = wers[mode]
            speed = f"{base / med:.2f}x" if base else "-"
            print(
                f"| {minutes} | {args.model} | {label(mode)} | {med:.1f} | "
                f"{' / '.join(f'{t:.0f}' for t in times[mode])} | "
                f"{duration / med:.1f}x | {speed} | {w.get('real', float('nan')):.3f} | "
                f"{w.get('synthetic', float('nan')):.3f} | {w['all']:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
