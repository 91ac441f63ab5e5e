"""Export over real OTLP/HTTP: spans arrive, and a dead, failing or slow collector changes nothing for the user."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import hoptrace
from hoptrace.instrumentation import guard, setup
from tests.lambda_context import LambdaContext
from tests.otlp_sink import OtlpSink


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "checkout")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    setup.shutdown()
    guard.reset_stats()
    yield
    setup.shutdown()


def traced(result: Any) -> Any:
    @hoptrace.lambda_handler
    def handler(event: Any, context: Any) -> Any:
        return result

    return handler


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_spans_reach_an_otlp_receiver_with_the_lambda_resource(lambda_env: None) -> None:
    with OtlpSink() as sink:
        hoptrace.init(endpoint=sink.endpoint, headers={"x-hoptrace-token": "t-123"})
        ctx = LambdaContext(function_name="checkout")
        assert traced("done")({"x": 1}, ctx) == "done"
        assert [s.name for s in sink.spans()] == ["checkout"]
        resource = sink.resources()[0]
        assert resource["service.name"] == "checkout"
        assert resource["faas.name"] == "checkout"
        assert resource["cloud.region"] == "eu-west-1"
        assert resource["faas.max_memory"] == 256 * 1024 * 1024
        assert sink.headers[0]["x-hoptrace-token"] == "t-123"
        attrs = {kv.key: kv.value.string_value for kv in sink.spans()[0].attributes}
        assert attrs["faas.invocation_id"] == ctx.aws_request_id
    assert hoptrace.stats().get("spans_exported") == 1


def test_otel_exporter_variables_configure_the_endpoint(lambda_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    with OtlpSink() as sink:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", sink.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20abc")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "cart")
        hoptrace.init()
        traced(None)({}, LambdaContext())
        assert sink.resources()[0]["service.name"] == "cart"
        assert sink.headers[0]["authorization"] == "Bearer abc"


def test_collector_down_leaves_the_result_unchanged_and_counts_the_drop(lambda_env: None) -> None:
    hoptrace.init(endpoint=f"http://127.0.0.1:{closed_port()}", flush_budget_ms=300)
    result = {"statusCode": 200}
    assert traced(result)({}, LambdaContext()) is result
    hoptrace.flush(3000)  # let the worker finish its attempt before reading the counters
    stats = hoptrace.stats()
    assert stats.get("spans_exported", 0) == 0
    assert stats.get("spans_dropped", 0) >= 1


def test_collector_answering_500_leaves_exceptions_unchanged(lambda_env: None) -> None:
    with OtlpSink(status=500) as sink:
        hoptrace.init(endpoint=sink.endpoint, flush_budget_ms=300)
        err = ValueError("bad order")

        @hoptrace.lambda_handler
        def fails(event: Any, context: Any) -> None:
            raise err

        with pytest.raises(ValueError) as info:
            fails({}, LambdaContext())
        assert info.value is err
        assert sink.received.wait(5)
        assert sink.spans() == []
    assert hoptrace.stats().get("spans_exported", 0) == 0


def test_slow_collector_does_not_hold_the_function_past_the_flush_budget(lambda_env: None) -> None:
    with OtlpSink(hold=True) as sink:
        hoptrace.init(endpoint=sink.endpoint, flush_budget_ms=100)
        returned = threading.Event()

        def call() -> None:
            traced("ok")({}, LambdaContext())
            returned.set()

        worker = threading.Thread(target=call)
        worker.start()
        # The collector holds its answer; the handler must come back without it.
        assert returned.wait(8), "the handler waited for the collector beyond its flush budget"
        assert sink.received.is_set()
        sink.release.set()
        worker.join(5)
    assert hoptrace.stats().get("flush_budget_exceeded") == 1
