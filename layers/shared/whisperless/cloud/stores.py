"""Data access: job records in DynamoDB, audio and results in S3."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ..contract.formats import MEDIA_TYPES, RENDERERS
from ..contract.naming import REDACTED_AUDIO_SUFFIX, UNREDACTED_SUFFIX, output_key, result_key, sidecar_key

#: The jobs table's index of a client's jobs by creation time (template.yaml JobsTable).
CLIENT_INDEX = "byClient"


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
    ) -> None:
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
        self.table.update_item(
            Key={"id": job_id},
            UpdateExpression="SET " + ", ".join(clauses),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=_dynamo(values),
        )

    def start(self, job_id: str, *, bucket: str, key: str, params: dict) -> None:
        now = _now()
        self._update(
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
    ) -> None:
        sets: dict[str, Any] = {"status": status, "updatedAt": _now(), "finishedAt": _now()}
        for name, value in (("timings", timings), ("error", error), ("duration", duration)):
            if value is not None:
                sets[name] = value
        self._update(job_id, sets)

    def record_retry(self, job_id: str, error: dict) -> None:
        """An attempt failed on our side and the job will be retried: say why."""
        self._update(job_id, {"status": "retrying", "lastError": {**error, "at": _now()}, "updatedAt": _now()})

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
    """The result document next to the audio: one PUT, so never half-written."""

    def __init__(self, s3):
        self.s3 = s3

    def write(self, bucket: str, audio_key: str, document: dict) -> str:
        key = result_key(audio_key)
        body = json.dumps(document, ensure_ascii=False).encode()
        self.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
        return key

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
        stale = []
        for suffix, extra in extras.items():
            key = output_key(audio_key, suffix)
            if extra is None:
                stale.append({"Key": key})
            else:
                self.s3.put_object(Bucket=bucket, Key=key, Body=extra[0], ContentType=extra[1])
        if stale:
            self.s3.delete_objects(Bucket=bucket, Delete={"Objects": stale, "Quiet": True})

    def write_sidecars(self, bucket: str, audio_key: str, document: dict, formats: tuple[str, ...]) -> list[str]:
        """``<key>.srt`` etc. next to the audio, one PUT each; returns their keys."""
        keys = []
        for fmt in formats:
            key = sidecar_key(audio_key, fmt)
            body = RENDERERS[fmt](document).encode()
            self.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=MEDIA_TYPES[fmt])
            keys.append(key)
        return keys

    def read(self, bucket: str, audio_key: str) -> dict | None:
        try:
            body = self.s3.get_object(Bucket=bucket, Key=result_key(audio_key))["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None
        return json.loads(body)
