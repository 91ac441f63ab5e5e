"""``hoptrace demo``: the emulator, the collector, the shop and its shoppers, started and stopped as one.

Everything listens on 127.0.0.1 and no AWS account is used: moto emulates AWS over HTTP, the
collector stores in SQLite, the runner plays Lambda (one process per function) and shoppers
arrive every few seconds until Ctrl-C, which stops every process the demo started.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Optional

from . import app
from .runner import Runner
from .services import OutsideServices
from .slack import SlackReceiver, subscribe
from .traffic import Traffic, Visit

Say = Callable[[str], None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited at start-up (status {proc.returncode})")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout_s:.0f} s")


def _end_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGTERM if the demo dies without stopping it (kill -9), so nothing is orphaned."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _stop(proc: Optional[subprocess.Popen[bytes]], timeout_s: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


class DemoStack:
    """moto, the collector, the outside services and the runner; ``with DemoStack(...) as stack``."""

    def __init__(
        self,
        port: int = 4318,
        store: Optional[str] = None,
        workdir: Optional[Path] = None,
        schedules: bool = True,
        say: Say = print,
    ) -> None:
        self.port = port
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="hoptrace-demo-"))
        self.store = store or f"sqlite:///{self.workdir / 'hoptrace-demo.db'}"
        self.schedules = schedules
        self.say = say
        self.moto: Optional[subprocess.Popen[bytes]] = None
        self.collector: Optional[subprocess.Popen[bytes]] = None
        self.services: Optional[OutsideServices] = None
        self.slack: Optional[SlackReceiver] = None
        self.runner: Optional[Runner] = None
        self.resources: Optional[app.Resources] = None
        self.aws_endpoint = ""

    @property
    def collector_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        assert self.runner is not None and self.runner.api is not None, "the stack is not started"
        return self.runner.api.url

    def _log(self, name: str) -> Any:
        return (self.workdir / f"{name}.log").open("ab")

    def start(self) -> DemoStack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
        if exe is None:
            raise RuntimeError("moto_server is missing: pip install 'hoptrace[demo]' (or run ./scripts/demo.sh)")
        self.say(f"collector: hoptrace serve on {self.collector_url} (store {self.store})")
        cmd = [sys.executable, "-m", "hoptrace.collector.cli", "serve", "--store", self.store, "--port", str(self.port)]
        with self._log("collector") as log:
            self.collector = subprocess.Popen([*cmd, "--log-level", "warning"], stdout=log, stderr=log,
                                              preexec_fn=_end_with_parent, start_new_session=True)  # fmt: skip
        moto_port = free_port()
        self.say(f"AWS emulator: moto_server on http://127.0.0.1:{moto_port}")
        with self._log("moto") as log:
            self.moto = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(moto_port)], stdout=log, stderr=log,
                                         preexec_fn=_end_with_parent, start_new_session=True)  # fmt: skip
        self.aws_endpoint = f"http://127.0.0.1:{moto_port}"
        _wait_for_port(moto_port, self.moto, "moto_server")
        self.resources = app.provision(self.aws_endpoint)
        self.say(
            f"AWS resources: tables {app.CART_TABLE}, {app.ORDERS_TABLE} (stream), {app.TOTALS_TABLE}; queues "
            f"{app.CHECKOUT_QUEUE} (DLQ {app.CHECKOUT_DLQ}), {app.NOTIFY_QUEUE}, {app.ANALYTICS_QUEUE} (raw); "
            f"topic {app.ORDER_TOPIC}"
        )
        try:
            _wait_for_port(self.port, self.collector, "the collector")
        except RuntimeError as exc:
            said = (self.workdir / "collector.log").read_text(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"{exc}: {' / '.join(said) or 'no output'}") from None
        self.slack = SlackReceiver(self.say).start()
        subscribe(self.collector_url, self.slack.url)
        self.say(f"Slack: new issues are posted to a local Slack webhook at {self.slack.url}")
        self.services = OutsideServices().start()
        self.runner = Runner(
            self.resources,
            self.collector_url,
            self.services.proxy_url,
            self.workdir / "functions",
            schedules=self.schedules,
            on_status=self.say,
        ).start()
        self.say(f"API Gateway (HTTP API): {self.runner.api.url if self.runner.api else '?'}")

    def stop(self) -> None:
        """Everything the demo started, in order: shoppers' target first, the collector last (it drains)."""
        if self.runner is not None:
            self.runner.stop()
        if self.services is not None:
            self.services.stop()
        _stop(self.moto, 10)
        _stop(self.collector, 40)
        if self.slack is not None:  # after the collector: its notifier may be posting as it drains
            self.slack.stop()

    def __enter__(self) -> DemoStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what the progress line and the tests read -------------------------------------------

    def queue_depth(self, queue: str) -> int:
        """Messages in a queue, visible or in flight (the emulator's approximate counts)."""
        assert self.resources is not None
        sqs = app.aws_client("sqs", self.aws_endpoint)
        got = sqs.get_queue_attributes(
            QueueUrl=self.resources.queue_urls[queue],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(got["ApproximateNumberOfMessages"]) + int(got["ApproximateNumberOfMessagesNotVisible"])

    def api_get(self, path: str) -> Any:
        with urllib.request.urlopen(self.collector_url + path, timeout=30) as answer:
            return json.loads(answer.read())


def _progress(stack: DemoStack, traffic: Traffic, started: float) -> str:
    assert stack.runner is not None
    stats = stack.runner.stats
    with stats.lock:
        calls = sum(stats.api_requests.values())
        failed_calls = sum(n for status, n in stats.api_requests.items() if status >= 400)
        invocations = sum(stats.invocations.values())
        errors = sum(stats.errors.values())
        retried = sum(stats.redelivered.values())
    orders = sum(1 for v in traffic.visits if v.order_id)
    parts = [
        f"[{time.monotonic() - started:5.0f}s] shoppers {len(traffic.visits)}",
        f"API calls {calls} ({failed_calls} failed)",
        f"orders {orders}",
        f"invocations {invocations} ({errors} failed)",
        f"redelivered {retried}",
        f"DLQ {stack.queue_depth(app.CHECKOUT_DLQ)}",
    ]
    try:
        the_map = stack.api_get("/api/v1/map")
        services = stack.api_get("/api/v1/services")
        spans = sum(int(s.get("spans", s.get("count", 0))) for s in services.get("services", []))
        parts.append(f"collector: {spans} spans, map {len(the_map['nodes'])} nodes / {len(the_map['edges'])} edges")
    except Exception as exc:
        parts.append(f"collector: not answering ({type(exc).__name__})")
    return " · ".join(parts)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="hoptrace demo", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=4318, help="the collector's port (UI and API; default 4318)")
    parser.add_argument("--store", default="sqlite:///hoptrace-demo.db", help="the collector's store (default "
                        "sqlite:///hoptrace-demo.db, emptied at start unless --keep-data)")  # fmt: skip
    parser.add_argument("--keep-data", action="store_true", help="keep the spans of earlier demo runs")
    parser.add_argument("--orders", type=int, default=0, help="stop sending shoppers after N (default: until Ctrl-C)")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between shoppers (default 2)")
    parser.add_argument("--seed", type=int, help="seed of the shoppers' choices (default: random)")
    parser.add_argument(
        "--exit", action="store_true", help="stop once the --orders are through (default: keep serving)"
    )


def _empty_sqlite(store: str, say: Say) -> None:
    if not store.startswith("sqlite:///"):
        return
    path = Path(store[len("sqlite:///") :])
    removed = False
    for suffix in ("", "-wal", "-shm"):
        candidate = Path(str(path) + suffix)
        if candidate.exists():
            candidate.unlink()
            removed = True
    if removed:
        say(f"emptied {path} (the spans of an earlier run; --keep-data keeps them)")


def run(args: argparse.Namespace) -> int:
    """The ``hoptrace demo`` command (see ``add_arguments``)."""

    def say(line: str) -> None:
        print(f"demo: {line}", flush=True)

    def on_term(signum: int, frame: Optional[FrameType]) -> None:
        raise KeyboardInterrupt  # kill (SIGTERM) stops as cleanly as Ctrl-C

    previous = signal.signal(signal.SIGTERM, on_term)
    if not args.keep_data:
        _empty_sqlite(args.store, say)
    stack = DemoStack(port=args.port, store=args.store, say=say)
    say(f"logs in {stack.workdir}")
    traffic: Optional[Traffic] = None
    try:
        stack.start()
        ui = stack.collector_url + "/"
        from hoptrace.ui.server import ui_dir

        if not (ui_dir() / "index.html").exists():
            say("the web UI is not built: run ./scripts/ensure-ui.sh (the API works without it)")

        def on_visit(v: Visit) -> None:
            if v.order_id and v.shopper.card != "4242":
                say(f"{v.shopper.customer} checked out {v.order_id} with test card {v.shopper.card}")

        traffic = Traffic(stack.api_url, count=args.orders or None, interval_s=args.interval, seed=args.seed,
                          on_visit=on_visit)  # fmt: skip
        traffic.start()
        say(f"shoppers arriving every {args.interval:g} s; the map fills in within a minute")
        say(f"open the UI: {ui}   (API docs: {stack.collector_url}/docs) — Ctrl-C stops everything")
        started = time.monotonic()
        while True:
            time.sleep(5)
            say(_progress(stack, traffic, started))
            if args.exit and not traffic.is_alive() and stack.queue_depth(app.CHECKOUT_QUEUE) == 0:
                time.sleep(5)  # the fan-out and the stream finish behind the checkout queue
                say(_progress(stack, traffic, started))
                break
    except KeyboardInterrupt:
        say("stopping (Ctrl-C) ...")
    except RuntimeError as exc:
        print(f"hoptrace demo: {exc}", file=sys.stderr)
        stack.stop()
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)
    # Ctrl-C once more while stopping would leave children behind: ignore it until they are gone.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if traffic is not None:
        traffic.stop()
    stack.stop()
    say(f"stopped; the spans stay in {args.store} (hoptrace serve --store {args.store} to look again)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
