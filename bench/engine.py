"""Cold vs warm engine figures per model, each configuration in a fresh process: the cold
budget per stage (imports, whisper load, diarization load, first job), warm real-time factor,
peak RSS; and WER/DER on the sample.

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
    """Runs inside the fresh process; prints one JSON line.

    The cold budget is split explicitly: each heavy import first, then each model load
    (models.load_* with the modules already imported), then the first job (first-call
    costs such as allocator warm-up and one-off kernels), then warm jobs.
    """
    started = time.perf_counter()
    from whisperless.contract.options import TranscriptionOptions
    from whisperless.engine import Engine

    t_engine = time.perf_counter()
    import faster_whisper  # noqa: F401 - ctranslate2, onnxruntime (Silero VAD), tokenizers

    t_fw = time.perf_counter()
    if diarization:
        import scipy.cluster.hierarchy  # noqa: F401 - clustering

        import whisperless.engine.diarization  # noqa: F401 - numpy; ONNX Runtime came with faster-whisper
    t_pya = time.perf_counter()
    from whisperless.config import EngineSettings
    from whisperless.engine import models

    settings = EngineSettings.from_env()
    models.load_whisper(model, settings)
    t_wl = time.perf_counter()
    if diarization:
        models.load_diarization(settings.diarization_model, settings)
    t_dl = time.perf_counter()

    engine = Engine(whisper_model=model)
    options = TranscriptionOptions(diarization=diarization)
    runs = [engine.run(audio, options) for _ in range(repeat)]
    cold, warm = runs[0], runs[-1]
    out = {
        "imports": t_engine - started,
        "import_faster_whisper": t_fw - t_engine,
        "import_diarization": t_pya - t_fw,
        "load_whisper": t_wl - t_pya,
        "load_diarization": t_dl - t_wl,
        "duration": cold["duration"],
        "cold_total": cold["timings"]["total"],
        "cold_transcribe": cold["timings"]["transcribe"],
        "cold_diarize": cold["timings"].get("diarize", 0.0),
        "first_result": time.perf_counter() - started - sum(r["timings"]["total"] for r in runs[1:]),
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
        sys.path.insert(0, str(ROOT))
        from bench.quality import SAMPLE_DIR

        args.audio = str(SAMPLE_DIR / "sample.wav")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    print(
        f"command: .venv/bin/python bench/engine.py --models {args.models} --repeat {args.repeat}"
        + (f" --audio {args.audio}" if "sample.wav" not in args.audio else "")
    )
    print(f"audio: {Path(args.audio).name}; machine: {os.cpu_count()} cores")
    print(
        "| model | diarization | import whisperless s | import faster-whisper s | import diarization s "
        "| whisper load s | diarization load s | cold job s (transcribe / diarize) | first result s "
        "| warm job s (transcribe / diarize) | warm RTF | peak RSS MB | WER | DER |"
    )
    print("|---" * 14 + "|")
    for model in args.models.split(","):
        for diarize in (False, True):
            run = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--repeat",
                    str(args.repeat),
                    "--child",
                    model,
                    args.audio,
                    "1" if diarize else "0",
                ],
                capture_output=True,
                text=True,
                env=env,
            )
            if run.returncode:
                print(f"| {model} | {diarize} | failed: {run.stderr.strip().splitlines()[-1]} |")
                continue
            r = json.loads(run.stdout.strip().splitlines()[-1])
            d = r["duration"]

            def rtf(seconds, d=d):
                return f"{d / seconds:.1f}x" if seconds else "-"

            def dia(key, r=r, diarize=diarize):
                return f" / {r[key]:.2f}" if diarize else ""

            print(
                f"| {model} | {'yes' if diarize else 'no'} | {r['imports']:.2f} | {r['import_faster_whisper']:.2f} | "
                f"{r['import_diarization']:.2f} | {r['load_whisper']:.2f} | {r['load_diarization']:.2f} | "
                f"{r['cold_total']:.2f} ({r['cold_transcribe']:.2f}{dia('cold_diarize')}) | {r['first_result']:.2f} | "
                f"{r['warm_total']:.2f} ({r['warm_transcribe']:.2f}{dia('warm_diarize')}) | {rtf(r['warm_total'])} | "
                f"{r['peak_rss_mb']:.0f} | {r.get('wer', float('nan')):.3f} | "
                f"{'-' if r.get('der') is None else format(r['der'], '.3f')} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
