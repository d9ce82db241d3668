"""WER, DER and cpWER of the engine on pyannote's bundled real two-speaker sample.

    .venv/bin/python bench/quality.py [--model base] [--code this,@814b533]

Each entry of ``--code`` runs one job with diarization in a fresh process: ``this`` (this tree) or
``@GITREF`` (that commit's whisperless, ``git archive`` into .cache/bench/), so before/after
figures come from one run. cpWER (concatenated minimum-permutation WER) scores who said which
word: each speaker's words in time order against each reference speaker's text (``sample.stm``),
speakers matched one to one to make the fewest errors, errors summed over all reference words.
Its floor is the plain WER: the rest is words given to the wrong person.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jiwer

import whisperless  # noqa: F401 - before torch (pyannote imports it): OpenMP wait policy, no telemetry

ROOT = Path(__file__).resolve().parents[1]


def _sample_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("pyannote.audio")  # found without importing it (and torch)
    assert spec is not None and spec.submodule_search_locations
    return Path(list(spec.submodule_search_locations)[0]) / "sample"


SAMPLE_DIR = _sample_dir()


def normalise(text: str) -> str:
    text = re.sub(r"[^a-z0-9' ]+", " ", text.lower())
    return re.sub(r"\s+", " ", text).strip()


def _stm() -> list[list[str]]:
    # STM: "<file> <channel> <speaker> <start> <end> <words...>"
    lines = [line.split(maxsplit=5) for line in (SAMPLE_DIR / "sample.stm").read_text().splitlines() if line.strip()]
    return sorted((parts for parts in lines if len(parts) > 5), key=lambda p: float(p[3]))


def reference_text() -> str:
    return " ".join(parts[5] for parts in _stm())


def wer(doc: dict) -> float:
    return jiwer.wer(normalise(reference_text()), normalise(doc["text"]))


def der(doc: dict) -> float:
    from pyannote.core import Annotation, Segment
    from pyannote.database.util import load_rttm
    from pyannote.metrics.diarization import DiarizationErrorRate

    reference = load_rttm(SAMPLE_DIR / "sample.rttm")["sample"]
    hypothesis = Annotation(uri="sample")
    for turn in doc["diarization"]:
        hypothesis[Segment(turn["startTime"], turn["stopTime"])] = turn["speaker"]
    return DiarizationErrorRate()(reference, hypothesis)


def _errors(reference: str, hypothesis: str) -> int:
    if not reference or not hypothesis:
        return len((reference or hypothesis).split())
    out = jiwer.process_words(reference, hypothesis)
    return out.substitutions + out.deletions + out.insertions


def cpwer(doc: dict) -> float:
    """Concatenated minimum-permutation WER of the document's words against sample.stm."""
    from scipy.optimize import linear_sum_assignment

    reference: dict[str, str] = {}
    for parts in _stm():
        reference[parts[2]] = f"{reference.get(parts[2], '')} {normalise(parts[5])}".strip()
    hypothesis: dict[str, str] = {}
    for word in (w for s in doc["segments"] for w in s["words"]):
        hypothesis[word["speaker"]] = f"{hypothesis.get(word['speaker'], '')} {normalise(word['word'])}".strip()
    refs, hyps = list(reference.values()), list(hypothesis.values())
    n = max(len(refs), len(hyps))
    refs, hyps = refs + [""] * (n - len(refs)), hyps + [""] * (n - len(hyps))
    cost = [[_errors(r, h) for h in hyps] for r in refs]
    rows, cols = linear_sum_assignment(cost, maximize=False)
    return sum(cost[r][c] for r, c in zip(rows, cols, strict=True)) / sum(len(r.split()) for r in refs)


def child(model: str) -> None:
    from whisperless.contract.options import TranscriptionOptions
    from whisperless.engine import Engine

    doc = Engine(whisper_model=model).run(SAMPLE_DIR / "sample.wav", TranscriptionOptions(diarization=True))
    print(json.dumps(doc))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="base")
    parser.add_argument("--code", default="this")
    parser.add_argument("--child", action="store_true")
    args = parser.parse_args()
    if args.child:
        child(args.model)
        return
    from bench.diarization import checkout

    print(f"command: .venv/bin/python bench/quality.py {' '.join(sys.argv[1:])}")
    print("| code | model | speakers | WER | DER | cpWER | diarize s | transcribe s |")
    print("|---|---|---|---|---|---|---|---|")
    for code in args.code.split(","):
        ref = code.partition("@")[2]
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        env["PYTHONPATH"] = f"{checkout(ref) if ref else ROOT / 'layers' / 'shared'}:{ROOT}"
        run = subprocess.run(
            [sys.executable, __file__, "--child", "--model", args.model], capture_output=True, text=True, env=env
        )
        if run.returncode:
            print(f"| {code} | failed: {(run.stderr.strip().splitlines() or ['?'])[-1]} |", flush=True)
            continue
        doc = json.loads(run.stdout.strip().splitlines()[-1])
        speakers = len({t["speaker"] for t in doc["diarization"]})
        label = f"commit {ref}" if ref else "this tree"
        print(
            f"| {label} | {args.model} | {speakers} | {wer(doc):.3f} | {der(doc):.3f} | {cpwer(doc):.3f} | "
            f"{doc['timings']['diarize']:.2f} | {doc['timings']['transcribe']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
