"""The engine: audio in, the contract's result document out. No AWS in here: it is configured
by arguments (:class:`whisperless.config.EngineSettings`) and runs the same in a Lambda, a GPU
worker, the local stack and ``whisperless transcribe``.

    audio.decode_audio     any container -> 16 kHz mono float32, once
    diarize.diarize        who spoke when (diarization.Pipeline, or a pyannote pipeline; models.load_diarization)
    whisper.transcribe     timed words (faster-whisper; models.load_whisper)
    merge.assign_speakers  each word its speaker; segments split where the speaker changes
    document               the contract's completed document
    pipeline.Engine        all of the above, in that order, with per-stage timings
"""

from .pipeline import Engine

__all__ = ["Engine"]
