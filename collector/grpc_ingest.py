"""OTLP/gRPC trace ingest (``TraceService/Export``, port 4317 by default), an optional extra.

A call takes the same path as ``POST /v1/traces``: the same token rules, limits and per-span
validation (``otlp.normalise``), the same writer, and the answer only after the commit. Only
the transport differs: grpc decodes (and un-gzips) the message itself and refuses one larger
than ``max_body_bytes`` uncompressed with RESOURCE_EXHAUSTED, before our code runs.

Errors follow the OTLP spec's table, so SDKs retry exactly what is worth retrying:
INVALID_ARGUMENT for bad data (dropped by the client), UNAVAILABLE with a google.rpc.RetryInfo
when the writer is full, stopping or the store failed (retried after the delay),
UNAUTHENTICATED / PERMISSION_DENIED for tokens.

grpcio comes with ``pip install 'hoptrace[grpc]'`` and is imported only when the server
starts, so a collector without the extra runs as before.
"""

from __future__ import annotations

import logging
from concurrent import futures
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from . import auth
from .otlp import Parsed, RequestError, SpanBatch, count_spans, error_status, export_response
from .writer import Overloaded, ShuttingDown

if TYPE_CHECKING:
    import grpc

    from .app import Collector

logger = logging.getLogger("hoptrace.collector")

DEFAULT_GRPC_PORT = 4317
INSTALL_HINT = "pip install 'hoptrace[grpc]'"
# Trailer the OpenTelemetry Python exporter reads its back-off from; other SDKs read the
# RetryInfo inside the standard grpc-status-details-bin Status, so both are sent.
RETRY_INFO_TRAILER = "google.rpc.retryinfo-bin"
STATUS_DETAILS_TRAILER = "grpc-status-details-bin"
# How often a call waiting for its commit checks whether the client is still there.
_CANCEL_POLL_S = 0.5
BACKLOG_FULL = "the collector is overloaded (its write backlog is full); retry"


class GrpcIngestError(RuntimeError):
    """The gRPC server cannot start; the message says what to do."""


class AccessRefused(Exception):
    """The call's token does not allow ingest; ``status`` is 401 or 403 as over HTTP."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def require_grpc() -> None:
    """Fail with the install hint when grpcio is missing (the CLI calls this before serving)."""
    try:
        import grpc  # noqa: F401
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc  # noqa: F401
    except ImportError as exc:
        raise GrpcIngestError(
            f"OTLP/gRPC ingest needs grpcio ({exc.name or 'grpc'} is missing): {INSTALL_HINT}"
        ) from None


def resolve_project(collector: Collector, token: str | None, kind: str = "ingest") -> int:
    """The project a token may act on: ``app.project_for``'s rules, without an HTTP request.

    Open (everything in the default project) while the store has no tokens at all.
    """
    store = collector.store
    if not store.has_tokens():
        return collector.default_project_id
    grant = auth.grant_for(store, token)
    if grant is None:
        raise AccessRefused(401, "a valid token is required (metadata authorization: Bearer <token>)")
    if grant.kind != kind:
        raise AccessRefused(403, f"this is a {grant.kind} token; this call needs a {kind} token")
    return grant.project.id


class TraceService:
    """The ``TraceService`` servicer; grpc runs ``Export`` on its worker threads."""

    def __init__(self, collector: Collector) -> None:
        self._collector = collector

    def Export(self, request: ExportTraceServiceRequest, context: grpc.ServicerContext) -> ExportTraceServiceResponse:
        """Validate, store and answer once committed; refusals end the call with an OTLP status."""
        import grpc

        c = self._collector
        metadata = {key.lower(): value for key, value in context.invocation_metadata() if isinstance(value, str)}
        try:
            project_id = resolve_project(c, auth.token_from(metadata))
        except AccessRefused as exc:
            code = grpc.StatusCode.UNAUTHENTICATED if exc.status == 401 else grpc.StatusCode.PERMISSION_DENIED
            _abort(context, code, exc.message)
        if c.writer.pending_spans >= c.config.max_pending_spans:
            # Refuse before validating: the backlog is full, so the work would be wasted.
            _abort(context, grpc.StatusCode.UNAVAILABLE, BACKLOG_FULL, retry_after_s=1)
        try:
            # Rows are made by the writer (``otlp.Parsed``), not on this thread: see writer.py.
            parsed = Parsed(request, [], c.config.limits, count_spans(request, c.config.limits))
            if not parsed.spans:
                return export_response(parsed.normalise())
        except RequestError as exc:
            # A whole-request refusal (e.g. too many spans) would recur on every resend, so a
            # code clients never retry, where HTTP answers 413.
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, exc.message)
        try:
            future = c.writer.submit(project_id, parsed)
        except Overloaded as exc:
            _abort(context, grpc.StatusCode.UNAVAILABLE, str(exc), retry_after_s=exc.retry_after_s)
        except ShuttingDown as exc:
            _abort(context, grpc.StatusCode.UNAVAILABLE, f"{exc}; retry", retry_after_s=5)
        if not _wait_for_commit(future, context):
            # The client is gone (cancelled, deadline, server stop): the batch still commits,
            # but nobody is waiting for the answer, so free this worker thread.
            return export_response(None)
        error = future.exception()
        if isinstance(error, RequestError):
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, error.message)
        if error is not None:
            logger.error("could not store a batch: %s", error)
            _abort(context, grpc.StatusCode.UNAVAILABLE, "the store failed to commit the batch; retry", retry_after_s=2)
        return export_response(future.result())


def _wait_for_commit(future: futures.Future[SpanBatch], context: grpc.ServicerContext) -> bool:
    """Block until the writer has committed the batch; False if the call ended first."""
    while True:
        done, _ = futures.wait([future], timeout=_CANCEL_POLL_S)
        if done:
            return True
        if not context.is_active():
            return False


def _abort(
    context: grpc.ServicerContext, code: grpc.StatusCode, message: str, retry_after_s: int | None = None
) -> NoReturn:
    """End the call with ``code`` and, as the OTLP spec suggests, a google.rpc.Status in the
    trailers (``otlp.error_status``: a RetryInfo to come back later, a BadRequest for bad data).

    The OpenTelemetry Python exporter reads the RetryInfo from a trailer of its own as well.
    """
    from google.protobuf.duration_pb2 import Duration
    from google.rpc.error_details_pb2 import RetryInfo  # type: ignore[import-untyped]

    status = error_status(code.value[0], message, retry_after_s)
    trailers: list[tuple[str, bytes]] = []
    if status.details:
        trailers.append((STATUS_DETAILS_TRAILER, status.SerializeToString()))
    if retry_after_s is not None:
        retry = RetryInfo(retry_delay=Duration(seconds=retry_after_s))
        trailers.append((RETRY_INFO_TRAILER, retry.SerializeToString()))
    if trailers:
        context.set_trailing_metadata(tuple(trailers))
    context.abort(code, message)


@dataclass
class OtlpGrpcServer:
    """A running OTLP/gRPC endpoint; ``stop`` it before closing the collector it feeds."""

    server: grpc.Server
    host: str
    port: int

    @property
    def target(self) -> str:
        """``host:port`` as a grpc client dials it."""
        return _address(self.host, self.port)

    def stop(self, grace: float | None = 5.0) -> None:
        """Refuse new calls; calls in flight get ``grace`` seconds to see their commit."""
        self.server.stop(grace).wait()


def start_grpc(
    collector: Collector,
    host: str = "127.0.0.1",
    port: int = DEFAULT_GRPC_PORT,
    workers: int = 16,
    max_concurrent_calls: int = 64,
) -> OtlpGrpcServer:
    """Serve OTLP/gRPC for ``collector`` on ``host:port`` (0 picks a free port).

    Each worker thread holds one call until its commit; calls past ``max_concurrent_calls`` are
    refused by grpc at once, so queued requests cannot grow memory without bound.
    """
    require_grpc()
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    options = [
        # Same figure as HTTP's body limit; grpc applies it after decompression.
        ("grpc.max_receive_message_length", collector.config.limits.max_body_bytes),
        # Without this, grpc on Linux shares a busy port silently instead of failing to start.
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hoptrace-grpc"),
        options=options,
        maximum_concurrent_rpcs=max_concurrent_calls,
    )
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
        TraceService(collector), server
    )
    address = _address(host, port)
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if bound == 0:
        server.stop(None)
        raise GrpcIngestError(
            f"cannot listen for OTLP/gRPC on {address}: the port is in use or the address is not available "
            "(is another collector running? use --grpc-port)"
        )
    server.start()
    logger.info("OTLP/gRPC ingest on %s", _address(host, bound))
    return OtlpGrpcServer(server, host, bound)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
