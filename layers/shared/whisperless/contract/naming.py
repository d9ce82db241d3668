"""Names in the bucket: which keys are audio, where a result goes, and stable job ids."""

from __future__ import annotations

import hashlib

RESULT_SUFFIX = ".json"
#: What whisperless writes next to the audio: the result and its renderings (``formats``). None of
#: them is ever a job.
OUTPUT_SUFFIXES = (RESULT_SUFFIX, ".srt", ".vtt", ".txt")
AUDIO_EXTENSIONS = frozenset(
    ".wav .wave .mp3 .m4a .mp4 .m4v .aac .flac .ogg .oga .opus .webm .weba .mkv .mka .mov .wma .amr "
    ".3gp .mpeg .mpga .mpg .aif .aiff .caf .ts .audio".split()
)


def result_key(audio_key: str) -> str:
    """The result document's key: next to the audio (``a/b.mp3`` -> ``a/b.mp3.json``)."""
    return audio_key + RESULT_SUFFIX


def sidecar_key(audio_key: str, fmt: str) -> str:
    """A rendering next to the audio (``a/b.mp3`` -> ``a/b.mp3.srt``)."""
    return f"{audio_key}.{fmt}"


def output_keys(audio_key: str) -> list[str]:
    """Every key whisperless may have written for the audio at ``audio_key``."""
    return [audio_key + suffix for suffix in OUTPUT_SUFFIXES]


def job_id_for(bucket: str, key: str, etag: str | None, version_id: str | None) -> str:
    """A stable id for an upload that did not come with one: duplicates share it."""
    digest = hashlib.sha256(f"{bucket}\0{key}\0{etag or ''}\0{version_id or ''}".encode()).hexdigest()
    return f"s3-{digest[:24]}"
