"""Lambda handler of the HTTP API: routes, event decoding and response shaping only.

The logic lives in ``whisperless.cloud.api`` and, for OpenAI's audio routes,
``whisperless.cloud.openai_api`` (shared with the local stack). Every route but the OpenAPI
document and ``/v1/health`` needs ``Authorization: Bearer <key>``; authentication runs inside
each route, before the body is looked at, so a stranger learns nothing about bodies. CORS is
API Gateway's (template.yaml, HttpApi CorsConfiguration), not this resolver's.
Request bodies are parsed by ``whisperless.cloud.forms`` (multipart cannot go through
Powertools' body models); the OpenAPI document describes them all the same.
"""

from __future__ import annotations

import base64
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer
from aws_lambda_powertools.logging import correlation_paths

from whisperless.cloud.api import Api, Reply
from whisperless.cloud.forms import ApiError, error_body, parse_json
from whisperless.cloud.openai_api import OpenAIAudio
from whisperless.config import settings

logger = Logger()
app = APIGatewayHttpResolver(enable_validation=True)
app.configure_openapi(
    title="whisperless",
    version="1",
    description="Serverless speech-to-text (faster-whisper + pyannote). See CONTRACT.md for fields and results.",
    security_schemes={"apiKey": HTTPBearer(description="Authorization: Bearer <API key>")},
    security=[{"apiKey": []}],
)

_service: Api | None = None


def service() -> Api:
    """One Api per execution environment (clients are reused across invocations)."""
    global _service
    if _service is None:
        _service = Api.from_settings(settings())
    return _service


# ------------------------------------------------------------------ OpenAPI pieces


def _either(*types: str) -> list[dict]:
    return [{"type": name} for name in types]


_PARAMS = {
    "fileType": {"type": "string", "description": "container/codec hint (wav, mp3, m4a, ...); may be wrong"},
    "diarization": {"anyOf": _either("boolean", "string"), "description": "also return who spoke when"},
    "numSpeakers": {"anyOf": _either("integer", "string"), "description": "exact speaker count (1-20)"},
    "minSpeakers": {"anyOf": _either("integer", "string"), "description": "lower bound on speakers"},
    "maxSpeakers": {"anyOf": _either("integer", "string"), "description": "upper bound on speakers"},
    "callbackURL": {"type": "string", "description": "POST the result here (Standard Webhooks signed)"},
    "initialPrompt": {"type": "string", "description": "decoding hint (names, jargon)"},
    "language": {"type": "string", "description": "ISO-639-1 code; empty = detect"},
    "task": {"type": "string", "description": "transcribe (default) or translate"},
    "redact": {
        "type": "string",
        "description": "remove personal data: 'pii' (every identifier type) or Presidio entity types, "
        "comma-separated (PERSON,PHONE_NUMBER,EMAIL_ADDRESS,CREDIT_CARD,...)",
    },
    "redactionOutput": {
        "type": "string",
        "description": "redacted (default) or redacted_and_unredacted (also <key>.unredacted.json)",
    },
    "redactAudio": {"anyOf": _either("boolean", "string"), "description": "also write <key>.redacted.wav"},
    "sentiment": {"anyOf": _either("boolean", "string"), "description": "sentiment per segment (English)"},
    "temperature": {"anyOf": _either("number", "string"), "description": "0-1; unset or 0: Whisper's schedule"},
    "formats": {
        "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
        "description": "also write <key>.srt / .vtt / .txt next to the audio: 'srt,vtt,txt'",
    },
    "knownSpeakers": {
        "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
        "description": "enrolled voices (POST /v1/speakers) to name the speakers after: 'Alice,Bob', or '*' for all "
        "(needs diarization)",
    },
}
_EMPTY_MEANS_UNSET = "Every empty string means unset."


def _schema(extra: dict, required: list[str] | None = None) -> dict:
    schema = {"type": "object", "description": _EMPTY_MEANS_UNSET, "properties": {**extra, **_PARAMS}}
    if required:
        schema["required"] = required
    return schema


_JSON_ANY: dict[str, Any] = {"application/json": {"schema": {"type": "object"}}}
_ERROR: dict[str, Any] = {
    "application/json": {
        "schema": {
            "type": "object",
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "field": {"type": "string"},
                    },
                }
            },
        }
    }
}


def _errors(*statuses: int) -> dict:
    texts = {
        400: "bad parameter (error.field names it)",
        401: "missing or unknown API key",
        403: "disabled API key",
        404: "no such transcription (or voice) for this client",
        413: "body over 10 MB or file over the audio limit",
        415: "unsupported content type",
        422: "request validation failed",
    }
    return {status: {"description": texts[status], "content": _ERROR} for status in statuses}


# ------------------------------------------------------------------ routes


def _client_id() -> str:
    return service().authenticate(app.current_event.headers)


def _body() -> bytes:
    event = app.current_event
    if not event.body:
        return b""
    return base64.b64decode(event.body) if event.is_base64_encoded else event.body.encode("utf-8")


def _time_left() -> float | None:
    context = app.lambda_context
    return context.get_remaining_time_in_millis() / 1000 if context else None


def _respond(reply: Reply) -> Response:
    # A str body goes out as it is, with the Content-Type its reply names (srt, vtt, text).
    return Response(reply.status, content_types.APPLICATION_JSON, reply.body, headers=reply.headers)


@app.post(
    "/v1/transcriptions",
    summary="Transcribe a file (multipart) or a URL (JSON)",
    description="Waits briefly for the result; otherwise (or with callbackURL) answers 202 with a statusUrl. "
    "Multipart may add OpenAI's known_speaker_names[] with known_speaker_references[] (data URLs of clips): "
    "voices for this request only.",
    openapi_extensions={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": _schema({"file": {"type": "string", "format": "binary"}}, ["file"])},
                "application/json": {"schema": _schema({"url": {"type": "string", "format": "uri"}}, ["url"])},
            },
        }
    },
    responses={
        200: {"description": "completed: the result document", "content": _JSON_ANY},
        202: {"description": "accepted: {id, status, statusUrl}", "content": _JSON_ANY},
        **_errors(400, 401, 403, 413, 415),
        422: {"description": "the job failed because of its input: the failed document", "content": _JSON_ANY},
        500: {"description": "the job failed on our side: the failed document", "content": _JSON_ANY},
    },
)
def create_transcription():
    client_id = _client_id()
    content_type = app.current_event.headers.get("content-type")
    return _respond(service().create_transcription(client_id, _body(), content_type, time_left=_time_left()))


@app.get(
    "/v1/transcriptions/<job_id>",
    summary="Status of a transcription, with the result document once done",
    description="?format=srt|vtt|txt renders a completed transcription (409 before); json (default): the document.",
    responses={
        200: {"description": "{id, status, statusUrl}, the result document, or its rendering", "content": _JSON_ANY},
        409: {"description": "a rendering asked for before the job completed", "content": _ERROR},
        **_errors(400, 401, 403, 404, 422),
    },
)
def get_transcription(job_id: str):
    client_id = _client_id()
    fmt = app.current_event.get_query_string_value("format")
    return _respond(service().get_transcription(client_id, job_id, fmt))


@app.get(
    "/v1/transcriptions",
    summary="The caller's transcriptions, newest first",
    description="?limit=1-100 (default 20); ?after=<next> for the following page.",
    responses={
        200: {"description": "{transcriptions: [{id, status, createdAt, ...}], next}", "content": _JSON_ANY},
        **_errors(400, 401, 403),
    },
)
def list_transcriptions():
    client_id = _client_id()
    return _respond(service().list_transcriptions(client_id, app.current_event.query_string_parameters))


@app.delete(
    "/v1/transcriptions/<job_id>",
    summary="Delete a finished transcription: its audio, result, renderings and record",
    responses={
        200: {"description": "{id, deleted: true}", "content": _JSON_ANY},
        409: {"description": "the job is still running", "content": _ERROR},
        **_errors(401, 403, 404),
    },
)
def delete_transcription(job_id: str):
    client_id = _client_id()
    return _respond(service().delete_transcription(client_id, job_id))


def _openai_audio(kind: str) -> Response:
    event = app.current_event
    reply = OpenAIAudio(service()).handle(kind, event.headers, _body(), event.headers.get("content-type"), _time_left())
    return _respond(reply)


_OPENAI_DOC = (
    "OpenAI's audio API (the openai SDKs with base_url=<api>/v1): multipart file, model (any name: this "
    "deployment's model runs), response_format json|text|srt|verbose_json|vtt|diarized_json. Errors are "
    "OpenAI-shaped. Over the wait budget: 413 with the job id (the job goes on)."
)


@app.post("/v1/audio/transcriptions", summary="OpenAI-compatible transcription", description=_OPENAI_DOC)
def openai_transcription():
    return _openai_audio("transcriptions")


@app.post("/v1/audio/translations", summary="OpenAI-compatible translation to English", description=_OPENAI_DOC)
def openai_translation():
    return _openai_audio("translations")


@app.get("/v1/health", summary="Liveness, without a key", security=[])
def health():
    return _respond(Reply(200, {"status": "ok"}))


@app.post(
    "/v1/speakers",
    summary="Enrol a voice: name + file (2-60 s of that person's speech)",
    description="Stored as an embedding only (the clip is not kept); knownSpeakers then names its speaker.",
    openapi_extensions={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["name", "file"],
                        "properties": {
                            "name": {"type": "string", "description": "the person's name (no , / \\ *)"},
                            "file": {"type": "string", "format": "binary"},
                        },
                    }
                }
            },
        }
    },
    responses={
        201: {"description": "{name, seconds}: enrolled (seconds of speech used)", "content": _JSON_ANY},
        202: {"description": "{name, status}: still being enrolled", "content": _JSON_ANY},
        **_errors(400, 401, 403, 413, 415),
        422: {"description": "the clip is not usable (too little speech, not audio)", "content": _ERROR},
    },
)
def enrol_speaker():
    client_id = _client_id()
    content_type = app.current_event.headers.get("content-type")
    return _respond(service().enrol_speaker(client_id, _body(), content_type, time_left=_time_left()))


@app.get(
    "/v1/speakers",
    summary="The caller's enrolled voices",
    responses={
        200: {"description": "{speakers: [{name, seconds, createdAt}]}", "content": _JSON_ANY},
        **_errors(401, 403),
    },
)
def list_speakers():
    return _respond(service().list_speakers(_client_id()))


@app.delete(
    "/v1/speakers/<name>",
    summary="Forget an enrolled voice",
    responses={200: {"description": "{name, deleted: true}", "content": _JSON_ANY}, **_errors(401, 403, 404)},
)
def delete_speaker(name: str):
    client_id = _client_id()
    return _respond(service().delete_speaker(client_id, name))


@app.post(
    "/v1/uploads",
    summary="A presigned S3 PUT for files over the 10 MB API limit",
    openapi_extensions={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _schema({"filename": {"type": "string"}}, ["filename"])},
            },
        }
    },
    responses={
        201: {
            "description": "{id, uploadUrl, method, headers, expiresIn, statusUrl}; PUT the file "
            "to uploadUrl with exactly these headers",
            "content": _JSON_ANY,
        },
        **_errors(400, 401, 403, 415, 422),
    },
)
def create_upload():
    client_id = _client_id()
    content_type = app.current_event.headers.get("content-type") or "application/json"
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise ApiError(415, "unsupported_media_type", "send application/json", field="Content-Type")
    return _respond(service().create_upload(client_id, parse_json(_body())))


@cache
def _openapi_document() -> str:
    return app.get_openapi_json_schema()


@app.get("/v1/openapi.json", include_in_schema=False)
def openapi_document():
    return Response(200, content_types.APPLICATION_JSON, _openapi_document())


# ------------------------------------------------------------------ errors as JSON


def _error(status: int, code: str, message: str, field: str | None = None, headers=None) -> Response:
    return Response(status, content_types.APPLICATION_JSON, error_body(code, message, field), headers=headers)


@app.exception_handler(ApiError)
def _api_error(exc: ApiError) -> Response:
    return _error(exc.status, exc.code, exc.message, exc.field, exc.headers)


@app.exception_handler(RequestValidationError)
def _validation_error(exc: RequestValidationError) -> Response:
    first = exc.errors()[0] if exc.errors() else {}
    names = [part for part in first.get("loc", ()) if isinstance(part, str) and part != "body"]
    return _error(422, "validation_error", str(first.get("msg", "invalid request")), names[-1] if names else None)


@app.exception_handler(RequestUnsupportedContentType)
def _unsupported(exc: RequestUnsupportedContentType) -> Response:
    return _error(415, "unsupported_media_type", "unsupported content type", "Content-Type")


@app.not_found
def _not_found(exc: NotFoundError) -> Response:
    return _error(404, "not_found", "no such route")


@app.exception_handler(Exception)
def _internal(exc: Exception) -> Response:
    # Ours, not the client's: log the trace (never headers: they hold the key) and say little.
    logger.exception("unhandled error")
    return _error(500, "internal_error", "internal error; please retry later")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def handler(event, context):
    return app.resolve(event, context)
