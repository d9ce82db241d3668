"""Audio in, the contract's result document out.

decode once -> diarize (optional) -> transcribe -> merge speakers into words -> document.

Diarization runs before Whisper is first loaded, so that in a cold process a
diarization failure surfaces before paying for the Whisper load. (A transcription
used to halve the speed of the diarization after it: libgomp's thread waits, fixed
by the OpenMP wait policy set in whisperless/__init__.py.)
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..config import EngineSettings, engine_settings
from ..contract.languages import abilities_from_name, check_supported
from ..contract.options import TranscriptionOptions
from ..errors import Interrupted
from . import models
from .audio import SAMPLE_RATE, decode_audio
from .diarize import diarize
from .document import completed_document
from .merge import assign_speakers
from .whisper import loaded_abilities, transcribe

log = logging.getLogger(__name__)


class Engine:
    """Holds the settings and model choice; the models themselves are cached per process in ``models``."""

    def __init__(
        self,
        whisper_model: str | None = None,
        diarization_model: str | None = None,
        settings: EngineSettings | None = None,
    ):
        self.settings = settings or engine_settings()
        self.whisper_model = whisper_model or self.settings.whisper_model
        self.diarization_model = diarization_model or self.settings.diarization_model

    def run(
        self,
        audio: str | Path | np.ndarray,
        options: TranscriptionOptions | None = None,
        *,
        job_id: str | None = None,
        source: Any = None,
        cancel: Callable[[], bool] | None = None,
    ) -> dict[str, Any]:
        """``cancel``: asked between stages and pieces of work (decoded windows, embedding
        batches); when it answers true the run stops there with :class:`Interrupted`."""
        options = options or TranscriptionOptions()
        checkpoint = _checkpoint(cancel)
        job_id = job_id or uuid.uuid4().hex
        timings: dict[str, float] = {}

        @contextmanager
        def stage(name: str) -> Iterator[None]:
            started = time.perf_counter()
            try:
                yield
            finally:
                timings[name] = timings.get(name, 0.0) + time.perf_counter() - started

        # Refuse options the model cannot honour before any expensive work (from its name);
        # the loaded model re-checks exactly (its own language tokens).
        check_supported(abilities_from_name(self.whisper_model), options.language, options.task)

        if not isinstance(audio, np.ndarray):
            with stage("decode"):
                audio = decode_audio(audio, max_seconds=self.settings.max_audio_seconds)
        duration = audio.size / SAMPLE_RATE

        diarization = None
        if options.diarization:
            checkpoint()
            with stage("load_diarization"):
                pipeline = models.load_diarization(self.diarization_model, self.settings)
            with stage("diarize"):
                diarization = diarize(pipeline, audio, options, checkpoint)

        with stage("load_whisper"):
            whisper = models.load_whisper(self.whisper_model, self.settings)
        check_supported(loaded_abilities(whisper, self.whisper_model), options.language, options.task)
        checkpoint()
        with stage("transcribe"):
            transcript = transcribe(whisper, audio, options, self.settings, checkpoint)

        segments = transcript.segments
        if diarization is not None:
            with stage("merge"):
                segments = assign_speakers(segments, diarization)

        timings["total"] = sum(timings.values())
        log.info("job %s: %.1f s of audio in %.2f s", job_id, duration, timings["total"])
        return completed_document(
            job_id,
            transcript,
            segments,
            diarization,
            duration=duration,
            model=self.whisper_model,
            timings=timings,
            source=source,
        )


def _checkpoint(cancel: Callable[[], bool] | None) -> Callable[..., None]:
    """A function the stages call between pieces of work: raises Interrupted once ``cancel`` says so."""

    def checkpoint(*_ignored: Any, **_also: Any) -> None:  # also pyannote's hook(step, artifact, ...)
        if cancel is not None and cancel():
            raise Interrupted("the worker is stopping; the job is put back for another attempt")

    return checkpoint
