"""What the Lambda Python runtime gives a handler: environment variables, a context, an event.

Self-contained (standard library only): the cold-start benchmark copies this file next to its
generated handler modules, as the runtime's own code would sit beside the function's.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

REGION = "us-east-1"
ACCOUNT = "123456789012"
QUEUE_URL = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/bench-orders"

# A direct-invocation event: a small JSON document, as an application would send.
EVENT: dict[str, Any] = {"order_id": "o-1001", "items": [{"sku": "sku-1", "qty": 2}], "total": 42.5}


def environment(function_name: str, handler: str, memory_mb: int = 512) -> dict[str, str]:
    """The variables Lambda sets for a function (those the instrumentations read)."""
    return {
        "AWS_LAMBDA_FUNCTION_NAME": function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function_name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2024/01/01/[$LATEST]0123456789abcdef0123456789abcdef",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "LAMBDA_TASK_ROOT": "/var/task",
        "_HANDLER": handler,
        "OTEL_SERVICE_NAME": function_name,
    }


class LambdaContext:
    """The attributes and method of the runtime's context object that tracing code reads."""

    def __init__(self, function_name: str, timeout_s: float = 30.0, memory_mb: int = 512) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"
        self.memory_limit_in_mb = str(memory_mb)
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "2024/01/01/[$LATEST]0123456789abcdef0123456789abcdef"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
