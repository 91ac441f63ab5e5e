"""Lambda Invoke: the caller's context rides in the ClientContext ``custom`` map.

``ClientContext`` is base64-encoded JSON (``{"client": …, "custom": {…}, "env": …}``) of at most
3,583 bytes; the runtime hands it to the called function as ``context.client_context``, with
``custom`` as a dict. W3C ``traceparent``/``tracestate`` go into ``custom``, merged with
whatever the caller put there. A ClientContext we cannot read, or one that would grow past the
limit, is left exactly as the user gave it and the span says why (``hoptrace.propagation.skipped``).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode

from . import AwsCall, w3c

MAX_CLIENT_CONTEXT_BYTES = 3583
_INVOKE_OPERATIONS = frozenset({"Invoke", "InvokeAsync", "InvokeWithResponseStream"})
_CARRIES_CLIENT_CONTEXT = frozenset({"Invoke", "InvokeWithResponseStream"})
SKIPPED = "hoptrace.propagation.skipped"


def function_target(function_name: Any, default_region: str | None) -> tuple[str, str | None]:
    """(function name, region) from any form Invoke accepts: name, ``name:qualifier``, full or partial ARN."""
    text = str(function_name or "")
    parts = text.split(":")
    if text.startswith("arn:") and len(parts) >= 7:
        return parts[6], parts[3] or default_region  # arn:aws:lambda:REGION:ACCOUNT:function:NAME[:Q]
    if len(parts) >= 3 and parts[1] == "function":
        return parts[2], default_region  # ACCOUNT:function:NAME[:Q]
    return parts[0], default_region  # NAME[:Q]


def merged_client_context(existing: Any, headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(new ClientContext, None), or (None, why it was left alone)."""
    document: dict[str, Any] = {}
    if existing:
        try:
            decoded = json.loads(base64.b64decode(str(existing), validate=True))
        except (binascii.Error, ValueError):
            return None, "ClientContext is not base64-encoded JSON"
        if not isinstance(decoded, dict):
            return None, "ClientContext is not a JSON object"
        document = decoded
    custom = document.get("custom")
    if custom is None:
        custom = {}
    if not isinstance(custom, dict):
        return None, "ClientContext 'custom' is not an object"
    if custom.get("traceparent"):
        return None, "ClientContext already has a traceparent"
    document = {**document, "custom": {**custom, **headers}}
    encoded = base64.b64encode(json.dumps(document, separators=(",", ":")).encode("utf-8")).decode("ascii")
    if len(encoded) > MAX_CLIENT_CONTEXT_BYTES:
        return None, f"ClientContext would exceed {MAX_CLIENT_CONTEXT_BYTES} bytes"
    return encoded, None


class LambdaInvokeCarrier:
    """Producer side of Lambda: async invokes are PRODUCER spans, synchronous ones CLIENT."""

    def span_kind(self, operation: str, params: Mapping[str, Any]) -> SpanKind:
        if operation == "InvokeAsync" or (operation == "Invoke" and params.get("InvocationType") == "Event"):
            return SpanKind.PRODUCER
        return SpanKind.CLIENT

    def on_request(self, call: AwsCall) -> None:
        if call.operation not in _INVOKE_OPERATIONS:
            return
        span, params = call.span, call.params
        name, region = function_target(params.get("FunctionName"), call.region)
        span.set_attribute("faas.invoked_name", name)
        span.set_attribute("faas.invoked_provider", "aws")
        if region:
            span.set_attribute("faas.invoked_region", region)
        if call.operation not in _CARRIES_CLIENT_CONTEXT or not span.get_span_context().is_valid:
            return
        encoded, why_not = merged_client_context(params.get("ClientContext"), w3c.headers_for(span))
        if encoded is not None:
            params["ClientContext"] = encoded  # a top-level string: the user's objects are untouched
        else:
            span.set_attribute(SKIPPED, why_not or "unknown")

    def on_response(self, call: AwsCall, parsed: Mapping[str, Any]) -> None:
        error = parsed.get("FunctionError")
        if call.operation in _INVOKE_OPERATIONS and error:
            call.span.set_attribute("error.type", str(error))
            call.span.set_status(Status(StatusCode.ERROR, f"the invoked function failed: FunctionError {error}"))


CARRIER = LambdaInvokeCarrier()


def extract_client_context(context: Any) -> SpanContext | None:
    """The caller's span context from a Lambda context object's ``client_context.custom``; never raises."""
    try:
        client_context = getattr(context, "client_context", None)
        if isinstance(client_context, Mapping):
            custom = client_context.get("custom")
        else:
            custom = getattr(client_context, "custom", None)
        if not isinstance(custom, Mapping):
            return None
        carrier = {k: v for k, v in custom.items() if k in w3c.FIELDS and isinstance(v, str)}
        return w3c.extract(carrier)
    except Exception:
        return None
