"""Projects and tokens: ingest tokens map spans to a project; read tokens open its data.

Tokens are random strings shown once at creation; only their SHA-256 is stored. Admin tokens
manage a project's notification rules and channels. With no
tokens at all the collector runs open (everything in the ``default`` project), which it allows
only on a loopback address.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping

from .store import Project, SpanStore, TokenGrant

TOKEN_HEADERS = ("authorization", "x-hoptrace-token")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(kind: str) -> str:
    return f"ht_{kind}_{secrets.token_urlsafe(24)}"


def create_project(store: SpanStore, name: str) -> tuple[Project, str, str]:
    """A new project with one ingest and one read token (returned in clear, never stored so)."""
    project = store.create_project(name)
    ingest, read = new_token("ingest"), new_token("read")
    store.add_token(project.id, "ingest", hash_token(ingest))
    store.add_token(project.id, "read", hash_token(read))
    return project, ingest, read


def add_token(store: SpanStore, project_id: int, kind: str) -> str:
    """A new token of ``kind`` (ingest, read or admin) for a project, returned in clear once."""
    token = new_token(kind)
    store.add_token(project_id, kind, hash_token(token))
    return token


def token_from(headers: Mapping[str, str], query: Mapping[str, str] | None = None) -> str | None:
    """The token a request carries: ``Authorization: Bearer …``, ``x-hoptrace-token`` or ``?token=``."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, rest = auth.partition(" ")
        return rest.strip() if scheme.lower() == "bearer" else auth.strip()
    token = headers.get("x-hoptrace-token")
    if token:
        return token.strip()
    if query is not None and query.get("token"):
        return query["token"]
    return None


def grant_for(store: SpanStore, token: str | None) -> TokenGrant | None:
    return store.grant(hash_token(token)) if token else None
