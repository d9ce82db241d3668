"""Turn any way in (S3 notification, SQS-wrapped S3, EventBridge Object Created, an EventBridge
``Transcription Requested`` event, an API job message) into plain job descriptions. Pure
parsing: no AWS calls.

Anything that is not a job (S3's test event, our own outputs (``.json``, ``.redacted.wav``), keys that
are not audio, our working space ``.whisperless/``) becomes a ``Skip`` with its reason, so it is
logged, never silently dropped. A long job's chunk and merge tasks are messages of their own
(``whisperlessTask``), sent by the runner.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from ..contract.naming import HIDDEN_PREFIX, JOB_ID_PATTERN, is_audio_key, is_output
from ..contract.speakers import CLIP_PREFIX, SPEAKERS_PREFIX, bucket_owner, enrolment_name, parse_voice_name
from ..errors import WhisperlessError
from .voices import VoiceTask


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
class RequestedJob:
    """Transcribe an object already in the bucket, as an EventBridge ``Transcription Requested``
    event asks: ``detail`` names ``bucket`` and ``key``, optionally ``jobId`` and the contract's
    parameters (``diarization``, ``language``, ``formats``, ``callbackURL``, ...)."""

    job_id: str
    bucket: str
    key: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LongJob:
    """A long recording split into chunk tasks: what every task of it needs to know. The audio is
    pinned by ETag and version; ``metadata`` is the job's parameters (as an upload's metadata)."""

    job_id: str
    bucket: str
    key: str
    etag: str
    version_id: str | None
    metadata: dict[str, str]
    num_samples: int
    chunk_seconds: float
    total: int

    def message(self, **task: Any) -> dict[str, Any]:
        return {
            "whisperlessTask": task,
            "jobId": self.job_id,
            "bucket": self.bucket,
            "key": self.key,
            "etag": self.etag,
            "versionId": self.version_id,
            "metadata": self.metadata,
            "numSamples": self.num_samples,
            "chunkSeconds": self.chunk_seconds,
            "total": self.total,
        }


@dataclass(frozen=True)
class ChunkJob:
    """Transcribe chunk ``index`` of a long job (its range, and diarization's local stage)."""

    job: LongJob
    index: int

    def message(self) -> dict[str, Any]:
        return self.job.message(kind="chunk", index=self.index)

    @property
    def job_id(self) -> str:
        return self.job.job_id


@dataclass(frozen=True)
class MergeJob:
    """Every chunk of a long job is done: join them into the one result."""

    job: LongJob

    def message(self) -> dict[str, Any]:
        return self.job.message(kind="merge")

    @property
    def job_id(self) -> str:
        return self.job.job_id


@dataclass(frozen=True)
class Skip:
    reason: str
    key: str | None = None


Job = ObjectJob | UrlJob | RequestedJob | VoiceTask | ChunkJob | MergeJob | Skip

REQUESTED = "Transcription Requested"


def object_job(
    bucket: str, key: str, etag: str | None = None, version_id: str | None = None, size: int | None = None
) -> Job:
    """An ObjectJob, or a Skip when the key is one of our results or not audio."""
    if not isinstance(bucket, str) or not bucket or not key:
        raise InvalidEvent("event names no bucket or no key")
    if key.startswith(HIDDEN_PREFIX):
        return Skip("whisperless's own working space, not an upload", key)
    if is_output(key):
        # Results, renderings and redacted audio live next to the audio; they must never start a job.
        return Skip("our own output, not an upload", key)
    if key.endswith("/"):
        return Skip("folder marker", key)
    if not is_audio_key(key):
        return Skip("not an audio file extension", key)
    if key.startswith((SPEAKERS_PREFIX, CLIP_PREFIX)):
        return _voice_task("enrol", bucket, key)
    # Unversioned buckets report version "null" in some events and none in others. Fields of
    # the wrong type (only a malformed event has them) count as absent rather than crash.
    version_id = version_id if isinstance(version_id, str) and version_id not in ("", "null") else None
    etag = etag.strip('"') or None if isinstance(etag, str) else None
    size = size if isinstance(size, int) and not isinstance(size, bool) else None
    return ObjectJob(bucket=bucket, key=key, etag=etag, version_id=version_id, size=size)


def _voice_task(action: str, bucket: str, key: str) -> Job:
    """An object under ``speakers/`` enrols (created) or forgets (deleted) the bucket's voice of
    its name; it is never transcribed."""
    name = enrolment_name(key) if key.startswith(SPEAKERS_PREFIX) else None
    if name is None:
        return Skip("under speakers/ or .voices/ but not speakers/<name>.<audio extension>: not a job", key)
    try:
        name = parse_voice_name(name, "key")
    except WhisperlessError as exc:
        return Skip(f"not a voice name: {exc.message}", key)
    return VoiceTask(action, bucket, bucket_owner(bucket), name, key if action == "enrol" else None)


def _removed(bucket: Any, key: str) -> Job:
    if isinstance(bucket, str) and key.startswith(SPEAKERS_PREFIX) and not is_output(key):
        return _voice_task("forget", bucket, key)
    return Skip("a deleted object is a job only under speakers/", key)


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
    if str(record.get("eventName", "")).startswith("ObjectRemoved"):
        return _removed(bucket, key)
    if not str(record.get("eventName", "ObjectCreated")).startswith("ObjectCreated"):
        return Skip(f"not an object-created event ({record.get('eventName')})", key)
    return object_job(bucket, key, obj.get("eTag"), obj.get("versionId"), obj.get("size"))


def _from_request(event: dict) -> Job:
    """A ``Transcription Requested`` event. Its job id is the detail's ``jobId``, else one made
    from EventBridge's event id, which a redelivery of the same event keeps: a retried event is
    the same job, a new request a new one."""
    detail = _require(event, "detail")
    if not isinstance(detail, dict):
        raise InvalidEvent("Transcription Requested detail must be an object")
    for name in ("bucket", "key"):
        if not isinstance(detail.get(name), str) or not detail[name]:
            raise InvalidEvent(f"Transcription Requested detail is missing {name}")
    job_id = detail.get("jobId") or (f"evt-{event['id']}" if isinstance(event.get("id"), str) else None)
    if not isinstance(job_id, str) or not JOB_ID_PATTERN.fullmatch(job_id):
        raise InvalidEvent("Transcription Requested needs a jobId (letters, digits, '-', '_') or an event id")
    params = {k: v for k, v in detail.items() if k not in ("bucket", "key", "jobId")}
    return RequestedJob(job_id=job_id, bucket=detail["bucket"], key=detail["key"], params=params)


def _from_eventbridge(event: dict) -> Job:
    if event.get("detail-type") == REQUESTED:
        return _from_request(event)
    if event.get("detail-type") == "Object Deleted":
        detail = _require(event, "detail")
        return _removed(_require(detail, "bucket", "name"), event_key(_require(detail, "object", "key")))
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


def _from_voice_message(message: Any) -> Job:
    """The API's enrolment: ``{"voice": {"bucket", "key", "owner", "name"}}`` (only the API may
    send to the queue, so its owner is trusted)."""
    if not isinstance(message, dict):
        raise InvalidEvent("voice message must be an object")
    for name in ("bucket", "key", "owner", "name"):
        if not isinstance(message.get(name), str) or not message[name]:
            raise InvalidEvent(f"voice message is missing {name}")
    if not message["key"].startswith(CLIP_PREFIX):
        raise InvalidEvent("voice message clip must be under .voices/")
    return VoiceTask("enrol", message["bucket"], message["owner"], message["name"], message["key"])


def _from_job_message(message: dict) -> Job:
    for name in ("jobId", "bucket", "key", "url"):
        if not isinstance(message.get(name), str) or not message[name]:
            raise InvalidEvent(f"job message is missing {name}")
    if not JOB_ID_PATTERN.fullmatch(message["jobId"]):  # it names S3 metadata and records: ASCII only
        raise InvalidEvent("job message jobId is not a job id")
    params = message.get("params") or {}
    if not isinstance(params, dict):
        raise InvalidEvent("job message params must be an object")
    return UrlJob(
        job_id=message["jobId"], bucket=message["bucket"], key=message["key"], url=message["url"], params=params
    )


def _from_task_message(message: dict) -> Job:
    """A chunk or merge task of a long job (the runner sends them; see :class:`LongJob`)."""
    task = message["whisperlessTask"]
    if not isinstance(task, dict) or task.get("kind") not in ("chunk", "merge"):
        raise InvalidEvent("whisperlessTask must be {kind: chunk|merge}")
    for name in ("jobId", "bucket", "key", "etag"):
        if not isinstance(message.get(name), str) or not message[name]:
            raise InvalidEvent(f"task message is missing {name}")
    if not JOB_ID_PATTERN.fullmatch(message["jobId"]):
        raise InvalidEvent("task message jobId is not a job id")
    metadata = message.get("metadata")
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise InvalidEvent("task message metadata must be an object of strings")
    numbers: dict[str, float] = {}
    for name in ("numSamples", "chunkSeconds", "total"):
        value = message.get(name)
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise InvalidEvent(f"task message needs a positive {name}")
        numbers[name] = value
    version = message.get("versionId")
    job = LongJob(
        job_id=message["jobId"],
        bucket=message["bucket"],
        key=message["key"],
        etag=message["etag"],
        version_id=version if isinstance(version, str) and version else None,
        metadata=metadata,
        num_samples=int(numbers["numSamples"]),
        chunk_seconds=float(numbers["chunkSeconds"]),
        total=int(numbers["total"]),
    )
    if task["kind"] == "merge":
        return MergeJob(job)
    index = task.get("index")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < job.total:
        raise InvalidEvent("chunk task index must be 0 <= index < total")
    return ChunkJob(job, index)


def jobs_from_payload(payload: Any) -> list[Job]:
    """Jobs in one S3 notification / EventBridge event / job message (already JSON-decoded)."""
    if not isinstance(payload, dict):
        raise InvalidEvent("event must be a JSON object")
    if payload.get("Event") == "s3:TestEvent":
        return [Skip("S3 test event")]
    if "detail-type" in payload:
        return [_from_eventbridge(payload)]
    if "whisperlessTask" in payload:
        return [_from_task_message(payload)]
    if "jobId" in payload:
        return [_from_job_message(payload)]
    if "voice" in payload:
        return [_from_voice_message(payload["voice"])]
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
