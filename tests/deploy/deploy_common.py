"""What the deploy tests' fixtures (conftest.py) are made of: moto's server and the account in it,
the image stand-in, the functions' processes and Lambda's SQS event source mapping."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from whisperless.cloud.context import REGION
from whisperless.local import artifacts, cloudformation
from whisperless.local.lambda_host import sqs_event
from whisperless.local.lambda_runtime import (
    FunctionDied,
    FunctionError,
    Invocation,
    LambdaProcess,
    lambda_filesystem,
)

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
#: Where image paths of the Dockerfile live on this machine (the rest: see ``Image``).
IMAGE_MODELS = "/opt/whisperless/models"
#: The GPU stack's parameters that the cpu stack leaves at their defaults. The cpu stack runs the
#: default model (base, assembled into the baked, read-only models folder); the GPU stack's worker
#: runs tiny.en, which comes from its package (and is quicker).
GPU_PARAMETERS = {
    "ComputeMode": "gpu-lambda",
    "WhisperModel": "tiny.en",
    "GpuImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/whisperless:gpu",
    "GpuSubnetIds": "subnet-0123456789abcdef0",
    "GpuSecurityGroupIds": "sg-0123456789abcdef0",
}


# --------------------------------------------------------------------------- moto


@dataclass
class Moto:
    endpoint: str
    audit_file: Path
    process: subprocess.Popen

    def client(self, session: boto3.Session, service: str, **kwargs):
        return session.client(service, endpoint_url=self.endpoint, region_name=REGION, **kwargs)

    def records(self, since: int = 0) -> list[dict]:
        if not self.audit_file.exists():
            return []
        return [json.loads(line) for line in self.audit_file.read_text().splitlines()[since:]]

    def mark(self) -> int:
        return len(self.records())

    def enforce(self) -> None:
        import requests

        reply = requests.post(
            f"{self.endpoint}/moto-api/reset-auth", data=b"0", headers={"Content-Type": "text/plain"}, timeout=10
        )
        reply.raise_for_status()


class MotoEndpoints:
    """A boto3 session stand-in whose clients all go to moto (cloudformation.deploy's ``session``)."""

    def __init__(self, moto: Moto, session: boto3.Session):
        self.moto, self.session = moto, session

    def client(self, service: str, **kwargs):
        return self.moto.client(self.session, service, **kwargs)


# --------------------------------------------------------------------------- the account


@dataclass
class Account:
    moto: Moto
    admin: boto3.Session
    translated: dict
    cpu: cloudformation.Deployment
    gpu: cloudformation.Deployment
    #: role logical id ("ApiFunctionRole", ...) -> {"AccessKeyId", "SecretAccessKey", "SessionToken"}
    credentials: dict[str, dict[str, str]]
    webhook_secret_arn: str
    webhook_secret: str
    neighbour_secret_arn: str
    other_bucket: str
    api_key: str

    def client(self, service: str, role: str | None = None, **kwargs):
        session = self.admin if role is None else self.session(role)
        return self.moto.client(session, service, **kwargs)

    def session(self, role: str) -> boto3.Session:
        creds = self.credentials[role]
        return boto3.Session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
            region_name=REGION,
        )

    def role_environment(self, role: str) -> dict[str, str]:
        """What Lambda puts in a function's environment for its execution role."""
        creds = self.credentials[role]
        return {
            "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
            "AWS_SESSION_TOKEN": creds["SessionToken"],
        }

    def role_of_key(self, access_key_id: str) -> str | None:
        return next((role for role, c in self.credentials.items() if c["AccessKeyId"] == access_key_id), None)

    def denials(self, since: int) -> list[dict]:
        return [r for r in self.moto.records(since) if not r["allowed"]]

    def calls(self, role: str, since: int = 0) -> list[dict]:
        key = self.credentials[role]["AccessKeyId"]
        return [r for r in self.moto.records(since) if r["key"] == key]


def admin_user(moto: Moto) -> boto3.Session:
    bootstrap = boto3.Session(aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap", region_name=REGION)
    iam = moto.client(bootstrap, "iam")
    iam.create_user(UserName="deploy-tests")
    iam.put_user_policy(
        UserName="deploy-tests",
        PolicyName="everything",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    )
    key = iam.create_access_key(UserName="deploy-tests")["AccessKey"]
    return boto3.Session(
        aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"], region_name=REGION
    )


def create_stack(moto: Moto, admin: boto3.Session, translated: dict, name: str, parameters: dict[str, str]):
    return cloudformation.deploy(MotoEndpoints(moto, admin), translated, stack_name=name, parameters=parameters)


def admin_table(moto: Moto, admin: boto3.Session, name: str):
    return admin.resource("dynamodb", endpoint_url=moto.endpoint, region_name=REGION).Table(name)


# --------------------------------------------------------------------------- the artifacts


@dataclass
class Image:
    """One target of the transcriber image, laid out here."""

    target: str
    stage: artifacts.Stage
    task_root: Path
    copied: list[str]
    venv: Path
    python: Path
    models: Path
    packages: dict = field(default_factory=dict)

    def environment(self, tmp: Path | None = None) -> dict[str, str]:
        """The image's environment here; ``tmp``: where its ``/tmp`` is when the process does not
        run on Lambda's file system (lambda_filesystem makes ``/tmp`` itself)."""
        paths = {"/var/task": self.task_root, IMAGE_MODELS: self.models, "/opt/venv": self.venv, "/var/lang": self.venv}
        if tmp is not None:
            paths["/tmp"] = tmp
        env = self.stage.environment(paths)
        if tmp is not None:
            env["TMPDIR"] = str(tmp)
        return env


def build_image(dockerfile: artifacts.Dockerfile, target: str, dest: Path, models: Path | None = None) -> Image:
    stage = dockerfile.stage(target)
    task_root = dest / "task"
    copied = dockerfile.task_root(target, task_root)
    packages = dockerfile.packages(target)
    venv = dest / "venv"
    python = artifacts.python_environment(venv, packages.values())
    image = Image(target, stage, task_root, copied, venv, python, models or dest / "models", packages)
    if models is None:
        # As the Dockerfile's build stage does (with the packages installed then), into the folder
        # the image then serves them from.
        builder = artifacts.python_environment(dest / "build-venv", dockerfile.packages(target, build=True).values())
        env = {**image.environment(dest / "build-tmp"), "WHISPERLESS_CACHE": str(image.models)}
        (dest / "build-tmp").mkdir()
        done = subprocess.run(
            [str(builder), "-m", "whisperless.engine.bake"], cwd=task_root, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
    return image


def function_tmp(artifacts_dir: Path, name: str) -> Path:
    path = artifacts_dir / f"tmp-{name}"
    path.mkdir()
    return path


# --------------------------------------------------------------------------- functions


class QueuePoller(threading.Thread):
    """Lambda's SQS event source mapping: long-polls the queue with the function's role, invokes
    the function with a batch, deletes the messages that did not fail (ReportBatchItemFailures);
    a failed invocation leaves its batch to come back after the visibility timeout."""

    def __init__(self, sqs, queue_url: str, queue_arn: str, function: LambdaProcess, batch_size: int):
        super().__init__(daemon=True)
        self.sqs, self.queue_url, self.queue_arn = sqs, queue_url, queue_arn
        self.function, self.batch_size = function, batch_size
        self.invocations: list[Invocation] = []
        self.errors: list[BaseException] = []
        self.stopping = threading.Event()
        self.idle = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            messages = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=self.batch_size,
                WaitTimeSeconds=1,
                AttributeNames=["All"],
            ).get("Messages", [])
            if not messages:
                self.idle.set()
                continue
            self.idle.clear()
            try:
                invocation = self.function.invoke(sqs_event(messages, self.queue_arn))
            except FunctionError as exc:
                self.errors.append(exc)
                continue
            except FunctionDied as exc:
                self.errors.append(exc)
                return
            self.invocations.append(invocation)
            failed = {f["itemIdentifier"] for f in (invocation.response or {}).get("batchItemFailures", [])}
            for message in messages:
                if message["MessageId"] not in failed:
                    self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)


def event_source_of(translated: dict, function: str) -> dict:
    for resource in translated["Resources"].values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Lambda::EventSourceMapping" and props.get("FunctionName") == {"Ref": function}:
            return props
    raise AssertionError(f"no event source mapping for {function}")


@dataclass
class Transcriber:
    process: LambdaProcess
    poller: QueuePoller
    s3: Any  # the admin's: uploads and reads results
    bucket: str
    #: The process's first job, on a cold start: (its invocation, its result document)
    cold: tuple[Invocation, dict] | None = None

    def check(self) -> None:
        if self.poller.errors:
            raise AssertionError(f"{self.poller.errors[-1]}\n{self.process.log_tail()}")
        if not self.poller.is_alive():
            raise AssertionError(f"the event source mapping stopped\n{self.process.log_tail()}")

    def job(self, key: str, audio: bytes, metadata: dict[str, str] | None = None) -> tuple[Invocation, dict]:
        """Upload ``key`` (bucket -> EventBridge -> queue -> function) and wait for ``key.json``."""
        before = len(self.poller.invocations)
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=audio, Metadata=metadata or {})
        document = wait_for_object(self.s3, self.bucket, key + ".json", check=self.check)
        deadline = time.monotonic() + 60  # the record and the callback come after the result
        while len(self.poller.invocations) <= before and time.monotonic() < deadline:
            self.check()
            time.sleep(0.2)
        assert len(self.poller.invocations) > before, "the result appeared without an invocation"
        return self.poller.invocations[before], document


@dataclass
class ApiFunction:
    process: LambdaProcess
    task_root: Path
    layer: Path
    packages: dict

    def request(self, method: str, path: str, *, key: str | None, json_body: Any = None, files=None, data=None):
        """One request, as API Gateway (HTTP API, payload 2.0) hands it to the function."""
        import requests

        from support import Answer, to_event

        headers = {"Authorization": f"Bearer {key}"} if key else {}
        prepared = requests.Request(
            method, f"https://api.example.com{path}", headers=headers, json=json_body, files=files, data=data
        ).prepare()
        event = to_event(prepared)
        answer = Answer(self.process.invoke(event, timeout_s=120).response)
        answer.route = event["routeKey"]  # the template's route API Gateway matched
        return answer


def run_sandboxed(command: list[str], tmp: Path, lambda_fs: bool, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(lambda_filesystem(command, tmp) if lambda_fs else command, **kwargs)


# --------------------------------------------------------------------------- waiting


def wait_for_object(s3, bucket: str, key: str, timeout: float = 240, check=None) -> dict:
    """The JSON document at ``key`` once it exists; ``check()`` is called while waiting (to fail fast)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except s3.exceptions.NoSuchKey:
            if check:
                check()
            time.sleep(0.5)
    raise AssertionError(f"no s3://{bucket}/{key} after {timeout} s")
