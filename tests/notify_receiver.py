"""A real HTTP receiver on loopback that records what the collector's notifier sends it.

It plays a Slack incoming webhook, a generic webhook and GitHub's issue endpoints
(``POST /repos/O/R/issues`` answers 201 with a number; ``PATCH …/issues/N`` and
``POST …/issues/N/comments`` answer 200/201). ``answer`` makes it fail (``500``) and ``hold``
makes it hang until released, to play a failing or slow receiver; stopping it plays one that is down.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.conftest import free_port


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.calls: list[Call] = []
        self.answer = 200  # status for every call (200/201 where GitHub would say so)
        self.hold = threading.Event()  # while cleared and ``holding``: calls wait
        self.holding = False
        self.waiting = threading.Event()  # set when a call is being held
        self._lock = threading.Lock()
        self._issues = 0
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if receiver.holding:
                    receiver.waiting.set()
                    receiver.hold.wait(60)
                status, answer = receiver.answer, b"ok"
                if status < 300 and self.command == "POST" and re.fullmatch(r"/repos/[^/]+/[^/]+/issues", self.path):
                    with receiver._lock:
                        receiver._issues += 1
                        number = receiver._issues
                    status, answer = 201, json.dumps({"number": number}).encode()
                elif status < 300 and self.path.endswith("/comments"):
                    status, answer = 201, b"{}"
                with receiver._lock:
                    receiver.calls.append(Call(self.command, self.path, dict(self.headers.items()), body, status))
                self.send_response(status)
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_POST = _handle
            do_PATCH = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def ok_calls(self, path_prefix: str = "", method: str | None = None) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.status < 300 and c.path.startswith(path_prefix)
                    and (method is None or c.method == method)]  # fmt: skip

    def stop(self) -> None:
        self.hold.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
