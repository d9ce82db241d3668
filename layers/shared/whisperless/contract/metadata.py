"""S3 user metadata carrying a job's parameters: written by the API and the worker's URL
jobs, read by the worker. S3 lower-cases the names; values travel in HTTP headers, so
anything beyond printable ASCII is RFC 2047-encoded (as S3 itself stores such values)."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from email.header import decode_header, make_header
from typing import Any

JOB_ID = "jobid"
CLIENT_ID = "clientid"
CALLBACK = "callbackurl"
#: How many per-request reference clips (known_speaker_references[]) the API stored for the job.
VOICE_REFERENCES = "voicereferences"
BOOKKEEPING = (JOB_ID, CLIENT_ID, VOICE_REFERENCES)


def _encode(value: str) -> str:
    if value.isascii() and value.isprintable():
        return value
    return f"=?UTF-8?B?{base64.b64encode(value.encode()).decode()}?="


def _decode(value: str) -> str:
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError):
        return value  # not an encoded word after all: keep it as sent


def upload_metadata(job_id: str, params: Mapping[str, Any], client_id: str | None = None) -> dict[str, str]:
    """Metadata for an upload: the job id, its owner and its contract parameters."""
    meta = {JOB_ID: job_id}
    if client_id:
        meta[CLIENT_ID] = client_id
    for name, value in params.items():
        if value is None or value == "":
            continue
        meta[name.lower()] = _encode(str(value).lower() if isinstance(value, bool) else str(value))
    return meta


def read_metadata(raw: Mapping[str, str]) -> dict[str, str]:
    """Names lower-cased, values decoded."""
    return {name.lower(): _decode(value) for name, value in raw.items()}
