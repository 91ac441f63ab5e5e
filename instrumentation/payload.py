"""Payload capture: events, responses and AWS request parameters as redacted, size-capped JSON.

Off by default (``HOPTRACE_CAPTURE_PAYLOADS``). When on, a payload is copied into plain JSON
values, every value under a secret-looking key (``Config.redact_pattern()``) is replaced by
``[REDACTED]`` — also inside strings that are themselves JSON, such as an API Gateway
``body`` — and the result is cut to ``payload_max_bytes`` UTF-8 bytes with a visible marker.

The walk is bounded (depth, node count, string length) so a 6 MB event or a pathological
object costs about as much as the capped output, and nothing here ever raises: a payload we
cannot render becomes a short explanatory string. The input is never modified.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import enum
import json
import math
import re
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Callable, Literal

from .guard import count, logger

if TYPE_CHECKING:  # pragma: no cover
    from .config import Config

EVENT_ATTRIBUTE = "hoptrace.payload.event"  # the Lambda invocation's event
RESPONSE_ATTRIBUTE = "hoptrace.payload.response"  # what the handler (or an AWS call) returned
REQUEST_ATTRIBUTE = "hoptrace.payload.request"  # the parameters of an AWS API call

PayloadKind = Literal["event", "response", "request"]
_ATTRIBUTES: dict[str, str] = {
    "event": EVENT_ATTRIBUTE,
    "response": RESPONSE_ATTRIBUTE,
    "request": REQUEST_ATTRIBUTE,
}

REDACTED = "[REDACTED]"

# Deeper than any real event; keeps us far from the interpreter's recursion limit.
MAX_DEPTH = 32
# Strings that look like JSON are parsed (to redact inside them) up to this length; longer
# ones are cut and masked as text, so one huge body cannot cost a large parse.
MAX_JSON_PARSE_CHARS = 1 << 20
# Fields that name the entry of a name/value list: [{"Name": "Authorization", "Value": "…"}].
_NAME_FIELDS = ("name", "Name", "key", "Key", "header", "Header")
_VALUE_FIELDS = ("value", "Value", "values", "Values", "stringValue", "StringValue")

_LOOKS_LIKE_JSON = re.compile(r"\s*[\[{]")
# Credentials recognisable by their shape, wherever they appear in free text.
_SECRET_SHAPES = re.compile(
    r"(?P<scheme>\b(?:Bearer|Basic|Digest)\s+)(?=\S*[0-9+/=])[A-Za-z0-9\-._~+/=]{8,}"  # credentials
    r"|\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"  # JWTs
    r"|(?<![A-Za-z0-9/+=])(?=[A-Za-z0-9/+]{0,39}[A-Z])(?=[A-Za-z0-9/+]{0,39}[a-z])"
    r"(?=[A-Za-z0-9/+]{0,39}[0-9])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])",  # AWS secret access keys
)


def attribute_name(kind: PayloadKind) -> str:
    """The span attribute a captured payload goes into, e.g. ``hoptrace.payload.event``."""
    return _ATTRIBUTES[kind]


def capture(obj: Any, config: Config) -> str | None:
    """The redacted, capped JSON of ``obj``, or None when payload capture is off."""
    if not config.capture_payloads or config.payload_max_bytes <= 0:
        return None
    return render(obj, max_bytes=config.payload_max_bytes, redact=config.redact_pattern())


def render(obj: Any, *, max_bytes: int, redact: re.Pattern[str]) -> str:
    """``obj`` as JSON, values under keys matching ``redact`` replaced, at most ``max_bytes``
    UTF-8 bytes; never raises and never modifies ``obj``."""
    try:
        walker = _Walker(_redaction(redact.pattern, redact.flags), max_bytes)
        text = _dumps(walker.walk(obj, 0))
        return _cap(text, max_bytes, walker.omitted_bytes, walker.exhausted)
    except Exception as exc:  # e.g. a Mapping whose items() raises: say so instead of failing
        count("internal_errors")
        count("internal_errors.payload")
        logger.debug("hoptrace: could not render a payload", exc_info=True)
        return _cap(json.dumps(f"[payload not captured: {type(exc).__name__}]"), max_bytes, 0, False)


def mask_text(text: str, redact: re.Pattern[str]) -> str:
    """``text`` with the secrets recognisable in free text masked: ``key=value`` and ``"key": value``
    pairs under secret-looking keys, bearer tokens, JWTs, AWS secret keys (log lines, exception
    messages)."""
    return _redaction(redact.pattern, redact.flags).mask_text(text)


def cap_text(text: str, max_bytes: int) -> str:
    """``text`` cut to ``max_bytes`` UTF-8 bytes, ending with a marker saying how much went."""
    return _cap(text, max_bytes, 0, False)


def redact_errors(spans: Sequence[Any], redact: re.Pattern[str]) -> None:
    """Mask secrets in finished spans' exception messages, stack traces and error statuses before
    they leave the process: ``raise LoginError(f"bad password={pw}")`` must not ship ``pw``.

    Applies to hoptrace's own spans (the SDK's are immutable once ended)."""
    from opentelemetry.trace import Status

    from .spans import Span

    for span in spans:
        if type(span) is not Span:
            continue
        try:
            description = span.status.description
            if description:
                masked = mask_text(description, redact)
                if masked != description:
                    span.status = Status(span.status.status_code, masked)
            for event in span.events:
                if event.name != "exception":
                    continue
                for key in ("exception.message", "exception.stacktrace"):
                    text = event.attributes.get(key)
                    if isinstance(text, str):
                        event.attributes[key] = mask_text(text, redact)
        except Exception:
            count("internal_errors")
            count("internal_errors.redact_errors")
            logger.debug("hoptrace: could not redact a span's errors", exc_info=True)


def _dumps(value: Any) -> str:
    # The walker only produces JSON values and never a cycle, so the checks can go.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), check_circular=False)


@lru_cache(maxsize=16)
def _redaction(pattern: str, flags: int) -> _Redaction:
    return _Redaction(pattern, flags)


class _Redaction:
    """The redaction rules derived from one key pattern (cached: configs rarely change)."""

    def __init__(self, pattern: str, flags: int) -> None:
        self.key = re.compile(pattern, flags)
        ci = flags | re.IGNORECASE
        # key=value in query strings, form bodies, cookies and log lines.
        self.pair = re.compile(rf"([\w.\-]*(?:{pattern})[\w.\-]*=)[^&;\s,]+", ci)
        # "key": value in JSON we could not parse (too long, cut short, or malformed).
        self.json_pair = re.compile(rf'("[^"\\]*(?:{pattern})[^"\\]*"\s*:\s*)("(?:[^"\\]|\\.)*"?|[^,}}\]\s]+)', ci)

    def mask_text(self, text: str) -> str:
        """Mask secrets recognisable in free text: key=value pairs, tokens, AWS keys."""
        text = _SECRET_SHAPES.sub(_mask_shape, text)
        if "=" in text:
            text = self.pair.sub(rf"\g<1>{REDACTED}", text)
        if ":" in text:
            text = self.json_pair.sub(rf'\g<1>"{REDACTED}"', text)
        return text


def _mask_shape(m: re.Match[str]) -> str:
    return (m.group("scheme") or "") + REDACTED


class _Walker:
    """Copies a payload into JSON values, redacting as it goes, within a fixed budget.

    Values are visited in the order ``json.dumps`` writes them and each costs at least the
    bytes it will write, so once the budget is spent everything further would fall past the
    byte cap anyway: it is skipped, and the marker then gives a lower bound.
    """

    def __init__(self, redaction: _Redaction, max_bytes: int) -> None:
        self.redaction = redaction
        self.max_chars = max_bytes  # a longer string cannot fit; it is cut here
        self.budget = 2 * max_bytes + 64
        self.omitted_bytes = 0  # cut from long strings before serialising
        self.exhausted = False  # the budget ran out: the real size is unknown
        self._path: set[int] = set()  # containers on the way down, to spot cycles

    def walk(self, obj: Any, depth: int) -> Any:
        if self.budget <= 0:
            self.exhausted = True
            return None
        self.budget -= 1
        if obj is None or isinstance(obj, bool):
            return obj
        if isinstance(obj, str):
            return self._string(obj, depth)
        if isinstance(obj, int):
            # Huge ints would hit the interpreter's int-to-str digit limit inside json.dumps.
            return int(obj) if obj.bit_length() <= 512 else f"[integer of {obj.bit_length()} bits]"
        if isinstance(obj, float):
            return obj if math.isfinite(obj) else str(obj)  # NaN is not JSON
        if isinstance(obj, Decimal):
            return _decimal(obj)
        if isinstance(obj, (bytes, bytearray, memoryview)):
            return self._bytes(bytes(obj), depth)
        if isinstance(obj, (datetime.datetime, datetime.date, datetime.time)):
            return obj.isoformat()
        if isinstance(obj, uuid.UUID):
            return str(obj)
        if isinstance(obj, enum.Enum):
            return self.walk(obj.value, depth)
        if depth >= MAX_DEPTH:
            return "[nested too deep]"
        if id(obj) in self._path:
            return "[cycle]"
        if isinstance(obj, Mapping):
            return self._inside(obj, lambda: self._mapping(obj, depth + 1))
        if isinstance(obj, (list, tuple, set, frozenset, deque)):
            return self._inside(obj, lambda: self._sequence(obj, depth + 1))
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            fields = {f.name: getattr(obj, f.name, None) for f in dataclasses.fields(obj)}
            return self._inside(obj, lambda: self._mapping(fields, depth + 1))
        return self._string(_safe_repr(obj), depth)

    def _inside(self, container: Any, walk_items: Callable[[], Any]) -> Any:
        self._path.add(id(container))
        try:
            return walk_items()
        finally:
            self._path.discard(id(container))

    def _mapping(self, obj: Mapping[Any, Any], depth: int) -> dict[str, Any]:
        redaction = self.redaction
        secret_entry = _names_a_secret(obj, redaction)
        out: dict[str, Any] = {}
        for k, v in obj.items():
            name = k if isinstance(k, str) else _safe_key(k)
            self.budget -= len(name)
            if redaction.key.search(name) or (secret_entry and name in _VALUE_FIELDS):
                self.budget -= len(REDACTED)
                out[name] = REDACTED
            else:
                out[name] = self.walk(v, depth)
            if self.exhausted:
                break
        return out

    def _sequence(self, obj: Any, depth: int) -> list[Any]:
        out: list[Any] = []
        for item in obj:
            out.append(self.walk(item, depth))
            if self.exhausted:
                break
        return out

    def _string(self, text: str, depth: int) -> str:
        if depth < MAX_DEPTH and len(text) <= MAX_JSON_PARSE_CHARS and _LOOKS_LIKE_JSON.match(text):
            try:
                parsed = json.loads(text)
            except (ValueError, RecursionError):
                parsed = None
            if isinstance(parsed, dict):
                return _dumps(self._inside(parsed, lambda: self._mapping(parsed, depth + 1)))
            if isinstance(parsed, list):
                return _dumps(self._inside(parsed, lambda: self._sequence(parsed, depth + 1)))
        if len(text) > self.max_chars:
            self.omitted_bytes += len(text[self.max_chars :].encode("utf-8", "replace"))
            text = text[: self.max_chars]
        self.budget -= len(text)
        return self.redaction.mask_text(text)

    def _bytes(self, data: bytes, depth: int) -> str:
        try:
            return self._string(data.decode("utf-8"), depth)
        except UnicodeDecodeError:
            # Binary: keep what could fit, base64 encoded, so it stays JSON text.
            keep = data[: self.max_chars]
            self.omitted_bytes += (len(data) - len(keep)) * 4 // 3
            self.budget -= len(keep)
            return "base64:" + base64.b64encode(keep).decode("ascii")


def _names_a_secret(obj: Mapping[Any, Any], redaction: _Redaction) -> bool:
    """True for a name/value entry naming a secret, e.g. ``{"Name": "Cookie", "Value": "…"}``."""
    for field in _NAME_FIELDS:
        if field in obj:
            name = obj[field]
            if isinstance(name, str) and redaction.key.search(name):
                return True
    return False


def _decimal(value: Decimal) -> Any:
    """DynamoDB numbers: an exact int or float when one exists, else the decimal text."""
    if not value.is_finite():
        return str(value)
    if value == value.to_integral_value() and value.adjusted() < 150:
        return int(value)
    as_float = float(value)
    return as_float if Decimal(repr(as_float)) == value else str(value)


def _safe_key(key: Any) -> str:
    try:
        return str(key)
    except Exception:
        return f"<{type(key).__name__}>"


def _safe_repr(obj: Any) -> str:
    """A short description of an object JSON cannot hold (a user ``__repr__`` may fail)."""
    try:
        text = repr(obj)
    except Exception:
        return f"<{type(obj).__module__}.{type(obj).__qualname__}>"
    return text if len(text) <= 256 else text[:256] + "…"


def _cap(text: str, max_bytes: int, omitted: int, exhausted: bool) -> str:
    """Cut ``text`` to ``max_bytes`` UTF-8 bytes, ending with a marker saying how much went."""
    # "replace" turns lone surrogates into "?": exporters reject strings that are not UTF-8.
    data = text.encode("utf-8", "replace")
    if len(data) <= max_bytes and not omitted and not exhausted:
        return data.decode("utf-8")
    total = len(data) + omitted
    more = "≥" if exhausted else ""

    def marker(n: int) -> str:
        return f"…[truncated {more}{n} bytes]"

    room = max_bytes - len(marker(total).encode("utf-8"))  # the longest count the marker can hold
    if room < 0:  # a cap smaller than the marker: as much of the marker as fits
        return marker(total).encode("utf-8")[: max(max_bytes, 0)].decode("utf-8", "ignore")
    kept = data[:room].decode("utf-8", "ignore")  # drops a character cut in half
    return kept + marker(total - len(kept.encode("utf-8")))
