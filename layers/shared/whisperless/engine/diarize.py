"""Who spoke when, from the already-decoded waveform: our pipeline, or a pyannote one.

``campplus`` (the default) is :class:`.diarization.Pipeline`: it takes the numpy array as it is,
and no torch is imported. A pyannote pipeline named by ``WHISPERLESS_DIARIZATION_MODEL`` (a hub id
or folder) gets a torch tensor, as pyannote wants.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..contract.options import TranscriptionOptions
from .audio import SAMPLE_RATE
from .diarization import Pipeline
from .types import Diarization, Turn


def _turns(annotation) -> list[Turn]:
    return sorted(
        (
            Turn(float(seg.start), float(seg.end), str(label))
            for seg, _, label in annotation.itertracks(yield_label=True)
        ),
        key=lambda t: (t.start, t.end),
    )


def diarize(
    pipeline, audio: np.ndarray, options: TranscriptionOptions, hook: Callable[..., None] | None = None
) -> Diarization:
    """``hook``: called between pieces of work (raising from it stops the run)."""
    hints = {}
    if options.num_speakers:
        hints["num_speakers"] = options.num_speakers
    else:
        if options.min_speakers:
            hints["min_speakers"] = options.min_speakers
        if options.max_speakers:
            hints["max_speakers"] = options.max_speakers
    if isinstance(pipeline, Pipeline):
        return pipeline(audio, hook=hook, **hints)
    import torch

    # In-memory input: pyannote never re-reads or re-decodes the file.
    waveform = torch.from_numpy(audio).unsqueeze(0)
    output = pipeline({"waveform": waveform, "sample_rate": SAMPLE_RATE}, hook=hook, **hints)
    return Diarization(turns=_turns(getattr(output, "speaker_diarization", output)))
