"""API keys: bearer tokens stored only as their SHA-256 in the API keys table.

Items: ``{"keyHash": sha256 hex, "clientId": ..., "enabled": bool}``. A leaked table
gives no usable keys, and keys never appear in logs (only hashes and client ids do).

Operators create a key with ``python -m whisperless.apikeys CLIENT_ID`` (table from
``API_KEYS_TABLE``); the key is printed once and cannot be recovered later.
"""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "wl_"


class KeyRejected(Exception):
    """The presented key does not authorise anything; ``status`` is the HTTP answer."""

    status = 401
    code = "unauthorized"


class UnknownKey(KeyRejected):
    pass


class DisabledKey(KeyRejected):
    status = 403
    code = "forbidden"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    # 32 random bytes; the prefix makes leaked keys easy to spot (secret scanners, logs).
    return KEY_PREFIX + secrets.token_urlsafe(32)


def add_key(table, key: str, client_id: str, *, enabled: bool = True) -> str:
    """Store ``key`` (hashed) for ``client_id``; returns the hash."""
    if not client_id:
        raise ValueError("client_id is required")
    digest = hash_key(key)
    table.put_item(Item={"keyHash": digest, "clientId": client_id, "enabled": enabled})
    return digest


def set_enabled(table, key: str, enabled: bool) -> None:
    table.update_item(
        Key={"keyHash": hash_key(key)}, UpdateExpression="SET enabled = :e", ExpressionAttributeValues={":e": enabled}
    )


def lookup(table, key: str) -> str:
    """The client id the key belongs to; raises UnknownKey or DisabledKey."""
    if not key:
        raise UnknownKey("missing API key")
    item = table.get_item(Key={"keyHash": hash_key(key)}).get("Item")
    if not item or not item.get("clientId"):
        raise UnknownKey("unknown API key")
    # Only an explicit false disables: a hand-written item with just keyHash and clientId is meant to work.
    if item.get("enabled", True) is False:
        raise DisabledKey("this API key is disabled")
    return str(item["clientId"])


def main(argv: list[str] | None = None) -> None:
    import argparse

    import boto3

    from ..config import settings

    parser = argparse.ArgumentParser(description="Create an API key for a client (printed once).")
    parser.add_argument("client_id")
    parser.add_argument("--table", default=settings().api_keys_table, help="API keys table (default: $API_KEYS_TABLE)")
    args = parser.parse_args(argv)
    if not args.table:
        raise SystemExit("no table: pass --table or set API_KEYS_TABLE")
    key = new_key()
    add_key(boto3.resource("dynamodb").Table(args.table), key, args.client_id)
    print(key)


if __name__ == "__main__":
    main()
