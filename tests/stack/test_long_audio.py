"""A long recording through `whisperless serve` (WHISPERLESS_CHUNK_SECONDS=30, two workers,
tiny.en): one upload, four chunk tasks on the queue run side by side, one merge; one result whose
speakers are the same people across chunks, one signed callback, progress that moves while it
runs, and nothing left under the bucket's hidden prefix."""

from __future__ import annotations

import time

import requests
from standardwebhooks.webhooks import Webhook

from localstack import local_aws, running_stack
from support import Receiver, long_recording


def _voices(doc: dict, start: float, end: float, share: float = 0.15) -> set[str]:
    talk: dict[str, float] = {}
    for turn in doc["diarization"]:
        overlap = min(turn["stopTime"], end) - max(turn["startTime"], start)
        if overlap > 0:
            talk[turn["speaker"]] = talk.get(turn["speaker"], 0.0) + overlap
    total = sum(talk.values())
    return {speaker for speaker, seconds in talk.items() if seconds >= share * total}


def test_a_long_recording_is_split_run_at_once_and_merged(tmp_path):
    recording = long_recording(tmp_path / "meeting.wav")
    receiver = Receiver([200])
    env = {"WHISPERLESS_CHUNK_SECONDS": "30"}
    try:
        with running_stack("--allow-local-callbacks", "--workers", "2", env=env) as stack:
            assert stack["workers"] == 2 and stack["chunkSeconds"] == 30
            auth = {"Authorization": f"Bearer {stack['apiKey']}"}
            with recording.open("rb") as audio:
                reply = requests.post(
                    f"{stack['api']}/v1/transcriptions",
                    headers=auth,
                    data={"diarization": "true", "language": "en", "callbackURL": receiver.url},
                    files={"file": audio},
                    timeout=60,
                )
            assert reply.status_code == 202, reply.text
            job_id = reply.json()["id"]
            seen = []
            deadline = time.monotonic() + 600
            while not receiver.requests and time.monotonic() < deadline:
                status = requests.get(f"{stack['api']}/v1/transcriptions/{job_id}", headers=auth, timeout=10).json()
                if status["status"] != "completed":
                    seen.append((status["progress"], status["stage"], status.get("chunks")))
                time.sleep(0.5)
            assert receiver.requests, "no callback"
            assert len(receiver.requests) == 1
            headers, body = receiver.requests[0]
            doc = Webhook(stack["webhookSecret"]).verify(body, headers)
            assert doc["id"] == job_id and doc["status"] == "completed" and doc["chunks"] == 4
            # Progress moved, never back, through the chunks (done of 4) to the merge.
            progress = [p for p, _, _ in seen]
            assert progress == sorted(progress) and len(set(progress)) >= 3
            assert any(chunks and chunks["total"] == 4 for _, _, chunks in seen)
            assert {stage for _, stage, _ in seen} >= {"chunks"}
            # The pyannote sample at 0-30 s and again at 60-90 s: the same two labels both times.
            assert len(_voices(doc, 0, 30)) == 2 and _voices(doc, 0, 30) == _voices(doc, 60, 90)
            assert "hello" in doc["text"].lower() and "java" in doc["text"].lower()
            s3 = local_aws(stack, "s3")
            hidden = s3.list_objects_v2(Bucket=stack["bucket"], Prefix=".whisperless/")
            assert hidden.get("KeyCount", 0) == 0
            final = requests.get(f"{stack['api']}/v1/transcriptions/{job_id}", headers=auth, timeout=10).json()
            assert final == doc
    finally:
        receiver.close()
