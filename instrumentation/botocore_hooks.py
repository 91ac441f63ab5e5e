"""Every boto3/botocore API call becomes a span, through botocore's own event system.

Handlers are added to ``botocore.handlers.BUILTIN_HANDLERS`` (so every session created from
now on has them) and to boto3's default session if it already exists. Clients copy their
session's handlers when they are created, so ``init()`` must run before clients are made;
the zero-code Lambda wrapper and ``@lambda_handler`` at import time see to that.

Per call: ``before-parameter-build`` starts the span and lets the service's carrier inject
context into the parameters; ``after-call`` records status, request id, throttling and the
carrier's pointers; ``after-call-error`` records a transport failure.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode

from .carriers import AwsCall, AwsCarrier
from .guard import count, guarded

# botocore service id (hyphenized, lower case) -> module holding its carrier.
CARRIER_MODULES = {
    "sqs": "sqs",
    "sns": "sns",
    "dynamodb": "dynamodb",
    "eventbridge": "eventbridge",
    "kinesis": "kinesis",
    "lambda": "lambda_invoke",
}

# Error codes AWS uses for throttling across services.
THROTTLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
        "KMSThrottlingException",
        "ThrottlingError",
    }
)

_CALL_KEY = "hoptrace_call"
_carriers: dict[str, AwsCarrier | None] = {}
_installed = False
_HANDLERS: list[tuple[str, Any]] = []


def is_throttle(code: str | None, status: int | None) -> bool:
    """True for AWS's throttling family of errors (HTTP 429 or a throttling error code)."""
    return status == 429 or (code is not None and code in THROTTLE_CODES)


def carrier_for(service: str) -> AwsCarrier | None:
    """The carrier of a service, imported on first use; None for services without one."""
    if service in _carriers:
        return _carriers[service]
    carrier: AwsCarrier | None = None
    module = CARRIER_MODULES.get(service)
    if module is not None:
        carrier = importlib.import_module(f"{__package__}.carriers.{module}").CARRIER
    _carriers[service] = carrier
    return carrier


@guarded("botocore.before_parameter_build")
def _before_parameter_build(params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
    from . import setup

    st = setup.state()
    if st is None or context is None or _CALL_KEY in context:
        return
    from opentelemetry import context as otel_context

    if otel_context.get_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY):
        return
    service_model = model.service_model
    service = service_model.service_id.hyphenize()
    operation = model.name
    carrier = carrier_for(service)
    kind = SpanKind.CLIENT
    if carrier is not None:
        kind = carrier.span_kind(operation, params)
    service_name = str(service_model.service_id)
    span = st.tracer.start_span(
        f"{service_name}.{operation}",
        kind=kind,
        attributes={
            "rpc.system": "aws-api",
            "rpc.service": service_name,
            "rpc.method": operation,
            "cloud.region": context.get("client_region") or "",
        },
    )
    call = AwsCall(service, operation, params, span, context.get("client_region"))
    context[_CALL_KEY] = call
    if st.config.capture_payloads:
        # Before the carrier injects anything: capture what the user asked for.
        from .payload import REQUEST_ATTRIBUTE, capture

        captured = capture(params, st.config)
        if captured is not None:
            span.set_attribute(REQUEST_ATTRIBUTE, captured)
    if carrier is not None:
        try:
            carrier.on_request(call)
        except Exception as exc:  # a carrier bug must not lose the span or the call
            count("internal_errors.carrier")
            span.set_attribute("hoptrace.error", f"could not inject context: {type(exc).__name__}")


@guarded("botocore.after_call")
def _after_call(http_response: Any, parsed: Mapping[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
    call: AwsCall | None = context.pop(_CALL_KEY, None) if context else None
    if call is None:
        return
    span = call.span
    try:
        status = getattr(http_response, "status_code", None)
        meta = parsed.get("ResponseMetadata") or {}
        if status is not None:
            span.set_attribute("http.response.status_code", int(status))
        request_id = meta.get("RequestId")
        if request_id:
            span.set_attribute("aws.request_id", request_id)
        if meta.get("RetryAttempts"):
            span.set_attribute("hoptrace.aws.retry_attempts", int(meta["RetryAttempts"]))
        host = (meta.get("HTTPHeaders") or {}).get("host")
        if host:
            span.set_attribute("server.address", host)
        error = parsed.get("Error") or {}
        if status is not None and status >= 300:
            code = error.get("Code") or f"HTTP {status}"
            span.set_attribute("error.type", code)
            if is_throttle(error.get("Code"), status):
                span.set_attribute("hoptrace.throttled", True)
            span.set_status(Status(StatusCode.ERROR, f"{code}: {error.get('Message', '')}".strip(": ")))
        else:
            carrier = carrier_for(call.service)
            if carrier is not None:
                try:
                    carrier.on_response(call, parsed)
                except Exception as exc:
                    count("internal_errors.carrier")
                    span.set_attribute("hoptrace.error", f"could not read pointers: {type(exc).__name__}")
    finally:
        span.end()


@guarded("botocore.after_call_error")
def _after_call_error(exception: BaseException, context: dict[str, Any], **_: Any) -> None:
    call: AwsCall | None = context.pop(_CALL_KEY, None) if context else None
    if call is None:
        return
    call.span.record_exception(exception)
    call.span.set_attribute("error.type", type(exception).__name__)
    call.span.set_status(Status(StatusCode.ERROR, f"{type(exception).__name__}: {exception}"))
    call.span.end()


def install() -> None:
    """Hook every botocore session, present and future; safe to call twice, no-op without botocore."""
    global _installed
    if _installed:
        return
    try:
        from botocore import handlers
    except ImportError:
        return
    _HANDLERS[:] = [
        ("before-parameter-build", _before_parameter_build),
        ("after-call", _after_call),
        ("after-call-error", _after_call_error),
    ]
    for event, fn in _HANDLERS:
        # Last, so boto3's own DynamoDB transformations have run before carriers read params.
        handlers.BUILTIN_HANDLERS.append((event, fn, handlers.REGISTER_LAST))
    import sys

    boto3 = sys.modules.get("boto3")
    default = getattr(boto3, "DEFAULT_SESSION", None) if boto3 is not None else None
    if default is not None:
        for event, fn in _HANDLERS:
            default._session.register(event, fn)
    _installed = True


def uninstall() -> None:
    """Remove the hooks from future sessions (tests)."""
    global _installed
    try:
        from botocore import handlers
    except ImportError:
        return
    fns = {fn for _, fn in _HANDLERS}
    handlers.BUILTIN_HANDLERS[:] = [h for h in handlers.BUILTIN_HANDLERS if h[1] not in fns]
    _installed = False
