"""Sweep the agglomerative clustering threshold on made data and the real sample.

    .venv/bin/python bench/tune_diarization.py [--thresholds 0.5,0.6,...]

Made data: espeak-ng conversations with 2, 3 and 4 voices (bench/synth.py). The
default threshold is the one with the lowest mean DER over all of them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyannote.core import Annotation, Segment  # noqa: E402
from pyannote.database.util import load_rttm  # noqa: E402
from pyannote.metrics.diarization import DiarizationErrorRate  # noqa: E402

import whisperless  # noqa: E402,F401 - first: sets the OpenMP wait policy torch reads
from bench.quality import SAMPLE_DIR  # noqa: E402
from bench.synth import conversation  # noqa: E402


def annotation(turns) -> Annotation:
    ann = Annotation()
    for start, end, speaker in turns:
        ann[Segment(start, end)] = speaker
    return ann


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--thresholds", default="0.5,0.6,0.7,0.8,0.9,1.0,1.1")
    args = parser.parse_args()
    from whisperless.config import EngineSettings
    from whisperless.contract.options import TranscriptionOptions
    from whisperless.engine import models
    from whisperless.engine.audio import decode_audio
    from whisperless.engine.diarize import diarize

    tmp = Path(tempfile.mkdtemp())
    sets = [
        ("real sample (2)", decode_audio(SAMPLE_DIR / "sample.wav"), load_rttm(SAMPLE_DIR / "sample.rttm")["sample"])
    ]
    for speakers, turns in ((2, 8), (3, 9), (4, 12)):
        ref = conversation(tmp / f"c{speakers}.wav", speakers=speakers, turns=turns)
        sets.append(
            (
                f"espeak ({speakers})",
                decode_audio(tmp / f"c{speakers}.wav"),
                annotation((t.start, t.end, t.speaker) for t in ref),
            )
        )
    settings = EngineSettings.from_env()
    pipeline = models.load_diarization(settings.diarization_model, settings)
    print(f"command: {' '.join(sys.argv)}")
    print("| threshold | " + " | ".join(f"{name} DER / found" for name, _, _ in sets) + " | mean DER |")
    print("|---" * (len(sets) + 2) + "|")
    for threshold in [float(t) for t in args.thresholds.split(",")]:
        pipeline.instantiate(
            {
                "segmentation": {"min_duration_off": 0.0},
                "clustering": {"method": "centroid", "threshold": threshold, "min_cluster_size": 12},
            }
        )
        cells, total = [], 0.0
        for _, audio, reference in sets:
            result = diarize(pipeline, audio, TranscriptionOptions(diarization=True))
            hyp = annotation((t.start, t.end, t.speaker) for t in result.turns)
            der = DiarizationErrorRate()(reference, hyp)
            total += der
            cells.append(f"{der:.3f} / {len(hyp.labels())}")
        print(f"| {threshold} | " + " | ".join(cells) + f" | {total / len(sets):.3f} |", flush=True)


if __name__ == "__main__":
    main()
