"""Serves the built web UI from the collector at ``/``, with a single-page-app fallback.

The front end (``ui/web``) is built by ``scripts/ensure-ui.sh`` into ``ui/dist``, which ships in
the wheel as ``hoptrace/ui/dist`` when it was built before packaging. The assets are public (they
hold no data); every call they make to ``/api/v1`` carries the read token like any other client.
When no build is there the collector still runs, and ``/`` says how to build the UI.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

UI_DIR_ENV = "HOPTRACE_UI_DIR"
BUILD_COMMAND = "./scripts/ensure-ui.sh"

# First path segments that belong to the collector: the fallback answers them with a JSON 404
# instead of the UI's index.html, so a mistyped API call never looks like a page.
RESERVED = frozenset({"api", "v1", "docs", "redoc", "openapi.json", "healthz"})

# The UI renders everything it receives as text; the policy is the second line of defence.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    # Links may carry ?token=: never send the address to another site.
    "Referrer-Policy": "no-referrer",
}


def ui_dir() -> Path:
    """Where the built UI lives: ``$HOPTRACE_UI_DIR`` or the ``dist`` folder beside this module."""
    configured = os.environ.get(UI_DIR_ENV)
    return Path(configured) if configured else Path(__file__).resolve().parent / "dist"


def not_built_page(folder: Path) -> str:
    """The page ``/`` shows when there is no built UI: what is missing and the command that builds it."""
    where = html.escape(str(folder))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hoptrace: the web UI is not built</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:3rem auto;padding:0 1rem;color:#1d2433}}
code,pre{{background:#f1f3f7;padding:.1rem .3rem;border-radius:4px}}pre{{padding:.8rem}}</style></head>
<body><main>
<h1>The hoptrace web UI is not built</h1>
<p>The collector is running and accepting spans, but it found no built front end in
<code>{where}</code>.</p>
<p>From a source checkout, build it (needs Node.js 20.19+ and npm) and reload this page:</p>
<pre>{BUILD_COMMAND}</pre>
<p>A wheel built after that command carries the UI. Meanwhile the query API answers at
<a href="/api/v1/services"><code>/api/v1</code></a>; its documentation is at <a href="/docs">/docs</a>.</p>
</main></body></html>
"""


def mount(app: FastAPI) -> None:
    """Attach the UI's routes to the collector app; they must come after the API routes."""

    @app.api_route("/{path:path}", methods=["GET", "HEAD"], include_in_schema=False)
    def web_ui(path: str, request: Request) -> Response:
        root = ui_dir().resolve()
        if path.split("/", 1)[0] in RESERVED:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        index = root / "index.html"
        if not index.is_file():
            return HTMLResponse(not_built_page(root), status_code=503, headers=SECURITY_HEADERS)
        if path:
            asset = (root / path).resolve()
            if asset.is_relative_to(root) and asset.is_file():
                # Vite names assets by content hash: they never change under one name.
                immutable = path.startswith("assets/")
                cache = "public, max-age=31536000, immutable" if immutable else "no-cache"
                return FileResponse(asset, headers={**SECURITY_HEADERS, "Cache-Control": cache})
            if "." in path.rsplit("/", 1)[-1]:
                # A missing file (an old asset hash, a typo) is a 404, never index.html served as JS.
                return JSONResponse({"detail": f"no file /{path} in the web UI"}, status_code=404)
        # Every other path is a route of the single-page app.
        return FileResponse(index, headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})
