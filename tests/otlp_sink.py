"""A stand-in OTLP/HTTP receiver on loopback that records what it was sent.

It can answer 200, fail with a status, or hold every response until the test releases it
(a slow collector). Used until the real collector exists, and to test export faults.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


class OtlpSink:
    def __init__(self, status: int = 200, hold: bool = False) -> None:
        self.status = status
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.requests: list[ExportTraceServiceRequest] = []
        self.headers: list[dict[str, str]] = []
        self.log_requests: list[ExportLogsServiceRequest] = []
        self.paths: list[str] = []
        self.received = threading.Event()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                sink.received.set()
                sink.release.wait(10)
                sink.paths.append(self.path)
                if self.path == "/v1/logs" and sink.status == 200:
                    logs = ExportLogsServiceRequest()
                    logs.ParseFromString(body)
                    sink.log_requests.append(logs)
                if self.path == "/v1/traces" and sink.status == 200:
                    req = ExportTraceServiceRequest()
                    req.ParseFromString(body)
                    sink.requests.append(req)
                    sink.headers.append({k.lower(): v for k, v in self.headers.items()})
                payload = ExportTraceServiceResponse().SerializeToString()
                self.send_response(sink.status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> OtlpSink:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def spans(self) -> list[Any]:
        """The spans received; invocations' start announcements are not spans (``announcements()``)."""
        return [s for s in self._all() if not _announcement(s)]

    def announcements(self) -> list[Any]:
        """The records announcing invocations as they started (and their memory near the limit)."""
        return [s for s in self._all() if _announcement(s)]

    def _all(self) -> list[Any]:
        out: list[Any] = []
        for req in self.requests:
            for rs in req.resource_spans:
                for ss in rs.scope_spans:
                    out.extend(ss.spans)
        return out

    def logs(self) -> list[Any]:
        """Every LogRecord received, in order."""
        requests = self.log_requests
        return [lr for req in requests for rl in req.resource_logs for sl in rl.scope_logs for lr in sl.log_records]

    def resources(self) -> list[dict[str, Any]]:
        return [
            {kv.key: kv.value.string_value or kv.value.int_value for kv in rs.resource.attributes}
            for req in self.requests
            for rs in req.resource_spans
        ]


def _announcement(span: Any) -> bool:
    return span.start_time_unix_nano == span.end_time_unix_nano and any(
        kv.key == "hoptrace.faas.announcement" for kv in span.attributes
    )
