"""Building the tracer provider: resource from the Lambda environment, the right span processor.

In Lambda (detected from ``AWS_LAMBDA_FUNCTION_NAME``) spans are flushed at the end of each
invocation within a time budget; elsewhere (containers, scripts, long-running SQS pollers) the
SDK's usual batch processor exports in the background.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, Callable

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from .config import Config
from .export import ExportWorker, InvocationSpanProcessor, default_exporter_factory
from .guard import logger

TRACER_NAME = "hoptrace"


@dataclass
class State:
    """What ``init()`` set up; one per process."""

    config: Config
    provider: TracerProvider
    tracer: trace.Tracer
    processor: SpanProcessor
    lambda_mode: bool

    def flush(self, budget_s: float | None = None) -> bool:
        budget = self.config.flush_budget_ms / 1000.0 if budget_s is None else budget_s
        if isinstance(self.processor, InvocationSpanProcessor):
            return self.processor.flush_within(budget)
        return self.processor.force_flush(int(budget * 1000))


_state: State | None = None
_lock = threading.Lock()


def lambda_resource(config: Config, env: Any = None) -> Resource:
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
    # Resource.create merges OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME (which win).
    return Resource.create(attrs)


def init(config: Config | None = None, exporter: SpanExporter | None = None, **options: Any) -> State:
    """Set up tracing once per process; later calls return the existing state.

    ``exporter`` replaces the OTLP exporter (tests, or users who want another transport).
    """
    global _state
    with _lock:
        if _state is not None:
            return _state
        cfg = config or Config.from_env(**options)
        in_lambda = bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))
        lambda_mode = cfg.lambda_mode if cfg.lambda_mode is not None else in_lambda
        provider = TracerProvider(resource=lambda_resource(cfg))
        # The exporter may go on after the handler's budget ran out, but not for long: its
        # retries with back-off would hold the worker while later invocations' spans pile up.
        export_timeout = max(0.5, 2 * cfg.flush_budget_ms / 1000.0) if lambda_mode else 10.0
        factory: Callable[[], SpanExporter] = (lambda: exporter) if exporter is not None else default_exporter_factory(
            cfg.endpoint, cfg.headers, export_timeout
        )
        processor: SpanProcessor
        if lambda_mode:
            processor = InvocationSpanProcessor(ExportWorker(factory), cfg.max_spans_per_invocation)
        else:
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            processor = BatchSpanProcessor(factory())
        provider.add_span_processor(processor)
        if cfg.enabled:
            _install_global_provider(provider)
        tracer = provider.get_tracer(TRACER_NAME)
        _state = State(cfg, provider, tracer, processor, lambda_mode)
        if cfg.enabled:
            _install_integrations(cfg)
        return _state


def _install_global_provider(provider: TracerProvider) -> None:
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        # The user (or another distro) already set one: add ours alongside rather than fight it.
        logger.debug("hoptrace: a tracer provider is already set; spans go to both")
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
