"""webhooks: Standard Webhooks signatures (checked with the independent
``standardwebhooks`` package) and delivery with retries against real local
receivers on 127.0.0.1."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import socket
import threading
import time
import types
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks.webhooks import Webhook

from whisperless.cloud import webhooks

DOCUMENT = {
    "id": "job-1",
    "status": "completed",
    "language": "en",
    "text": "Hallo Wörld",
    "segments": [{"start": 0.0, "end": 1.5, "text": "Hallo Wörld"}],
}


def no_sleep(seconds):
    raise AssertionError(f"unexpected sleep({seconds})")


class Sleeps(list):
    def __call__(self, seconds):
        self.append(seconds)


@contextlib.contextmanager
def receiver(*replies):
    """Answers the n-th request with replies[n] = (status, headers); the last one repeats."""
    hits = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            hits.append((dict(self.headers), body, self.path))
            status, headers = replies[min(len(hits), len(replies)) - 1]
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/whisper", hits
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def silent_receiver():
    """Accepts connections (the kernel backlog does) and never answers."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=16)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    finally:
        listener.close()


def verify(secret, headers, body):
    return Webhook(secret).verify(body, {k.lower(): v for k, v in headers.items()})


# ------------------------------------------------------------ signing


def test_sign_matches_the_reference_library():
    secret = webhooks.new_secret()
    body = json.dumps(DOCUMENT).encode()
    now = int(time.time())
    headers = webhooks.sign(secret, "msg_1", now, body)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-timestamp"] == str(now)
    assert headers["webhook-signature"] == Webhook(secret).sign(
        "msg_1", datetime.fromtimestamp(now, tz=UTC), body.decode()
    )
    assert verify(secret, headers, body) == DOCUMENT


def test_sign_known_vector():
    # The Standard Webhooks reference test vector.
    headers = webhooks.sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    )
    assert headers["webhook-signature"] == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_new_secret_is_a_fresh_256_bit_whsec_key():
    first, second = webhooks.new_secret(), webhooks.new_secret()
    assert first != second
    assert first.startswith("whsec_")
    assert len(base64.b64decode(first[len("whsec_") :])) == 32


def test_wrong_secret_does_not_verify():
    body = b"{}"
    headers = webhooks.sign(webhooks.new_secret(), "m", int(time.time()), body)
    with pytest.raises(Exception, match="signature"):
        verify(webhooks.new_secret(), headers, body)


# ------------------------------------------------------------ delivery


def test_delivery_is_signed_and_verifiable():
    secret = webhooks.new_secret()
    with receiver((200, {})) as (url, hits):
        result = webhooks.deliver(url, DOCUMENT, secret=secret, msg_id="job-1", allow_loopback=True, sleep=no_sleep)
    assert (result.delivered, result.attempts, result.status, result.error) == (True, 1, 200, None)
    assert datetime.fromisoformat(result.last_attempt_at.replace("Z", "+00:00")).tzinfo is not None
    headers, body, path = hits[0]
    assert path == "/hooks/whisper"
    assert headers["Content-Type"] == "application/json"
    assert headers["webhook-id"] == "job-1"
    assert body == json.dumps(DOCUMENT, separators=(",", ":")).encode()  # compact JSON
    assert verify(secret, headers, body) == DOCUMENT
    assert result.to_dict()["delivered"] is True


def test_5xx_is_retried_with_the_same_id_and_fresh_signatures(monkeypatch):
    clock = itertools.count(int(time.time()))
    monkeypatch.setattr(webhooks, "time", types.SimpleNamespace(time=lambda: next(clock)))
    secret, sleeps = webhooks.new_secret(), Sleeps()
    with receiver((500, {}), (500, {}), (200, {})) as (url, hits):
        result = webhooks.deliver(url, DOCUMENT, secret=secret, msg_id="job-2", allow_loopback=True, sleep=sleeps)
    assert (result.delivered, result.attempts, result.status) == (True, 3, 200)
    assert len(hits) == 3
    assert {h["webhook-id"] for h, _, _ in hits} == {"job-2"}
    stamps = [int(h["webhook-timestamp"]) for h, _, _ in hits]
    assert stamps == sorted(set(stamps))  # a fresh timestamp per attempt
    assert len({h["webhook-signature"] for h, _, _ in hits}) == 3
    for headers, body, _ in hits:
        assert verify(secret, headers, body) == DOCUMENT
    assert sleeps == [1, 2]


def test_persistent_5xx_gives_up_after_max_attempts_with_backoff():
    sleeps = Sleeps()
    with receiver((503, {})) as (url, hits):
        result = webhooks.deliver(
            url, DOCUMENT, secret=webhooks.new_secret(), msg_id="j", allow_loopback=True, sleep=sleeps
        )
    assert (result.delivered, result.attempts, result.status) == (False, 5, 503)
    assert "503" in result.error
    assert len(hits) == 5
    assert sleeps == [1, 2, 4, 8]


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
def test_other_4xx_is_not_retried(status):
    with receiver((status, {})) as (url, hits):
        result = webhooks.deliver(
            url, DOCUMENT, secret=webhooks.new_secret(), msg_id="j", allow_loopback=True, sleep=no_sleep
        )
    assert (result.delivered, result.attempts, result.status) == (False, 1, status)
    assert str(status) in result.error
    assert len(hits) == 1


def test_408_is_retried():
    with receiver((408, {}), (204, {})) as (url, hits):
        result = webhooks.deliver(
            url, DOCUMENT, secret=webhooks.new_secret(), msg_id="j", allow_loopback=True, sleep=Sleeps()
        )
    assert (result.delivered, result.attempts, result.status) == (True, 2, 204)


@pytest.mark.parametrize(
    "retry_after,expected", [("3", 3), ("1000", webhooks.RETRY_AFTER_CAP), ("Wed, 21 Oct 2015 07:28:00 GMT", 1)]
)
def test_429_honours_a_numeric_retry_after(retry_after, expected):
    sleeps = Sleeps()
    with receiver((429, {"Retry-After": retry_after}), (200, {})) as (url, hits):
        result = webhooks.deliver(
            url, DOCUMENT, secret=webhooks.new_secret(), msg_id="j", allow_loopback=True, sleep=sleeps
        )
    assert (result.delivered, result.attempts) == (True, 2)
    assert sleeps == [expected]


def test_redirect_is_a_failure_and_not_followed():
    with receiver((200, {})) as (target, target_hits):
        with receiver((307, {"Location": target})) as (url, hits):
            result = webhooks.deliver(
                url, DOCUMENT, secret=webhooks.new_secret(), msg_id="j", allow_loopback=True, sleep=no_sleep
            )
    assert (result.delivered, result.attempts, result.status) == (False, 1, 307)
    assert "redirect" in result.error
    assert target_hits == []


def test_receiver_that_never_answers_times_out_on_every_attempt():
    sleeps = Sleeps()
    started = time.monotonic()
    with silent_receiver() as url:
        result = webhooks.deliver(
            url,
            DOCUMENT,
            secret=webhooks.new_secret(),
            msg_id="j",
            allow_loopback=True,
            max_attempts=3,
            timeout=(1, 0.2),
            sleep=sleeps,
        )
    assert (result.delivered, result.attempts, result.status) == (False, 3, None)
    assert "timed out" in result.error
    assert sleeps == [1, 2]
    assert time.monotonic() - started < 5


def test_connection_refused_is_retried_then_recorded():
    with socket.create_server(("127.0.0.1", 0)) as sock:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    result = webhooks.deliver(
        url, DOCUMENT, secret=webhooks.new_secret(), msg_id="j", allow_loopback=True, max_attempts=2, sleep=Sleeps()
    )
    assert (result.delivered, result.attempts) == (False, 2)
    assert result.error


@pytest.mark.parametrize(
    "url", ["http://10.0.0.1/hook", "http://169.254.169.254/", "ftp://example.com/", "http://user:pw@10.0.0.1/"]
)
def test_unsafe_url_is_not_attempted(url, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", forbidden)
    result = webhooks.deliver(url, DOCUMENT, secret=webhooks.new_secret(), msg_id="j", sleep=no_sleep)
    assert (result.delivered, result.attempts, result.status) == (False, 0, None)
    assert result.error


def test_loopback_receiver_refused_unless_allowed():
    with receiver((200, {})) as (url, hits):
        result = webhooks.deliver(url, DOCUMENT, secret=webhooks.new_secret(), msg_id="j", sleep=no_sleep)
    assert (result.delivered, result.attempts) == (False, 0)
    assert "port" in result.error or "loopback" in result.error
    assert hits == []


def test_unserialisable_document_is_reported_not_raised():
    result = webhooks.deliver(
        "http://127.0.0.1:9/",
        {"x": float("nan")},
        secret=webhooks.new_secret(),
        msg_id="j",
        allow_loopback=True,
        sleep=no_sleep,
    )
    assert (result.delivered, result.attempts) == (False, 0)
    assert "cannot send callback" in result.error
