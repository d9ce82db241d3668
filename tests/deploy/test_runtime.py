"""The runtime contract: the functions start as Lambda starts them and work there.

The transcriber runs as its image runs it (``python -m awslambdaric app.handler`` in a task root
holding only what the Dockerfile copies, the image's environment, models baked at build time, on a
file system that is read-only but ``/tmp``); an SQS event from moto goes in and a result comes out
in moto's bucket, under the function's role. A second invocation in the same process loads no
model. The API function runs from its zip and the layer as ``sam build`` makes them.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import time

import pytest

from deploy_common import ROOT
from whisperless.local.lambda_runtime import lambda_filesystem

LOAD_STAGES = ("load_whisper", "load_diarization")


def test_task_root_holds_what_the_dockerfile_copies_and_nothing_else(image, gpu_image):
    assert "app.py" in image.copied  # the handler CMD names: app.handler
    assert image.stage.cmd == gpu_image.stage.cmd == ["app.handler"]
    assert gpu_image.stage.entrypoint[-2:] == ["-m", "awslambdaric"]
    assert {"whisperless/__init__.py", "whisperless/cloud/runner.py", "whisperless/engine/pipeline.py"} <= set(
        image.copied
    )
    assert all(path in ("app.py", "requirements.txt") or path.startswith("whisperless/") for path in image.copied)
    assert not [path for path in image.copied if "__pycache__" in path or path.endswith((".pyc", ".egg-info"))]
    assert gpu_image.copied == image.copied, "both targets run the same code"


def test_each_image_target_holds_the_runtime_interface_client(image, gpu_image):
    # The gpu target's entrypoint is awslambdaric from its own pip line; the cpu target's base
    # image brings the runtime client (counted in by Dockerfile.packages).
    for target in (image, gpu_image):
        assert "awslambdaric" in target.packages, target.target
        assert "whisperless" not in target.packages  # the code runs from the task root


def test_the_function_sees_lambdas_file_system(image, artifacts_dir, lambda_fs):
    if not lambda_fs:
        pytest.skip("no mount namespaces here (needs root): the read-only file system is not enforced")
    tmp = artifacts_dir / "tmp-probe"
    tmp.mkdir()
    probe = (
        "import os, sys\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        open(os.path.join(path, 'probe'), 'w').close(); print(path, 'writable', sep='\\t')\n"
        "    except OSError as exc:\n"
        "        print(path, exc.strerror, sep='\\t')\n"
    )
    command = [str(image.python), "-c", probe, str(image.task_root), str(image.models), "/tmp", os.path.expanduser("~")]
    out = subprocess.run(lambda_filesystem(command, tmp), capture_output=True, text=True, check=True).stdout
    seen = dict(line.split("\t") for line in out.splitlines())
    home = os.path.expanduser("~")
    assert seen == {
        str(image.task_root): "Read-only file system",
        str(image.models): "Read-only file system",
        home: "Read-only file system",
        "/tmp": "writable",
    }
    assert (tmp / "probe").exists()


def test_transcriber_cold_then_warm_in_one_process(transcriber, hello_wav, account, no_denials):
    cold_invocation, cold = transcriber.cold
    assert cold["status"] == "completed", cold
    assert "hello" in cold["text"].lower()
    # Diarization ran (5 s with two voices; the second has 0.3 s of lone speech, under the 1 s our
    # clustering needs for a speaker of its own, so one or two speakers are found).
    assert cold["diarization"] and {t["speaker"] for t in cold["diarization"]} <= {"SPEAKER_00", "SPEAKER_01"}
    # A cold process loaded both models during its first job...
    assert all(cold["timings"][stage] > 0.05 for stage in LOAD_STAGES), cold["timings"]
    pid = transcriber.process.process.pid

    invocation, warm = transcriber.job("runtime/hello.wav", hello_wav, {"diarization": "true", "language": "en"})
    assert invocation.response == {"batchItemFailures": []}
    assert warm["status"] == "completed" and "hello" in warm["text"].lower()
    # ...and the next one, in the same process, loads nothing.
    assert transcriber.process.process.pid == pid and transcriber.process.process.poll() is None
    assert all(warm["timings"][stage] < 0.05 for stage in LOAD_STAGES), warm["timings"]
    job = account.client("dynamodb").get_item(
        TableName=account.cpu.physical["JobsTable"], Key={"id": {"S": warm["id"]}}
    )["Item"]
    assert job["status"]["S"] == "completed"

    budget = {
        "measured": time.strftime("%Y-%m-%d"),
        "by": "tests/deploy/test_runtime.py::test_transcriber_cold_then_warm_in_one_process",
        "machine": f"{os.cpu_count()} cores, {platform.machine()}",
        "audio_seconds": cold["duration"],
        "init_seconds": round(transcriber.process.init_seconds or 0, 2),
        "cold_invocation_seconds": round(cold_invocation.seconds, 2),
        "cold_timings": cold["timings"],
        "warm_invocation_seconds": round(invocation.seconds, 2),
        "warm_timings": warm["timings"],
    }
    out = ROOT / ".cache" / "deploy" / "cold-start.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(budget, indent=2) + "\n")
    print(json.dumps(budget))


def test_api_function_answers_through_the_runtime_client(api, translated, account, no_denials):
    answer = api.request("GET", "/v1/openapi.json", key=None)
    assert answer.status == 200
    from whisperless.local.cloudformation import api_routes

    def shape(path: str) -> str:  # the parameter's name differs ({id} in the template, {job_id} in code)
        return re.sub(r"\{[^}]*\}", "{}", path)

    documented = {(method, shape(path)) for method, path in api_routes(translated) if path != "/v1/openapi.json"}
    paths = answer.json["paths"]
    assert {(m.upper(), shape(p)) for p, ms in paths.items() for m in ms} == documented
    assert api.process.init_seconds is not None
    # What the layer's requirements.txt installs is what the function ran on: nothing else is on its path.
    assert "aws-lambda-powertools" in api.packages and "boto3" not in api.packages
