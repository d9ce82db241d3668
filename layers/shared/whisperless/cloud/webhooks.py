"""Callback delivery, signed the Standard Webhooks way (https://www.standardwebhooks.com/).

Headers: ``webhook-id`` (the job id, the same on every retry), ``webhook-timestamp``
(unix seconds, fresh per attempt) and ``webhook-signature: v1,<base64 HMAC-SHA256>``
over ``"{id}.{timestamp}.{body}"``. The key is the base64 part of a ``whsec_...``
secret, decoded, exactly as the ``standardwebhooks`` receivers decode it.

Delivery goes through :mod:`whisperless.netguard`, so a callback URL can never
reach a private address or be redirected there.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from standardwebhooks import Webhook

from ..errors import WhisperlessError
from . import netguard

SECRET_PREFIX = "whsec_"
#: A receiver's Retry-After is honoured up to this many seconds.
RETRY_AFTER_CAP = 30.0


@dataclass
class Delivery:
    delivered: bool
    attempts: int
    status: int | None
    error: str | None
    last_attempt_at: str  # ISO 8601, UTC

    def to_dict(self) -> dict:
        return asdict(self)


def new_secret() -> str:
    """A fresh ``whsec_`` secret with a 256-bit key."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def check_secret(secret: str) -> None:
    """The library decodes leniently (any text becomes some key): refuse what is not base64."""
    encoded = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("webhook secret must be base64 (optionally prefixed with 'whsec_')") from None
    if not key:
        raise ValueError("webhook secret is empty")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body``, signed by the ``standardwebhooks`` library."""
    check_secret(secret)
    when = datetime.fromtimestamp(int(timestamp), tz=UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": Webhook(secret).sign(msg_id, when, body.decode("utf-8")),
    }


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _retry_after(headers: dict[str, str]) -> float | None:
    """A numeric Retry-After, capped; HTTP-date forms are ignored (we use our backoff)."""
    value = headers.get("retry-after", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None
    if seconds != seconds or seconds < 0:  # NaN or negative
        return None
    return min(seconds, RETRY_AFTER_CAP)


def _attempt(url, body, headers, allow_loopback, timeout):
    """One POST. Returns (status, error, retryable, retry_after)."""
    try:
        response = netguard.safe_request(
            "POST",
            url,
            field="callbackURL",
            allow_loopback=allow_loopback,
            headers=headers,
            data=body,
            timeout=timeout,
            # The receiver's answer body is never needed, so none of it is read.
            max_seconds=sum(timeout),
            read_body=False,
        )
    except netguard.FetchError as exc:
        return None, exc.message, True, None
    except WhisperlessError as exc:  # UnsafeURL (DNS changed under us) and the like
        return None, exc.message, False, None
    except Exception as exc:  # noqa: BLE001 - deliver() must never raise for a delivery problem
        return None, f"{type(exc).__name__}: {exc}", False, None

    status = response.status
    if 200 <= status < 300:
        return status, None, False, None
    if 300 <= status < 400:
        return status, f"receiver answered HTTP {status}; redirects are not followed", False, None
    return status, f"receiver answered HTTP {status}", netguard.passing_failure(status), _retry_after(response.headers)


def deliver(
    url: str,
    document: dict,
    *,
    secret: str,
    msg_id: str,
    allow_loopback: bool = False,
    max_attempts: int = 5,
    backoff: tuple[float, ...] = (1, 2, 4, 8),
    timeout: tuple[float, float] = (5, 15),
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """POST ``document`` to ``url``, retrying network errors, timeouts, 408, 429 and
    5xx with ``backoff`` (a numeric Retry-After wins, up to a cap). Never raises for
    delivery problems: the outcome is in the returned :class:`Delivery`."""
    try:
        body = json.dumps(document, separators=(",", ":"), allow_nan=False).encode("utf-8")
        check_secret(secret)
    except (TypeError, ValueError) as exc:
        return Delivery(False, 0, None, f"cannot send callback: {exc}", _now_iso())
    try:
        netguard.check_url(url, field="callbackURL", allow_loopback=allow_loopback)
    except WhisperlessError as exc:
        return Delivery(False, 0, None, exc.message, _now_iso())

    status = error = None
    attempted_at = _now_iso()
    attempts = 0
    for attempts in range(1, max(1, max_attempts) + 1):
        attempted_at = _now_iso()
        headers = {"Content-Type": "application/json", **sign(secret, msg_id, int(time.time()), body)}
        status, error, retryable, retry_after = _attempt(url, body, headers, allow_loopback, timeout)
        if error is None:
            return Delivery(True, attempts, status, None, attempted_at)
        if not retryable or attempts >= max_attempts:
            break
        if retry_after is None:
            retry_after = backoff[min(attempts - 1, len(backoff) - 1)] if backoff else 0
        sleep(retry_after)
    return Delivery(False, attempts, status, error, attempted_at)
