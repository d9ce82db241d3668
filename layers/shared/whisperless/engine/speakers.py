"""Speakers by name: enrolled voices matched to a file's diarized speakers. No AWS here.

An enrolled voice is a unit CAM++ embedding (:meth:`.diarization.Pipeline.voice_embedding`'s
space, the space of ``Diarization.centroids``); how alike two voices are is their dot product
(cosine similarity). A file's speakers and the known voices are paired one to one (Hungarian
assignment on the similarities, ``scipy.optimize.linear_sum_assignment``), and a pair counts only
at or above ``MATCH_THRESHOLD``: two speakers never get the same name, a known voice that does
not speak is simply absent, and a speaker whose voice is not close enough keeps its
``SPEAKER_nn`` label (a wrong name is worse than none).

``MATCH_THRESHOLD`` was chosen on real meetings (AMI excerpts, enrolled from one meeting and
identified in another: ``bench/speakers.py``, figures in BENCHMARKS.md "Speakers by name").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from ..errors import AudioError
from .audio import SAMPLE_RATE
from .diarization import FRAME_DURATION, FRAME_START, FRAME_STEP, Pipeline, local_stage, voice_from_local
from .types import Diarization

#: Cosine similarity from which a diarized speaker takes a known voice's name (BENCHMARKS.md).
MATCH_THRESHOLD = 0.6
#: An enrolment clip needs this much speech (seconds), and may last this long at most.
MIN_ENROL_SPEECH = 2.0
MAX_ENROL_SECONDS = 60.0


@dataclass(frozen=True)
class Voice:
    embedding: np.ndarray  # (192,) float32, unit length
    speech_seconds: float  # speech found in the clip


def _speech_in(activity: np.ndarray, step: float, num_samples: int) -> float:
    """Seconds in which segmentation hears anyone (each frame of the file counted once)."""
    heard = np.zeros(int(np.ceil(num_samples / SAMPLE_RATE / FRAME_STEP)) + 1, bool)
    centres = FRAME_START + FRAME_DURATION / 2 + FRAME_STEP * np.arange(activity.shape[1])
    for w, window in enumerate(activity):
        idx = np.rint((w * step + centres) / FRAME_STEP).astype(int)
        keep = idx < heard.size
        heard[idx[keep]] |= window.any(-1)[keep]
    return float(heard.sum() * FRAME_STEP)


def enrol(pipeline: Pipeline, audio: np.ndarray, field: str = "file") -> Voice:
    """One person's clip (16 kHz mono float32) -> their voice. Refuses (AudioError naming
    ``field``) a clip over ``MAX_ENROL_SECONDS`` or with under ``MIN_ENROL_SPEECH`` s of speech."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    seconds = audio.size / SAMPLE_RATE
    if seconds > MAX_ENROL_SECONDS:
        raise AudioError(
            f"an enrolment clip may last {MAX_ENROL_SECONDS:.0f} s; this one lasts {seconds:.1f} s",
            code="audio_too_long",
            field=field,
        )
    local = local_stage(audio, pipeline.models, pipeline.config)
    speech = _speech_in(local.activity, local.step, local.num_samples)
    embedding = voice_from_local(local, pipeline.config) if speech >= MIN_ENROL_SPEECH else None
    if embedding is None:
        raise AudioError(
            f"the clip holds {speech:.1f} s of speech; enrolling a voice needs at least {MIN_ENROL_SPEECH:.0f} s",
            code="too_little_speech",
            field=field,
        )
    return Voice(embedding, round(speech, 1))


def name_speakers(
    diarization: Diarization, voices: Mapping[str, np.ndarray], threshold: float = MATCH_THRESHOLD
) -> tuple[Diarization, list[dict]]:
    """Pair the diarized speakers with ``voices`` (name -> unit embedding). Returns the diarization
    with ``names`` set (pipeline label -> name, matched speakers only) and, per pipeline label,
    ``(label, name or None, similarity)``: the similarity to the voice it was given, or to the
    closest known voice when it got none (None when nothing can be compared)."""
    labels = sorted({t.speaker for t in diarization.turns})
    names: dict[str, str] = {}
    best: dict[str, float | None] = dict.fromkeys(labels)
    comparable = [label for label in labels if label in diarization.centroids]
    if voices and comparable:
        from scipy.optimize import linear_sum_assignment

        known = list(voices)
        centroids = np.stack([np.asarray(diarization.centroids[label], np.float64) for label in comparable])
        gallery = np.stack([np.asarray(voices[name], np.float64) for name in known])
        similarity = centroids @ gallery.T  # both unit length: cosine similarity
        for i, label in enumerate(comparable):
            best[label] = float(similarity[i].max())
        rows, cols = linear_sum_assignment(similarity, maximize=True)
        for i, j in zip(rows, cols, strict=True):
            if similarity[i, j] >= threshold:
                names[comparable[i]] = known[j]
                best[comparable[i]] = float(similarity[i, j])
    table = [{"label": label, "name": names.get(label), "similarity": _rounded(best[label])} for label in labels]
    return replace(diarization, names=names), table


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
