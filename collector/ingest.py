"""OTLP/HTTP ingest: ``POST /v1/traces``, protobuf or JSON, optionally gzip.

The response follows the OTLP spec: an ExportTraceServiceResponse (with ``partial_success``
when spans were rejected), a google.rpc.Status saying why otherwise (400 malformed, 413 too
large, 415 unsupported type or encoding), 503 with ``Retry-After`` when the writer is full. A
200 means every accepted span is committed; a refused request stores nothing.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Future
from typing import Any

import anyio
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from .app import collector_of, project_for
from .otlp import (
    JSON_MEDIA,
    PROTOBUF_MEDIA,
    RequestError,
    SpanBatch,
    content_encoding,
    decode,
    error_body,
    media_type,
    response_body,
)
from .writer import Overloaded, ShuttingDown, SpanWriter

logger = logging.getLogger("hoptrace.collector")
router = APIRouter()

# An early refusal still reads (and drops) this much of the unread body, so that a client
# still sending sees the answer rather than a reset connection; past it the connection closes.
DRAIN_LIMIT_BYTES = 16 * 1024 * 1024


# What the served OpenAPI says of the body: schemathesis and readers see both encodings.
def otlp_openapi(request: str, items: str, top: str, unavailable: str) -> dict[str, Any]:
    """The OpenAPI of an OTLP/HTTP export route: ``request`` (e.g. ExportTraceServiceRequest), what
    it carries (``items``: spans), its JSON top-level list (``top``) and what a 503 means."""
    response = request.replace("Request", "Response")
    return {
        "requestBody": {
            "required": True,
            "description": f"An OTLP {request} (Content-Encoding: gzip or deflate allowed).",
            "content": {
                PROTOBUF_MEDIA: {"schema": {"type": "string", "format": "binary"}},
                JSON_MEDIA: {
                    "schema": {"type": "object", "properties": {top: {"type": "array", "items": {"type": "object"}}}}
                },
            },
        },
        "responses": {
            "200": {"description": f"Committed; {response}, partialSuccess when {items} were rejected"},
            "400": {"description": "Malformed body (google.rpc.Status)"},
            "413": {"description": f"Larger than the body or {items[:-1]} limit (google.rpc.Status)"},
            "415": {"description": "Unsupported Content-Type or Content-Encoding (google.rpc.Status)"},
            "503": {"description": unavailable},
        },
    }


_OPENAPI_BODY = otlp_openapi(
    "ExportTraceServiceRequest", "spans", "resourceSpans", "Overloaded or stopping; retry after Retry-After seconds"
)


class _Refused(Exception):
    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.retry_after = status, message, retry_after


@router.post(
    "/v1/traces",
    tags=["ingest"],
    summary="OTLP/HTTP trace export (protobuf or JSON, optionally gzip)",
    openapi_extra=_OPENAPI_BODY,
)
async def ingest(request: Request) -> Response:
    """Store the spans of one OTLP export; answer only once they are committed."""
    c = collector_of(request)
    limits = c.config.limits
    content_type = request.headers.get("content-type")
    wants_json = (content_type or "").split(";")[0].strip().lower() == JSON_MEDIA
    try:
        try:
            project_id = project_for(request, "ingest")
        except HTTPException as exc:
            raise _Refused(exc.status_code, str(exc.detail)) from None
        # Cheap refusals before a byte of the body is read.
        media_type(content_type)
        encoding = content_encoding(request.headers.get("content-encoding"))
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.max_body_bytes:
            raise _Refused(413, f"the body is larger than {limits.max_body_bytes} bytes; send smaller batches")
        _check_room(c.writer)
        with c.writer.body_in_flight(int(declared) if declared.isdigit() else 0) as ticket:
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > limits.max_body_bytes:
                    raise _Refused(413, f"the body is larger than {limits.max_body_bytes} bytes; send smaller batches")
                ticket.grow(len(body) - ticket.size)  # a body longer than declared, or chunked
            _check_room(c.writer)  # again: the backlog may have filled while the body came in
            # Rows are made here, on a worker thread, beside the writer's SQL (which runs without
            # the GIL: see writer.py); a request with no spans (nor invocation announcements) needs no writer.
            batch = await anyio.to_thread.run_sync(decode, bytes(body), encoding, content_type, limits)
            del body
            future = _submit(c.writer, project_id, batch) if batch.spans or batch.announcements else None
        if future is not None:
            batch = await _committed(future)
    except RequestError as exc:
        return await _refuse(request, exc.status, exc.message, wants_json)
    except _Refused as exc:
        return await _refuse(request, exc.status, exc.message, wants_json, exc.retry_after)
    except Overloaded as exc:  # no room for the body (``body_in_flight``)
        return await _refuse(request, 503, str(exc), wants_json, exc.retry_after_s)
    except ClientDisconnect:
        return Response(status_code=400)  # nobody is left to read an answer
    payload, media = response_body(batch, wants_json)
    return Response(payload, media_type=media)


def _check_room(writer: SpanWriter) -> None:
    """503 with Retry-After, before any decoding, when the writer's backlog is full."""
    try:
        writer.check_room()
    except Overloaded as exc:
        raise _Refused(503, str(exc), retry_after=exc.retry_after_s) from None


def _submit(writer: SpanWriter, project_id: int, batch: SpanBatch) -> Future[SpanBatch]:
    """Hand the rows to the single writer; _Refused (503) when it has no room or is stopping."""
    try:
        return writer.submit(project_id, batch)
    except Overloaded as exc:
        raise _Refused(503, str(exc), retry_after=exc.retry_after_s) from None
    except ShuttingDown as exc:
        raise _Refused(503, f"{exc}; retry", retry_after=5) from None


async def _committed(future: Future[SpanBatch]) -> SpanBatch:
    """Wait for the writer's commit: the rows (and rejections) of the request.

    RequestError when the writer refused it whole; _Refused (503) when it cannot store it.
    """
    try:
        return await asyncio.wrap_future(future)
    except RequestError:
        raise
    except Exception as exc:
        logger.error("could not store a batch: %s", exc)
        raise _Refused(503, "the store failed to commit the batch; retry", retry_after=2) from None


async def _refuse(
    request: Request, status: int, message: str, as_json: bool, retry_after: int | None = None
) -> Response:
    """The OTLP error answer, after draining the unread rest of the body so the client reads it."""
    try:
        drained = 0
        async for chunk in request.stream():
            drained += len(chunk)
            if drained > DRAIN_LIMIT_BYTES:
                break
    except (ClientDisconnect, RuntimeError):  # RuntimeError: the stream was read already
        pass
    payload, media = error_body(status, message, as_json, retry_after)
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return Response(payload, status_code=status, media_type=media, headers=headers)
