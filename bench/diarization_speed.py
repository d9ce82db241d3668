"""Diarization speed and memory on real meetings: this tree against another commit, each in a
fresh process, on the AMI development excerpts joined (248 s), pyannote's 30 s sample, and the
joined meetings tiled to ``--minutes``.

    AMI_DEV_DIR=../shared/data/ami-dev .venv/bin/python bench/diarization_speed.py \\
        [--against 57d3a17] [--repeat 3] [--minutes 60] [--workers 0,6]

Per variant: the median of ``--repeat`` passes over the joined file and the sample (after a warm-up
pass on 10 s), then one pass over the tiled file with its peak RSS (sampled every 20 ms). Real-time
factor = audio seconds / wall seconds; CPU seconds are the process's. ``--workers`` sets
``SpeakerModels(workers=)`` for this tree's variants (0: the default, the usable cores up to 6).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def child(workers: int, repeat: int, minutes: float) -> None:
    import whisperless  # noqa: F401, I001 - first: the OpenMP wait policy, as the product runs
    import numpy as np

    from bench.diarization import RssSampler
    from bench.diarization_quality import default_ami_dir, dev_set, read_wav, sample_item
    from whisperless.config import EngineSettings
    from whisperless.engine import models

    pipeline = models.load_diarization("campplus", EngineSettings.from_env())
    if workers:
        from whisperless.engine.onnx_models import SpeakerModels

        pipeline.models = SpeakerModels(pipeline.models.folder, workers)
    joined = read_wav(next(i for i in dev_set(default_ami_dir()) if i.kind == "joined").wav)
    sample = read_wav(sample_item().wav)
    pipeline(sample[:160000])  # warm-up

    def timed(audio) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        pipeline(audio)
        return time.perf_counter() - wall, time.process_time() - cpu

    row: dict = {"workers": getattr(pipeline.models, "workers", None)}
    for name, audio in (("joined", joined), ("sample", sample)):
        runs = sorted(timed(audio) for _ in range(repeat))
        wall, cpu = runs[len(runs) // 2]
        row[name] = {"seconds": audio.size / 16000, "wall": wall, "cpu": cpu}
    if minutes:
        tiled = np.tile(joined, int(np.ceil(minutes * 60 * 16000 / joined.size)))[: int(minutes * 60 * 16000)]
        sampler = RssSampler()
        sampler.start()
        wall, cpu = timed(tiled)
        row["tiled"] = {"seconds": tiled.size / 16000, "wall": wall, "cpu": cpu, "peak_mb": sampler.stop()}
    row["load"] = os.getloadavg()[0]
    print(json.dumps(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--against", default=None, help="a commit to run side by side")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--workers", default="0")
    parser.add_argument("--child", nargs=3, metavar=("WORKERS", "REPEAT", "MINUTES"))
    args = parser.parse_args()
    if args.child:
        child(int(args.child[0]), int(args.child[1]), float(args.child[2]))
        return
    from bench.diarization import checkout

    print(f"command: .venv/bin/python bench/diarization_speed.py {' '.join(sys.argv[1:])}")
    print(f"machine: {os.cpu_count()} cores, load at start {os.getloadavg()[0]:.2f}")
    variants = [(f"@{args.against}", checkout(args.against), 0)] if args.against else []
    variants += [
        (f"this (workers {w or 'default'})", str(ROOT / "layers" / "shared"), int(w)) for w in args.workers.split(",")
    ]
    print(
        "| variant | 248 s of meetings: x real time (CPU s) | 30 s sample | "
        f"{args.minutes:g} min: x real time, peak RSS MB | load |"
    )
    print("|---|---|---|---|---|")
    for label, path, workers in variants:
        env = {**os.environ, "PYTHONPATH": f"{path}{os.pathsep}{ROOT}", "PYTHONWARNINGS": "ignore"}
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(workers), str(args.repeat), str(args.minutes)],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        row = json.loads(out.strip().splitlines()[-1])

        def rtf(part: dict) -> str:
            return f"{part['seconds'] / part['wall']:.1f}x ({part['cpu']:.1f})"

        tiled = row.get("tiled")
        long = f"{tiled['seconds'] / tiled['wall']:.1f}x, {tiled['peak_mb']:.0f}" if tiled else "-"
        print(f"| {label} | {rtf(row['joined'])} | {rtf(row['sample'])} | {long} | {row['load']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
