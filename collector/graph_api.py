"""The graph's query endpoints (map, transactions) under ``/api/v1``.

Kept apart from ``api.py`` (traces and spans) because the graph issue owns them.
"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
