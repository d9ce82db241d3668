"""Diarization speed and memory on long files: the campplus pipeline as the engine runs it.

    .venv/bin/python bench/diarization.py --minutes 1,10,60 [--variants this,@814b533] [--repeat N]

Each (file, variant) runs in a fresh process: load the pipeline, warm it up on 10 s, then
diarize the whole decoded file once (what the engine does). A variant is ``this`` (this tree),
optionally with environment settings (``this:OMP_WAIT_POLICY=PASSIVE:WHISPERLESS_SEGMENTATION_BATCH=16``),
and ``@GITREF`` at the end runs that commit's whisperless instead (``git archive`` into
.cache/bench/), for before/after comparisons in one run: ``this,@814b533`` (814b533: the
pyannote-based pipeline before issue 9). With ``--repeat N`` the variants alternate N times; the
median run is reported. Reported: real-time factor (audio s / diarize s), CPU user/sys seconds,
the load average during the run (the machine may be shared), peak RSS of the process and its
growth during diarization, DER against the corpus reference (bench/corpus.py).
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


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class RssSampler(threading.Thread):
    """Peak resident set size, sampled from /proc every 20 ms (ru_maxrss covers the whole life)."""

    def __init__(self, interval: float = 0.02):
        super().__init__(daemon=True)
        self.interval, self.peak, self._done = interval, 0, threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, rss_mb())
            time.sleep(self.interval)

    def stop(self) -> float:
        self._done.set()
        self.join()
        return max(self.peak, rss_mb())


def child(minutes: float) -> None:
    from bench.corpus import build, der_of
    from whisperless.config import EngineSettings
    from whisperless.contract.options import TranscriptionOptions
    from whisperless.engine import models
    from whisperless.engine.audio import decode_audio
    from whisperless.engine.diarize import diarize

    wav, parts = build(minutes)
    pipeline = models.load_diarization("campplus", EngineSettings.from_env())
    audio = decode_audio(wav)
    diarize(pipeline, audio[: 10 * 16000], TranscriptionOptions(diarization=True))  # warm-up
    before = rss_mb()
    sampler = RssSampler()
    sampler.start()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    turns = diarize(pipeline, audio, TranscriptionOptions(diarization=True)).turns
    seconds = time.perf_counter() - started
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    peak = sampler.stop()
    print(
        json.dumps(
            {
                "duration": audio.size / 16000,
                "seconds": seconds,
                "user": usage1.ru_utime - usage0.ru_utime,
                "sys": usage1.ru_stime - usage0.ru_stime,
                "load": os.getloadavg()[0],
                "rss_before_mb": before,
                "peak_mb": peak,
                "maxrss_mb": usage1.ru_maxrss / 1024,
                "der": der_of([(t.start, t.end, t.speaker) for t in turns], parts),
                "speakers": len({t.speaker for t in turns}),
            }
        )
    )


def checkout(ref: str) -> str:
    """A commit's layers/shared, extracted once under .cache/bench/; returns a PYTHONPATH entry."""
    sha = subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    target = ROOT / ".cache" / "bench" / f"ref-{sha}"
    if not (target / "layers" / "shared" / "whisperless").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", sha, "layers/shared"], cwd=ROOT, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return str(target / "layers" / "shared")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", default="1,10")
    parser.add_argument("--variants", default="this")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--child", metavar="MINUTES")
    args = parser.parse_args()
    if args.child:
        child(float(args.child))
        return
    print(f"command: .venv/bin/python bench/diarization.py {' '.join(sys.argv[1:])}")
    print(f"machine: {os.cpu_count()} cores; load at start: {os.getloadavg()[0]:.2f}")
    print(f"repeats: {args.repeat}, variants alternated, median run shown")
    print(
        "| minutes | code | env | diarize s (median) | runs s | RTF | CPU user s | CPU sys s | load | "
        "RSS before MB | peak RSS MB | growth MB | DER | speakers |"
    )
    print("|---" * 14 + "|")
    for minutes in args.minutes.split(","):
        runs: dict[str, list[dict]] = {v: [] for v in args.variants.split(",")}
        for _ in range(args.repeat):
            for variant in runs:
                spec, _, ref = variant.partition("@")
                env = {**os.environ, "PYTHONWARNINGS": "ignore"}
                env.update(dict(e.split("=", 1) for e in spec.split(":")[1:]))
                env["PYTHONPATH"] = checkout(ref) if ref else str(ROOT / "layers" / "shared")
                run = subprocess.run(
                    [sys.executable, __file__, "--child", minutes], capture_output=True, text=True, env=env
                )
                if run.returncode:
                    print(f"  {variant}: failed: {(run.stderr.strip().splitlines() or ['?'])[-1]}", file=sys.stderr)
                    continue
                runs[variant].append(json.loads(run.stdout.strip().splitlines()[-1]))
                print(
                    f"  {minutes} min {variant}: {runs[variant][-1]['seconds']:.1f} s (load {os.getloadavg()[0]:.2f})",
                    file=sys.stderr,
                    flush=True,
                )
        for variant, results in runs.items():
            if not results:
                print(f"| {minutes} | {variant} | failed |", flush=True)
                continue
            spec, _, ref = variant.partition("@")
            r = sorted(results, key=lambda x: x["seconds"])[len(results) // 2]
            each = " / ".join(f"{x['seconds']:.0f}" for x in results)
            code = f"commit {Path(checkout(ref)).parents[1].name[4:]}" if ref else "this tree"
            print(
                f"| {minutes} | {code} | {' '.join(spec.split(':')[1:]) or '-'} | {r['seconds']:.1f} | {each} | "
                f"{r['duration'] / r['seconds']:.1f}x | {r['user']:.0f} | {r['sys']:.0f} | {r['load']:.1f} | "
                f"{r['rss_before_mb']:.0f} | {r['peak_mb']:.0f} | {r['peak_mb'] - r['rss_before_mb']:.0f} | "
                f"{r['der']:.3f} | {r['speakers']} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
