"""Logs in context, function side: ``logging`` records of an invocation leave with its spans as
OTLP logs over real HTTP, tied to the span that was current, redacted and capped; exception
messages on spans are redacted too; nothing here changes what the handler returns or raises."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import hoptrace
from hoptrace.instrumentation import guard, setup
from tests.lambda_context import LambdaContext
from tests.otlp_sink import OtlpSink

log = logging.getLogger("shop.payments")


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "checkout-worker")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    for name in ("HOPTRACE_LOG_LEVEL", "HOPTRACE_LOGS", "HOPTRACE_LOG_MAX_RECORDS", "HOPTRACE_LOG_MAX_BYTES"):
        monkeypatch.delenv(name, raising=False)
    setup.shutdown()
    guard.reset_stats()
    yield
    setup.shutdown()


def attrs(record: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in record.attributes:
        kind = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, kind) if kind else None
    return out


def span_named(sink: OtlpSink, name: str) -> Any:
    return next(s for s in sink.spans() if s.name == name)


def test_warnings_and_errors_of_an_invocation_arrive_tied_to_the_current_span(lambda_env: None) -> None:
    with OtlpSink() as sink:
        hoptrace.init(endpoint=sink.endpoint)
        tracer = setup.state().tracer  # type: ignore[union-attr]

        @hoptrace.lambda_handler
        def handler(event: Any, context: Any) -> Any:
            log.info("not kept: below WARNING")
            log.warning("card %s declined, retrying", "visa-1")
            with tracer.start_as_current_span("charge"):
                log.error("payments.shop.test answered 503", extra={"attempt": 2, "gateway": "payments"})
            return {"ok": True}

        result = handler({}, LambdaContext(function_name="checkout-worker"))
        assert result == {"ok": True}
        records = sink.logs()
        assert [r.body.string_value for r in records] == [
            "card visa-1 declined, retrying",
            "payments.shop.test answered 503",
        ]
        invocation = span_named(sink, "checkout-worker")
        charge = span_named(sink, "charge")
        assert records[0].span_id == invocation.span_id and records[0].trace_id == invocation.trace_id
        assert records[1].span_id == charge.span_id and records[1].trace_id == charge.trace_id
        assert [(r.severity_text, r.severity_number) for r in records] == [("WARNING", 13), ("ERROR", 17)]
        extra = attrs(records[1])
        assert extra["attempt"] == 2 and extra["gateway"] == "payments"
        assert extra["log.logger"] == "shop.payments"
        resource = {kv.key: kv.value.string_value for kv in sink.log_requests[0].resource_logs[0].resource.attributes}
        assert resource["faas.name"] == "checkout-worker"
        assert guard.stats().get("logs_exported") == 2


def test_the_level_is_configurable_and_nothing_is_sent_outside_an_invocation(
    lambda_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOPTRACE_LOG_LEVEL", "info")
    with OtlpSink() as sink:
        hoptrace.init(endpoint=sink.endpoint)
        log.warning("at import time: no invocation, not kept")

        @hoptrace.lambda_handler
        def handler(event: Any, context: Any) -> None:
            log.setLevel(logging.INFO)
            try:
                log.info("reserved 3 items")
            finally:
                log.setLevel(logging.NOTSET)

        handler({}, LambdaContext())
        assert [r.body.string_value for r in sink.logs()] == ["reserved 3 items"]


def test_no_log_request_when_an_invocation_logged_nothing(lambda_env: None) -> None:
    with OtlpSink() as sink:
        hoptrace.init(endpoint=sink.endpoint)
        hoptrace.lambda_handler(lambda event, context: 1)({}, LambdaContext())
        # only traces: the invocation (and its start announcement, unless the end superseded it)
        assert set(sink.paths) == {"/v1/traces"}


def test_secrets_in_log_messages_fields_and_exceptions_are_redacted_before_they_leave(lambda_env: None) -> None:
    secret = "hunter2-s3cr3t"
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"

    class LoginError(Exception):
        pass

    with OtlpSink() as sink:
        hoptrace.init(endpoint=sink.endpoint)

        @hoptrace.lambda_handler
        def handler(event: Any, context: Any) -> None:
            log.warning("login with password=%s and Authorization: Bearer %s", secret, jwt)
            log.warning("calling the gateway", extra={"api_key": secret, "request": {"token": secret, "id": 7}})
            try:
                raise LoginError(f"login failed for password={secret}")
            except LoginError:
                log.exception("could not log in")
            raise LoginError(f"gave up: token={secret} {jwt}")

        with pytest.raises(LoginError) as raised:
            handler({}, LambdaContext())
        assert secret in str(raised.value)  # the user's exception itself is untouched
        sent_logs = b"".join(r.SerializeToString() for r in sink.log_requests)
        sent_spans = b"".join(r.SerializeToString() for r in sink.requests)
        assert len(sink.logs()) == 3
        for sent in (sent_logs, sent_spans):
            assert secret.encode() not in sent
            assert jwt.encode() not in sent
        records = sink.logs()
        assert records[0].body.string_value.startswith("login with password=[REDACTED]")
        fields = attrs(records[1])
        assert fields["api_key"] == "[REDACTED]"
        assert json.loads(fields["request"]) == {"token": "[REDACTED]", "id": 7}
        failed = attrs(records[2])
        assert failed["exception.type"].endswith(".LoginError")  # as spans write it: module.qualname
        assert failed["exception.message"] == "login failed for password=[REDACTED]"
        assert "password=[REDACTED]" in failed["exception.stacktrace"]
        invocation = sink.spans()[0]
        event = next(e for e in invocation.events if e.name == "exception")
        message = {kv.key: kv.value.string_value for kv in event.attributes}["exception.message"]
        assert message == "gave up: token=[REDACTED] [REDACTED]"
        assert "[REDACTED]" in invocation.status.message


def test_records_are_capped_in_count_and_size(lambda_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOPTRACE_LOG_MAX_RECORDS", "5")
    monkeypatch.setenv("HOPTRACE_LOG_MAX_BYTES", "200")
    with OtlpSink() as sink:
        hoptrace.init(endpoint=sink.endpoint)

        @hoptrace.lambda_handler
        def handler(event: Any, context: Any) -> None:
            log.warning("x" * 10_000)
            for i in range(20):
                log.warning("retry %d", i)

        handler({}, LambdaContext())
        records = sink.logs()
        assert len(records) == 5
        assert len(records[0].body.string_value.encode()) <= 200
        assert "truncated" in records[0].body.string_value
        assert guard.stats()["logs_dropped"] == 16
        # The next invocation has its own allowance.
        handler({}, LambdaContext())
        assert len(sink.logs()) == 10


def test_a_thread_the_handler_starts_logs_into_the_invocation(lambda_env: None) -> None:
    with OtlpSink() as sink:
        hoptrace.init(endpoint=sink.endpoint)

        @hoptrace.lambda_handler
        def handler(event: Any, context: Any) -> None:
            worker = threading.Thread(target=lambda: log.error("from a worker thread"))
            worker.start()
            worker.join()

        handler({}, LambdaContext())
        (record,) = sink.logs()
        assert record.span_id == sink.spans()[0].span_id


def test_a_failing_log_path_never_reaches_user_code(lambda_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from hoptrace.instrumentation import logs

    def broken(self: Any, record: Any) -> Any:
        raise RuntimeError("bug in capture")

    monkeypatch.setattr(logs.LogCapture, "capture", broken)
    with OtlpSink() as sink:
        hoptrace.init(endpoint=sink.endpoint)

        @hoptrace.lambda_handler
        def handler(event: Any, context: Any) -> str:
            log.error("still fine")
            return "done"

        assert handler({}, LambdaContext()) == "done"
        assert sink.logs() == []
        assert guard.stats()["internal_errors.logs.capture"] == 1


def test_a_process_without_handlers_still_prints_its_warnings(
    lambda_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = []
    try:
        with OtlpSink() as sink:
            hoptrace.init(endpoint=sink.endpoint)
            logging.getLogger("lonely").warning("printed as before")
    finally:
        setup.shutdown()
        root.handlers = saved
    assert "printed as before" in capsys.readouterr().err


def test_powertools_json_lines_give_level_message_and_fields(lambda_env: None) -> None:
    import aws_lambda_powertools as powertools  # the dev extra installs it
    with OtlpSink() as sink:
        hoptrace.init(endpoint=sink.endpoint)
        logger = powertools.Logger(service="payments")

        @hoptrace.lambda_handler
        def handler(event: Any, context: Any) -> None:
            logger.append_keys(order_id="o-42")
            logger.warning("payment retried", extra={"attempt": 3, "password": "pw-123"})

        handler({}, LambdaContext())
        (record,) = sink.logs()
        assert record.body.string_value == "payment retried"
        assert record.severity_text == "WARNING"
        fields = attrs(record)
        assert fields["order_id"] == "o-42" and fields["attempt"] == 3 and fields["service"] == "payments"
        assert fields["password"] == "[REDACTED]"


def test_a_span_exporter_of_the_users_means_no_capture(lambda_env: None) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from hoptrace.instrumentation import logs

    hoptrace.init(exporter=InMemorySpanExporter())
    assert not any(isinstance(h, logs.LogCapture) for h in logging.getLogger().handlers)
    setup.shutdown()
    with OtlpSink() as sink:
        hoptrace.init(endpoint=sink.endpoint)
        assert sum(isinstance(h, logs.LogCapture) for h in logging.getLogger().handlers) == 1
        setup.shutdown()
        assert not any(isinstance(h, logs.LogCapture) for h in logging.getLogger().handlers)
