"""Start the real local stack (`whisperless serve`) as a subprocess on free ports, for tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def running_stack(
    *extra_args: str,
    model: str = "tiny.en",
    startup_timeout: float = 120,
    result_wait: float = 120,
    env: dict[str, str] | None = None,
):
    """Yield the stack's JSON info line; stop it with SIGTERM and check it exited.

    ``result_wait``: the API's wait for a result before it answers 202. Locally there is no
    30 s gateway limit, and a loaded test machine may need longer than the deployed 25 s.
    ``env``: more environment variables for the stack. Nothing is remembered between test stacks
    (``--state none``) unless a test passes its own ``--state``."""
    env = {
        **os.environ,
        "WHISPERLESS_MODEL": model,
        "PYTHONUNBUFFERED": "1",
        "RESULT_WAIT_SECONDS": str(result_wait),
        **(env or {}),
    }
    if not any(arg.startswith("--state") for arg in extra_args):
        extra_args = (*extra_args, "--state", "none")
    proc = subprocess.Popen(
        [sys.executable, "-m", "whisperless.cli", "serve", *extra_args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + startup_timeout
        line = ""
        while time.monotonic() < deadline and not line:
            line = proc.stdout.readline()
            if proc.poll() is not None:
                raise RuntimeError(f"serve exited: {proc.stderr.read()[-2000:]}")
        info = json.loads(line)
        info["process"] = proc
        yield info
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # never leak a stack, even on a failing test
                proc.wait()


def local_aws(info: dict, service: str, resource: bool = False):
    """A boto3 client (or resource) for one of the local stack's AWS services (all on one port)."""
    import boto3

    factory = boto3.resource if resource else boto3.client
    return factory(
        service,
        endpoint_url=info["s3"],
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def stack_output(info: dict, name: str) -> str:
    """An output of the local stack's CloudFormation stack (as `aws cloudformation describe-stacks` shows it)."""
    cloudformation = local_aws(info, "cloudformation")
    (stack,) = cloudformation.describe_stacks(StackName=info["stack"])["Stacks"]
    return next(o["OutputValue"] for o in stack["Outputs"] if o["OutputKey"] == name)
