"""``whisperless serve``: start the local stack, print where it is, run until Ctrl-C or SIGTERM."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from .stack import TEMPLATE, LocalStack


def serve(args) -> int:
    stack = LocalStack(
        template=Path(args.template) if args.template else TEMPLATE,
        api_port=args.port or 0,
        api_key=args.api_key,
        allow_local_callbacks=args.allow_local_callbacks,
    )
    info = stack.start()
    print(
        f"whisperless local stack (state in memory: gone when this stops)\n"
        f"  API:      {info['api']}   (web page at {info['api']}/)\n"
        f"  S3:       {info['s3']}   bucket {info['bucket']}\n"
        f"  API key:  {info['apiKey']}\n"
        f"  callbacks signed with {info['webhookSecret']}"
        f"{'' if args.allow_local_callbacks else ' (loopback callbacks refused; --allow-local-callbacks)'}\n"
        f"Try:\n"
        f"  curl -H 'Authorization: Bearer {info['apiKey']}' -F file=@talk.mp3 -F diarization=true "
        f"{info['api']}/v1/transcriptions\n"
        f"  aws --endpoint-url {info['s3']} s3 cp talk.mp3 s3://{info['bucket']}/in/   "
        f"# then in/talk.mp3.json appears\n"
        f"Ctrl-C stops.",
        file=sys.stderr,
        flush=True,
    )
    print(json.dumps(info), flush=True)
    _wait_for_a_signal(stack)
    from ..config import settings

    grace = settings().stop_grace_seconds
    print(f"whisperless: stopping (a running job has {grace:.0f} s to finish; Ctrl-C again: now)", file=sys.stderr)
    if not stack.stop(grace):
        # A job that would not stop even when interrupted (a long step with no checkpoint): leave
        # without the interpreter's shutdown, which aborts while a CTranslate2 thread still runs.
        print("whisperless: a job did not stop; leaving it", file=sys.stderr, flush=True)
        logging.shutdown()
        os._exit(0)
    return 0


def _wait_for_a_signal(stack: LocalStack) -> None:
    """Until Ctrl-C or SIGTERM (SIGINT is installed explicitly: background jobs inherit it
    ignored). A second signal while stopping interrupts the running job at once."""
    stopping = threading.Event()

    def on_signal(signum, frame) -> None:
        if stopping.is_set():
            stack.interrupt()
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stopping.wait(1):
        pass
