"""The running local stack (``whisperless serve``) as a user and an attacker meet it:

- bad audio is the caller's fault end to end: 422 with the failed document, on the synchronous
  API and for url jobs fetched from a real file server on loopback;
- its HTTP front judges a request by its head: no key or a body over 10 MB is answered before
  the body is read (the process's memory does not grow), malformed framing is a 400, chunked
  bodies work, a stalled client is answered 408 and dropped;
- it remembers who it is: a restart keeps its ports, API key and webhook secret, and the banner's
  S3 command works for a new user with no AWS credentials of their own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from urllib.parse import urlsplit

import pytest
import requests
from reliability_common import Receiver, speech_clip, wait_for, wav_bytes

from localstack import running_stack

pytestmark = pytest.mark.stack  # starts the local stack as a process
CLIENT_TIMEOUT = 3


@pytest.fixture(scope="module")
def stack():
    with running_stack("--allow-local-callbacks", "--client-timeout", str(CLIENT_TIMEOUT)) as info:
        yield info
    stderr = info["process"].stderr.read()
    assert info["process"].returncode == 0, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-3000:]  # nothing the clients below did crashed a handler


@pytest.fixture(scope="module")
def clip(sample_wav) -> bytes:
    return speech_clip(sample_wav, 3.0, start=6.4)


def auth(stack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack['apiKey']}"}


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def raw(stack, head: str, body: bytes = b"", *, timeout: float = 10) -> tuple[int, dict, bytes]:
    """One request written by hand on a socket; (status, headers, body) of the answer."""
    address = urlsplit(stack["api"])
    with socket.create_connection((address.hostname, address.port), timeout=timeout) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        return read_answer(sock)


def read_answer(sock: socket.socket) -> tuple[int, dict, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed without an answer: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(rest) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return int(lines[0].split()[1]), headers, rest


# ------------------------------------------------------------------ bad audio is the caller's fault


@pytest.mark.parametrize(
    "name, content, codes",
    [
        ("notes.mp3", b"these are meeting notes, not audio\n" * 200, {"not_audio"}),
        ("noise.wav", os.urandom(48_000), {"not_audio", "corrupt_audio"}),
        ("cut.mp3", None, {"not_audio", "corrupt_audio"}),  # the first 300 bytes of a real mp3
        ("header-only.wav", wav_bytes(data=b""), {"not_audio", "zero_length", "corrupt_audio"}),
    ],
)
def test_bad_audio_on_the_synchronous_api_is_a_422_with_the_failed_document(
    stack, tmp_path, sample_wav, name, content, codes
):
    if content is None:
        from conftest import encode

        content = encode(sample_wav, tmp_path / "a.mp3", "libmp3lame", seconds=3).read_bytes()[:300]
    reply = requests.post(
        f"{stack['api']}/v1/transcriptions", headers=auth(stack), files={"file": (name, content)}, timeout=120
    )
    assert reply.status_code == 422, reply.text
    document = reply.json()
    assert document["status"] == "failed" and document["error"]["code"] in codes
    status = requests.get(f"{stack['api']}/v1/transcriptions/{document['id']}", headers=auth(stack), timeout=30)
    assert status.json() == document


@pytest.mark.parametrize(
    "statuses, content, code, field",
    [
        ([200], b"<html><body>not the audio you are looking for</body></html>\n" * 50, "not_audio", None),
        ([404], b"", "download_failed", "url"),
    ],
)
def test_bad_audio_from_a_url_is_a_422_with_the_failed_document(stack, statuses, content, code, field):
    server = Receiver(statuses, content=content)  # a real file server on loopback
    try:
        reply = requests.post(
            f"{stack['api']}/v1/transcriptions", headers=auth(stack), json={"url": server.url}, timeout=120
        )
        assert reply.status_code == 422, reply.text
        document = reply.json()
        assert document["status"] == "failed" and document["error"]["code"] == code
        assert document["error"].get("field") == field
        assert len(server.requests) == 1  # the caller's fault: not fetched again
    finally:
        server.close()


# ------------------------------------------------------------------ the HTTP front


def test_a_body_is_judged_by_its_head_before_it_is_read(stack):
    """None of these bodies is sent at all: each answer can only come from the head. Over 10 MB
    is refused first (API Gateway's limit comes before the function), then a missing key."""
    pid = stack["process"].pid
    before = rss_mb(pid)
    head = "POST /v1/transcriptions HTTP/1.1\nHost: x\nContent-Type: multipart/form-data; boundary=b\n"
    key = f"Authorization: Bearer {stack['apiKey']}\n"
    for extra, length, status, code in [
        ("", 300_000_000, 413, "payload_too_large"),
        (key, 300_000_000, 413, "payload_too_large"),
        ("", 5_000_000, 401, "unauthorized"),
        ("Authorization: Bearer wl_not-a-key\n", 5_000_000, 401, "unauthorized"),
    ]:
        answer, headers, body = raw(stack, f"{head}{extra}Content-Length: {length}\n")
        assert (answer, json.loads(body)["error"]["code"]) == (status, code)
        if status == 401:
            assert headers.get("www-authenticate", "").startswith("Bearer")
    assert rss_mb(pid) - before < 20


@pytest.mark.parametrize("framing, status", [("content-length", 413), ("chunked", 401)])
def test_200_mb_sent_without_a_key_do_not_grow_the_process(stack, framing, status):
    """The body arrives anyway (a client that does not wait for the answer): the answer comes
    from the head (chunked: no size to judge, so the missing key), and what arrives after it is
    read and thrown away 10 MB at a time, never held. Was: 146 MB -> 743 MB."""
    pid = stack["process"].pid
    before, peak = rss_mb(pid), [0.0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    address = urlsplit(stack["api"])
    total, block = 200 * 1024 * 1024, b"\0" * (1024 * 1024)
    if framing == "chunked":
        head, piece = "Transfer-Encoding: chunked", b"100000\r\n" + block + b"\r\n"
    else:
        head, piece = f"Content-Length: {total}", block
    sent = 0
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.sendall(
            f"POST /v1/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            f"{head}\r\n\r\n".encode()
        )
        try:
            while sent < total:
                sock.sendall(piece)
                sent += len(block)
        except OSError:
            pass  # the server may close once it has answered and drained what it will
        answer, _, _ = read_answer(sock)
    done.set()
    sampler.join()
    assert answer == status
    assert peak[0] - before < 40, f"{before:.0f} MB -> {peak[0]:.0f} MB"
    print(
        f"200 MB ({framing}) without a key: {answer}, RSS {before:.0f} -> peak {peak[0]:.0f} MB, {sent >> 20} MB sent"
    )


@pytest.mark.parametrize("length", ["abc", "-5", "1e3", " 12 34", "0x10"])
def test_a_malformed_content_length_is_a_400(stack, length):
    status, _, body = raw(
        stack,
        f"POST /v1/transcriptions HTTP/1.1\nHost: x\nAuthorization: Bearer {stack['apiKey']}\n"
        f"Content-Length: {length}\n",
    )
    assert status == 400 and json.loads(body)["error"]["field"] == "Content-Length"


def test_a_twenty_digit_content_length_is_a_413(stack):
    status, _, body = raw(
        stack,
        f"POST /v1/transcriptions HTTP/1.1\nHost: x\nAuthorization: Bearer {stack['apiKey']}\n"
        f"Content-Length: {'9' * 20}\n",
    )
    assert status == 413 and json.loads(body)["error"]["code"] == "payload_too_large"


def test_both_framings_at_once_are_a_400(stack):
    status, _, body = raw(
        stack,
        f"POST /v1/transcriptions HTTP/1.1\nHost: x\nAuthorization: Bearer {stack['apiKey']}\n"
        "Content-Length: 5\nTransfer-Encoding: chunked\n",
        b"0\r\n\r\n",
    )
    assert status == 400 and json.loads(body)["error"]["field"] == "Content-Length"


def test_a_chunked_upload_is_transcribed(stack, clip):
    prepared = requests.Request(
        "POST", f"{stack['api']}/v1/transcriptions", headers=auth(stack), files={"file": ("a.wav", clip)}
    ).prepare()
    body = prepared.body

    def chunks():  # a generator body: requests sends it chunked
        for start in range(0, len(body), 7000):
            yield body[start : start + 7000]

    headers = {k: v for k, v in prepared.headers.items() if k.lower() != "content-length"}
    reply = requests.post(f"{stack['api']}/v1/transcriptions", headers=headers, data=chunks(), timeout=120)
    assert reply.status_code == 200, reply.text  # was: "file or url is required" (read as empty)
    assert reply.json()["status"] == "completed" and reply.json()["duration"] == 3.0


def test_a_chunked_body_over_10_mb_is_a_413(stack):
    def chunks():
        for _ in range(11):
            yield b"\0" * (1024 * 1024)

    reply = requests.post(
        f"{stack['api']}/v1/transcriptions",
        headers={**auth(stack), "Content-Type": "application/octet-stream"},
        data=chunks(),
        timeout=60,
    )
    assert reply.status_code == 413


def test_a_malformed_chunk_is_a_400(stack):
    status, _, body = raw(
        stack,
        f"POST /v1/transcriptions HTTP/1.1\nHost: x\nAuthorization: Bearer {stack['apiKey']}\n"
        "Content-Type: application/json\nTransfer-Encoding: chunked\n",
        b"zz\r\n{}\r\n0\r\n\r\n",
    )
    assert status == 400 and json.loads(body)["error"]["field"] == "body"


def test_a_body_that_stalls_is_answered_and_dropped(stack):
    started = time.monotonic()
    status, _, body = raw(
        stack,
        f"POST /v1/transcriptions HTTP/1.1\nHost: x\nAuthorization: Bearer {stack['apiKey']}\n"
        "Content-Type: application/json\nContent-Length: 1000\n",
        b'{"url": "ht',  # ... and then nothing
        timeout=CLIENT_TIMEOUT + 20,
    )
    took = time.monotonic() - started
    assert status == 408 and json.loads(body)["error"]["code"] == "request_timeout"
    assert CLIENT_TIMEOUT - 0.5 < took < CLIENT_TIMEOUT + 10


def test_routes_and_documents_as_before(stack):
    missing = requests.get(f"{stack['api']}/v1/nothing-here", headers=auth(stack), timeout=10)
    assert missing.status_code == 404 and missing.json() == {"message": "Not Found"}
    assert requests.get(f"{stack['api']}/v1/openapi.json", timeout=10).status_code == 200  # no key needed
    page = requests.get(f"{stack['api']}/", timeout=10)
    assert page.status_code == 200 and "<title>whisperless</title>" in page.text
    assert requests.get(f"{stack['api']}/../../etc/passwd", timeout=10).status_code == 404


# ------------------------------------------------------------------ who it is, across restarts


def test_a_restart_keeps_ports_key_and_secret_and_the_banner_s3_command_works(tmp_path, clip):
    from whisperless.cloud.webhooks import new_secret

    state = tmp_path / "stack.json"
    secret = new_secret()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s3_port = s.getsockname()[1]
    with running_stack("--state", str(state), "--s3-port", str(s3_port), "--webhook-secret", secret) as first:
        assert first["s3"] == f"http://127.0.0.1:{s3_port}" and first["webhookSecret"] == secret
    assert oct(state.stat().st_mode & 0o777) == "0o600"  # it holds the key and the secret

    with running_stack("--state", str(state)) as second:
        assert {k: second[k] for k in ("api", "s3", "apiKey", "webhookSecret")} == {
            k: first[k] for k in ("api", "s3", "apiKey", "webhookSecret")
        }
        banner = second["process"].stderr  # still open: read what it printed before the JSON line
        if shutil.which("aws") is None:
            pytest.skip("no aws command on this machine to run the banner's S3 command with")
        audio = tmp_path / "talk.wav"
        audio.write_bytes(clip)
        # A new user: no AWS credentials anywhere but the two variables the banner shows.
        home = tmp_path / "home"
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update({"HOME": str(home), "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"})
        command = ["aws", "--endpoint-url", second["s3"], "s3", "cp", str(audio), f"s3://{second['bucket']}/in/"]
        run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr

        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=second["s3"],
            region_name="us-east-1",
            aws_access_key_id="anything",
            aws_secret_access_key="at-all",
        )

        def finished():
            try:
                return json.loads(s3.get_object(Bucket=second["bucket"], Key="in/talk.wav.json")["Body"].read())
            except s3.exceptions.NoSuchKey:
                return None

        assert wait_for(finished, 120, interval=0.5, what="in/talk.wav.json")["status"] == "completed"
    text = banner.read()
    assert "any access key works" in text
    assert re.search(r"AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local aws --endpoint-url \S+ s3 cp", text)
