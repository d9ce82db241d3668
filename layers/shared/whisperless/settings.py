"""Deployment settings, read once from the environment (names as in template.yaml)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache


def _flag(name: str, default: str = "false") -> bool:
    return os.environ.get(name, default).strip().lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class Settings:
    bucket: str = ""
    jobs_table: str = ""
    idempotency_table: str = ""
    api_keys_table: str = ""
    queue_url: str = ""
    webhook_secret: str = ""  # local runs; deployments use webhook_secret_arn
    webhook_secret_arn: str = ""
    max_audio_bytes: int = 2 * 1024**3
    # The job queue's maxReceiveCount: on that receive a job that still fails for a passing
    # reason is answered with a failed document instead of going silently to the DLQ.
    max_receive_count: int = 3
    allow_local_callbacks: bool = False  # loopback callbacks/urls: an explicit local-only setting
    job_ttl_days: int = 30
    result_wait_seconds: float = 25.0
    defaults: dict[str, str] = field(default_factory=dict)  # contract-named request defaults

    @classmethod
    def from_env(cls) -> "Settings":
        env = os.environ
        defaults = {
            name: env[var]
            for name, var in (("diarization", "DEFAULT_DIARIZATION"), ("language", "DEFAULT_LANGUAGE"),
                              ("task", "DEFAULT_TASK"))
            if env.get(var)
        }
        return cls(
            bucket=env.get("BUCKET_NAME", ""),
            jobs_table=env.get("JOBS_TABLE", ""),
            idempotency_table=env.get("IDEMPOTENCY_TABLE", ""),
            api_keys_table=env.get("API_KEYS_TABLE", ""),
            queue_url=env.get("QUEUE_URL", ""),
            webhook_secret=env.get("WEBHOOK_SECRET", ""),
            webhook_secret_arn=env.get("WEBHOOK_SECRET_ARN", ""),
            max_audio_bytes=int(env.get("MAX_AUDIO_BYTES", cls.max_audio_bytes)),
            max_receive_count=int(env.get("MAX_RECEIVE_COUNT", cls.max_receive_count)),
            allow_local_callbacks=_flag("ALLOW_LOCAL_CALLBACKS"),
            job_ttl_days=int(env.get("JOB_TTL_DAYS", cls.job_ttl_days)),
            result_wait_seconds=float(env.get("RESULT_WAIT_SECONDS", cls.result_wait_seconds)),
            defaults=defaults,
        )


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings.from_env()
