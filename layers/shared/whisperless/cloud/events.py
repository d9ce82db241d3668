"""Turn any way in (S3 notification, SQS-wrapped S3, EventBridge Object Created,
an API job message) into plain job descriptions. Pure parsing: no AWS calls.

Anything that is not a job (S3's test event, our own ``.json`` results, keys that
are not audio) becomes a ``Skip`` with its reason, so it is logged, never silently dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from ..contract.naming import AUDIO_EXTENSIONS, RESULT_SUFFIX
from ..errors import WhisperlessError


class InvalidEvent(WhisperlessError):
    code = "invalid_event"


@dataclass(frozen=True)
class ObjectJob:
    """Transcribe an object already in S3."""

    bucket: str
    key: str
    etag: str | None = None
    version_id: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class UrlJob:
    """Fetch ``url`` into the bucket, then transcribe it (sent by the API)."""

    job_id: str
    bucket: str
    key: str
    url: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Skip:
    reason: str
    key: str | None = None


Job = ObjectJob | UrlJob | Skip


def object_job(
    bucket: str, key: str, etag: str | None = None, version_id: str | None = None, size: int | None = None
) -> Job:
    """An ObjectJob, or a Skip when the key is one of our results or not audio."""
    if not isinstance(bucket, str) or not bucket or not key:
        raise InvalidEvent("event names no bucket or no key")
    if key.endswith(RESULT_SUFFIX):
        # Results live next to the audio; they must never start a new job.
        return Skip("result document, not audio", key)
    if key.endswith("/"):
        return Skip("folder marker", key)
    dot = key.rfind(".")
    if dot <= key.rfind("/") or key[dot:].lower() not in AUDIO_EXTENSIONS:
        return Skip("not an audio file extension", key)
    # Unversioned buckets report version "null" in some events and none in others. Fields of
    # the wrong type (only a malformed event has them) count as absent rather than crash.
    version_id = version_id if isinstance(version_id, str) and version_id not in ("", "null") else None
    etag = etag.strip('"') or None if isinstance(etag, str) else None
    size = size if isinstance(size, int) and not isinstance(size, bool) else None
    return ObjectJob(bucket=bucket, key=key, etag=etag, version_id=version_id, size=size)


def _require(mapping: Any, *path: str) -> Any:
    value = mapping
    for name in path:
        if not isinstance(value, dict) or name not in value:
            raise InvalidEvent(f"event is missing {'.'.join(path)}")
        value = value[name]
    return value


def event_key(encoded: Any) -> str:
    """The object key of an S3 event, decoded exactly once. S3 URL-encodes keys in its
    notifications (AWS documents it: "red flower.jpg" arrives as "red+flower.jpg", a literal "+"
    as "%2B") and in its EventBridge events alike (LocalStack, whose S3 event tests are recorded
    against AWS, encodes both; Powertools' EventBridge data class decodes it). Decoding once
    never guesses: "pl%2Bus.wav" is "pl+us.wav" and "pl+us.wav" is "pl us.wav"."""
    return unquote_plus(str(encoded))


def _from_s3_record(record: dict) -> Job:
    bucket = _require(record, "s3", "bucket", "name")
    obj = _require(record, "s3", "object")
    key = event_key(_require(obj, "key"))
    if not str(record.get("eventName", "ObjectCreated")).startswith("ObjectCreated"):
        return Skip(f"not an object-created event ({record.get('eventName')})", key)
    return object_job(bucket, key, obj.get("eTag"), obj.get("versionId"), obj.get("size"))


def _from_eventbridge(event: dict) -> Job:
    if event.get("detail-type") != "Object Created":
        return Skip(f"EventBridge {event.get('detail-type')!r} is not Object Created")
    detail = _require(event, "detail")
    obj = _require(detail, "object")
    return object_job(
        str(_require(detail, "bucket", "name")),
        event_key(_require(obj, "key")),
        obj.get("etag") or obj.get("eTag"),
        obj.get("version-id"),
        obj.get("size"),
    )


def _from_job_message(message: dict) -> Job:
    for name in ("jobId", "bucket", "key", "url"):
        if not isinstance(message.get(name), str) or not message[name]:
            raise InvalidEvent(f"job message is missing {name}")
    params = message.get("params") or {}
    if not isinstance(params, dict):
        raise InvalidEvent("job message params must be an object")
    return UrlJob(
        job_id=message["jobId"], bucket=message["bucket"], key=message["key"], url=message["url"], params=params
    )


def jobs_from_payload(payload: Any) -> list[Job]:
    """Jobs in one S3 notification / EventBridge event / job message (already JSON-decoded)."""
    if not isinstance(payload, dict):
        raise InvalidEvent("event must be a JSON object")
    if payload.get("Event") == "s3:TestEvent":
        return [Skip("S3 test event")]
    if "detail-type" in payload:
        return [_from_eventbridge(payload)]
    if "jobId" in payload:
        return [_from_job_message(payload)]
    records = payload.get("Records")
    if isinstance(records, list):
        if not records:
            raise InvalidEvent("event has no records")
        return [_from_s3_record(r) if isinstance(r, dict) else _fail("record must be an object") for r in records]
    raise InvalidEvent("unrecognised event: not S3, EventBridge or a job message")


def jobs_from_sqs_body(body: str) -> list[Job]:
    try:
        payload = json.loads(body)
    except (TypeError, ValueError) as exc:
        raise InvalidEvent(f"SQS message body is not JSON: {exc}") from None
    return jobs_from_payload(payload)


def _fail(message: str):
    raise InvalidEvent(message)
