"""The HTTP API's logic, free of API Gateway event formats.

Everything here works from plain inputs (a headers mapping, body bytes, a content
type), so the Lambda handler (``functions/api/app.py``) and the local stack drive
the same code. Errors the client caused are raised as :class:`ApiError` (status,
code, message, field); anything else is ours and propagates.

Answers to ``POST /v1/transcriptions``:

* 200 with the result document when the job completes within the wait budget;
* 422 with the failed document when it failed because of the input
  (``invalid_audio``, ``unsafe_url``, ...), 500 with it when it failed on our side;
* 202 ``{"id", "status", "statusUrl"}`` when the budget runs out, or at once when
  ``callbackURL`` is set (the callback brings the result).

``GET /v1/transcriptions/{id}`` is a status resource: always 200, with the result
document (completed or failed) once there is one.
"""

from __future__ import annotations

import json
import logging
import math
import mimetypes
import os
import re
import time
import unicodedata
import uuid
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any, Callable, Mapping
from urllib.parse import parse_qs, unquote, urlsplit

from . import apikeys, netguard
from .errors import InvalidParameter
from .events import AUDIO_EXTENSIONS
from .jobs import JobStore, ResultStore
from .options import TranscriptionOptions, is_unset
from .settings import Settings
from .metadata import upload_metadata

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
MAX_NAME_CHARS = 100

#: Request parameters of the contract, as spelled there (clients may use any case).
CONTRACT_FIELDS = ("fileType", "diarization", "numSpeakers", "minSpeakers", "maxSpeakers", "callbackURL",
                   "initialPrompt", "language", "task")
_CANONICAL = {name.lower(): name for name in CONTRACT_FIELDS + ("url", "file", "filename")}

#: Failed-job codes that mean "the input was bad" (422); any other failure is ours (500).
INPUT_FAILURES = frozenset({"invalid_audio", "invalid_parameter", "unsafe_url", "download_failed",
                            "response_too_large", "audio_too_large"})

_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_UNSAFE_NAME_CHARS = re.compile(r"[^\w.-]+")


class ApiError(Exception):
    """A request we refuse; ``body()`` is the JSON error document."""

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None,
                 headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = dict(headers or {})

    @classmethod
    def invalid(cls, exc: InvalidParameter) -> "ApiError":
        return cls(400, exc.code, exc.message, field=exc.field)

    def body(self) -> dict:
        return error_body(self.code, self.message, self.field)


def error_body(code: str, message: str, field: str | None = None) -> dict:
    error = {"code": code, "message": message}
    if field:
        error["field"] = field
    return {"error": error}


@dataclass
class Reply:
    status: int
    body: dict
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class UploadedFile:
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass(frozen=True)
class JobRequest:
    """A validated transcription request: exactly one of ``url`` / ``file``."""

    params: dict[str, Any]  # contract fields as given, unset ones left out
    options: TranscriptionOptions
    url: str | None = None
    file: UploadedFile | None = None


# --------------------------------------------------------------------------- auth


def bearer_key(headers: Mapping[str, str]) -> str:
    value = _lower_keys(headers).get("authorization", "")
    scheme, _, key = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(401, "unauthorized", "send the API key as 'Authorization: Bearer <key>'",
                       field="Authorization", headers={"WWW-Authenticate": "Bearer"})
    return key.strip()


def _lower_keys(headers: Mapping[str, str] | None) -> dict[str, str]:
    return {str(k).lower(): v for k, v in (headers or {}).items()}


# ------------------------------------------------------------------ request bodies


def read_form(body: bytes, content_type: str | None) -> tuple[dict[str, Any], UploadedFile | None]:
    """Fields and the uploaded file of a request body: multipart, JSON or URL-encoded."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == "multipart/form-data":
        return parse_multipart(body, content_type or "")
    if media == "application/json" or (not media and not body):
        fields = parse_json(body)
        if not is_unset(_field(fields, "file")):
            raise ApiError(400, "invalid_parameter",
                           "a JSON body cannot carry the file: send multipart/form-data, or use POST /v1/uploads",
                           field="file")
        return fields, None
    if media == "application/x-www-form-urlencoded":
        return _parse_urlencoded(body), None
    raise ApiError(415, "unsupported_media_type",
                   f"unsupported content type {media or '(none)'!r}: send multipart/form-data or application/json",
                   field="Content-Type")


def parse_json(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}", field="body") from None
    except RecursionError:  # "[[[[..." deeper than the parser goes: not a request anyone means
        raise ApiError(400, "invalid_json", "the JSON body is nested too deeply", field="body") from None
    if not isinstance(value, dict):
        raise ApiError(400, "invalid_json", "the JSON body must be an object", field="body")
    return value


def _parse_urlencoded(body: bytes) -> dict[str, str]:
    try:
        pairs = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_body", "the form body is not UTF-8", field="body") from None
    return {name: values[-1] for name, values in pairs.items()}


def parse_multipart(body: bytes, content_type: str) -> tuple[dict[str, str], UploadedFile | None]:
    """Parse multipart/form-data with the standard library's MIME parser."""
    if "\r" in content_type or "\n" in content_type or "boundary=" not in content_type.lower():
        raise ApiError(400, "invalid_body", "multipart/form-data needs a boundary", field="Content-Type")
    try:
        head = f"Content-Type: {content_type}\r\n\r\n".encode("ascii")
    except UnicodeEncodeError:
        raise ApiError(400, "invalid_body", "the Content-Type header is not ASCII", field="Content-Type") from None
    try:
        message = BytesParser(policy=HTTP).parsebytes(head + body)
    except RecursionError:  # parts nested inside parts, thousands deep: no form looks like that
        raise ApiError(400, "invalid_body", "the multipart/form-data body is nested too deeply", field="body") from None
    if not message.is_multipart() or message.defects:
        raise ApiError(400, "invalid_body", "the multipart/form-data body is malformed", field="body")
    fields: dict[str, str] = {}
    upload: UploadedFile | None = None
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        data = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if _CANONICAL.get(name.lower()) == "file":
            if upload is not None:
                raise ApiError(400, "invalid_parameter", "send exactly one file", field="file")
            # An empty file input in a browser form arrives as filename="" and no data: unset.
            if data or filename:
                upload = UploadedFile(filename, part.get_content_type() if part.get("content-type") else None, data)
            continue
        try:
            fields[name] = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "invalid_parameter", f"{name} is not UTF-8 text", field=name) from None
    return fields, upload


def contract_params(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The contract's fields among ``fields`` (any case), canonically named; unset ones dropped."""
    params: dict[str, Any] = {}
    for name, value in fields.items():
        canonical = _CANONICAL.get(str(name).lower())
        if canonical not in CONTRACT_FIELDS or is_unset(value):
            continue
        if not isinstance(value, (str, bool, int, float)):
            raise ApiError(400, "invalid_parameter", f"{canonical} must be a string, number or boolean",
                           field=canonical)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not _storable(value):
            # NaN, Infinity (Python's JSON reads them) and numbers beyond DynamoDB's range would
            # fail only when the job is stored: refuse them here, naming the field.
            raise ApiError(400, "invalid_parameter", f"{canonical} is not a usable number: {value!r:.40}",
                           field=canonical)
        params[canonical] = value
    return params


def _storable(number: int | float) -> bool:
    """Finite and within what a DynamoDB number holds (38 significant digits, |x| < 1e126)."""
    if isinstance(number, float):
        return math.isfinite(number) and (number == 0 or 1e-128 < abs(number) < 1e125)
    return abs(number) < 10**38


def _field(fields: Mapping[str, Any], name: str) -> Any:
    for key, value in fields.items():
        if str(key).lower() == name.lower():
            return value
    return None


# ------------------------------------------------------------------ object names


def safe_filename(name: str | None) -> str:
    """A harmless last path component: letters, digits, '.', '-', '_' only."""
    base = re.split(r"[\\/]", unicodedata.normalize("NFC", name or ""))[-1]
    return _UNSAFE_NAME_CHARS.sub("_", base).strip("._")[:MAX_NAME_CHARS]


def _audio_extension(hint: str | None) -> str | None:
    """'.mp3' for 'mp3', '.mp3', 'audio/mpeg'; None when it names no audio type."""
    text = (hint or "").strip().lower()
    if not text:
        return None
    extension = mimetypes.guess_extension(text.split(";")[0].strip()) if "/" in text else "." + text.lstrip(".")
    return extension if extension in AUDIO_EXTENSIONS else None


def audio_name(filename: str | None, file_type: Any = None, content_type: str | None = None) -> str:
    """The object's file name. It always ends in an audio extension, since the
    transcriber skips keys without one (and never a result's ``.json``)."""
    name = safe_filename(filename) or "audio"
    dot = name.rfind(".")
    if dot > 0 and name[dot:].lower() in AUDIO_EXTENSIONS:
        return name
    extension = _audio_extension(str(file_type) if file_type else None) or _audio_extension(content_type)
    return name + (extension or ".audio")


def _name_from_url(url: str) -> str:
    path = unquote(urlsplit(url).path)
    return path.rsplit("/", 1)[-1] or "audio"


# ------------------------------------------------------------------ metadata


def s3_metadata(job_id: str, params: Mapping[str, Any], client_id: str | None) -> dict[str, str]:
    """The object's user metadata; raises ApiError when it cannot fit in S3's 2 KB."""
    metadata = upload_metadata(job_id, dict(params), client_id)
    size = sum(len("x-amz-meta-" + name) + len(value) for name, value in metadata.items())
    if size > S3_METADATA_LIMIT:
        longest = max(params, key=lambda name: len(str(params[name])))
        raise ApiError(400, "invalid_parameter",
                       f"{longest} is too long: a job's parameters must fit in {S3_METADATA_LIMIT} bytes",
                       field=longest)
    return metadata


# ------------------------------------------------------------------ results


def result_reply(document: dict) -> Reply:
    if document.get("status") != "failed":
        return Reply(200, document)
    code = (document.get("error") or {}).get("code")
    return Reply(422 if code in INPUT_FAILURES else 500, document)


def status_url(job_id: str) -> str:
    return f"/v1/transcriptions/{job_id}"


def pending_reply(job_id: str, status: str, http_status: int = 202) -> Reply:
    return Reply(http_status, {"id": job_id, "status": status, "statusUrl": status_url(job_id)},
                 {"Location": status_url(job_id)})


# ------------------------------------------------------------------ the API


class Api:
    """The API's operations. Clients are injected so the local stack can point
    them at its own endpoints; ``sleep``/``clock`` let tests wait without waiting."""

    def __init__(self, settings: Settings, *, s3, dynamodb, sqs, presign_s3=None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.s3 = s3
        self.sqs = sqs
        self.presign_s3 = presign_s3 or s3
        self.jobs = JobStore(dynamodb.Table(settings.jobs_table), ttl_days=settings.job_ttl_days)
        self.keys = dynamodb.Table(settings.api_keys_table)
        self.results = ResultStore(s3)
        self.sleep = sleep
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: Settings) -> "Api":
        """Clients for a deployment (the Lambda function)."""
        import boto3
        from botocore.config import Config

        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        # Presigned URLs must be SigV4 against the bucket's regional endpoint (boto3's default is SigV2).
        presign_s3 = boto3.client("s3", region_name=region, endpoint_url=f"https://s3.{region}.amazonaws.com",
                                  config=Config(signature_version="s3v4", s3={"addressing_style": "virtual"}))
        return cls(settings, s3=boto3.client("s3"), dynamodb=boto3.resource("dynamodb"), sqs=boto3.client("sqs"),
                   presign_s3=presign_s3)

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
        url = _field(fields, "url")
        url = None if is_unset(url) else url
        if url is not None and upload is not None:
            raise ApiError(400, "invalid_parameter", "send either file or url, not both", field="url")
        if url is None and upload is None:
            raise ApiError(400, "invalid_parameter", "file or url is required", field="file")
        if upload is not None:
            if not upload.data:
                raise ApiError(400, "invalid_parameter", "the file is empty", field="file")
            if len(upload.data) > self.settings.max_audio_bytes:
                raise ApiError(413, "audio_too_large",
                               f"the file is {len(upload.data)} bytes; the limit is {self.settings.max_audio_bytes}",
                               field="file")
        params, options = self.validate_params(fields)
        if url is not None:
            try:
                self._check_url(url, "url")
            except InvalidParameter as exc:
                raise ApiError.invalid(exc) from None
        return JobRequest(params=params, options=options, url=url, file=upload)

    # -- POST /v1/transcriptions ----------------------------------------------------------
    def create_transcription(self, client_id: str, body: bytes, content_type: str | None, *,
                             time_left: float | None = None) -> Reply:
        """Validate, store (file) or queue (url), then wait for the result a while.
        ``time_left``: seconds the caller may still run (the Lambda context's)."""
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(413, "payload_too_large",
                           f"the request is over {MAX_BODY_BYTES} bytes: upload large files with POST /v1/uploads",
                           field="file")
        request = self.job_request(*read_form(body, content_type))
        job_id = uuid.uuid4().hex
        bucket = self.settings.bucket
        if request.file is not None:
            name = audio_name(request.file.filename, request.params.get("fileType"), request.file.content_type)
        else:
            name = audio_name(_name_from_url(request.url), request.params.get("fileType"))
        key = f"uploads/{job_id}/{name}"
        metadata = s3_metadata(job_id, request.params, client_id)  # the last check: nothing stored yet

        self.jobs.create(job_id, bucket=bucket, key=key, params=request.params, client_id=client_id)
        if request.file is not None:
            # The upload itself starts the job (bucket -> EventBridge -> queue): no message here.
            self.s3.put_object(Bucket=bucket, Key=key, Body=request.file.data, Metadata=metadata,
                               ContentType=mimetypes.guess_type(name)[0] or "application/octet-stream")
        else:
            message = {"jobId": job_id, "bucket": bucket, "key": key, "url": request.url, "params": request.params}
            self.sqs.send_message(QueueUrl=self.settings.queue_url, MessageBody=json.dumps(message))
        log.info("job %s queued for client %s (%s)", job_id, client_id, "file" if request.file else "url")

        if "callbackURL" in request.params:
            return pending_reply(job_id, "queued")
        document = self.wait_for_result(bucket, key, self._wait_budget(time_left))
        if document is not None:
            return result_reply(document)
        job = self.jobs.get(job_id) or {}
        return pending_reply(job_id, job.get("status", "queued"))

    def _wait_budget(self, time_left: float | None) -> float:
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
    def get_transcription(self, client_id: str, job_id: str) -> Reply:
        job = self.jobs.get(job_id) if _JOB_ID.fullmatch(job_id or "") else None
        # Another client's job answers exactly like a missing one: existence is not revealed.
        if not job or job.get("clientId") != client_id:
            raise ApiError(404, "not_found", f"no transcription {job_id!r}", field="id")
        document = self.results.read(job["bucket"], job["key"])
        if document is not None:
            return Reply(200, document)
        return pending_reply(job_id, job.get("status", "queued"), http_status=200)

    # -- POST /v1/uploads -----------------------------------------------------------------
    def create_upload(self, client_id: str, fields: Mapping[str, Any]) -> Reply:
        """A presigned S3 PUT for one file; its parameters are signed in as metadata,
        so the upload starts the job exactly as a file sent to the API would."""
        filename = _field(fields, "filename")
        if not isinstance(filename, str) or not filename.strip():
            raise ApiError(400, "invalid_parameter", "filename is required", field="filename")
        params, _ = self.validate_params(fields)
        job_id = uuid.uuid4().hex
        key = f"uploads/{job_id}/{audio_name(filename, params.get('fileType'))}"
        metadata = s3_metadata(job_id, params, client_id)

        self.jobs.create(job_id, bucket=self.settings.bucket, key=key, params=params, client_id=client_id,
                         status="awaiting_upload")
        url = self.presign_s3.generate_presigned_url(
            "put_object", Params={"Bucket": self.settings.bucket, "Key": key, "Metadata": metadata},
            ExpiresIn=UPLOAD_URL_SECONDS)
        body = {"id": job_id, "uploadUrl": url, "method": "PUT",
                "headers": {f"x-amz-meta-{name}": value for name, value in metadata.items()},
                "expiresIn": UPLOAD_URL_SECONDS, "statusUrl": status_url(job_id)}
        return Reply(201, body, {"Location": status_url(job_id)})
