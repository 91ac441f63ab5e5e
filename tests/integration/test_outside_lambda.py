"""Outside Lambda (a container polling SQS): background batch export, and records() over a ReceiveMessage response."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind

import hoptrace
from hoptrace.instrumentation import setup
from tests.otlp_sink import OtlpSink


def test_a_long_running_consumer_gets_a_process_span_per_message_in_its_producers_trace(
    moto_endpoint: str, monkeypatch: Any
) -> None:
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    setup.shutdown()
    try:
        with OtlpSink() as sink:
            st = hoptrace.init(endpoint=sink.endpoint, service_name="poller")
            assert st.lambda_mode is False
            assert isinstance(st.processor, BatchSpanProcessor)
            import boto3

            sqs: Any = boto3.session.Session(region_name="us-east-1").client("sqs", endpoint_url=moto_endpoint)
            url = sqs.create_queue(QueueName="container-jobs")["QueueUrl"]
            with st.tracer.start_as_current_span("producer") as producer:
                sqs.send_message(QueueUrl=url, MessageBody="job-1")
            response = sqs.receive_message(
                QueueUrl=url, MessageAttributeNames=["All"], MessageSystemAttributeNames=["All"]
            )
            handled = []
            for message in hoptrace.records(response):
                handled.append(message["Body"])
            assert handled == ["job-1"]
            assert hoptrace.flush(5000)
            spans = {s.name: s for s in sink.spans()}
            process = spans["container-jobs process"]
            assert process.kind == SpanKind.CONSUMER.value + 1  # OTLP enum: SPAN_KIND_CONSUMER == 5
            assert process.trace_id == producer.get_span_context().trace_id.to_bytes(16, "big")
            assert process.parent_span_id == spans["SQS.SendMessage"].span_id
    finally:
        setup.shutdown()


def test_captured_events_are_redacted_before_they_leave_the_process(monkeypatch: Any) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from tests.lambda_context import LambdaContext

    setup.shutdown()
    exporter = InMemorySpanExporter()
    st = setup.init(exporter=exporter, lambda_mode=True, capture_payloads=True, payload_max_bytes=2048)
    try:

        @hoptrace.lambda_handler
        def fn(event: Any, context: Any) -> dict[str, Any]:
            return {"statusCode": 200, "headers": {"Authorization": "Bearer abc.def"}, "body": "ok"}

        fn({"user": "ann", "password": "hunter2", "nested": {"api_token": "t0k3n"}}, LambdaContext())
        st.flush(5)
        # the invocation span, not its start announcement (which carries the same redacted event)
        (span,) = [s for s in exporter.get_finished_spans() if "hoptrace.faas.announcement" not in (s.attributes or {})]
        event = str((span.attributes or {})["hoptrace.payload.event"])
        response = str((span.attributes or {})["hoptrace.payload.response"])
        assert "ann" in event and "hunter2" not in event and "t0k3n" not in event
        assert "abc.def" not in response and "[REDACTED]" in response
    finally:
        setup.shutdown()
