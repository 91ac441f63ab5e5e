"""The schema, as forward-only migrations shared by both backends.

Each migration is a list of statements written in the SQL both SQLite and PostgreSQL accept;
``BLOB`` is spelled per backend through ``{blob}``. A database records the version it has
reached and only ever moves forward.
"""

from __future__ import annotations

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
]

LATEST = len(MIGRATIONS)

DEFAULT_PROJECT = "default"
