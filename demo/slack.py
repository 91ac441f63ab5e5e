"""A Slack incoming webhook played on loopback, so the demo shows what its team would be told.

The demo points a ``slack`` notification channel of the collector at this receiver, with a rule
that notifies an issue's first occurrence (and a regression) and then every 25th in an hour. Each
message it receives is kept (``messages``) and its headline said on the console, with the link
back to the issue in the UI, as Slack would show it.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional

Say = Callable[[str], None]

CHANNEL = "demo Slack (local receiver)"
RULE = {"name": "demo: new issues, then every 25th in an hour", "threshold": 25, "interval": 25, "bucket": "hour"}


class SlackReceiver:
    """An HTTP server on 127.0.0.1 taking Slack webhook posts (JSON with ``text`` and ``blocks``)."""

    def __init__(self, say: Say, port: int = 0) -> None:
        self.say = say
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/services/demo"

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                try:
                    message = json.loads(self.rfile.read(size))
                    if not isinstance(message, dict) or not isinstance(message.get("blocks"), list):
                        raise ValueError("no blocks")
                except ValueError:
                    self.send_response(400)  # as Slack answers a payload it cannot read
                    self.end_headers()
                    self.wfile.write(b"invalid_payload")
                    return
                receiver.received(message)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def received(self, message: dict[str, Any]) -> None:
        with self._lock:
            self.messages.append(message)
        self.say(f"Slack: {message.get('text', '')}")

    def start(self) -> SlackReceiver:
        self._thread = threading.Thread(target=self._server.serve_forever, name="demo-slack", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def subscribe(collector_url: str, webhook_url: str) -> int:
    """Create the demo's Slack channel and its rule on the collector (open on loopback); the channel's id."""

    def call(method: str, path: str, body: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(collector_url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as answer:
            found: dict[str, Any] = json.load(answer)
            return found

    # A store kept from an earlier run (--keep-data) has the channel: point it at this receiver.
    for channel in call("GET", "/api/v1/channels")["channels"]:
        if channel["name"] == CHANNEL and channel["type"] == "slack":
            call("PATCH", f"/api/v1/channels/{channel['id']}", {"url": webhook_url})
            return int(channel["id"])
    created = call("POST", "/api/v1/channels", {"name": CHANNEL, "type": "slack", "url": webhook_url})
    call("POST", "/api/v1/rules", {**RULE, "channel_id": created["id"]})
    return int(created["id"])
