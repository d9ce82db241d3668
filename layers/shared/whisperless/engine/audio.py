"""Decode any common audio/video container once, to 16 kHz mono float32.

Both engine stages (Whisper and pyannote) consume this one array, so a file is
read and resampled exactly once per job.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from ..errors import AudioError

SAMPLE_RATE = 16000
# A decoded hour is 230 MB of float32; past this we refuse rather than exhaust memory.
DEFAULT_MAX_SECONDS = 4 * 3600.0


def decode_audio(path: str | Path, max_seconds: float = DEFAULT_MAX_SECONDS) -> np.ndarray:
    """Return the first audio stream of ``path`` as mono float32 at 16 kHz.

    The container and codec are detected from the content, never from the name.
    Raises ``AudioError`` with a code that says what was wrong.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise AudioError(f"cannot read {path.name}: {exc.strerror}", code="unreadable") from exc
    if size == 0:
        raise AudioError("the file is empty (0 bytes)", code="empty_file")

    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.error.InvalidDataError as exc:
        raise AudioError(
            "not an audio file: no known container or codec matches its content", code="not_audio"
        ) from exc
    except av.error.FFmpegError as exc:
        raise AudioError(f"cannot open the audio: {exc}", code="not_audio") from exc

    chunks: list[np.ndarray] = []
    total = 0
    max_samples = int(max_seconds * SAMPLE_RATE)
    try:
        with container:
            if not container.streams.audio:
                raise AudioError("the file has no audio stream", code="no_audio_stream")
            stream = container.streams.audio[0]
            if stream.codec_context is None or stream.codec_context.codec is None:
                raise AudioError("the audio codec is not supported", code="unsupported_codec")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            try:
                for frame in container.decode(stream):
                    frame.pts = None  # resampler re-times; stray pts in broken files only confuse it
                    for out in resampler.resample(frame):
                        chunk = out.to_ndarray().reshape(-1)
                        chunks.append(chunk)
                        total += chunk.size
                    if total > max_samples:
                        raise AudioError(
                            f"the audio is longer than the limit of {max_seconds:.0f} s",
                            code="audio_too_long",
                        )
                for out in resampler.resample(None):
                    chunks.append(out.to_ndarray().reshape(-1))
            except av.error.FFmpegError as exc:
                # Truncated or corrupt data mid-stream: keep what decoded cleanly if it is
                # substantial, otherwise report the file as broken.
                if total < SAMPLE_RATE // 10:
                    raise AudioError(f"the audio data is corrupt or truncated: {exc}", code="corrupt_audio") from exc
    except av.error.FFmpegError as exc:
        raise AudioError(f"cannot decode the audio: {exc}", code="corrupt_audio") from exc

    if not chunks:
        raise AudioError("the audio stream contains no samples", code="zero_length")
    audio = np.concatenate(chunks).astype(np.float32, copy=False)
    if audio.size == 0:
        raise AudioError("the audio stream contains no samples", code="zero_length")
    return audio


def wav_bytes(audio: np.ndarray) -> bytes:
    """``audio`` (16 kHz mono float32) as a 16-bit PCM WAV file."""
    import io
    import wave

    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()
