"""Audio in, the contract's result document out.

decode once -> diarize (optional) -> transcribe -> merge speakers into words -> document
-> sentiment (optional) -> redaction (optional, last: nothing after it sees the original words).

Diarization runs before Whisper is first loaded, so that in a cold process a
diarization failure surfaces before paying for the Whisper load. (A transcription
used to halve the speed of the diarization after it: libgomp's thread waits, fixed
by the OpenMP wait policy set in whisperless/__init__.py.)
"""

from __future__ import annotations

import copy
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import EngineSettings, engine_settings
from ..contract.languages import abilities_from_name, check_supported
from ..contract.options import TranscriptionOptions
from ..errors import AudioError, Interrupted, ModelUnavailable
from . import models
from .audio import SAMPLE_RATE, decode_audio, wav_bytes
from .diarization import Pipeline
from .diarize import diarize
from .document import completed_document, rounded_timings
from .merge import assign_speakers
from .segments import sentence_segments
from .speakers import MAX_ENROL_SECONDS, Voice, enrol, name_speakers
from .whisper import loaded_abilities, text_tokens, transcribe

log = logging.getLogger(__name__)


@dataclass
class EngineResult:
    """The document, and the extra outputs a request asked for."""

    document: dict[str, Any]
    unredacted: dict[str, Any] | None = None  # redactionOutput=redacted_and_unredacted
    redacted_audio: bytes | None = None  # redactAudio=true: a 16 kHz mono WAV


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
        voices: Mapping[str, np.ndarray] | None = None,
    ) -> dict[str, Any]:
        """The result document (redacted when the options ask for it)."""
        return self.process(audio, options, job_id=job_id, source=source, cancel=cancel, voices=voices).document

    def process(
        self,
        audio: str | Path | np.ndarray,
        options: TranscriptionOptions | None = None,
        *,
        job_id: str | None = None,
        source: Any = None,
        cancel: Callable[[], bool] | None = None,
        voices: Mapping[str, np.ndarray] | None = None,
    ) -> EngineResult:
        """The result document and any extra outputs the options ask for. ``cancel``: asked
        between stages and pieces of work (decoded windows, embedding batches); when it answers
        true the run stops there with :class:`Interrupted`. ``voices``: known voices (name ->
        unit embedding, engine.speakers) whose names the diarized speakers may take."""
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
        speakers = None
        if options.diarization:
            checkpoint()
            with stage("load_diarization"):
                pipeline = models.load_diarization(self.diarization_model, self.settings)
            with stage("diarize"):
                diarization = diarize(pipeline, audio, options, checkpoint)
            if voices is not None:
                with stage("name_speakers"):
                    diarization, speakers = name_speakers(diarization, voices)

        # Like diarization, the optional steps' models load before Whisper's: a missing one
        # fails the job before the transcription is paid for.
        if options.sentiment:
            from .sentiment import load_vader

            with stage("load_sentiment"):
                load_vader()
        if options.redact:
            from .redact import load_analyzer

            with stage("load_redaction"):
                load_analyzer()

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
        segments = sentence_segments(segments)
        for segment in segments:
            if segment.tokens is None:
                segment.tokens = text_tokens(whisper, segment.text)

        document = completed_document(
            job_id,
            transcript,
            segments,
            diarization,
            duration=duration,
            model=self.whisper_model,
            timings=timings,
            source=source,
            speakers=speakers,
        )
        result = EngineResult(document)
        # Translation writes English whatever was spoken; `language` names what was spoken.
        language = "en" if options.task == "translate" else transcript.language
        if options.sentiment:
            from .sentiment import add_sentiment

            with stage("sentiment"):
                add_sentiment(document, language=language)
        if options.redact:
            from .redact import redact_audio, redact_document

            if options.keeps_unredacted:
                result.unredacted = copy.deepcopy(document)
            with stage("redact"):
                redact_document(document, options.redact, language=language)
            if options.redact_audio:
                with stage("redact_audio"):
                    result.redacted_audio = wav_bytes(redact_audio(audio, document["redactions"]))

        timings["total"] = sum(v for k, v in timings.items() if k != "total")
        document["timings"] = rounded_timings(timings)
        if result.unredacted is not None:
            result.unredacted["timings"] = dict(document["timings"])
        log.info("job %s: %.1f s of audio in %.2f s", job_id, duration, timings["total"])
        return result

    def enrol(self, audio: str | Path | np.ndarray, field: str = "file") -> Voice:
        """One person's recording -> their voice (engine.speakers.enrol); needs ``campplus``."""
        if not isinstance(audio, np.ndarray):
            try:
                audio = decode_audio(audio, max_seconds=MAX_ENROL_SECONDS)
            except AudioError as exc:
                exc.field = exc.field or field  # the clip is the request's field, not "the audio"
                raise
        pipeline = models.load_diarization(self.diarization_model, self.settings)
        if not isinstance(pipeline, Pipeline):
            raise ModelUnavailable("enrolling voices needs the campplus diarization model")
        return enrol(pipeline, audio, field)


def _checkpoint(cancel: Callable[[], bool] | None) -> Callable[..., None]:
    """A function the stages call between pieces of work: raises Interrupted once ``cancel`` says so."""

    def checkpoint(*_ignored: Any, **_also: Any) -> None:  # also pyannote's hook(step, artifact, ...)
        if cancel is not None and cancel():
            raise Interrupted("the worker is stopping; the job is put back for another attempt")

    return checkpoint
