"""Every boto3/botocore API call becomes a span, through botocore's own event system.

Handlers are added to ``botocore.handlers.BUILTIN_HANDLERS`` (so every session created from
now on has them) and to boto3's default session if it already exists. Clients copy their
session's handlers when they are created, so ``init()`` must run before clients are made;
the zero-code Lambda wrapper and ``@lambda_handler`` at import time see to that.

Per call: ``before-parameter-build`` starts the span and lets the service's carrier inject
context into the parameters; ``before-call`` (hooked only for the operations in ``SPLICING``)
adds what the carrier chose to add to the serialised body instead (see ``AwsCall.body_suffix``);
``after-call`` ends the span, recording status, request id, throttling and the carrier's
pointers (a usual answer to one of our own spans is read when the span is exported instead,
``spans.settle``); ``after-call-error`` records a transport failure.

Why botocore's event system and not a wrapper around ``BaseClient._make_api_call``: measured in
instructions per SendMessage (valgrind, the bench's stub), botocore dispatching our three
handlers costs about 18k of the ~1.8M a bare call takes; the handlers see the parameters after
boto3's own transformations and the body after serialisation, which a wrapper would not.

This runs on every AWS call the function makes, so what each operation shares (names, carrier,
protocol) is worked out once per operation model (``_Operation``).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY as _SUPPRESS_KEY
from opentelemetry.context import get_current
from opentelemetry.trace import SpanKind, Status, StatusCode

from . import setup, spans
from .carriers import AwsCall, AwsCarrier
from .guard import count, guarded, swallowed

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
# The operations whose carrier may add to the serialised body (``AwsCall.body_suffix``): the only
# ones ``before-call`` is hooked for, so other calls do not pay for that handler.
SPLICING = ("sqs.SendMessage",)
_OwnSpan = spans.Span
_ROOM = spans.MAX_ATTRIBUTES - 8  # an answer adds at most 6 attributes here


def _context_getter() -> Any:
    """The current context's getter: the API's ContextVar itself when the runtime context is the
    usual contextvars one (two Python calls fewer per AWS call), else ``get_current``."""
    try:
        from opentelemetry import context as api
        from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext

        runtime = api._RUNTIME_CONTEXT
        if type(runtime) is ContextVarsRuntimeContext:
            return runtime._current_context.get
    except Exception:  # pragma: no cover - another API layout: take the public way
        pass
    return get_current


_current_context = _context_getter()
_EMPTY: Mapping[str, Any] = {}
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


class _Operation:
    """What every call of one operation shares, worked out on its first call."""

    __slots__ = (
        "_common",
        "attributes",
        "carrier",
        "defer",
        "kind",
        "operation",
        "respond",
        "service",
        "service_name",
        "span_name",
        "splice",
        "start",
    )

    def __init__(self, model: Any) -> None:
        service_model = model.service_model
        self.service = service_model.service_id.hyphenize()
        self.operation = model.name
        self.service_name = str(service_model.service_id)
        self.span_name = f"{self.service_name}.{self.operation}"
        self.carrier = carrier_for(self.service)
        # A JSON-protocol request body is one JSON object, to which a carrier can add members;
        # only where ``before-call`` is hooked (``SPLICING``) is what it adds sent.
        self.splice = service_model.protocol == "json" and f"{self.service}.{self.operation}" in SPLICING
        # Every span of the operation starts with these (and the region): copied, never changed.
        self.attributes = {"rpc.system": "aws-api", "rpc.service": self.service_name, "rpc.method": self.operation}
        self.respond: Any = getattr(self.carrier, "response_attributes", None)
        self.start: Any = getattr(self.carrier, "start_attributes", None)
        self._common: dict[str, dict[str, Any]] = {}
        # Whether a usual answer may be read when the span is exported instead of during the
        # call: for our own spans, when reading it needs neither the request's parameters (not
        # kept that long) nor the whole answer (only its metadata and the carrier's few ids).
        self.defer = self.carrier is None or self.operation in getattr(self.carrier, "deferrable_answers", ())
        # The span kind, when it does not depend on the call's parameters (None: ask per call).
        self.kind: SpanKind | None = SpanKind.CLIENT
        if self.carrier is not None:
            fixed = getattr(self.carrier, "fixed_span_kind", False) is True
            self.kind = self.carrier.span_kind(self.operation, {}) if fixed else None

    def common(self, region: str) -> dict[str, Any]:
        """The attributes every span of the operation in ``region`` starts with (read-only)."""
        common = self._common.get(region)
        if common is None:
            common = self._common[region] = {**self.attributes, "cloud.region": region}
        return common


_operations: dict[Any, _Operation] = {}
_OPERATIONS_MAX = 1024  # clients made per invocation bring new models: do not keep them all


def _operation(model: Any) -> _Operation:
    op = _operations.get(model)
    if op is None:
        if len(_operations) >= _OPERATIONS_MAX:
            _operations.clear()
        op = _operations[model] = _Operation(model)
    return op


# The handlers name every argument botocore passes (``event_name`` included): collecting them
# into ``**_`` costs a dict per handler and call. ``**_`` stays for arguments a later botocore adds.


def _before_parameter_build(
    params: dict[str, Any], model: Any, context: dict[str, Any], event_name: str | None = None, **_: Any
) -> None:
    # The guard is written out (not @guarded) in the handlers every call runs: it costs less.
    try:
        st = setup._state
        if st is None or context is None or _CALL_KEY in context:
            return
        current = _current_context()
        if current.get(_SUPPRESS_KEY):
            return
        op = _operations.get(model) or _operation(model)
        carrier = op.carrier
        kind = op.kind
        if kind is None:
            kind = carrier.span_kind(op.operation, params)  # type: ignore[union-attr]  # kind is fixed without a carrier
        client_region = context.get("client_region")
        region = client_region or ""
        start = op.start
        # A carrier may give the span's first attributes at once (see start_attributes).
        attributes = (
            start(op.operation, params, op._common.get(region) or op.common(region), region)
            if start is not None
            else None
        )
        started_with = attributes is not None
        if attributes is None:
            attributes = op.attributes.copy()
            attributes["cloud.region"] = region
        tracer = st.tracer
        if type(tracer) is spans.Tracer:
            span = tracer.start_child(current, op.span_name, kind, attributes)
        else:  # the SDK's, when setup fell back to it
            span = tracer.start_span(op.span_name, kind=kind, attributes=attributes)
        call = context[_CALL_KEY] = AwsCall(op.service, op.operation, params, span, client_region, op)
        if started_with:
            call.started_with = True
        if st.config.capture_payloads:
            # Before the carrier injects anything: capture what the user asked for.
            from .payload import REQUEST_ATTRIBUTE, capture

            captured = capture(params, st.config)
            if captured is not None:
                span.set_attribute(REQUEST_ATTRIBUTE, captured)
        if carrier is not None:
            call.may_splice = op.splice
            try:
                carrier.on_request(call)
            except Exception as exc:  # a carrier bug must not lose the span or the call
                count("internal_errors.carrier")
                span.set_attribute("hoptrace.error", f"could not inject context: {type(exc).__name__}")
    except Exception:
        swallowed("botocore.before_parameter_build")


def _before_call(
    params: dict[str, Any],
    context: dict[str, Any],
    model: Any = None,
    request_signer: Any = None,
    event_name: str | None = None,
    **_: Any,
) -> None:
    """Add what the carrier left in ``body_suffix`` to the serialised JSON body (see ``AwsCall``)."""
    try:
        call: AwsCall | None = context.get(_CALL_KEY) if context else None
        if call is None:
            return
        suffix = call.body_suffix
        if suffix is None:
            return
        call.body_suffix = None
        body = params.get("body")
        if type(body) is bytes and len(body) > 2 and body[-1:] == b"}" and body[:1] == b"{":
            params["body"] = body[:-1] + suffix  # the suffix closes the object
        else:  # not the JSON object the carrier expected: send the call as the user made it
            count("propagation.skipped.serialization")
            call.span.set_attribute("hoptrace.propagation.skipped", "serialization")
    except Exception:
        swallowed("botocore.before_call")


def _after_call(
    http_response: Any,
    parsed: Mapping[str, Any],
    model: Any,
    context: dict[str, Any],
    event_name: str | None = None,
    **_: Any,
) -> None:
    try:
        call: AwsCall | None = context.pop(_CALL_KEY, None) if context else None
        if call is None:
            return
    except Exception:
        swallowed("botocore.after_call")
        return
    span = call.span
    try:
        status = getattr(http_response, "status_code", None)
        op = call.op
        if op is not None and op.defer and type(status) is int and status < 300 and type(parsed) is dict:
            # The usual answer to one of our own spans: read it when the span is exported
            # (``spans.settle``), off the call's path. A copy, as the user may change theirs.
            # Kept until then: not the request (it may be large) and, without a carrier, only the
            # answer's metadata (an answer may hold a stream, e.g. S3's Body).
            call.params = _EMPTY_PARAMS
            kept = parsed.copy() if op.carrier is not None else {"ResponseMetadata": parsed.get("ResponseMetadata")}
            span._deferred = (_settle_answer, (call, status, kept))  # type: ignore[attr-defined]
        else:
            _describe_answer(span, call, status, parsed, op)
    except Exception:
        swallowed("botocore.after_call")
    finally:
        try:
            span.end()
        except Exception:
            swallowed("botocore.after_call")


_EMPTY_PARAMS: dict[str, Any] = {}


def _settle_answer(span: Any, answer: tuple[AwsCall, int, Mapping[str, Any]]) -> None:
    call, status, parsed = answer
    _describe_answer(span, call, status, parsed, call.op)


def _describe_answer(span: Any, call: AwsCall, status: Any, parsed: Mapping[str, Any], op: _Operation | None) -> None:
    """Status, request id, retries, host, and what the carrier reads from the answer."""
    meta = parsed.get("ResponseMetadata") or _EMPTY
    # Our own open span, with room for what an answer adds: its attributes are written in place.
    own = type(span) is _OwnSpan and span._end_time is None and len(span.attributes) < _ROOM
    described: dict[str, Any] = span.attributes if own else {}
    if status is not None:
        described["http.response.status_code"] = int(status)
    request_id = meta.get("RequestId")
    if request_id and type(request_id) is str:
        described["aws.request_id"] = request_id
    retries = meta.get("RetryAttempts")
    if retries:
        described["hoptrace.aws.retry_attempts"] = int(retries)
    host = (meta.get("HTTPHeaders") or _EMPTY).get("host")
    if host and type(host) is str:
        described["server.address"] = host
    if status is not None and status >= 300:
        if not own:
            spans.set_many(span, described)
        error = parsed.get("Error") or _EMPTY
        code = error.get("Code") or f"HTTP {status}"
        span.set_attribute("error.type", code)
        if is_throttle(error.get("Code"), status):
            span.set_attribute("hoptrace.throttled", True)
        span.set_status(Status(StatusCode.ERROR, f"{code}: {error.get('Message', '')}".strip(": ")))
        return
    carrier = op.carrier if op is not None else _carriers.get(call.service)
    if carrier is None:
        if not own:
            spans.set_many(span, described)
        return
    try:
        # A carrier may add the usual answer's attributes to ours, to be set at once.
        respond = op.respond if op is not None else getattr(carrier, "response_attributes", None)
        handled = respond is not None and respond(call, parsed, described)
        if not own:
            spans.set_many(span, described)
        if not handled:
            carrier.on_response(call, parsed)
    except Exception as exc:
        count("internal_errors.carrier")
        span.set_attribute("hoptrace.error", f"could not read pointers: {type(exc).__name__}")


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
        *((f"before-call.{operation}", _before_call) for operation in SPLICING),
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
