"""A minimal OTLP/HTTP trace sink on 127.0.0.1, standing in for the collector until it exists.

``POST /v1/traces`` answers 200 with an empty protobuf body (an empty ExportTraceServiceResponse
is zero bytes) before decoding anything, so the exporter sees the fastest possible collector;
the request is then decoded to count spans per ``service.name``, which ``GET /stats`` returns,
so a benchmark can check its spans really arrived.

Run as ``python -m bench.instrumentation.sink``: prints the port on the first line of stdout
and serves until stdin closes or ``--max-seconds`` pass, whichever comes first.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import threading
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_lock = threading.Lock()
_stats: Counter[str] = Counter()
_by_service: Counter[str] = Counter()


def _count_spans(body: bytes) -> None:
    try:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
    except Exception:
        with _lock:
            _stats["undecodable"] += 1
        return
    per_service: Counter[str] = Counter()
    for resource_spans in request.resource_spans:
        service = "unknown"
        for attr in resource_spans.resource.attributes:
            if attr.key == "service.name":
                service = attr.value.string_value
        per_service[service] += sum(len(scope.spans) for scope in resource_spans.scope_spans)
    with _lock:
        _stats["spans"] += sum(per_service.values())
        _by_service.update(per_service)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the OTLP exporter's session expects of a collector

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.path.rstrip("/") != "/v1/traces":
            self._reply(404, b"", "text/plain")
            return
        self._reply(200, b"", "application/x-protobuf")
        with _lock:
            _stats["requests"] += 1
            _stats["bytes"] += len(body)
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        _count_spans(body)

    def do_GET(self) -> None:
        if self.path != "/stats":
            self._reply(404, b"", "text/plain")
            return
        with _lock:
            data = dict(_stats, by_service=dict(_by_service))
        self._reply(200, json.dumps(data).encode(), "application/json")

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)
        self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def fetch_stats(endpoint: str, timeout_s: float = 2.0) -> dict[str, Any] | None:
    """The sink's counters, or None when ``endpoint`` is not one of our sinks (a real collector)."""
    try:
        with urllib.request.urlopen(endpoint.rstrip("/") + "/stats", timeout=timeout_s) as answer:
            data: dict[str, Any] = json.loads(answer.read())
            return data
    except Exception:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="minimal OTLP/HTTP trace sink on 127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=900.0, help="stop by itself after this long")
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="sink", daemon=True).start()
    print(server.server_address[1], flush=True)
    stdin_closed = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.read()
        stdin_closed.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    stdin_closed.wait(args.max_seconds)
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
