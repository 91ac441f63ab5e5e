"""OTLP/HTTP ingest: ``POST /v1/traces``, protobuf or JSON, optionally gzip.

The response follows the OTLP spec: an ExportTraceServiceResponse (with ``partial_success``
when spans were rejected), a google.rpc.Status on errors, 503 with ``Retry-After`` when the
writer is full. A 200 means every accepted span is committed.
"""

from __future__ import annotations

import asyncio
import logging

import anyio
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from .app import Collector, collector_of, project_for
from .otlp import RequestError, SpanBatch, normalise, parse_request, read_body, response_body
from .writer import Overloaded, ShuttingDown

logger = logging.getLogger("hoptrace.collector")
router = APIRouter()


@router.post("/v1/traces", tags=["ingest"], summary="OTLP/HTTP trace export (protobuf or JSON, optionally gzip)")
async def ingest(request: Request) -> Response:
    c = collector_of(request)
    limits = c.config.limits
    content_type = request.headers.get("content-type")
    wants_json = (content_type or "").split(";")[0].strip().lower() == "application/json"
    try:
        project_id = project_for(request, "ingest")
    except HTTPException as exc:
        return _otlp_error(exc.status_code, str(exc.detail), wants_json)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limits.max_body_bytes:
        return _otlp_error(413, f"the body is larger than {limits.max_body_bytes} bytes", wants_json)
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limits.max_body_bytes:
            return _otlp_error(413, f"the body is larger than {limits.max_body_bytes} bytes", wants_json)
    try:
        batch: SpanBatch = await anyio.to_thread.run_sync(
            _decode, bytes(body), request.headers.get("content-encoding"), content_type, c
        )
    except RequestError as exc:
        return _otlp_error(exc.status, exc.message, wants_json)
    if batch.spans:
        try:
            future = c.writer.submit(project_id, batch)
        except Overloaded as exc:
            return _otlp_error(503, str(exc), wants_json, retry_after=exc.retry_after_s)
        except ShuttingDown as exc:
            return _otlp_error(503, str(exc), wants_json, retry_after=5)
        try:
            await asyncio.wrap_future(future)
        except Exception as exc:
            logger.error("could not store a batch: %s", exc)
            return _otlp_error(503, "the store failed to commit the batch; retry", wants_json, retry_after=2)
    payload, media = response_body(batch, wants_json)
    return Response(payload, media_type=media)



def _decode(body: bytes, encoding: str | None, content_type: str | None, c: Collector) -> SpanBatch:
    raw = read_body(body, encoding, c.config.limits)
    return normalise(parse_request(raw, content_type), c.config.limits)


def _otlp_error(status: int, message: str, as_json: bool, retry_after: int | None = None) -> Response:
    """An OTLP error response: a google.rpc.Status with the message, protobuf or JSON like the request."""
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    if as_json:
        return JSONResponse({"code": status, "message": message}, status_code=status, headers=headers)
    from google.rpc.status_pb2 import Status  # type: ignore[import-untyped]

    return Response(
        Status(code=status, message=message).SerializeToString(),
        status_code=status,
        media_type="application/x-protobuf",
        headers=headers,
    )
