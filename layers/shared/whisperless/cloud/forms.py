"""Reading HTTP API requests: bodies (multipart, JSON, URL-encoded), the contract's fields
among them, and safe object names. Plain inputs (bytes, a content type): the Lambda handler and
the local stack drive the same code. A request we refuse raises :class:`ApiError`."""

from __future__ import annotations

import json
import math
import mimetypes
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ..contract.naming import AUDIO_EXTENSIONS
from ..contract.options import is_unset
from ..errors import InvalidParameter

MAX_NAME_CHARS = 100

#: Request parameters of the contract, as spelled there (clients may use any case).
CONTRACT_FIELDS = (
    "fileType",
    "diarization",
    "numSpeakers",
    "minSpeakers",
    "maxSpeakers",
    "callbackURL",
    "initialPrompt",
    "language",
    "task",
    "redact",
    "redactionOutput",
    "redactAudio",
    "sentiment",
    "temperature",
    "formats",
    "knownSpeakers",
)
_CANONICAL = {name.lower(): name for name in CONTRACT_FIELDS + ("url", "file", "filename")}
_UNSAFE_NAME_CHARS = re.compile(r"[^\w.-]+")


class ApiError(Exception):
    """A request we refuse; ``body()`` is the JSON error document."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = dict(headers or {})

    @classmethod
    def invalid(cls, exc: InvalidParameter) -> ApiError:
        return cls(400, exc.code, exc.message, field=exc.field)

    def body(self) -> dict:
        return error_body(self.code, self.message, self.field)


def error_body(code: str, message: str, field: str | None = None) -> dict:
    error = {"code": code, "message": message}
    if field:
        error["field"] = field
    return {"error": error}


@dataclass(frozen=True)
class UploadedFile:
    filename: str | None
    content_type: str | None
    data: bytes


# ------------------------------------------------------------------ request bodies


def read_form(body: bytes, content_type: str | None) -> tuple[dict[str, Any], UploadedFile | None]:
    """Fields and the uploaded file of a request body: multipart, JSON or URL-encoded."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == "multipart/form-data":
        return parse_multipart(body, content_type or "")
    if media == "application/json" or (not media and not body):
        fields = parse_json(body)
        if not is_unset(get_field(fields, "file")):
            raise ApiError(
                400,
                "invalid_parameter",
                "a JSON body cannot carry the file: send multipart/form-data, or use POST /v1/uploads",
                field="file",
            )
        return fields, None
    if media == "application/x-www-form-urlencoded":
        return _parse_urlencoded(body), None
    raise ApiError(
        415,
        "unsupported_media_type",
        f"unsupported content type {media or '(none)'!r}: send multipart/form-data or application/json",
        field="Content-Type",
    )


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
    """Parse multipart/form-data with the standard library's MIME parser (a repeated field: the last)."""
    pairs, upload = multipart_pairs(body, content_type)
    return dict(pairs), upload


def multipart_pairs(body: bytes, content_type: str) -> tuple[list[tuple[str, str]], UploadedFile | None]:
    """Every (name, value) of a multipart/form-data body in order (array fields repeat their name,
    as OpenAI's clients send ``include[]``), and the uploaded ``file``."""
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
    fields: list[tuple[str, str]] = []
    upload: UploadedFile | None = None
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or not name:
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if _CANONICAL.get(name.lower()) == "file":
            if upload is not None:
                raise ApiError(400, "invalid_parameter", "send exactly one file", field="file")
            # An empty file input in a browser form arrives as filename="" and no data: unset.
            if data or filename:
                upload = UploadedFile(filename, part.get_content_type() if part.get("content-type") else None, data)
            continue
        try:
            fields.append((name, data.decode("utf-8")))
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
        if canonical in ("formats", "knownSpeakers") and isinstance(value, list):  # JSON clients send lists
            value = ",".join(str(item) for item in value)
        if not isinstance(value, (str, bool, int, float)):
            raise ApiError(
                400, "invalid_parameter", f"{canonical} must be a string, number or boolean", field=canonical
            )
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not _storable(value):
            # NaN, Infinity (Python's JSON reads them) and numbers beyond DynamoDB's range would
            # fail only when the job is stored: refuse them here, naming the field.
            raise ApiError(
                400, "invalid_parameter", f"{canonical} is not a usable number: {value!r:.40}", field=canonical
            )
        params[canonical] = value
    return params


def _storable(number: int | float) -> bool:
    """Finite and within what a DynamoDB number holds (38 significant digits, |x| < 1e126)."""
    if isinstance(number, float):
        return math.isfinite(number) and (number == 0 or 1e-128 < abs(number) < 1e125)
    return abs(number) < 10**38


def get_field(fields: Mapping[str, Any], name: str) -> Any:
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


def name_from_url(url: str) -> str:
    path = unquote(urlsplit(url).path)
    return path.rsplit("/", 1)[-1] or "audio"
