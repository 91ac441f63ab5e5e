"""hoptrace collector: OTLP ingest, storage (SQLite/PostgreSQL), query API and CLI (server extra)."""
