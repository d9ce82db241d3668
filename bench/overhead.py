"""Overhead of our whole transcriber path against bare faster-whisper, warm.

    .venv/bin/python bench/overhead.py [--model base] [--audio FILE] [--repeat 3]

- ours: cloud.runner.JobRunner.handle(ObjectJob) against moto (S3, DynamoDB): head the object,
  record the job, download, decode, transcribe, build the result document, write it to S3,
  finish the job (idempotency included);
- bare: faster_whisper.WhisperModel.transcribe(file, word_timestamps=True, vad_filter=True,
  beam_size=5) with the same loaded model, segments consumed; and the same on the array that
  faster_whisper.decode_audio returns, decoding left out of the time (the strictest comparison).
Both run once untimed (warm-up), then alternate ``--repeat`` times; medians are compared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
for _name, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_TRACE_DISABLED": "true",
}.items():
    os.environ[_name] = _value
os.environ.pop("AWS_ENDPOINT_URL", None)

BUCKET = "bench-audio"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="base")
    parser.add_argument("--audio", default="")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from bench.quality import SAMPLE_DIR

    audio_path = Path(args.audio or SAMPLE_DIR / "sample.wav")
    import boto3
    from moto import mock_aws

    from whisperless.cloud.events import ObjectJob
    from whisperless.cloud.runner import JobRunner
    from whisperless.config import EngineSettings, Settings
    from whisperless.engine import Engine, models

    engine_settings = EngineSettings.from_env()
    whisper = models.load_whisper(args.model, engine_settings)
    body = audio_path.read_bytes()

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        dynamodb = boto3.resource("dynamodb", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        for table in ("jobs", "idempotency"):
            dynamodb.create_table(
                TableName=table,
                KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        settings = Settings(bucket=BUCKET, jobs_table="jobs", idempotency_table="idempotency")
        transcriber = JobRunner(s3=s3, dynamodb=dynamodb, settings=settings, engine=Engine(whisper_model=args.model))
        counter = iter(range(10**6))
        last_text: list[str] = []

        def ours() -> tuple[float, float]:
            key = f"in/job{next(counter)}{audio_path.suffix}"
            etag = s3.put_object(Bucket=BUCKET, Key=key, Body=body)["ETag"].strip('"')
            started = time.perf_counter()
            reply = transcriber.handle(ObjectJob(bucket=BUCKET, key=key, etag=etag))
            elapsed = time.perf_counter() - started
            assert reply["status"] == "completed", reply
            import json

            doc = json.loads(s3.get_object(Bucket=BUCKET, Key=key + ".json")["Body"].read())
            last_text[:] = [doc["text"]]
            return elapsed, doc["timings"]["total"]

        def bare(source=None) -> float:
            started = time.perf_counter()
            segments, _ = whisper.transcribe(
                str(audio_path) if source is None else source,
                word_timestamps=True,
                vad_filter=True,
                beam_size=engine_settings.beam_size,
            )
            texts.append(" ".join(s.text.strip() for s in segments))
            return time.perf_counter() - started

        from faster_whisper import decode_audio

        decoded = decode_audio(str(audio_path))  # for the array variant: decoding left out of its time
        texts: list[str] = []

        ours(), bare(), bare(decoded)  # warm-up: first-call costs on both sides
        load = os.getloadavg()[0]
        mine, engine_only, theirs, theirs_array, ratios, ratios_array = [], [], [], [], [], []
        for _ in range(args.repeat):
            b = bare()
            ba = bare(decoded)
            o, e = ours()
            theirs.append(b)
            theirs_array.append(ba)
            mine.append(o)
            engine_only.append(e)
            ratios.append(o / b)
            ratios_array.append(o / ba)
        same_text = len(set(texts)) == 1 and last_text[0] == texts[0]
    print(
        f"command: .venv/bin/python bench/overhead.py --model {args.model} --repeat {args.repeat}"
        + (f" --audio {args.audio}" if args.audio else "")
    )
    print(f"audio: {audio_path.name}; machine: {os.cpu_count()} cores; load {load:.2f} -> {os.getloadavg()[0]:.2f}")
    print(
        "| model | bare, file s | bare, decoded array s | JobRunner.handle s | of which engine s "
        "| ratio vs bare file (median) | ratio vs bare array (median) | ratios vs file | same text |"
    )
    print("|---" * 9 + "|")
    print(
        f"| {args.model} | {statistics.median(theirs):.2f} | {statistics.median(theirs_array):.2f} | "
        f"{statistics.median(mine):.2f} | {statistics.median(engine_only):.2f} | "
        f"{statistics.median(ratios):.3f}x | {statistics.median(ratios_array):.3f}x | "
        f"{' / '.join(f'{r:.3f}' for r in ratios)} | {'yes' if same_text else 'NO'} |"
    )


if __name__ == "__main__":
    main()
