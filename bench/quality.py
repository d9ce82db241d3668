"""WER and DER of the engine on pyannote's bundled real two-speaker sample.

.venv/bin/python bench/quality.py [--model base] [--thresholds 0.5,0.6,...]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import jiwer
import pyannote.audio
from pyannote.core import Annotation, Segment
from pyannote.database.util import load_rttm
from pyannote.metrics.diarization import DiarizationErrorRate

import whisperless  # noqa: F401 - first: OpenMP wait policy and no telemetry, before torch/pyannote load

SAMPLE_DIR = Path(pyannote.audio.__file__).parent / "sample"


def normalise(text: str) -> str:
    text = re.sub(r"[^a-z0-9' ]+", " ", text.lower())
    return re.sub(r"\s+", " ", text).strip()


def reference_text() -> str:
    # STM: "<file> <channel> <speaker> <start> <end> <words...>"
    lines = [line.split(maxsplit=5) for line in (SAMPLE_DIR / "sample.stm").read_text().splitlines() if line.strip()]
    return " ".join(parts[5] for parts in sorted(lines, key=lambda p: float(p[3])) if len(parts) > 5)


def wer(doc: dict) -> float:
    return jiwer.wer(normalise(reference_text()), normalise(doc["text"]))


def der(doc: dict) -> float:
    reference = load_rttm(SAMPLE_DIR / "sample.rttm")["sample"]
    hypothesis = Annotation(uri="sample")
    for turn in doc["diarization"]:
        hypothesis[Segment(turn["startTime"], turn["stopTime"])] = turn["speaker"]
    return DiarizationErrorRate()(reference, hypothesis)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="base")
    parser.add_argument("--thresholds", default="")
    args = parser.parse_args()
    from whisperless.config import EngineSettings
    from whisperless.contract.options import TranscriptionOptions
    from whisperless.engine import Engine, models

    engine = Engine(whisper_model=args.model)
    thresholds = [float(t) for t in args.thresholds.split(",") if t] or [EngineSettings.from_env().clustering_threshold]
    print(f"command: {' '.join(sys.argv)}")
    print("| model | threshold | speakers | WER | DER | diarize s | transcribe s |")
    print("|---|---|---|---|---|---|---|")
    for threshold in thresholds:
        pipeline = models.load_diarization(engine.diarization_model, engine.settings)
        pipeline.instantiate(
            {
                "segmentation": {"min_duration_off": 0.0},
                "clustering": {"method": "centroid", "threshold": threshold, "min_cluster_size": 12},
            }
        )
        doc = engine.run(SAMPLE_DIR / "sample.wav", TranscriptionOptions(diarization=True))
        speakers = len({t["speaker"] for t in doc["diarization"]})
        print(
            f"| {args.model} | {threshold} | {speakers} | {wer(doc):.3f} | {der(doc):.3f} | "
            f"{doc['timings']['diarize']:.2f} | {doc['timings']['transcribe']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
