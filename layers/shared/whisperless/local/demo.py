"""``whisperless demo``: the local stack end to end on a bundled real recording, then stop."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from .stack import LocalStack


def demo(args) -> int:
    """Start the stack in-process, upload the bundled real sample to its bucket with
    diarization on, wait for the result next to it, print it, and stop."""
    import boto3
    import pyannote.audio

    from ..contract.formats import RENDERERS

    sample = Path(pyannote.audio.__file__).parent / "sample" / "sample.wav"
    stack = LocalStack()
    info = stack.start()
    key = "demo/sample.wav"
    try:
        s3 = boto3.client("s3")
        print(
            f"demo: local stack up; uploading {sample.name} (30 s, two speakers) to s3://{info['bucket']}/{key} "
            "with x-amz-meta-diarization: true",
            file=sys.stderr,
            flush=True,
        )
        started = time.monotonic()
        s3.upload_file(str(sample), info["bucket"], key, ExtraArgs={"Metadata": {"diarization": "true"}})
        while True:
            try:
                body = s3.get_object(Bucket=info["bucket"], Key=key + ".json")["Body"].read()
                break
            except s3.exceptions.NoSuchKey:
                if time.monotonic() - started > args.timeout:
                    print("demo: no result in time; see the log above", file=sys.stderr)
                    return 1
                time.sleep(0.5)
        document = json.loads(body)
        print(
            f"demo: s3://{info['bucket']}/{key}.json appeared after {time.monotonic() - started:.1f} s", file=sys.stderr
        )
        sys.stdout.write(RENDERERS[args.format](document))
        print(
            "\nNext:\n"
            "  .venv/bin/whisperless serve        # keep the stack running: HTTP API, S3, web page\n"
            "  curl -H 'Authorization: Bearer KEY' -F file=@talk.mp3 -F diarization=true "
            "http://127.0.0.1:PORT/v1/transcriptions\n"
            "  AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local \\\n"  # any key works with the local S3
            "    aws --endpoint-url http://127.0.0.1:S3PORT s3 cp talk.mp3 s3://BUCKET/in/  # in/talk.mp3.json\n"
            "  sam build && sam deploy --guided   # the same on AWS (template.yaml)",
            file=sys.stderr,
        )
        return 0 if document.get("status") == "completed" else 1
    finally:
        stack.stop(grace=10)  # the job finishes its record and event after the result appears
