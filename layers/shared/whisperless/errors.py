"""Typed errors. Each carries a stable ``code`` that ends up in the failed result document and
in API responses, the ``field`` that names a request parameter at fault, and whose fault it is:

- ``caller_fault``: the request or the audio was bad. The API answers 4xx, a job fails at once
  with its failed document, and nothing is retried (the same input fails the same way).
- otherwise it is ours (a model that will not load, S3 or DynamoDB failing): the API answers
  5xx, and a queued job is retried while ``permanent`` is false.

Every code an error class can carry is listed in its ``codes``, so that a failed document read
back later (the API reads results from S3) still tells whose fault it was: :func:`caller_fault`.
"""

from __future__ import annotations

from typing import ClassVar

_CALLER_CODES: set[str] = set()


class WhisperlessError(Exception):
    """Base class: a failure we can explain to the user."""

    code = "internal_error"
    #: Every code instances may carry (``code`` included); registered for :func:`caller_fault`.
    codes: ClassVar[frozenset[str]] = frozenset()
    #: The request or its audio is at fault: 4xx, never retried.
    caller_fault: ClassVar[bool] = False
    #: Retrying the same input will fail the same way (no point in redelivery).
    permanent: bool = True

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if cls.caller_fault:
            _CALLER_CODES.update(cls.codes | {cls.code})

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if code:
            if code not in self.codes | {type(self).code}:
                raise ValueError(f"{type(self).__name__} does not declare the code {code!r}")
            self.code = code

    def to_dict(self) -> dict:
        out = {"code": self.code, "message": self.message}
        if self.field:
            out["field"] = self.field
        return out


def caller_fault(code: str | None) -> bool:
    """Whether a failed document's error code means the caller's input was at fault."""
    return code in _CALLER_CODES


class InvalidParameter(WhisperlessError):
    """A request parameter has a value we cannot use."""

    code = "invalid_parameter"
    caller_fault = True


class AudioError(WhisperlessError):
    """The input is not decodable audio (empty, not audio, truncated, unsupported, too long)."""

    code = "not_audio"
    codes = frozenset(
        {
            "not_audio",
            "empty_file",
            "corrupt_audio",
            "no_audio_stream",
            "unsupported_codec",
            "zero_length",
            "unreadable",
            "audio_too_long",
            "audio_too_large",
            "file_not_found",
            "too_little_speech",
        }
    )
    caller_fault = True


class Interrupted(WhisperlessError):
    """The process is stopping (SIGTERM, Ctrl-C) and the job did not finish in its grace period:
    it is put back for another attempt, not failed."""

    code = "interrupted"
    permanent = False


class ModelUnavailable(WhisperlessError):
    """A model name or path that cannot be loaded here: the deployment's configuration, not the caller."""

    code = "model_unavailable"


class ConfigError(WhisperlessError):
    """An environment variable holds a value the deployment cannot run with."""

    code = "invalid_configuration"
