"""hoptrace's own spans behave as the OpenTelemetry API and SDK specify, where hoptrace relies on it."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from hoptrace.instrumentation import setup, spans


class Collect:
    def __init__(self) -> None:
        self.started: list[Any] = []
        self.ended: list[Any] = []

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.started.append(span)

    def on_end(self, span: Any) -> None:
        self.ended.append(span)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def shutdown(self) -> None:
        pass


@pytest.fixture
def provider() -> tuple[spans.TracerProvider, Collect]:
    processor = Collect()
    return spans.TracerProvider(spans.Resource({"service.name": "fn"}), processor), processor


def test_a_span_made_through_the_opentelemetry_api_nests_under_the_current_one(provider: Any) -> None:
    prov, processor = provider
    ours = prov.get_tracer("hoptrace")
    users = prov.get_tracer("user.code")
    with ours.start_as_current_span("invocation") as invocation_span, users.start_as_current_span("work") as work_span:
        assert trace.get_current_span() is work_span
    invocation: Any = invocation_span
    work: Any = work_span
    assert work.parent == invocation.get_span_context()
    assert work.context.trace_id == invocation.context.trace_id
    assert [s.name for s in processor.ended] == ["work", "invocation"]
    assert work.instrumentation_scope.name == "user.code"


def test_children_of_an_unsampled_remote_parent_are_not_recorded_but_keep_its_trace(provider: Any) -> None:
    prov, processor = provider
    parent = SpanContext(7, 9, is_remote=True, trace_flags=TraceFlags(TraceFlags.DEFAULT))
    span = prov.get_tracer("t").start_span("x", context=trace.set_span_in_context(trace.NonRecordingSpan(parent)))
    assert not span.is_recording()
    assert span.get_span_context().trace_id == 7 and not span.get_span_context().trace_flags.sampled
    assert processor.started == []


def test_a_root_span_gets_new_ids_and_no_parent(provider: Any) -> None:
    prov, _ = provider
    a = prov.get_tracer("t").start_span("a", context=otel_context.Context())
    b = prov.get_tracer("t").start_span("b", context=otel_context.Context())
    assert a.parent is None and a.context.is_valid and a.context.trace_flags.sampled
    assert a.context.trace_id != b.context.trace_id


def test_status_follows_the_sdk_rules(provider: Any) -> None:
    prov, _ = provider
    span: Any = prov.get_tracer("t").start_span("s")
    span.set_status(StatusCode.UNSET)
    assert span.status.status_code is StatusCode.UNSET
    span.set_status(StatusCode.ERROR, "boom")
    assert (span.status.status_code, span.status.description) == (StatusCode.ERROR, "boom")
    span.set_status(Status(StatusCode.OK))
    span.set_status(StatusCode.ERROR, "later")  # OK is final
    final: Status = span.status
    assert final.status_code is StatusCode.OK


def test_attributes_are_kept_as_the_api_cleans_them(provider: Any) -> None:
    prov, _ = provider
    span = prov.get_tracer("t").start_span("s", attributes={"list": ["a", "b"], "": "no key"})
    span.set_attribute("n", 1)
    span.set_attribute("obj", object())  # neither __str__ nor __repr__ of its own: dropped
    span.set_attributes({"d": {"k": [1, 2]}})
    assert span.attributes == {"list": ("a", "b"), "n": 1, "d": {"k": (1, 2)}}
    assert span.dropped_attributes == 2
    span.end()
    span.set_attribute("after", True)
    assert "after" not in span.attributes


def test_past_the_attribute_limit_the_newest_win(provider: Any) -> None:
    prov, _ = provider
    span = prov.get_tracer("t").start_span("s")
    for i in range(spans.MAX_ATTRIBUTES + 3):
        span.set_attribute(f"a{i}", i)
    assert len(span.attributes) == spans.MAX_ATTRIBUTES
    assert "a0" not in span.attributes and f"a{spans.MAX_ATTRIBUTES + 2}" in span.attributes
    assert span.dropped_attributes == 3


def test_an_exception_leaving_a_span_is_recorded_and_ends_it(provider: Any) -> None:
    prov, processor = provider
    with pytest.raises(KeyError), prov.get_tracer("t").start_as_current_span("s", kind=SpanKind.CLIENT):
        raise KeyError("k")
    (span,) = processor.ended
    assert span.status.status_code is StatusCode.ERROR
    (event,) = span.events
    assert event.name == "exception" and event.attributes["exception.type"] == "KeyError"
    assert "KeyError" in event.attributes["exception.stacktrace"]


def test_a_span_ends_once_even_if_ended_twice(provider: Any) -> None:
    prov, processor = provider
    span = prov.get_tracer("t").start_span("s")
    span.end(end_time=5)
    span.end(end_time=9)
    assert processor.ended == [span] and span.end_time == 5


def test_the_resource_merges_the_otel_variables_in_the_sdks_order() -> None:
    env = {"OTEL_RESOURCE_ATTRIBUTES": "team=a%20b,service.name=from-attrs,bad", "OTEL_SERVICE_NAME": "from-var"}
    resource = spans.resource_from_env({"faas.name": "fn"}, "9.9", env)
    assert resource.attributes["team"] == "a b"
    assert resource.attributes["service.name"] == "from-var"
    assert resource.attributes["faas.name"] == "fn"
    assert resource.attributes["telemetry.sdk.name"] == "hoptrace"
    assert spans.resource_from_env({"service.name": "given"}, "9.9", env).attributes["service.name"] == "given"
    assert str(spans.resource_from_env({}, "9.9", {}).attributes["service.name"]).startswith("unknown_service")


@pytest.mark.parametrize(
    ("env", "needed"),
    [
        ({}, None),
        ({"OTEL_TRACES_SAMPLER": "parentbased_always_on"}, None),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}, "OTEL_TRACES_SAMPLER"),
        ({"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "10"}, "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT"),
        ({"OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "otel"}, None),
        ({"OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "process"}, "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS"),
    ],
)
def test_what_only_the_sdk_does_is_detected(env: dict[str, str], needed: str | None) -> None:
    assert spans.sdk_needed(env) == needed


def test_lambda_mode_uses_the_sdk_when_a_variable_asks_for_its_sampler(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    setup.shutdown()
    exporter = InMemorySpanExporter()
    try:
        st = setup.init(exporter=exporter, lambda_mode=True)
        assert isinstance(st.provider, SdkTracerProvider)
        st.tracer.start_span("dropped by the sampler").end()
        st.flush(5)
        assert exporter.get_finished_spans() == ()
    finally:
        setup.shutdown()


def test_lambda_mode_uses_hoptraces_spans_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.util._once import Once

    # The global provider can be set once per process: give this test a fresh one.
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    setup.shutdown()
    exporter = InMemorySpanExporter()
    try:
        st = setup.init(exporter=exporter, lambda_mode=True, service_name="fn")
        assert isinstance(st.provider, spans.TracerProvider)
        with st.tracer.start_as_current_span("parent"), trace.get_tracer("user").start_as_current_span("child"):
            pass
        st.flush(5)
        child, parent = exporter.get_finished_spans()  # SDK ReadableSpans, for SDK exporters
        assert child.parent is not None and child.parent.span_id == parent.context.span_id
        assert parent.resource.attributes["service.name"] == "fn"
    finally:
        setup.shutdown()
