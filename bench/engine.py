"""Engine figures per model, each configuration in a fresh process:
imports, model loads, cold and warm real-time factor, peak RSS; and WER/DER on the sample.

    .venv/bin/python bench/engine.py [--models tiny.en,base] [--audio FILE] [--repeat 2]

Real-time factor = audio seconds / processing seconds (higher is faster).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(model: str, audio: str, diarization: bool, repeat: int) -> None:
    """Runs inside the fresh process; prints one JSON line."""
    started = time.perf_counter()
    from whisperless.engine import Engine
    from whisperless.options import TranscriptionOptions
    imports = time.perf_counter() - started

    engine = Engine(whisper_model=model)
    options = TranscriptionOptions(diarization=diarization)
    runs = [engine.run(audio, options) for _ in range(repeat)]
    cold, warm = runs[0], runs[-1]
    out = {
        "imports": imports,
        "load_whisper": cold["timings"].get("load_whisper", 0.0),
        "load_diarization": cold["timings"].get("load_diarization", 0.0),
        "duration": cold["duration"],
        "cold_total": cold["timings"]["total"],
        "warm_total": warm["timings"]["total"],
        "warm_transcribe": warm["timings"]["transcribe"],
        "warm_diarize": warm["timings"].get("diarize", 0.0),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if Path(audio).name == "sample.wav":
        sys.path.insert(0, str(ROOT))
        from bench.quality import der, wer
        out["wer"] = wer(warm)
        out["der"] = der(warm) if diarization else None
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="tiny.en,base")
    parser.add_argument("--audio", default="")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "AUDIO", "DIARIZE"))
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.child[2] == "1", args.repeat)
        return
    if not args.audio:
        import pyannote.audio
        args.audio = str(Path(pyannote.audio.__file__).parent / "sample" / "sample.wav")
    env = {**os.environ, "PYANNOTE_METRICS_ENABLED": "false", "PYTHONWARNINGS": "ignore"}
    print(f"command: .venv/bin/python bench/engine.py --models {args.models} --repeat {args.repeat}"
          + (f" --audio {args.audio}" if "sample.wav" not in args.audio else ""))
    print(f"audio: {Path(args.audio).name}; machine: {os.cpu_count()} cores")
    print("| model | diarization | imports s | whisper load s | pyannote load s | cold job s | warm job s "
          "| warm RTF | transcribe RTF | diarize RTF | peak RSS MB | WER | DER |")
    print("|---" * 13 + "|")
    for model in args.models.split(","):
        for diarize in (False, True):
            run = subprocess.run([sys.executable, __file__, "--repeat", str(args.repeat), "--child", model,
                                  args.audio, "1" if diarize else "0"], capture_output=True, text=True, env=env)
            if run.returncode:
                print(f"| {model} | {diarize} | failed: {run.stderr.strip().splitlines()[-1]} |")
                continue
            r = json.loads(run.stdout.strip().splitlines()[-1])
            d = r["duration"]
            rtf = lambda s: f"{d / s:.1f}x" if s else "-"  # noqa: E731
            print(f"| {model} | {'yes' if diarize else 'no'} | {r['imports']:.2f} | {r['load_whisper']:.2f} | "
                  f"{r['load_diarization']:.2f} | {r['cold_total']:.2f} | {r['warm_total']:.2f} | "
                  f"{rtf(r['warm_total'])} | {rtf(r['warm_transcribe'])} | {rtf(r['warm_diarize'])} | "
                  f"{r['peak_rss_mb']:.0f} | {r.get('wer', float('nan')):.3f} | "
                  f"{'-' if r.get('der') is None else format(r['der'], '.3f')} |", flush=True)


if __name__ == "__main__":
    main()
