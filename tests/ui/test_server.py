"""ui/server.py in-process: the UI at /, the single-page-app fallback, and what it never shadows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hoptrace.collector.app import create_app
from hoptrace.collector.config import CollectorConfig

INDEX = "<!doctype html><html><body><div id=app></div><script src=/assets/app-1234.js></script></body></html>"


@pytest.fixture
def ui_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text(INDEX)
    (dist / "assets" / "app-1234.js").write_text("console.log('ui')")
    (dist / "favicon.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (tmp_path / "secret.txt").write_text("outside the UI folder")
    monkeypatch.setenv("HOPTRACE_UI_DIR", str(dist))
    return dist


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(CollectorConfig(store_url=f"sqlite:///{tmp_path / 'ui.db'}"))) as c:
        yield c


@pytest.mark.parametrize("path", ["/", "/map", "/transactions/t-123", "/traces/abc?span=def", "/spans?service=x"])
def test_every_ui_route_gets_the_index_page(ui_build: Path, client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.text == INDEX
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-cache"
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["referrer-policy"] == "no-referrer"


def test_assets_are_served_as_files_and_cached_for_good(ui_build: Path, client: TestClient) -> None:
    response = client.get("/assets/app-1234.js")
    assert response.status_code == 200
    assert response.text == "console.log('ui')"
    assert "javascript" in response.headers["content-type"]
    assert "immutable" in response.headers["cache-control"]
    assert client.get("/favicon.svg").headers["content-type"].startswith("image/svg")


def test_a_missing_asset_is_a_404_not_the_index_page(ui_build: Path, client: TestClient) -> None:
    response = client.get("/assets/app-old.js")
    assert response.status_code == 404
    assert INDEX not in response.text


@pytest.mark.parametrize("path", ["/..%2fsecret.txt", "/assets/..%2f..%2fsecret.txt", "/%2e%2e/secret.txt"])
def test_no_file_outside_the_ui_folder_is_served(ui_build: Path, client: TestClient, path: str) -> None:
    response = client.get(path)
    assert "outside the UI folder" not in response.text


def test_the_ui_never_shadows_the_collectors_own_routes(ui_build: Path, client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/openapi.json").json()["info"]["title"] == "hoptrace collector"
    assert "swagger" in client.get("/docs").text.lower()
    assert "services" in client.get("/api/v1/services").json()
    for path in ["/api/v1/no-such-call", "/api/nothing", "/v1/logs", "/healthz/extra", "/docs/x"]:
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json() == {"detail": "Not Found"}, path
    # OTLP ingest is still a POST-only route of its own.
    assert client.post("/v1/traces", content=b"", headers={"Content-Type": "application/x-protobuf"}).status_code < 500
    assert "/{path}" not in client.get("/openapi.json").json()["paths"]


def test_without_a_build_every_ui_route_says_how_to_build_it(
    tmp_path: Path, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOPTRACE_UI_DIR", str(tmp_path / "nothing-here"))
    for path in ["/", "/map", "/transactions/t-1"]:
        response = client.get(path)
        assert response.status_code == 503
        assert "The hoptrace web UI is not built" in response.text
        assert "./scripts/ensure-ui.sh" in response.text
        assert str(tmp_path / "nothing-here") in response.text
    assert client.get("/healthz").status_code == 200
