"""What a finished job tells event-driven pipelines: one EventBridge event on the deployment's bus.

    source       "whisperless"
    detail-type  "Transcription Completed" | "Transcription Failed"
    detail       {jobId, status, bucket, key, resultKey, language, duration, speakers,
                  error? {code, message, field?}, clientId?}

Small on purpose (no transcript: EventBridge events stop at 256 KB, and a pipeline reads the
result from ``resultKey``). Published by the runner after the result (and its renderings) are
written and before the callback; the runner records it on the job record so that a rerun of the
job's ending does not publish it again (``JobRunner._publish_event``).
"""

from __future__ import annotations

import json
from typing import Any

from ..contract.naming import result_key

SOURCE = "whisperless"
COMPLETED = "Transcription Completed"
FAILED = "Transcription Failed"


class EventNotPublished(Exception):
    """EventBridge took the call but not the entry (throttled, too large, ...)."""


def detail_type(document: dict[str, Any]) -> str:
    return FAILED if document.get("status") == "failed" else COMPLETED


def job_event(job_id: str, bucket: str, key: str, document: dict[str, Any], client_id: str | None = None) -> dict:
    """The event's detail for a job that ended with ``document``."""
    turns = document.get("diarization")
    detail: dict[str, Any] = {
        "jobId": job_id,
        "status": document.get("status"),
        "bucket": bucket,
        "key": key,
        "resultKey": result_key(key),
        "language": document.get("language"),
        "duration": document.get("duration"),
        # Distinct speakers found; null when diarization was not asked for.
        "speakers": len({t["speaker"] for t in turns}) if isinstance(turns, list) else None,
    }
    if document.get("status") == "failed":
        detail["error"] = document.get("error")
    if client_id:
        detail["clientId"] = client_id
    return detail


class EventBus:
    def __init__(self, client, name: str):
        self.client = client
        self.name = name

    def publish(self, detail: dict) -> str:
        """Put one event; returns its EventBridge id. Raises when it was not accepted."""
        reply = self.client.put_events(
            Entries=[
                {
                    "Source": SOURCE,
                    "DetailType": detail_type(detail),
                    "Detail": json.dumps(detail, ensure_ascii=False),
                    "EventBusName": self.name,
                }
            ]
        )
        entry = (reply.get("Entries") or [{}])[0]
        if reply.get("FailedEntryCount") or not entry.get("EventId"):
            raise EventNotPublished(f"{entry.get('ErrorCode', 'unknown')}: {entry.get('ErrorMessage', '')}")
        return str(entry["EventId"])
