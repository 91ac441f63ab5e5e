"""Logs in context: the ``logging`` records an invocation emits, sent with its spans as OTLP logs.

A ``logging.Handler`` on the root logger (installed by ``setup.init`` in Lambda mode) keeps each
record at or above ``Config.log_level`` that is emitted while a span is current — or, from a
thread the handler started, while an invocation runs — tied to that span by trace and span id.
The records wait in a capped buffer and leave with the spans at the invocation's flush, in the
same export and within the same budget (``export.ExportWorker``), to the collector's
``/v1/logs``.

Powertools for AWS Lambda's ``Logger`` writes JSON lines: a record whose logger formats it as
a JSON object has its level, message and fields taken from that JSON, so what its ``extra``
keys and ``append_keys`` added is kept. Messages, fields and exception text are redacted like
payloads (``payload.mask_text``; values under secret-looking keys are dropped) and cut to
``Config.log_max_bytes``; past ``Config.log_max_records`` per invocation records are dropped and
counted (``hoptrace.stats()["logs_dropped"]``). Nothing here ever raises into the logging call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from .guard import count, swallowed

# ``payload`` (redaction) and ``otlp`` (encoding) are imported on first use: a function that logs
# nothing at WARNING pays neither at its cold start.

if TYPE_CHECKING:  # pragma: no cover
    import re

    from .config import Config

MAX_FIELDS = 32  # per record, beyond the code location and exception
# What a LogRecord has of its own; anything else on it came from ``extra=``.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
# Keys of a structured (JSON) line that are the record itself, not fields.
_LINE_KEYS = frozenset({"level", "levelname", "message", "msg", "timestamp", "time", "@timestamp"})


def severity_number(levelno: int) -> int:
    """OpenTelemetry's SeverityNumber of a Python level: DEBUG 5, INFO 9, WARNING 13, ERROR 17, CRITICAL 21."""
    if levelno >= logging.CRITICAL:
        return 21
    if levelno >= logging.ERROR:
        return 17
    if levelno >= logging.WARNING:
        return 13
    if levelno >= logging.INFO:
        return 9
    if levelno >= logging.DEBUG:
        return 5
    return 1


class LogRecordData:
    """One captured record, ready to encode (ids as the span context holds them)."""

    __slots__ = ("attributes", "body", "resource", "severity_number", "severity_text", "span_id", "time_ns", "trace_id")

    def __init__(
        self,
        time_ns: int,
        severity_text: str,
        body: str,
        attributes: dict[str, Any],
        trace_id: int,
        span_id: int,
        resource: Any,
    ) -> None:
        self.time_ns = time_ns
        self.severity_text = severity_text
        self.severity_number = severity_number(_levelno(severity_text))
        self.body = body
        self.attributes = attributes
        self.trace_id = trace_id
        self.span_id = span_id
        self.resource = resource


def _levelno(name: str) -> int:
    level = logging.getLevelName(name.upper())
    return level if isinstance(level, int) else logging.WARNING


class InvocationLogs:
    """Records captured since the last flush, at most ``max_records`` of them."""

    def __init__(self, max_records: int) -> None:
        self.max_records = max_records
        self._records: deque[LogRecordData] = deque()

    def add(self, record: LogRecordData) -> None:
        if len(self._records) >= self.max_records:  # a race may let one more in: harmless
            count("logs_dropped")
            return
        self._records.append(record)

    def take(self) -> list[LogRecordData]:
        """Everything captured so far (the buffer is left empty)."""
        out: list[LogRecordData] = []
        take, append = self._records.popleft, out.append
        try:
            for _ in range(len(self._records)):
                append(take())
        except IndexError:  # the watchdog flushing at the same time took the rest
            pass
        return out


class LogCapture(logging.Handler):
    """Keeps the records of the running invocation in ``buffer``; see the module docstring."""

    def __init__(self, config: Config, buffer: InvocationLogs) -> None:
        # The level is checked in ``handle``: a handler on root, at any level, would otherwise
        # keep ``logging.lastResort`` from printing the warnings of a process with no handler.
        super().__init__(logging.NOTSET)
        self.capture_level = config.log_level
        self.buffer = buffer
        self.max_bytes = max(64, config.log_max_bytes)
        self.redact: re.Pattern[str] = config.redact_pattern()
        self._busy = threading.local()  # a record logged while we capture one is not captured
        self._formatters: dict[str, logging.Formatter | None] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        # Filters on root handlers are about console output (Powertools adds one to every root
        # handler so its records are not printed twice); this handler prints nothing.
        return True

    def handle(self, record: logging.LogRecord) -> bool:
        if record.levelno >= self.capture_level:
            self.emit(record)
        last_resort = logging.lastResort
        if last_resort is not None and record.levelno >= last_resort.level and self._alone(record.name):
            last_resort.handle(record)  # what logging would have done without this handler
        return True

    def _alone(self, name: str) -> bool:
        """Whether no other handler sees a record of logger ``name``."""
        try:
            logger: Any = logging.Logger.manager.loggerDict.get(name, logging.root)
            while isinstance(logger, logging.Logger):
                if any(h is not self for h in logger.handlers):
                    return False
                if not logger.propagate:
                    break
                logger = logger.parent
            return True
        except Exception:
            return False

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self._busy, "on", False) or record.name == "hoptrace" or record.name.startswith("hoptrace."):
            return
        self._busy.on = True
        try:
            captured = self.capture(record)
            if captured is not None:
                self.buffer.add(captured)
        except Exception:
            swallowed("logs.capture")
        finally:
            self._busy.on = False

    def capture(self, record: logging.LogRecord) -> LogRecordData | None:
        """The record as it will be sent, or None outside an invocation."""
        span = trace.get_current_span()
        ctx = span.get_span_context()
        if not ctx.is_valid:
            span = _invocation_span()  # a thread the handler started: no context, same invocation
            if span is None:
                return None
            ctx = span.get_span_context()
        level = record.levelname
        message: Any = None
        fields: dict[str, Any] = {}
        line = self._structured(record)
        if line is not None:
            level = str(line.get("level") or line.get("levelname") or level)
            message = line.get("message", line.get("msg"))
            fields = {k: v for k, v in line.items() if k not in _LINE_KEYS}
        else:
            message = record.getMessage()
            fields = {k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS and not k.startswith("_")}
        attributes: dict[str, Any] = {
            "log.logger": record.name,
            "code.function": record.funcName,
            "code.lineno": record.lineno,
            "code.filepath": record.pathname,
        }
        for key, value in list(fields.items())[:MAX_FIELDS]:
            attributes[str(key)] = self._field(str(key), value)
        if len(fields) > MAX_FIELDS:
            attributes["hoptrace.log.dropped_fields"] = len(fields) - MAX_FIELDS
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            import traceback

            module, name = type(error).__module__, type(error).__qualname__
            attributes["exception.type"] = f"{module}.{name}" if module and module != "builtins" else name
            attributes["exception.message"] = self._text(str(error))
            attributes["exception.stacktrace"] = self._text("".join(traceback.format_exception(*record.exc_info)))
        if isinstance(message, str):
            body = message
        else:
            from .payload import render

            body = render(message, max_bytes=self.max_bytes, redact=self.redact)
        return LogRecordData(
            int(record.created * 1e9),
            level.upper(),
            self._text(body),
            attributes,
            ctx.trace_id,
            ctx.span_id,
            getattr(span, "resource", None) or _provider_resource(),
        )

    def _text(self, text: str) -> str:
        from .payload import cap_text, mask_text

        return cap_text(mask_text(text, self.redact), self.max_bytes)

    def _field(self, key: str, value: Any) -> Any:
        from .payload import REDACTED, render

        if self.redact.search(key):
            return REDACTED
        if isinstance(value, str):
            return self._text(value)
        if isinstance(value, (bool, int, float)) and not (isinstance(value, int) and value.bit_length() > 63):
            return value
        return render(value, max_bytes=self.max_bytes, redact=self.redact)

    def _structured(self, record: logging.LogRecord) -> dict[str, Any] | None:
        """The record as its own logger writes it, when that is a JSON object (Powertools' Logger)."""
        formatter = self._formatter_of(record.name)
        # No formatter of its own: perhaps a JSON line logged as the message itself.
        text = record.getMessage() if formatter is None else formatter.format(record)
        if not text.startswith("{"):
            return None
        import json

        try:
            parsed = json.loads(text)
        except ValueError:
            return None
        if not isinstance(parsed, dict) or not ({"message", "msg"} & parsed.keys()):
            return None
        return parsed

    def _formatter_of(self, name: str) -> logging.Formatter | None:
        """The formatter of the first handler up the logger's chain below root (cached per name)."""
        if name in self._formatters:
            return self._formatters[name]
        found: logging.Formatter | None = None
        logger: Any = logging.Logger.manager.loggerDict.get(name)
        while isinstance(logger, logging.Logger) and logger is not logging.root:
            handlers = [h for h in logger.handlers if h.formatter is not None]
            if handlers:
                found = handlers[0].formatter
                break
            if not logger.propagate:
                break
            logger = logger.parent
        if len(self._formatters) < 1024:
            self._formatters[name] = found
        return found


def _provider_resource() -> Any:
    """The process's resource, for a record whose current span has none (a remote parent's)."""
    from .setup import state

    st = state()
    return getattr(st.provider, "resource", None) if st is not None else None


def _invocation_span() -> Any:
    from .aws_lambda.invocation import current

    inv = current()
    return inv.span if inv is not None else None


_installed: LogCapture | None = None


def install(config: Config) -> InvocationLogs:
    """Put the capturing handler on the root logger (once); its buffer is what the flush sends."""
    global _installed
    uninstall()
    buffer = InvocationLogs(max(0, config.log_max_records))
    handler = LogCapture(config, buffer)
    logging.getLogger().addHandler(handler)
    _installed = handler
    return buffer


def uninstall() -> None:
    """Take the handler off the root logger (``shutdown``; a later ``init`` installs a new one)."""
    global _installed
    if _installed is not None:
        logging.getLogger().removeHandler(_installed)
        _installed = None


# --- OTLP encoding (logs.proto field numbers in the comments) --------------------------------


def encode_record(record: LogRecordData) -> bytearray:
    """One ``LogRecord``."""
    from .otlp import _any_value, _attributes, _bytes_field, _pack_fixed32, _pack_fixed64, _string_field, _varint

    out = bytearray()
    out.append(0x09)  # 1 time_unix_nano
    out += _pack_fixed64(record.time_ns)
    out.append(0x10)  # 2 severity_number
    _varint(out, record.severity_number)
    _string_field(out, 0x1A, record.severity_text)  # 3 severity_text
    _bytes_field(out, 0x2A, _any_value(record.body))  # 5 body
    _attributes(out, 0x32, record.attributes)  # 6 attributes
    out.append(0x45)  # 8 flags (fixed32): sampled
    out += _pack_fixed32(1)
    _bytes_field(out, 0x4A, record.trace_id.to_bytes(16, "big"))  # 9 trace_id
    _bytes_field(out, 0x52, record.span_id.to_bytes(8, "big"))  # 10 span_id
    out.append(0x59)  # 11 observed_time_unix_nano
    out += _pack_fixed64(time.time_ns())
    return out


class _Scope:
    name = "hoptrace.logs"
    version = ""
    attributes = None


def encode_logs_request(records: Iterable[LogRecordData]) -> bytes:
    """An ``ExportLogsServiceRequest``: records grouped by resource, under one scope."""
    from .otlp import _attributes, _bytes_field, _scope

    grouped: dict[int, tuple[Any, list[bytearray]]] = {}
    for record in records:
        grouped.setdefault(id(record.resource), (record.resource, []))[1].append(encode_record(record))
    out = bytearray()
    for resource, encoded in grouped.values():
        resource_logs = bytearray()
        encoded_resource = bytearray()
        attrs: Mapping[str, Any] | None = getattr(resource, "attributes", None)
        _attributes(encoded_resource, 0x0A, attrs)
        _bytes_field(resource_logs, 0x0A, encoded_resource)  # ResourceLogs.resource 1
        scope_logs = bytearray()
        _bytes_field(scope_logs, 0x0A, _scope(_Scope))  # ScopeLogs.scope 1
        for item in encoded:
            _bytes_field(scope_logs, 0x12, item)  # ScopeLogs.log_records 2
        _bytes_field(resource_logs, 0x12, scope_logs)  # ResourceLogs.scope_logs 2
        _bytes_field(out, 0x0A, resource_logs)  # ExportLogsServiceRequest.resource_logs 1
    return bytes(out)


def logs_path(traces_path: str) -> str:
    """Where logs go on the collector that takes the spans: ``…/v1/traces`` becomes ``…/v1/logs``."""
    path, _, query = traces_path.partition("?")
    base = path[: -len("/v1/traces")] if path.endswith("/v1/traces") else path.rstrip("/").rpartition("/")[0]
    return base + "/v1/logs" + (f"?{query}" if query else "")
