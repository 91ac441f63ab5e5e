"""Logs in context, collector side: OTLP/HTTP ``POST /v1/logs`` in, records tied to their spans out.

Any OpenTelemetry SDK's log exporter (and hoptrace's instrumentation) sends
``ExportLogsServiceRequest`` bodies, protobuf or JSON, optionally gzip, with the same limits and
ingest tokens as ``/v1/traces``. A body that cannot be decoded is refused whole with a 400 that
says why; bad records (ids of the wrong size, dates out of range) are rejected one by one and
counted in ``partial_success``. Accepted records are committed before the answer.

Records are read back by trace: ``GET /api/v1/traces/{id}/logs``, and with a transaction
(``logs`` in ``GET /api/v1/transactions/{id}``), each with its span id so the UI shows it under
its span.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import Response
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from starlette.requests import ClientDisconnect

from .app import collector_of, project_for
from .ingest import _committed, _refuse, _Refused, _submit, otlp_openapi
from .otlp import (
    _HEX,
    EARLIEST_NS,
    FUTURE_SLACK_NS,
    JSON_MEDIA,
    PROTOBUF_MEDIA,
    Limits,
    RequestError,
    SpanBatch,
    _cut_text,
    _dict,
    _list,
    _truncate_attributes,
    content_encoding,
    json_object,
    media_type,
    read_body,
)
from .store import SpanStore
from .store.logs_sql import LogRow, logs_of_traces
from .views import attributes, rfc3339, value

logger = logging.getLogger("hoptrace.collector")
router = APIRouter()
API = "/api/v1"

SEVERITY_TEXT = {1: "TRACE", 5: "DEBUG", 9: "INFO", 13: "WARN", 17: "ERROR", 21: "FATAL"}


@dataclass
class LogBatch:
    """The rows of one request and the records it rejected, by reason."""

    rows: list[LogRow] = field(default_factory=list)
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def reject(self, reason: str, n: int = 1) -> None:
        self.rejected += n
        self.reasons[reason] = self.reasons.get(reason, 0) + n

    @property
    def error_message(self) -> str:
        return "; ".join(f"{reason}: {n} {'record' if n == 1 else 'records'}" for reason, n in self.reasons.items())


# -- decoding --------------------------------------------------------------------------------


def parse_logs(raw: bytes, content_type: str | None, limits: Limits) -> tuple[ExportLogsServiceRequest, LogBatch]:
    """Decode an ExportLogsServiceRequest (protobuf or OTLP JSON); RequestError if malformed."""
    batch = LogBatch()
    request = ExportLogsServiceRequest()
    if media_type(content_type) == PROTOBUF_MEDIA:
        try:
            request.ParseFromString(raw)
        except DecodeError as exc:
            raise RequestError(400, f"the body is not a valid OTLP protobuf ExportLogsServiceRequest: {exc}") from None
        _check_count(sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs), limits)
        return request, batch
    doc = json_object(raw, "resourceLogs")
    try:
        records = _translate_json_ids(doc, batch)
    except ValueError as exc:
        raise RequestError(400, f"the JSON body is not a valid OTLP ExportLogsServiceRequest: {exc}") from None
    _check_count(records, limits)
    try:
        json_format.ParseDict(doc, request, ignore_unknown_fields=True)
    except RecursionError:
        raise RequestError(400, "the JSON body is nested too deeply") from None
    except (json_format.ParseError, ValueError, TypeError, AttributeError, SystemError) as exc:
        raise RequestError(400, f"the JSON body is not a valid OTLP ExportLogsServiceRequest: {exc}") from None
    return request, batch


def _check_count(records: int, limits: Limits) -> None:
    if records > limits.max_spans:
        raise RequestError(
            413,
            f"the request has {records} log records, more than the limit of {limits.max_spans}; send smaller batches",
        )


_LOG_IDS = {"traceId": 16, "spanId": 8}


def _translate_json_ids(doc: dict[str, Any], batch: LogBatch) -> int:
    """OTLP JSON's hex ids to base64 in place; records whose ids are not hex are taken out and
    rejected. Returns how many records the body holds; ValueError if its shape is wrong."""
    count = 0
    for rl in _list(doc.get("resourceLogs"), "resourceLogs"):
        for sl in _list(_dict(rl, "resourceLogs").get("scopeLogs"), "scopeLogs"):
            sl = _dict(sl, "scopeLogs")
            records = _list(sl.get("logRecords"), "logRecords")
            kept = []
            for record in records:
                count += 1
                record = _dict(record, "logRecords")
                problem = None
                for name, size in _LOG_IDS.items():
                    hex_value = record.get(name)
                    if hex_value is None or hex_value == "":
                        continue
                    if not isinstance(hex_value, str) or not _HEX.fullmatch(hex_value):
                        problem = f"{name} is not hex (OTLP JSON writes ids in hex, {size * 2} characters)"
                        break
                    record[name] = base64.b64encode(bytes.fromhex(hex_value)).decode()
                if problem:
                    batch.reject(problem)
                else:
                    kept.append(record)
            if len(kept) != len(records):
                sl["logRecords"] = kept
    return count


def normalise_logs(request: ExportLogsServiceRequest, batch: LogBatch, limits: Limits) -> LogBatch:
    """Rows of the valid records; the others rejected with their reason."""
    now = time.time_ns()
    for rl in request.resource_logs:
        service = "unknown_service"
        for kv in rl.resource.attributes:
            if kv.key == "service.name" and kv.value.string_value:
                service = kv.value.string_value[:256]
        for sl in rl.scope_logs:
            for record in sl.log_records:
                row = _row(record, service, now, limits)
                if isinstance(row, str):
                    batch.reject(row)
                else:
                    batch.rows.append(row)
    return batch


def _row(record: LogRecord, service: str, now: int, limits: Limits) -> LogRow | str:
    """One record's row, or why it is rejected."""
    trace_id, span_id = bytes(record.trace_id), bytes(record.span_id)
    if len(trace_id) not in (0, 16):
        return "trace_id must be 16 bytes"
    if len(span_id) not in (0, 8):
        return "span_id must be 8 bytes"
    trace = trace_id if trace_id.strip(b"\0") else None
    span = span_id if span_id.strip(b"\0") else None
    if span is not None and trace is None:
        return "span_id without a trace_id"
    when = record.time_unix_nano or record.observed_time_unix_nano or now
    if when < EARLIEST_NS or when > now + FUTURE_SLACK_NS:
        return "time_unix_nano is before 2000 or more than a day ahead"
    _truncate_attributes(record.attributes, limits.max_attribute_bytes)
    body = _body_text(record)
    cut = _cut_text(body, limits.max_attribute_bytes)
    if cut is not None:
        body = cut
        if record.body.WhichOneof("value") == "string_value":
            record.body.string_value = cut
    number = int(record.severity_number)
    text = record.severity_text or SEVERITY_TEXT.get(_bucket(number), "")
    return LogRow(trace, span, int(when), number, text[:64], service, body, record.SerializeToString())


def _bucket(number: int) -> int:
    """The first severity number of the range (TRACE 1-4, DEBUG 5-8, …) ``number`` is in."""
    return 0 if number <= 0 else min(21, ((number - 1) // 4) * 4 + 1)


def _body_text(record: LogRecord) -> str:
    if not record.HasField("body"):
        return ""
    kind = record.body.WhichOneof("value")
    if kind == "string_value":
        return record.body.string_value
    return json.dumps(value(record.body), ensure_ascii=False, default=str)


# -- ingest ----------------------------------------------------------------------------------


@router.post(
    "/v1/logs",
    tags=["ingest"],
    summary="OTLP/HTTP log export (protobuf or JSON, optionally gzip)",
    openapi_extra=otlp_openapi(
        "ExportLogsServiceRequest", "records", "resourceLogs", "Overloaded, stopping or the store failed; retry"
    ),
)
async def ingest_logs(request: Request) -> Response:
    """Store the records of one OTLP log export; answer only once they are committed."""
    c = collector_of(request)
    limits = c.config.limits
    content_type = request.headers.get("content-type")
    wants_json = (content_type or "").split(";")[0].strip().lower() == JSON_MEDIA
    try:
        try:
            project_id = project_for(request, "ingest")
        except HTTPException as exc:
            raise RequestError(exc.status_code, str(exc.detail)) from None
        media_type(content_type)
        encoding = content_encoding(request.headers.get("content-encoding"))
        too_large = f"the body is larger than {limits.max_body_bytes} bytes; send smaller batches"
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.max_body_bytes:
            raise RequestError(413, too_large)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limits.max_body_bytes:
                raise RequestError(413, too_large)
        batch = await anyio.to_thread.run_sync(_decode, bytes(body), encoding, content_type, limits)
        del body
        if batch.rows:
            # Through the single writer, like spans: committed in its next group commit (one
            # transaction for many requests), refused with 503 + Retry-After when it is full.
            await _committed(_submit(c.writer, project_id, SpanBatch(logs=list(batch.rows))))
    except RequestError as exc:
        return await _refuse(request, exc.status, exc.message, wants_json)
    except _Refused as exc:
        return await _refuse(request, exc.status, exc.message, wants_json, exc.retry_after)
    except ClientDisconnect:
        return Response(status_code=400)
    except Exception:
        logger.exception("could not store log records")
        return await _refuse(request, 503, "the store failed to commit the log records; retry", wants_json, 2)
    response = ExportLogsServiceResponse()
    if batch.rejected:
        response.partial_success.rejected_log_records = batch.rejected
        response.partial_success.error_message = batch.error_message
    if wants_json:
        return Response(json.dumps(json_format.MessageToDict(response)).encode(), media_type=JSON_MEDIA)
    return Response(response.SerializeToString(), media_type=PROTOBUF_MEDIA)


def _decode(body: bytes, encoding: str, content_type: str | None, limits: Limits) -> LogBatch:
    raw = read_body(body, encoding, limits)
    request, batch = parse_logs(raw, content_type, limits)
    return normalise_logs(request, batch, limits)


# -- reading ---------------------------------------------------------------------------------


def log_json(row: LogRow) -> dict[str, Any]:
    """One record for the API (ids in lowercase hex; attributes as plain JSON)."""
    record = LogRecord()
    record.ParseFromString(row.data)
    return {
        "trace_id": row.trace_id.hex() if row.trace_id else None,
        "span_id": row.span_id.hex() if row.span_id else None,
        "time": rfc3339(row.time_ns),
        "time_unix_nano": str(row.time_ns),
        "severity_number": row.severity_number,
        "severity_text": row.severity_text,
        "service": row.service_name,
        "body": row.body,
        "attributes": attributes(record.attributes),
    }


def trace_logs(store: SpanStore, project_id: int, trace_ids: Sequence[bytes]) -> list[dict[str, Any]]:
    """The records of these traces as API JSON, oldest first (a transaction's, a trace's)."""
    rows = store.run_read(lambda sql: logs_of_traces(sql, project_id, trace_ids))
    return [log_json(r) for r in rows]


@router.get(f"{API}/traces/{{trace_id}}/logs", tags=["query"], summary="The log records of one trace")
def get_trace_logs(
    request: Request,
    trace_id: str = Path(
        description="32 hex characters, as in OTLP JSON", json_schema_extra={"pattern": "^[0-9a-fA-F]{32}$"}
    ),
) -> dict[str, Any]:
    """Every record tied to the trace, oldest first, each with its ``span_id`` (null when the
    record named only the trace), severity, body and attributes."""
    project_id = project_for(request, "read")
    if not _HEX.fullmatch(trace_id) or len(trace_id) != 32:
        raise HTTPException(400, "trace_id must be 32 hex characters")
    logs = trace_logs(collector_of(request).store, project_id, [bytes.fromhex(trace_id)])
    return {"trace_id": trace_id.lower(), "logs": logs}
