"""Names in the bucket: which keys are audio, where a result goes, and stable job ids."""

from __future__ import annotations

import hashlib

RESULT_SUFFIX = ".json"
#: Written next to the result on request (redactionOutput, redactAudio), before it.
UNREDACTED_SUFFIX = ".unredacted.json"
REDACTED_AUDIO_SUFFIX = ".redacted.wav"
#: Keys that are our own output and must never start a job, though ``.wav`` is audio: the
#: template's upload rule excludes the same suffixes (a test keeps the two in step).
OUTPUT_SUFFIXES = (RESULT_SUFFIX, REDACTED_AUDIO_SUFFIX)
AUDIO_EXTENSIONS = frozenset(
    ".wav .wave .mp3 .m4a .mp4 .m4v .aac .flac .ogg .oga .opus .webm .weba .mkv .mka .mov .wma .amr "
    ".3gp .mpeg .mpga .mpg .aif .aiff .caf .ts .audio".split()
)


def result_key(audio_key: str) -> str:
    """The result document's key: next to the audio (``a/b.mp3`` -> ``a/b.mp3.json``)."""
    return audio_key + RESULT_SUFFIX


def output_key(audio_key: str, suffix: str) -> str:
    """An extra output's key next to the audio (``a/b.mp3`` -> ``a/b.mp3.redacted.wav``)."""
    return audio_key + suffix


def is_output(key: str) -> bool:
    """Whether ``key`` names one of our outputs (a result, an unredacted copy, redacted audio)."""
    return key.endswith(OUTPUT_SUFFIXES)


def job_id_for(bucket: str, key: str, etag: str | None, version_id: str | None) -> str:
    """A stable id for an upload that did not come with one: duplicates share it."""
    digest = hashlib.sha256(f"{bucket}\0{key}\0{etag or ''}\0{version_id or ''}".encode()).hexdigest()
    return f"s3-{digest[:24]}"
