"""End to end on the local stack (`whisperless serve`, started by tests/localstack.py):
upload -> result latency for one file, and throughput with N jobs submitted at once.

    .venv/bin/python bench/e2e.py [--model base] [--jobs 20] [--latency-runs 3] [--diarization]

Latency: S3 PUT of the file to the stack's bucket until `<key>.json` is listed next to it
(S3 -> EventBridge -> SQS -> worker -> transcriber handler -> result), the first job (cold:
models load) and then warm ones. Throughput: N uploads at once from N threads; time until all
N results exist, each checked to be `completed`; nothing may be lost or duplicated.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="base")
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--latency-runs", type=int, default=3)
    parser.add_argument("--diarization", action="store_true")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument(
        "--poll",
        type=float,
        default=0.2,
        help="seconds between result listings (moto shares the worker's process and GIL)",
    )
    args = parser.parse_args()
    import boto3

    from bench.quality import SAMPLE_DIR
    from localstack import running_stack

    body = (SAMPLE_DIR / "sample.wav").read_bytes()
    metadata = {"diarization": "true"} if args.diarization else {}
    started_stack = time.perf_counter()
    with running_stack(model=args.model, startup_timeout=300) as info:
        startup = time.perf_counter() - started_stack
        s3 = boto3.client(
            "s3",
            endpoint_url=info["s3"],
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        bucket = info["bucket"]

        def results(prefix: str) -> set[str]:
            keys, token = set(), None
            while True:
                page = s3.list_objects_v2(
                    Bucket=bucket, Prefix=prefix, **({"ContinuationToken": token} if token else {})
                )
                keys |= {o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".json")}
                if not page.get("IsTruncated"):
                    return keys
                token = page["NextContinuationToken"]

        def wait_for(prefix: str, count: int) -> float:
            deadline = time.monotonic() + args.timeout
            while time.monotonic() < deadline:
                if len(results(prefix)) >= count:
                    return time.perf_counter()
                time.sleep(args.poll)
            raise TimeoutError(f"{prefix}: {len(results(prefix))} of {count} results after {args.timeout} s")

        def document(key: str) -> dict:
            return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())

        def status(key: str) -> str:
            return document(key)["status"]

        latencies, engine_times = [], []
        for i in range(1 + args.latency_runs):
            prefix = f"latency/{i}/"
            t0 = time.perf_counter()
            s3.put_object(Bucket=bucket, Key=prefix + "sample.wav", Body=body, Metadata=metadata)
            latencies.append(wait_for(prefix, 1) - t0)
            doc = document(prefix + "sample.wav.json")
            assert doc["status"] == "completed"
            engine_times.append(doc["timings"]["total"])

        prefix = "burst/"
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(
                pool.map(
                    lambda i: s3.put_object(Bucket=bucket, Key=f"{prefix}{i:02d}.wav", Body=body, Metadata=metadata),
                    range(args.jobs),
                )
            )
        uploaded = time.perf_counter() - t0
        done = wait_for(prefix, args.jobs) - t0
        time.sleep(2)  # anything extra (a duplicate job) would show up as a second write, not a new key
        keys = results(prefix)
        statuses = [status(k) for k in sorted(keys)]
        # The queue must be empty afterwards: nothing left behind, nothing in flight.
        sqs = boto3.client(
            "sqs",
            endpoint_url=info["s3"],
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        leftover = {}
        for url in sqs.list_queues().get("QueueUrls", []):
            attrs = sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
            )["Attributes"]
            leftover[url.rsplit("/", 1)[-1]] = sum(int(v) for v in attrs.values())

    mode = "with diarization" if args.diarization else "no diarization"
    print(
        f"command: .venv/bin/python bench/e2e.py --model {args.model} --jobs {args.jobs} "
        f"--latency-runs {args.latency_runs}"
        + (" --diarization" if args.diarization else "")
        + (f" --poll {args.poll}" if args.poll != 0.2 else "")
    )
    print(f"machine: {os.cpu_count()} cores; load at end: {os.getloadavg()[0]:.2f}; stack start-up {startup:.1f} s")
    print(
        "| model | mode | first job (cold) s | warm latency s (median) | warm runs s | of which engine s | "
        "burst jobs | completed | all done after s | jobs/min | audio min/min | messages left |"
    )
    print("|---" * 12 + "|")
    print(
        f"| {args.model} | {mode} | {latencies[0]:.2f} | {statistics.median(latencies[1:]):.2f} | "
        f"{' / '.join(f'{x:.2f}' for x in latencies[1:])} | {statistics.median(engine_times[1:]):.2f} | "
        f"{args.jobs} (uploaded in {uploaded:.1f} s) | "
        f"{statuses.count('completed')} of {len(keys)} | {done:.1f} | {60 * args.jobs / done:.1f} | "
        f"{30 * args.jobs / done:.1f} | {sum(leftover.values())} |"
    )


if __name__ == "__main__":
    main()
