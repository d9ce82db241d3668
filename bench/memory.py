"""Peak memory of a whole job (decode, diarization, transcription, merge), stage by stage.

    .venv/bin/python bench/memory.py --minutes 60 --model base [--variants default,MALLOC_ARENA_MAX=2]
    .venv/bin/python bench/memory.py --minutes 0.5 --model tiny.en      # the real 30 s sample

Each variant runs one job with diarization in a fresh process (KEY=VALUE[+KEY=VALUE] sets its
environment) while a thread samples RSS every 20 ms; stages are placed on that timeline from
the result's own `timings` (they run in order). Reported: RSS after imports, peak and end RSS of
each stage, the process's peak (ru_maxrss), wall time and real-time factor.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.diarization import rss_mb  # noqa: E402

STAGES = ("decode", "load_diarization", "diarize", "load_whisper", "transcribe", "merge")


def child(audio: str, model: str) -> None:
    timeline: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            timeline.append((time.perf_counter(), rss_mb()))
            time.sleep(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    from whisperless.contract.options import TranscriptionOptions
    from whisperless.engine import Engine

    after_imports = rss_mb()
    engine = Engine(whisper_model=model)
    started = time.perf_counter()
    doc = engine.run(audio, TranscriptionOptions(diarization=True))
    wall = time.perf_counter() - started
    stop.set()
    thread.join()
    stages, clock = {}, started
    for name, seconds in doc["timings"].items():
        if name == "total":
            continue
        inside = [rss for t, rss in timeline if clock <= t <= clock + seconds] or [rss_mb()]
        stages[name] = {"seconds": seconds, "peak": max(inside), "end": inside[-1]}
        clock += seconds
    print(
        json.dumps(
            {
                "duration": doc["duration"],
                "wall": wall,
                "after_imports": after_imports,
                "stages": stages,
                "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "words": sum(len(s["words"]) for s in doc["segments"]),
                "speakers": len({t["speaker"] for t in doc["diarization"]}),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", default="60")
    parser.add_argument("--model", default="base")
    parser.add_argument("--variants", default="default")
    parser.add_argument("--child", nargs=2, metavar=("AUDIO", "MODEL"))
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    from bench.corpus import build
    from bench.quality import SAMPLE_DIR

    audio = SAMPLE_DIR / "sample.wav" if float(args.minutes) == 0.5 else build(float(args.minutes))[0]
    print(
        f"command: .venv/bin/python bench/memory.py --minutes {args.minutes} --model {args.model} "
        f"--variants {args.variants}"
    )
    print(
        f"audio: {audio.name}; machine: {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB; load {os.getloadavg()[0]:.2f}"
    )
    print(
        "| variant | after imports MB | "
        + " | ".join(f"{s} peak / end MB (s)" for s in STAGES)
        + " | peak RSS MB | wall s | RTF |"
    )
    print("|---" * (len(STAGES) + 5) + "|")
    for variant in args.variants.split(","):
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        if variant != "default":
            env.update(dict(kv.split("=", 1) for kv in variant.split("+")))
        run = subprocess.run(
            [sys.executable, __file__, "--child", str(audio), args.model], capture_output=True, text=True, env=env
        )
        if run.returncode:
            print(f"| {variant} | failed: {(run.stderr.strip().splitlines() or ['?'])[-1]} |", flush=True)
            continue
        r = json.loads(run.stdout.strip().splitlines()[-1])
        cells = []
        for s in STAGES:
            st = r["stages"].get(s)
            cells.append(f"{st['peak']:.0f} / {st['end']:.0f} ({st['seconds']:.1f})" if st else "-")
        print(
            f"| {variant} | {r['after_imports']:.0f} | "
            + " | ".join(cells)
            + f" | {r['maxrss']:.0f} | {r['wall']:.0f} | {r['duration'] / r['wall']:.1f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
