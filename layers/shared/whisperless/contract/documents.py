"""The contract's failed document (the completed one is built by the engine, from its results)."""

from __future__ import annotations

from typing import Any

from ..errors import WhisperlessError, caller_fault


def failed_document(job_id: str, error: BaseException, source: Any = None) -> dict[str, Any]:
    if isinstance(error, WhisperlessError):
        detail = error.to_dict()
    else:  # unexpected: do not leak internals, but say it was ours
        detail = {"code": "internal_error", "message": f"transcription failed: {type(error).__name__}"}
    doc: dict[str, Any] = {"id": job_id, "status": "failed", "error": detail}
    if source is not None:
        doc["source"] = source
    return doc


def input_was_bad(document: dict[str, Any]) -> bool:
    """A failed document whose error was the caller's input (the API answers it 422, not 500)."""
    return document.get("status") == "failed" and caller_fault((document.get("error") or {}).get("code"))
