"""Typed errors. Each carries a stable ``code`` that ends up in the failed result
document and in API responses, and, where a request parameter is at fault, the
``field`` that names it."""

from __future__ import annotations


class WhisperlessError(Exception):
    """Base class: a failure we can explain to the user."""

    code = "internal_error"
    #: Retrying the same input will fail the same way (no point in redelivery).
    permanent = True

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if code:
            self.code = code

    def to_dict(self) -> dict:
        out = {"code": self.code, "message": self.message}
        if self.field:
            out["field"] = self.field
        return out


class InvalidParameter(WhisperlessError):
    """A request parameter has a value we cannot use."""

    code = "invalid_parameter"


class AudioError(WhisperlessError):
    """The input is not decodable audio (empty, not audio, truncated, unsupported)."""

    code = "invalid_audio"


class ModelUnavailable(WhisperlessError):
    """A model name or path that cannot be loaded here."""

    code = "model_unavailable"
