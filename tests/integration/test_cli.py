"""``hoptrace serve`` and ``hoptrace project``: clear start-up errors, tokens, retention."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.collector_server import CollectorProcess
from tests.conftest import free_port
from tests.otlp_build import request, span


def hoptrace(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hoptrace.collector.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def test_a_bad_store_url_is_a_one_line_error() -> None:
    result = hoptrace("serve", "--store", "mysql://db/x", "--port", str(free_port()))
    assert result.returncode == 2
    assert "unsupported store URL 'mysql://db/x'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_store_in_a_missing_folder_says_which_folder(tmp_path: Path) -> None:
    result = hoptrace("serve", "--store", f"sqlite:///{tmp_path}/nope/ht.db", "--port", str(free_port()))
    assert result.returncode == 2
    assert f"{tmp_path}/nope" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = hoptrace("serve", "--store", f"sqlite:///{tmp_path}/ht.db", "--port", str(port))
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_serving_open_on_a_public_address_is_refused(tmp_path: Path) -> None:
    result = hoptrace("serve", "--store", f"sqlite:///{tmp_path}/ht.db", "--host", "0.0.0.0", "--port", "0")
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0 with no tokens" in result.stderr


def test_project_create_prints_working_tokens(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/ht.db"
    result = hoptrace("project", "create", "shop", "--store", store)
    assert result.returncode == 0, result.stderr
    tokens = dict(re.findall(r"^\s*(ingest|read) token:\s+(\S+)$", result.stdout, re.M))
    ingest, read = tokens["ingest"], tokens["read"]
    assert ingest.startswith("ht_ingest_") and read.startswith("ht_read_")
    again = hoptrace("project", "create", "shop", "--store", store)
    assert again.returncode == 2 and "already exists" in again.stderr
    with CollectorProcess(store) as collector, collector.client() as http:
        body = request([span("paid")], service="shop").SerializeToString()
        proto = {"Content-Type": "application/x-protobuf"}
        assert http.post("/v1/traces", content=body, headers=proto).status_code == 401
        ok = http.post("/v1/traces", content=body, headers={**proto, "Authorization": f"Bearer {ingest}"})
        assert ok.status_code == 200
        found = http.get("/api/v1/spans", headers={"Authorization": f"Bearer {read}"}).json()["spans"]
        assert [s["name"] for s in found] == ["paid"]


def test_retention_deletes_spans_older_than_the_window(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/ht.db"
    old = span("old", start_ns=time.time_ns() - 3 * 3600 * 10**9)
    recent = span("recent")
    body = request([old, recent]).SerializeToString()
    with CollectorProcess(store) as collector, collector.client() as http:
        assert http.post("/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"}).is_success
        assert len(http.get("/api/v1/spans", params={"from": "0"}).json()["spans"]) == 2
    with CollectorProcess(store, "--retention", "1h") as collector, collector.client() as http:
        names: list[str] = []
        for _ in range(100):
            names = [s["name"] for s in http.get("/api/v1/spans", params={"from": "0"}).json()["spans"]]
            if names == ["recent"]:
                break
            time.sleep(0.1)
        assert names == ["recent"]


def test_sigterm_stops_the_collector_cleanly(tmp_path: Path) -> None:
    collector = CollectorProcess(f"sqlite:///{tmp_path}/ht.db").start()
    assert httpx.get(f"{collector.url}/healthz").json()["status"] == "ok"
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status tells why.
    assert collector.stop() in (0, -signal.SIGTERM)
    assert "Traceback" not in collector.output()
