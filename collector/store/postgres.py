"""PostgreSQL backend (placeholder until its implementation lands)."""

from __future__ import annotations

from . import StoreError


class PostgresStore:
    @classmethod
    def from_url(cls, url: str) -> PostgresStore:
        raise StoreError("the PostgreSQL store is not available yet")
