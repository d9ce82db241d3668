"""Speakers by name: voice names, whose voices they are, and where enrolments live in the bucket.
Light (no numpy, no boto3): the API function uses it from the layer.

- A voice belongs to an owner: the API client that enrolled it, or ``bucket:<name>`` for a voice
  enrolled by an object under ``speakers/`` in the bucket (``speakers/Alice Smith.wav``).
- ``knownSpeakers`` names the owner's voices a job may give to its speakers (or ``*``: all).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from ..errors import InvalidParameter
from .naming import is_audio_key, is_output

#: Objects here enrol a voice for the bucket (their name, without the extension); never transcribed.
SPEAKERS_PREFIX = "speakers/"
#: Where the API keeps an enrolment clip until the transcriber has turned it into a voice (no
#: extension, so the upload rule never sees audio; the bucket's lifecycle drops strays after a day).
CLIP_PREFIX = ".voices/"
#: Known voices one job may ask for.
MAX_KNOWN_SPEAKERS = 20
MAX_NAME_LENGTH = 64
ALL = "*"

#: OpenAI's per-request voices, as multipart array fields: names and their clips as data URLs.
NAMES_FIELD = "known_speaker_names[]"
REFERENCES_FIELD = "known_speaker_references[]"
_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+)?(?:;[^,;]*)*;base64,(.*)", re.DOTALL)

#: The labels of speakers no voice named (SPEAKER_00, ...): never a voice name.
ANONYMOUS_SPEAKER = re.compile(r"SPEAKER_\d+", re.IGNORECASE)
_FORBIDDEN = set(",/\\*")


def reference_key(job_id: str, index: int) -> str:
    """Where a job's ``known_speaker_references[]`` clip waits for the transcriber."""
    return f"{CLIP_PREFIX}{job_id}/{index}"


def bucket_owner(bucket: str) -> str:
    return f"bucket:{bucket}"


def parse_voice_name(value: Any, field: str = "name") -> str:
    """A person's name as given (trimmed): 1-64 printable characters, none of ``, / \\ *`` (a
    comma separates names in ``knownSpeakers``), and not a ``SPEAKER_nn`` label."""
    name = str(value if value is not None else "").strip()
    if not name:
        raise InvalidParameter(f"{field} is required: the name to give this voice", field=field)
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidParameter(f"{field} may have at most {MAX_NAME_LENGTH} characters", field=field)
    if not name.isprintable() or _FORBIDDEN & set(name):
        raise InvalidParameter(f"{field} may not hold control characters or any of , / \\ *: {name!r}", field=field)
    if ANONYMOUS_SPEAKER.fullmatch(name):
        raise InvalidParameter(f"{field} may not be an anonymous label like {name!r}", field=field)
    return name


def parse_known_speakers(value: Any, field: str = "knownSpeakers") -> tuple[str, ...]:
    """``"Alice, Bob"`` (or a list) -> ("Alice", "Bob"); ``"*"`` -> ("*",): all of the owner's voices."""
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    names: list[str] = []
    for item in items:
        text = str(item).strip()
        if text and text not in names:
            names.append(text)
    if ALL in names:
        if len(names) > 1:
            raise InvalidParameter(f"{field} is either * or a list of names, not both", field=field)
        return (ALL,)
    if len(names) > MAX_KNOWN_SPEAKERS:
        raise InvalidParameter(f"{field} may name at most {MAX_KNOWN_SPEAKERS} voices, got {len(names)}", field=field)
    return tuple(parse_voice_name(name, field) for name in names)


def enrolment_name(key: str) -> str | None:
    """The voice an object enrols: ``speakers/Alice Smith.wav`` -> ``Alice Smith``; None for any
    other key (deeper folders, outputs, keys that are not audio)."""
    if not key.startswith(SPEAKERS_PREFIX) or is_output(key) or not is_audio_key(key):
        return None
    rest = key[len(SPEAKERS_PREFIX) :]
    if "/" in rest:
        return None
    return rest.rsplit(".", 1)[0]


def is_enrolment_key(key: str) -> bool:
    """Keys under ``speakers/`` or the API's clips: never transcribed."""
    return key.startswith((SPEAKERS_PREFIX, CLIP_PREFIX))


def reference_voices(names: list[str], references: list[str]) -> list[tuple[str, bytes]]:
    """OpenAI's ``known_speaker_names[]`` with ``known_speaker_references[]`` (``data:audio/wav;
    base64,...``), pair by pair -> [(name, clip bytes)]; refused naming the field at fault."""
    if len(names) != len(references):
        raise InvalidParameter(
            f"send one {REFERENCES_FIELD} per {NAMES_FIELD} ({len(names)} names, {len(references)} references)",
            field=REFERENCES_FIELD,
        )
    if len(names) > MAX_KNOWN_SPEAKERS:
        raise InvalidParameter(f"{NAMES_FIELD}: at most {MAX_KNOWN_SPEAKERS} voices per request", field=NAMES_FIELD)
    parsed = [parse_voice_name(name, NAMES_FIELD) for name in names]
    if len(set(parsed)) != len(parsed):
        raise InvalidParameter(f"{NAMES_FIELD}: a name is given twice", field=NAMES_FIELD)
    clips = []
    for reference in references:
        match = _DATA_URL.fullmatch(reference.strip())
        try:
            clip = base64.b64decode(match.group(2), validate=True) if match else b""
        except (binascii.Error, ValueError):
            clip = b""
        if not clip:
            raise InvalidParameter(
                f"{REFERENCES_FIELD} must be a data URL holding the audio (data:audio/wav;base64,...)",
                field=REFERENCES_FIELD,
            )
        clips.append(clip)
    return list(zip(parsed, clips, strict=True))
