"""The deployment on this machine as AWS would run it; built once and shared by the deploy tests
(package scope: its processes stop before the other folders' tests run).

- ``moto``: moto's server in a process of its own, IAM enforced on the resources AWS judges
  (``iam_moto.py``), every decision written to an audit file the tests read.
- ``account``: template.yaml translated by SAM and created there by moto's CloudFormation twice,
  ``ComputeMode=cpu`` and ``gpu-lambda``; each role holds exactly the policies the translated
  template gives it (its ``ManagedPolicyArns`` attached, which moto's CloudFormation skips), and
  the tests act as each role with ``sts:AssumeRole`` credentials, as Lambda gives a function its
  role. The tests' own calls (uploads, checks) go through an admin user. Then IAM is enforced.
- ``image``: the transcriber image stand-in: the task root its Dockerfile copies, a virtual
  environment with exactly the target's packages, models baked by ``python -m
  whisperless.engine.bake``.
- ``transcriber``: TranscriberFunction as its own process (``python -m awslambdaric app.handler``)
  on Lambda's file system (read-only but ``/tmp``), fed by :class:`QueuePoller`, which does what
  the SQS event source mapping does, with the function's role.
- ``api``: ApiFunction likewise, from its zip and the layer as ``sam build`` makes them, on a
  Python holding only what Lambda's Python runtime provides (boto3, the runtime client).

The one change to the deployment's environment: ``ALLOW_LOCAL_CALLBACKS=true``, because callbacks
and URL downloads go to 127.0.0.1 here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import wave
from pathlib import Path
from typing import Any

import pytest

from deploy_common import (
    GPU_PARAMETERS,
    HERE,
    ROOT,
    Account,
    ApiFunction,
    Image,
    Moto,
    MotoEndpoints,
    QueuePoller,
    Transcriber,
    admin_table,
    admin_user,
    build_image,
    create_stack,
    event_source_of,
    function_tmp,
)
from whisperless.local import artifacts, cloudformation
from whisperless.local.lambda_runtime import LambdaProcess, lambda_filesystem_available


@pytest.fixture(scope="package")
def moto(artifacts_dir) -> Any:
    audit = artifacts_dir / "iam-audit.jsonl"
    env = {**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true", "PYTHONPATH": str(ROOT / "layers" / "shared")}
    env.pop("AWS_ENDPOINT_URL", None)
    log = (artifacts_dir / "moto.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, str(HERE / "iam_moto.py"), str(audit)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        env=env,
    )
    try:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"moto did not start: {(artifacts_dir / 'moto.log').read_text()[-3000:]}")
        yield Moto(json.loads(line)["endpoint"], audit, process)
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="package")
def translated() -> dict:
    return cloudformation.translate(cloudformation.load_source(ROOT / "template.yaml"))


@pytest.fixture(scope="package")
def account(moto, translated) -> Account:
    from whisperless.cloud.apikeys import add_key, new_key
    from whisperless.cloud.webhooks import new_secret

    admin = admin_user(moto)
    secrets = moto.client(admin, "secretsmanager")
    webhook_secret = new_secret()
    secret_arn = secrets.create_secret(Name="wl-webhook-secret", SecretString=webhook_secret)["ARN"]
    # A secret beside it that neither function may read.
    neighbour = secrets.create_secret(Name="wl-webhook-secret-other", SecretString=new_secret())["ARN"]
    endpoint = MotoEndpoints(moto, admin)
    cpu = create_stack(moto, admin, translated, "wl", {"ExistingWebhookSecretArn": secret_arn})
    gpu = create_stack(moto, admin, translated, "wlgpu", {**GPU_PARAMETERS, "ExistingWebhookSecretArn": secret_arn})
    credentials: dict[str, dict[str, str]] = {}
    iam, sts = moto.client(admin, "iam"), moto.client(admin, "sts")
    for deployment in (cpu, gpu):
        cloudformation.attach_managed_policies(endpoint, deployment)
        for logical in deployment.of_type("AWS::IAM::Role"):
            if logical in credentials:
                continue  # both stacks have it: the tests use the cpu stack's (the gpu stack's own roles: GPU only)
            arn = iam.get_role(RoleName=deployment.physical[logical])["Role"]["Arn"]
            # Lambda assumes the role for the function; moto's trust check cannot match the service
            # principal, so the role is assumed before IAM is enforced.
            credentials[logical] = sts.assume_role(RoleArn=arn, RoleSessionName=logical)["Credentials"]
    other_bucket = "wl-someone-elses-bucket"
    moto.client(admin, "s3").create_bucket(Bucket=other_bucket)
    moto.client(admin, "s3").put_object(Bucket=other_bucket, Key="private.txt", Body=b"not yours")
    api_key = new_key()
    add_key(admin_table(moto, admin, cpu.physical["ApiKeysTable"]), api_key, "tests")
    moto.enforce()
    return Account(
        moto=moto,
        admin=admin,
        translated=translated,
        cpu=cpu,
        gpu=gpu,
        credentials=credentials,
        webhook_secret_arn=secret_arn,
        webhook_secret=webhook_secret,
        neighbour_secret_arn=neighbour,
        other_bucket=other_bucket,
        api_key=api_key,
    )


@pytest.fixture(scope="package")
def artifacts_dir():
    # Not under /tmp: a function's /tmp is a private, empty folder (lambda_filesystem).
    path = Path(tempfile.mkdtemp(prefix="whisperless-deploy-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="package")
def lambda_fs() -> bool:
    # Lambda's /tmp replaces this machine's: a checkout (and its .venv) under /tmp would vanish
    # inside the sandbox, so there the functions run on the normal file system instead.
    checkout = Path(__file__).resolve().parents[2]
    if Path("/tmp") in (checkout, *checkout.parents) or Path("/tmp") in Path(sys.prefix).resolve().parents:
        return False
    return lambda_filesystem_available()


@pytest.fixture(scope="package")
def dockerfile() -> artifacts.Dockerfile:
    return artifacts.Dockerfile()


@pytest.fixture(scope="package")
def image(dockerfile, artifacts_dir) -> Image:
    return build_image(dockerfile, "cpu", artifacts_dir / "image-cpu")


@pytest.fixture(scope="package")
def gpu_image(dockerfile, artifacts_dir, image) -> Image:
    # Same models: both targets bake the same ones.
    return build_image(dockerfile, "gpu", artifacts_dir / "image-gpu", models=image.models)


@pytest.fixture(scope="package")
def transcriber(account, image, artifacts_dir, lambda_fs, hello_wav) -> Any:
    props = account.translated["Resources"]["TranscriberFunction"]["Properties"]
    tmp = function_tmp(artifacts_dir, "transcriber")
    env = {
        **image.environment(None if lambda_fs else tmp),
        **account.cpu.environments["TranscriberFunction"],
        **account.role_environment("TranscriberFunctionRole"),
        "AWS_ENDPOINT_URL": account.moto.endpoint,
        "ALLOW_LOCAL_CALLBACKS": "true",
    }
    process = LambdaProcess(
        name=account.cpu.physical["TranscriberFunction"],
        task_root=image.task_root,
        environment=env,
        python=image.python,
        timeout_s=props["Timeout"],
        memory_mb=props["MemorySize"],
        log=artifacts_dir / "transcriber.log",
        tmp=tmp if lambda_fs else None,
    )
    source = event_source_of(account.translated, "TranscriberFunction")
    queue_arn = source["EventSourceArn"]["Fn::GetAtt"][0]
    poller = QueuePoller(
        account.client("sqs", "TranscriberFunctionRole"),
        account.cpu.physical[queue_arn],
        account.cpu.queue_arn(queue_arn),
        process,
        source["BatchSize"],
    )
    poller.start()
    function = Transcriber(process, poller, account.client("s3"), account.cpu.physical["AudioBucket"])
    mark = account.moto.mark()
    try:
        function.cold = function.job("cold/hello.wav", hello_wav, {"diarization": "true", "language": "en"})
        assert account.denials(mark) == [], account.denials(mark)
        yield function
    finally:
        poller.stop()
        process.stop()


@pytest.fixture(scope="package")
def api(account, artifacts_dir, lambda_fs) -> Any:
    props = account.translated["Resources"]["ApiFunction"]["Properties"]
    task_root = artifacts.zip_function("api", artifacts_dir / "api-task")
    layer_python, layer_packages = artifacts.layer(artifacts_dir / "opt")
    runtime = artifacts.resolve(artifacts.LAMBDA_RUNTIME_PACKAGES)
    python = artifacts.python_environment(artifacts_dir / "python-runtime", runtime.values())
    tmp = function_tmp(artifacts_dir, "api")
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    env = {
        # Lambda's Python runtime puts a layer's python/ (and its site-packages) on the path.
        "PYTHONPATH": f"{layer_python}/lib/{version}/site-packages:{layer_python}",
        **account.cpu.environments["ApiFunction"],
        **account.role_environment("ApiFunctionRole"),
        "AWS_ENDPOINT_URL": account.moto.endpoint,
        "ALLOW_LOCAL_CALLBACKS": "true",
    }
    if not lambda_fs:
        env.update({"HOME": str(tmp), "TMPDIR": str(tmp)})
    process = LambdaProcess(
        name=account.cpu.physical["ApiFunction"],
        task_root=task_root,
        environment=env,
        python=python,
        timeout_s=props["Timeout"],
        memory_mb=props["MemorySize"],
        log=artifacts_dir / "api.log",
        tmp=tmp if lambda_fs else None,
    )
    yield ApiFunction(process, task_root, layer_python, layer_packages)
    process.stop()


@pytest.fixture(scope="package")
def hello_wav(sample_wav, artifacts_dir) -> bytes:
    """6.0-11.0 s of the real two-speaker sample: "Hello. Oh, hello. I didn't know you were there.
    Neither did I." (two speakers)."""
    with wave.open(str(sample_wav)) as source:
        rate = source.getframerate()
        source.setpos(int(6.0 * rate))
        frames = source.readframes(int(5.0 * rate))
        params = source.getparams()
    out = artifacts_dir / "hello.wav"
    with wave.open(str(out), "wb") as clip:
        clip.setparams(params)
        clip.writeframes(frames)
    return out.read_bytes()


@pytest.fixture
def no_denials(account):
    """Fails the test if anyone was refused anything during it (code that swallows an AccessDenied
    included: the audit sees every decision)."""
    mark = account.moto.mark()
    yield
    denied = account.denials(mark)
    assert denied == [], "\n".join(
        f"{account.role_of_key(r['key']) or r['key']}: {r['action']} on {r['resource']}: {r['error']}" for r in denied
    )
