"""The collector's HTTP face: OTLP ingest at ``/v1/traces`` and the query API under ``/api/v1``."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, HTTPException, Request

from . import auth
from .config import CollectorConfig
from .graph_worker import GraphProcess
from .killed import KilledPass
from .notify import IssuePass, Notifier, NotifyConfig
from .store import SpanStore, open_store
from .writer import SpanWriter

logger = logging.getLogger("hoptrace.collector")
API = "/api/v1"
GRAPH_WATCH_S = 1.0  # how often the collector checks that its graph worker still runs


class Collector:
    """The running parts behind the app: store, writer, retention."""

    def __init__(self, config: CollectorConfig, store: SpanStore | None = None) -> None:
        self.config = config
        self.store = store or open_store(config.store_url)
        self.store.migrate()
        self.writer = SpanWriter(self.store, max_pending_spans=config.max_pending_spans)
        self.notifier = Notifier(self.store, NotifyConfig(
            public_url=config.public_url or f"http://{config.host}:{config.port}",
            backoff_s=config.notify_backoff_s, max_attempts=config.notify_attempts,
            timeout_s=config.notify_timeout_s))  # fmt: skip
        self.issues = IssuePass(self.store, self.notifier.wake, config.record_age_warn_s)
        self.killed = KilledPass(self.store, self.writer.submit, config.killed_grace_s, config.limits)
        self._stop = threading.Event()
        self._retention: threading.Thread | None = None
        # The graph pass in a process of its own (``graph_worker``) leaves this one's GIL to ingest.
        self._graph_process = config.graph_process and ":memory:" not in config.store_url
        self._graph_worker: GraphProcess | None = None
        self._graph_watch: threading.Thread | None = None
        if self._graph_process:
            self.store.graph_pass_external()
        default = self.store.project("default")
        self.default_project_id = default.id if default else 1

    def start(self) -> None:
        self.issues.start()
        self.notifier.start()
        self.killed.start()
        if self.config.retention_s:
            self._retention = threading.Thread(target=self._retain, name="hoptrace-retention", daemon=True)
            self._retention.start()
        if self._graph_process:
            self._graph_worker = GraphProcess(self.config.store_url)
            self._graph_watch = threading.Thread(target=self._watch_graph, name="hoptrace-graph-watch", daemon=True)
            self._graph_watch.start()

    def _watch_graph(self) -> None:
        """Start the graph worker again if it died (its backlog waits, queued, meanwhile)."""
        while not self._stop.wait(GRAPH_WATCH_S):
            worker = self._graph_worker
            if worker is not None and not worker.alive() and not self._stop.is_set():
                logger.error("the graph worker (pid %d) exited; starting it again", worker.pid)
                self._graph_worker = GraphProcess(self.config.store_url)

    def _retain(self) -> None:
        interval = min(3600.0, max(1.0, (self.config.retention_s or 0) / 24))
        while not self._stop.is_set():
            cutoff = time.time_ns() - int((self.config.retention_s or 0) * 1e9)
            try:
                deleted = self.store.delete_before(cutoff)
                if deleted:
                    logger.info("retention: deleted %d spans older than %s", deleted, cutoff)
            except Exception:
                logger.exception("retention pass failed")
            self._stop.wait(interval)

    def close(self, timeout_s: float = 30.0) -> bool:
        """Stop retention, commit everything the writer accepted, close the store.

        True when the writer drained; False when it did not finish in ``timeout_s`` (the store
        is then left open under it: closing it mid-commit could only make that commit fail).
        """
        self._stop.set()
        self.killed.stop()  # what it has not recorded stays announced in the store
        self.notifier.stop()
        self.issues.stop()  # what it has not counted stays queued in the store
        drained = self.writer.close(timeout_s)
        if self._graph_watch is not None:
            self._graph_watch.join(timeout_s)
        if self._graph_worker is not None:
            self._graph_worker.stop(timeout_s)  # what it has not derived stays queued for the next start
        if not drained:
            logger.error("the writer did not drain in time; spans accepted but not yet acknowledged may be lost")
            return False
        self.store.close()
        return True


def collector_of(request: Request) -> Collector:
    """The collector serving this request."""
    c: Collector = request.app.state.collector
    return c


def project_for(request: Request, kind: str) -> int:
    """The project a request may act on with its token (``ingest`` or ``read``); 401/403 otherwise.

    With no tokens configured the collector is open and everything is the default project.
    """
    c = collector_of(request)
    token = auth.token_from(request.headers, request.query_params if kind == "read" else None)
    if not c.store.has_tokens():
        return c.default_project_id
    grant = auth.grant_for(c.store, token)
    if grant is None:
        raise HTTPException(401, "a valid token is required (Authorization: Bearer <token>)")
    if grant.kind != kind:
        raise HTTPException(403, f"this is a {grant.kind} token; this call needs a {kind} token")
    return grant.project.id


def create_app(config: CollectorConfig | None = None, store: SpanStore | None = None) -> FastAPI:
    """The FastAPI app; the collector starts with it and drains what it accepted when it stops."""
    cfg = config or CollectorConfig.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        collector = Collector(cfg, store)
        collector.start()
        grpc_server = None
        if cfg.grpc_port is not None:
            from .grpc_ingest import start_grpc

            try:
                grpc_server = start_grpc(collector, cfg.host, cfg.grpc_port)
            except BaseException:
                await anyio.to_thread.run_sync(collector.close)
                raise
        app.state.collector = collector
        try:
            yield
        finally:
            # gRPC first: its calls in flight still need the writer to answer them.
            if grpc_server is not None:
                await anyio.to_thread.run_sync(grpc_server.stop, 10.0)
            # `hoptrace serve` reads this to exit non-zero when the drain failed.
            app.state.drained = await anyio.to_thread.run_sync(collector.close)

    app = FastAPI(
        title="hoptrace collector",
        version="1",
        description="OTLP trace ingest and the query API of hoptrace.",
        lifespan=lifespan,
    )

    from . import api, graph_api, health_api, ingest, issues_api, logs, top_api

    app.include_router(ingest.router)
    app.include_router(logs.router)
    app.include_router(api.router)
    app.include_router(graph_api.router)
    app.include_router(issues_api.router)
    app.include_router(health_api.router)
    app.include_router(top_api.router)

    @app.get("/healthz", tags=["ops"], summary="Liveness and the writer's backlog")
    def health(request: Request) -> dict[str, Any]:
        c = collector_of(request)
        return {"status": "ok", "pending_spans": c.writer.pending_spans}

    from hoptrace.ui.server import mount as mount_ui

    mount_ui(app)  # last: the UI's catch-all routes must not shadow the API
    return app
