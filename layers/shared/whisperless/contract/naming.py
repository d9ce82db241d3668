"""Names in the bucket: which keys are audio, where a result goes, and stable job ids."""

from __future__ import annotations

import hashlib
import re

RESULT_SUFFIX = ".json"
#: Written next to the result on request (redactionOutput, redactAudio), before it.
UNREDACTED_SUFFIX = ".unredacted.json"
REDACTED_AUDIO_SUFFIX = ".redacted.wav"
#: Renderings of the result (``formats``), written next to it.
RENDERING_SUFFIXES = (".srt", ".vtt", ".txt")
#: Everything whisperless writes next to the audio. None of it is ever a job, though
#: ``.redacted.wav`` is audio: the worker skips it (the template's upload rule passes audio only).
OUTPUT_SUFFIXES = (RESULT_SUFFIX, UNREDACTED_SUFFIX, REDACTED_AUDIO_SUFFIX, *RENDERING_SUFFIXES)
AUDIO_EXTENSIONS = frozenset(
    ".wav .wave .mp3 .m4a .mp4 .m4v .aac .flac .ogg .oga .opus .webm .weba .mkv .mka .mov .wma .amr "
    ".3gp .mpeg .mpga .mpg .aif .aiff .caf .ts .audio".split()
)


#: Our own working space in the bucket (a hidden prefix, never next to the audio, never a job):
#: a long job's chunk results until its merge deletes them (the bucket's lifecycle rule expires
#: what a failed job leaves).
HIDDEN_PREFIX = ".whisperless/"
PARTS_PREFIX = HIDDEN_PREFIX + "parts/"


def parts_prefix(job_id: str) -> str:
    """Where a long job's chunk results live until its merge."""
    return f"{PARTS_PREFIX}{job_id}/"


def part_key(job_id: str, index: int) -> str:
    """One chunk's result (a .npz, written once)."""
    return f"{parts_prefix(job_id)}{index:05d}.npz"


#: Job ids: the API's (uuid4 hex), derived ones (``s3-...``); anything else names no job.
JOB_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")


def result_key(audio_key: str) -> str:
    """The result document's key: next to the audio (``a/b.mp3`` -> ``a/b.mp3.json``)."""
    return audio_key + RESULT_SUFFIX


def output_key(audio_key: str, suffix: str) -> str:
    """An output's key next to the audio (``a/b.mp3`` -> ``a/b.mp3.redacted.wav``, ``a/b.mp3.srt``)."""
    return audio_key + suffix


def output_keys(audio_key: str) -> list[str]:
    """Every key whisperless may have written for the audio at ``audio_key``."""
    return [audio_key + suffix for suffix in OUTPUT_SUFFIXES]


def is_audio_key(key: str) -> bool:
    """Whether ``key``'s extension (any case) is one of ``AUDIO_EXTENSIONS``."""
    dot = key.rfind(".")
    return dot > key.rfind("/") and key[dot:].lower() in AUDIO_EXTENSIONS


def is_output(key: str) -> bool:
    """Whether ``key`` names one of our outputs: a result or unredacted copy (``.json``), redacted
    audio, or a rendering next to an audio key (``a.wav.srt``; a plain ``notes.txt`` is not ours)."""
    lowered = key.lower()
    if key.endswith((RESULT_SUFFIX, REDACTED_AUDIO_SUFFIX)):
        return True
    return lowered.endswith(RENDERING_SUFFIXES) and is_audio_key(key.rsplit(".", 1)[0])


def job_id_for(bucket: str, key: str, etag: str | None, version_id: str | None) -> str:
    """A stable id for an upload that did not come with one: duplicates share it."""
    digest = hashlib.sha256(f"{bucket}\0{key}\0{etag or ''}\0{version_id or ''}".encode()).hexdigest()
    return f"s3-{digest[:24]}"
