"""Where moto differs from AWS in ways the local stack and the tests must not inherit.

DynamoDB's conditional writes are atomic: of two writers racing on one key with
``attribute_not_exists``, exactly one wins. moto checks the condition and then writes with
no lock, so two threads (the local stack serves requests on many) can both win, and a
duplicate delivery runs a job twice. :func:`atomic_dynamodb_writes` serialises moto's
DynamoDB writes, which restores the guarantee the product relies on.
"""

from __future__ import annotations

import functools
import threading

_LOCK = threading.RLock()
_PATCHED = False


def atomic_dynamodb_writes() -> None:
    """Make moto's DynamoDB writes atomic in this process (idempotent)."""
    global _PATCHED
    if _PATCHED:
        return
    from moto.dynamodb.models import DynamoDBBackend

    for name in ("put_item", "update_item", "delete_item", "transact_write_items"):
        original = getattr(DynamoDBBackend, name)

        @functools.wraps(original)
        def locked(*args, __original=original, **kwargs):
            with _LOCK:
                return __original(*args, **kwargs)

        setattr(DynamoDBBackend, name, locked)
    _PATCHED = True
