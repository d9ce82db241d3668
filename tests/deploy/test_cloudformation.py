"""The SAM-translated template in a CloudFormation engine (moto's): it creates its stack in both
compute modes, and a broken reference, condition or parameter fails stack creation.

cfn-lint checks the same template statically (tests/infra); this is the engine resolving every
``Ref``, ``Fn::GetAtt``, ``Fn::Sub`` and ``Condition`` with real parameter values.
"""

from __future__ import annotations

import copy
import warnings

import boto3
import pytest

from whisperless.local import cloudformation


def test_stack_is_created_in_both_compute_modes(account, translated):
    from moto.cloudformation.parsing import get_model_map

    supported = set(get_model_map())
    stacks = account.client("cloudformation")
    for deployment, gpu in ((account.cpu, False), (account.gpu, True)):
        (stack,) = stacks.describe_stacks(StackName=deployment.stack_name)["Stacks"]
        assert stack["StackStatus"] == "CREATE_COMPLETE"
        resources = stacks.describe_stack_resources(StackName=deployment.stack_name)["StackResources"]
        created = {r["LogicalResourceId"] for r in resources if r.get("LogicalResourceId")}
        for name, resource in translated["Resources"].items():
            if resource["Type"] not in supported:
                continue  # skipped by moto (cloudformation.py's docstring lists them)
            # Both stacks publish on the default bus (EventBusName unset), so no bus of their own.
            conditions = {"UseGpu": gpu, "UseCpu": not gpu, "CreateEventBus": False}
            wanted = conditions.get(resource.get("Condition", ""), True)
            assert (name in created) == wanted, (deployment.stack_name, name)
        assert deployment.environments["ApiFunction"]["QUEUE_URL"] == deployment.physical["JobQueue"]
    transcriber = account.cpu.environments["TranscriberFunction"]
    assert transcriber["WEBHOOK_SECRET_ARN"] == account.webhook_secret_arn
    assert transcriber["BUCKET_NAME"] == account.cpu.physical["AudioBucket"]
    # The GPU function gets every setting the CPU one does (same image, same handler).
    assert transcriber.keys() <= account.gpu.environments["GpuTranscriberFunction"].keys()


def _broken(translated: dict) -> dict[str, dict]:
    variants = {}

    def variant(name: str):
        template = copy.deepcopy(translated)
        variants[name] = template
        return template["Resources"]

    variant("reference to a missing resource")["ApiFunction"]["Properties"]["Environment"]["Variables"][
        "JOBS_TABLE"
    ] = {"Ref": "JobTable"}
    variant("attribute of a missing resource")["TranscriberAccessPolicy"]["Properties"]["PolicyDocument"]["Statement"][
        0
    ]["Resource"] = {"Fn::Sub": "${AudioBuckets.Arn}/*"}
    variant("attribute a resource does not have")["JobQueue"]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"] = {
        "Fn::GetAtt": ["JobDeadLetterQueue", "Url"]
    }
    variant("reference to a missing parameter")["JobQueue"]["Properties"]["RedrivePolicy"]["maxReceiveCount"] = {
        "Ref": "JobMaxReceiveCounts"
    }
    variant("missing condition")["TranscriberFunction"]["Condition"] = "UseCPU"
    template = copy.deepcopy(translated)
    template["Conditions"]["UseGpu"] = {"Fn::Equals": [{"Ref": "ComputeModes"}, "gpu-lambda"]}
    variants["condition on a missing parameter"] = template
    return variants


@pytest.fixture(scope="module")
def engine(translated):
    """moto's CloudFormation in this process, with the unbroken template created (the control)."""
    from moto import mock_aws

    with mock_aws(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        session = boto3.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1")
        secret = session.client("secretsmanager").create_secret(Name="s", SecretString="x")["ARN"]
        parameters = {"ExistingWebhookSecretArn": secret}
        cloudformation.deploy(session, translated, stack_name="control", parameters=parameters)
        yield session, parameters


@pytest.mark.parametrize(
    "breakage",
    [
        "reference to a missing resource",
        "attribute of a missing resource",
        "attribute a resource does not have",
        "reference to a missing parameter",
        "missing condition",
        "condition on a missing parameter",
    ],
)
def test_a_broken_template_fails_to_create(translated, engine, breakage):
    session, parameters = engine
    stack = "broken-" + breakage.replace(" ", "-")
    # moto raises (KeyError for a dangling Ref or Condition) or answers a ValidationError.
    with pytest.raises(Exception):  # noqa: B017, PT011 - any refusal counts; what matters is no stack
        cloudformation.deploy(session, _broken(translated)[breakage], stack_name=stack, parameters=parameters)
