"""The contract's request parameters, parsed and validated in one place.

Every entry point (CLI, HTTP form or JSON, S3 object metadata) hands its raw
string values to ``TranscriptionOptions.from_params``; an unusable value raises
``InvalidParameter`` naming the field, before any work is queued.
This module imports nothing heavy: the API function uses it from a zip layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import InvalidParameter
from .languages import WHISPER_LANGUAGES, normalize_language
from .redaction import REDACTION_OUTPUTS, SUPPORTED_ENTITIES, parse_entities, parse_redaction_output
from .speakers import parse_known_speakers

TASKS = ("transcribe", "translate")
MAX_SPEAKERS = 20
#: Renderings that may be written next to the audio besides <key>.json (``formats``).
SIDECAR_FORMATS = ("srt", "vtt", "txt")

# Contract name -> attribute. S3 user metadata arrives lower-cased, so lookups ignore case.
_FIELDS = {
    "diarization": "diarization",
    "numSpeakers": "num_speakers",
    "minSpeakers": "min_speakers",
    "maxSpeakers": "max_speakers",
    "language": "language",
    "task": "task",
    "initialPrompt": "initial_prompt",
    # Redaction and insight (additive): README "Redaction and sentiment".
    "redact": "redact",
    "redactionOutput": "redaction_output",
    "redactAudio": "redact_audio",
    "sentiment": "sentiment",
    "temperature": "temperature",
    "formats": "formats",
    # Speakers by name (additive): README "Speakers by name".
    "knownSpeakers": "known_speakers",
}


def is_unset(value: Any) -> bool:
    """None or blank: the contract treats both as "not given"."""
    return value is None or (isinstance(value, str) and value.strip() == "")


def parse_bool(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    # "on": what an HTML checkbox sends when ticked (and nothing when not).
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise InvalidParameter(f"{field} must be true or false, got {value!r}", field=field)


def parse_speakers(value: Any, field: str) -> int:
    if isinstance(value, bool):
        raise InvalidParameter(f"{field} must be a whole number, got {value!r}", field=field)
    try:
        number = int(str(value).strip())
    except ValueError:
        raise InvalidParameter(f"{field} must be a whole number, got {value!r}", field=field) from None
    if not 1 <= number <= MAX_SPEAKERS:
        raise InvalidParameter(f"{field} must be between 1 and {MAX_SPEAKERS}, got {number}", field=field)
    return number


def parse_formats(value: Any, field: str = "formats") -> tuple[str, ...]:
    """``"srt,vtt"`` (or a list) -> ("srt", "vtt"): the sidecar renderings, in a fixed order.
    ``json`` is accepted and means nothing more: the result document is always written."""
    items = value if isinstance(value, (list, tuple)) else str(value).replace(" ", ",").split(",")
    wanted = {str(item).strip().lower() for item in items} - {"", "json"}
    unknown = sorted(wanted - set(SIDECAR_FORMATS))
    if unknown:
        raise InvalidParameter(
            f"{field} must list some of {', '.join(SIDECAR_FORMATS)} (comma-separated), got {unknown[0]!r}",
            field=field,
        )
    return tuple(name for name in SIDECAR_FORMATS if name in wanted)


def parse_temperature(value: Any, field: str = "temperature") -> float:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise InvalidParameter(f"{field} must be a number between 0 and 1, got {value!r}", field=field) from None
    if not 0.0 <= number <= 1.0:  # also refuses NaN
        raise InvalidParameter(f"{field} must be between 0 and 1, got {value!r}", field=field)
    return number


@dataclass(frozen=True)
class TranscriptionOptions:
    diarization: bool = False
    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None
    language: str | None = None
    task: str = "transcribe"
    initial_prompt: str | None = None
    redact: tuple[str, ...] = ()  # Presidio entity types; empty: no redaction
    redaction_output: str = "redacted"
    redact_audio: bool = False
    sentiment: bool = False
    # Sampling temperature; unset or 0 is Whisper's own schedule (0, then higher on a poor decode).
    temperature: float | None = None
    formats: tuple[str, ...] = ()  # renderings written next to the audio besides <key>.json
    # Enrolled voices the diarized speakers may be named after; ("*",): all of the caller's.
    known_speakers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise InvalidParameter(f"task must be one of {', '.join(TASKS)}, got {self.task!r}", field="task")
        if self.language is not None and self.language not in WHISPER_LANGUAGES:
            # from_params normalises what users send; here only Whisper's own codes are valid.
            raise InvalidParameter(f"language {self.language!r} is not a Whisper language code", field="language")
        if self.min_speakers and self.max_speakers and self.min_speakers > self.max_speakers:
            raise InvalidParameter(
                f"minSpeakers ({self.min_speakers}) is greater than maxSpeakers ({self.max_speakers})",
                field="minSpeakers",
            )
        unknown = [name for name in self.redact if name not in SUPPORTED_ENTITIES]
        if unknown:
            raise InvalidParameter(f"redact: unknown entity types {unknown}", field="redact")
        if self.redaction_output not in REDACTION_OUTPUTS:
            raise InvalidParameter(
                f"redactionOutput must be one of {', '.join(REDACTION_OUTPUTS)}", field="redactionOutput"
            )
        # Without redaction these would silently do nothing: say so instead.
        if not self.redact and self.redaction_output != "redacted":
            raise InvalidParameter("redactionOutput needs redact (the entity types to remove)", field="redactionOutput")
        if not self.redact and self.redact_audio:
            raise InvalidParameter("redactAudio needs redact (the entity types to remove)", field="redactAudio")
        if self.known_speakers and not self.diarization:
            raise InvalidParameter("knownSpeakers needs diarization=true", field="knownSpeakers")

    @property
    def keeps_unredacted(self) -> bool:
        return self.redaction_output == "redacted_and_unredacted"

    @classmethod
    def from_params(cls, params: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> TranscriptionOptions:
        """Build from contract-named parameters (any case); empty strings mean unset."""
        merged: dict[str, Any] = {}
        for source in (defaults or {}, params):
            lowered = {str(k).lower(): v for k, v in source.items()}
            for name in _FIELDS:
                value = lowered.get(name.lower())
                if not is_unset(value):
                    merged[name] = value
        kwargs: dict[str, Any] = {}
        if "diarization" in merged:
            kwargs["diarization"] = parse_bool(merged["diarization"], "diarization")
        for name in ("numSpeakers", "minSpeakers", "maxSpeakers"):
            if name in merged:
                kwargs[_FIELDS[name]] = parse_speakers(merged[name], name)
        if "language" in merged:
            kwargs["language"] = normalize_language(merged["language"])
        if "task" in merged:
            kwargs["task"] = str(merged["task"]).strip().lower()
        if "initialPrompt" in merged:
            kwargs["initial_prompt"] = str(merged["initialPrompt"])
        if "redact" in merged:
            kwargs["redact"] = parse_entities(merged["redact"], "redact")
        if "redactionOutput" in merged:
            kwargs["redaction_output"] = parse_redaction_output(merged["redactionOutput"], "redactionOutput")
        for name in ("redactAudio", "sentiment"):
            if name in merged:
                kwargs[_FIELDS[name]] = parse_bool(merged[name], name)
        if "temperature" in merged:
            kwargs["temperature"] = parse_temperature(merged["temperature"])
        if "formats" in merged:
            kwargs["formats"] = parse_formats(merged["formats"])
        if "knownSpeakers" in merged:
            kwargs["known_speakers"] = parse_known_speakers(merged["knownSpeakers"])
        return cls(**kwargs)

    def to_params(self) -> dict[str, Any]:
        """Contract-named, JSON-ready form (unset values left out)."""
        values = asdict(self)
        values["redact"] = ",".join(self.redact) or None
        values["formats"] = ",".join(self.formats) or None
        values["known_speakers"] = ",".join(self.known_speakers) or None
        return {name: values[attr] for name, attr in _FIELDS.items() if values[attr] is not None}
