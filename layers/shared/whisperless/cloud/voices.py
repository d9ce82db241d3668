"""Enrolled voices: the table that keeps them, and the transcriber's enrolment and forgetting.

A voice is stored as its embedding only (192 float32, 768 bytes) under (owner, name): the API
client that enrolled it, or ``bucket:<name>`` for an object under ``speakers/``
(contract.speakers). The enrolment clip is never kept: the API's clip is deleted once it is a
voice, and a bucket's ``speakers/`` object is the user's own (deleting it forgets the voice).

    enrol: the clip -> engine.enrol (at least 2 s of speech) -> the table -> an outcome document at
           <clip key>.json (the API waits for it, like POST /v1/transcriptions waits for a result;
           a bucket user finds it next to the object) -> the API's clip deleted
    forget: the item deleted (a speakers/ object was deleted)

Both are safe to repeat (the same put, the same delete), so duplicates need no idempotency record.
This module imports nothing heavy at import time: the API function uses :class:`VoiceStore`.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..contract.documents import failed_document
from ..contract.naming import job_id_for
from ..contract.speakers import ALL, CLIP_PREFIX, MAX_KNOWN_SPEAKERS
from ..errors import InvalidParameter, WhisperlessError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VoiceTask:
    """Enrol a voice from a clip in the bucket, or forget one. From the API (a queue message:
    ``{"voice": {...}}``) or from the bucket (``speakers/`` objects created and deleted)."""

    action: str  # "enrol" | "forget"
    bucket: str
    owner: str
    name: str
    key: str | None = None  # enrol: the clip


class VoiceStore:
    def __init__(self, table):
        self.table = table

    def put(self, owner: str, name: str, embedding: bytes, seconds: float) -> None:
        self.table.put_item(
            Item={
                "owner": owner,
                "name": name,
                "embedding": embedding,
                "seconds": str(seconds),  # a string: DynamoDB's numbers refuse Python floats
                "createdAt": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )

    def all(self, owner: str) -> dict[str, dict]:
        """The owner's voices by name (one query, paged)."""
        from boto3.dynamodb.conditions import Key

        items: dict[str, dict] = {}
        kwargs: dict[str, Any] = {"KeyConditionExpression": Key("owner").eq(owner)}
        while True:
            page = self.table.query(**kwargs)
            for item in page.get("Items", []):
                items[item["name"]] = item
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def listing(self, owner: str) -> list[dict]:
        return [
            {"name": name, "seconds": float(item.get("seconds", 0)), "createdAt": item.get("createdAt")}
            for name, item in sorted(self.all(owner).items())
        ]

    def delete(self, owner: str, name: str) -> bool:
        """Whether there was such a voice."""
        reply = self.table.delete_item(Key={"owner": owner, "name": name}, ReturnValues="ALL_OLD")
        return bool(reply.get("Attributes"))

    def chosen(self, owner: str, known: tuple[str, ...], field: str = "knownSpeakers") -> dict[str, bytes]:
        """The embeddings ``knownSpeakers`` asks for (``*``: all the owner's); an unknown name, or
        more than MAX_KNOWN_SPEAKERS voices, is the caller's fault (InvalidParameter naming ``field``)."""
        voices = self.all(owner)
        if known == (ALL,):
            names = sorted(voices)
        else:
            names = list(known)
            missing = [name for name in names if name not in voices]
            if missing:
                raise InvalidParameter(f"{field}: no enrolled voice named {', '.join(map(repr, missing))}", field=field)
        if len(names) > MAX_KNOWN_SPEAKERS:
            raise InvalidParameter(
                f"{field}: {len(names)} voices; one request may use at most {MAX_KNOWN_SPEAKERS}", field=field
            )
        return {name: _bytes(voices[name]["embedding"]) for name in names}


def _bytes(value: Any) -> bytes:
    return bytes(value.value) if hasattr(value, "value") else bytes(value)  # boto3's Binary


def embeddings(voices: dict[str, bytes]) -> dict[str, Any]:
    """Stored bytes -> numpy vectors for the engine."""
    import numpy as np

    return {name: np.frombuffer(raw, dtype=np.float32) for name, raw in voices.items()}


class VoiceRunner:
    """The transcriber's side: runs a :class:`VoiceTask`."""

    def __init__(self, *, s3, store: VoiceStore, results, engine):
        self.s3 = s3
        self.store = store
        self.results = results
        self._engine = engine  # a callable returning the Engine (loaded on first use)

    def handle(self, task: VoiceTask) -> dict:
        if task.action == "forget":
            existed = self.store.delete(task.owner, task.name)
            log.info("voice %r of %s forgotten (%s)", task.name, task.owner, "existed" if existed else "was not there")
            return {"status": "forgotten", "name": task.name}
        assert task.key is not None
        # The API's clip is named by a uuid; a speakers/ object by its key, hashed (names may be
        # non-ASCII, and the outcome's id goes into S3 metadata).
        outcome_id = (
            task.key[len(CLIP_PREFIX) :]
            if task.key.startswith(CLIP_PREFIX)
            else job_id_for(task.bucket, task.key, None, None)
        )
        source = {"bucket": task.bucket, "key": task.key}
        with tempfile.TemporaryDirectory(prefix="whisperless-voice-") as tmp:
            local = Path(tmp) / "clip"
            try:
                self.s3.download_file(task.bucket, task.key, str(local))
            except self.s3.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    log.info("enrolment clip %s is gone (done already, or deleted): nothing to do", task.key)
                    return {"status": "skipped", "reason": "the clip no longer exists", "key": task.key}
                raise
            try:
                voice = self._engine().enrol(local)
            except WhisperlessError as exc:
                if not type(exc).caller_fault:
                    raise  # ours (a model missing): the message comes back
                log.info("enrolment of %r for %s refused: %s", task.name, task.owner, exc.message)
                document = failed_document(outcome_id, exc, source)
            else:
                import numpy as np

                self.store.put(
                    task.owner, task.name, np.asarray(voice.embedding, "<f4").tobytes(), voice.speech_seconds
                )
                document = {"id": outcome_id, "status": "completed", "name": task.name, "seconds": voice.speech_seconds}
                log.info("voice %r enrolled for %s (%.1f s of speech)", task.name, task.owner, voice.speech_seconds)
        self.results.write(task.bucket, task.key, document, job_id=outcome_id, audio=None)
        if task.key.startswith(CLIP_PREFIX):  # the API's clip: not kept once it is a voice
            self.s3.delete_object(Bucket=task.bucket, Key=task.key)
        return {"status": document["status"], "name": task.name}
