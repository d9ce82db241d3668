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
