"""Serves the built web UI from the collector at ``/`` (the UI issue fills this in)."""

from __future__ import annotations

from fastapi import FastAPI


def mount(app: FastAPI) -> None:
    """Attach the UI's routes to the collector app; they must come after the API routes."""
