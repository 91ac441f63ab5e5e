"""Lambda's part, played locally against a moto server: sandboxes and event sources.

- ``FunctionProcess``: one worker process per function (``worker``), with the environment Lambda
  gives it; invocations are serialised as in one sandbox, a hung one is killed at its timeout.
- ``ApiFront``: an HTTP server turning requests into API Gateway HTTP API (2.0) events.
- ``SqsSource``: polls a queue in batches of up to 10 (with a batching window), hands them to the
  function, deletes what succeeded and leaves the ``batchItemFailures`` to come back after the
  visibility timeout; SQS itself moves a message to the dead-letter queue after maxReceiveCount.
- ``StreamSource``: reads a DynamoDB stream's shards and hands their records over, in order,
  retrying a failed batch a few times.
- ``ScheduleSource``: a schedule's "Scheduled Event" every so many seconds.

SNS subscriptions to SQS are the emulator's (``app.provision`` subscribes the queues), as in AWS.
The runner's own AWS calls are not traced: only the functions are.
"""

from __future__ import annotations

import base64
import json
import os
import re
import select
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any, Callable, Optional
from urllib.parse import urlsplit

from . import app, events

READY_TIMEOUT_S = 120.0  # a cold start on a loaded laptop: importing boto3 and the SDK


@dataclass
class Outcome:
    """How one invocation ended: the handler's result, or Lambda's error document."""

    request_id: str
    result: Any = None
    error: Optional[dict[str, Any]] = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Stats:
    """Counts the progress line shows; updated from the event sources' threads."""

    invocations: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    api_requests: Counter[int] = field(default_factory=Counter)  # by status code
    deleted: Counter[str] = field(default_factory=Counter)  # messages done, by queue
    redelivered: Counter[str] = field(default_factory=Counter)  # batch item failures, by queue
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, counter: Counter[Any], key: Any, n: int = 1) -> None:
        with self.lock:
            counter[key] += n


def function_environment(
    spec: app.FunctionSpec, aws_endpoint: str, collector: str, extra: dict[str, str]
) -> dict[str, str]:
    """The environment Lambda would give the function, pointed at the emulator and the collector."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV", "SYSTEMROOT")
    env = {k: v for k, v in os.environ.items() if k in keep}
    stream = f"{datetime.now(timezone.utc):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
    env.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": stream,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_python{sys.version_info.major}.{sys.version_info.minor}",
            "_HANDLER": spec.handler,
            "AWS_REGION": app.REGION,
            "AWS_DEFAULT_REGION": app.REGION,
            # The emulator takes any credentials; the machine's real ones are never read.
            "AWS_ACCESS_KEY_ID": "demo",
            "AWS_SECRET_ACCESS_KEY": "demo",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ENDPOINT_URL": aws_endpoint,
            "NO_PROXY": "127.0.0.1,localhost",
            "OTEL_SERVICE_NAME": spec.name,
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector,
            # Twelve processes share this machine: give the end-of-invocation flush more room than
            # the 200 ms default, so a busy collector does not cost spans.
            "HOPTRACE_FLUSH_BUDGET_MS": "3000",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    env.update(spec.environment)
    return env


class FunctionProcess:
    """One function's sandbox: a worker process; ``invoke`` is serialised like one instance."""

    def __init__(self, spec: app.FunctionSpec, env: dict[str, str], log: IO[bytes], stats: Stats) -> None:
        self.spec = spec
        self.env = env
        self.log = log
        self.stats = stats
        self.lock = threading.Lock()
        self.proc: Optional[subprocess.Popen[bytes]] = None

    def start(self) -> FunctionProcess:
        """Start the worker process; its init phase runs now (``wait_ready`` waits for it, as Lambda does)."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hoptrace.demo.worker", self.spec.name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=self.env,
            start_new_session=True,  # Ctrl-C reaches the runner, which stops the workers itself
        )
        return self

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        reply = self._read(timeout_s)
        if not reply or not reply.get("ready"):
            self.kill()
            raise RuntimeError(f"function {self.spec.name} did not start (see its log): {reply}")

    def _read(self, timeout_s: float) -> Optional[dict[str, Any]]:
        proc = self.proc
        if proc is None or proc.stdout is None:
            return None
        ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
        if not ready:
            return None
        line = proc.stdout.readline()
        if not line:
            return None
        parsed: dict[str, Any] = json.loads(line)
        return parsed

    def invoke(self, event: dict[str, Any]) -> Outcome:
        """Run one invocation; a worker that dies or overruns its timeout is replaced (a new cold start)."""
        request_id = str(uuid.uuid4())
        with self.lock:
            self.stats.count(self.stats.invocations, self.spec.name)
            proc = self.proc
            reply: Optional[dict[str, Any]] = None
            if proc is not None and proc.stdin is not None and proc.poll() is None:
                request = {"request_id": request_id, "timeout_ms": self.spec.timeout_s * 1000, "event": event}
                try:
                    proc.stdin.write(json.dumps(request, default=str).encode() + b"\n")
                    proc.stdin.flush()
                    reply = self._read(self.spec.timeout_s + 2.0)
                except (BrokenPipeError, ValueError, OSError):
                    reply = None
            if reply is None:
                self.kill()
                self.stats.count(self.stats.errors, self.spec.name)
                if not self.stopping:
                    self.start().wait_ready()
                return Outcome(request_id, error={"errorType": "Sandbox.Timedout", "errorMessage": "Task timed out"})
        if "error" in reply:
            self.stats.count(self.stats.errors, self.spec.name)
            return Outcome(request_id, error=reply["error"])
        return Outcome(request_id, result=reply.get("result"))

    stopping = False

    def stop(self, timeout_s: float = 10.0) -> None:
        """Close stdin (the worker ends after the invocation in flight), then terminate, then kill."""
        self.stopping = True
        proc = self.proc
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class _Source(threading.Thread):
    """An event source's polling loop in a daemon thread, stopped through ``stop_event``."""

    def __init__(self, name: str, stop_event: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self.stop_event = stop_event
        self.failure: Optional[BaseException] = None

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.poll()
            except Exception as exc:  # the emulator went away while stopping, or a transient error
                if self.stop_event.is_set():
                    return
                self.failure = exc
                print(f"demo: {self.name}: {type(exc).__name__}: {exc}", file=sys.stderr)
                self.stop_event.wait(1.0)

    def poll(self) -> None:
        raise NotImplementedError


class SqsSource(_Source):
    """Lambda's SQS event source mapping, with ``ReportBatchItemFailures``."""

    def __init__(self, fn: FunctionProcess, sqs: Any, queue_url: str, queue_arn: str, stop_event: threading.Event):
        super().__init__(f"sqs:{fn.spec.trigger.source}", stop_event)
        self.fn, self.sqs, self.queue_url, self.queue_arn = fn, sqs, queue_url, queue_arn
        self.queue = fn.spec.trigger.source

    def receive(self, limit: int, wait_s: int) -> list[dict[str, Any]]:
        answer = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max(1, min(10, limit)),
            WaitTimeSeconds=wait_s,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages: list[dict[str, Any]] = answer.get("Messages", [])
        return messages

    def poll(self) -> None:
        trigger = self.fn.spec.trigger
        batch = self.receive(trigger.batch_size, 1)
        if not batch:
            return
        window_ends = time.monotonic() + trigger.batching_window_s
        while len(batch) < trigger.batch_size and time.monotonic() < window_ends and not self.stop_event.is_set():
            more = self.receive(trigger.batch_size - len(batch), 0)
            if more:
                batch += more
            else:
                time.sleep(0.1)
        outcome = self.fn.invoke(events.sqs_event(batch, self.queue_arn))
        if not outcome.ok:
            return  # the whole batch comes back after the visibility timeout
        failed: set[str] = set()
        result = outcome.result
        if isinstance(result, dict) and isinstance(result.get("batchItemFailures"), list):
            failed = {str(f.get("itemIdentifier")) for f in result["batchItemFailures"] if isinstance(f, dict)}
        done = [m for m in batch if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
        self.fn.stats.count(self.fn.stats.deleted, self.queue, len(done))
        if failed:
            self.fn.stats.count(self.fn.stats.redelivered, self.queue, len(batch) - len(done))


class StreamSource(_Source):
    """Lambda's DynamoDB stream event source mapping: shards read in order, a failed batch retried."""

    RETRIES = 2

    def __init__(self, fn: FunctionProcess, streams: Any, stream_arn: str, stop_event: threading.Event) -> None:
        super().__init__(f"stream:{fn.spec.trigger.source}", stop_event)
        self.fn, self.streams, self.stream_arn = fn, streams, stream_arn
        self.iterators: dict[str, Optional[str]] = {}

    def _discover(self) -> None:
        shards = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"].get("Shards", [])
        for shard in shards:
            if shard["ShardId"] not in self.iterators:
                answer = self.streams.get_shard_iterator(
                    StreamArn=self.stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
                )
                self.iterators[shard["ShardId"]] = answer["ShardIterator"]

    def poll(self) -> None:
        self._discover()
        got_any = False
        for shard_id, iterator in list(self.iterators.items()):
            if iterator is None:
                continue
            answer = self.streams.get_records(ShardIterator=iterator, Limit=self.fn.spec.trigger.batch_size)
            records = answer.get("Records", [])
            self.iterators[shard_id] = answer.get("NextShardIterator")
            if records:
                got_any = True
                event = events.stream_event(records, self.stream_arn)
                for _ in range(1 + self.RETRIES):
                    if self.fn.invoke(event).ok or self.stop_event.is_set():
                        break
        if not got_any:
            self.stop_event.wait(self.fn.spec.trigger.batching_window_s or 0.5)


class ScheduleSource(_Source):
    """An EventBridge schedule: the function's "Scheduled Event" every ``rate_s`` seconds."""

    def __init__(
        self, fn: FunctionProcess, stop_event: threading.Event, paused: threading.Event, first_after_s: float = 5.0
    ) -> None:
        super().__init__(f"schedule:{fn.spec.trigger.source}", stop_event)
        self.fn = fn
        self.paused = paused
        self.next_at = time.monotonic() + first_after_s

    def poll(self) -> None:
        wait_s = 1.0 if self.paused.is_set() else self.next_at - time.monotonic()
        if wait_s > 0:
            self.stop_event.wait(min(1.0, wait_s))
            return
        self.next_at = time.monotonic() + self.fn.spec.trigger.rate_s
        self.fn.invoke(events.scheduled_event(self.fn.spec.trigger.source))


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    route: str
    fn: FunctionProcess


def _route_pattern(route: str) -> re.Pattern[str]:
    regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(route))
    return re.compile(f"^{regex}$")


class ApiFront:
    """API Gateway (HTTP API): requests matched to a route become a 2.0 event for its function."""

    def __init__(self, functions: list[FunctionProcess], stats: Stats, port: int = 0) -> None:
        self.routes: list[Route] = []
        for fn in functions:
            if fn.spec.trigger.kind == "api":
                method, route = fn.spec.trigger.source.split(" ", 1)
                self.routes.append(Route(method, _route_pattern(route), route, fn))
        self.stats = stats
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self.server.daemon_threads = True
        self.thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def match(self, method: str, path: str) -> Optional[tuple[Route, dict[str, str]]]:
        for route in self.routes:
            found = route.pattern.match(path)
            if found and route.method == method:
                return route, found.groupdict()
        return None

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: Optional[str]
    ) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(target)
        matched = self.match(method, parts.path)
        if matched is None:
            return 404, {"content-type": "application/json"}, b'{"message":"Not Found"}'
        route, params = matched
        event = events.http_api_event(method, route.route, parts.path, params, headers, body, parts.query)
        outcome = route.fn.invoke(event)
        result = outcome.result
        if not outcome.ok or not isinstance(result, dict):
            return 500, {"content-type": "application/json"}, b'{"message":"Internal Server Error"}'
        status = int(result.get("statusCode", 200))
        out_headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
        raw = result.get("body") or ""
        data = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode()
        return status, out_headers, data

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length).decode() if length else None
                headers = {k: v for k, v in self.headers.items()}
                status, out_headers, data = front.handle(self.command, self.path, headers, body)
                front.stats.count(front.stats.api_requests, status)
                self.send_response(status)
                for k, v in out_headers.items():
                    if k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def start(self) -> ApiFront:
        self.thread = threading.Thread(target=self.server.serve_forever, name="api-front", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Runner:
    """Every function's sandbox and every event source of the shop, started and stopped together."""

    def __init__(
        self,
        resources: app.Resources,
        collector: str,
        egress_proxy: str,
        log_dir: Path,
        api_port: int = 0,
        schedules: bool = True,
        on_status: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.resources = resources
        self.collector = collector
        self.egress_proxy = egress_proxy
        self.log_dir = log_dir
        self.api_port = api_port
        self.schedules = schedules
        self.on_status = on_status
        self.stats = Stats()
        self.stop_event = threading.Event()
        self.schedules_off = threading.Event()  # set: schedules stop firing, the rest goes on
        self.functions: dict[str, FunctionProcess] = {}
        self.sources: list[_Source] = []
        self.api: Optional[ApiFront] = None
        self._logs: list[IO[bytes]] = []

    def start(self) -> Runner:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        extra = {**self.resources.environment(), "SHOP_EGRESS_PROXY": self.egress_proxy}
        for spec in app.FUNCTIONS:
            env = function_environment(spec, self.resources.endpoint, self.collector, extra)
            log = (self.log_dir / f"{spec.name}.log").open("ab")
            self._logs.append(log)
            self.functions[spec.name] = FunctionProcess(spec, env, log, self.stats).start()
        self.on_status(f"starting {len(self.functions)} function sandboxes (one process each)")
        for fn in self.functions.values():  # all start in parallel; wait for each init phase
            fn.wait_ready()
        sqs = app.aws_client("sqs", self.resources.endpoint)
        streams = app.aws_client("dynamodbstreams", self.resources.endpoint)
        for fn in self.functions.values():
            trigger = fn.spec.trigger
            if trigger.kind == "sqs":
                url, arn = self.resources.queue_urls[trigger.source], self.resources.queue_arns[trigger.source]
                self.sources.append(SqsSource(fn, sqs, url, arn, self.stop_event))
            elif trigger.kind == "stream":
                self.sources.append(StreamSource(fn, streams, self.resources.stream_arn, self.stop_event))
            elif trigger.kind == "schedule" and self.schedules:
                self.sources.append(ScheduleSource(fn, self.stop_event, self.schedules_off))
        for source in self.sources:
            source.start()
        self.api = ApiFront(list(self.functions.values()), self.stats, self.api_port).start()
        return self

    def stop(self) -> None:
        """Stop the API and the pollers, let invocations in flight finish, then end the sandboxes."""
        self.stop_event.set()
        if self.api is not None:
            self.api.stop()
        for source in self.sources:
            source.join(timeout=20)
        for fn in self.functions.values():
            fn.stopping = True
        for fn in self.functions.values():
            fn.stop()
        for log in self._logs:
            log.close()
