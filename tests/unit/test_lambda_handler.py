"""The Lambda handler wrapper: invocation spans per trigger, signals, and never changing results."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

import hoptrace
from hoptrace.instrumentation.aws_lambda import handler as handler_mod
from tests.conftest import Tracing
from tests.lambda_context import LambdaContext

EVENTS = Path(__file__).parent.parent / "fixtures" / "events"


def load(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


def invocation_span(tracing: Tracing) -> Any:
    spans = [s for s in tracing.spans() if "faas.trigger" in (s.attributes or {})]
    assert len(spans) == 1, [s.name for s in tracing.spans()]
    return spans[0]


def test_result_is_returned_unchanged_and_is_the_same_object(tracing: Tracing) -> None:
    result = {"statusCode": 200, "body": "ok"}

    @hoptrace.lambda_handler
    def fn(event: Any, context: Any) -> Any:
        return result

    assert fn({}, LambdaContext()) is result


def test_exception_is_reraised_as_the_same_object_and_recorded(tracing: Tracing) -> None:
    boom = KeyError("missing sku")

    @hoptrace.lambda_handler
    def fn(event: Any, context: Any) -> Any:
        raise boom

    with pytest.raises(KeyError) as info:
        fn({}, LambdaContext())
    assert info.value is boom
    span = invocation_span(tracing)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "KeyError"
    assert [e.name for e in span.events] == ["exception"]
    assert span.events[0].attributes["exception.type"] == "KeyError"


def test_api_gateway_rest_event_gives_a_server_span_named_by_route_continuing_the_caller(tracing: Tracing) -> None:
    @hoptrace.lambda_handler
    def fn(event: Any, context: Any) -> Any:
        return {"statusCode": 201}

    ctx = LambdaContext(function_name="cart-get")
    fn(load("apigw_rest.json"), ctx)
    span = invocation_span(tracing)
    assert span.name == "GET /cart/{id}"
    assert span.kind is SpanKind.SERVER
    a = span.attributes
    assert a["faas.trigger"] == "http"
    assert a["hoptrace.trigger.source"] == "aws:apigateway"
    assert a["http.route"] == "/cart/{id}"
    assert a["http.request.method"] == "GET"
    assert a["http.response.status_code"] == 201
    assert a["client.address"] == "203.0.113.7"
    assert a["faas.invocation_id"] == ctx.aws_request_id
    assert a["cloud.resource_id"] == ctx.invoked_function_arn
    assert a["cloud.account.id"] == "123456789012"
    assert a["faas.max_memory"] == 512 * 1024 * 1024
    assert span.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert span.parent is not None and span.parent.span_id == 0xB7AD6B7169203331


def test_http_api_event_continues_an_xray_trace_header_and_5xx_is_an_error(tracing: Tracing) -> None:
    @hoptrace.lambda_handler
    def fn(event: Any, context: Any) -> Any:
        return {"statusCode": 503, "body": "down"}

    fn(load("apigw_http_v2.json"), LambdaContext())
    span = invocation_span(tracing)
    assert span.name == "POST /cart/{id}/items"
    assert span.attributes["hoptrace.trigger.source"] == "aws:apigatewayv2"
    assert span.attributes["url.query"] == "coupon=SPRING"
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["http.response.status_code"] == 503
    assert f"{span.context.trace_id:032x}" == "5759e988bd862e3fe1be46a994272793"
    assert span.parent is not None and f"{span.parent.span_id:016x}" == "53995c3f42cd8ad8"


def test_http_api_response_without_status_code_counts_as_200(tracing: Tracing) -> None:
    @hoptrace.lambda_handler
    def fn(event: Any, context: Any) -> Any:
        return "plain body"

    fn(load("apigw_http_v2.json"), LambdaContext())
    assert invocation_span(tracing).attributes["http.response.status_code"] == 200


@pytest.mark.parametrize(
    ("fixture", "source", "trigger", "name"),
    [
        ("alb.json", "aws:elb", "http", "GET"),
        ("function_url.json", "aws:lambda-url", "http", "DELETE"),
        ("scheduled.json", "aws:scheduler", "timer", "cart-api"),
        ("s3_put.json", "aws:s3", "datasource", "cart-api"),
    ],
)
def test_trigger_kinds_are_recognised(tracing: Tracing, fixture: str, source: str, trigger: str, name: str) -> None:
    @hoptrace.lambda_handler
    def fn(event: Any, context: Any) -> Any:
        return {"statusCode": 200}

    fn(load(fixture), LambdaContext())
    span = invocation_span(tracing)
    assert span.attributes["hoptrace.trigger.source"] == source
    assert span.attributes["faas.trigger"] == trigger
    assert span.name == name


def test_s3_event_records_the_bucket(tracing: Tracing) -> None:
    @hoptrace.lambda_handler
    def fn(event: Any, context: Any) -> None:
        return None

    fn(load("s3_put.json"), LambdaContext())
    span = invocation_span(tracing)
    assert span.attributes["aws.s3.bucket"] == "receipts"
    assert span.kind is SpanKind.CONSUMER


def test_direct_invoke_is_trigger_other(tracing: Tracing) -> None:
    @hoptrace.lambda_handler
    def fn(event: Any, context: Any) -> Any:
        return event["x"] * 2

    assert fn({"x": 21}, LambdaContext()) == 42
    span = invocation_span(tracing)
    assert span.attributes["faas.trigger"] == "other"
    assert span.parent is None


def test_cold_start_is_true_only_for_the_first_invocation(tracing: Tracing, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handler_mod, "_cold_start", True)

    @hoptrace.lambda_handler
    def fn(event: Any, context: Any) -> None:
        return None

    fn({}, LambdaContext())
    fn({}, LambdaContext())
    spans = [s for s in tracing.spans() if "faas.trigger" in s.attributes]
    assert [s.attributes["faas.coldstart"] for s in spans] == [True, False]


def test_provisioned_concurrency_first_invocation_is_not_a_cold_start(
    tracing: Tracing, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handler_mod, "_cold_start", True)
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "provisioned-concurrency")

    @hoptrace.lambda_handler
    def fn(event: Any, context: Any) -> None:
        return None

    fn({}, LambdaContext())
    span = invocation_span(tracing)
    assert span.attributes["faas.coldstart"] is False
    assert span.attributes["hoptrace.faas.initialization_type"] == "provisioned-concurrency"


def test_a_repeated_request_id_is_marked_as_a_retry(tracing: Tracing) -> None:
    @hoptrace.lambda_handler
    def fn(event: Any, context: Any) -> None:
        return None

    ctx = LambdaContext()
    fn({}, ctx)
    fn({}, LambdaContext(aws_request_id=ctx.aws_request_id))
    spans = [s for s in tracing.spans() if "faas.trigger" in s.attributes]
    assert [s.attributes.get("hoptrace.faas.retry", False) for s in spans] == [False, True]


def test_label_goes_on_the_invocation_span(tracing: Tracing) -> None:
    @hoptrace.lambda_handler
    def fn(event: Any, context: Any) -> None:
        hoptrace.label("order_id", "o-17")
        hoptrace.label("amount", 12.5)

    fn({}, LambdaContext())
    span = invocation_span(tracing)
    assert span.attributes["hoptrace.label.order_id"] == "o-17"
    assert span.attributes["hoptrace.label.amount"] == 12.5


def test_watchdog_ends_and_flushes_the_invocation_before_the_deadline_without_sigalrm(tracing: Tracing) -> None:
    before = signal.getsignal(signal.SIGALRM)
    seen_during_handler: list[str] = []

    @hoptrace.lambda_handler
    def fn(event: Any, context: Any) -> str:
        # The deadline is 0.8 s away and the watchdog margin is 0.3 s (capped at half the time left):
        # wait, then look at what was exported while the handler is still running.
        time.sleep(0.65)
        seen_during_handler.extend(s.name for s in tracing.exporter.get_finished_spans())
        return "finished late"

    assert fn({}, LambdaContext(timeout_s=0.8)) == "finished late"
    assert signal.getsignal(signal.SIGALRM) == before
    assert "cart-api" in seen_during_handler
    span = invocation_span(tracing)
    assert span.attributes["hoptrace.faas.timeout"] is True
    assert span.attributes["hoptrace.faas.killed"] == "timeout"
    assert span.status.status_code is StatusCode.ERROR


def test_watchdog_does_not_fire_for_an_invocation_that_ends_in_time(tracing: Tracing) -> None:
    @hoptrace.lambda_handler
    def fn(event: Any, context: Any) -> str:
        return "quick"

    fn({}, LambdaContext(timeout_s=0.8))
    time.sleep(0.6)
    span = invocation_span(tracing)
    assert "hoptrace.faas.timeout" not in span.attributes
    assert span.status.status_code is StatusCode.UNSET


@pytest.mark.parametrize(
    "event",
    [
        None,
        "a string",
        [1, 2, 3],
        {"Records": "not a list"},
        {"Records": [1, "two", None]},
        {"Records": [{"eventSource": "aws:sqs"}]},
        {"requestContext": 5, "httpMethod": "GET"},
        {"requestContext": {"http": "x"}, "version": "2.0"},
        {"detail-type": None, "source": 3},
        {"Records": [{"eventSource": "aws:sqs", "messageAttributes": {"traceparent": {"stringValue": "garbage"}}}]},
    ],
)
def test_malformed_events_never_change_the_result(tracing: Tracing, event: Any) -> None:
    @hoptrace.lambda_handler
    def fn(event: Any, context: Any) -> Any:
        return ("echo", event)

    assert fn(event, LambdaContext()) == ("echo", event)
    assert invocation_span(tracing) is not None


def test_handler_without_context_still_works(tracing: Tracing) -> None:
    @hoptrace.lambda_handler
    def fn(event: Any, context: Any = None) -> int:
        return 7

    assert fn({}) == 7


def test_disabled_tracing_calls_the_handler_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    from hoptrace.instrumentation import setup

    setup.shutdown()
    monkeypatch.setenv("HOPTRACE_ENABLED", "false")
    try:

        @hoptrace.lambda_handler
        def fn(event: Any, context: Any) -> int:
            return 1

        assert fn({}, LambdaContext()) == 1
        st = setup.state()
        assert st is not None and st.config.enabled is False
    finally:
        setup.shutdown()


def test_an_invocation_is_announced_at_its_start_with_its_deadline_and_memory(tracing: Tracing) -> None:
    seen: list[Any] = []

    @hoptrace.lambda_handler
    def fn(event: Any, context: Any) -> Any:
        deadline = time.monotonic() + 5.0
        while not tracing.exporter.get_finished_spans() and time.monotonic() < deadline:
            time.sleep(0.01)  # sent in the background while the handler runs
        seen.extend(tracing.exporter.get_finished_spans())
        return "done"

    ctx = LambdaContext(memory_limit_in_mb=256, timeout_s=10.0)
    assert fn({}, ctx) == "done"
    (start,) = tracing.announcements()
    span = invocation_span(tracing)
    assert [s.attributes["hoptrace.faas.announcement"] for s in seen] == ["start"]
    assert start.context.trace_id == span.context.trace_id and start.context.span_id == span.context.span_id
    assert start.start_time == start.end_time == span.start_time
    assert start.attributes["faas.max_memory"] == 256 * 1024 * 1024
    assert 9000 < start.attributes["hoptrace.faas.deadline_ms"] <= 10000
    assert start.attributes["hoptrace.faas.memory_rss"] > 0
    assert span.attributes["hoptrace.faas.deadline_ms"] == start.attributes["hoptrace.faas.deadline_ms"]
    assert "hoptrace.faas.announcement" not in span.attributes
    # the process's resident high-water mark, in bytes: at least what it holds now
    assert span.attributes["hoptrace.faas.peak_memory"] >= start.attributes["hoptrace.faas.memory_rss"] // 2


def test_a_cold_start_records_the_init_duration_and_a_warm_one_does_not(tracing: Tracing) -> None:
    handler_mod._cold_start = True

    @hoptrace.lambda_handler
    def fn(event: Any, context: Any) -> Any:
        return None

    fn({}, LambdaContext())
    fn({}, LambdaContext())
    cold, warm = [s for s in tracing.spans() if "faas.trigger" in s.attributes]
    assert cold.attributes["faas.coldstart"] is True and cold.attributes["hoptrace.faas.init_ms"] > 0
    assert warm.attributes["faas.coldstart"] is False and "hoptrace.faas.init_ms" not in warm.attributes


def test_memory_near_the_limit_is_announced_while_the_invocation_runs(tracing: Tracing) -> None:
    from hoptrace.instrumentation.aws_lambda.announce import memory_rss

    rss = memory_rss()
    assert rss is not None
    limit_mb = (rss + 40 * 1024 * 1024) // (1024 * 1024)  # 40 MiB above what the process holds now
    held: list[bytearray] = []

    @hoptrace.lambda_handler
    def fn(event: Any, context: Any) -> Any:
        for _ in range(40):
            held.append(bytearray(b"x" * 1024 * 1024))  # written, so resident
            time.sleep(0.01)
        time.sleep(0.2)  # a few of the watchdog's readings
        return len(held)

    assert fn({}, LambdaContext(memory_limit_in_mb=limit_mb, timeout_s=30.0)) == 40
    phases = [a.attributes["hoptrace.faas.announcement"] for a in tracing.announcements()]
    assert phases == ["start", "memory"]
    reading = tracing.announcements()[1]
    assert reading.attributes["hoptrace.faas.memory_rss"] >= 0.85 * limit_mb * 1024 * 1024
    held.clear()


def test_a_memory_error_is_recorded_as_out_of_memory_and_reraised(tracing: Tracing) -> None:
    @hoptrace.lambda_handler
    def fn(event: Any, context: Any) -> Any:
        raise MemoryError()

    with pytest.raises(MemoryError):
        fn({}, LambdaContext())
    span = invocation_span(tracing)
    assert span.attributes["hoptrace.faas.killed"] == "out_of_memory"
    assert span.status.status_code is StatusCode.ERROR


def test_without_announcements_nothing_is_sent_before_the_end() -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from hoptrace.instrumentation import setup

    setup.shutdown()
    exporter = InMemorySpanExporter()
    st = setup.init(exporter=exporter, lambda_mode=True, service_name="test-fn", announce=False)
    try:

        @hoptrace.lambda_handler
        def fn(event: Any, context: Any) -> Any:
            return 1

        fn({}, LambdaContext())
        st.flush(5.0)
        exported = exporter.get_finished_spans()
        assert [dict(s.attributes or {}).get("hoptrace.faas.announcement") for s in exported] == [None]
    finally:
        setup.shutdown()
