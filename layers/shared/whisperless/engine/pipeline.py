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
from contextlib import AbstractContextManager, contextmanager
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
from .diarization import DiarizationConfig, Pipeline, chunk_audio_range, global_stage, local_stage
from .diarize import diarize
from .document import completed_document, rounded_timings
from .longform import Chunk, ChunkOutput, shifted, stitch
from .merge import assign_speakers
from .segments import sentence_segments
from .speakers import MAX_ENROL_SECONDS, Voice, enrol, name_speakers
from .types import Diarization, Transcript
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
        progress: Callable[[str, float], None] | None = None,
    ) -> EngineResult:
        """The result document and any extra outputs the options ask for. ``cancel``: asked
        between stages and pieces of work (decoded windows, embedding batches); when it answers
        true the run stops there with :class:`Interrupted`. ``voices``: known voices (name ->
        unit embedding, engine.speakers) whose names the diarized speakers may take.
        ``progress``: told (stage, 0-1) as the run goes (a progress bar)."""
        report = progress or (lambda stage, fraction: None)
        options = options or TranscriptionOptions()
        checkpoint = _checkpoint(cancel)
        job_id = job_id or uuid.uuid4().hex
        timings: dict[str, float] = {}
        stage = _stage_timer(timings)

        # Refuse options the model cannot honour before any expensive work (from its name);
        # the loaded model re-checks exactly (its own language tokens).
        check_supported(abilities_from_name(self.whisper_model), options.language, options.task)

        report("decoding", 0.0)
        if not isinstance(audio, np.ndarray):
            with stage("decode"):
                audio = decode_audio(audio, max_seconds=self.settings.max_audio_seconds)
        duration = audio.size / SAMPLE_RATE

        diarization = None
        speakers = None
        # Diarization takes about a quarter of a run with it (BENCHMARKS.md): the rest is Whisper's.
        share = 0.25 if options.diarization else 0.0
        if options.diarization:
            report("diarizing", 0.02)
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
        report("transcribing", share)
        with stage("transcribe"):
            transcript = transcribe(
                whisper,
                audio,
                options,
                self.settings,
                checkpoint,
                lambda end: report("transcribing", share + (1 - share) * min(1.0, end / max(duration, 1e-9))),
            )
        report("finishing", 1.0)

        return self._finish(
            transcript,
            diarization,
            options,
            job_id,
            duration,
            timings,
            stage,
            source=source,
            audio=audio,
            chunks=1,
            speakers=speakers,
        )

    # -- long recordings: chunk tasks and a merge (engine/longform.py) -------------------------
    def can_split(self, options: TranscriptionOptions) -> bool:
        """Whether a job with these options may run as chunks: our diarization pipeline splits at
        its stages' seam; a pyannote pipeline does not."""
        return not options.diarization or self.diarization_model == "campplus"

    def transcribe_chunk(
        self,
        path: str | Path,
        options: TranscriptionOptions,
        chunk: Chunk,
        num_samples: int,
        *,
        cancel: Callable[[], bool] | None = None,
    ) -> ChunkOutput:
        """One chunk of a long recording: decode its range only, Whisper on it (plus a margin), and
        diarization's local stage for its windows. The merge (:meth:`merge_chunks`) does the rest."""
        started = time.perf_counter()
        checkpoint = _checkpoint(cancel)
        check_supported(abilities_from_name(self.whisper_model), options.language, options.task)
        if not self.can_split(options):
            raise ValueError(f"diarization model {self.diarization_model!r} does not split into chunks")
        config = DiarizationConfig()
        a, b = chunk.decode_range(num_samples, config, options.diarization)
        audio = decode_audio(
            path, max_seconds=self.settings.max_audio_seconds, start=a / SAMPLE_RATE, end=b / SAMPLE_RATE
        )
        if audio.size < b - a:  # a compressed file's header told its length a little long
            audio = np.pad(audio, (0, b - a - audio.size))
        local = None
        if options.diarization:
            pipeline = models.load_diarization(self.diarization_model, self.settings)
            d0, d1 = chunk_audio_range(chunk.first_window, chunk.windows, num_samples, pipeline.config)
            checkpoint()
            local = local_stage(
                audio[d0 - a : d1 - a],
                pipeline.models,
                pipeline.config,
                offset=d0,
                first_window=chunk.first_window,
                count=chunk.windows,
                num_samples=num_samples,
                hook=checkpoint,
            )
        whisper = models.load_whisper(self.whisper_model, self.settings)
        check_supported(loaded_abilities(whisper, self.whisper_model), options.language, options.task)
        checkpoint()
        t0, t1 = chunk.transcribe_range(num_samples / SAMPLE_RATE)
        s0, s1 = round(t0 * SAMPLE_RATE) - a, round(t1 * SAMPLE_RATE) - a
        transcript = shifted(transcribe(whisper, audio[s0:s1], options, self.settings, checkpoint), t0)
        return ChunkOutput(
            chunk.index,
            chunk.total,
            num_samples,
            chunk.start,
            transcript,
            local,
            seconds=time.perf_counter() - started,
        )

    def merge_chunks(
        self,
        parts: list[ChunkOutput],
        options: TranscriptionOptions,
        *,
        job_id: str,
        source: Any = None,
        audio: str | Path | None = None,
        voices: Mapping[str, np.ndarray] | None = None,
    ) -> EngineResult:
        """Every chunk's output -> the one result: one clustering of all speaker embeddings, the
        transcripts joined at silences, then what a single pass does. ``audio``: the file, needed
        only when the options ask for redacted audio; ``voices``: as for :meth:`process`."""
        timings: dict[str, float] = {}
        stage = _stage_timer(timings)

        parts = sorted(parts, key=lambda p: p.index)
        if not parts or [p.index for p in parts] != list(range(parts[0].total)):
            raise ValueError("merge_chunks needs every chunk's output, once each")
        num_samples = parts[0].num_samples
        timings["chunks"] = sum(p.seconds for p in parts)  # compute time of all chunk tasks together
        diarization = None
        speakers = None
        if options.diarization:
            pipeline = models.load_diarization(self.diarization_model, self.settings)
            with stage("diarize"):
                diarization = global_stage(
                    [p.local for p in parts if p.local is not None], pipeline.config, **_hints(options)
                )
            if voices is not None:
                with stage("name_speakers"):
                    diarization, speakers = name_speakers(diarization, voices)
        with stage("stitch"):
            transcript = stitch(parts)
        with stage("load_whisper"):  # its tokenizer: the tokens of segments a cut changed
            models.load_whisper(self.whisper_model, self.settings)
        samples = None
        if options.redact_audio and audio is not None:
            with stage("decode"):
                samples = decode_audio(audio, max_seconds=self.settings.max_audio_seconds)
        return self._finish(
            transcript,
            diarization,
            options,
            job_id,
            num_samples / SAMPLE_RATE,
            timings,
            stage,
            source=source,
            audio=samples,
            chunks=len(parts),
            speakers=speakers,
        )

    def _finish(
        self,
        transcript: Transcript,
        diarization: Diarization | None,
        options: TranscriptionOptions,
        job_id: str,
        duration: float,
        timings: dict[str, float],
        stage: Callable[[str], Any],
        *,
        source: Any,
        audio: np.ndarray | None,
        chunks: int,
        speakers: list[dict] | None = None,
    ) -> EngineResult:
        """Speakers onto words, sentence segments, the document, then sentiment and redaction:
        the same for a single pass and a merge of chunks."""
        whisper = models.load_whisper(self.whisper_model, self.settings)
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
            chunks=chunks,
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
            if options.redact_audio and audio is not None:
                with stage("redact_audio"):
                    result.redacted_audio = wav_bytes(redact_audio(audio, document["redactions"]))

        timings["total"] = sum(v for k, v in timings.items() if k not in ("total", "chunks"))
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


def _stage_timer(timings: dict[str, float]) -> Callable[[str], AbstractContextManager[None]]:
    """``with stage("name"):`` adds the block's seconds to ``timings["name"]`` (the result's timings)."""

    @contextmanager
    def stage(name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - started

    return stage


def _checkpoint(cancel: Callable[[], bool] | None) -> Callable[..., None]:
    """A function the stages call between pieces of work: raises Interrupted once ``cancel`` says so."""

    def checkpoint(*_ignored: Any, **_also: Any) -> None:  # also pyannote's hook(step, artifact, ...)
        if cancel is not None and cancel():
            raise Interrupted("the worker is stopping; the job is put back for another attempt")

    return checkpoint


def _hints(options: TranscriptionOptions) -> dict[str, int]:
    """The request's speaker-count hints, as the diarization stages take them."""
    if options.num_speakers:
        return {"num_speakers": options.num_speakers}
    return {
        name: value
        for name, value in (("min_speakers", options.min_speakers), ("max_speakers", options.max_speakers))
        if value
    }
