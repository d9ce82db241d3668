"""A Lambda context outside Lambda (plain worker, local stack, tests).

Powertools Idempotency reads ``get_remaining_time_in_millis()`` to let an interrupted job's lock
expire when the queue would redeliver it, and the API reads it to size its wait for a result.
"""

from __future__ import annotations

import time
import uuid

REGION = "us-east-1"
ACCOUNT = "123456789012"


class LambdaContext:
    """What handlers read of Lambda's context object, with a deadline ``seconds`` from now."""

    def __init__(
        self,
        function_name: str = "TranscriberFunction",
        seconds: float = 900.0,
        *,
        memory_mb: int = 10240,
        region: str = REGION,
        account: str = ACCOUNT,
    ):
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{account}:function:{function_name}"
        self.aws_request_id = uuid.uuid4().hex
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
