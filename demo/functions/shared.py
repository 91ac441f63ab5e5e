"""What the shop's functions share (a layer, in a real deployment): JSON responses and outbound HTTP.

Outbound HTTP goes through the egress proxy named in ``SHOP_EGRESS_PROXY`` (the demo's stand-in
for the internet), so the request names the real host (``catalog.shop.test``) and hoptrace's
HTTP span, like the map, shows that host rather than a loopback address.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from decimal import Decimal
from typing import Any, Optional


class HttpError(Exception):
    """A non-2xx answer from an outside service, with its status and body."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:200]}")
        self.status = status
        self.body = body


def _opener() -> urllib.request.OpenerDirector:
    proxy = os.environ.get("SHOP_EGRESS_PROXY")
    handlers = [urllib.request.ProxyHandler({"http": proxy} if proxy else {})]
    return urllib.request.build_opener(*handlers)


_OPENER = _opener()


def call(method: str, url: str, body: Optional[dict[str, Any]] = None, timeout_s: float = 5.0) -> Any:
    """Send JSON, return the decoded JSON answer; ``HttpError`` for 4xx/5xx."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    try:
        with _OPENER.open(request, timeout=timeout_s) as answer:
            return json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as exc:
        raise HttpError(exc.code, exc.read().decode(errors="replace")) from None


def response(status: int, body: Any) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) response."""
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(body, default=_json_default),
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def body_of(event: dict[str, Any]) -> dict[str, Any]:
    """The JSON body of an HTTP API event (base64 when API Gateway says so)."""
    raw = event.get("body") or "{}"
    if event.get("isBase64Encoded"):
        import base64

        raw = base64.b64decode(raw).decode()
    parsed = json.loads(raw)
    if not isinstance(parsed, dict):
        raise ValueError("the request body must be a JSON object")
    return parsed
