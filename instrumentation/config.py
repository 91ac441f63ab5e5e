"""Configuration: the standard OpenTelemetry variables first, ``HOPTRACE_*`` only for our own options.

Read once at ``init()``; explicit keyword arguments to ``init()`` win over the environment.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

DEFAULT_REDACT = ("password", "passwd", "secret", "token", "key", "authorization", "credential", "cookie")


def _bool(value: str | None, default: bool) -> bool:
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def _float(value: str | None, default: float) -> float:
    try:
        return float(value) if value not in (None, "") else default  # type: ignore[arg-type]
    except ValueError:
        return default


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default  # type: ignore[arg-type]
    except ValueError:
        return default


def _level(value: str | None, default: int) -> int:
    """A logging level by name (``WARNING``) or number (``30``)."""
    if value is None or value.strip() == "":
        return default
    text = value.strip().upper()
    if text.isdigit():
        return int(text)
    level = logging.getLevelName(text)
    return level if isinstance(level, int) else default


def _list(value: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    if value is None:
        return default
    return tuple(p.strip() for p in value.split(",") if p.strip())


@dataclass(frozen=True)
class Config:
    """Everything the instrumentation can be told; see the README for the variables."""

    service_name: str | None = None
    enabled: bool = True
    # Export. None means: let the OpenTelemetry exporter read OTEL_EXPORTER_OTLP_* itself.
    endpoint: str | None = None
    headers: Mapping[str, str] | None = None
    # Hard budget for the end-of-invocation flush, in milliseconds.
    flush_budget_ms: float = 200.0
    # Spans kept for one invocation; past it spans are dropped and counted.
    max_spans_per_invocation: int = 2000
    # Lambda timeout watchdog: fire this many ms before the deadline.
    watchdog_margin_ms: float = 300.0
    watchdog: bool = True
    # Announce each invocation as it starts (and its memory near the limit), so the collector
    # sees the invocations Lambda killed (see aws_lambda/announce.py).
    announce: bool = True
    # Payload capture (off by default) and redaction.
    capture_payloads: bool = False
    payload_max_bytes: int = 4096
    redact_keys: tuple[str, ...] = DEFAULT_REDACT
    # Logs in context (Lambda mode): ``logging`` records at or above this level, emitted during an
    # invocation, go out with its spans as OTLP logs, redacted like payloads and capped.
    capture_logs: bool = True
    log_level: int = logging.WARNING
    log_max_records: int = 100  # per invocation; past it records are dropped and counted
    log_max_bytes: int = 2048  # per record's message (and per field); longer ones are cut
    # Which integrations to install.
    instrument_botocore: bool = True
    instrument_http: bool = True
    # Force Lambda mode (per-invocation flush) or batch mode; None detects from the environment.
    lambda_mode: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Build a config from the environment, then apply explicit overrides."""
        e = os.environ if env is None else env
        values: dict[str, Any] = {
            "service_name": e.get("OTEL_SERVICE_NAME") or e.get("AWS_LAMBDA_FUNCTION_NAME"),
            "enabled": not _bool(e.get("OTEL_SDK_DISABLED"), False) and _bool(e.get("HOPTRACE_ENABLED"), True),
            "flush_budget_ms": _float(e.get("HOPTRACE_FLUSH_BUDGET_MS"), 200.0),
            "max_spans_per_invocation": _int(e.get("HOPTRACE_MAX_SPANS"), 2000),
            "watchdog_margin_ms": _float(e.get("HOPTRACE_WATCHDOG_MARGIN_MS"), 300.0),
            "watchdog": _bool(e.get("HOPTRACE_WATCHDOG"), True),
            "announce": _bool(e.get("HOPTRACE_ANNOUNCE"), True),
            "capture_payloads": _bool(e.get("HOPTRACE_CAPTURE_PAYLOADS"), False),
            "payload_max_bytes": _int(e.get("HOPTRACE_PAYLOAD_MAX_BYTES"), 4096),
            "redact_keys": _list(e.get("HOPTRACE_REDACT_KEYS"), DEFAULT_REDACT),
            "capture_logs": _bool(e.get("HOPTRACE_LOGS"), True),
            "log_level": _level(e.get("HOPTRACE_LOG_LEVEL"), logging.WARNING),
            "log_max_records": _int(e.get("HOPTRACE_LOG_MAX_RECORDS"), 100),
            "log_max_bytes": _int(e.get("HOPTRACE_LOG_MAX_BYTES"), 2048),
            "instrument_botocore": _bool(e.get("HOPTRACE_INSTRUMENT_BOTOCORE"), True),
            "instrument_http": _bool(e.get("HOPTRACE_INSTRUMENT_HTTP"), True),
        }
        mode = e.get("HOPTRACE_LAMBDA_MODE")
        values["lambda_mode"] = None if mode in (None, "") else _bool(mode, False)
        known = {f.name for f in fields(cls)}
        for key, value in overrides.items():
            if key not in known:
                raise TypeError(f"hoptrace.init() got an unknown option {key!r}; known: {sorted(known)}")
            if value is not None:
                values[key] = value
        return cls(**values)

    def redact_pattern(self) -> re.Pattern[str]:
        """One case-insensitive pattern matching any configured secret-looking key."""
        parts = [re.escape(k) for k in self.redact_keys] or ["(?!x)x"]
        return re.compile("|".join(parts), re.IGNORECASE)
