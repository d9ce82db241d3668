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


def decode_audio(
    path: str | Path, max_seconds: float = DEFAULT_MAX_SECONDS, *, start: float = 0.0, end: float | None = None
) -> np.ndarray:
    """Return the first audio stream of ``path`` as mono float32 at 16 kHz.

    ``start``/``end`` (seconds): only that range (a chunk of a long job): the container seeks to
    it, so a chunk of a 12-hour file costs what the chunk costs, not the whole file; ``end`` past
    the end of the audio is the end. ``max_seconds`` limits what is decoded.
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
    skip = 0  # samples decoded before ``start`` (a seek lands on the packet at or before it)
    wanted = None if end is None else max(0, round((end - start) * SAMPLE_RATE))
    max_samples = int(max_seconds * SAMPLE_RATE)
    try:
        with container:
            if not container.streams.audio:
                raise AudioError("the file has no audio stream", code="no_audio_stream")
            stream = container.streams.audio[0]
            if stream.codec_context is None or stream.codec_context.codec is None:
                raise AudioError("the audio codec is not supported", code="unsupported_codec")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            origin = float(stream.start_time * stream.time_base) if stream.start_time and stream.time_base else 0.0
            if start > 0:
                container.seek(int((start + origin) * av.time_base), any_frame=False)
            first = True
            try:
                for frame in container.decode(stream):
                    if first and start > 0:
                        # Where the seek landed, from the stream's first sample (which a codec's
                        # priming delay may put after 0: mp3): the samples before start go.
                        landed = (frame.time or 0.0) - origin
                        skip = max(0, round((start - min(landed, start)) * SAMPLE_RATE))
                    first = False
                    frame.pts = None  # resampler re-times; stray pts in broken files only confuse it
                    for out in resampler.resample(frame):
                        chunk = out.to_ndarray().reshape(-1)
                        chunks.append(chunk)
                        total += chunk.size
                    if wanted is not None and total >= skip + wanted:
                        break
                    if total - skip > max_samples:
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
    audio = np.concatenate(chunks).astype(np.float32, copy=False)[skip:]
    if wanted is not None:
        audio = audio[:wanted]
    if audio.size == 0:
        raise AudioError("the audio stream contains no samples", code="zero_length")
    return audio


def probe_duration(path: str | Path) -> float | None:
    """The audio's length in seconds from its container's header, without decoding (None when the
    container does not say). Exact for WAV; close for compressed formats."""
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            if not container.streams.audio:
                return None
            stream = container.streams.audio[0]
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
            if container.duration is not None:
                return container.duration / av.time_base
    except av.error.FFmpegError:
        return None
    return None


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
