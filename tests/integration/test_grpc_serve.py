"""``hoptrace serve --grpc-port``: OTLP/gRPC next to OTLP/HTTP in the real collector process."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.collector_server import CollectorProcess
from tests.conftest import free_port


def test_serve_with_grpc_port_stores_what_the_sdk_grpc_exporter_sends(tmp_path: Path) -> None:
    grpc_port = free_port()
    with CollectorProcess(f"sqlite:///{tmp_path / 'ht.db'}", "--grpc-port", str(grpc_port)) as collector:
        memory = InMemorySpanExporter()
        provider = TracerProvider(resource=Resource.create({"service.name": "billing"}))
        provider.add_span_processor(SimpleSpanProcessor(memory))
        with provider.get_tracer("test").start_as_current_span("charge", kind=trace_api.SpanKind.SERVER):
            pass
        provider.shutdown()
        exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{grpc_port}", insecure=True)
        try:
            assert exporter.export(memory.get_finished_spans()) == SpanExportResult.SUCCESS
        finally:
            exporter.shutdown()
        with collector.client() as http:
            services = http.get("/api/v1/services").json()["services"]
            assert [s["name"] for s in services] == ["billing"]


def test_a_busy_grpc_port_is_a_clear_start_up_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "hoptrace.collector.cli",
                "serve",
                "--store",
                f"sqlite:///{tmp_path}/ht.db",
                "--port",
                str(free_port()),
                "--grpc-port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "--grpc-port" in result.stderr
