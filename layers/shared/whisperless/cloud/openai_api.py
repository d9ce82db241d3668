"""OpenAI's audio API on whisperless: ``POST /v1/audio/transcriptions`` and
``POST /v1/audio/translations``, so that the official ``openai`` SDKs (``base_url=<api>/v1``),
LangChain and every "OpenAI-compatible" tool work unchanged, with the same API keys.

A request becomes an ordinary whisperless job (:meth:`Api.start_job`: the same record, the same
queue, the same engine); the answer is rendered from its result document in OpenAI's exact shapes
(``json``, ``text``, ``srt``, ``verbose_json``, ``vtt``, ``diarized_json``), plus, additively,
each word's ``probability`` in ``verbose_json``. Errors use OpenAI's shape
``{"error": {"message", "type", "param", "code"}}`` with the status the SDKs map to the right
exception.

Choices, where OpenAI's semantics and a serverless deployment meet:

* ``model``: any name is accepted (``whisper-1``, ``gpt-4o-transcribe``, ...) and runs the
  deployment's model; the ``x-whisperless-model`` header says which one did.
* Size: OpenAI takes files up to 25 MB, but an API Gateway HTTP API refuses bodies over 10 MB
  before the function sees them. Larger files: ``POST /v1/uploads`` (a presigned S3 PUT) and the
  asynchronous API.
* Time: the answer must come within API Gateway's 30 s. When the job has not finished within the
  wait budget (``RESULT_WAIT_SECONDS``), the answer is 413 with the job's id and status URL (the
  job goes on: fetch it with ``GET /v1/transcriptions/{id}?format=...``), never a gateway
  timeout. 413 ("content too large" for this synchronous API) because the SDKs retry 408, 409,
  429 and 5xx, and a retry would upload and transcribe the file again; ``x-should-retry: false``
  tells the Stainless-generated SDKs the same. (Estimating the duration before queuing would
  need a media parser in the API function and a guess at the deployment's speed; the budget is
  what decides, so it is what is checked.)
* ``known_speaker_names[]`` with ``known_speaker_references[]`` (data URLs of 2-60 s clips), as
  for ``gpt-4o-transcribe-diarize``: with ``response_format=diarized_json`` only (the one format
  that shows speakers); a speaker matched to a reference is called by its name, the others
  ``A``, ``B``, ... The clips serve this request only (``POST /v1/speakers`` enrols for good).
* Refused with a 400 that names the field, rather than accepted and ignored: ``stream=true``
  (no streaming), ``timestamp_granularities[]`` other than with ``verbose_json`` and ``include[]``
  other than with ``json``, as OpenAI documents them, and fields OpenAI does not have.
* ``chunking_strategy`` is accepted and has no effect: the engine always cuts on voice activity.
* ``include[]=logprobs``: one entry per word (token = the word, logprob = log of its probability):
  Whisper's word probabilities are what the result keeps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..contract.documents import input_was_bad
from ..contract.formats import RENDERERS
from ..contract.languages import LANGUAGES
from ..contract.options import parse_temperature
from ..contract.speakers import ANONYMOUS_SPEAKER
from ..errors import InvalidParameter
from .api import MAX_BODY_BYTES, Api, Reply, status_url
from .forms import ApiError, multipart_pairs

OPENAI_LIMIT_BYTES = 25 * 1024 * 1024
FORMATS = ("json", "text", "srt", "verbose_json", "vtt", "diarized_json")
TRANSLATION_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
GRANULARITIES = ("word", "segment")
_TRANSCRIPTION_FIELDS = frozenset(
    "model language prompt response_format temperature timestamp_granularities chunking_strategy include stream "
    "known_speaker_names known_speaker_references".split()
)
_TRANSLATION_FIELDS = frozenset("model prompt response_format temperature".split())
_TEXT = "text/plain; charset=utf-8"


class OpenAIError(Exception):
    """A request refused, in OpenAI's words."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None, headers=None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = dict(headers or {})

    def reply(self) -> Reply:
        kind = "server_error" if self.status >= 500 else "invalid_request_error"
        body = {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}
        return Reply(self.status, body, {"Content-Type": "application/json", **self.headers})


def _from_api_error(exc: ApiError) -> OpenAIError:
    code = "invalid_api_key" if exc.status == 401 else exc.code
    return OpenAIError(exc.status, exc.message, param=_param(exc.field), code=code, headers=exc.headers)


# Contract names -> OpenAI's, for errors that name a field.
_PARAMS = {
    "initialPrompt": "prompt",
    "knownSpeakers": "known_speaker_names",
    "Authorization": None,
    "Content-Type": None,
}


def _param(field: str | None) -> str | None:
    """OpenAI names array fields without their brackets (``known_speaker_names``)."""
    return _PARAMS.get(field, field.removesuffix("[]")) if field else None


class OpenAIAudio:
    def __init__(self, api: Api):
        self.api = api

    def handle(
        self, kind: str, headers: Mapping[str, str], body: bytes, content_type: str | None, time_left: float | None
    ) -> Reply:
        """``kind``: "transcriptions" or "translations". Always a Reply: errors are OpenAI-shaped."""
        try:
            client_id = self.api.authenticate(headers)
            return self._create(kind, client_id, body, content_type, time_left)
        except ApiError as exc:
            return _from_api_error(exc).reply()
        except OpenAIError as exc:
            return exc.reply()

    # -- the request -----------------------------------------------------------------------
    def _create(self, kind: str, client_id: str, body: bytes, content_type: str | None, time_left) -> Reply:
        if len(body) > MAX_BODY_BYTES:
            raise OpenAIError(
                413,
                f"the request is {len(body) / 1e6:.1f} MB: this API's HTTP front accepts at most "
                f"{MAX_BODY_BYTES // 2**20} MB (OpenAI's own limit is {OPENAI_LIMIT_BYTES // 2**20} MB). "
                "Upload larger files with POST /v1/uploads (a presigned S3 PUT) and read the result with "
                "GET /v1/transcriptions/{id}",
                param="file",
                code="file_too_large",
            )
        if (content_type or "").split(";")[0].strip().lower() != "multipart/form-data":
            raise OpenAIError(400, "send the audio as multipart/form-data with a 'file' part", param="file")
        pairs, upload = multipart_pairs(body, content_type or "")
        fields = _group(pairs)
        allowed = _TRANSCRIPTION_FIELDS if kind == "transcriptions" else _TRANSLATION_FIELDS
        for name in fields:
            if name not in allowed:
                raise OpenAIError(400, f"Unrecognized request argument supplied: {name}", param=name)
        if upload is None:
            raise OpenAIError(400, "file is required: send the audio as the multipart part 'file'", param="file")
        if not _one(fields, "model"):
            raise OpenAIError(
                400, "you must provide a model parameter (any name: this deployment runs its own)", param="model"
            )
        response_format = _one(fields, "response_format") or "json"
        formats = FORMATS if kind == "transcriptions" else TRANSLATION_FORMATS
        if response_format not in formats:
            raise OpenAIError(
                400,
                f"response_format must be one of {', '.join(formats)}, got {response_format!r}",
                param="response_format",
            )
        _refuse_unsupported(fields, response_format)
        granularities = _many(fields, "timestamp_granularities")
        include = _many(fields, "include")

        params: dict[str, Any] = {"task": "translate" if kind == "translations" else "transcribe"}
        if response_format == "diarized_json":
            params["diarization"] = "true"
        for openai_name, contract_name in (("language", "language"), ("prompt", "initialPrompt")):
            if _one(fields, openai_name):
                params[contract_name] = _one(fields, openai_name)
        if _one(fields, "temperature"):
            try:
                params["temperature"] = parse_temperature(_one(fields, "temperature"))
            except InvalidParameter as exc:
                raise OpenAIError(400, exc.message, param="temperature") from None
        request = self.api.with_references(self.api.job_request(params, upload), body, content_type or "")
        job_id, bucket, key = self.api.start_job(client_id, request)
        document = self.api.wait_for_result(bucket, key, self.api.wait_budget(time_left))
        headers = {"x-whisperless-job-id": job_id}
        if document is None:
            budget = self.api.wait_budget(time_left)
            raise OpenAIError(
                413,
                f"the transcription did not finish within this synchronous API's {budget:.0f} s; it goes on as "
                f"job {job_id}: fetch it with GET {status_url(job_id)}?format="
                f"{_result_format(response_format)} (or use POST /v1/transcriptions with a callbackURL for long audio)",
                param="file",
                code="audio_too_long_for_sync",
                headers={**headers, "x-should-retry": "false", "Location": status_url(job_id)},
            )
        if document.get("model"):
            headers["x-whisperless-model"] = str(document["model"])
        if document.get("status") == "failed":
            error = document.get("error") or {}
            status = 400 if input_was_bad(document) else 500
            raise OpenAIError(
                status,
                str(error.get("message", "transcription failed")),
                param=_param(error.get("field")) or ("file" if status == 400 else None),
                code=error.get("code"),
                headers=headers,
            )
        return _render(document, kind, response_format, granularities, include, headers)


def _group(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    """``include[]`` and ``include`` are one field; ``chunking_strategy[type]`` belongs to ``chunking_strategy``."""
    fields: dict[str, list[str]] = {}
    for name, value in pairs:
        base = name.split("[", 1)[0]
        fields.setdefault(base, []).append(value)
    return fields


def _one(fields: dict[str, list[str]], name: str) -> str:
    values = fields.get(name) or [""]
    return values[-1].strip()


def _many(fields: dict[str, list[str]], name: str) -> list[str]:
    return [v.strip() for v in fields.get(name, []) if v.strip()]


def _refuse_unsupported(fields: dict[str, list[str]], response_format: str) -> None:
    stream = _one(fields, "stream").lower()
    if stream not in ("", "false", "0"):
        raise OpenAIError(400, "streaming is not supported: omit stream or send stream=false", param="stream")
    for name in ("known_speaker_names", "known_speaker_references"):
        if _many(fields, name) and response_format != "diarized_json":
            raise OpenAIError(400, f"{name} needs response_format diarized_json", param=name)
    granularities = _many(fields, "timestamp_granularities")
    if any(g not in GRANULARITIES for g in granularities):
        raise OpenAIError(400, "timestamp_granularities must be word and/or segment", param="timestamp_granularities")
    if granularities and response_format != "verbose_json":
        raise OpenAIError(
            400, "timestamp_granularities needs response_format verbose_json", param="timestamp_granularities"
        )
    include = _many(fields, "include")
    if any(i != "logprobs" for i in include):
        raise OpenAIError(400, "include supports only logprobs", param="include")
    if include and response_format != "json":
        raise OpenAIError(400, "include[]=logprobs needs response_format json", param="include")
    chunking = fields.get("chunking_strategy", [])
    if chunking and chunking != ["auto"] and "server_vad" not in chunking:
        raise OpenAIError(400, "chunking_strategy must be auto or {type: server_vad}", param="chunking_strategy")


def _result_format(response_format: str) -> str:
    return response_format if response_format in RENDERERS else "json"


# -- the answer ----------------------------------------------------------------------------------


def _speaker_letters(segments: list[dict]) -> dict[str, str]:
    """SPEAKER_00 -> A, SPEAKER_01 -> B, ... in order of first appearance, as OpenAI labels them;
    a speaker named by a known voice keeps its name."""
    speakers = list(dict.fromkeys(s["speaker"] for s in segments if s.get("speaker")))
    letters = {speaker: speaker for speaker in speakers if not ANONYMOUS_SPEAKER.fullmatch(speaker)}
    taken = set(letters)  # a voice named "B" keeps it: no one else is called B
    n = 0
    for speaker in speakers:
        if speaker in letters:
            continue
        while (label := _letters(n)) in taken:
            n += 1
        letters[speaker] = label
        n += 1
    return letters


def _letters(n: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA, ..."""
    label = ""
    while True:
        n, rest = divmod(n, 26)
        label = chr(ord("A") + rest) + label
        if not n:
            return label
        n -= 1


def _render(
    document: dict,
    kind: str,
    response_format: str,
    granularities: list[str],
    include: list[str],
    headers: dict[str, str],
) -> Reply:
    if response_format in ("text", "srt", "vtt"):
        rendered = RENDERERS["txt" if response_format == "text" else response_format](document)
        return Reply(200, rendered, {**headers, "Content-Type": _TEXT})
    text = str(document.get("text", ""))
    duration = float(document.get("duration") or 0.0)
    usage = {"type": "duration", "seconds": math.ceil(duration)}
    segments = document.get("segments") or []
    task = "translate" if kind == "translations" else "transcribe"
    if response_format == "json":
        body: dict[str, Any] = {"text": text, "usage": usage}
        if include:
            body["logprobs"] = [
                {
                    "token": w["word"],
                    "logprob": math.log(max(float(w.get("probability", 1.0)), 1e-12)),
                    "bytes": list(w["word"].encode()),
                }
                for s in segments
                for w in s.get("words", [])
            ]
        if kind == "translations":
            body.pop("usage")  # Translation is {text} only
    elif response_format == "diarized_json":
        letters = _speaker_letters(segments)
        body = {
            "task": task,
            "duration": duration,
            "text": text,
            "segments": [
                {
                    "type": "transcript.text.segment",
                    "id": f"seg_{i}",
                    "start": s["start"],
                    "end": s["end"],
                    "speaker": letters.get(s.get("speaker", ""), "A"),
                    "text": s["text"],
                }
                for i, s in enumerate(segments)
            ],
            "usage": usage,
        }
    else:  # verbose_json
        language = "english" if kind == "translations" else LANGUAGES.get(document.get("language", ""), "")
        body = {"task": task, "language": language, "duration": duration, "text": text}
        if not granularities or "segment" in granularities:
            body["segments"] = [_verbose_segment(i, s) for i, s in enumerate(segments)]
        if "word" in granularities:
            body["words"] = [
                {"word": w["word"].strip(), "start": w["start"], "end": w["end"], "probability": w.get("probability")}
                for s in segments
                for w in s.get("words", [])
            ]
        if kind == "transcriptions":
            body["usage"] = usage
    return Reply(200, body, {**headers, "Content-Type": "application/json"})


def _verbose_segment(i: int, segment: dict) -> dict:
    """OpenAI's TranscriptionSegment: every field present and of its type (the SDK's strict mode checks)."""
    return {
        "id": i,
        "seek": int(segment.get("seek", 0)),
        "start": float(segment["start"]),
        "end": float(segment["end"]),
        "text": segment["text"],
        "tokens": [int(t) for t in segment.get("tokens", [])],
        "temperature": float(segment.get("temperature", 0.0)),
        "avg_logprob": float(segment.get("avg_logprob", 0.0)),
        "compression_ratio": float(segment.get("compression_ratio", 0.0)),
        "no_speech_prob": float(segment.get("no_speech_prob", 0.0)),
    }
