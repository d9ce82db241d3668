"""Every setting whisperless reads from the environment, in one place.

Two typed, frozen objects, read and validated once when a process starts (a bad value stops it
with a message naming the variable):

- :class:`EngineSettings`: models and speed knobs of the engine (``WHISPERLESS_*``); the
  engine receives it as an argument and reads nothing else.
- :class:`Settings`: the deployment (names as in ``template.yaml``): bucket, tables, queue,
  webhook secret, limits and request defaults.

Each field names its variable and says what it does; ``README.md`` lists the same variables
(a test keeps the two in step). Nothing else in the package reads ``os.environ`` (the OpenMP
and pyannote variables that must be set before torch loads are set in ``whisperless/__init__``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def _var(name: str, doc: str, **kwargs: Any) -> Any:
    """A field read from the environment variable ``name``."""
    return field(metadata={"env": name, "doc": doc}, **kwargs)


def _parse(kind: Any, name: str, raw: str) -> Any:
    kind = str(kind)
    try:
        if kind.startswith("bool"):
            text = raw.strip().lower()
            if text not in _TRUE + _FALSE:
                raise ValueError(f"expected true or false, got {raw!r}")
            return text in _TRUE
        if kind.startswith("int"):
            return None if kind.endswith("None") and not raw.strip() else int(raw)
        if kind.startswith("float"):
            return float(raw)
        if kind.startswith("Path"):
            return Path(raw).expanduser()
    except ValueError as exc:
        raise ConfigError(f"environment variable {name}: {exc}", field=name) from None
    return raw


_T = TypeVar("_T")


def _from_env(cls: type[_T], env: Mapping[str, str], **extra: Any) -> _T:
    values: dict[str, Any] = {}
    for spec in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = spec.metadata.get("env")
        if name and env.get(name, "") != "":
            values[spec.name] = _parse(spec.type, name, env[name])
    return cls(**values, **extra)


def variables(cls: type) -> dict[str, str]:
    """{environment variable: what it does} for a settings class (the README lists them)."""
    return {spec.metadata["env"]: spec.metadata["doc"] for spec in dataclasses.fields(cls) if "env" in spec.metadata}


def _default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "whisperless"


@dataclass(frozen=True)
class EngineSettings:
    """The engine's models and speed knobs. Hashable: models are cached per settings."""

    whisper_model: str = _var(
        "WHISPERLESS_MODEL", "Whisper model: base, tiny.en, a CTranslate2 folder or a hub id", default="base"
    )
    diarization_model: str = _var(
        "WHISPERLESS_DIARIZATION_MODEL", "campplus, or a pyannote pipeline folder or hub id", default="campplus"
    )
    cache_dir: Path = _var(
        "WHISPERLESS_CACHE", "model cache folder (default ~/.cache/whisperless)", default_factory=_default_cache
    )
    offline: bool = _var("WHISPERLESS_OFFLINE", "never download from the Hugging Face hub", default=False)
    hf_token: str = _var("HF_TOKEN", "Hugging Face token for gated hub pipelines", default="", repr=False)
    beam_size: int = _var("WHISPERLESS_BEAM_SIZE", "beam search width", default=5)
    batched_min_seconds: float = _var(
        "WHISPERLESS_BATCHED_MIN_SECONDS", "transcribe batched from this audio length (s)", default=60.0
    )
    # Chunks per batch. On CPU, 4 is as fast as 8 or 16 (the encoder costs the same per chunk) and
    # each step of 4 saves ~300 MB of decoder cache; on CUDA batching is what makes it fast: 8.
    batch_size: int | None = _var(
        "WHISPERLESS_BATCH_SIZE", "chunks per batch (default 4 on CPU, 8 on CUDA)", default=None
    )
    cpu_threads: int = _var("WHISPERLESS_CPU_THREADS", "CTranslate2 threads; 0 = its default", default=0)
    # 12 hours: a long job is split into chunks that each decode only their range.
    max_audio_seconds: float = _var("WHISPERLESS_MAX_AUDIO_SECONDS", "longer audio is refused", default=12 * 3600.0)
    # Chosen on real meetings (AMI excerpts), the real sample and made conversations:
    # bench/diarization_quality.py (BENCHMARKS.md).
    clustering_threshold: float = _var(
        "WHISPERLESS_CLUSTERING_THRESHOLD", "speaker clustering threshold (campplus)", default=0.65
    )
    segmentation_batch: int = _var("WHISPERLESS_SEGMENTATION_BATCH", "segmentation batch (campplus)", default=8)
    tune_malloc: bool = _var(
        "WHISPERLESS_TUNE_MALLOC", "keep glibc from unmapping torch's buffers (pyannote pipelines)", default=True
    )

    def __post_init__(self) -> None:
        for name in ("beam_size", "segmentation_batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}", field=name)
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}", field="batch_size")
        if self.max_audio_seconds <= 0:
            raise ConfigError("max_audio_seconds must be positive", field="max_audio_seconds")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> EngineSettings:
        env = os.environ if env is None else env
        settings = _from_env(cls, env)
        if env.get("HF_HUB_OFFLINE") == "1":  # huggingface_hub's own switch means the same
            settings = dataclasses.replace(settings, offline=True)
        return dataclasses.replace(settings, **overrides) if overrides else settings


@dataclass(frozen=True)
class Settings:
    """The deployment: where jobs, results and keys live, and the limits of a request."""

    bucket: str = _var("BUCKET_NAME", "the audio bucket", default="")
    jobs_table: str = _var("JOBS_TABLE", "DynamoDB table of job records", default="")
    idempotency_table: str = _var("IDEMPOTENCY_TABLE", "DynamoDB table of Powertools idempotency records", default="")
    api_keys_table: str = _var("API_KEYS_TABLE", "DynamoDB table of hashed API keys", default="")
    voices_table: str = _var("VOICES_TABLE", "DynamoDB table of enrolled voices (speakers by name)", default="")
    queue_url: str = _var("QUEUE_URL", "the job queue", default="")
    webhook_secret: str = _var("WEBHOOK_SECRET", "callback signing secret (local runs)", default="", repr=False)
    webhook_secret_arn: str = _var("WEBHOOK_SECRET_ARN", "Secrets Manager secret that signs callbacks", default="")
    event_bus: str = _var(
        "EVENT_BUS_NAME", "EventBridge bus that gets one Transcription Completed/Failed event per job", default=""
    )
    max_audio_bytes: int = _var("MAX_AUDIO_BYTES", "larger inputs are refused", default=2 * 1024**3)
    # The job queue's maxReceiveCount: on that receive a job that still fails for a passing
    # reason is answered with a failed document instead of going silently to the DLQ.
    max_receive_count: int = _var("MAX_RECEIVE_COUNT", "the job queue's maxReceiveCount", default=3)
    allow_local_callbacks: bool = _var(
        "ALLOW_LOCAL_CALLBACKS", "let url/callbackURL reach loopback (local only)", default=False
    )
    job_ttl_days: int = _var("JOB_TTL_DAYS", "job records expire after this many days", default=30)
    result_wait_seconds: float = _var(
        "RESULT_WAIT_SECONDS", "POST /v1/transcriptions waits this long for a result", default=25.0
    )
    worker_job_seconds: float | None = _var(
        "WORKER_JOB_SECONDS",
        "plain worker: a job's lock lasts at most this (default: the visibility timeout)",
        default=None,
    )
    stop_grace_seconds: float = _var(
        "STOP_GRACE_SECONDS",
        "on SIGTERM/Ctrl-C, how long the running job may take to finish before it is put back",
        default=25.0,
    )
    # 10 minutes: a chunk takes about a minute on a 2-vCPU function with diarization, so a
    # 4-hour recording is 24 chunks at once and a result in about 2 minutes (BENCHMARKS.md).
    chunk_seconds: float = _var(
        "WHISPERLESS_CHUNK_SECONDS",
        "longer audio is split into chunks of about this many seconds, run at once (0: never split)",
        default=600.0,
    )
    region: str = _var("AWS_REGION", "AWS region (else AWS_DEFAULT_REGION, else us-east-1)", default="")
    default_diarization: str = _var("DEFAULT_DIARIZATION", "diarization when a request does not say", default="")
    default_language: str = _var("DEFAULT_LANGUAGE", "language when a request does not say", default="")
    default_task: str = _var("DEFAULT_TASK", "task when a request does not say", default="")

    def __post_init__(self) -> None:
        for name in ("max_audio_bytes", "max_receive_count", "job_ttl_days"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}", field=name)
        for name in ("result_wait_seconds", "stop_grace_seconds"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative", field=name)
        if self.chunk_seconds and self.chunk_seconds < 30:  # one CAM++ block: diarization's smallest chunk
            raise ConfigError("WHISPERLESS_CHUNK_SECONDS must be 0 (never split) or at least 30", field="chunk_seconds")

    @property
    def defaults(self) -> dict[str, str]:
        """Contract-named request defaults of the deployment."""
        pairs = (
            ("diarization", self.default_diarization),
            ("language", self.default_language),
            ("task", self.default_task),
        )
        return {name: value for name, value in pairs if value}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        settings = _from_env(cls, env)
        if not settings.region:
            settings = dataclasses.replace(settings, region=env.get("AWS_DEFAULT_REGION") or "us-east-1")
        return settings


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The deployment's settings, read once per process."""
    return Settings.from_env()


@lru_cache(maxsize=1)
def engine_settings() -> EngineSettings:
    """The engine's settings, read once per process."""
    return EngineSettings.from_env()
