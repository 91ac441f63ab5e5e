"""Collector settings: command-line flags, each with a ``HOPTRACE_*`` environment variable."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from .otlp import Limits

DEFAULT_STORE = "sqlite:///hoptrace.db"


def parse_duration(text: str) -> float:
    """``7d``, ``12h``, ``30m``, ``45s`` (or plain seconds) as seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text or "")
    if not match:
        raise ValueError(f"{text!r} is not a duration: write e.g. 7d, 12h, 30m or 45s")
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]


@dataclass
class CollectorConfig:
    store_url: str = DEFAULT_STORE
    host: str = "127.0.0.1"
    port: int = 4318
    limits: Limits = field(default_factory=Limits)
    retention_s: float | None = None
    max_pending_spans: int = 100_000
    allow_open: bool = False  # serve without tokens on a non-loopback address (explicit opt-in)
    grpc_port: int | None = None  # OTLP/gRPC ingest (needs the grpc extra); None: HTTP only
    public_url: str | None = None  # where notifications link to (the UI); None: http://host:port
    notify_backoff_s: float = 2.0  # first retry of an undelivered notification; doubles per attempt
    notify_attempts: int = 12  # attempts before a notification is given up
    notify_timeout_s: float = 10.0  # per HTTP call to a receiver
    record_age_warn_s: float = 300.0  # a queue or stream record older than this at invocation warns
    # Derive the graph in a child process (``graph_worker``) rather than a thread of this one:
    # ``hoptrace serve`` does by default, so ingest keeps a core and the GIL to itself.
    graph_process: bool = False
    # An announced invocation not ended this long after its deadline is recorded killed (killed.py).
    killed_grace_s: float = 10.0

    @classmethod
    def from_env(cls) -> CollectorConfig:
        """Settings from ``HOPTRACE_*`` variables; ValueError naming the variable when one is wrong."""
        e = os.environ
        retention = e.get("HOPTRACE_RETENTION")
        grpc_port = e.get("HOPTRACE_GRPC_PORT")
        return cls(
            store_url=e.get("HOPTRACE_STORE", DEFAULT_STORE),
            host=e.get("HOPTRACE_HOST", "127.0.0.1"),
            port=_env_int("HOPTRACE_PORT", 4318),
            limits=Limits(
                max_body_bytes=_env_int("HOPTRACE_MAX_BODY_BYTES", Limits.max_body_bytes),
                max_spans=_env_int("HOPTRACE_MAX_SPANS_PER_REQUEST", Limits.max_spans),
                max_attribute_bytes=_env_int("HOPTRACE_MAX_ATTRIBUTE_BYTES", Limits.max_attribute_bytes),
            ),
            retention_s=parse_duration(retention) if retention else None,
            max_pending_spans=_env_int("HOPTRACE_MAX_PENDING_SPANS", 100_000),
            grpc_port=_env_int("HOPTRACE_GRPC_PORT", 0) if grpc_port and grpc_port.strip() else None,
            public_url=e.get("HOPTRACE_PUBLIC_URL") or None,
            notify_backoff_s=parse_duration(e.get("HOPTRACE_NOTIFY_BACKOFF") or "2s"),
            notify_attempts=_env_int("HOPTRACE_NOTIFY_ATTEMPTS", 12),
            notify_timeout_s=parse_duration(e.get("HOPTRACE_NOTIFY_TIMEOUT") or "10s"),
            record_age_warn_s=parse_duration(e.get("HOPTRACE_RECORD_AGE_WARN") or "5m"),
            graph_process=graph_pass_setting() == "process",
            killed_grace_s=parse_duration(e.get("HOPTRACE_KILLED_GRACE") or "10s"),
        )


GRAPH_PASSES = ("process", "thread")


def graph_pass_setting() -> str | None:
    """``HOPTRACE_GRAPH_PASS``: where the graph is derived, ``process`` or ``thread`` (None: not set)."""
    text = os.environ.get("HOPTRACE_GRAPH_PASS", "")
    value = text.strip().lower()
    if not value:
        return None
    if value not in GRAPH_PASSES:
        raise ValueError(f"HOPTRACE_GRAPH_PASS={text!r} is not one of {', '.join(GRAPH_PASSES)}")
    return value


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a whole number") from None
