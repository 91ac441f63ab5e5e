"""The outside world the shop calls over HTTP: a product catalog and a payment gateway.

Both live in one small HTTP server on 127.0.0.1 that the functions reach as a forward proxy
(``SHOP_EGRESS_PROXY``), the way functions in a VPC reach the internet: requests name the real
host (``http://payments.shop.test/charges``), so spans and the map show that host.

The payment gateway behaves like a payment sandbox's test cards: the card number decides.

========  =============================================================================
card      answer
========  =============================================================================
4242      captured
4000-slow captured, after 0.8-1.5 s
4000-429  429 Too Many Requests for an order's first two calls, then captured
4000-503  503 for an order's first call, then captured
4000-402  402 card declined, always (the order ends in the dead-letter queue)
========  =============================================================================
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional
from urllib.parse import urlsplit

from .app import CATALOG_HOST, PAYMENTS_HOST

PRODUCTS: dict[str, dict[str, Any]] = {
    "p-100": {"name": "trail mug", "price": "12.50"},
    "p-200": {"name": "rain jacket", "price": "89.00"},
    "p-300": {"name": "head torch", "price": "24.90"},
    "p-400": {"name": "wool socks", "price": "9.99"},
}
CARDS = ("4242", "4000-slow", "4000-429", "4000-503", "4000-402")


class OutsideWorld:
    """State of the fake services: how often each order was charged (for the test cards)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()

    def answer(self, method: str, host: str, path: str, body: Any) -> tuple[int, Any]:
        if host == CATALOG_HOST and method == "GET" and path.startswith("/products/"):
            product = PRODUCTS.get(path.rsplit("/", 1)[-1])
            if product is None:
                return 404, {"error": "no such product"}
            return 200, {"product_id": path.rsplit("/", 1)[-1], **product}
        if host == PAYMENTS_HOST and method == "POST" and path == "/charges":
            return self.charge(body if isinstance(body, dict) else {})
        return 404, {"error": f"nothing at {method} http://{host}{path}"}

    def charge(self, request: dict[str, Any]) -> tuple[int, Any]:
        card, order_id = str(request.get("card", "")), str(request.get("order_id", ""))
        with self.lock:
            self.calls[order_id] += 1
            n = self.calls[order_id]
        if card == "4000-402":
            return 402, {"error": "card_declined", "order_id": order_id}
        if card == "4000-429" and n <= 2:
            return 429, {"error": "rate_limited", "retry_after_ms": 200}
        if card == "4000-503" and n == 1:
            return 503, {"error": "gateway_unavailable"}
        if card == "4000-slow":
            time.sleep(random.uniform(0.8, 1.5))
        elif card not in CARDS:
            return 402, {"error": "unknown_card"}
        return 200, {"payment_id": f"pay-{uuid.uuid4().hex[:12]}", "status": "captured", "order_id": order_id}


def _handler_class(world: OutsideWorld) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            parts = urlsplit(self.path)  # absolute form through the proxy; path only when called directly
            host = parts.hostname or (self.headers.get("host") or "").split(":")[0]
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            status, answer = world.answer(self.command, host, parts.path or "/", body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class OutsideServices:
    """The catalog and the payment gateway behind one egress proxy, served from a thread."""

    def __init__(self, port: int = 0) -> None:
        self.world = OutsideWorld()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _handler_class(self.world))
        self.server.daemon_threads = True
        self.thread: Optional[threading.Thread] = None

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> OutsideServices:
        self.thread = threading.Thread(target=self.server.serve_forever, name="outside-services", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
