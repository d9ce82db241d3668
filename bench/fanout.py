"""Long recordings split into chunk tasks and merged, against one pass: quality, time, memory.

    flock /work/scratch/bench.lock .venv/bin/python bench/fanout.py [--model base] [--json FILE]

Equivalence, with the engine's own entry points (Engine.run for one pass; Engine.transcribe_chunk
per chunk, each part through its .npz, then Engine.merge_chunks), diarization on:
- ``corpus``: bench/corpus.py's 10-minute file (pyannote's real sample and espeak conversations
  taking turns; each voice keeps one label across the file, so the same people speak in several
  chunks), in 2-minute chunks: WER on the parts with references (real, synthetic), DER, speakers;
- ``meetings``: the AMI excerpts and the sample joined (1 s gaps), then again in reverse order (AMI
  speaker IDs are global: the same people recur minutes apart, in other chunks), in 1-minute
  chunks: DER strict and forgiving (bench/diarization_quality.py's scoring), speakers.

Time: every chunk's time and the merge's (one warm process, chunks one after another); model
loading in a fresh process. Memory: the merge of 4 hours (this run's real parts of the corpus
tiled to 24 ten-minute chunks) in a fresh process: its time and peak RSS.

The modelled wall-clock of an N-hour recording at C concurrent functions: ceil(chunks / C) waves
of the slowest chunk (a 10-minute chunk costs the measured one-pass time of the 10-minute corpus,
scaled to 630 s for its margins) + one cold start per wave (loading models) + the merge + queue
hops (2 s each: upload -> planner, planner -> chunks, last chunk -> merge), against one pass
(which Lambda's 15 minutes cut off).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import whisperless  # noqa: E402,F401 - first: OpenMP wait policy

QUEUE_HOP_SECONDS = 2.0
LAMBDA_SECONDS = 900


def _fanned(engine, path: Path, options, chunk_seconds: float, num_samples: int):
    from whisperless.engine.longform import ChunkOutput, plan

    times, parts = [], []
    for chunk in plan(num_samples, chunk_seconds):
        started = time.perf_counter()
        part = engine.transcribe_chunk(path, options, chunk, num_samples)
        times.append(time.perf_counter() - started)
        parts.append(ChunkOutput.load(part.save()))
    started = time.perf_counter()
    doc = engine.merge_chunks(parts, options, job_id="fanned").document
    return doc, times, time.perf_counter() - started, parts


def _turns(doc: dict) -> list[tuple[float, float, str]]:
    return [(t["startTime"], t["stopTime"], t["speaker"]) for t in doc.get("diarization", [])]


def _words(doc: dict) -> list[dict]:
    return [w for s in doc["segments"] for w in s["words"]]


def corpus_case(engine, options) -> tuple[dict, list]:
    from bench.corpus import build, der_of, wer_by_kind

    path, parts = build(10)
    from whisperless.engine.audio import decode_audio

    num_samples = decode_audio(path).size
    started = time.perf_counter()
    single = engine.run(path, options, job_id="single")
    single_seconds = time.perf_counter() - started
    fanned, chunk_times, merge_seconds, outputs = _fanned(engine, path, options, 120, num_samples)
    speakers = len({s for p in parts for _, _, s in p["turns"]})
    rows = {}
    for name, doc in (("one pass", single), ("chunks", fanned)):
        rows[name] = {
            "wer": wer_by_kind(_words(doc), parts),
            "der": der_of(_turns(doc), parts),
            "speakers": len({t[2] for t in _turns(doc)}),
            "reference_speakers": speakers,
        }
    return {
        "audio_seconds": num_samples / 16000,
        "one_pass_seconds": single_seconds,
        "chunk_seconds": 120,
        "chunk_times": chunk_times,
        "merge_seconds": merge_seconds,
        "rows": rows,
    }, outputs


def meetings_case(engine, options) -> dict:
    from bench.diarization_quality import Scorer, ami_items, default_ami_dir, joined_item, sample_item

    items = ami_items(default_ami_dir()) + [sample_item()]
    item = joined_item(items + items[::-1])
    started = time.perf_counter()
    single = engine.run(item.wav, options, job_id="single")
    single_seconds = time.perf_counter() - started
    num_samples = round(item.duration * 16000)
    fanned, chunk_times, merge_seconds, _ = _fanned(engine, item.wav, options, 60, num_samples)
    rows = {}
    for name, doc in (("one pass", single), ("chunks", fanned)):
        strict, forgiving = Scorer()(item.turns, _turns(doc), item.duration)
        rows[name] = {
            "der_strict": strict,
            "der_forgiving": forgiving,
            "speakers": len({t[2] for t in _turns(doc)}),
            "reference_speakers": item.speakers,
        }
    return {
        "audio_seconds": item.duration,
        "one_pass_seconds": single_seconds,
        "chunk_seconds": 60,
        "chunk_times": chunk_times,
        "merge_seconds": merge_seconds,
        "rows": rows,
    }


def merge_child(folder: str, model: str) -> None:
    """A fresh process: load every part, merge, report the time and peak RSS."""
    from whisperless.contract.options import TranscriptionOptions
    from whisperless.engine import Engine, models
    from whisperless.engine.longform import ChunkOutput

    engine = Engine(whisper_model=model)
    models.load_whisper(engine.whisper_model, engine.settings)  # warm, as a function's init would be
    models.load_diarization(engine.diarization_model, engine.settings)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    parts = [ChunkOutput.load(p.read_bytes()) for p in sorted(Path(folder).glob("*.npz"))]
    loaded = time.perf_counter() - started
    document = engine.merge_chunks(parts, TranscriptionOptions(diarization=True), job_id="merge").document
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    speakers = len({t["speaker"] for t in document["diarization"]})
    print(
        json.dumps(
            {
                "chunks": len(parts),
                "audio_hours": document["duration"] / 3600,
                "load_parts_seconds": loaded,
                "merge_seconds": seconds,
                "timings": document["timings"],
                "peak_rss_mb": peak / 1024,
                "rss_before_merge_mb": before / 1024,
                "speakers": speakers,
                "words": sum(len(s["words"]) for s in document["segments"]),
            }
        )
    )


def four_hours(outputs: list, model: str) -> dict:
    """The corpus's real parts (10 minutes) tiled to 4 hours as 24 parts of the same 10 minutes:
    the windows, embeddings and words of a real run, the same voices throughout."""
    import numpy as np

    from whisperless.engine.diarization import WINDOW_SAMPLES, LocalOutput
    from whisperless.engine.longform import ChunkOutput, shifted
    from whisperless.engine.types import Transcript

    activity = np.concatenate([p.local.activity for p in outputs])
    embeddings = np.concatenate([p.local.embeddings for p in outputs])
    clean = np.concatenate([p.local.clean for p in outputs])
    per_part = len(activity) - 1  # whole windows of the 10 minutes
    seconds = per_part * 2.5
    total_samples = (24 * per_part - 1) * 40000 + WINDOW_SAMPLES
    segments = [s for p in outputs for s in p.transcript.segments if s.start < seconds]
    with tempfile.TemporaryDirectory() as folder:
        for i in range(24):
            transcript = shifted(Transcript("en", [_copy(s) for s in segments]), seconds * i)
            local = LocalOutput(
                2.5, i * per_part, activity[:per_part], embeddings[:per_part], clean[:per_part], total_samples
            )
            part = ChunkOutput(i, 24, total_samples, seconds * i, transcript, local)
            (Path(folder) / f"{i:05d}.npz").write_bytes(part.save())
        out = subprocess.run(
            [sys.executable, __file__, "--merge-child", folder, "--model", model],
            check=True,
            capture_output=True,
            text=True,
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _copy(segment):
    import copy

    return copy.deepcopy(segment)


PARTS = ROOT / ".cache" / "bench" / "fanout-corpus-parts"


def _cache_parts(outputs: list) -> None:
    PARTS.mkdir(parents=True, exist_ok=True)
    for part in outputs:
        (PARTS / f"{part.index:05d}.npz").write_bytes(part.save())


def corpus_parts(engine, options) -> list:
    """The 10-minute corpus's parts in 2-minute chunks: from the cache, else computed (and cached)."""
    from bench.corpus import build
    from whisperless.engine.audio import decode_audio
    from whisperless.engine.longform import ChunkOutput

    if PARTS.is_dir() and any(PARTS.glob("*.npz")):
        return [ChunkOutput.load(p.read_bytes()) for p in sorted(PARTS.glob("*.npz"))]
    path, _ = build(10)
    _, _, _, outputs = _fanned(engine, path, options, 120, decode_audio(path).size)
    _cache_parts(outputs)
    return outputs


def cold_start(model: str) -> float:
    code = (
        "import time; t=time.perf_counter(); import whisperless; from whisperless.engine import Engine, models; "
        f"e=Engine(whisper_model={model!r}); models.load_whisper(e.whisper_model, e.settings); "
        "models.load_diarization(e.diarization_model, e.settings); print(time.perf_counter()-t)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def model_wall_clock(one_pass_rtf: float, merge_4h: float, cold: float) -> list[dict]:
    """Seconds to a result for N-hour recordings in 10-minute chunks at C concurrent functions."""
    chunk = 630 / one_pass_rtf  # a 10-minute chunk transcribes 600 s plus its margins
    rows = []
    for hours in (1, 4):
        chunks = hours * 6
        merge = merge_4h * hours / 4 if hours < 4 else merge_4h
        single = hours * 3600 / one_pass_rtf
        for concurrency in (10, 50):
            waves = math.ceil(chunks / concurrency)
            total = 3 * QUEUE_HOP_SECONDS + waves * (cold + chunk) + merge
            rows.append(
                {
                    "hours": hours,
                    "concurrency": concurrency,
                    "chunks": chunks,
                    "seconds": total,
                    "one_pass_seconds": single,
                    "one_pass_fits_lambda": single + cold <= LAMBDA_SECONDS,
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="base")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--merge-child")
    parser.add_argument("--skip", default="", help="comma list of: meetings")
    parser.add_argument(
        "--merge-only", action="store_true", help="only the 4-hour merge (the corpus's parts: cached, else computed)"
    )
    args = parser.parse_args()
    if args.merge_child:
        merge_child(args.merge_child, args.model)
        return
    from whisperless.contract.options import TranscriptionOptions
    from whisperless.engine import Engine

    engine = Engine(whisper_model=args.model)
    options = TranscriptionOptions(diarization=True, language="en")
    report: dict = {"model": args.model, "load": os.getloadavg()}
    report["cold_start_seconds"] = cold_start(args.model)
    print(f"models loaded in a fresh process: {report['cold_start_seconds']:.1f} s", flush=True)
    engine.run(ROOT / "tests" / "data" / "trn02.wav", options)  # warm
    if args.merge_only:
        report["merge_4h"] = four_hours(corpus_parts(engine, options), args.model)
        print(json.dumps(report["merge_4h"], indent=1), flush=True)
        return
    corpus, outputs = corpus_case(engine, options)
    _cache_parts(outputs)
    report["corpus"] = corpus
    print(json.dumps(corpus, indent=1), flush=True)
    if "meetings" not in args.skip:
        report["meetings"] = meetings_case(engine, options)
        print(json.dumps(report["meetings"], indent=1), flush=True)
    report["merge_4h"] = four_hours(outputs, args.model)
    print(json.dumps(report["merge_4h"], indent=1), flush=True)
    rtf = corpus["audio_seconds"] / corpus["one_pass_seconds"]
    report["wall_clock"] = model_wall_clock(rtf, report["merge_4h"]["merge_seconds"], report["cold_start_seconds"])
    report["load_after"] = os.getloadavg()
    for row in report["wall_clock"]:
        print(
            f"{row['hours']} h at {row['concurrency']} functions: {row['chunks']} chunks, "
            f"{row['seconds']:.0f} s to the result; one pass {row['one_pass_seconds']:.0f} s"
            f"{'' if row['one_pass_fits_lambda'] else ' (over Lambda 15 min)'}"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
