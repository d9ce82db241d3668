"""Long test audio with references: pyannote's real two-speaker sample and espeak-ng
conversations (bench/synth.py), concatenated with 1 s pauses to any length.

    .venv/bin/python bench/corpus.py --minutes 10      # builds (or reuses) .cache/bench/long-10min.wav

Every part keeps its reference text and speaker turns, so WER can be computed per kind
(real / synthetic) on the parts with references, and DER on the whole file: the real
sample's two speakers and each espeak voice keep one label across the whole file.
Files are cached under .cache/bench/ (git-ignored) and rebuilt only when missing.
"""

from __future__ import annotations

import argparse
import json
import sys
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.quality import SAMPLE_DIR, normalise, reference_text  # noqa: E402
from bench.synth import SENTENCES, VOICES, conversation  # noqa: E402

SAMPLE_RATE = 16000
CACHE = ROOT / ".cache" / "bench"
GAP_SECONDS = 1.0
# (speakers, turns, sentence rotation): varied enough that no two conversations are identical.
CONVERSATIONS = ((2, 8, 0), (3, 9, 3), (4, 12, 5), (3, 9, 6), (2, 8, 2), (4, 12, 1))


def _read(path: Path) -> np.ndarray:
    from whisperless.engine.audio import decode_audio

    return decode_audio(path)


def write_wav(path: Path, audio: np.ndarray) -> None:
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm.tobytes())


def _sample_part() -> tuple[np.ndarray, dict]:
    turns = []
    for line in (SAMPLE_DIR / "sample.rttm").read_text().splitlines():
        f = line.split()
        if f and f[0] == "SPEAKER":
            start, length = float(f[3]), float(f[4])
            turns.append((start, start + length, f"real_{f[7]}"))
    return _read(SAMPLE_DIR / "sample.wav"), {"kind": "real", "text": reference_text(), "turns": turns}


def _synthetic_parts() -> list[tuple[np.ndarray, dict]]:
    CACHE.mkdir(parents=True, exist_ok=True)
    parts = []
    for i, (speakers, turns, rotation) in enumerate(CONVERSATIONS):
        wav, ref = CACHE / f"conv{i}.wav", CACHE / f"conv{i}.json"
        if not (wav.exists() and ref.exists()):
            sentences = SENTENCES[rotation:] + SENTENCES[:rotation]
            made = conversation(wav, speakers=speakers, turns=turns, sentences=sentences)
            # synth labels spk{i % speakers} = VOICES[i % speakers]: name the voice, global across parts
            ref.write_text(
                json.dumps(
                    [
                        {
                            "start": t.start,
                            "end": t.end,
                            "text": t.text,
                            "speaker": "voice_" + VOICES[int(t.speaker[3:])],
                        }
                        for t in made
                    ]
                )
            )
        turns_ = json.loads(ref.read_text())
        parts.append(
            (
                _read(wav),
                {
                    "kind": "synthetic",
                    "text": " ".join(t["text"] for t in turns_),
                    "turns": [(t["start"], t["end"], t["speaker"]) for t in turns_],
                },
            )
        )
    return parts


def build(minutes: float) -> tuple[Path, list[dict]]:
    """Return (wav path, parts); each part: kind, start, end, text, turns [(start, end, speaker)] absolute."""
    CACHE.mkdir(parents=True, exist_ok=True)
    name = f"long-{minutes:g}min"
    wav, ref = CACHE / f"{name}.wav", CACHE / f"{name}.json"
    if wav.exists() and ref.exists():
        return wav, json.loads(ref.read_text())
    real = _sample_part()
    synthetic = _synthetic_parts()
    gap = np.zeros(int(GAP_SECONDS * SAMPLE_RATE), dtype=np.float32)
    target = int(minutes * 60 * SAMPLE_RATE)
    chunks, parts, clock, k = [], [], 0, 0
    while clock < target:
        audio, meta = real if k % 2 == 0 else synthetic[(k // 2) % len(synthetic)]
        audio = audio[: target - clock]
        offset = clock / SAMPLE_RATE
        end = offset + audio.size / SAMPLE_RATE
        full = audio.size == (real[0].size if k % 2 == 0 else synthetic[(k // 2) % len(synthetic)][0].size)
        parts.append(
            {
                "kind": meta["kind"],
                "start": offset,
                "end": end,
                "complete": full,
                "text": meta["text"],
                "turns": [(offset + s, min(offset + e, end), spk) for s, e, spk in meta["turns"] if offset + s < end],
            }
        )
        chunks += [audio, gap]
        clock += audio.size + gap.size
        k += 1
    audio = np.concatenate(chunks)[:target]
    write_wav(wav, audio)
    ref.write_text(json.dumps(parts))
    return wav, parts


def wer_by_kind(words: list[dict], parts: list[dict]) -> dict[str, float]:
    """Corpus WER per kind over complete parts; hypothesis words go to the part holding their midpoint."""
    import jiwer

    refs: dict[str, list[str]] = {}
    hyps: dict[str, list[str]] = {}
    spans = [(p["start"] - GAP_SECONDS / 2, p["end"] + GAP_SECONDS / 2) for p in parts]
    bins: list[list[str]] = [[] for _ in parts]
    j = 0
    for w in sorted(words, key=lambda w: w["start"]):
        mid = (w["start"] + w["end"]) / 2
        while j < len(parts) - 1 and mid >= spans[j][1]:
            j += 1
        if spans[j][0] <= mid < spans[j][1]:
            bins[j].append(w["word"])
    for part, hyp in zip(parts, bins, strict=True):
        if not part.get("complete", True):
            continue
        refs.setdefault(part["kind"], []).append(normalise(part["text"]))
        hyps.setdefault(part["kind"], []).append(normalise(" ".join(hyp)))
    out = {kind: jiwer.wer(refs[kind], hyps[kind]) for kind in refs}
    out["all"] = jiwer.wer([r for k in refs for r in refs[k]], [h for k in hyps for h in hyps[k]])
    return out


def der_of(turns, parts: list[dict]) -> float:
    """DER over the whole file; ``turns``: [(start, end, speaker)] hypothesis."""
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    reference, hypothesis = Annotation(), Annotation()
    for part in parts:
        for s, e, spk in part["turns"]:
            if e > s:
                reference[Segment(s, e)] = spk
    for s, e, spk in turns:
        hypothesis[Segment(s, e)] = spk
    return DiarizationErrorRate()(reference, hypothesis)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", default="1,10,60")
    args = parser.parse_args()
    print(f"command: .venv/bin/python bench/corpus.py --minutes {args.minutes}")
    print("| minutes | file | parts (real / synthetic) | speakers |")
    print("|---|---|---|---|")
    for m in args.minutes.split(","):
        wav, parts = build(float(m))
        speakers = {t[2] for p in parts for t in p["turns"]}
        kinds = [p["kind"] for p in parts]
        print(
            f"| {m} | {wav.relative_to(ROOT)} | {kinds.count('real')} / {kinds.count('synthetic')} | {len(speakers)} |"
        )


if __name__ == "__main__":
    main()
