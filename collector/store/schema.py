"""The schema, as forward-only migrations shared by both backends.

Each migration is a list of statements written in the SQL both SQLite and PostgreSQL accept;
``BLOB`` is spelled per backend through ``{blob}``. A database records the version it has
reached and only ever moves forward.
"""

from __future__ import annotations

from .issues_schema import (
    DIGEST_MIGRATION,
    HEALTH_MIGRATION,
    HEALTH_ROLLUP_MIGRATION,
    ISSUES_MIGRATION,
    ISSUES_RETENTION,
    RAISED_MIGRATION,
)
from .killed_sql import MIGRATION as INVOCATION_STARTS_MIGRATION
from .killed_sql import RETENTION as INVOCATION_STARTS_RETENTION
from .logs_sql import LOGS_MIGRATION, LOGS_RETENTION
from .terms_sql import TERMS_MIGRATION

# Per-minute (and per-hour) metrics of a map node or edge: counts, health shares and the
# mergeable latency and dwell sketches (hoptrace.graph.sketch), keyed by project, time and id.
_NODE_KEY = ("node",)
_EDGE_KEY = ("source", "target", "kind")


def _rollup_table(name: str, key: tuple[str, ...]) -> str:
    keys = "".join(f"{k} TEXT NOT NULL, " for k in key)
    return (
        f"CREATE TABLE {name} (project_id INTEGER NOT NULL, minute BIGINT NOT NULL, {keys}"
        "count BIGINT NOT NULL, errors BIGINT NOT NULL, throttles BIGINT NOT NULL, ok BIGINT NOT NULL,"
        " client_errors BIGINT NOT NULL, faults BIGINT NOT NULL, latency {blob} NOT NULL, dwell {blob} NOT NULL,"
        f" PRIMARY KEY (project_id, minute, {', '.join(key)}))"
    )


MIGRATIONS: list[list[str]] = [
    # 1: projects, tokens, spans with their resources, the search index and links.
    [
        """CREATE TABLE projects (
            id {serial} PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            created_ns BIGINT NOT NULL
        )""",
        """CREATE TABLE tokens (
            token_hash TEXT PRIMARY KEY,
            project_id INTEGER NOT NULL REFERENCES projects (id),
            kind TEXT NOT NULL CHECK (kind IN ('ingest', 'read')),
            created_ns BIGINT NOT NULL
        )""",
        """CREATE TABLE resources (
            project_id INTEGER NOT NULL,
            key {blob} NOT NULL,
            service_name TEXT NOT NULL,
            data {blob} NOT NULL,
            PRIMARY KEY (project_id, key)
        )""",
        """CREATE TABLE spans (
            project_id INTEGER NOT NULL,
            trace_id {blob} NOT NULL,
            span_id {blob} NOT NULL,
            parent_span_id {blob},
            resource_key {blob} NOT NULL,
            service_name TEXT NOT NULL,
            name TEXT NOT NULL,
            kind SMALLINT NOT NULL,
            start_ns BIGINT NOT NULL,
            end_ns BIGINT NOT NULL,
            duration_ns BIGINT NOT NULL,
            status SMALLINT NOT NULL,
            data {blob} NOT NULL
        )""",
        "CREATE INDEX spans_by_trace ON spans (project_id, trace_id)",
        "CREATE INDEX spans_by_start ON spans (project_id, start_ns)",
        "CREATE INDEX spans_by_service ON spans (project_id, service_name, start_ns)",
        """CREATE TABLE span_terms (
            project_id INTEGER NOT NULL,
            value TEXT NOT NULL,
            key TEXT NOT NULL,
            trace_id {blob} NOT NULL,
            span_id {blob} NOT NULL,
            start_ns BIGINT NOT NULL
        )""",
        "CREATE INDEX span_terms_by_value ON span_terms (project_id, value, key)",
        "CREATE INDEX span_terms_by_start ON span_terms (start_ns)",
        """CREATE TABLE span_links (
            project_id INTEGER NOT NULL,
            trace_id {blob} NOT NULL,
            span_id {blob} NOT NULL,
            linked_trace_id {blob} NOT NULL,
            linked_span_id {blob} NOT NULL,
            start_ns BIGINT NOT NULL
        )""",
        "CREATE INDEX span_links_by_linked ON span_links (project_id, linked_trace_id, linked_span_id)",
        "CREATE INDEX span_links_by_trace ON span_links (project_id, trace_id)",
    ],
    # 2: what the graph keeps (hoptrace.graph).
    [
        # Hop keys of every span, both sides, kept until retention: the other side may come
        # an hour later or after a restart. Matching is an index lookup on (project, key).
        """CREATE TABLE hop_keys (
            project_id INTEGER NOT NULL,
            key TEXT NOT NULL,
            side TEXT NOT NULL,
            via TEXT NOT NULL,
            trace_id {blob} NOT NULL,
            span_id {blob} NOT NULL,
            service TEXT NOT NULL,
            kind SMALLINT NOT NULL,
            start_ns BIGINT NOT NULL,
            end_ns BIGINT NOT NULL,
            detail TEXT NOT NULL,
            edge TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            joined SMALLINT NOT NULL
        )""",
        "CREATE INDEX hop_keys_by_key ON hop_keys (project_id, key)",
        "CREATE INDEX hop_keys_by_start ON hop_keys (start_ns)",
        """CREATE TABLE hops (
            project_id INTEGER NOT NULL,
            from_trace {blob} NOT NULL,
            from_span {blob} NOT NULL,
            to_trace {blob} NOT NULL,
            to_span {blob} NOT NULL,
            via TEXT NOT NULL,
            dwell_ms DOUBLE PRECISION,
            skew SMALLINT NOT NULL,
            start_ns BIGINT NOT NULL,
            edge TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            PRIMARY KEY (project_id, from_trace, from_span, to_trace, to_span)
        )""",
        "CREATE INDEX hops_by_to ON hops (project_id, to_trace)",
        "CREATE INDEX hops_by_start ON hops (start_ns)",
        """CREATE TABLE trace_facts (
            project_id INTEGER NOT NULL,
            trace_id {blob} NOT NULL,
            start_ns BIGINT NOT NULL,
            facts TEXT NOT NULL,
            PRIMARY KEY (project_id, trace_id)
        )""",
        "CREATE INDEX trace_facts_by_start ON trace_facts (start_ns)",
        # trace -> transaction; a trace may belong to several (a batch consumer).
        """CREATE TABLE transaction_members (
            project_id INTEGER NOT NULL,
            transaction_id {blob} NOT NULL,
            trace_id {blob} NOT NULL,
            PRIMARY KEY (project_id, transaction_id, trace_id)
        )""",
        "CREATE INDEX transaction_members_by_trace ON transaction_members (project_id, trace_id)",
        """CREATE TABLE transactions (
            project_id INTEGER NOT NULL,
            id {blob} NOT NULL,
            start_ns BIGINT NOT NULL,
            end_ns BIGINT NOT NULL,
            duration_ns BIGINT NOT NULL,
            errors INTEGER NOT NULL,
            incomplete SMALLINT NOT NULL,
            hops INTEGER NOT NULL,
            summary TEXT NOT NULL,
            PRIMARY KEY (project_id, id)
        )""",
        "CREATE INDEX transactions_by_start ON transactions (project_id, start_ns)",
        # Searchable values of a transaction: its services and resources.
        """CREATE TABLE transaction_terms (
            project_id INTEGER NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            transaction_id {blob} NOT NULL
        )""",
        "CREATE INDEX transaction_terms_by_value ON transaction_terms (project_id, key, value)",
        "CREATE INDEX transaction_terms_by_transaction ON transaction_terms (project_id, transaction_id)",
        _rollup_table("node_rollups", _NODE_KEY),
        _rollup_table("edge_rollups", _EDGE_KEY),
    ],
    # 3: the graph's backlog. Ingest queues each batch's span ids in the same transaction as the
    # spans; a background pass derives their graph facts and deletes the row, in one transaction:
    # nothing acknowledged escapes the graph, and ingest does not wait for it.
    [
        """CREATE TABLE graph_backlog (
            id {serial} PRIMARY KEY,
            project_id INTEGER NOT NULL,
            spans {blob} NOT NULL
        )""",
    ],
    # 4: hourly rollups beside the minutes (``minute`` holds the hour's first minute), so a day's
    # map merges ~24 rows per node and edge instead of 1,440.
    [
        _rollup_table("node_rollups_hourly", _NODE_KEY),
        _rollup_table("edge_rollups_hourly", _EDGE_KEY),
        # Hours written before this migration are filled from their minutes by the stores'
        # migrate() (graph_sql.backfill_hourly): merging sketches needs Python, not SQL.
    ],
    # 5: cold starts and timeouts of function nodes beside the other counters (0 on edges and on
    # minutes written before), so the functions list and the map read them from rollups too.
    [
        f"ALTER TABLE {table} ADD COLUMN {column} BIGINT NOT NULL DEFAULT 0"
        for table in ("node_rollups", "edge_rollups", "node_rollups_hourly", "edge_rollups_hourly")
        for column in ("cold_starts", "timeouts")
    ]
    # The transaction search sorted by duration, page by page.
    + ["CREATE INDEX transactions_by_duration ON transactions (project_id, duration_ns)"],
    # 6: search by a term, newest first, reads only the page it returns. The old index ended at
    # the key, so a value a third of all spans hold (``label.tier=gold``) was sorted whole before
    # its first 50 came out (2 s at a million spans); this one hands them over in order.
    [
        "CREATE INDEX span_terms_by_value_start ON span_terms (project_id, value, key, start_ns, span_id, trace_id)",
        "DROP INDEX span_terms_by_value",
    ],
    # 7: issues and notifications (collector/store/issues_sql.py), and admin tokens.
    ISSUES_MIGRATION,
    # 8: function health's errors by class (collector/store/issues_sql.py).
    HEALTH_MIGRATION,
    # 9: where exceptions went up through nested spans, so each counts once (issues_sql.py).
    RAISED_MIGRATION,
    # 10: function health rollups, warnings' state and error types seen (store/health_sql.py).
    HEALTH_ROLLUP_MIGRATION,
    # 11: log records tied to their spans (collector/store/logs_sql.py).
    LOGS_MIGRATION,
    # 12: the weekly top-N digest per project (collector/digest.py).
    DIGEST_MIGRATION,
    # 13: ten-minute rollups between the minutes and the hours (``minute`` holds the first of the
    # ten), so a window's ragged ends merge at most 9 minute rows each side, and a 1 h window 6
    # rows per node and edge instead of 60. Filled from the minutes by the stores' migrate()
    # (graph_sql.backfill_ten_minutes).
    [
        _rollup_table("node_rollups_10m", _NODE_KEY),
        _rollup_table("edge_rollups_10m", _EDGE_KEY),
    ]
    + [
        f"ALTER TABLE {table} ADD COLUMN {column} BIGINT NOT NULL DEFAULT 0"
        for table in ("node_rollups_10m", "edge_rollups_10m")
        for column in ("cold_starts", "timeouts")
    ],
    # 14: the term index keyed by day (collector/store/terms_sql.py); some statements per backend.
    TERMS_MIGRATION,
    # 15: invocations announced as they started, until their span is stored (killed_sql.py).
    INVOCATION_STARTS_MIGRATION,
]

LATEST = len(MIGRATIONS)
HOURLY_ROLLUPS = 4  # the migration after which graph_sql.backfill_hourly runs
TEN_MINUTE_ROLLUPS = 13  # the migration after which graph_sql.backfill_ten_minutes runs

DEFAULT_PROJECT = "default"

# Retention of the graph's facts (named parameters: cutoff in ns, minute of the cutoff); both
# backends run these beside their span deletes. Transactions go once they ended before the cutoff.
GRAPH_RETENTION = [
    "DELETE FROM hop_keys WHERE start_ns < %(cutoff)s",
    "DELETE FROM hops WHERE start_ns < %(cutoff)s",
    "DELETE FROM trace_facts WHERE start_ns < %(cutoff)s",
    "DELETE FROM node_rollups WHERE minute < %(minute)s",
    "DELETE FROM edge_rollups WHERE minute < %(minute)s",
    "DELETE FROM node_rollups_hourly WHERE minute + 60 <= %(minute)s",
    "DELETE FROM edge_rollups_hourly WHERE minute + 60 <= %(minute)s",
    "DELETE FROM node_rollups_10m WHERE minute + 10 <= %(minute)s",
    "DELETE FROM edge_rollups_10m WHERE minute + 10 <= %(minute)s",
    """DELETE FROM transaction_members WHERE EXISTS (SELECT 1 FROM transactions t
        WHERE t.project_id = transaction_members.project_id AND t.id = transaction_members.transaction_id
        AND t.end_ns < %(cutoff)s)""",
    """DELETE FROM transaction_terms WHERE EXISTS (SELECT 1 FROM transactions t
        WHERE t.project_id = transaction_terms.project_id AND t.id = transaction_terms.transaction_id
        AND t.end_ns < %(cutoff)s)""",
    "DELETE FROM transactions WHERE end_ns < %(cutoff)s",
    *ISSUES_RETENTION,
    *LOGS_RETENTION,
    *INVOCATION_STARTS_RETENTION,
]
