"""Speakers by name: how often an enrolled voice gets the right name in another recording.

    .venv/bin/python bench/speakers.py [--ami-dir DIR] [--json FILE]

Data: the AMI meeting excerpts (real far-field meetings, 30 s each, reference RTTMs with AMI's
global speaker IDs: FEO066, MÉO069 and FEE083 speak in two excerpts each), and pyannote's bundled
sample (a real two-person call: its people are strangers to every meeting and the meetings'
people strangers to it). For every recording B, the voices known are those enrolled from every
other recording (each person once, from the first recording they speak in): their lone speech
there (reference turns minus everyone else's, at most 20 s; at least 2 s of speech, as the
product requires). B is diarized as the engine diarizes it, and each diarized speaker (its
reference identity: whose lone reference speech its turns cover most) is named by
``engine.speakers.name_speakers``. Outcomes per diarized speaker:

- correct: given their own name;
- wrong name: a known person given someone else's name;
- false accept: a stranger (not enrolled) given a known name;
- missed: a known person left without a name (the rest are strangers rightly left unnamed).

The same is swept over thresholds, with the similarity of every same-person pair (a person's
diarized voice in B vs their enrolment from another recording) and of every different-person pair.
Cost: seconds to diarize each excerpt, to enrol each voice and to name the speakers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "layers" / "shared"))
sys.path.insert(0, str(ROOT))

import whisperless  # noqa: E402,F401  - first: the OpenMP wait policy
from bench.diarization_quality import ami_items, default_ami_dir, read_wav, sample_item  # noqa: E402
from whisperless.config import engine_settings  # noqa: E402
from whisperless.engine import models  # noqa: E402
from whisperless.engine.speakers import MATCH_THRESHOLD, enrol, name_speakers  # noqa: E402

SAMPLE_RATE = 16000
MAX_ENROL = 20.0


def lone_speech(turns, speaker: str, audio: np.ndarray) -> np.ndarray:
    """The speaker's reference turns minus everyone else's, concatenated (at most MAX_ENROL s)."""
    mask = np.zeros(audio.size, bool)
    for s, e, who in turns:
        if who == speaker:
            mask[int(s * SAMPLE_RATE) : int(e * SAMPLE_RATE)] = True
    for s, e, who in turns:
        if who != speaker:
            mask[int(s * SAMPLE_RATE) : int(e * SAMPLE_RATE)] = False
    return audio[mask][: int(MAX_ENROL * SAMPLE_RATE)]


def identity(turns, diarized_label: str, diarization) -> str:
    """The person a diarized speaker is: whose lone reference speech (no one else annotated at
    the same time) its turns cover most. (AMI annotates some people through others' speech: plain
    overlap would credit them with everyone's turns.)"""
    edges = sorted({0.0, *(t for s, e, _ in turns for t in (s, e))})
    overlap: dict[str, float] = {}
    for a, b in zip(edges, edges[1:], strict=False):
        speaking = {who for s, e, who in turns if s < b and e > a}
        if len(speaking) != 1:
            continue
        (who,) = speaking
        for t in diarization.turns:
            if t.speaker == diarized_label:
                overlap[who] = overlap.get(who, 0.0) + max(0.0, min(b, t.end) - max(a, t.start))
    return max(overlap, key=lambda k: overlap[k]) if overlap else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ami-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    # pyannote's sample (a real phone call, two people in no AMI meeting): more strangers.
    items = [*ami_items(args.ami_dir or default_ami_dir()), sample_item()]
    pipeline = models.load_diarization("campplus", engine_settings())
    pipeline(np.zeros(10 * SAMPLE_RATE, np.float32))  # warm up

    audio = {item.name: read_wav(item.wav) for item in items}
    enrolled: dict[str, dict[str, np.ndarray]] = {}  # file -> person -> voice
    enrol_seconds = []
    for item in items:
        enrolled[item.name] = {}
        for person in sorted({t[2] for t in item.turns}):
            clip = lone_speech(item.turns, person, audio[item.name])
            if clip.size < 2 * SAMPLE_RATE:
                continue
            started = time.perf_counter()
            try:
                voice = enrol(pipeline, clip)
            except Exception as exc:  # noqa: BLE001 - too little speech: not enrolled from this file
                print(f"  {item.name} {person}: not enrolled ({exc})")
                continue
            enrol_seconds.append((clip.size / SAMPLE_RATE, time.perf_counter() - started))
            enrolled[item.name][person] = voice.embedding

    genuine: list[float] = []
    impostor: list[float] = []
    trials = []  # (file, diarized label, true person, known?, similarities to every known voice)
    timing = []
    for item in items:
        gallery: dict[str, np.ndarray] = {}
        for other in items:
            if other.name != item.name:
                for person, vec in enrolled[other.name].items():
                    gallery.setdefault(person, vec)
        started = time.perf_counter()
        diarization = pipeline(audio[item.name])
        diarize_s = time.perf_counter() - started
        started = time.perf_counter()
        name_speakers(diarization, gallery)
        match_s = time.perf_counter() - started
        timing.append((item.name, diarize_s, match_s))
        for label, centroid in diarization.centroids.items():
            truth = identity(item.turns, label, diarization)
            sims = {name: float(np.dot(centroid, vec)) for name, vec in gallery.items()}
            for name, sim in sims.items():
                (genuine if name == truth else impostor).append(sim)
            trials.append((item.name, label, truth, truth in gallery, diarization, gallery))

    def outcomes(threshold: float) -> dict[str, int]:
        counts = dict.fromkeys(("known", "strangers", "correct", "wrong", "false_accept", "missed"), 0)
        for _, label, truth, known, diarization, gallery in trials:
            _, table = name_speakers(diarization, gallery, threshold)
            name = next(row["name"] for row in table if row["label"] == label)
            counts["known" if known else "strangers"] += 1
            if name is None:
                counts["missed"] += known
            elif name == truth:
                counts["correct"] += 1
            elif known:
                counts["wrong"] += 1
            else:
                counts["false_accept"] += 1
        return counts

    gallery_size = max(len(t[5]) for t in trials)
    print(f"\n{len(trials)} diarized speakers in {len(items)} excerpts; galleries of up to {gallery_size} voices")
    print(
        f"same-person similarity: n={len(genuine)} min {min(genuine):.3f} median {np.median(genuine):.3f} "
        f"max {max(genuine):.3f}"
    )
    print(
        f"different-person similarity: n={len(impostor)} min {min(impostor):.3f} median {np.median(impostor):.3f} "
        f"max {max(impostor):.3f}; 99th percentile {np.percentile(impostor, 99):.3f}"
    )
    print("\nthreshold  known  correct  wrong  missed  strangers  false_accepts")
    sweep = {}
    for threshold in np.round(np.arange(0.30, 0.81, 0.05), 2):
        c = outcomes(float(threshold))
        sweep[float(threshold)] = c
        mark = "  <- MATCH_THRESHOLD" if abs(threshold - MATCH_THRESHOLD) < 1e-9 else ""
        print(
            f"{threshold:9.2f}  {c['known']:5d}  {c['correct']:7d}  {c['wrong']:5d}  {c['missed']:6d}  "
            f"{c['strangers']:9d}  {c['false_accept']:13d}{mark}"
        )
    print("\nper diarized speaker at MATCH_THRESHOLD:")
    for file, label, truth, known, diarization, gallery in trials:
        _, table = name_speakers(diarization, gallery)
        row = next(r for r in table if r["label"] == label)
        kind = "known" if known else "stranger"
        print(f"  {file} {label}: truth {truth} ({kind}) -> {row['name']} ({row['similarity']})")
    clip_s = sum(a for a, _ in enrol_seconds)
    wall_s = sum(b for _, b in enrol_seconds)
    print(f"\nenrolment: {len(enrol_seconds)} voices, {clip_s:.0f} s of clips in {wall_s:.2f} s")
    print("diarize vs name_speakers per excerpt (s):")
    for name, d, m in timing:
        print(f"  {name}: diarize {d:.2f}, name_speakers {m * 1000:.2f} ms ({100 * m / d:.3f} %)")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "genuine": genuine,
                    "impostor": impostor,
                    "sweep": sweep,
                    "enrolment": enrol_seconds,
                    "timing": timing,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
