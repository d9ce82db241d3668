"""The callback: the finished document, signed, POSTed to the job's ``callbackURL``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ..config import Settings
from . import webhooks

log = logging.getLogger(__name__)


def webhook_secret(settings: Settings) -> str:
    # Not cached here: Powertools caches the secret for max_age, so a rotation is picked up.
    if settings.webhook_secret:
        return settings.webhook_secret
    if settings.webhook_secret_arn:
        from aws_lambda_powertools.utilities.parameters import get_secret

        return str(get_secret(settings.webhook_secret_arn, max_age=300))
    return ""


class Callbacks:
    def __init__(self, *, sleep: Callable[[float], None] = time.sleep, timeout: tuple[float, float] = (5, 15)):
        self.sleep = sleep
        self.timeout = timeout  # (connect, read) seconds per attempt

    def send(self, url: str, job_id: str, document: dict, settings: Settings) -> dict:
        """Deliver (with retries); the outcome, for the job record. Never raises for delivery problems."""
        secret = webhook_secret(settings)
        if not secret:
            log.error("job %s: no webhook secret configured; callback not sent", job_id)
            return {"delivered": False, "attempts": 0, "error": "no webhook secret configured"}
        return webhooks.deliver(
            url,
            document,
            secret=secret,
            msg_id=job_id,
            allow_loopback=settings.allow_local_callbacks,
            sleep=self.sleep,
            timeout=self.timeout,
        ).to_dict()
