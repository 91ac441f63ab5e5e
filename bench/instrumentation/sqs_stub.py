"""A canned, successful SQS SendMessage answer, so a benchmark times the client and not the network.

Registered as a botocore ``before-send`` handler: returning a response there makes botocore skip
the HTTP request and parse this one instead, so everything client-side (serialisation, signing,
hooks, parsing, instrumentation) still runs.

Self-contained on purpose (standard library and botocore only): the cold-start benchmark copies
this file next to its generated Lambda handler modules.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders

# The parameters of the last SendMessage answered here, as sent (with what instrumentation added).
last_request: dict[str, Any] = {}
# Time spent answering here, in ns: the calling thread's CPU and the wall clock. This is the
# emulated SQS's work (parsing the request as SQS would, the MD5, the answer), which a real
# client does not do: benchmarks of the client's own cost subtract it (``aws_call``).
spent = {"cpu_ns": 0, "wall_ns": 0}


class _Body:
    """The part of urllib3's response that botocore reads: ``stream()``."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, amt: int | None = None) -> Iterator[bytes]:
        yield self._data


def send_message_response(request: Any) -> AWSResponse:
    """The answer SQS's JSON protocol gives to ``request`` (a botocore AWSPreparedRequest)."""
    body = request.body
    params = json.loads(body.decode("utf-8") if isinstance(body, bytes) else body)
    last_request.clear()
    last_request.update(params)
    message = params.get("MessageBody", "")
    answer = {
        "MD5OfMessageBody": hashlib.md5(message.encode("utf-8")).hexdigest(),
        "MessageId": str(uuid.uuid4()),
    }
    headers = HTTPHeaders()
    headers["Content-Type"] = "application/x-amz-json-1.0"
    headers["x-amzn-RequestId"] = str(uuid.uuid4())
    return AWSResponse(request.url, 200, headers, _Body(json.dumps(answer).encode("utf-8")))


def canned_send_message(request: Any, **_: Any) -> AWSResponse:
    """``before-send.sqs.SendMessage`` handler: answer without touching the network."""
    wall, cpu = time.perf_counter_ns(), time.thread_time_ns()
    try:
        return send_message_response(request)
    finally:
        spent["cpu_ns"] += time.thread_time_ns() - cpu
        spent["wall_ns"] += time.perf_counter_ns() - wall


def short_circuit(client: Any) -> None:
    """Make ``client`` (an SQS client) answer SendMessage locally from now on."""
    client.meta.events.register("before-send.sqs.SendMessage", canned_send_message)
