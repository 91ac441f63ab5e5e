"""Errors into issues (fingerprints, normalisation, kinds) and faultline's notification semantics."""

from __future__ import annotations

from typing import Any

from hoptrace.collector.issues import (
    ERROR,
    EXCEPTION,
    HTTP_5XX,
    TIMEOUT,
    ExceptionEvent,
    Rule,
    bucket_start_minute,
    fingerprint_frames,
    normalise_message,
    occurrences,
    parse_frames,
    without_propagated,
)
from hoptrace.graph.spans import CLIENT, CONSUMER, INTERNAL, SERVER, GraphSpan, SpanLink

PY_TRACE = """Traceback (most recent call last):
  File "/var/task/app.py", line 30, in handler
    return charge(order)
  File "/var/task/billing.py", line {line}, in charge
    raise PaymentError(f"card declined for order {{order}}")
  File "/var/task/.venv/lib/python3.12/site-packages/stripe/api.py", line 88, in call
    raise err
PaymentError: card declined for order 1234
"""


def span(**kw: Any) -> GraphSpan:
    base: dict[str, Any] = dict(trace_id=b"\1" * 16, span_id=b"\2" * 8, parent_span_id=None, service="checkout",
                                name="POST /orders", kind=SERVER, start_ns=10**18, end_ns=10**18 + 5 * 10**6, status=2,
                                resource={"faas.name": "checkout", "cloud.platform": "aws_lambda"})  # fmt: skip
    base.update(kw)
    return GraphSpan(**base)


def exc(type_: str, message: str, stacktrace: str = "") -> ExceptionEvent:
    attrs = {"exception.type": type_, "exception.message": message, "exception.stacktrace": stacktrace}
    return ExceptionEvent(10**18 + 10**6, attrs)


def test_python_frames_innermost_first_and_library_frames_are_not_the_users():
    frames = parse_frames(PY_TRACE.format(line=12))
    assert [(f.function, f.line, mine) for f, mine in frames] == [
        ("call", 88, False), ("charge", 12, True), ("handler", 30, True)]  # fmt: skip
    assert [f.function for f in fingerprint_frames(PY_TRACE.format(line=12))] == ["charge", "handler"]


def test_node_and_java_frames_are_read_and_their_libraries_left_out():
    node = """TypeError: Cannot read properties of undefined (reading 'id')
    at getOrder (/var/task/orders.js:14:22)
    at Runtime.handler (/var/task/index.js:7:11)
    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)
    at Object.invoke (/var/task/node_modules/aws-sdk/lib/x.js:3:1)"""
    assert [(f.function, f.file, f.line) for f in fingerprint_frames(node)] == [
        ("getOrder", "/var/task/orders.js", 14), ("Runtime.handler", "/var/task/index.js", 7)]  # fmt: skip
    java = """java.lang.IllegalStateException: no stock
\tat com.shop.Stock.take(Stock.java:41)
\tat com.shop.Handler.handleRequest(Handler.java:19)
\tat java.base/jdk.internal.reflect.NativeMethodAccessorImpl.invoke0(Native Method)
\tat software.amazon.awssdk.core.Client.call(Client.java:100)"""
    assert [(f.function, f.line) for f in fingerprint_frames(java)] == [("take", 41), ("handleRequest", 19)]


def test_messages_lose_ids_addresses_times_and_numbers():
    text = ("order 12345 for user 7f9c1d2e-0b1a-4c3d-9e8f-001122334455 failed at 2026-11-24T10:01:02.5Z"
            " <Order object at 0x7f3a2b1c9d80> request a1b2c3d4e5f60718 retry #3 v2 took 1.5s")  # fmt: skip
    assert normalise_message(text) == (
        "order <n> for user <id> failed at <time> <Order object at <addr>> request <id> retry #<n> v2 took <n>s"
    )
    assert normalise_message("KeyError: 'order-991'") == "KeyError: 'order-<n>'"


def test_same_error_with_other_ids_in_its_message_is_one_issue_another_line_is_another():
    a = occurrences(span(), [exc("PaymentError", "card declined for order 1", PY_TRACE.format(line=12))])
    b = occurrences(span(), [exc("PaymentError", "card declined for order 2", PY_TRACE.format(line=12))])
    c = occurrences(span(), [exc("PaymentError", "card declined for order 1", PY_TRACE.format(line=13))])
    d = occurrences(span(), [exc("RefundError", "card declined for order 1", PY_TRACE.format(line=12))])
    assert a[0].fingerprint == b[0].fingerprint
    assert len({a[0].fingerprint, c[0].fingerprint, d[0].fingerprint}) == 3
    assert a[0].kind == EXCEPTION and a[0].title == "PaymentError: card declined for order <n>"
    assert a[0].culprit == "charge (/var/task/billing.py:12)" and a[0].function == "checkout"


def test_without_a_stack_trace_the_normalised_message_groups():
    one = occurrences(span(), [exc("TimeoutError", "read timed out after 3001 ms at 0x7ffee")])
    two = occurrences(span(), [exc("TimeoutError", "read timed out after 2999 ms at 0x1234")])
    other = occurrences(span(), [exc("TimeoutError", "connect timed out after 2999 ms")])
    assert one[0].fingerprint == two[0].fingerprint != other[0].fingerprint


def test_each_exception_event_of_a_span_is_an_occurrence_and_outranks_its_http_status():
    found = occurrences(span(attributes={"http.response.status_code": 500}), [exc("A", "x"), exc("B", "y")])
    assert [(o.kind, o.seq) for o in found] == [(EXCEPTION, 0), (EXCEPTION, 1)]


def test_http_5xx_timeouts_and_failed_invocations_are_issues_of_their_function():
    five = occurrences(span(attributes={"http.response.status_code": 503, "http.route": "/orders"}), [])
    assert [(o.kind, o.title) for o in five] == [(HTTP_5XX, "HTTP 503 from checkout /orders")]
    assert occurrences(span(status=0, attributes={"http.response.status_code": 404}), []) == []
    client = span(kind=CLIENT, attributes={"http.response.status_code": 503})
    assert occurrences(client, []) == []  # a call that failed is not the function answering 5xx
    timeout = occurrences(span(attributes={"hoptrace.faas.timeout": True}), [exc("X", "y")])
    assert [(o.kind, o.title) for o in timeout] == [(TIMEOUT, "checkout timed out")]
    failed = occurrences(span(name="orders process", kind=5, attributes={"faas.trigger": "pubsub"}), [],
                         "invocation failed: 42 records")  # fmt: skip
    assert [(o.kind, o.title) for o in failed] == [(ERROR, "checkout: invocation failed: <n> records")]
    assert occurrences(span(kind=CLIENT), [], "AccessDenied") == []  # errors of calls surface through their caller


def burst(rule: Rule, n: int) -> list[int]:
    """The counts (1-based) at which ``rule`` notifies during a burst of ``n`` in one bucket."""
    return [count for count in range(1, n + 1) if rule.notifies(count == 1, count)]


def test_faultline_rule_semantics():
    assert burst(Rule(1, 1, threshold=10, interval=100), 1000) == [1, 100, 200, 300, 400, 500, 600, 700, 800, 900,
                                                                   1000]  # fmt: skip
    assert burst(Rule(1, 1, threshold=500, interval=250), 1000) == [1, 500, 750, 1000]
    assert burst(Rule(1, 1, threshold=-1, interval=1), 1000) == [1]
    assert burst(Rule(1, 1), 5) == [1, 2, 3, 4, 5]  # defaults: every occurrence
    assert Rule(1, 1, threshold=-1).notifies(True, 77)  # a regression notifies like a first occurrence


def test_rules_filter_by_kind_and_function():
    rule = Rule(1, 1, kinds=(HTTP_5XX,), functions=("checkout",))
    assert rule.applies(HTTP_5XX, "checkout")
    assert not rule.applies(EXCEPTION, "checkout") and not rule.applies(HTTP_5XX, "billing")
    assert not Rule(1, 1, enabled=False).applies(EXCEPTION, "x")


def test_buckets_are_utc_aligned():
    minute = 29_000_000 + 61  # some minute since the epoch
    assert bucket_start_minute(minute, "minute") == minute
    assert bucket_start_minute(minute, "hour") == minute // 60 * 60
    assert bucket_start_minute(minute, "day") == minute // 1440 * 1440


def test_an_exception_that_went_up_through_several_spans_counts_once_where_it_was_raised():
    inner_trace = PY_TRACE.format(line=12)
    outer_trace = inner_trace.replace("Traceback (most recent call last):\n", "Traceback (most recent call last):\n"
                                      '  File "/var/task/main.py", line 3, in run\n    handler()\n')  # fmt: skip
    invocation = span(span_id=b"\1" * 8)
    child = span(span_id=b"\2" * 8, parent_span_id=b"\1" * 8, kind=INTERNAL, name="charge")
    # A batch record's span lives in its producer's trace and links to the invocation.
    record = span(trace_id=b"\7" * 16, span_id=b"\3" * 8, kind=CONSUMER, name="orders process",
                  links=(SpanLink(b"\1" * 16, b"\1" * 8, "invocation"),))  # fmt: skip
    raised = exc("PaymentError", "card declined for order 7", inner_trace)
    found = [(invocation, occurrences(invocation, [exc("PaymentError", "card declined for order 7", outer_trace)])),
             (child, occurrences(child, [raised])), (record, occurrences(record, [raised]))]  # fmt: skip
    kept = without_propagated(found)
    assert [o.span_id for o in kept] == [b"\2" * 8, b"\3" * 8]  # the invocation's copy is the same error
    other = [(invocation, occurrences(invocation, [exc("PaymentError", "card declined for order 8")])),
             (child, occurrences(child, [raised]))]  # fmt: skip
    assert len(without_propagated(other)) == 2  # another message: another error
