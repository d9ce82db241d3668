"""``whisperless serve``: start the local stack, print where it is, run until Ctrl-C or SIGTERM."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

from .stack import TEMPLATE, LocalStack


def _interrupt(signum, frame):
    raise KeyboardInterrupt


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
        f"  events:   EventBridge bus {info['eventBus']} (source whisperless: Transcription Completed/Failed)\n"
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
    # Ctrl-C and SIGTERM both stop cleanly (SIGINT is installed explicitly: background jobs inherit it ignored).
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("whisperless: stopping", file=sys.stderr)
    finally:
        stack.stop()
    return 0
