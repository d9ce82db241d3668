"""Who spoke when, with pyannote.audio, from the already-decoded waveform."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..contract.options import TranscriptionOptions
from .audio import SAMPLE_RATE
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
    """``hook``: called by pyannote after each step and embedding batch (raising from it stops the run)."""
    import torch

    hints = {}
    if options.num_speakers:
        hints["num_speakers"] = options.num_speakers
    else:
        if options.min_speakers:
            hints["min_speakers"] = options.min_speakers
        if options.max_speakers:
            hints["max_speakers"] = options.max_speakers
    # In-memory input: pyannote never re-reads or re-decodes the file.
    waveform = torch.from_numpy(audio).unsqueeze(0)
    output = pipeline({"waveform": waveform, "sample_rate": SAMPLE_RATE}, hook=hook, **hints)
    regular = getattr(output, "speaker_diarization", output)
    exclusive = getattr(output, "exclusive_speaker_diarization", regular)
    return Diarization(turns=_turns(regular), exclusive=_turns(exclusive))
