"""The ``hoptrace`` command: ``serve`` the collector, manage ``project``s, ``bench populate`` a store, ``bench run``.

Start-up problems (bad store URL, unreachable database, port in use, open access on a public
address) end with one clear line and exit status 2, not a traceback.
"""

from __future__ import annotations

import argparse
import ipaddress
import secrets
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any

from .config import DEFAULT_STORE, GRAPH_PASSES, CollectorConfig, graph_pass_setting, parse_duration
from .otlp import Limits


def _missing_server_extra(exc: ImportError) -> int:
    print(
        f"hoptrace: the collector needs the server extra ({exc.name} is missing): pip install 'hoptrace[server]'",
        file=sys.stderr,
    )
    return 2


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_port(host: str, port: int, flag: str = "--port") -> str | None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            return f"cannot listen on {host}:{port}: {exc.strerror or exc} (is another collector running? use {flag})"
    return None


def serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from .app import create_app
        from .store import StoreError, open_store
    except ImportError as exc:
        return _missing_server_extra(exc)
    env = CollectorConfig.from_env()
    config = CollectorConfig(
        store_url=args.store or env.store_url,
        host=args.host or env.host,
        port=args.port if args.port is not None else env.port,
        limits=Limits(
            max_body_bytes=args.max_body_bytes or env.limits.max_body_bytes,
            max_spans=args.max_spans or env.limits.max_spans,
            max_attribute_bytes=env.limits.max_attribute_bytes,
        ),
        retention_s=parse_duration(args.retention) if args.retention else env.retention_s,
        max_pending_spans=args.max_pending_spans or env.max_pending_spans,
        allow_open=args.allow_open,
        grpc_port=args.grpc_port if args.grpc_port is not None else env.grpc_port,
        public_url=args.public_url or env.public_url,
        notify_backoff_s=env.notify_backoff_s,
        notify_attempts=env.notify_attempts,
        notify_timeout_s=env.notify_timeout_s,
        record_age_warn_s=env.record_age_warn_s,
        graph_process=(args.graph_pass or graph_pass_setting() or "process") == "process",
        killed_grace_s=parse_duration(args.killed_grace) if args.killed_grace else env.killed_grace_s,
    )
    if config.grpc_port is not None:
        from .grpc_ingest import GrpcIngestError, require_grpc

        try:
            require_grpc()
        except GrpcIngestError as exc:
            print(f"hoptrace: --grpc-port: {exc}", file=sys.stderr)
            return 2
        if config.grpc_port == config.port:
            print(f"hoptrace: --grpc-port and --port are both {config.port}; give gRPC its own port", file=sys.stderr)
            return 2
    try:
        store = open_store(config.store_url)
        store.migrate()
    except StoreError as exc:
        print(f"hoptrace: {exc}", file=sys.stderr)
        return 2
    if not store.has_tokens() and not _is_loopback(config.host) and not config.allow_open:
        store.close()
        print(
            f"hoptrace: refusing to listen on {config.host} with no tokens: anyone could read and write traces. "
            "Create a project first (hoptrace project create NAME) or pass --allow-open.",
            file=sys.stderr,
        )
        return 2
    problem = _check_port(config.host, config.port)
    if not problem and config.grpc_port is not None:
        problem = _check_port(config.host, config.grpc_port, flag="--grpc-port")
    if problem:
        store.close()
        print(f"hoptrace: {problem}", file=sys.stderr)
        return 2
    app = create_app(config, store)
    print(f"hoptrace collector on http://{config.host}:{config.port} (store {config.store_url})", flush=True)
    print(f"  send OTLP/HTTP to http://{config.host}:{config.port}/v1/traces; API docs at /docs", flush=True)
    if config.grpc_port is not None:
        print(f"  send OTLP/gRPC to {config.host}:{config.grpc_port}", flush=True)
    # No access log (one line per export batch is noise at thousands a second); httptools' parser
    # when installed (the server extra brings it), which costs a fraction of h11's per request.
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_level=args.log_level,
            access_log=args.log_level == "debug",
            timeout_graceful_shutdown=30,
        )
    )
    _run_until_stopped(server)
    if not server.started:
        print("hoptrace: the collector did not start (see the error above)", file=sys.stderr)
        return 2
    return 0 if getattr(app.state, "drained", True) else 1


def _run_until_stopped(server: Any) -> None:
    """Serve until SIGTERM or SIGINT, then let uvicorn finish the requests in flight and drain.

    uvicorn re-raises the stop signal once its graceful shutdown is over, to the handler that
    was in place before it: the default one would end the process *by* SIGTERM after a clean
    drain, indistinguishable from a kill. Ours hands the signal to uvicorn instead (which is
    also what stops a collector signalled before uvicorn took over), so a clean stop exits 0.
    """
    previous = {sig: signal.signal(sig, server.handle_exit) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def project(args: argparse.Namespace) -> int:
    try:
        from .auth import add_token, create_project
        from .store import StoreError, open_store
    except ImportError as exc:
        return _missing_server_extra(exc)
    try:
        store = open_store(args.store or CollectorConfig.from_env().store_url)
        store.migrate()
        created, ingest, read = create_project(store, args.name)
        admin = add_token(store, created.id, "admin")
    except StoreError as exc:
        print(f"hoptrace: {exc}", file=sys.stderr)
        return 2
    store.close()
    print(f"project {created.name!r} created (id {created.id}). Keep these tokens: they are shown only once.")
    print(f"  ingest token: {ingest}")
    print(f"  read token:   {read}")
    print(f"  admin token:  {admin}  (notification rules and channels)")
    print(f"  instrumented functions: OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer%20{ingest}")
    return 0


def project_token(args: argparse.Namespace) -> int:
    """A new token of a kind for an existing project (e.g. an admin token for rules and channels)."""
    try:
        from .auth import add_token
        from .store import StoreError, open_store
    except ImportError as exc:
        return _missing_server_extra(exc)
    try:
        store = open_store(args.store or CollectorConfig.from_env().store_url)
        store.migrate()
        found = store.project(args.name)
        if found is None:
            store.close()
            print(f"hoptrace: no project named {args.name!r} (hoptrace project create NAME)", file=sys.stderr)
            return 2
        token = add_token(store, found.id, args.kind)
    except StoreError as exc:
        print(f"hoptrace: {exc}", file=sys.stderr)
        return 2
    store.close()
    print(f"{args.kind} token of project {found.name!r} (shown only once): {token}")
    return 0


def bench_populate(args: argparse.Namespace) -> int:
    """Fill a store with the benchmarks' span mix (``collector.populate``) through its own write path."""
    try:
        from .populate import Progress, SpanMix, customer_id, order_id, populate, traces_holding
        from .store import StoreError, open_store
    except ImportError as exc:
        return _missing_server_extra(exc)
    if args.spans < 1 or args.days <= 0 or args.batch_spans < 1:
        print("hoptrace: --spans and --batch-spans must be at least 1 and --days above 0", file=sys.stderr)
        return 2
    try:
        store = open_store(args.store or CollectorConfig.from_env().store_url)
        store.migrate()
        found = store.project(args.project)
        project_id = found.id if found else store.create_project(args.project).id
    except StoreError as exc:
        print(f"hoptrace: {exc}", file=sys.stderr)
        return 2
    if args.resume and args.seed is None:
        store.close()
        print("hoptrace: --resume needs the --seed of the interrupted run", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else secrets.randbits(31)
    mix = SpanMix.for_spans(args.spans, seed, args.days)
    progress = Progress(total=mix.spans)
    first = 0
    if args.resume:
        held = store.count_spans(project_id)
        found_traces = traces_holding(held)
        if found_traces is None or held > mix.spans:
            store.close()
            print(f"hoptrace: cannot resume: the project's {held:,} spans are not the first traces of this mix "
                  f"(--spans {args.spans} --seed {seed})", file=sys.stderr)  # fmt: skip
            return 2
        first = found_traces
        progress.add(held)
    try:
        written = populate(store, project_id, mix, batch_spans=args.batch_spans, on_batch=progress.add, first=first)
        behind = store.graph_backlog()
        if behind:
            print(f"populate: deriving the graph of the last {behind:,} spans (hops, transactions, map)",
                  file=sys.stderr, flush=True)  # fmt: skip
            store.graph_sync()
    except StoreError as exc:
        print(f"hoptrace: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    print(
        f"wrote {written} spans in {mix.traces} traces to project {args.project!r} (seed {seed});"
        f" search e.g. label.customer_id={customer_id(0)} or label.order_id={order_id(seed, 0)}"
    )
    return 0


def demo(args: argparse.Namespace) -> int:
    """The demo shop on emulated AWS (``hoptrace.demo.stack``); needs the demo extra."""
    try:
        from hoptrace.demo.stack import run
    except ImportError as exc:
        print(f"hoptrace: the demo needs the demo extra ({exc.name} is missing): pip install 'hoptrace[demo]'",
              file=sys.stderr)  # fmt: skip
        return 2
    return run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hoptrace", description="hoptrace: traces and service maps for serverless")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the collector (OTLP ingest, query API, UI)")
    s.add_argument("--store", help=f"store URL (default {DEFAULT_STORE}; env HOPTRACE_STORE)")
    s.add_argument("--host", help="address to listen on (default 127.0.0.1; env HOPTRACE_HOST)")
    s.add_argument("--port", type=int, help="port (default 4318; env HOPTRACE_PORT)")
    s.add_argument("--retention", help="delete spans older than this, e.g. 7d (env HOPTRACE_RETENTION)")
    s.add_argument("--max-body-bytes", type=int, help="largest uncompressed request (default 5 MB)")
    s.add_argument("--max-spans", type=int, help="most spans per request (default 10000)")
    s.add_argument(
        "--max-pending-spans",
        type=int,
        help="backlog of accepted, uncommitted spans past which requests get 503"
        " (default 100000; env HOPTRACE_MAX_PENDING_SPANS)",
    )
    s.add_argument(
        "--grpc-port", type=int, help="also take OTLP/gRPC on this port, e.g. 4317 (grpc extra; env HOPTRACE_GRPC_PORT)"
    )
    s.add_argument(
        "--public-url",
        help="the collector's address as users reach it, for links in notifications"
        " (default http://HOST:PORT; env HOPTRACE_PUBLIC_URL)",
    )
    s.add_argument(
        "--graph-pass",
        choices=GRAPH_PASSES,
        help="derive hops, transactions and the map in a child process (default: ingest keeps this one's core)"
        " or in a thread of the collector (env HOPTRACE_GRAPH_PASS)",
    )
    s.add_argument(
        "--killed-grace",
        help="an invocation announced but not ended this long after its deadline is recorded killed"
        " (default 10s; env HOPTRACE_KILLED_GRACE)",
    )
    s.add_argument("--allow-open", action="store_true", help="serve without tokens on a non-loopback address")
    s.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    s.set_defaults(func=serve)
    p = sub.add_parser("project", help="manage projects")
    psub = p.add_subparsers(dest="action", required=True)
    c = psub.add_parser("create", help="create a project and print its ingest and read tokens")
    c.add_argument("name")
    c.add_argument("--store", help="store URL (default from HOPTRACE_STORE or sqlite:///hoptrace.db)")
    c.set_defaults(func=project)
    t = psub.add_parser("token", help="add a token to a project (admin: notification rules and channels)")
    t.add_argument("name")
    t.add_argument("--kind", choices=["ingest", "read", "admin"], required=True)
    t.add_argument("--store", help="store URL (default from HOPTRACE_STORE or sqlite:///hoptrace.db)")
    t.set_defaults(func=project_token)
    b = sub.add_parser("bench", help="benchmark helpers")
    bsub = b.add_subparsers(dest="action", required=True)
    pop = bsub.add_parser(
        "populate",
        help="fill a store with a realistic serverless span mix (progress on stderr)",
        description="Write N spans of Lambda invocations and AWS SDK calls (orders through API, SQS and "
        "workers; ~15 attributes, hoptrace.label.order_id/customer_id/tier labels) through the store's own "
        "write path, in traces spread over the last D days.",
    )
    pop.add_argument("--store", help="store URL (default from HOPTRACE_STORE or sqlite:///hoptrace.db)")
    pop.add_argument("--spans", type=int, required=True, help="how many spans to write (about; whole traces)")
    pop.add_argument("--project", default="default", help="project to write to (created if missing; default: default)")
    pop.add_argument("--days", type=float, default=1.0, help="time window the traces are spread over (default 1)")
    pop.add_argument("--seed", type=int, help="seed of the generated ids and labels (default: random)")
    pop.add_argument("--batch-spans", type=int, default=10_000, help="spans per store transaction (default 10000)")
    pop.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run (same --spans and --seed): skip the traces the project holds",
    )
    pop.set_defaults(func=bench_populate)
    run = bsub.add_parser(
        "run",
        help="run the benchmark suite (python -m bench; needs a source checkout)",
        description="The same as `python -m bench ARGS` in the repository this hoptrace is installed from "
        "(editable install): e.g. `hoptrace bench run all --quick`. Options after `run` go to it as they are.",
    )
    run.add_argument("bench_args", nargs=argparse.REMAINDER, help="groups and options of python -m bench")
    run.set_defaults(func=bench_run)
    d = sub.add_parser(
        "demo",
        help="run a serverless shopping cart on emulated AWS, traced into a local collector (Ctrl-C stops it)",
    )
    try:
        from hoptrace.demo.stack import add_arguments
    except ImportError:
        pass  # `hoptrace demo` then says which extra is missing
    else:
        add_arguments(d)
    d.set_defaults(func=demo)
    return parser


def bench_run(args: argparse.Namespace) -> int:
    """``python -m bench`` from the checkout: the benchmarks are not part of the installed package."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    if not (root / "bench" / "__main__.py").is_file():
        print("hoptrace: `bench run` needs a source checkout (pip install -e '.[bench]'): the benchmarks are not "
              "part of the installed package", file=sys.stderr)  # fmt: skip
        return 2
    return subprocess.run([sys.executable, "-m", "bench", *args.bench_args], cwd=root, check=False).returncode


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
