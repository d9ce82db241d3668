"""Data access: job records in DynamoDB, audio and results in S3."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ..contract.formats import MEDIA_TYPES, RENDERERS
from ..contract.naming import (
    OUTPUT_SUFFIXES,
    REDACTED_AUDIO_SUFFIX,
    UNREDACTED_SUFFIX,
    output_key,
    part_key,
    result_key,
)
from ..errors import WhisperlessError

#: The jobs table's index of a client's jobs by creation time (template.yaml JobsTable).
CLIENT_INDEX = "byClient"


#: S3's limit on an object key, in UTF-8 bytes.
MAX_KEY_BYTES = 1024
#: S3 error codes that the same request meets again however often it is retried.
PERMANENT_S3_ERRORS = frozenset(
    {
        "KeyTooLongError",
        "InvalidArgument",
        "InvalidRequest",
        "InvalidObjectState",  # an archived (Glacier) object: it must be restored first
        "EntityTooLarge",
        "MetadataTooLarge",
        "InvalidStorageClass",
    }
)


class KeyTooLong(WhisperlessError):
    """The audio's key leaves no room for its outputs (``<key>.unredacted.json``) within S3's 1024 bytes."""

    code = "key_too_long"
    caller_fault = True


class StorageRefused(WhisperlessError):
    """S3 refused a request for good: retrying it would fail the same way."""

    code = "storage_refused"


def storage_refusal(exc: BaseException) -> WhisperlessError | None:
    """The error to report for an S3 failure that no retry can fix, or None for a passing one."""
    if isinstance(exc, (KeyTooLong, StorageRefused)):
        return exc
    response = getattr(exc, "response", None)
    code = (response or {}).get("Error", {}).get("Code") if isinstance(response, dict) else None
    if code not in PERMANENT_S3_ERRORS:
        return None
    if code == "KeyTooLongError":
        return KeyTooLong(f"S3 refused the key as too long: {exc}", field="key")
    return StorageRefused(f"S3 refused the request ({code}): {exc}")


def check_output_keys(audio_key: str) -> None:
    """Raise :class:`KeyTooLong` when an output next to the audio cannot exist in S3. The longest
    (``<key>.unredacted.json``) is the bound whether or not the job asks for it: every job writes
    or deletes it (``ResultStore.write_extras``)."""
    longest = max(OUTPUT_SUFFIXES, key=lambda suffix: len(suffix.encode()))
    room = MAX_KEY_BYTES - len(longest.encode())
    size = len(audio_key.encode("utf-8"))
    if size > room:
        raise KeyTooLong(
            f"the key is {size} bytes: its outputs (up to <key>{longest}) would be {size + len(longest)} bytes, "
            f"over S3's limit of {MAX_KEY_BYTES}; use a key of at most {room} bytes",
            field="key",
        )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _dynamo(value: Any) -> Any:
    # DynamoDB numbers must be Decimal; floats are not accepted by boto3.
    return json.loads(json.dumps(value), parse_float=Decimal)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, set):  # a string set (chunksDone): a sorted list, as JSON has no sets
        return sorted(value)
    return value


class JobStore:
    """One item per job: status, where its audio and result are, stages, callback outcome."""

    def __init__(self, table, ttl_days: int):
        self.table = table
        self.ttl_days = ttl_days

    def _expiry(self) -> int:
        return int(time.time()) + self.ttl_days * 86400

    def create(
        self, job_id: str, *, bucket: str, key: str, params: dict, client_id: str | None = None, status: str = "queued"
    ) -> None:
        item = {
            "id": job_id,
            "status": status,
            "bucket": bucket,
            "key": key,
            "resultKey": result_key(key),
            "params": params,
            "createdAt": _now(),
            "updatedAt": _now(),
            "expiresAt": self._expiry(),
        }
        if client_id:
            item["clientId"] = client_id
        self.table.put_item(Item=_dynamo(item))

    def _update(
        self,
        job_id: str,
        sets: dict[str, Any],
        *,
        keep_first: dict[str, Any] | None = None,
        increment: str | None = None,
    ) -> dict:
        """SET every name in ``sets``; ``keep_first`` only if absent; ``increment`` += 1.
        Every name goes through a placeholder: DynamoDB reserves words like status and duration."""
        names, values, clauses = {}, {}, []
        for i, (name, value) in enumerate({**sets, **(keep_first or {})}.items()):
            names[f"#a{i}"] = name
            values[f":v{i}"] = value
            if keep_first and name in keep_first:
                clauses.append(f"#a{i} = if_not_exists(#a{i}, :v{i})")
            else:
                clauses.append(f"#a{i} = :v{i}")
        if increment:
            names["#inc"] = increment
            values[":zero"], values[":one"] = 0, 1
            clauses.append("#inc = if_not_exists(#inc, :zero) + :one")
        reply = self.table.update_item(
            Key={"id": job_id},
            UpdateExpression="SET " + ", ".join(clauses),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=_dynamo(values),
            ReturnValues="ALL_OLD",
        )
        return _plain(reply.get("Attributes") or {})

    def start(self, job_id: str, *, bucket: str, key: str, params: dict) -> dict:
        """An attempt starts; returns the record as it was before (empty for a new job)."""
        now = _now()
        return self._update(
            job_id,
            {
                "status": "processing",
                "bucket": bucket,
                "key": key,
                "resultKey": result_key(key),
                "params": params,
                "updatedAt": now,
                "expiresAt": self._expiry(),
            },
            keep_first={"createdAt": now},
            increment="attempts",
        )

    def finish(
        self,
        job_id: str,
        *,
        status: str,
        timings: dict | None = None,
        error: dict | None = None,
        duration: float | None = None,
        result: dict | None = None,
    ) -> None:
        """The job's result is written (``result``: its key and ETag), or could not be stored."""
        sets: dict[str, Any] = {
            "status": status,
            "stage": "done",
            "progress": 1,
            "updatedAt": _now(),
            "finishedAt": _now(),
        }
        for name, value in (("timings", timings), ("error", error), ("duration", duration), ("result", result)):
            if value is not None:
                sets[name] = value
        self._update(job_id, sets)

    def record_retry(self, job_id: str, error: dict, *, download_attempts: int | None = None) -> None:
        """An attempt failed on our side (or the url's server did) and will be retried: say why."""
        sets: dict[str, Any] = {"status": "retrying", "lastError": {**error, "at": _now()}, "updatedAt": _now()}
        if download_attempts is not None:
            sets["downloadAttempts"] = download_attempts
        self._update(job_id, sets)

    def record_progress(self, job_id: str, stage: str, progress: float) -> None:
        """Where a running job is (``GET`` shows it while it runs): its stage and 0-1. Never goes
        back: chunk tasks finish in any order."""
        try:
            self.table.update_item(
                Key={"id": job_id},
                UpdateExpression="SET #s = :s, #p = :p, updatedAt = :now",
                ConditionExpression="attribute_not_exists(#p) OR #p <= :p",
                ExpressionAttributeNames={"#s": "stage", "#p": "progress"},
                ExpressionAttributeValues=_dynamo({":s": stage, ":p": round(progress, 3), ":now": _now()}),
            )
        except self.table.meta.client.exceptions.ConditionalCheckFailedException:
            pass  # a later stage is already recorded

    def fan_out(self, job_id: str, total: int, chunk_seconds: float) -> None:
        """The job runs as ``total`` chunk tasks (a redelivered planner keeps what is done)."""
        self._update(job_id, {"chunks": total, "chunkSeconds": chunk_seconds, "updatedAt": _now()})
        self.record_progress(job_id, "chunks", 0.05)

    def chunk_done(self, job_id: str, index: int, total: int) -> tuple[bool, int]:
        """Count chunk ``index`` as done: ``(whether this call counted it, chunks done)``. One
        conditional update on the job record: a chunk counts once however often it is delivered,
        so exactly one call sees the count reach ``total``, and that one starts the merge."""
        try:
            reply = self.table.update_item(
                Key={"id": job_id},
                UpdateExpression="ADD chunksDone :i SET updatedAt = :now",
                ConditionExpression="attribute_exists(id) AND NOT contains(chunksDone, :n)",
                ExpressionAttributeValues={":i": {str(index)}, ":n": str(index), ":now": _now()},
                ReturnValues="ALL_NEW",
            )
        except self.table.meta.client.exceptions.ConditionalCheckFailedException:
            record = self.get(job_id) or {}
            return False, len(record.get("chunksDone") or ())
        done = len(reply["Attributes"].get("chunksDone") or ())
        self.record_progress(job_id, "chunks", 0.05 + 0.85 * done / total)
        attributes = reply["Attributes"]
        if attributes.get("status") == "retrying" and (attributes.get("lastError") or {}).get("chunk") == index:
            self._back_to_processing(job_id, index)
        return True, done

    def _back_to_processing(self, job_id: str, index: int) -> None:
        """The chunk whose attempt failed last is done: the job runs again (``lastError`` stays).
        Conditional, so that a failure recorded meanwhile by another chunk is not hidden."""
        try:
            self.table.update_item(
                Key={"id": job_id},
                UpdateExpression="SET #s = :processing",
                ConditionExpression="#s = :retrying AND lastError.#c = :index",
                ExpressionAttributeNames={"#s": "status", "#c": "chunk"},
                ExpressionAttributeValues=_dynamo(
                    {":processing": "processing", ":retrying": "retrying", ":index": index}
                ),
            )
        except self.table.meta.client.exceptions.ConditionalCheckFailedException:
            pass  # it ended, or another chunk already said so

    def record_merge_queued(self, job_id: str) -> None:
        self._update(job_id, {"mergeQueuedAt": _now(), "updatedAt": _now()})

    def record_callback(self, job_id: str, delivery: dict) -> None:
        self._update(job_id, {"callback": delivery, "updatedAt": _now()})

    def record_event(self, job_id: str, event: dict) -> None:
        """The job's EventBridge event ({status, id} or {status, error}): what stops a rerun of the
        job's ending from publishing it again."""
        self._update(job_id, {"event": {**event, "at": _now()}, "updatedAt": _now()})

    def get(self, job_id: str) -> dict | None:
        item = self.table.get_item(Key={"id": job_id}, ConsistentRead=True).get("Item")
        return _plain(item) if item else None

    def list_for_client(self, client_id: str, limit: int, after: dict | None = None) -> tuple[list[dict], dict | None]:
        """A page of the client's jobs, newest first, and the key to continue after (None: last page)."""
        from boto3.dynamodb.conditions import Key

        kwargs: dict[str, Any] = {
            "IndexName": CLIENT_INDEX,
            "KeyConditionExpression": Key("clientId").eq(client_id),
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if after:
            kwargs["ExclusiveStartKey"] = after
        reply = self.table.query(**kwargs)
        return [_plain(item) for item in reply.get("Items", [])], reply.get("LastEvaluatedKey")

    def delete(self, job_id: str) -> None:
        self.table.delete_item(Key={"id": job_id})


class ResultStore:
    """The result document next to the audio: one PUT, so never half-written. Its own metadata
    says which job wrote it, for which audio (ETag, version), and whether it is final, so a
    redelivered job finds its written result without a second record that could lag behind."""

    def __init__(self, s3):
        self.s3 = s3

    def write(
        self, bucket: str, audio_key: str, document: dict, *, job_id: str, audio: dict | None, final: bool = True
    ) -> dict:
        """PUT the document; returns ``{"key", "etag"}`` of the result object."""
        check_output_keys(audio_key)
        key = result_key(audio_key)
        body = json.dumps(document, ensure_ascii=False).encode()
        reply = self.s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=body,
            ContentType="application/json",
            Metadata=_written_by(job_id, audio, final),
        )
        return {"key": key, "etag": str(reply.get("ETag", "")).strip('"')}

    def written(self, bucket: str, audio_key: str, *, job_id: str, audio: dict | None) -> tuple[dict, dict] | None:
        """``(document, {"key", "etag"})`` when this job already wrote its final result for this
        very audio, else None."""
        key = result_key(audio_key)
        try:
            reply = self.s3.get_object(Bucket=bucket, Key=key)
        except self.s3.exceptions.NoSuchKey:
            return None
        with reply["Body"] as body:
            if reply.get("Metadata", {}) != _written_by(job_id, audio, final=True):
                return None
            document = json.loads(body.read())
        return document, {"key": key, "etag": str(reply.get("ETag", "")).strip('"')}

    def write_extras(self, bucket: str, audio_key: str, unredacted: dict | None, redacted_audio: bytes | None) -> None:
        """The extra outputs a job asked for, next to the audio (written before the result, which
        clients wait for). Those not asked for are deleted: a copy left by an earlier job on the
        same key must not outlive the request that made it."""
        extras: dict[str, tuple[bytes, str] | None] = {
            UNREDACTED_SUFFIX: (json.dumps(unredacted, ensure_ascii=False).encode(), "application/json")
            if unredacted is not None
            else None,
            REDACTED_AUDIO_SUFFIX: (redacted_audio, "audio/wav") if redacted_audio is not None else None,
        }
        for suffix, extra in extras.items():
            key = output_key(audio_key, suffix)
            if extra is None:
                # One DeleteObject per key (no DeleteObjects): IAM grants the deletes per key suffix.
                self.s3.delete_object(Bucket=bucket, Key=key)
            else:
                self.s3.put_object(Bucket=bucket, Key=key, Body=extra[0], ContentType=extra[1])

    def write_sidecars(self, bucket: str, audio_key: str, document: dict, formats: tuple[str, ...]) -> list[str]:
        """``<key>.srt`` etc. next to the audio, one PUT each; returns their keys."""
        keys = []
        for fmt in formats:
            key = output_key(audio_key, f".{fmt}")
            body = RENDERERS[fmt](document).encode()
            self.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=MEDIA_TYPES[fmt])
            keys.append(key)
        return keys

    def write_part(self, bucket: str, job_id: str, index: int, body: bytes) -> None:
        """One chunk's result, under the bucket's hidden prefix (one PUT: whole or absent)."""
        self.s3.put_object(
            Bucket=bucket, Key=part_key(job_id, index), Body=body, ContentType="application/octet-stream"
        )

    def has_part(self, bucket: str, job_id: str, index: int) -> bool:
        try:
            self.s3.head_object(Bucket=bucket, Key=part_key(job_id, index))
        except self.s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def read_part(self, bucket: str, job_id: str, index: int) -> bytes:
        return self.s3.get_object(Bucket=bucket, Key=part_key(job_id, index))["Body"].read()

    def delete_parts(self, bucket: str, job_id: str, total: int) -> None:
        """A finished job's chunk results (its keys are known: no listing). One DeleteObject per
        key, as for the extras: IAM grants the deletes on the hidden prefix only."""
        for i in range(total):
            self.s3.delete_object(Bucket=bucket, Key=part_key(job_id, i))

    def read(self, bucket: str, audio_key: str) -> dict | None:
        """The result document next to ``audio_key``, or None."""
        try:
            body = self.s3.get_object(Bucket=bucket, Key=result_key(audio_key))["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None
        return json.loads(body)


def audio_identity(head: dict) -> dict:
    """Which audio a result is for: the object's ETag and version (None when unversioned)."""
    return {"etag": str(head.get("ETag", "")).strip('"'), "version": head.get("VersionId")}


def _written_by(job_id: str, audio: dict | None, final: bool) -> dict[str, str]:
    """The result object's user metadata (S3 lower-cases the names; empty values are left out)."""
    audio = audio or {}
    values = {"jobid": job_id, "audio-etag": audio.get("etag"), "audio-version": audio.get("version")}
    return {**{name: value for name, value in values.items() if value}, "final": "true" if final else "false"}
