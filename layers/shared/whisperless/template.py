"""Read template.yaml for the local stack: its buckets, tables, queues, the EventBridge
rule and the functions' environments, with intrinsics resolved to local names."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

REGION = "us-east-1"
ACCOUNT = "123456789012"


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation short tags (!Ref X -> {"Ref": "X"}, !GetAtt A.B -> {"Fn::GetAtt": [A, B]})."""


def _tag(loader: _CfnLoader, suffix: str, node: yaml.Node) -> dict:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag)


def load(path: str | Path) -> dict:
    return yaml.load(Path(path).read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass


class LocalTemplate:
    """Maps the template's resources to local names and resolves intrinsics against them."""

    def __init__(self, path: str | Path, prefix: str = "whisperless-local"):
        self.doc = load(path)
        self.resources: dict[str, dict] = self.doc.get("Resources", {})
        self.parameters = {name: str(p.get("Default", "")) for name, p in self.doc.get("Parameters", {}).items()}
        self.prefix = prefix
        self.queue_urls: dict[str, str] = {}

    def of_type(self, kind: str) -> list[str]:
        return [name for name, res in self.resources.items() if res.get("Type") == kind]

    def physical_name(self, logical: str) -> str:
        kind = self.resources[logical]["Type"]
        if kind == "AWS::S3::Bucket":
            return f"{self.prefix}-{logical.lower()}"
        return f"{self.prefix}-{logical}"

    def arn(self, logical: str) -> str:
        kind = self.resources[logical]["Type"]
        name = self.physical_name(logical)
        if kind == "AWS::SQS::Queue":
            return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"
        if kind == "AWS::S3::Bucket":
            return f"arn:aws:s3:::{name}"
        if kind == "AWS::DynamoDB::Table":
            return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"
        return f"arn:aws:local:{REGION}:{ACCOUNT}:{logical}"

    def ref(self, name: str) -> str:
        pseudo = {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::StackName": self.prefix,
                  "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com"}
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.resources:
            if self.resources[name]["Type"] == "AWS::SQS::Queue" and name in self.queue_urls:
                return self.queue_urls[name]
            return self.physical_name(name)
        raise KeyError(name)

    def resolve(self, value: Any) -> Any:
        """Resolve Ref, GetAtt (Arn), Sub, If and Join; anything else raises KeyError."""
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                logical, attribute = arg
                if attribute == "Arn":
                    return self.arn(logical)
                raise KeyError(f"{logical}.{attribute}")
            if key == "Fn::Sub":
                text = arg if isinstance(arg, str) else arg[0]
                return re.sub(r"\$\{([^}!]+)\}", lambda m: self.ref(m.group(1)), text)
            if key == "Fn::If":  # the local stack sets no Conditions: every one is false
                _, _, no = arg
                return self.resolve(no)
            if key == "Fn::Join":
                sep, items = arg
                return sep.join(str(i) for i in self.resolve(items))
            if key.startswith("Fn::") or key == "Condition":
                raise KeyError(key)
        return {k: self.resolve(v) for k, v in value.items()}

    def function_environment(self, logical: str) -> dict[str, str]:
        """Globals plus the function's own variables; values that need AWS (e.g. a secret ARN) are left out."""
        merged = dict(self.doc.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}))
        merged.update(self.resources[logical].get("Properties", {}).get("Environment", {}).get("Variables", {}))
        env = {}
        for name, raw in merged.items():
            try:
                value = self.resolve(raw)
            except KeyError:
                continue
            if isinstance(value, (str, int, float, bool)) and value != "AWS::NoValue":
                env[name] = str(value).lower() if isinstance(value, bool) else str(value)
        return env
