"""template.yaml as a stack in a local AWS: translated by ``aws-sam-translator`` (what ``sam deploy``
does), then created by moto's CloudFormation, so the local stack and the tests run on exactly
the resources, names and function environments the template declares.

Where moto's CloudFormation falls short, :func:`deploy` finishes the job by hand, and says so:
- it stores no bucket ``NotificationConfiguration``: EventBridge delivery is switched on here;
- it would invoke the functions behind SQS event source mappings itself, which needs Docker:
  the mappings are disabled, and the local stack's worker plays their part;
- it skips ``AWS::S3::BucketPolicy``, ``AWS::SQS::QueuePolicy`` and ``AWS::SecretsManager::Secret``
  (the webhook secret is created here and passed as ``ExistingWebhookSecretArn``);
- it creates roles without their ``ManagedPolicyArns``: :func:`deploy` resolves them
  (:attr:`Deployment.managed_policy_arns`) and :func:`attach_managed_policies` attaches them. The
  local stack, which does not enforce IAM, leaves that out: AWS managed policies exist in moto
  only with ``MOTO_IAM_LOAD_MANAGED_POLICIES=true``, which costs a second at start.
"""

from __future__ import annotations

import copy
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cloud.context import ACCOUNT, REGION

ARTIFACTS_BUCKET = "whisperless-local-artifacts"
_CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]


def load_source(path: str | Path) -> dict:
    """The SAM template as plain JSON types, short tags expanded (``!Ref X`` -> ``{"Ref": "X"}``)."""
    from cfnlint.decode.cfn_yaml import load

    return json.loads(json.dumps(load(str(path))))


class _NoManagedPolicies:
    """Stands in for the IAM ListPolicies lookup the translator makes for managed policy names."""

    def load(self) -> dict[str, str]:
        return {}


def with_placeholder_code(template: dict, region: str = REGION) -> dict:
    """``sam build``/``package`` would point functions and layers at uploaded artifacts."""
    template = copy.deepcopy(template)
    for name, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function":
            if props.get("PackageType") == "Image":
                props["ImageUri"] = f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com/whisperless:{name.lower()}"
            else:
                props["CodeUri"] = f"s3://{ARTIFACTS_BUCKET}/{name}.zip"
        elif resource["Type"] == "AWS::Serverless::LayerVersion":
            props["ContentUri"] = f"s3://{ARTIFACTS_BUCKET}/{name}.zip"
    return template


def translate(source: dict, region: str = REGION) -> dict:
    """The plain CloudFormation template SAM turns ``source`` into."""
    import os

    from samtranslator.translator.transform import transform

    # The translator reads the region from boto3's session; offline it must not look further.
    os.environ.setdefault("AWS_DEFAULT_REGION", region)
    return transform(with_placeholder_code(source, region), {}, _NoManagedPolicies())


def api_routes(translated: dict) -> list[tuple[str, str]]:
    """(METHOD, path) of every HTTP API route, from the OpenAPI body SAM generates."""
    routes = []
    for resource in translated["Resources"].values():
        if resource["Type"] != "AWS::ApiGatewayV2::Api":
            continue
        for path, methods in resource["Properties"].get("Body", {}).get("paths", {}).items():
            routes += [(method.upper(), path) for method in methods if not method.startswith("x-")]
    return sorted(routes)


def parameter_variables(source: dict) -> dict[str, str]:
    """{function environment variable: template parameter} for variables set from a parameter:
    a caller's environment may set these, as ``sam deploy --parameter-overrides`` would."""
    found: dict[str, str] = {}
    blocks = [source.get("Globals", {}).get("Function", {})] + [
        r.get("Properties", {}) for r in source["Resources"].values()
    ]
    for block in blocks:
        for name, value in block.get("Environment", {}).get("Variables", {}).items():
            if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in source.get("Parameters", {}):
                found[name] = value["Ref"]
    return found


@dataclass
class Deployment:
    """What the stack created: physical ids by logical id, and each function's environment."""

    stack_name: str
    translated: dict
    physical: dict[str, str] = field(default_factory=dict)
    environments: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Each role's ``ManagedPolicyArns``, resolved (moto's CloudFormation does not attach them).
    managed_policy_arns: dict[str, list[str]] = field(default_factory=dict)

    def of_type(self, kind: str) -> list[str]:
        return [
            name for name, res in self.translated["Resources"].items() if res["Type"] == kind and name in self.physical
        ]

    def queue_arn(self, logical: str) -> str:
        return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{self.physical[logical].rsplit('/', 1)[-1]}"


def deploy(session, translated: dict, *, stack_name: str, parameters: dict[str, str]) -> Deployment:
    """Create ``translated`` as ``stack_name`` with moto's CloudFormation (``session``: a boto3
    session pointed at moto), then fill in what moto leaves out (module docstring)."""
    s3 = session.client("s3")
    s3.create_bucket(Bucket=ARTIFACTS_BUCKET)
    for resource in translated["Resources"].values():
        code = resource.get("Properties", {}).get("Code") or resource.get("Properties", {}).get("Content") or {}
        if isinstance(code, dict) and code.get("S3Bucket") == ARTIFACTS_BUCKET:
            s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=code["S3Key"], Body=b"local stack: code runs in-process")
    cloudformation = session.client("cloudformation")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # moto warns for each resource type it skips (module docstring)
        cloudformation.create_stack(
            StackName=stack_name,
            TemplateBody=json.dumps(translated),
            Capabilities=_CAPABILITIES,
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        )
    stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    if stack["StackStatus"] != "CREATE_COMPLETE":
        raise RuntimeError(f"local stack {stack_name}: {stack['StackStatus']} {stack.get('StackStatusReason', '')}")
    deployment = Deployment(stack_name, translated)
    paginator = cloudformation.get_paginator("list_stack_resources")
    for page in paginator.paginate(StackName=stack_name):
        for summary in page["StackResourceSummaries"]:
            if summary.get("PhysicalResourceId"):
                deployment.physical[summary["LogicalResourceId"]] = summary["PhysicalResourceId"]

    for logical in deployment.of_type("AWS::S3::Bucket"):
        props = translated["Resources"][logical].get("Properties", {})
        if props.get("NotificationConfiguration", {}).get("EventBridgeConfiguration", {}).get("EventBridgeEnabled"):
            s3.put_bucket_notification_configuration(
                Bucket=deployment.physical[logical], NotificationConfiguration={"EventBridgeConfiguration": {}}
            )
    for logical in deployment.of_type("AWS::IAM::Role"):
        arns = translated["Resources"][logical]["Properties"].get("ManagedPolicyArns", [])
        deployment.managed_policy_arns[logical] = [_resolve(arn, deployment) for arn in arns]
    lambda_ = session.client("lambda")
    for logical in deployment.of_type("AWS::Lambda::EventSourceMapping"):
        lambda_.update_event_source_mapping(UUID=deployment.physical[logical], Enabled=False)
    for logical in deployment.of_type("AWS::Lambda::Function"):
        config = lambda_.get_function_configuration(FunctionName=deployment.physical[logical])
        variables: dict[str, Any] = config.get("Environment", {}).get("Variables", {})
        deployment.environments[logical] = {name: _text(value) for name, value in variables.items()}
    return deployment


def attach_managed_policies(session, deployment: Deployment) -> None:
    """Attach every role's ``ManagedPolicyArns`` as CloudFormation would (see the module docstring)."""
    iam = session.client("iam")
    for logical, arns in deployment.managed_policy_arns.items():
        for arn in arns:
            iam.attach_role_policy(RoleName=deployment.physical[logical], PolicyArn=arn)


_PSEUDO = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::URLSuffix": "amazonaws.com"}


def _resolve(value: Any, deployment: Deployment) -> str:
    """A policy ARN as the template writes it: a string, a ``Ref`` or a ``Fn::Sub`` of names."""
    names = {**_PSEUDO, "AWS::StackName": deployment.stack_name, **deployment.physical}
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in names:
        return names[value["Ref"]]
    if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        text = value["Fn::Sub"]
        for name in re.findall(r"\$\{([^}]+)\}", text):
            if name not in names:
                raise ValueError(f"cannot resolve ${{{name}}} in {text!r}")
            text = text.replace(f"${{{name}}}", names[name])
        return text
    raise ValueError(f"cannot resolve the managed policy {value!r}")


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
