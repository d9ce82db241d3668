"""template.yaml: lint-clean as written and after the SAM transform, and the invariants that keep
the pipeline safe (no recursion, no lost jobs, no public data, least privilege) hold.

Offline: cfn-lint and aws-sam-translator run in-process; the managed-policy lookup is stubbed.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from cfnlint.api import lint, lint_file  # noqa: E402
from cfnlint.config import ManualArgs  # noqa: E402
from cfnlint.context.parameters import ParameterSet  # noqa: E402

from whisperless.contract.naming import (  # noqa: E402
    AUDIO_EXTENSIONS,
    HIDDEN_PREFIX,
    OUTPUT_SUFFIXES,
    PARTS_PREFIX,
    REDACTED_AUDIO_SUFFIX,
    UNREDACTED_SUFFIX,
)
from whisperless.contract.speakers import CLIP_PREFIX, SPEAKERS_PREFIX  # noqa: E402
from whisperless.local.cloudformation import load_source, translate  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
REGION = "us-east-1"
MAX_LAMBDA_TIMEOUT = 900  # cfn-lint accepts 5400 (Managed Instances) everywhere; ordinary functions stop at 900
COMPUTE_MODES = ("cpu", "gpu-lambda")

# Values that make the GPU path's parameters well-formed, so the linter checks the real wiring.
GPU_PARAMETERS = {
    "GpuImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/whisperless:gpu",
    "GpuSubnetIds": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
    "GpuSecurityGroupIds": ["sg-0123456789abcdef0"],
}

# Actions AWS only grants on "*".
STAR_RESOURCE_ACTIONS = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "xray:GetSamplingStatisticSummaries",
    "cloudwatch:PutMetricData",  # only with a cloudwatch:namespace condition
}


@pytest.fixture(scope="module")
def source() -> dict:
    return load_source(TEMPLATE)


@pytest.fixture(scope="module")
def translated(source) -> dict:
    # The same translation the local stack deploys (placeholder code URIs, no managed-policy lookup).
    return translate(source, REGION)


def _resources(template: dict, type_: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


# ---------------------------------------------------------------------------------------------
# Linting
# ---------------------------------------------------------------------------------------------


def _describe(matches) -> list[str]:
    return [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches]


def test_cfn_lint_source_is_clean():
    matches = lint_file(TEMPLATE, config=ManualArgs(regions=[REGION]))
    assert _describe(matches) == []


@pytest.mark.parametrize("mode", COMPUTE_MODES)
def test_cfn_lint_translated_is_clean(translated, mode):
    # cfn-lint skips SAM resource types in the source; only the translated template shows cycles
    # (E3004), bad ARNs and property errors in what SAM generates.
    params = dict(GPU_PARAMETERS, ComputeMode=mode)
    config = ManualArgs(regions=[REGION], parameters=[ParameterSet(parameters=params)])
    matches = lint(json.dumps(translated, indent=1), config=config)
    assert _describe(matches) == []


# ---------------------------------------------------------------------------------------------
# Conditions: which resources exist in which compute mode
# ---------------------------------------------------------------------------------------------


def _param(template: dict, name: str, overrides: dict) -> str:
    if name in overrides:
        return str(overrides[name])
    return str(template["Parameters"][name].get("Default", ""))


def _eval(template: dict, expr: Any, overrides: dict) -> Any:
    if isinstance(expr, dict) and len(expr) == 1:
        ((fn, arg),) = expr.items()
        if fn == "Ref":
            return _param(template, arg, overrides)
        if fn == "Condition":
            return _condition(template, arg, overrides)
        if fn == "Fn::Equals":
            a, b = (_eval(template, x, overrides) for x in arg)
            return str(a) == str(b)
        if fn == "Fn::Not":
            return not _eval(template, arg[0], overrides)
        if fn == "Fn::And":
            return all(_eval(template, x, overrides) for x in arg)
        if fn == "Fn::Or":
            return any(_eval(template, x, overrides) for x in arg)
        raise AssertionError(f"condition function not understood by the test: {fn}")
    return expr


def _condition(template: dict, name: str, overrides: dict) -> bool:
    return bool(_eval(template, template["Conditions"][name], overrides))


def _active(template: dict, overrides: dict) -> dict[str, dict]:
    return {
        k: v
        for k, v in template["Resources"].items()
        if "Condition" not in v or _condition(template, v["Condition"], overrides)
    }


def _refers_to(value: Any, logical_id: str) -> bool:
    return value in ({"Fn::GetAtt": [logical_id, "Arn"]}, {"Ref": logical_id})


@pytest.mark.parametrize("mode", COMPUTE_MODES)
def test_exactly_one_consumer_of_the_job_queue(translated, mode):
    active = _active(translated, {"ComputeMode": mode})
    consumers = [
        v
        for v in active.values()
        if v["Type"] == "AWS::Lambda::EventSourceMapping" and _refers_to(v["Properties"]["EventSourceArn"], "JobQueue")
    ]
    assert len(consumers) == 1, f"{mode}: {len(consumers)} consumers of JobQueue"
    (function_ref,) = consumers[0]["Properties"]["FunctionName"].values()
    function = function_ref[0] if isinstance(function_ref, list) else function_ref
    assert function in active
    expected = "GpuTranscriberFunction" if mode == "gpu-lambda" else "TranscriberFunction"
    assert function == expected


# ---------------------------------------------------------------------------------------------
# Functions, queue, redelivery
# ---------------------------------------------------------------------------------------------


def test_function_timeouts(translated):
    functions = _resources(translated, "AWS::Lambda::Function")
    assert {"ApiFunction", "TranscriberFunction", "GpuTranscriberFunction"} <= set(functions)
    for name, fn in functions.items():
        timeout = fn["Properties"].get("Timeout", 3)
        assert isinstance(timeout, int) and timeout <= MAX_LAMBDA_TIMEOUT, name
    # HTTP API integrations stop at 30 s.
    assert functions["ApiFunction"]["Properties"]["Timeout"] < 30


def test_queue_visibility_covers_every_consumer(translated):
    queue = translated["Resources"]["JobQueue"]["Properties"]
    functions = _resources(translated, "AWS::Lambda::Function")
    for esm in _resources(translated, "AWS::Lambda::EventSourceMapping").values():
        if not _refers_to(esm["Properties"]["EventSourceArn"], "JobQueue"):
            continue
        (ref,) = esm["Properties"]["FunctionName"].values()
        name = ref[0] if isinstance(ref, list) else ref
        assert queue["VisibilityTimeout"] >= functions[name]["Properties"]["Timeout"], name
    assert queue["VisibilityTimeout"] <= 43200


def test_dead_letter_queue(translated):
    res = translated["Resources"]
    redrive = res["JobQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["JobDeadLetterQueue", "Arn"]}
    # One number for the queue and the transcriber (which answers the last delivery itself).
    assert redrive["maxReceiveCount"] == {"Ref": "JobMaxReceiveCount"}
    assert translated["Parameters"]["JobMaxReceiveCount"]["Default"] == 3
    for name in ("TranscriberFunction", "GpuTranscriberFunction"):
        if name in res:
            variables = res[name]["Properties"]["Environment"]["Variables"]
            assert variables["MAX_RECEIVE_COUNT"] == {"Ref": "JobMaxReceiveCount"}, name
    assert res["JobDeadLetterQueue"]["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    for name in ("JobQueue", "JobDeadLetterQueue"):
        assert res[name]["Properties"].get("SqsManagedSseEnabled") or res[name]["Properties"].get("KmsMasterKeyId")


def test_transcribers_report_batch_item_failures(translated):
    esms = [v["Properties"] for v in _resources(translated, "AWS::Lambda::EventSourceMapping").values()]
    assert len(esms) == 2  # CPU (from the SAM event) and GPU (explicit)
    for esm in esms:
        assert esm["BatchSize"] == 1
        assert "ReportBatchItemFailures" in esm["FunctionResponseTypes"]


def test_gpu_function_on_managed_instances(translated):
    fn = translated["Resources"]["GpuTranscriberFunction"]
    props = fn["Properties"]
    assert fn["Condition"] == "UseGpu"
    assert props["PackageType"] == "Image" and props["Architectures"] == ["x86_64"]
    assert "AcceleratorMemorySize" in props["AcceleratorConfig"]
    config = props["CapacityProviderConfig"]["LambdaManagedInstancesCapacityProviderConfig"]
    # One invocation per environment, or every runtime process loads its own model onto the GPU.
    assert config["PerExecutionEnvironmentMaxConcurrency"] == 1
    assert props["FunctionScalingConfig"]["MinExecutionEnvironments"] == 0
    assert translated["Resources"]["GpuCapacityProvider"]["Type"] == "AWS::Lambda::CapacityProvider"


TRANSCRIBER_ENV = {
    "BUCKET_NAME",
    "JOBS_TABLE",
    "IDEMPOTENCY_TABLE",
    "WEBHOOK_SECRET_ARN",
    "WHISPERLESS_MODEL",
    "WHISPERLESS_DIARIZATION_MODEL",
    "MAX_AUDIO_BYTES",
    "ALLOW_LOCAL_CALLBACKS",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "DEFAULT_DIARIZATION",
    "DEFAULT_LANGUAGE",
    "DEFAULT_TASK",
    "JOB_TTL_DAYS",
    "VOICES_TABLE",
    "QUEUE_URL",  # long jobs' chunk and merge tasks
    "WHISPERLESS_CHUNK_SECONDS",
}
API_ENV = {
    "BUCKET_NAME",
    "JOBS_TABLE",
    "VOICES_TABLE",
    "API_KEYS_TABLE",
    "QUEUE_URL",
    "RESULT_WAIT_SECONDS",
    "POWERTOOLS_SERVICE_NAME",
}


def test_environment(translated):
    res = translated["Resources"]

    def env(name):
        return res[name]["Properties"]["Environment"]["Variables"]

    assert API_ENV <= set(env("ApiFunction"))
    assert env("ApiFunction")["POWERTOOLS_SERVICE_NAME"] == "whisperless-api"
    for name in ("TranscriberFunction", "GpuTranscriberFunction"):
        assert TRANSCRIBER_ENV <= set(env(name)), name
        assert env(name)["POWERTOOLS_SERVICE_NAME"] == "whisperless-transcriber"
        assert env(name)["POWERTOOLS_METRICS_NAMESPACE"] == "Whisperless"
        assert env(name)["ALLOW_LOCAL_CALLBACKS"] == "false"
    # Same settings whichever function runs the jobs.
    assert env("TranscriberFunction").keys() <= env("GpuTranscriberFunction").keys()


def test_cpu_image_build_metadata(source):
    fn = source["Resources"]["TranscriberFunction"]
    meta = fn["Metadata"]
    assert meta["DockerBuildTarget"] == "cpu" and meta["DockerContext"] == "."
    dockerfile = (ROOT / meta["Dockerfile"]).read_text()
    for stage in ("cpu", "gpu"):
        assert re.search(rf"^FROM \S+ AS {stage}\s*$", dockerfile, re.M), stage
    props = fn["Properties"]
    assert props["MemorySize"] == 10240 and props["EphemeralStorage"]["Size"] == 10240


def test_layer(source):
    layer = source["Resources"]["SharedLayer"]
    assert layer["Properties"]["ContentUri"] == "layers/shared/"
    assert layer["Metadata"]["BuildMethod"] == "python3.12"
    assert (ROOT / "layers/shared/requirements.txt").is_file()


def test_http_api_routes(source):
    events = source["Resources"]["ApiFunction"]["Properties"]["Events"].values()
    routes = {(e["Properties"]["Method"], e["Properties"]["Path"]) for e in events if e["Type"] == "HttpApi"}
    assert routes == {
        ("POST", "/v1/transcriptions"),
        ("GET", "/v1/transcriptions"),
        ("GET", "/v1/transcriptions/{id}"),
        ("DELETE", "/v1/transcriptions/{id}"),
        ("POST", "/v1/uploads"),
        ("POST", "/v1/audio/transcriptions"),
        ("POST", "/v1/audio/translations"),
        ("GET", "/v1/health"),
        ("GET", "/v1/openapi.json"),
        ("POST", "/v1/speakers"),
        ("GET", "/v1/speakers"),
        ("DELETE", "/v1/speakers/{name}"),
    }


def test_outputs(source):
    assert {"ApiUrl", "BucketName", "JobQueueUrl", "WebhookSecretArn"} <= set(source["Outputs"])


# ---------------------------------------------------------------------------------------------
# Bucket and the upload -> job route
# ---------------------------------------------------------------------------------------------


def test_bucket_is_private_encrypted_and_named(translated):
    bucket = translated["Resources"]["AudioBucket"]["Properties"]
    assert bucket["BucketName"] == {"Fn::Sub": "${AWS::StackName}-audio-${AWS::AccountId}-${AWS::Region}"}
    block = bucket["PublicAccessBlockConfiguration"]
    assert all(
        block[k] is True for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
    )
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms", "aws:kms:dsse")
    lifecycle = bucket["LifecycleConfiguration"]["Rules"]
    assert any(r.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation") == 1 for r in lifecycle)
    # What a failed long job leaves under the hidden prefix expires.
    (parts,) = [r for r in lifecycle if r.get("Prefix") == HIDDEN_PREFIX]
    assert parts["Status"] == "Enabled" and 1 <= parts["ExpirationInDays"] <= 7
    assert bucket["NotificationConfiguration"]["EventBridgeConfiguration"]["EventBridgeEnabled"] is True
    # Uploads reach the queue through EventBridge only (an S3 notification could not exclude .json).
    for kind in ("LambdaConfigurations", "QueueConfigurations", "TopicConfigurations"):
        assert kind not in bucket["NotificationConfiguration"]


def test_bucket_policy_denies_insecure_transport(translated):
    policies = [
        p["Properties"]
        for p in _resources(translated, "AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": "AudioBucket"}
    ]
    assert len(policies) == 1
    statements = policies[0]["PolicyDocument"]["Statement"]
    deny = [
        s
        for s in statements
        if s["Effect"] == "Deny"
        and str(s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport")).lower() == "false"
    ]
    assert deny, "no statement denies aws:SecureTransport=false"
    assert deny[0]["Principal"] in ("*", {"AWS": "*"})
    resources = deny[0]["Resource"]
    assert {"Fn::GetAtt": ["AudioBucket", "Arn"]} in resources
    assert {"Fn::Sub": "${AudioBucket.Arn}/*"} in resources


def test_upload_rule_never_fires_for_results(translated):
    res = translated["Resources"]
    rule = res["AudioUploadedRule"]["Properties"]
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.s3"]
    assert pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["bucket"]["name"] == [{"Ref": "AudioBucket"}]
    # The recursion guard: only audio extensions (the code's own list, any case) become jobs, so the
    # <audio key>.json results and .srt/.vtt/.txt renderings next to the audio never do.
    keys = pattern["detail"]["object"]["key"]
    assert all(set(k) == {"suffix"} and set(k["suffix"]) == {"equals-ignore-case"} for k in keys)
    assert {k["suffix"]["equals-ignore-case"] for k in keys} == set(AUDIO_EXTENSIONS)
    assert not set(OUTPUT_SUFFIXES) & set(AUDIO_EXTENSIONS)
    assert [t["Arn"] for t in rule["Targets"]] == [{"Fn::GetAtt": ["JobQueue", "Arn"]}]

    policies = [
        p["Properties"]
        for p in _resources(translated, "AWS::SQS::QueuePolicy").values()
        if {"Ref": "JobQueue"} in p["Properties"]["Queues"]
    ]
    assert len(policies) == 1
    (statement,) = policies[0]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Condition"]["ArnEquals"]["aws:SourceArn"] == [
        {"Fn::GetAtt": ["AudioUploadedRule", "Arn"]},
        {"Fn::GetAtt": ["TranscriptionRequestedRule", "Arn"]},
        {"Fn::GetAtt": ["SpeakerDeletedRule", "Arn"]},
    ]


def test_deleted_speakers_objects_and_nothing_else_reach_the_queue(translated):
    rule = translated["Resources"]["SpeakerDeletedRule"]["Properties"]
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.s3"] and pattern["detail-type"] == ["Object Deleted"]
    assert pattern["detail"]["bucket"]["name"] == [{"Ref": "AudioBucket"}]
    assert pattern["detail"]["object"]["key"] == [{"prefix": SPEAKERS_PREFIX}]
    assert [t["Arn"] for t in rule["Targets"]] == [{"Fn::GetAtt": ["JobQueue", "Arn"]}]


def test_enrolment_clips_expire_and_voices_are_a_table_of_their_own(translated):
    rules = translated["Resources"]["AudioBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    (clips,) = [r for r in rules if r.get("Prefix") == CLIP_PREFIX]
    assert clips["Status"] == "Enabled" and clips["ExpirationInDays"] == 1
    table = translated["Resources"]["VoicesTable"]["Properties"]
    assert table["KeySchema"] == [
        {"AttributeName": "owner", "KeyType": "HASH"},
        {"AttributeName": "name", "KeyType": "RANGE"},
    ]


def test_transcription_requested_events_for_the_bucket_become_jobs(translated):
    rule = translated["Resources"]["TranscriptionRequestedRule"]["Properties"]
    assert rule["EventPattern"] == {
        "detail-type": ["Transcription Requested"],
        "detail": {"bucket": [{"Ref": "AudioBucket"}]},
    }
    bus = {"Fn::If": ["CreateEventBus", {"Fn::GetAtt": ["EventBus", "Name"]}, {"Ref": "EventBusName"}]}
    assert rule["EventBusName"] == bus
    assert [t["Arn"] for t in rule["Targets"]] == [{"Fn::GetAtt": ["JobQueue", "Arn"]}]


def test_tables(translated):
    res = translated["Resources"]
    expected = {
        "JobsTable": ("id", "expiresAt"),
        "IdempotencyTable": ("id", "expiration"),
        "ApiKeysTable": ("keyHash", None),
    }
    for name, (key, ttl) in expected.items():
        props = res[name]["Properties"]
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["KeySchema"] == [{"AttributeName": key, "KeyType": "HASH"}]
        assert props["SSESpecification"]["SSEEnabled"] is True
        if ttl:
            assert props["TimeToLiveSpecification"] == {"AttributeName": ttl, "Enabled": True}


# ---------------------------------------------------------------------------------------------
# Least privilege
# ---------------------------------------------------------------------------------------------


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _identity_statements(template: dict) -> Iterator[tuple[str, dict]]:
    for name, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                for st in _as_list(policy["PolicyDocument"]["Statement"]):
                    yield f"{name}/{policy['PolicyName']}", st
        elif resource["Type"] in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
            for st in _as_list(props["PolicyDocument"]["Statement"]):
                yield name, st


def test_iam_statements_are_least_privilege(translated):
    statements = list(_identity_statements(translated))
    assert len(statements) >= 8
    for where, st in statements:
        assert "NotAction" not in st and "NotResource" not in st, where
        if st.get("Effect") != "Allow":
            continue
        actions = _as_list(st["Action"])
        for action in actions:
            assert isinstance(action, str), where
            assert action != "*" and not action.endswith(":*"), f"{where}: wildcard action {action}"
        resources = _as_list(st["Resource"])
        if "*" in resources:
            assert set(actions) <= STAR_RESOURCE_ACTIONS, f"{where}: Resource '*' for {actions}"
            if "cloudwatch:PutMetricData" in actions:
                assert "cloudwatch:namespace" in json.dumps(st.get("Condition", {})), where


def _grants(translated: dict, role_names: set[str] | None = None, managed: set[str] = frozenset()) -> dict[str, list]:
    """action -> resources, over the inline policies of the given roles and the named managed policies."""
    out: dict[str, list] = {}
    for where, st in _identity_statements(translated):
        owner = where.split("/")[0]
        if owner in (role_names or set()) or owner in managed:
            for action in _as_list(st["Action"]):
                out.setdefault(action, []).extend(_as_list(st["Resource"]))
    return out


def test_transcriber_permissions(translated):
    res = translated["Resources"]
    cpu_role = res["TranscriberFunctionRole"]["Properties"]
    gpu_role = res["GpuTranscriberRole"]["Properties"]
    for role in (cpu_role, gpu_role):
        assert {"Ref": "TranscriberAccessPolicy"} in role["ManagedPolicyArns"]
    grants = _grants(translated, managed={"TranscriberAccessPolicy"})
    objects = {"Fn::Sub": "${AudioBucket.Arn}/*"}
    assert objects in grants["s3:GetObject"] and objects in grants["s3:PutObject"]
    # Deletes reach only the extra outputs a later job on the same key did not ask for again, and
    # the API's enrolment clips once they are voices, and long jobs' chunk parts under the hidden prefix.
    assert grants["s3:DeleteObject"] == [
        *({"Fn::Sub": "${AudioBucket.Arn}/*" + suffix} for suffix in (UNREDACTED_SUFFIX, REDACTED_AUDIO_SUFFIX)),
        {"Fn::Sub": "${AudioBucket.Arn}/" + PARTS_PREFIX + "*"},
        {"Fn::Sub": "${AudioBucket.Arn}/" + CLIP_PREFIX + "*"},
    ]
    # Long jobs: the transcriber queues their chunk and merge tasks on the job queue, nothing else.
    assert grants["sqs:SendMessage"] == [{"Fn::GetAtt": ["JobQueue", "Arn"]}]
    voices = {"Fn::GetAtt": ["VoicesTable", "Arn"]}
    assert {a for a, resources in grants.items() if voices in resources} == {
        "dynamodb:PutItem",
        "dynamodb:DeleteItem",
        "dynamodb:Query",
    }
    for action in ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"):
        assert {"Fn::GetAtt": ["JobsTable", "Arn"]} in grants[action]
        assert {"Fn::GetAtt": ["IdempotencyTable", "Arn"]} in grants[action]
    assert "secretsmanager:GetSecretValue" in grants
    bus = "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${EventBusName}"
    assert grants["events:PutEvents"] == [{"Fn::Sub": bus}]  # its own bus only
    gpu = _grants(translated, role_names={"GpuTranscriberRole"})
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"):
        assert gpu[action] == [{"Fn::GetAtt": ["JobQueue", "Arn"]}]


def test_api_permissions(translated):
    grants = _grants(translated, role_names={"ApiFunctionRole"})
    objects = {"Fn::Sub": "${AudioBucket.Arn}/*"}
    assert objects in grants["s3:PutObject"] and objects in grants["s3:GetObject"]
    assert {"Fn::GetAtt": ["JobsTable", "Arn"]} in grants["dynamodb:PutItem"]
    assert {"Fn::GetAtt": ["ApiKeysTable", "Arn"]} in grants["dynamodb:GetItem"]
    assert {"Fn::GetAtt": ["ApiKeysTable", "Arn"]} not in grants.get("dynamodb:PutItem", [])
    assert grants["sqs:SendMessage"] == [{"Fn::GetAtt": ["JobQueue", "Arn"]}]
    assert "secretsmanager:GetSecretValue" not in grants
    # DELETE /v1/transcriptions/{id}: the job's objects and record; GET /v1/transcriptions: the index only.
    assert grants["s3:DeleteObject"] == [objects]
    # ... and DELETE /v1/speakers/{name} a voice; GET /v1/speakers and knownSpeakers query voices.
    voices = {"Fn::GetAtt": ["VoicesTable", "Arn"]}
    assert grants["dynamodb:DeleteItem"] == [{"Fn::GetAtt": ["JobsTable", "Arn"]}, voices]
    assert grants["dynamodb:Query"] == [{"Fn::Sub": "${JobsTable.Arn}/index/byClient"}, voices]
    assert voices not in grants.get("dynamodb:PutItem", [])  # only the transcriber enrols


def test_jobs_are_listed_per_client_newest_first(translated):
    from whisperless.cloud.stores import CLIENT_INDEX

    props = translated["Resources"]["JobsTable"]["Properties"]
    (index,) = props["GlobalSecondaryIndexes"]
    assert index["IndexName"] == CLIENT_INDEX
    assert index["KeySchema"] == [
        {"AttributeName": "clientId", "KeyType": "HASH"},
        {"AttributeName": "createdAt", "KeyType": "RANGE"},
    ]
    assert "params" not in index["Projection"].get("NonKeyAttributes", [])  # callback URLs stay out


def test_one_event_bus_per_stack_unless_the_default_bus(source, translated):
    assert source["Parameters"]["EventBusName"]["Default"] == "default"
    bus = translated["Resources"]["EventBus"]
    assert bus["Condition"] == "CreateEventBus" and bus["Properties"]["Name"] == {"Ref": "EventBusName"}
    for function in ("TranscriberFunction", "GpuTranscriberFunction"):
        variables = translated["Resources"][function]["Properties"]["Environment"]["Variables"]
        assert variables["EVENT_BUS_NAME"] == {"Ref": "EventBusName"}


def test_cors_is_configured_once_on_the_http_api(source):
    cors = source["Resources"]["HttpApi"]["Properties"]["CorsConfiguration"]
    assert {"authorization", "content-type"} <= set(cors["AllowHeaders"])
    assert {"GET", "POST", "DELETE"} <= set(cors["AllowMethods"])


def test_generated_webhook_secret_is_a_base64_key(source):
    # The signer base64-decodes the secret (after an optional whsec_ prefix): letters and digits
    # only, in a length that is a multiple of 4, always decode.
    generate = source["Resources"]["WebhookSecret"]["Properties"]["GenerateSecretString"]
    assert generate["ExcludePunctuation"] is True
    assert generate["PasswordLength"] % 4 == 0 and generate["PasswordLength"] >= 44
    assert not generate.get("IncludeSpace")
