"""OTLP/gRPC ingest, in-process on loopback: the SDK's gRPC exporter and raw stubs against the
collector's pipeline, read back through the store."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc.error_details_pb2 import BadRequest, RetryInfo  # type: ignore[import-untyped]
from google.rpc.status_pb2 import Status  # type: ignore[import-untyped]
from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hoptrace.collector import grpc_ingest, otlp
from hoptrace.collector.app import Collector
from hoptrace.collector.auth import create_project
from hoptrace.collector.config import CollectorConfig
from hoptrace.collector.grpc_ingest import (
    RETRY_INFO_TRAILER,
    STATUS_DETAILS_TRAILER,
    GrpcIngestError,
    OtlpGrpcServer,
    start_grpc,
)
from hoptrace.collector.otlp import Limits
from hoptrace.collector.store import SpanQuery
from hoptrace.collector.writer import Overloaded
from tests.otlp_build import new_id, request, span

COMPRESSIONS = [grpc.Compression.NoCompression, grpc.Compression.Gzip]


class Running:
    """A collector on a fresh SQLite file with its OTLP/gRPC endpoint on a free loopback port."""

    def __init__(self, collector: Collector, server: OtlpGrpcServer) -> None:
        self.collector = collector
        self.server = server
        self.channel = grpc.insecure_channel(server.target)
        self.stub: Any = trace_service_pb2_grpc.TraceServiceStub(self.channel)

    @property
    def endpoint(self) -> str:
        return f"http://{self.server.target}"

    def export(
        self, req: ExportTraceServiceRequest, token: str | None = None, header: str = "authorization", **kw: Any
    ) -> Any:
        """One raw Export call, the token in metadata ``header``; a refusal raises grpc.RpcError."""
        metadata: tuple[tuple[str, str], ...] = ()
        if token is not None:
            metadata = ((header, f"Bearer {token}" if header == "authorization" else token),)
        return self.stub.Export(req, metadata=metadata, timeout=30, **kw)

    def refusal(self, req: ExportTraceServiceRequest, **kw: Any) -> Any:
        """The error an Export call ends with (fails the test if it succeeds)."""
        with pytest.raises(grpc.RpcError) as info:
            self.export(req, **kw)
        return info.value

    def stored(self, trace_id: bytes, project_id: int | None = None) -> list[Any]:
        project = self.collector.default_project_id if project_id is None else project_id
        return list(self.collector.store.trace(project, trace_id))


@contextmanager
def running(tmp_path: Path, limits: Limits | None = None) -> Iterator[Running]:
    config = CollectorConfig(store_url=f"sqlite:///{tmp_path / 'grpc.db'}", limits=limits or Limits())
    collector = Collector(config)
    collector.start()
    server = start_grpc(collector, "127.0.0.1", 0)
    r = Running(collector, server)
    try:
        yield r
    finally:
        r.channel.close()
        server.stop(5)
        collector.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Running]:
    with running(tmp_path) as r:
        yield r


def sdk_spans(service: str = "checkout") -> tuple[list[Any], bytes]:
    """A server span with a producer child, finished by the real SDK; and their trace id."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("POST /orders", kind=trace_api.SpanKind.SERVER) as root:
        root.set_attribute("hoptrace.label.order_id", "o-42")
        with tracer.start_as_current_span("SQS.SendMessage", kind=trace_api.SpanKind.PRODUCER):
            pass
    provider.shutdown()
    spans = list(memory.get_finished_spans())
    return spans, spans[0].context.trace_id.to_bytes(16, "big")


def retry_delay_s(error: Any) -> int:
    """The RetryInfo delay of a refusal, checking both trailers carry the same one."""
    trailers = dict(error.trailing_metadata())
    status = Status.FromString(trailers[STATUS_DETAILS_TRAILER])
    assert status.code == error.code().value[0]
    info = RetryInfo()
    assert status.details[0].Unpack(info)
    assert RetryInfo.FromString(trailers[RETRY_INFO_TRAILER]) == info
    return int(info.retry_delay.seconds)


@pytest.mark.parametrize("compression", COMPRESSIONS, ids=["identity", "gzip"])
def test_spans_from_the_sdk_grpc_exporter_are_committed_before_the_answer(
    served: Running, compression: grpc.Compression
) -> None:
    spans, trace_id = sdk_spans()
    exporter = OTLPSpanExporter(endpoint=served.endpoint, insecure=True, compression=compression)
    try:
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    # Read straight after the answer: an acknowledged span is already committed.
    stored = {s.name: s for s in served.stored(trace_id)}
    assert sorted(stored) == ["POST /orders", "SQS.SendMessage"]
    root, send = stored["POST /orders"], stored["SQS.SendMessage"]
    assert root.service_name == "checkout"
    assert root.kind == Span.SPAN_KIND_SERVER
    assert send.kind == Span.SPAN_KIND_PRODUCER
    assert send.parent_span_id == root.span_id
    found = served.collector.store.search_spans(
        served.collector.default_project_id, SpanQuery(terms=(("label.order_id", "o-42"),))
    )
    assert [s.name for s in found] == ["POST /orders"]


def test_the_answer_waits_for_the_commit(served: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    store = served.collector.store
    real_write = store.write
    writing, release = threading.Event(), threading.Event()

    def gated(items: Any) -> None:
        writing.set()
        assert release.wait(30), "the test never released the write"
        real_write(items)

    monkeypatch.setattr(store, "write", gated)
    s = span("gated")
    call = served.stub.Export.future(request([s]), timeout=60)
    try:
        assert writing.wait(30), "the batch never reached the store"
        assert not call.done()  # the store has not committed, so there is no answer yet
    finally:
        release.set()
    call.result()
    assert [x.name for x in served.stored(s.trace_id)] == ["gated"]


def test_an_empty_request_succeeds_without_partial_success(served: Running) -> None:
    response = served.export(ExportTraceServiceRequest())
    assert not response.HasField("partial_success")


def test_spans_with_invalid_ids_are_counted_in_partial_success_and_the_rest_stored(served: Running) -> None:
    trace_id = new_id(16)
    good = span("good", trace_id=trace_id)
    zero_trace = span("zero trace", trace_id=b"\0" * 16)
    short_span = span("short span", trace_id=trace_id)
    short_span.span_id = b"\1\2\3"
    response = served.export(request([good, zero_trace, short_span]))
    assert response.partial_success.rejected_spans == 2
    assert "invalid trace id" in response.partial_success.error_message
    assert "invalid span id" in response.partial_success.error_message
    assert [s.name for s in served.stored(trace_id)] == ["good"]


def test_a_request_whose_spans_are_all_valid_has_no_partial_success(served: Running) -> None:
    response = served.export(request([span("fine")]))
    assert not response.HasField("partial_success")


@pytest.mark.parametrize("compression", COMPRESSIONS, ids=["identity", "gzip"])
def test_a_message_past_the_size_limit_is_refused_even_when_gzip_makes_it_small(
    tmp_path: Path, compression: grpc.Compression
) -> None:
    with running(tmp_path, Limits(max_body_bytes=64 * 1024)) as r:
        big = span("big", attributes={"payload": "x" * 200_000})  # gzips to well under the limit
        error = r.refusal(request([big]), compression=compression)
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert r.stored(big.trace_id) == []
        small = span("small")
        r.export(request([small]), compression=compression)
        assert [s.name for s in r.stored(small.trace_id)] == ["small"]


def test_more_spans_than_the_limit_is_invalid_argument_and_nothing_is_stored(tmp_path: Path) -> None:
    with running(tmp_path, Limits(max_spans=3)) as r:
        trace_id = new_id(16)
        error = r.refusal(request([span(trace_id=trace_id) for _ in range(4)]))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "more than the limit of 3" in error.details()
        status = Status.FromString(dict(error.trailing_metadata())[STATUS_DETAILS_TRAILER])
        bad = BadRequest()
        assert status.details[0].Unpack(bad)
        assert "more than the limit of 3" in bad.field_violations[0].description
        assert r.stored(trace_id) == []


def test_without_tokens_the_collector_is_open_and_uses_the_default_project(served: Running) -> None:
    s = span("anyone")
    served.export(request([s]), token="not-a-token-anyone-created")
    assert [x.name for x in served.stored(s.trace_id)] == ["anyone"]


class TestTokens:
    """Once a project has tokens, a call needs that project's ingest token."""

    @pytest.fixture
    def shop(self, served: Running) -> tuple[int, str, str]:
        project, ingest, read = create_project(served.collector.store, "shop")
        return project.id, ingest, read

    def test_no_token_is_unauthenticated(self, served: Running, shop: tuple[int, str, str]) -> None:
        error = served.refusal(request([span()]))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "token" in error.details()

    def test_an_unknown_token_is_unauthenticated(self, served: Running, shop: tuple[int, str, str]) -> None:
        error = served.refusal(request([span()]), token="ht_ingest_forged")
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED

    def test_a_read_token_is_permission_denied(self, served: Running, shop: tuple[int, str, str]) -> None:
        _, _, read = shop
        s = span()
        error = served.refusal(request([s]), token=read)
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "read token" in error.details()
        assert served.stored(s.trace_id, shop[0]) == []

    @pytest.mark.parametrize("header", ["authorization", "x-hoptrace-token"])
    def test_an_ingest_token_stores_spans_in_its_project(
        self, served: Running, shop: tuple[int, str, str], header: str
    ) -> None:
        project_id, ingest, _ = shop
        s = span("in shop")
        served.export(request([s]), token=ingest, header=header)
        assert [x.name for x in served.stored(s.trace_id, project_id)] == ["in shop"]
        assert served.stored(s.trace_id) == []  # not in the default project

    def test_the_sdk_exporter_sends_its_ingest_token_as_metadata(
        self, served: Running, shop: tuple[int, str, str]
    ) -> None:
        project_id, ingest, _ = shop
        spans, trace_id = sdk_spans()
        exporter = OTLPSpanExporter(
            endpoint=served.endpoint, insecure=True, headers={"authorization": f"Bearer {ingest}"}
        )
        try:
            assert exporter.export(spans) == SpanExportResult.SUCCESS
        finally:
            exporter.shutdown()
        assert len(served.stored(trace_id, project_id)) == 2


def test_an_overloaded_writer_answers_unavailable_with_its_retry_delay(
    served: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(project_id: int, batch: Any) -> Any:
        raise Overloaded(retry_after_s=3)

    monkeypatch.setattr(served.collector.writer, "submit", full)
    error = served.refusal(request([span()]))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "overloaded" in error.details()
    assert retry_delay_s(error) == 3


def test_a_full_write_backlog_is_refused_before_validation(served: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_run(*args: Any, **kw: Any) -> Any:
        raise AssertionError("validated a request the backlog could not take")

    monkeypatch.setattr(served.collector.config, "max_pending_spans", 0)
    # Validation: the span count on the call's thread, the rows in the writer.
    monkeypatch.setattr(grpc_ingest, "count_spans", must_not_run)
    monkeypatch.setattr(otlp, "normalise", must_not_run)
    error = served.refusal(request([span()]))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "backlog is full" in error.details()
    assert retry_delay_s(error) == 1


def test_a_stopping_writer_answers_unavailable_with_a_retry_delay(served: Running) -> None:
    served.collector.writer.close()
    s = span()
    error = served.refusal(request([s]))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "shutting down" in error.details()
    assert retry_delay_s(error) == 5


def test_a_failed_commit_answers_unavailable_with_a_retry_delay(
    served: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(items: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(served.collector.store, "write", broken)
    error = served.refusal(request([span()]))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "failed to commit" in error.details()
    assert retry_delay_s(error) == 2


def test_a_busy_port_is_a_clear_start_up_error(served: Running) -> None:
    with pytest.raises(GrpcIngestError, match=r"cannot listen for OTLP/gRPC on 127\.0\.0\.1:\d+: .*--grpc-port"):
        start_grpc(served.collector, "127.0.0.1", served.server.port)


def test_without_grpcio_starting_says_how_to_install_it(served: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "grpc", None)  # makes `import grpc` fail as if not installed
    with pytest.raises(GrpcIngestError, match=r"pip install 'hoptrace\[grpc\]'"):
        start_grpc(served.collector, "127.0.0.1", 0)
