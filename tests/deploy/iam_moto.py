"""moto in server mode for the deploy tests, in a process of its own: IAM enforced on the
resources AWS judges requests on (:func:`whisperless.local.moto_fixes.iam_on_resources`), and
every decision taken while it is enforced written to an audit file, one JSON line each:
``{"key": access key id, "action": "s3:GetObject", "resource": ARN, "allowed": bool, "error": ...}``.
The tests read it to fail on any AccessDenied, including one the code under test caught.

    python tests/deploy/iam_moto.py AUDIT_FILE

prints ``{"endpoint": "http://127.0.0.1:PORT"}`` and serves until its standard input closes.
Enforcement starts off (set up the account first); ``POST /moto-api/reset-auth`` with ``0``
turns it on. Start it with ``MOTO_IAM_LOAD_MANAGED_POLICIES=true`` for AWS managed policies.
"""

from __future__ import annotations

import functools
import json
import sys
import threading


def audit_to(path: str) -> None:
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    lock = threading.Lock()
    original = ActionAuthenticatorMixin._authenticate_and_authorize_action

    def write(record: dict) -> None:
        with lock, open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")

    @functools.wraps(original)
    def audited(self, iam_request_cls, resource="*"):
        enforced = ActionAuthenticatorMixin.request_count >= settings.INITIAL_NO_AUTH_ACTION_COUNT
        if not enforced:
            return original(self, iam_request_cls, resource)
        authorization = self.headers.get("Authorization", "")
        scope = authorization.partition("Credential=")[2].partition(",")[0].split("/")
        record = {
            "key": scope[0],
            "action": f"{scope[3] if len(scope) > 3 else '?'}:{self._get_action()}",
            "resource": resource,
        }
        try:
            original(self, iam_request_cls, resource)
        except Exception as exc:  # noqa: BLE001 - recorded, then raised as moto would
            code = getattr(exc, "error_type", None) or getattr(exc, "code", None) or type(exc).__name__
            write({**record, "allowed": False, "error": f"{code}: {getattr(exc, 'message', exc)}"[:300]})
            raise
        write({**record, "allowed": True})

    ActionAuthenticatorMixin._authenticate_and_authorize_action = audited  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    from moto.server import ThreadedMotoServer

    from whisperless.local.moto_fixes import behave_like_aws, iam_on_resources

    behave_like_aws()
    iam_on_resources()
    audit_to(argv[1])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    print(json.dumps({"endpoint": f"http://{host}:{port}"}), flush=True)
    sys.stdin.read()  # until the test closes the pipe (or dies)
    server.stop()


if __name__ == "__main__":
    main(sys.argv)
