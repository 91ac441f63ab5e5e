"""Getting spans out of a Lambda before it freezes, within a hard time budget.

In Lambda the sandbox is frozen as soon as the handler returns, so background batching is
useless: spans are buffered per invocation and exported at its end by one long-lived worker
thread (keep-alive connection), and the handler waits for that export at most
``flush_budget_ms``. A slow or dead collector costs the function the budget and nothing more;
what could not be sent is dropped and counted.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Callable, Protocol

from opentelemetry import context as otel_context

from .guard import count, logger

if TYPE_CHECKING:  # pragma: no cover
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace.export import SpanExporter

    from .logs import InvocationLogs


class Exporter(Protocol):
    """What the export worker sends through: hoptrace's OTLP exporter, or an SDK exporter adapted."""

    def export(self, spans: Sequence[Any]) -> bool: ...

    def shutdown(self) -> None: ...


ExporterFactory = Callable[[], Exporter]
# Finished spans: hoptrace's own (``spans.Span``) or, when setup fell back to it, the SDK's.
ReadableSpan = Any
Span = Any


class SdkExporterAdapter:
    """An OpenTelemetry SDK ``SpanExporter`` (the user's, or OpenTelemetry's OTLP one) behind ``Exporter``."""

    def __init__(self, exporter: SpanExporter) -> None:
        self.exporter = exporter

    def export(self, spans: Sequence[Any]) -> bool:
        from opentelemetry.sdk.trace.export import SpanExportResult

        from .spans import to_readable

        return self.exporter.export([to_readable(s) for s in spans]) is SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.exporter.shutdown()


class _Batch:
    __slots__ = ("cancelled", "done", "logs", "spans", "what")

    def __init__(self, spans: Sequence[ReadableSpan], logs: Sequence[Any] = (), what: str = "spans") -> None:
        self.spans = spans
        self.logs = logs  # logs.LogRecordData of the same invocation, sent after the spans
        self.what = what  # "spans", or "announcements" (counted apart: they are not spans of their own)
        self.cancelled = False  # an announcement the invocation's end superseded before it was sent
        self.done = threading.Event()


class ExportWorker:
    """One daemon thread that owns the exporter and sends batches handed to it.

    The thread starts, and builds the exporter, when the first batch arrives: during the
    function's init it would only compete for the GIL with the function's own imports (a
    thread that wants the GIL costs the one holding it up to the 5 ms switch interval).
    """

    def __init__(self, factory: ExporterFactory, max_pending: int = 4) -> None:
        self._factory = factory
        self._queue: queue.Queue[_Batch | None] = queue.Queue(maxsize=max_pending)
        self._exporter: Exporter | None = None
        self._last: _Batch | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="hoptrace-export", daemon=True)
                thread.start()
                self._thread = thread

    def _run(self) -> None:
        # Our own HTTP instrumentation must not trace the exporter's requests.
        otel_context.attach(otel_context.set_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            self._exporter = self._factory()
        except Exception:
            count("export_setup_failures")
            logger.debug("hoptrace: could not build the span exporter", exc_info=True)
        while True:
            batch = self._queue.get()
            if batch is None:
                break
            self._send(batch)

    def _send(self, batch: _Batch) -> None:
        if batch.cancelled:
            count("announcements_superseded", len(batch.spans))
            if not batch.logs:  # log records riding with an announcement go out all the same
                batch.done.set()
                return
            batch.spans = ()
        try:
            if self._exporter is None:
                count(f"{batch.what}_dropped", len(batch.spans))
                count("logs_dropped", len(batch.logs))
                return
            if batch.spans:
                if self._exporter.export(batch.spans):
                    count(f"{batch.what}_exported", len(batch.spans))
                else:
                    count("export_failures")
                    count(f"{batch.what}_dropped", len(batch.spans))
        except Exception:
            count("export_failures")
            count(f"{batch.what}_dropped", len(batch.spans))
            logger.debug("hoptrace: export failed", exc_info=True)
        try:
            if batch.logs:
                self._send_logs(batch.logs)
        finally:
            batch.done.set()

    def _send_logs(self, records: Sequence[Any]) -> None:
        # Only hoptrace's exporter knows /v1/logs; an SDK span exporter (TLS settings, the user's own) does not.
        export_logs = getattr(self._exporter, "export_logs", None)
        try:
            if export_logs is not None and export_logs(records):
                count("logs_exported", len(records))
                return
            count("logs_dropped", len(records))
        except Exception:
            count("logs_dropped", len(records))
            logger.debug("hoptrace: log export failed", exc_info=True)

    def submit(self, spans: Sequence[ReadableSpan], budget_s: float, logs: Sequence[Any] = ()) -> bool:
        """Hand spans (and log records) to the worker and wait at most ``budget_s``; True if
        they were sent in time."""
        if not spans and not logs:
            # Nothing new: wait for what is still in flight, so flush() means "all sent".
            last = self._last
            return last is None or last.done.wait(max(budget_s, 0.0))
        batch = _Batch(spans, logs)
        self._ensure_started()
        try:
            self._queue.put_nowait(batch)
            self._last = batch
        except queue.Full:
            # The worker is stuck on a dead collector: do not pile up memory or time.
            count("spans_dropped", len(spans))
            count("logs_dropped", len(logs))
            count("export_queue_full")
            return False
        if batch.done.wait(max(budget_s, 0.0)):
            return True
        count("flush_budget_exceeded")
        return False

    def send_later(self, spans: Sequence[ReadableSpan], logs: Sequence[Any] = ()) -> _Batch | None:
        """Hand records to the worker without waiting (an invocation's start announcement, and the
        log records so far with a memory reading near the limit); the batch, whose spans can still
        be cancelled until the worker takes it; None: dropped."""
        batch = _Batch(spans, logs, what="announcements")
        self._ensure_started()
        try:
            self._queue.put_nowait(batch)
        except queue.Full:
            count("announcements_dropped", len(spans))
            count("logs_dropped", len(logs))
            count("export_queue_full")
            return None
        return batch

    def shutdown(self, timeout_s: float = 1.0) -> None:
        if self._thread is None:
            return  # never started: nothing was sent, nothing to close
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(timeout_s)
        if self._exporter is not None:
            try:
                self._exporter.shutdown()
            except Exception:
                logger.debug("hoptrace: exporter shutdown failed", exc_info=True)


class InvocationSpanProcessor:
    """Buffers finished spans until the end of the invocation and tracks the open ones.

    Open spans are tracked so the timeout watchdog can end them before Lambda kills the
    process; without that the invocation that timed out would never be seen.
    """

    def __init__(
        self,
        worker: ExportWorker,
        max_spans: int = 2000,
        logs: InvocationLogs | None = None,
        redact: Any = None,
        announcer: ExportWorker | None = None,
    ) -> None:
        self._worker = worker
        # Announcements go through a worker (and connection) of their own: the end-of-invocation
        # flush then never waits behind one the collector is still committing.
        self._announcer = announcer
        self._announced: deque[_Batch] = deque(maxlen=8)
        self._max_spans = max_spans
        self.logs = logs  # captured log records (logs.py), sent in the same flush
        self._redact = redact  # exception messages are masked with it before they leave (payload.py)
        self._lock = threading.Lock()
        # A deque: appending and taking from it are atomic, so ending a span takes no lock.
        self._finished: deque[ReadableSpan] = deque()
        self._open: dict[int, Span] = {}
        # All on_start does, offered to hoptrace's tracer so its hot path stores without a call.
        self.started_by_id = self._open

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        # One dict store is atomic under the GIL; open_spans() copies the dict in one C call.
        self._open[id(span)] = span

    def on_end(self, span: ReadableSpan) -> None:
        self._open.pop(id(span), None)
        finished = self._finished
        if len(finished) >= self._max_spans:  # a race may let one or two more in: harmless
            count("spans_dropped")
            count("spans_over_invocation_limit")
            return
        finished.append(span)

    def open_spans(self) -> list[Span]:
        """Spans started and not yet ended, oldest first."""
        with self._lock:
            return list(self._open.values())

    def forget_open(self) -> None:
        """Drop bookkeeping of spans left open by a finished invocation (leak guard)."""
        with self._lock:
            self._open.clear()

    def flush_within(self, budget_s: float) -> bool:
        """Export everything finished so far, waiting at most ``budget_s``."""
        # What was finished when the flush began; spans ended meanwhile wait for the next one.
        spans: list[ReadableSpan] = []
        take, append = self._finished.popleft, spans.append
        try:
            for _ in range(len(self._finished)):
                append(take())
        except IndexError:  # another thread (the watchdog) flushing at the same time took the rest
            pass
        if spans:
            from .spans import settle

            settle(spans)  # what the spans left to describe at export (Span._deferred)
            if self._redact is not None and _has_errors(spans):
                from .payload import redact_errors

                redact_errors(spans, self._redact)
        logs = self.logs.take() if self.logs is not None else ()
        return self._worker.submit(spans, budget_s, logs)

    def send_later(self, span: ReadableSpan, with_logs: bool = False) -> bool:
        """Export one record now, in the background, not waiting for it (see ``announce``); with
        ``with_logs``, the invocation's log records captured so far go with it."""
        logs = self.logs.take() if with_logs and self.logs is not None else ()
        batch = (self._announcer or self._worker).send_later([span], logs)
        if batch is not None:
            self._announced.append(batch)
        return batch is not None

    def supersede_announcements(self) -> None:
        """The invocation is ending and its span goes out now: announcements not sent yet are
        no longer needed (one being sent still is; the collector takes either order)."""
        while self._announced:
            try:
                self._announced.popleft().cancelled = True
            except IndexError:
                break

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.flush_within(timeout_millis / 1000.0)

    def shutdown(self) -> None:
        self.flush_within(1.0)
        self._worker.shutdown()
        if self._announcer is not None:
            self._announcer.shutdown()


def _has_errors(spans: Sequence[Any]) -> bool:
    """Whether any span has an error status message or an event (the cheap test before redacting)."""
    return any(getattr(span.status, "description", None) or span.events for span in spans)


def otel_exporter(endpoint: str | None, headers: Any, timeout_s: float) -> SpanExporter:
    """OpenTelemetry's OTLP/HTTP protobuf exporter; endpoint and headers default to OTEL_EXPORTER_OTLP_*."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    url = None
    if endpoint:
        url = endpoint if endpoint.rstrip("/").endswith("/v1/traces") else endpoint.rstrip("/") + "/v1/traces"
    return OTLPSpanExporter(endpoint=url, headers=headers, timeout=timeout_s)


def default_exporter_factory(endpoint: str | None, headers: Any, timeout_s: float) -> ExporterFactory:
    """OTLP/HTTP protobuf: hoptrace's own light exporter, or OpenTelemetry's for TLS client settings."""

    def build() -> Exporter:
        from . import otlp

        if otlp.needs_otel_exporter() is not None:
            return SdkExporterAdapter(otel_exporter(endpoint, headers, timeout_s))
        url, resolved_headers, compression = otlp.exporter_settings(endpoint, headers)
        return otlp.OtlpHttpExporter(url, resolved_headers, timeout_s, compression)

    return build
