"""``python -m bench.collector.floor JSON``: the ingest floor, in a process of its own.

The least any collector must do with the same request bodies: decode the protobuf, take each
span's indexed columns and bytes, and insert those rows into the same kind of store, batched
and durable — SQLite ``executemany`` in one transaction per batch (WAL, ``synchronous=FULL``, as
the store runs), PostgreSQL binary ``COPY`` in one transaction per batch. Same schema (the
store's own migrations), no search terms, no graph facts, no HTTP. Prints one JSON line.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.collector import bodies as bodies_file
from hoptrace.collector.store import open_store

Row = tuple[Any, ...]
PROJECT = 1


def decode(body: bytes) -> tuple[list[Row], list[Row]]:
    """Resource rows and span rows of one request body (the spans table's columns)."""
    request = ExportTraceServiceRequest.FromString(body)
    resources: list[Row] = []
    spans: list[Row] = []
    for rs in request.resource_spans:
        resource = rs.resource.SerializeToString(deterministic=True)
        key = hashlib.blake2b(resource, digest_size=16).digest()
        service = next((kv.value.string_value for kv in rs.resource.attributes if kv.key == "service.name"), "")
        resources.append((PROJECT, key, service, resource))
        for ss in rs.scope_spans:
            for s in ss.spans:
                start, end = s.start_time_unix_nano, s.end_time_unix_nano
                spans.append((PROJECT, s.trace_id, s.span_id, s.parent_span_id or None, key, service, s.name,
                              s.kind, start, end, end - start, s.status.code, s.SerializeToString()))  # fmt: skip
    return resources, spans


class SqliteInsert:
    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")

    def write(self, resources: list[Row], spans: list[Row]) -> None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT OR IGNORE INTO resources (project_id, key, service_name, data) VALUES (?, ?, ?, ?)",
                         resources)  # fmt: skip
        conn.executemany(
            "INSERT INTO spans (project_id, trace_id, span_id, parent_span_id, resource_key, service_name, name,"
            " kind, start_ns, end_ns, duration_ns, status, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            spans,
        )
        conn.execute("COMMIT")


class PostgresCopy:
    _TYPES = ["int4", "bytea", "bytea", "bytea", "bytea", "text", "text", "int2", "int8", "int8", "int8", "int2",
              "bytea"]  # fmt: skip

    def __init__(self, url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url)

    def write(self, resources: list[Row], spans: list[Row]) -> None:
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO resources (project_id, key, service_name, data) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                resources,
            )
            with cur.copy(
                "COPY spans (project_id, trace_id, span_id, parent_span_id, resource_key, service_name, name, kind,"
                " start_ns, end_ns, duration_ns, status, data) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(self._TYPES)
                for row in spans:
                    copy.write_row(row)


def run(payload: dict[str, Any]) -> dict[str, Any]:
    url: str = payload["store"]
    store = open_store(url)  # the store's own schema and indexes
    store.migrate()
    store.close()
    writer: SqliteInsert | PostgresCopy
    writer = SqliteInsert(url.split(":///", 1)[1]) if url.startswith("sqlite:") else PostgresCopy(url)
    loaded = bodies_file.load(Path(payload["bodies"]))[payload["first"] :]
    per_batch = max(1, int(payload["bodies_per_batch"]))
    deadline = time.monotonic() + float(payload["budget_s"])
    spans = decode_s = insert_s = 0.0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(0, len(loaded), per_batch):
        t0 = time.perf_counter()
        resources: list[Row] = []
        rows: list[Row] = []
        for body, _ in loaded[i : i + per_batch]:
            more_resources, more_rows = decode(body)
            resources += more_resources
            rows += more_rows
        t1 = time.perf_counter()
        writer.write(resources, rows)
        insert_s += time.perf_counter() - t1
        decode_s += t1 - t0
        spans += len(rows)
        if time.monotonic() > deadline:
            break
    wall = time.perf_counter() - wall0
    return {
        "spans": int(spans),
        "seconds": wall,
        "cpu_seconds": time.process_time() - cpu0,
        "decode_seconds": decode_s,
        "insert_seconds": insert_s,
    }


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.argv[1]))), flush=True)
