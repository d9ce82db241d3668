"""Where moto differs from AWS in ways the local stack and the tests must not inherit.
:func:`behave_like_aws` applies them all, once per process (the local stack, tests/conftest.py).

- DynamoDB's conditional writes are atomic: of two writers racing on one key with
  ``attribute_not_exists``, exactly one wins. moto checks the condition and then writes with
  no lock, so two threads (the local stack serves requests on many) can both win, and a
  duplicate delivery runs a job twice. Its DynamoDB writes are serialised here.
- S3's EventBridge events carry the object key URL-encoded, as its notifications to SQS, SNS and
  Lambda do (``my talk+1.wav`` arrives as ``my+talk%2B1.wav``): LocalStack, whose S3 event tests
  are recorded against AWS, encodes both, and Powertools' EventBridge S3 data class decodes the
  key. moto encodes its notifications (since 5.1.9) but sends EventBridge the raw key, so a key
  with a "+" decoded to its space-named twin. Its EventBridge keys are encoded here.
- S3 refuses keys longer than 1024 bytes (``KeyTooLongError``); moto stores them. A result next
  to a key near the limit (``<key>.json``) fails on AWS, so it must fail here too.
"""

from __future__ import annotations

import functools
import json
import threading
from typing import Any
from urllib.parse import quote_plus

from ..cloud.stores import MAX_KEY_BYTES

_LOCK = threading.RLock()
_APPLIED = False


def behave_like_aws() -> None:
    """Apply every fix below in this process (idempotent)."""
    global _APPLIED
    with _LOCK:
        if _APPLIED:
            return
        _atomic_dynamodb_writes()
        _encoded_eventbridge_keys()
        _s3_key_length_limit()
        _APPLIED = True


def _atomic_dynamodb_writes() -> None:
    from moto.dynamodb.models import DynamoDBBackend

    for name in ("put_item", "update_item", "delete_item", "transact_write_items"):
        original = getattr(DynamoDBBackend, name)

        @functools.wraps(original)
        def locked(*args, __original=original, **kwargs):
            with _LOCK:
                return __original(*args, **kwargs)

        setattr(DynamoDBBackend, name, locked)


class _EncodedKey:
    """A moto key whose ``name`` reads as S3 sends it in events (slashes kept, as S3 keeps them)."""

    def __init__(self, key: Any):
        self._key = key
        self.name = quote_plus(key.name, safe="/")

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._key, attribute)


def _encoded_eventbridge_keys() -> None:
    from moto.s3 import notifications

    original = notifications._send_event_bridge_message

    @functools.wraps(original)
    def send(account_id, bucket, event_name, key):
        return original(account_id, bucket, event_name, _EncodedKey(key))

    notifications._send_event_bridge_message = send


def _s3_key_length_limit() -> None:
    from moto.s3.exceptions import S3ClientError
    from moto.s3.models import S3Backend

    def check(key_name: str) -> None:
        if len(key_name.encode("utf-8")) > MAX_KEY_BYTES:
            raise S3ClientError("KeyTooLongError", "Your key is too long")

    # (method, position of the key among the arguments after self, its keyword name)
    for name, position, keyword in (
        ("put_object", 1, "key_name"),
        ("create_multipart_upload", 1, "key_name"),
        ("copy_object", 2, "dest_key_name"),
    ):
        original = getattr(S3Backend, name)

        @functools.wraps(original)
        def limited(self, *args, __original=original, __position=position, __keyword=keyword, **kwargs):
            key = args[__position] if len(args) > __position else kwargs.get(__keyword)
            if isinstance(key, str):
                check(key)
            return __original(self, *args, **kwargs)

        setattr(S3Backend, name, limited)


_IAM_PATCHED = False


def iam_on_resources() -> None:
    """Make moto's IAM enforcement judge requests on the resources AWS judges them on (idempotent).

    With IAM enforced, moto matches a statement's ``Resource`` against the real ARN only for S3
    and SQS; every other request is checked against ``"*"``, so a policy scoped to a table or a
    secret (as least privilege asks) denies even the calls it allows. Here DynamoDB requests are
    judged on the table's ARN (``TableName``; the index's for a query of an index), Secrets
    Manager's on the secret's full ARN (``SecretId``, by name or partial ARN) and EventBridge's
    ``PutEvents`` on the event bus ARN. Requests naming several resources at once (batch and
    transaction calls, events to several buses) stay on ``"*"``, where a scoped grant denies them,
    and moto judges S3's DeleteObjects on the bucket: none of ours make them.

    And as on AWS, reading a key that does not exist needs ``s3:ListBucket`` on the bucket to
    answer 404: without it S3 answers 403, which moto never does. Inline role policies that
    moto's CloudFormation created (stored as dicts, where its evaluator expects JSON text and
    fails with a KeyError) are read too.
    """
    global _IAM_PATCHED
    if _IAM_PATCHED:
        return
    from moto.dynamodb.responses import DynamoHandler
    from moto.events.responses import EventsHandler
    from moto.iam.access_control import IAMPolicy
    from moto.s3.exceptions import MissingKey
    from moto.s3.responses import S3Response
    from moto.secretsmanager.responses import SecretsManagerResponse

    def table_arn(self) -> str:
        name = self._get_param("TableName")
        if not isinstance(name, str) or not name:
            return "*"
        table = name
        if not name.startswith("arn:"):
            table = f"arn:aws:dynamodb:{self.region}:{self.current_account}:table/{name}"
        index = self._get_param("IndexName")  # a Query or Scan of an index is judged on the index
        return f"{table}/index/{index}" if isinstance(index, str) and index else table

    def secret_arn(self) -> str:
        secret_id = self._get_param("SecretId")
        if not isinstance(secret_id, str) or not secret_id:
            return "*"
        found = self.backend.secrets.get(secret_id)
        if found is not None:
            return found.arn
        if secret_id.startswith("arn:"):
            return secret_id
        return f"arn:aws:secretsmanager:{self.region}:{self.current_account}:secret:{secret_id}"

    def event_bus_arn(self) -> str:
        if self._get_action() != "PutEvents":
            return "*"
        buses = {entry.get("EventBusName") or "default" for entry in self._get_param("Entries") or []}
        if len(buses) != 1:
            return "*"
        (bus,) = buses
        return bus if bus.startswith("arn:") else f"arn:aws:events:{self.region}:{self.current_account}:event-bus/{bus}"

    DynamoHandler._determine_resource = table_arn  # type: ignore[attr-defined]
    SecretsManagerResponse._determine_resource = secret_arn  # type: ignore[attr-defined]
    EventsHandler._determine_resource = event_bus_arn  # type: ignore[attr-defined]

    def needs_list_bucket(self) -> None:
        """The caller read a missing key: 404 only if it may list the bucket (else AccessDenied)."""
        action = self.data.get("Action")
        self.data["Action"] = "ListBucket"
        try:
            self._authenticate_and_authorize_s3_action(bucket_name=self.bucket_name)
        finally:
            self.data["Action"] = action

    original_get, original_head = S3Response.get_object, S3Response.head_object

    @functools.wraps(original_get)
    def get_object(self, *args, **kwargs):
        try:
            return original_get(self, *args, **kwargs)
        except MissingKey:
            needs_list_bucket(self)
            raise

    @functools.wraps(original_head)
    def head_object(self, *args, **kwargs):
        status, headers, body = original_head(self, *args, **kwargs)
        if status == 404:
            needs_list_bucket(self)
        return status, headers, body

    original_policy_init = IAMPolicy.__init__

    @functools.wraps(original_policy_init)
    def policy_init(self, policy):
        if isinstance(policy, dict) and "Statement" in policy:
            policy = json.dumps(policy)
        original_policy_init(self, policy)

    IAMPolicy.__init__ = policy_init  # type: ignore[method-assign]
    S3Response.get_object = get_object  # type: ignore[method-assign]
    S3Response.head_object = head_object  # type: ignore[method-assign]
    _IAM_PATCHED = True
