"""Names in the bucket: which keys are audio, where a result goes, and stable job ids."""

from __future__ import annotations

import hashlib
import re

RESULT_SUFFIX = ".json"
AUDIO_EXTENSIONS = frozenset(
    ".wav .wave .mp3 .m4a .mp4 .m4v .aac .flac .ogg .oga .opus .webm .weba .mkv .mka .mov .wma .amr "
    ".3gp .mpeg .mpga .mpg .aif .aiff .caf .ts .audio".split()
)


#: Job ids: the API's (uuid4 hex), derived ones (``s3-...``); anything else names no job.
JOB_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")


def result_key(audio_key: str) -> str:
    """The result document's key: next to the audio (``a/b.mp3`` -> ``a/b.mp3.json``)."""
    return audio_key + RESULT_SUFFIX


def job_id_for(bucket: str, key: str, etag: str | None, version_id: str | None) -> str:
    """A stable id for an upload that did not come with one: duplicates share it."""
    digest = hashlib.sha256(f"{bucket}\0{key}\0{etag or ''}\0{version_id or ''}".encode()).hexdigest()
    return f"s3-{digest[:24]}"
