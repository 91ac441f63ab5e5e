"""One function's sandbox: ``python -m hoptrace.demo.worker NAME``, started by the runner.

It plays the Lambda runtime for one function, in a process of its own with the function's
environment (``AWS_LAMBDA_FUNCTION_NAME``, memory size, ``OTEL_SERVICE_NAME``…): the init
phase imports the handler module (with tracing set up first, as hoptrace's layer does), then
each invocation is one JSON line on stdin answered by one JSON line on the protocol pipe:

    → {"request_id": "...", "timeout_ms": 15000, "event": {...}}
    ← {"result": ...}  or  {"error": {"errorType": "...", "errorMessage": "...", "stackTrace": [...]}}

Whatever the handler prints goes to stderr (the function's log), never into the protocol.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any, Callable, TextIO

from . import app


class LambdaContext:
    """The context object the Lambda runtime passes as the handler's second argument."""

    def __init__(self, spec: app.FunctionSpec, request_id: str, timeout_ms: float) -> None:
        self.function_name = spec.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = app.function_arn(spec.name)
        self.memory_limit_in_mb = spec.memory_mb
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{spec.name}"
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + timeout_ms / 1000.0

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _import(handler: str) -> Callable[..., Any]:
    module_name, _, function_name = handler.rpartition(".")
    fn: Callable[..., Any] = getattr(importlib.import_module(module_name), function_name)
    return fn


def load_hoptrace(spec: app.FunctionSpec) -> Callable[..., Any]:
    """Tracing first (as the layer's exec wrapper does), so module-level clients are traced too;
    the handler module itself wears ``@hoptrace.lambda_handler``."""
    import hoptrace

    hoptrace.init()
    return _import(spec.handler)


def load_opentelemetry(spec: app.FunctionSpec) -> Callable[..., Any]:
    """The OpenTelemetry SDK's own Lambda and botocore instrumentation, without hoptrace."""
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.aws_lambda import AwsLambdaInstrumentor
    from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create(
        {
            "cloud.provider": "aws",
            "cloud.platform": "aws_lambda",
            "cloud.region": app.REGION,
            "faas.name": spec.name,
            "faas.version": "$LATEST",
            "faas.max_memory": spec.memory_mb * 1024 * 1024,
        }
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    BotocoreInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    os.environ["_HANDLER"] = spec.handler  # what the instrumentation wraps
    AwsLambdaInstrumentor().instrument(tracer_provider=provider)
    return _import(spec.handler)


def enforce_memory(limit_bytes: int, every_s: float = 0.01) -> threading.Thread:
    """Lambda's memory limit, played: the sandbox is killed (SIGKILL, no warning) as soon as its
    resident set passes the function's memory size. A daemon thread reading ``/proc/self/statm``;
    functions ask for it with ``HOPTRACE_DEMO_ENFORCE_MEMORY``."""
    page = os.sysconf("SC_PAGE_SIZE")

    def watch() -> None:
        while True:
            with open("/proc/self/statm", "rb") as f:
                if int(f.read().split()[1]) * page > limit_bytes:
                    print("[ERROR] Runtime exited: the function used more than its memory size", file=sys.stderr,
                          flush=True)  # fmt: skip
                    os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(every_s)

    thread = threading.Thread(target=watch, name="demo-memory-limit", daemon=True)
    thread.start()
    return thread


def _send(pipe: TextIO, message: dict[str, Any]) -> None:
    pipe.write(json.dumps(message, default=str) + "\n")
    pipe.flush()


def serve(spec: app.FunctionSpec, requests: TextIO, replies: TextIO) -> None:
    """Init, then one invocation per request line until stdin closes (the runner stopped)."""
    handler = load_opentelemetry(spec) if spec.tracing == "opentelemetry" else load_hoptrace(spec)
    if os.environ.get("HOPTRACE_DEMO_ENFORCE_MEMORY", "").lower() == "true":
        enforce_memory(spec.memory_mb * 1024 * 1024)
    _send(replies, {"ready": True})
    for line in requests:
        request = json.loads(line)
        context = LambdaContext(spec, request["request_id"], float(request.get("timeout_ms", spec.timeout_s * 1000)))
        try:
            result = handler(request["event"], context)
        except Exception as exc:
            error = {
                "errorType": type(exc).__name__,
                "errorMessage": str(exc),
                "stackTrace": traceback.format_exception(type(exc), exc, exc.__traceback__),
            }
            print(f"[ERROR] {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            _send(replies, {"error": error})
        else:
            _send(replies, {"result": result})


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m hoptrace.demo.worker FUNCTION_NAME", file=sys.stderr)
        return 2
    spec = app.function(args[0])
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # the handler's print() goes to the log, not into the protocol
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    try:
        serve(spec, sys.stdin, replies)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
