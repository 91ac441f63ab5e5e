"""Building the tracer provider: resource from the Lambda environment, the right span processor.

In Lambda (detected from ``AWS_LAMBDA_FUNCTION_NAME``) spans are hoptrace's own (``spans``,
unless a variable asks for what only the OpenTelemetry SDK does), exported by hoptrace's OTLP
encoder (``otlp``) at the end of each invocation within a time budget. Elsewhere (containers,
scripts, long-running SQS pollers) the SDK's usual batch processor and OTLP exporter work in
the background, where their start-up cost does not matter.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from .config import Config
from .export import ExporterFactory, ExportWorker, InvocationSpanProcessor, SdkExporterAdapter, default_exporter_factory
from .guard import logger

if TYPE_CHECKING:  # pragma: no cover
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import SpanExporter

TRACER_NAME = "hoptrace"


@dataclass
class State:
    """What ``init()`` set up; one per process."""

    config: Config
    provider: Any  # spans.TracerProvider (Lambda, by default) or the SDK's TracerProvider
    tracer: trace.Tracer
    processor: Any  # InvocationSpanProcessor in Lambda mode, the SDK's BatchSpanProcessor elsewhere
    lambda_mode: bool

    def flush(self, budget_s: float | None = None) -> bool:
        budget = self.config.flush_budget_ms / 1000.0 if budget_s is None else budget_s
        if isinstance(self.processor, InvocationSpanProcessor):
            return self.processor.flush_within(budget)
        return bool(self.processor.force_flush(int(budget * 1000)))


_state: State | None = None
_lock = threading.Lock()


def resource_attributes(config: Config, env: Any = None) -> dict[str, Any]:
    """Resource attributes of the FaaS conventions, from the variables Lambda sets."""
    e = os.environ if env is None else env
    attrs: dict[str, Any] = {}
    fn = e.get("AWS_LAMBDA_FUNCTION_NAME")
    if fn:
        attrs.update(
            {
                "cloud.provider": "aws",
                "cloud.platform": "aws_lambda",
                "faas.name": fn,
            }
        )
        if e.get("AWS_LAMBDA_FUNCTION_VERSION"):
            attrs["faas.version"] = e["AWS_LAMBDA_FUNCTION_VERSION"]
        if e.get("AWS_LAMBDA_LOG_STREAM_NAME"):
            attrs["faas.instance"] = e["AWS_LAMBDA_LOG_STREAM_NAME"]
        mem = e.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        if mem and mem.isdigit():
            attrs["faas.max_memory"] = int(mem) * 1024 * 1024
    region = e.get("AWS_REGION") or e.get("AWS_DEFAULT_REGION")
    if region:
        attrs["cloud.region"] = region
    if config.service_name:
        attrs["service.name"] = config.service_name
    attrs["telemetry.distro.name"] = "hoptrace"
    return attrs


def lambda_resource(config: Config, env: Any = None) -> Resource:
    """The SDK's resource: ours merged with OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME."""
    from opentelemetry.sdk.resources import Resource

    return Resource.create(resource_attributes(config, env))


def init(config: Config | None = None, exporter: SpanExporter | None = None, **options: Any) -> State:
    """Set up tracing once per process; later calls return the existing state.

    ``exporter`` (an OpenTelemetry SDK ``SpanExporter``) replaces the OTLP export (tests, or
    users who want another transport). In Lambda mode spans are hoptrace's own (``spans``)
    unless the environment asks for something only the SDK does; elsewhere the SDK's.
    """
    global _state
    with _lock:
        if _state is not None:
            return _state
        cfg = config or Config.from_env(**options)
        in_lambda = bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))
        lambda_mode = cfg.lambda_mode if cfg.lambda_mode is not None else in_lambda
        provider: Any
        processor: Any
        if lambda_mode:
            # The exporter may go on after the handler's budget ran out, but not for long: its
            # retries would hold the worker while later invocations' spans pile up.
            export_timeout = max(0.5, 2 * cfg.flush_budget_ms / 1000.0)
            factory: ExporterFactory = (
                (lambda: SdkExporterAdapter(exporter))
                if exporter is not None
                else default_exporter_factory(cfg.endpoint, cfg.headers, export_timeout)
            )
            processor = InvocationSpanProcessor(
                ExportWorker(factory),
                cfg.max_spans_per_invocation,
                # A span exporter of the user's cannot take logs: then none are captured.
                _capture_logs(cfg) if exporter is None else None,
                cfg.redact_pattern(),
                # Invocation announcements (aws_lambda/announce.py) on a worker of their own.
                ExportWorker(factory) if cfg.announce else None,
            )
            provider = _lambda_provider(cfg, processor)
        else:
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            from .export import otel_exporter

            provider = TracerProvider(resource=lambda_resource(cfg))
            processor = BatchSpanProcessor(exporter or otel_exporter(cfg.endpoint, cfg.headers, 10.0))
            provider.add_span_processor(processor)
        if cfg.enabled:
            _install_global_provider(provider)
        tracer = provider.get_tracer(TRACER_NAME)
        _state = State(cfg, provider, tracer, processor, lambda_mode)
        if cfg.enabled:
            _install_integrations(cfg)
        return _state


def _capture_logs(cfg: Config) -> Any:
    """The buffer of the ``logging`` handler that keeps invocations' records (logs.py), if on."""
    if not (cfg.enabled and cfg.capture_logs and cfg.log_max_records > 0):
        return None
    from . import logs

    try:
        return logs.install(cfg)
    except Exception:
        logger.debug("hoptrace: could not install the log capture", exc_info=True)
        return None


def _lambda_provider(cfg: Config, processor: InvocationSpanProcessor) -> Any:
    """hoptrace's own provider, or the SDK's when a variable asks for what only the SDK does."""
    from . import spans

    reason = spans.sdk_needed()
    if reason is None:
        from .. import __version__

        return spans.TracerProvider(spans.resource_from_env(resource_attributes(cfg), __version__), processor)
    logger.debug("hoptrace: %s is set: using the OpenTelemetry SDK's tracer provider", reason)
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

    class _Delegate(SpanProcessor):
        """The invocation processor seen by the SDK."""

        def on_start(self, span: Any, parent_context: Any = None) -> None:
            processor.on_start(span, parent_context)

        def on_end(self, span: Any) -> None:
            processor.on_end(span)

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return processor.force_flush(timeout_millis)

        def shutdown(self) -> None:
            processor.shutdown()

    provider = TracerProvider(resource=lambda_resource(cfg))
    provider.add_span_processor(_Delegate())
    return provider


def _install_global_provider(provider: Any) -> None:
    current = trace.get_tracer_provider()
    if not isinstance(current, trace.ProxyTracerProvider):
        # The user (or another distro) already set one: leave theirs rather than fight it.
        logger.debug("hoptrace: a tracer provider is already set; keeping it")
        return
    trace.set_tracer_provider(provider)


def _install_integrations(cfg: Config) -> None:
    from .guard import guard

    if cfg.instrument_botocore:
        with guard("install.botocore"):
            from . import botocore_hooks

            botocore_hooks.install()
    if cfg.instrument_http:
        with guard("install.http"):
            from .carriers import http

            http.install()


def state() -> State | None:
    """The current state, or None before ``init()``."""
    return _state


def shutdown() -> None:
    """Flush and stop exporting; the next ``init()`` starts afresh (used by tests)."""
    global _state
    with _lock:
        if _state is None:
            return
        try:
            _state.provider.shutdown()
        finally:
            _state = None
            from . import logs

            logs.uninstall()
