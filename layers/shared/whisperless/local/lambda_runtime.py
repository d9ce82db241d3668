"""A function run as Lambda runs it: its own process, started by the runtime interface client
(``python -m awslambdaric app.handler``) in its task root with the environment Lambda gives it,
fetching invocations from a local Lambda Runtime API.

Lambda's file system too, where this machine allows it (root, mount namespaces): the process
sees every file read-only except an empty private ``/tmp``, as a function does (:func:`lambda_filesystem`).

The Runtime API here is the part awslambdaric speaks (``/runtime/invocation/next``, ``.../response``,
``.../error``, ``/runtime/init/error``), with the headers Lambda sends: the request id, the
deadline (the function's timeout), the function ARN and a trace id. One invocation at a time, as
in one execution environment. :mod:`whisperless.local.lambda_host` is the in-process counterpart
(events and contexts for handlers called directly); the deploy tests and ``bench/image_size.py``
use this one to check the runtime contract itself.
"""

from __future__ import annotations

import http.server
import json
import queue
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cloud.context import ACCOUNT, REGION

_PREFIX = "/2018-06-01/runtime"


# In a private mount namespace: $0 (an empty folder) becomes /tmp, then the root is remounted
# read-only; the command runs there. Other mounts (/proc, /dev) keep their flags.
_LAMBDA_FS = 'mount --bind "$0" /tmp && mount -o remount,ro,bind / && exec "$@"'


def lambda_filesystem(command: list[str], tmp: Path) -> list[str]:
    """``command`` run with Lambda's file system: all read-only but ``/tmp``, which is ``tmp``."""
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", _LAMBDA_FS, str(tmp), *command]


def lambda_filesystem_available() -> bool:
    """Whether :func:`lambda_filesystem` works here (it needs root, or CAP_SYS_ADMIN)."""
    import tempfile

    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        # The probe must not be able to write the folder above its /tmp.
        command = lambda_filesystem(["sh", "-c", f"! touch {tmp}/.."], Path(tmp))
        try:
            return subprocess.run(command, capture_output=True, timeout=30).returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False


class FunctionError(Exception):
    """The handler raised: Lambda's error payload (``errorType``, ``errorMessage``, ``stackTrace``)."""

    def __init__(self, payload: dict):
        super().__init__(f"{payload.get('errorType')}: {payload.get('errorMessage')}")
        self.payload = payload


class FunctionDied(Exception):
    """The process exited, or failed to initialise (``/init/error``), or timed out."""


@dataclass
class Invocation:
    event: Any
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    done: threading.Event = field(default_factory=threading.Event)
    started: float = 0.0  # when the function took it (monotonic)
    finished: float = 0.0
    response: Any = None
    error: dict | None = None

    @property
    def seconds(self) -> float:
        return self.finished - self.started


class RuntimeApi(http.server.ThreadingHTTPServer):
    """Lambda's Runtime API for one execution environment, on 127.0.0.1."""

    daemon_threads = True

    def __init__(self, function_name: str, timeout_s: float):
        self.function_name, self.timeout_s = function_name, timeout_s
        self.pending: queue.Queue[Invocation | None] = queue.Queue()
        self.running: dict[str, Invocation] = {}
        self.init_error: dict | None = None
        self.first_next: float | None = None  # when the runtime first asked for work: init is over
        super().__init__(("127.0.0.1", 0), _Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.pending.put(None)  # releases a waiting /next
        self.shutdown()
        self.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: RuntimeApi
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path != f"{_PREFIX}/invocation/next":
            return self._reply(404, {"errorMessage": f"no route {self.path}"})
        api = self.server
        if api.first_next is None:
            api.first_next = time.monotonic()
        invocation = api.pending.get()
        if invocation is None:  # shutting down
            self.close_connection = True
            return
        invocation.started = time.monotonic()
        api.running[invocation.request_id] = invocation
        deadline_ms = int((time.time() + api.timeout_s) * 1000)
        trace = f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=0"
        body = json.dumps(invocation.event).encode()
        self.send_response(200)
        for name, value in {
            "Content-Type": "application/json",  # awslambdaric 4.2.2 crashes without it
            "Content-Length": str(len(body)),
            "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
            "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{api.function_name}",
            "Lambda-Runtime-Trace-Id": trace,
        }.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        api = self.server
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path == f"{_PREFIX}/init/error":
            api.init_error = json.loads(body or b"{}")
            return self._reply(202, {"status": "OK"})
        parts = self.path[len(f"{_PREFIX}/invocation/") :].split("/")
        invocation = api.running.pop(parts[0], None) if len(parts) == 2 else None
        if invocation is None or parts[1] not in ("response", "error"):
            return self._reply(400, {"errorMessage": f"unknown invocation {self.path}"})
        invocation.finished = time.monotonic()
        if parts[1] == "response":
            invocation.response = json.loads(body) if body else None
        else:
            invocation.error = json.loads(body or b"{}")
        invocation.done.set()
        self._reply(202, {"status": "OK"})  # awslambdaric treats an empty 202 as a failure

    def _reply(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class LambdaProcess:
    """One execution environment: ``python -m awslambdaric <handler>`` started in ``task_root``
    with exactly ``environment`` plus what Lambda sets itself (function name, memory, log
    group, region, the Runtime API's address, the task root)."""

    def __init__(
        self,
        *,
        name: str,
        task_root: Path,
        environment: dict[str, str],
        python: Path | str = sys.executable,
        handler: str = "app.handler",
        timeout_s: float = 900,
        memory_mb: int = 10240,
        log: Path,
        tmp: Path | None = None,
    ):
        """``tmp``: an empty folder to be the function's ``/tmp``, with the rest of the file system
        read-only (:func:`lambda_filesystem`); None runs it on this machine's file system."""
        self.name, self.task_root, self.timeout_s, self.log = name, task_root, timeout_s, log
        self.api = RuntimeApi(name, timeout_s)
        lambda_env = {
            "AWS_LAMBDA_RUNTIME_API": self.api.address,
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": "local",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "LAMBDA_TASK_ROOT": str(task_root),
            "_HANDLER": handler,
            "TZ": ":UTC",
            "LANG": "en_US.UTF-8",
            "PATH": f"{Path(python).parent}:/usr/local/bin:/usr/bin:/bin",
        }
        self.environment = {**lambda_env, **environment}
        self.started = time.monotonic()
        self._log_file = log.open("ab")
        command = [str(python), "-m", "awslambdaric", handler]
        self.process = subprocess.Popen(
            lambda_filesystem(command, tmp) if tmp else command,
            cwd=task_root,
            env=self.environment,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    @property
    def init_seconds(self) -> float | None:
        """From the process start to its first request for work (imports, module-level setup)."""
        return None if self.api.first_next is None else self.api.first_next - self.started

    def invoke(self, event: Any, timeout_s: float | None = None) -> Invocation:
        """Run one invocation; raises :class:`FunctionError` when the handler raised, and
        :class:`FunctionDied` when the process died, failed its init or ran out of time."""
        invocation = Invocation(event)
        self.api.pending.put(invocation)
        deadline = time.monotonic() + (timeout_s or self.timeout_s + 60)
        while not invocation.done.wait(0.2):
            if self.api.init_error is not None:
                raise FunctionDied(f"{self.name}: init failed: {self.api.init_error}\n{self.log_tail()}")
            if self.process.poll() is not None:
                raise FunctionDied(f"{self.name}: exited with {self.process.returncode}\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise FunctionDied(f"{self.name}: no answer in time\n{self.log_tail()}")
        if invocation.error is not None:
            raise FunctionError(invocation.error)
        return invocation

    def log_tail(self, chars: int = 6000) -> str:
        self._log_file.flush()
        return self.log.read_bytes()[-chars:].decode("utf-8", "replace")

    def stop(self) -> None:
        # Lambda freezes an idle environment and later kills it: no signal protocol to honour.
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.api.close()
        self._log_file.close()
