"""``whisperless serve``: start the local stack, print where it is, run until Ctrl-C or SIGTERM."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from ..errors import ConfigError
from .stack import TEMPLATE, LocalStack


def serve(args) -> int:
    state = _state_path(args.state)
    remembered = _remembered(state)
    if args.webhook_secret:
        from ..cloud.webhooks import check_secret

        try:
            check_secret(args.webhook_secret)
        except ValueError as exc:
            raise ConfigError(str(exc), field="--webhook-secret") from None
    stack = LocalStack(
        template=Path(args.template) if args.template else TEMPLATE,
        api_port=_choose(args.port, remembered.get("apiPort")),
        s3_port=_choose(args.s3_port, remembered.get("s3Port")),
        api_key=args.api_key or remembered.get("apiKey"),
        webhook_secret=args.webhook_secret or remembered.get("webhookSecret"),
        allow_local_callbacks=args.allow_local_callbacks,
        client_timeout=args.client_timeout,
        workers=getattr(args, "workers", 1),
    )
    info = stack.start()
    if state is not None:
        _remember(state, info)
    print(
        f"whisperless local stack (state in memory: gone when this stops)\n"
        f"  API:      {info['api']}   (web page at {info['api']}/)\n"
        f"  S3:       {info['s3']}   bucket {info['bucket']}   (any access key works)\n"
        f"  events:   EventBridge bus {info['eventBus']} (source whisperless: Transcription Completed/Failed)\n"
        f"  API key:  {info['apiKey']}\n"
        f"  workers:  {info['workers']} (long recordings split every {info['chunkSeconds']:.0f} s)\n"
        f"  callbacks signed with {info['webhookSecret']}"
        f"{'' if args.allow_local_callbacks else ' (loopback callbacks refused; --allow-local-callbacks)'}\n"
        + (
            f"  remembered in {state}: a restart keeps these ports, key and secret "
            f"(--port/--s3-port/--api-key/--webhook-secret change them)\n"
            if state is not None
            else ""
        )
        + f"Try:\n"
        f"  curl -H 'Authorization: Bearer {info['apiKey']}' -F file=@talk.mp3 -F diarization=true "
        f"{info['api']}/v1/transcriptions\n"
        f"  AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local aws --endpoint-url {info['s3']} "
        f"s3 cp talk.mp3 s3://{info['bucket']}/in/   # then in/talk.mp3.json appears\n"
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


def _state_path(flag: str | None) -> Path | None:
    """Where the stack remembers its ports, key and secret: ``--state``, else the cache folder;
    ``--state none`` remembers nothing."""
    if flag is not None:
        return None if flag.strip().lower() in ("", "none") else Path(flag).expanduser()
    from ..config import engine_settings

    return engine_settings().cache_dir / "local" / "stack.json"


def _remembered(state: Path | None) -> dict:
    if state is None or not state.is_file():
        return {}
    try:
        value = json.loads(state.read_text())
    except (OSError, ValueError) as exc:
        print(f"whisperless: ignoring {state} ({exc})", file=sys.stderr)
        return {}
    return value if isinstance(value, dict) else {}


def _choose(flag: int | None, remembered: object) -> int:
    """A port given on the command line (0: a free one), else the remembered one, else a free one."""
    if flag is not None:
        return flag
    return remembered if isinstance(remembered, int) and 0 < remembered < 65536 else 0


def _remember(state: Path, info: dict) -> None:
    """Ports, key and secret for the next start; the file holds secrets: only its owner reads it."""
    identity = {
        "apiPort": int(info["api"].rsplit(":", 1)[1]),
        "s3Port": int(info["s3"].rsplit(":", 1)[1]),
        "apiKey": info["apiKey"],
        "webhookSecret": info["webhookSecret"],
    }
    state.parent.mkdir(parents=True, exist_ok=True)
    partial = state.with_name(state.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(identity, out, indent=2)
    partial.replace(state)


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
