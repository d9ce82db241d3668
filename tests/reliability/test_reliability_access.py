"""Access: who may do what, on the real local stack and in the template.

- no key, a wrong key and a disabled client's key are refused (401/401/403) on every route;
- a job is visible only to the client that created it: another client's GET is the same
  404 as a job that does not exist, before and after it completes;
- the bucket refuses non-TLS access and public access (template.yaml; tests/test_template.py
  checks the translated template too);
- presigned upload URLs expire: moto accepts expired and even unsigned PUTs (checked
  below), so the URL's expiry and signature are verified here with SigV4 itself;
- a presigned upload on the local stack goes to the local bucket and starts the job."""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote, urlsplit

import boto3
import pytest
import requests
from botocore.config import Config
from reliability_common import ROOT, speech_clip, wait_for, wav_bytes

from localstack import local_aws, running_stack, stack_output
from support import create_tables, set_aws_env
from whisperless.cloud import apikeys

pytestmark = pytest.mark.stack  # starts the local stack (or moto's server and a worker) as processes

SEED_FIELDS = {
    "fileType": "",
    "diarization": "",
    "numSpeakers": "",
    "initialPrompt": "",
    "language": "",
    "task": "",
    "callbackURL": "",
}
KEY_B = "wl_reliability_local_client_b"
KEY_OFF = "wl_reliability_local_disabled"


@pytest.fixture(scope="module")
def stack():
    with running_stack() as info:
        dynamodb = local_aws(info, "dynamodb", resource=True)
        keys = dynamodb.Table(stack_output(info, "ApiKeysTableName"))
        apikeys.add_key(keys, KEY_B, "client-b")
        apikeys.add_key(keys, KEY_OFF, "client-off", enabled=False)
        yield info


@pytest.fixture(scope="module")
def clip(sample_wav) -> bytes:
    return speech_clip(sample_wav, 2.5, start=3.5)


def _auth(key: str | None) -> dict:
    return {"Authorization": f"Bearer {key}"} if key is not None else {}


@pytest.mark.parametrize("key, status", [(None, 401), ("", 401), ("wl_not_a_key", 401), (KEY_OFF, 403), ("Basic", 401)])
def test_keys_that_open_nothing(stack, key, status):
    api = stack["api"]
    headers = _auth(key) if key != "Basic" else {"Authorization": "Basic bG9jYWw6bG9jYWw="}
    calls = [
        requests.post(
            f"{api}/v1/transcriptions",
            headers=headers,
            data=SEED_FIELDS,
            files={"file": ("a.wav", wav_bytes())},
            timeout=30,
        ),
        requests.post(
            f"{api}/v1/transcriptions", headers=headers, json={"url": "https://example.com/a.wav"}, timeout=30
        ),
        requests.get(f"{api}/v1/transcriptions/{'0' * 32}", headers=headers, timeout=30),
        requests.post(f"{api}/v1/uploads", headers=headers, json={"filename": "a.wav"}, timeout=30),
    ]
    for reply in calls:
        assert reply.status_code == status, reply.text
        assert reply.json()["error"]["code"] in ("unauthorized", "forbidden")
    s3 = local_aws(stack, "s3")
    assert s3.list_objects_v2(Bucket=stack["bucket"], Prefix="uploads/").get("KeyCount", 0) == 0


def test_a_job_is_visible_only_to_its_owner(stack, clip):
    api, mine, theirs = stack["api"], _auth(stack["apiKey"]), _auth(KEY_B)
    reply = requests.post(
        f"{api}/v1/transcriptions", headers=mine, data=SEED_FIELDS, files={"file": ("mine.wav", clip)}, timeout=60
    )
    assert reply.status_code in (200, 202), reply.text
    job_id = reply.json()["id"]
    document = wait_for(lambda: _final(api, job_id, mine), 60, interval=0.5, what="the job")
    assert document["status"] == "completed"

    other = requests.get(f"{api}/v1/transcriptions/{job_id}", headers=theirs, timeout=30)
    missing = requests.get(f"{api}/v1/transcriptions/{'f' * 32}", headers=theirs, timeout=30)
    assert other.status_code == missing.status_code == 404
    # The same answer, word for word, but for the id the caller sent.
    assert other.json() == {
        "error": {**missing.json()["error"], "message": missing.json()["error"]["message"].replace("f" * 32, job_id)}
    }
    # A disabled key cannot read even what it might once have created.
    assert requests.get(f"{api}/v1/transcriptions/{job_id}", headers=_auth(KEY_OFF), timeout=30).status_code == 403


def _final(api, job_id, headers):
    document = requests.get(f"{api}/v1/transcriptions/{job_id}", headers=headers, timeout=30).json()
    return document if document.get("status") in ("completed", "failed") else None


def test_a_presigned_upload_on_the_local_stack_starts_the_job(stack, clip):
    api, mine = stack["api"], _auth(stack["apiKey"])
    reply = requests.post(
        f"{api}/v1/uploads", headers=mine, json={"filename": "big talk.wav", "language": "en"}, timeout=30
    )
    assert reply.status_code == 201, reply.text
    upload = reply.json()
    assert upload["uploadUrl"].startswith(stack["s3"] + "/"), upload["uploadUrl"]  # the local bucket, not AWS
    put = requests.put(upload["uploadUrl"], data=clip, headers=upload["headers"], timeout=30)
    assert put.status_code == 200, put.text
    document = wait_for(lambda: _final(api, upload["id"], mine), 60, interval=0.5, what="the uploaded job")
    assert document["status"] == "completed" and document["language"] == "en"
    assert requests.get(f"{api}/v1/transcriptions/{upload['id']}", headers=_auth(KEY_B), timeout=30).status_code == 404


# ------------------------------------------------------------------ presigned URLs: expiry


def sigv4_query_valid(url: str, headers: dict, secret: str, method: str = "PUT") -> bool:
    """Verify a SigV4 presigned S3 URL as S3 does (signature part only)."""
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    signature = params.pop("X-Amz-Signature")
    encode = lambda text: quote(text, safe="-_.~")  # noqa: E731
    canonical_query = "&".join(f"{encode(k)}={encode(v)}" for k, v in sorted(params.items()))
    signed = params["X-Amz-SignedHeaders"].split(";")
    values = {"host": parts.netloc, **{k.lower(): v for k, v in headers.items()}}
    canonical_headers = "".join(f"{name}:{values[name].strip()}\n" for name in signed)
    canonical = "\n".join(
        [method, parts.path, canonical_query, canonical_headers, ";".join(signed), "UNSIGNED-PAYLOAD"]
    )
    stamp = params["X-Amz-Date"]
    scope = params["X-Amz-Credential"].split("/", 1)[1]
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.compare_digest(hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(), signature)


@pytest.fixture
def presign(monkeypatch):
    """The API's own presigning (create_upload) with known credentials, no AWS needed."""
    from moto import mock_aws

    from whisperless.cloud.api import Api
    from whisperless.config import Settings

    set_aws_env(monkeypatch)
    with mock_aws():
        dynamodb = boto3.resource("dynamodb", region_name="us-east-1")
        create_tables(dynamodb, {"jobs": "id"})
        # As Api.from_settings builds it; explicit keys, since moto swaps in its own.
        signer = boto3.client(
            "s3",
            region_name="us-east-1",
            endpoint_url="https://s3.us-east-1.amazonaws.com",
            aws_access_key_id="AKIDEXAMPLE",
            aws_secret_access_key="secret-for-tests",
            config=Config(signature_version="s3v4", s3={"addressing_style": "virtual"}),
        )
        api = Api(
            Settings(bucket="whisperless-audio", jobs_table="jobs"),
            s3=boto3.client("s3"),
            dynamodb=dynamodb,
            sqs=None,
            presign_s3=signer,
        )
        yield api


def test_presigned_urls_expire_and_are_bound_to_their_metadata(presign):
    before = datetime.now(UTC).replace(microsecond=0)
    body = presign.create_upload("client-a", {"filename": "a.wav", "callbackURL": ""}).body
    url, headers = body["uploadUrl"], body["headers"]
    query = dict(parse_qsl(urlsplit(url).query))
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert query["X-Amz-Expires"] == "900" == str(body["expiresIn"])  # 15 minutes, S3 enforces it
    signed_at = datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert 0 <= (signed_at - before).total_seconds() < 60
    assert set(query["X-Amz-SignedHeaders"].split(";")) == {"host", *headers}

    assert sigv4_query_valid(url, headers, "secret-for-tests")
    # A longer life, other metadata (another job id, another client) or a wrong secret: invalid.
    assert not sigv4_query_valid(url.replace("X-Amz-Expires=900", "X-Amz-Expires=604800"), headers, "secret-for-tests")
    assert not sigv4_query_valid(url, {**headers, "x-amz-meta-clientid": "client-b"}, "secret-for-tests")
    assert not sigv4_query_valid(url, {**headers, "x-amz-meta-jobid": "f" * 32}, "secret-for-tests")
    assert not sigv4_query_valid(url, headers, "another-secret")


def test_moto_does_not_enforce_presigned_expiry(stack):
    """Documented limitation (RELIABILITY.md): moto takes an expired URL, so the test above
    checks the signature and expiry fields instead of relying on moto refusing the PUT."""
    signer = boto3.client(
        "s3",
        endpoint_url=stack["s3"],
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(signature_version="s3v4"),
    )
    url = signer.generate_presigned_url(
        "put_object", Params={"Bucket": stack["bucket"], "Key": "expired.bin"}, ExpiresIn=1
    )
    time.sleep(1.5)
    assert requests.put(url, data=b"x", timeout=10).status_code == 200  # AWS would answer 403 AccessDenied


# ------------------------------------------------------------------ the bucket


def test_the_bucket_refuses_plain_http_and_public_access():
    from whisperless.local.cloudformation import load_source

    resources = load_source(ROOT / "template.yaml")["Resources"]
    bucket = resources["AudioBucket"]["Properties"]
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]  # no ACLs at all
    policies = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::S3::BucketPolicy"]
    (policy,) = [p for p in policies if p["Bucket"] == {"Ref": "AudioBucket"}]
    statements = policy["PolicyDocument"]["Statement"]
    deny_http = [
        s
        for s in statements
        if s["Effect"] == "Deny"
        and s["Principal"] == "*"
        and s["Action"] == "s3:*"
        and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    ]
    assert deny_http and {"Fn::GetAtt": ["AudioBucket", "Arn"]} in deny_http[0]["Resource"]
    assert {"Fn::Sub": "${AudioBucket.Arn}/*"} in deny_http[0]["Resource"]
    # Nothing grants anyone outside the account anything.
    for resource in resources.values():
        document = resource.get("Properties", {}).get("PolicyDocument", {})
        for statement in document.get("Statement", []):
            if statement.get("Effect") == "Allow":
                assert statement.get("Principal") not in ("*", {"AWS": "*"}), statement
