"""``hoptrace bench populate``: a realistic span mix in a store, findable through the query API."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi.testclient import TestClient

from hoptrace.collector.app import create_app
from hoptrace.collector.config import CollectorConfig
from hoptrace.collector.populate import SpanMix, customer_id, order_id, populate, spans_in_trace, trace_id
from hoptrace.collector.store import open_store


def hoptrace(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hoptrace.collector.cli", *args], capture_output=True, text=True, timeout=120
    )


@contextmanager
def api(store_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(CollectorConfig(store_url=store_url))) as client:
        yield client


def test_populate_writes_the_mix_with_progress_and_labels_are_searchable(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'bench.db'}"
    result = hoptrace("bench", "populate", "--store", store, "--spans", "300", "--seed", "5", "--batch-spans", "100")
    assert result.returncode == 0, result.stderr
    expected = SpanMix.for_spans(300, seed=5, days=1).spans
    assert f"wrote {expected} spans" in result.stdout
    assert re.search(rf"populate: {expected}/{expected} spans \(100\.0%\), [\d,]+ spans/s", result.stderr)
    with api(store) as client:
        by_order = client.get("/api/v1/spans", params={"label.order_id": order_id(5, 3)}).json()["spans"]
        assert len(by_order) == spans_in_trace(3)
        assert {s["trace_id"] for s in by_order} == {trace_id(5, 3).hex()}
        trace = client.get(f"/api/v1/traces/{trace_id(5, 3).hex()}").json()["spans"]
        assert {s["span_id"] for s in trace} == {s["span_id"] for s in by_order}
        kinds = {s["kind"] for s in trace}
        assert kinds >= {"SERVER", "CLIENT", "PRODUCER", "CONSUMER"}
        invocation = next(s for s in trace if s["kind"] == "SERVER")
        assert invocation["attributes"]["faas.trigger"] == "http"
        assert invocation["resource"]["faas.name"] == invocation["service"]
        assert len(invocation["attributes"]) >= 13
        by_customer = client.get("/api/v1/spans", params={"label.customer_id": customer_id(3)}).json()["spans"]
        assert trace_id(5, 3).hex() in {s["trace_id"] for s in by_customer}
        send = next(s for s in trace if s["kind"] == "PRODUCER" and s["attributes"]["messaging.system"] == "aws_sqs")
        by_message = client.get("/api/v1/spans", params={"q": send["attributes"]["messaging.message.id"]}).json()
        assert {s["kind"] for s in by_message["spans"]} == {"PRODUCER", "CONSUMER"}


def test_populate_writes_into_the_named_project_only(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'bench.db'}"
    created = hoptrace("project", "create", "shop", "--store", store)
    assert created.returncode == 0, created.stderr
    read = re.search(r"read token:\s+(\S+)", created.stdout)
    assert read is not None
    result = hoptrace("bench", "populate", "--store", store, "--spans", "50", "--seed", "9", "--project", "shop")
    assert result.returncode == 0, result.stderr
    with api(store) as client:
        label = {"label.order_id": order_id(9, 0)}
        mine = client.get("/api/v1/spans", params=label, headers={"Authorization": f"Bearer {read.group(1)}"})
        assert len(mine.json()["spans"]) == spans_in_trace(0)
        assert client.get("/api/v1/spans", params=label).status_code == 401


def test_populate_refuses_a_bad_store_url_in_one_line() -> None:
    result = hoptrace("bench", "populate", "--store", "mysql://db/x", "--spans", "10")
    assert result.returncode == 2
    assert "unsupported store URL" in result.stderr and "Traceback" not in result.stderr


def test_resume_continues_an_interrupted_populate_without_duplicates(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'bench.db'}"
    full = SpanMix.for_spans(300, seed=5, days=1)
    store = open_store(store_url)
    store.migrate()
    populate(store, 1, SpanMix(5, 17, full.start_ns, full.end_ns))  # the first 17 traces, as if interrupted
    store.close()
    result = hoptrace("bench", "populate", "--store", store_url, "--spans", "300", "--seed", "5", "--resume")
    assert result.returncode == 0, result.stderr
    store = open_store(store_url)
    try:
        assert store.count_spans() == full.spans
    finally:
        store.close()
    with api(store_url) as client:
        last = client.get("/api/v1/spans", params={"label.order_id": order_id(5, full.traces - 1)}).json()["spans"]
        assert len(last) == spans_in_trace(full.traces - 1)


def test_resume_refuses_a_store_that_is_not_a_prefix_of_the_mix(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'bench.db'}"
    assert hoptrace("bench", "populate", "--store", store_url, "--spans", "300", "--seed", "5").returncode == 0
    result = hoptrace("bench", "populate", "--store", store_url, "--spans", "100", "--seed", "5", "--resume")
    assert result.returncode == 2
    assert "cannot resume" in result.stderr
