"""OpenMP wait policy: whisperless's setting (whisperless/__init__.py) against libgomp's default.

    .venv/bin/python bench/threads.py [--model base] [--audio FILE] [--repeat 4] [--busy-cores 1]

Each (variant, workload) runs in a fresh process. Variants:
- ``libgomp default``: GOMP_SPINCOUNT=300000 alone, which is libgomp's own default when
  OMP_WAIT_POLICY is unset, and which makes whisperless leave the environment alone;
- ``whisperless``: neither variable set, so whisperless sets them when it is imported.
Workloads, warm (one untimed run first), median of ``--repeat``:
- ``bare faster-whisper``: the same loaded WhisperModel's own transcribe(array, beam_size=5,
  vad_filter=True, word_timestamps=True), faster-whisper's defaults otherwise;
- ``whisperless transcribe``: whisperless.engine.whisper.transcribe with our loaded model;
- ``diarize after transcribe``: our diarization pipeline, loaded before Whisper as in the engine,
  each run preceded by a transcription (what a warm job with diarization does).
``--busy-cores N`` keeps N other processes spinning meanwhile: cores shared with other work,
where spinning threads lose time slices instead of saving wake-ups.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = ("bare faster-whisper", "whisperless transcribe", "diarize after transcribe")
VARIANTS = ("libgomp default", "whisperless")


def child(workload: str, model: str, audio_path: str, repeat: int) -> None:
    """The variant is in the environment this process was started with."""
    from whisperless.config import EngineSettings
    from whisperless.contract.options import TranscriptionOptions
    from whisperless.engine import models
    from whisperless.engine.audio import decode_audio
    from whisperless.engine.whisper import transcribe

    settings = EngineSettings.from_env()
    audio = decode_audio(audio_path)
    # The engine's order: diarization loads before CTranslate2 (whisper).
    pipeline = (
        models.load_diarization(settings.diarization_model, settings)
        if workload == "diarize after transcribe"
        else None
    )
    whisper = models.load_whisper(model, settings)
    if workload == "bare faster-whisper":

        def work():
            segments, _ = whisper.transcribe(audio, beam_size=5, vad_filter=True, word_timestamps=True)
            list(segments)
    elif workload == "whisperless transcribe":

        def work():
            transcribe(whisper, audio, TranscriptionOptions(), settings)
    else:
        from whisperless.engine.diarize import diarize

        options = TranscriptionOptions(diarization=True)

        def work():
            transcribe(whisper, audio, TranscriptionOptions(), settings)
            started = time.perf_counter()
            diarize(pipeline, audio, options)
            return time.perf_counter() - started

    times = []
    for _ in range(repeat + 1):
        started = time.perf_counter()
        inner = work()
        times.append(inner if inner is not None else time.perf_counter() - started)
    print(json.dumps({"times": times[1:], "duration": audio.size / 16000}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="base")
    parser.add_argument("--audio", default="")
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--busy-cores", type=int, default=0)
    parser.add_argument("--child", metavar="WORKLOAD")
    args = parser.parse_args()
    if not args.audio:
        sys.path.insert(0, str(ROOT))
        from bench.quality import SAMPLE_DIR

        args.audio = str(SAMPLE_DIR / "sample.wav")
    if args.child:
        child(args.child, args.model, args.audio, args.repeat)
        return
    env = {key: value for key, value in os.environ.items() if key not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["PYTHONWARNINGS"] = "ignore"
    print(
        f"command: .venv/bin/python bench/threads.py --model {args.model} --repeat {args.repeat}"
        + (f" --busy-cores {args.busy_cores}" if args.busy_cores else "")
        + (f" --audio {args.audio}" if "sample.wav" not in args.audio else "")
    )
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy_cores)]
    try:
        compare(args, env)
    finally:
        for hog in hogs:
            hog.kill()


def compare(args, env: dict[str, str]) -> None:
    print(f"audio: {Path(args.audio).name}; machine: {os.cpu_count()} cores; load at start: {os.getloadavg()[0]:.2f}")
    print(
        "| workload | libgomp default s (median) | whisperless s (median) | speed-up | RTF default | RTF whisperless |"
    )
    print("|---" * 6 + "|")
    for workload in WORKLOADS:
        medians, duration = {}, 0.0
        for variant in VARIANTS:
            variant_env = {**env, "GOMP_SPINCOUNT": "300000"} if variant == "libgomp default" else env
            run = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--model",
                    args.model,
                    "--audio",
                    args.audio,
                    "--repeat",
                    str(args.repeat),
                    "--child",
                    workload,
                ],
                capture_output=True,
                text=True,
                env=variant_env,
                cwd=ROOT,
            )
            if run.returncode:
                sys.exit(f"{workload} / {variant} failed:\n{run.stderr}")
            result = json.loads(run.stdout.strip().splitlines()[-1])
            medians[variant], duration = statistics.median(result["times"]), result["duration"]
        default, ours = medians["libgomp default"], medians["whisperless"]
        print(
            f"| {workload} | {default:.2f} | {ours:.2f} | {default / ours:.2f}x | "
            f"{duration / default:.1f}x | {duration / ours:.1f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
