"""Load on the real local stack (`whisperless serve`, a subprocess, tiny.en): 100 concurrent
API requests (the seed client's multipart call) and 100 concurrent S3 uploads of short
real-speech clips. No 5xx, no request answered with another request's job, every job
reaches a final state, every result exists, and the stack's memory stays bounded (its
RSS sampled from /proc). The figures go to RELIABILITY.md (printed with -s)."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from reliability_common import speech_clip

from localstack import local_aws, running_stack

pytestmark = pytest.mark.stack  # starts the local stack (or moto's server and a worker) as processes

API_REQUESTS = 100
UPLOADS = 100
SEED_FIELDS = {
    "fileType": "",
    "diarization": "",
    "numSpeakers": "",
    "initialPrompt": "",
    "language": "",
    "task": "",
    "callbackURL": "",
}
FINAL = {"completed", "failed"}
#: Bound on the stack's resident memory: the process with tiny.en and torch loaded sits
#: well under 1 GiB; 200 jobs must not add more than this on top of the first job.
MAX_RSS_GROWTH_MB = 400


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class Sampler(threading.Thread):
    def __init__(self, pid: int, every: float = 0.25):
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, float]] = []
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            try:
                self.samples.append((time.monotonic(), rss_mb(self.pid)))
            except (OSError, RuntimeError):
                return
            self.done.wait(self.every)


@pytest.fixture(scope="module")
def clip(sample_wav) -> bytes:
    return speech_clip(sample_wav, 2.5, start=3.5)


def test_100_api_requests_and_100_uploads_all_complete_with_bounded_memory(clip):
    with running_stack() as info:
        api, key = info["api"], info["apiKey"]
        auth = {"Authorization": f"Bearer {key}"}
        s3 = local_aws(info, "s3")
        sampler = Sampler(info["process"].pid)
        sampler.start()

        # Warm up: one job loads the model, so the bound below measures load, not start-up.
        with requests.post(
            f"{api}/v1/transcriptions", headers=auth, data=SEED_FIELDS, files={"file": ("warm.wav", clip)}, timeout=120
        ) as warm:
            assert warm.status_code == 200, warm.text
        baseline = rss_mb(info["process"].pid)
        started = time.monotonic()

        def post(i: int) -> tuple[int, int, dict]:
            reply = requests.post(
                f"{api}/v1/transcriptions",
                headers=auth,
                data=SEED_FIELDS,
                files={"file": (f"req{i:03d}.wav", clip)},
                timeout=120,
            )
            return i, reply.status_code, reply.json()

        def upload(i: int) -> str:
            key = f"load/up{i:03d}.wav"
            s3.put_object(Bucket=info["bucket"], Key=key, Body=clip)
            return key

        with ThreadPoolExecutor(max_workers=API_REQUESTS) as api_pool, ThreadPoolExecutor(max_workers=20) as s3_pool:
            uploads = list(s3_pool.map(upload, range(UPLOADS)))
            answers = list(api_pool.map(post, range(API_REQUESTS)))
        answered = time.monotonic() - started

        statuses = [status for _, status, _ in answers]
        assert all(status in (200, 202) for status in statuses), sorted(set(statuses))
        jobs = {}
        for i, status, body in answers:
            jobs[i] = body["id"]
            if status == 200:
                assert body["status"] == "completed"
                # The answer is this request's own job: its file, not a neighbour's.
                assert body["source"]["key"].endswith(f"/req{i:03d}.wav"), (i, body["source"])
        assert len(set(jobs.values())) == API_REQUESTS

        # Every job reaches a final state; every result exists.
        deadline = time.monotonic() + 300
        pending = dict(jobs)
        while pending and time.monotonic() < deadline:
            for i, job_id in list(pending.items()):
                reply = requests.get(f"{api}/v1/transcriptions/{job_id}", headers=auth, timeout=30)
                assert reply.status_code == 200, reply.text
                document = reply.json()
                if document["status"] in FINAL:
                    assert document["status"] == "completed", document
                    assert document["source"]["key"].endswith(f"/req{i:03d}.wav")
                    del pending[i]
            if pending:
                time.sleep(1)
        assert not pending, f"{len(pending)} API jobs never finished"

        missing = set(uploads)
        while missing and time.monotonic() < deadline:
            for key in sorted(missing):
                try:
                    document = json.loads(s3.get_object(Bucket=info["bucket"], Key=key + ".json")["Body"].read())
                except s3.exceptions.NoSuchKey:
                    continue
                assert document["status"] == "completed", document
                missing.discard(key)
            if missing:
                time.sleep(1)
        assert not missing, f"{len(missing)} uploads have no result"
        total = time.monotonic() - started
        sampler.done.set()
        sampler.join()

        peak = max(mb for _, mb in sampler.samples)
        figures = {
            "api_requests": API_REQUESTS,
            "uploads": UPLOADS,
            "answered_s": round(answered, 1),
            "all_final_s": round(total, 1),
            "answered_200": statuses.count(200),
            "answered_202": statuses.count(202),
            "rss_baseline_mb": round(baseline),
            "rss_peak_mb": round(peak),
            "rss_end_mb": round(sampler.samples[-1][1]),
        }
        print("load figures:", json.dumps(figures))
        assert peak - baseline < MAX_RSS_GROWTH_MB, figures
