"""The HTTP API's logic, free of API Gateway event formats.

Everything here works from plain inputs (a headers mapping, body bytes, a content
type), so the Lambda handler (``functions/api/app.py``) and the local stack drive
the same code. Errors the client caused are raised as :class:`ApiError` (status,
code, message, field); anything else is ours and propagates.

Answers to ``POST /v1/transcriptions``:

* 200 with the result document when the job completes within the wait budget;
* 422 with the failed document when it failed because of the input
  (``not_audio``, ``unsafe_url``, ...: the error's class says whose fault), 500 with it when it failed on our side;
* 202 ``{"id", "status", "statusUrl"}`` when the budget runs out, or at once when
  ``callbackURL`` is set (the callback brings the result).

``GET /v1/transcriptions/{id}`` is a status resource: always 200, with the result
document (completed or failed) once there is one; ``?format=srt|vtt|txt`` renders a completed
one (409 before). ``GET /v1/transcriptions`` lists the caller's jobs, newest first, a page at a
time; ``DELETE /v1/transcriptions/{id}`` removes a finished job's audio, result, renderings and
record.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import mimetypes
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote

from ..config import Settings, engine_settings
from ..contract.documents import input_was_bad
from ..contract.formats import MEDIA_TYPES, RENDERERS
from ..contract.languages import abilities_from_name, check_supported
from ..contract.metadata import VOICE_REFERENCES, upload_metadata
from ..contract.naming import JOB_ID_PATTERN, output_keys
from ..contract.options import TranscriptionOptions, is_unset
from ..contract.speakers import (
    CLIP_PREFIX,
    NAMES_FIELD,
    REFERENCES_FIELD,
    parse_voice_name,
    reference_key,
    reference_voices,
)
from ..errors import InvalidParameter
from . import apikeys, netguard
from .forms import (
    ApiError,
    UploadedFile,
    audio_name,
    contract_params,
    get_field,
    multipart_pairs,
    name_from_url,
    read_form,
)
from .stores import JobStore, ResultStore
from .voices import VoiceStore

log = logging.getLogger(__name__)

#: HTTP API payload limit; larger files go through a presigned upload.
MAX_BODY_BYTES = 10 * 1024 * 1024
UPLOAD_URL_SECONDS = 900
#: Time kept back from the Lambda's remaining time to store the answer and reply.
WAIT_MARGIN_SECONDS = 2.0
POLL_FIRST_SECONDS = 0.25
POLL_MAX_SECONDS = 2.0
#: S3 user metadata (names and values) must fit in 2 KB.
S3_METADATA_LIMIT = 2048

LIST_DEFAULT, LIST_MAX = 20, 100
#: A job in these states may still write its result: deleting it now would not delete that.
RUNNING = ("queued", "processing", "retrying")


@dataclass
class Reply:
    status: int
    body: dict | str  # a str is sent as it is, with the Content-Type in headers
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class JobRequest:
    """A validated transcription request: exactly one of ``url`` / ``file``."""

    params: dict[str, Any]  # contract fields as given, unset ones left out
    options: TranscriptionOptions
    url: str | None = None
    file: UploadedFile | None = None
    # OpenAI's known_speaker_names[] + known_speaker_references[]: (name, clip) per voice.
    references: tuple[tuple[str, bytes], ...] = ()


# --------------------------------------------------------------------------- auth


def bearer_key(headers: Mapping[str, str]) -> str:
    value = _lower_keys(headers).get("authorization", "")
    scheme, _, key = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(
            401,
            "unauthorized",
            "send the API key as 'Authorization: Bearer <key>'",
            field="Authorization",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return key.strip()


def _lower_keys(headers: Mapping[str, str] | None) -> dict[str, str]:
    return {str(k).lower(): v for k, v in (headers or {}).items()}


def payload_too_large() -> ApiError:
    """API Gateway's payload limit; the way around it is the presigned upload."""
    return ApiError(
        413,
        "payload_too_large",
        f"the request is over {MAX_BODY_BYTES} bytes: upload large files with POST /v1/uploads",
        field="file",
    )


# ------------------------------------------------------------------ metadata


def s3_metadata(job_id: str, params: Mapping[str, Any], client_id: str | None) -> dict[str, str]:
    """The object's user metadata; raises ApiError when it cannot fit in S3's 2 KB."""
    metadata = upload_metadata(job_id, dict(params), client_id)
    size = sum(len("x-amz-meta-" + name) + len(value) for name, value in metadata.items())
    if size > S3_METADATA_LIMIT:
        longest = max(params, key=lambda name: len(str(params[name])))
        raise ApiError(
            400,
            "invalid_parameter",
            f"{longest} is too long: a job's parameters must fit in {S3_METADATA_LIMIT} bytes",
            field=longest,
        )
    return metadata


# ------------------------------------------------------------------ results


def result_reply(document: dict) -> Reply:
    """200 completed; a failed job is 422 when its input was at fault (the error's class says), else 500."""
    if document.get("status") != "failed":
        return Reply(200, document)
    return Reply(422 if input_was_bad(document) else 500, document)


def status_url(job_id: str) -> str:
    return f"/v1/transcriptions/{job_id}"


def pending_reply(job_id: str, status: str, http_status: int = 202) -> Reply:
    return Reply(
        http_status, {"id": job_id, "status": status, "statusUrl": status_url(job_id)}, {"Location": status_url(job_id)}
    )


# ------------------------------------------------------------------ the API


class Api:
    """The API's operations. Clients are injected so the local stack can point
    them at its own endpoints; ``sleep``/``clock`` let tests wait without waiting."""

    def __init__(
        self,
        settings: Settings,
        *,
        s3,
        dynamodb,
        sqs,
        presign_s3=None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        whisper_model: str | None = None,
    ):
        self.settings = settings
        # What the deployed model can do, from its name (the model itself lives with the transcriber).
        self.model_abilities = abilities_from_name(whisper_model or engine_settings().whisper_model)
        self.s3 = s3
        self.sqs = sqs
        self.presign_s3 = presign_s3 or s3
        self.jobs = JobStore(dynamodb.Table(settings.jobs_table), ttl_days=settings.job_ttl_days)
        self.keys = dynamodb.Table(settings.api_keys_table)
        self.results = ResultStore(s3)
        self.voices = VoiceStore(dynamodb.Table(settings.voices_table)) if settings.voices_table else None
        self.sleep = sleep
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: Settings) -> Api:
        """Clients for a deployment (the Lambda function)."""
        import boto3
        from botocore.config import Config

        region = settings.region
        # Presigned URLs must be SigV4 against the bucket's regional endpoint (boto3's default is SigV2).
        presign_s3 = boto3.client(
            "s3",
            region_name=region,
            endpoint_url=f"https://s3.{region}.amazonaws.com",
            config=Config(signature_version="s3v4", s3={"addressing_style": "virtual"}),
        )
        return cls(
            settings,
            s3=boto3.client("s3"),
            dynamodb=boto3.resource("dynamodb"),
            sqs=boto3.client("sqs"),
            presign_s3=presign_s3,
        )

    # -- auth -----------------------------------------------------------------------------
    def authenticate(self, headers: Mapping[str, str]) -> str:
        """The client id behind the request's bearer key (401 missing/unknown, 403 disabled)."""
        key = bearer_key(headers)
        try:
            return apikeys.lookup(self.keys, key)
        except apikeys.KeyRejected as exc:
            extra = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if exc.status == 401 else None
            raise ApiError(exc.status, exc.code, str(exc), field="Authorization", headers=extra) from None

    # -- validation -----------------------------------------------------------------------
    def validate_params(self, fields: Mapping[str, Any]) -> tuple[dict[str, Any], TranscriptionOptions]:
        params = contract_params(fields)
        try:
            options = TranscriptionOptions.from_params(params, defaults=self.settings.defaults)
            check_supported(self.model_abilities, options.language, options.task)
            if "callbackURL" in params:
                self._check_url(params["callbackURL"], "callbackURL")
        except InvalidParameter as exc:
            raise ApiError.invalid(exc) from None
        return params, options

    def _check_url(self, url: Any, field_name: str) -> None:
        if not isinstance(url, str):
            raise InvalidParameter(f"{field_name} must be a string", field=field_name)
        netguard.check_url(url, field=field_name, allow_loopback=self.settings.allow_local_callbacks)

    def job_request(self, fields: Mapping[str, Any], upload: UploadedFile | None) -> JobRequest:
        url = get_field(fields, "url")
        url = None if is_unset(url) else url
        if url is not None and upload is not None:
            raise ApiError(400, "invalid_parameter", "send either file or url, not both", field="url")
        if url is None and upload is None:
            raise ApiError(400, "invalid_parameter", "file or url is required", field="file")
        if upload is not None:
            if not upload.data:
                raise ApiError(400, "invalid_parameter", "the file is empty", field="file")
            if len(upload.data) > self.settings.max_audio_bytes:
                raise ApiError(
                    413,
                    "audio_too_large",
                    f"the file is {len(upload.data)} bytes; the limit is {self.settings.max_audio_bytes}",
                    field="file",
                )
        params, options = self.validate_params(fields)
        if url is not None:
            try:
                self._check_url(url, "url")
            except InvalidParameter as exc:
                raise ApiError.invalid(exc) from None
        return JobRequest(params=params, options=options, url=url, file=upload)

    # -- POST /v1/transcriptions ----------------------------------------------------------
    def create_transcription(
        self, client_id: str, body: bytes, content_type: str | None, *, time_left: float | None = None
    ) -> Reply:
        """Validate, store (file) or queue (url), then wait for the result a while.
        ``time_left``: seconds the caller may still run (the Lambda context's)."""
        if len(body) > MAX_BODY_BYTES:
            raise payload_too_large()
        request = self.with_references(self.job_request(*read_form(body, content_type)), body, content_type)
        if not request.references:
            self.check_known_speakers(client_id, request.options)
        job_id, bucket, key = self.start_job(client_id, request)
        if "callbackURL" in request.params:
            return pending_reply(job_id, "queued")
        document = self.wait_for_result(bucket, key, self.wait_budget(time_left))
        if document is not None:
            return result_reply(document)
        job = self.jobs.get(job_id) or {}
        return pending_reply(job_id, job.get("status", "queued"))

    def start_job(self, client_id: str, request: JobRequest) -> tuple[str, str, str]:
        """Record and start the job (store the file: its upload starts the job; or queue the URL);
        returns (job id, bucket, audio key)."""
        job_id = uuid.uuid4().hex
        bucket = self.settings.bucket
        if request.file is not None:
            name = audio_name(request.file.filename, request.params.get("fileType"), request.file.content_type)
        else:
            name = audio_name(name_from_url(request.url or ""), request.params.get("fileType"))
        key = f"uploads/{job_id}/{name}"
        metadata = s3_metadata(job_id, request.params, client_id)  # the last check: nothing stored yet
        if request.references:
            # The clips go first (the upload starts the job); the transcriber enrols them for this
            # job only, then deletes them (the bucket's lifecycle drops strays after a day).
            metadata[VOICE_REFERENCES] = str(len(request.references))
            for i, (_, clip) in enumerate(request.references):
                self.s3.put_object(Bucket=bucket, Key=reference_key(job_id, i), Body=clip)

        self.jobs.create(job_id, bucket=bucket, key=key, params=request.params, client_id=client_id)
        if request.file is not None:
            # The upload itself starts the job (bucket -> EventBridge -> queue): no message here.
            self.s3.put_object(
                Bucket=bucket,
                Key=key,
                Body=request.file.data,
                Metadata=metadata,
                ContentType=mimetypes.guess_type(name)[0] or "application/octet-stream",
            )
        else:
            message = {"jobId": job_id, "bucket": bucket, "key": key, "url": request.url, "params": request.params}
            self.sqs.send_message(QueueUrl=self.settings.queue_url, MessageBody=json.dumps(message))
        log.info("job %s queued for client %s (%s)", job_id, client_id, "file" if request.file else "url")
        return job_id, bucket, key

    def with_references(self, request: JobRequest, body: bytes, content_type: str | None) -> JobRequest:
        """OpenAI's per-request voices (multipart ``known_speaker_names[]`` with
        ``known_speaker_references[]``): the names become ``knownSpeakers``, the clips go with the job."""
        if not (content_type or "").lower().startswith("multipart/form-data"):
            return request
        pairs, _ = multipart_pairs(body, content_type or "")
        # With or without brackets, or indexes (the SDKs send `[]`; a hand-written form may not).
        names = [value for name, value in pairs if name.lower().split("[", 1)[0] + "[]" == NAMES_FIELD]
        clips = [value for name, value in pairs if name.lower().split("[", 1)[0] + "[]" == REFERENCES_FIELD]
        if not names and not clips:
            return request
        if "knownSpeakers" in request.params:
            raise ApiError(
                400, "invalid_parameter", f"send knownSpeakers or {NAMES_FIELD}, not both", field="knownSpeakers"
            )
        if request.file is None:
            raise ApiError(400, "invalid_parameter", f"{REFERENCES_FIELD} needs the file itself", field="file")
        try:
            references = reference_voices(names, clips)
            params = {**request.params, "knownSpeakers": ",".join(name for name, _ in references)}
            options = TranscriptionOptions.from_params(params, defaults=self.settings.defaults)
        except InvalidParameter as exc:
            raise ApiError.invalid(exc) from None
        return replace(request, params=params, options=options, references=tuple(references))

    def wait_budget(self, time_left: float | None) -> float:
        budget = self.settings.result_wait_seconds
        if time_left is not None:
            budget = min(budget, time_left - WAIT_MARGIN_SECONDS)
        return max(0.0, budget)

    def wait_for_result(self, bucket: str, key: str, budget: float) -> dict | None:
        """Poll for the result document with a growing pause, for at most ``budget`` seconds."""
        deadline = self.clock() + budget
        pause = POLL_FIRST_SECONDS
        while (remaining := deadline - self.clock()) > 0:
            self.sleep(min(pause, remaining))
            document = self.results.read(bucket, key)
            if document is not None:
                return document
            pause = min(pause * 1.5, POLL_MAX_SECONDS)
        return None

    # -- GET /v1/transcriptions/{id} ------------------------------------------------------
    def _own_job(self, client_id: str, job_id: str) -> dict:
        job = self.jobs.get(job_id) if JOB_ID_PATTERN.fullmatch(job_id or "") else None
        # Another client's job answers exactly like a missing one: existence is not revealed.
        if not job or job.get("clientId") != client_id:
            raise ApiError(404, "not_found", f"no transcription {job_id!r}", field="id")
        return job

    def get_transcription(self, client_id: str, job_id: str, fmt: str | None = None) -> Reply:
        fmt = (fmt or "json").strip().lower()
        if fmt not in RENDERERS:
            raise ApiError(400, "invalid_parameter", f"format must be one of {', '.join(RENDERERS)}", field="format")
        job = self._own_job(client_id, job_id)
        document = self.results.read(job["bucket"], job["key"])
        if fmt == "json":
            if document is not None:
                return Reply(200, document)
            status = job.get("status", "queued")
            reply = pending_reply(job_id, status, http_status=200)
            body: dict = {"id": job_id, "status": status, "statusUrl": status_url(job_id)}
            # Where it is (0-1, and its stage; a long job's chunks done of all), while it runs.
            body.update(progress=job.get("progress", 0), stage=job.get("stage", status))
            if job.get("chunks"):
                body["chunks"] = {"done": len(job.get("chunksDone") or ()), "total": job["chunks"]}
            # Why a job is being retried (a url whose server is down, S3 failing), while it is.
            if status == "retrying" and job.get("lastError"):
                body["lastError"] = job["lastError"]
            return Reply(reply.status, body, reply.headers)
        if document is None or document.get("status") != "completed":
            status = (document or job).get("status", "queued")
            raise ApiError(
                409,
                "not_completed",
                f"transcription {job_id} is {status}: {fmt} exists once it completes",
                field="format",
            )
        name = job["key"].rsplit("/", 1)[-1]
        headers = {"Content-Type": MEDIA_TYPES[fmt], "Content-Disposition": f'attachment; filename="{name}.{fmt}"'}
        return Reply(200, RENDERERS[fmt](document), headers)

    # -- GET /v1/transcriptions -----------------------------------------------------------
    def list_transcriptions(self, client_id: str, query: Mapping[str, str] | None) -> Reply:
        """A page of the caller's jobs, newest first: ``?limit=`` (1-100) and ``?after=`` (the
        previous page's ``next``)."""
        query = query or {}
        try:
            limit = int(query.get("limit") or LIST_DEFAULT)
        except ValueError:
            limit = 0
        if not 1 <= limit <= LIST_MAX:
            raise ApiError(400, "invalid_parameter", f"limit must be a whole number 1-{LIST_MAX}", field="limit")
        cursor = query.get("after")
        after = _decode_cursor(cursor, client_id) if cursor else None
        items, last = self.jobs.list_for_client(client_id, limit, after)
        body = {
            "transcriptions": [
                {
                    "id": item["id"],
                    "status": item.get("status"),
                    "createdAt": item.get("createdAt"),
                    "finishedAt": item.get("finishedAt"),
                    "filename": str(item.get("key", "")).rsplit("/", 1)[-1],
                    "duration": item.get("duration"),
                    "statusUrl": status_url(item["id"]),
                }
                for item in items
            ],
            "next": _encode_cursor(last) if last else None,
        }
        return Reply(200, body)

    # -- DELETE /v1/transcriptions/{id} ---------------------------------------------------
    def delete_transcription(self, client_id: str, job_id: str) -> Reply:
        """The job's audio, result, renderings and record: data retention is the user's call."""
        job = self._own_job(client_id, job_id)
        if job.get("status") in RUNNING:
            raise ApiError(
                409,
                "job_running",
                f"transcription {job_id} is {job['status']}: delete it once it has finished",
                field="id",
            )
        # One DeleteObject per key (a failure raises, and nothing is forgotten while any of its data
        # is left): AWS authorises a DeleteObjects batch per key too, but moto (the deploy tests'
        # IAM) judges a batch on the bucket.
        for key in [job["key"], *output_keys(job["key"])]:
            self.s3.delete_object(Bucket=job["bucket"], Key=key)
        self.jobs.delete(job_id)
        log.info("job %s deleted by client %s", job_id, client_id)
        return Reply(200, {"id": job_id, "deleted": True})

    # -- POST /v1/uploads -----------------------------------------------------------------
    def create_upload(self, client_id: str, fields: Mapping[str, Any]) -> Reply:
        """A presigned S3 PUT for one file; its parameters are signed in as metadata,
        so the upload starts the job exactly as a file sent to the API would."""
        filename = get_field(fields, "filename")
        if not isinstance(filename, str) or not filename.strip():
            raise ApiError(400, "invalid_parameter", "filename is required", field="filename")
        params, options = self.validate_params(fields)
        self.check_known_speakers(client_id, options)
        job_id = uuid.uuid4().hex
        key = f"uploads/{job_id}/{audio_name(filename, params.get('fileType'))}"
        metadata = s3_metadata(job_id, params, client_id)

        self.jobs.create(
            job_id, bucket=self.settings.bucket, key=key, params=params, client_id=client_id, status="awaiting_upload"
        )
        url = self.presign_s3.generate_presigned_url(
            "put_object",
            Params={"Bucket": self.settings.bucket, "Key": key, "Metadata": metadata},
            ExpiresIn=UPLOAD_URL_SECONDS,
        )
        body = {
            "id": job_id,
            "uploadUrl": url,
            "method": "PUT",
            "headers": {f"x-amz-meta-{name}": value for name, value in metadata.items()},
            "expiresIn": UPLOAD_URL_SECONDS,
            "statusUrl": status_url(job_id),
        }
        return Reply(201, body, {"Location": status_url(job_id)})

    # -- /v1/speakers: the client's enrolled voices (cloud.voices) -------------------------
    def _voices(self) -> VoiceStore:
        if self.voices is None:
            raise ApiError(501, "not_configured", "this deployment keeps no voices (VOICES_TABLE)")
        return self.voices

    def check_known_speakers(self, client_id: str, options: TranscriptionOptions) -> None:
        """Names in ``knownSpeakers`` that the client has not enrolled are refused before any
        work (400 naming the field); the transcriber checks again when the job runs."""
        if not options.known_speakers:
            return
        try:
            self._voices().chosen(client_id, options.known_speakers)
        except InvalidParameter as exc:
            raise ApiError.invalid(exc) from None

    # -- POST /v1/speakers ----------------------------------------------------------------
    def enrol_speaker(
        self, client_id: str, body: bytes, content_type: str | None, *, time_left: float | None = None
    ) -> Reply:
        """Multipart ``name`` + ``file`` (2-60 s of that person's speech) -> 201 ``{name,
        seconds}``. The clip goes to the bucket's ``.voices/`` and a task to the queue; the
        transcriber makes it a voice and deletes it; this waits for that like a transcription."""
        if len(body) > MAX_BODY_BYTES:
            raise payload_too_large()
        self._voices()
        fields, upload = read_form(body, content_type)
        try:
            name = parse_voice_name(get_field(fields, "name"), "name")
        except InvalidParameter as exc:
            raise ApiError.invalid(exc) from None
        if upload is None or not upload.data:
            raise ApiError(400, "invalid_parameter", "file is required: 2-60 s of the person's speech", field="file")
        clip_id = uuid.uuid4().hex
        key = f"{CLIP_PREFIX}{clip_id}"
        bucket = self.settings.bucket
        self.s3.put_object(Bucket=bucket, Key=key, Body=upload.data, ContentType="application/octet-stream")
        task = {"voice": {"bucket": bucket, "key": key, "owner": client_id, "name": name}}
        self.sqs.send_message(QueueUrl=self.settings.queue_url, MessageBody=json.dumps(task))
        document = self.wait_for_result(bucket, key, self.wait_budget(time_left))
        if document is None:
            return Reply(202, {"name": name, "status": "queued"})
        self.s3.delete_object(Bucket=bucket, Key=f"{key}.json")
        if document.get("status") != "completed":
            error = document.get("error") or {}
            status = 422 if input_was_bad(document) else 500
            raise ApiError(
                status, error.get("code", "internal_error"), error.get("message", ""), field=error.get("field")
            )
        log.info("client %s enrolled the voice %r", client_id, name)
        return Reply(201, {"name": name, "seconds": document.get("seconds")})

    # -- GET /v1/speakers -----------------------------------------------------------------
    def list_speakers(self, client_id: str) -> Reply:
        return Reply(200, {"speakers": self._voices().listing(client_id)})

    # -- DELETE /v1/speakers/{name} -------------------------------------------------------
    def delete_speaker(self, client_id: str, name: str) -> Reply:
        name = unquote(name or "")
        # Another client's voice answers exactly like a missing one.
        if not self._voices().delete(client_id, name):
            raise ApiError(404, "not_found", f"no enrolled voice {name!r}", field="name")
        log.info("client %s forgot the voice %r", client_id, name)
        return Reply(200, {"name": name, "deleted": True})


def _encode_cursor(key: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, sort_keys=True).encode()).decode().rstrip("=")


def _decode_cursor(text: str, client_id: str) -> dict:
    """The page key a ``next`` cursor carries; it must be the caller's own (never another's index)."""
    try:
        key = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError):
        key = None
    if not isinstance(key, dict) or set(key) != {"id", "clientId", "createdAt"} or key["clientId"] != client_id:
        raise ApiError(400, "invalid_parameter", "after is not a cursor this API gave you", field="after")
    if not all(isinstance(v, str) for v in key.values()):
        raise ApiError(400, "invalid_parameter", "after is not a cursor this API gave you", field="after")
    return key
