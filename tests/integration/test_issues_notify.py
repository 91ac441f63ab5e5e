"""Issues and notifications through a running collector (``hoptrace serve``) on SQLite and
PostgreSQL: errors sent as OTLP/JSON the way an SDK sends them, rules and channels set through
the API, notifications counted by real HTTP receivers on loopback (one plays Slack and a
webhook, one GitHub's issue endpoints)."""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.trace import SpanKind

from hoptrace.collector.auth import create_project, hash_token, new_token
from hoptrace.collector.store import open_store
from tests.collector_server import CollectorProcess
from tests.notify_receiver import Receiver
from tests.otlp_build import json_attrs
from tests.pg import create_database

S, MS = 10**9, 10**6
MINUTE = 60 * S
PUBLIC_URL = "http://hoptrace.example:4318"
ENV = {"HOPTRACE_NOTIFY_BACKOFF": "0.2s", "HOPTRACE_NOTIFY_TIMEOUT": "120s", "HOPTRACE_PUBLIC_URL": PUBLIC_URL}
SECRET = "whsec-do-not-show-9d1f"
TRACE = """Traceback (most recent call last):
  File "/var/task/app.py", line 30, in handler
    return charge(order)
  File "/var/task/billing.py", line {line}, in charge
    raise {type}(f"card declined for order {{order}}")
{type}: card declined for order {order}
"""


def errors(n: int, start_ns: int, exc_type: str = "PaymentError", line: int = 12, function: str = "checkout",
           step_ns: int = 10 * MS, status: int | None = None) -> dict[str, Any]:  # fmt: skip
    """An OTLP/JSON request with ``n`` failed invocations of ``function``, each raising the same
    error (order numbers differ in the message), or answering HTTP ``status`` when given."""
    spans = []
    for i in range(n):
        start = start_ns + i * step_ns
        span: dict[str, Any] = {
            "traceId": os.urandom(16).hex(), "spanId": os.urandom(8).hex(), "name": "POST /orders", "kind": 2,
            "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + 5 * MS), "status": {"code": 2},
            "attributes": json_attrs({"faas.trigger": "http", "http.route": "/orders",
                                  **({"http.response.status_code": status} if status else {})}),
        }  # fmt: skip
        if status is None:
            order = 1000 + i
            span["events"] = [{"name": "exception", "timeUnixNano": str(start + 4 * MS), "attributes": json_attrs({
                "exception.type": exc_type, "exception.message": f"card declined for order {order}",
                "exception.stacktrace": TRACE.format(line=line, type=exc_type, order=order)})}]  # fmt: skip
        spans.append(span)
    resource = {"service.name": function, "faas.name": function, "cloud.platform": "aws_lambda"}
    return {"resourceSpans": [{"resource": {"attributes": json_attrs(resource)}, "scopeSpans": [{"spans": spans}]}]}


def minute_start(minutes_ago: int) -> int:
    return (time.time_ns() - minutes_ago * MINUTE) // MINUTE * MINUTE


def send(client: httpx.Client, request: dict[str, Any]) -> None:
    answer = client.post("/v1/traces", json=request)
    assert answer.status_code == 200, answer.text


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def status(client: httpx.Client) -> dict[str, Any]:
    answer = client.get("/api/v1/issues/status")
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def settled(client: httpx.Client) -> None:
    """Every error counted and every notification done (delivered or given up)."""
    wait_for("issues and notifications to settle", lambda: status(client) == {
        "queued_spans": 0, "pending_notifications": 0})  # fmt: skip


def issues(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    answer = client.get("/api/v1/issues", params=params)
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["issues"]
    return found


def post(client: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = client.post(path, json=body)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'issues.db'}"
    return create_database(request.getfixturevalue("postgres_url"))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def test_a_burst_of_1000_identical_errors_notifies_exactly_as_the_rules_prescribe(
    store_url: str, receiver: Receiver
) -> None:
    with CollectorProcess(store_url, env=ENV) as collector, collector.client() as api:
        hook = post(api, "/api/v1/channels", {"name": "ops hook", "type": "webhook",
                                               "url": f"{receiver.url}/hook", "secret": SECRET})  # fmt: skip
        slack = post(api, "/api/v1/channels", {"name": "slack", "type": "slack", "url": f"{receiver.url}/slack"})
        github = post(api, "/api/v1/channels", {"name": "gh", "type": "github", "owner": "shop", "repo": "api",
                                                 "token": "ghp_secret", "api_url": receiver.url,
                                                 "labels": ["bug"]})  # fmt: skip
        post(api, "/api/v1/rules", {"name": "every 100th past 10 an hour", "channel_id": hook["id"], "threshold": 10,
                                    "interval": 100, "bucket": "hour"})  # fmt: skip
        post(api, "/api/v1/rules", {"name": "first only", "channel_id": slack["id"], "threshold": -1})
        post(api, "/api/v1/rules", {"name": "gh", "channel_id": github["id"], "threshold": 500, "interval": 250,
                                    "bucket": "minute"})  # fmt: skip
        post(api, "/api/v1/rules", {"name": "other function only", "channel_id": slack["id"],
                                    "functions": ["billing"]})  # fmt: skip
        start = minute_start(5)  # the whole burst within one minute (10 ms apart)
        for batch in range(10):
            send(api, errors(100, start + batch * 100 * 10 * MS))
        settled(api)

        (issue,) = issues(api)
        assert (issue["kind"], issue["count"], issue["functions"], issue["status"]) == (
            "exception", 1000, ["checkout"], "open")  # fmt: skip
        assert issue["title"] == "PaymentError: card declined for order <n>"

        hooks = receiver.ok_calls("/hook")
        assert [c.json()["issue"]["count"] for c in hooks] == [1, *range(100, 1001, 100)]
        assert [c.json()["event"] for c in hooks] == ["new"] + ["threshold"] * 10
        for call in hooks:
            expected = hmac.new(SECRET.encode(), call.body, hashlib.sha256).hexdigest()
            assert call.headers["X-Hoptrace-Signature-256"] == f"sha256={expected}"
            assert call.json()["issue"]["url"] == f"{PUBLIC_URL}/issues/{issue['id']}"
        assert len({c.headers["X-Hoptrace-Delivery"] for c in hooks}) == 11

        (message,) = receiver.ok_calls("/slack")
        blocks = message.json()["blocks"]
        assert blocks[0]["type"] == "header" and "PaymentError" in blocks[0]["text"]["text"]
        assert f"<{PUBLIC_URL}/issues/{issue['id']}|" in blocks[1]["text"]["text"]
        assert any(b["type"] == "section" and "billing.py" in b.get("text", {}).get("text", "") for b in blocks)

        created = receiver.ok_calls("/repos/shop/api/issues", "POST")
        assert [c.path for c in created] == ["/repos/shop/api/issues"] + ["/repos/shop/api/issues/1/comments"] * 3
        assert created[0].headers["Authorization"] == "Bearer ghp_secret"
        assert created[0].json()["labels"] == ["bug"] and "[hoptrace] PaymentError" in created[0].json()["title"]
        assert f"{PUBLIC_URL}/issues/{issue['id']}" in created[0].json()["body"]
        reopened = receiver.ok_calls("/repos/shop/api/issues/1", "PATCH")
        assert [c.json() for c in reopened] == [{"state": "open"}] * 3

        detail = api.get(f"/api/v1/issues/{issue['id']}", params={"occurrences": 3}).json()
        assert sum(m["count"] for m in detail["timeline"]["minutes"]) == 1000
        assert len(detail["timeline"]["minutes"]) == 1
        assert len(detail["occurrences"]) == 3 and "billing.py" in detail["occurrences"][0]["stacktrace"]
        trace_id = detail["occurrences"][0]["trace_id"]
        wait_for("the graph", lambda: api.get("/api/v1/graph/status").json()["backlog_spans"] == 0)
        again = api.get(f"/api/v1/issues/{issue['id']}", params={"occurrences": 1}).json()["occurrences"][0]
        assert again["trace_id"] == trace_id and again["transaction_ids"] == [trace_id]
        assert sorted(n["state"] for n in detail["notifications"]) == ["delivered"] * (11 + 1 + 4)


def test_a_failing_slow_or_down_receiver_is_retried_without_touching_ingest_and_a_restart_delivers(
    store_url: str,
) -> None:
    receiver = Receiver().start()
    collector = CollectorProcess(store_url, env=ENV).start()
    try:
        api = collector.client()
        hook = post(api, "/api/v1/channels", {"name": "hook", "type": "webhook", "url": f"{receiver.url}/hook",
                                               "secret": SECRET})  # fmt: skip
        post(api, "/api/v1/rules", {"name": "first", "channel_id": hook["id"], "threshold": -1, "kinds": ["exception"]})

        # Answers 500: retried with backoff; ingest and counting go on meanwhile.
        receiver.answer = 500
        send(api, errors(1, minute_start(3), exc_type="PaymentError"))
        wait_for("retries", lambda: len(receiver.calls) >= 3)
        send(api, errors(50, minute_start(3) + S, exc_type="PaymentError"))
        wait_for("counting", lambda: [i["count"] for i in issues(api)] == [51])
        (pending,) = api.get("/api/v1/notifications").json()["notifications"]
        assert pending["state"] == "pending" and pending["attempts"] >= 2 and "500" in pending["last_error"]

        # Slow: the notifier hangs in a call; ingest and counting go on.
        receiver.answer, receiver.holding = 200, True
        wait_for("the notifier to call", receiver.waiting.is_set)
        send(api, errors(10, minute_start(3) + 2 * S, exc_type="PaymentError"))
        wait_for("counting while the receiver hangs", lambda: [i["count"] for i in issues(api)] == [61])
        receiver.hold.set()
        wait_for("delivery", lambda: len(receiver.ok_calls("/hook")) == 1)
        receiver.holding = False

        # Down: a new issue's notification waits; the collector stops and starts again, then delivers.
        receiver.stop()
        send(api, errors(1, minute_start(2), exc_type="RefundError"))

        def attempted() -> bool:
            listed = api.get("/api/v1/notifications").json()["notifications"]
            return any(n["attempts"] >= 1 for n in listed if n["state"] == "pending")

        wait_for("a failed attempt", attempted)
        api.close()
        assert collector.stop() == 0
        receiver = Receiver(port=receiver.port).start()
        collector = CollectorProcess(store_url, env=ENV).start()
        api = collector.client()
        settled(api)
        titles = [c.json()["issue"]["title"].split(":")[0] for c in receiver.ok_calls("/hook")]
        assert titles == ["RefundError"]

        # Nothing delivered twice after a 2xx, across another restart: a third issue is the barrier.
        api.close()
        assert collector.stop() == 0
        collector = CollectorProcess(store_url, env=ENV).start()
        api = collector.client()
        send(api, errors(1, minute_start(1), exc_type="ChargebackError"))
        wait_for("the barrier's delivery", lambda: len(receiver.ok_calls("/hook")) == 2)
        settled(api)
        titles += [c.json()["issue"]["title"].split(":")[0] for c in receiver.ok_calls("/hook")[1:]]
        assert titles == ["RefundError", "ChargebackError"]
        states = [n["state"] for n in api.get("/api/v1/notifications").json()["notifications"]]
        assert states == ["delivered"] * 3
        api.close()
    finally:
        collector.stop()
        receiver.stop()


def test_resolved_issues_regress_ignored_ones_stay_quiet_and_a_resent_batch_counts_once(
    store_url: str, receiver: Receiver
) -> None:
    with CollectorProcess(store_url, env=ENV) as collector, collector.client() as api:
        hook = post(api, "/api/v1/channels", {"name": "hook", "type": "webhook", "url": f"{receiver.url}/hook",
                                               "secret": SECRET})  # fmt: skip
        post(api, "/api/v1/rules", {"name": "first", "channel_id": hook["id"], "threshold": -1})
        batch = errors(3, minute_start(10))
        send(api, batch)
        settled(api)
        send(api, batch)  # a client resending a batch whose acknowledgement it lost
        send(api, errors(2, minute_start(10) + S, line=13))  # another line: another issue
        send(api, errors(4, minute_start(10) + 2 * S, function="billing", status=502))
        settled(api)
        found = {(i["kind"], i["culprit"]): i for i in issues(api)}
        assert sorted((k, i["count"]) for k, i in found.items()) == [
            (("exception", "charge (/var/task/billing.py:12)"), 3),
            (("exception", "charge (/var/task/billing.py:13)"), 2),
            (("http_5xx", "billing /orders"), 4),
        ]
        first = found[("exception", "charge (/var/task/billing.py:12)")]
        five = found[("http_5xx", "billing /orders")]
        assert five["title"] == "HTTP 502 from billing /orders" and five["functions"] == ["billing"]
        assert [i["id"] for i in issues(api, kind="http_5xx")] == [five["id"]]
        assert [i["id"] for i in issues(api, function="billing")] == [five["id"]]
        assert len(receiver.ok_calls("/hook")) == 3

        resolved = api.post(f"/api/v1/issues/{first['id']}/status", json={"status": "resolved"})
        assert resolved.status_code == 200 and resolved.json()["status"] == "resolved"
        assert issues(api, status="resolved") == [resolved.json()]
        ignored = api.patch(f"/api/v1/issues/{five['id']}", json={"status": "ignored"})
        assert ignored.status_code == 200 and ignored.json()["status"] == "ignored"
        assert api.patch(f"/api/v1/issues/{five['id']}", json={"status": "gone"}).status_code == 422
        assert api.patch("/api/v1/issues/999999", json={"status": "open"}).status_code == 404

        send(api, errors(1, minute_start(20)))  # from before the fix, arriving late: no regression
        settled(api)
        assert api.get(f"/api/v1/issues/{first['id']}").json()["status"] == "resolved"
        send(api, errors(1, time.time_ns()))
        send(api, errors(5, minute_start(1), function="billing", status=502))
        settled(api)
        again = api.get(f"/api/v1/issues/{first['id']}").json()
        assert (again["status"], again["regression"], again["count"]) == ("open", True, 5)
        calls = receiver.ok_calls("/hook")
        assert len(calls) == 4 and calls[-1].json()["event"] == "regression"
        assert calls[-1].json()["issue"]["id"] == first["id"]
        quiet = api.get(f"/api/v1/issues/{five['id']}").json()
        assert (quiet["status"], quiet["count"]) == ("ignored", 9)


def test_channel_secrets_are_never_returned_and_only_admin_tokens_change_rules_and_channels(
    store_url: str, receiver: Receiver
) -> None:
    store = open_store(store_url)
    store.migrate()
    _, ingest, read = create_project(store, "shop")
    project = store.project("shop")
    assert project is not None
    admin = new_token("admin")
    store.add_token(project.id, "admin", hash_token(admin))
    store.close()
    with CollectorProcess(store_url, env=ENV) as collector, collector.client() as api:
        as_admin, as_read = {"Authorization": f"Bearer {admin}"}, {"Authorization": f"Bearer {read}"}
        slack_url = f"{receiver.url}/services/T000/B000/XXXXSECRETXXXX"
        body = {"name": "gh", "type": "github", "owner": "shop", "repo": "api", "token": "ghp_topsecret"}
        for token in (read, ingest):
            refused = api.post("/api/v1/channels", json=body, headers={"Authorization": f"Bearer {token}"})
            assert refused.status_code == 403 and "admin" in refused.text
        assert api.post("/api/v1/channels", json=body).status_code == 401
        made = [api.post("/api/v1/channels", json=b, headers=as_admin) for b in (
            body, {"name": "slack", "type": "slack", "url": slack_url},
            {"name": "hook", "type": "webhook", "url": f"{receiver.url}/hook", "secret": SECRET})]  # fmt: skip
        assert [m.status_code for m in made] == [201, 201, 201]
        changed = api.patch(f"/api/v1/channels/{made[0].json()['id']}", json={"labels": ["x"]}, headers=as_admin)
        assert changed.status_code == 200 and changed.json()["config"]["labels"] == ["x"]
        shown = [m.text for m in made] + [changed.text]
        for headers in (as_read, as_admin):
            listed = api.get("/api/v1/channels", headers=headers)
            assert listed.status_code == 200 and len(listed.json()["channels"]) == 3
            shown += [listed.text] + [api.get(f"/api/v1/channels/{m.json()['id']}", headers=headers).text for m in made]
        for text in shown:
            for secret in ("ghp_topsecret", "XXXXSECRETXXXX", SECRET):
                assert secret not in text
        assert [c["secrets_set"] for c in api.get("/api/v1/channels", headers=as_read).json()["channels"]] == [
            ["token"], ["url"], ["secret"]]  # fmt: skip
        assert "ghp_topsecret" not in api.get("/openapi.json").text

        rule = {"name": "r", "channel_id": made[2].json()["id"], "kinds": ["exception"]}
        assert api.post("/api/v1/rules", json=rule, headers=as_read).status_code == 403
        created = api.post("/api/v1/rules", json=rule, headers=as_admin)
        assert created.status_code == 201, created.text
        rule_id = created.json()["id"]
        assert api.patch(f"/api/v1/rules/{rule_id}", json={"threshold": 5}, headers=as_read).status_code == 403
        patched = api.patch(f"/api/v1/rules/{rule_id}", json={"threshold": 5}, headers=as_admin)
        assert patched.status_code == 200 and patched.json()["threshold"] == 5 and patched.json()["kinds"] == [
            "exception"]  # fmt: skip
        assert api.get("/api/v1/rules", headers=as_read).json()["rules"] == [patched.json()]
        bad = api.post("/api/v1/rules", json={**rule, "channel_id": 9999}, headers=as_admin)
        assert bad.status_code == 400 and "channel" in bad.text
        assert api.post("/api/v1/channels", json={"name": "x", "type": "webhook", "url": "ftp://x"},
                        headers=as_admin).status_code == 400  # fmt: skip
        assert api.delete(f"/api/v1/rules/{rule_id}", headers=as_read).status_code == 403
        assert api.delete(f"/api/v1/rules/{rule_id}", headers=as_admin).status_code == 204
        assert api.delete(f"/api/v1/channels/{made[0].json()['id']}", headers=as_admin).status_code == 204
        assert api.get(f"/api/v1/channels/{made[0].json()['id']}", headers=as_read).status_code == 404

        # Reading issues and triage take the read token; the ingest token cannot read them.
        with collector.client(headers={"Authorization": f"Bearer {ingest}"}) as exporter:
            send(exporter, errors(1, minute_start(2)))
        wait_for("the issue", lambda: len(api.get("/api/v1/issues", headers=as_read).json()["issues"]) == 1)
        assert api.get("/api/v1/issues", headers={"Authorization": f"Bearer {ingest}"}).status_code == 403
        (issue,) = api.get("/api/v1/issues", headers=as_read).json()["issues"]
        assert api.post(f"/api/v1/issues/{issue['id']}/status", json={"status": "ignored"},
                        headers=as_read).status_code == 200  # fmt: skip
        paths = api.get("/openapi.json").json()["paths"]
        for path in ("/api/v1/issues", "/api/v1/issues/{issue_id}", "/api/v1/issues/{issue_id}/status",
                     "/api/v1/channels", "/api/v1/channels/{channel_id}", "/api/v1/rules", "/api/v1/rules/{rule_id}",
                     "/api/v1/notifications"):  # fmt: skip
            assert path in paths


def test_errors_acknowledged_before_a_kill_are_counted_once_after_the_restart(store_url: str) -> None:
    collector = CollectorProcess(store_url, env=ENV).start()
    try:
        with collector.client() as api:
            for batch in range(4):
                send(api, errors(50, minute_start(4) + batch * S))
        collector.kill()  # SIGKILL right after the last acknowledgement: the issue pass may be mid-way
        collector = CollectorProcess(store_url, env=ENV).start()
        with collector.client() as api:
            settled(api)
            assert [(i["kind"], i["count"]) for i in issues(api)] == [("exception", 200)]
            (issue,) = issues(api)
            minutes = api.get(f"/api/v1/issues/{issue['id']}", params={"from": "0"}).json()["timeline"]["minutes"]
            assert sum(m["count"] for m in minutes) == 200
    finally:
        collector.stop()


def test_retention_drops_old_occurrences_and_minutes_but_keeps_the_issue(tmp_path: Any) -> None:
    from hoptrace.collector.notify import IssuePass
    from hoptrace.collector.otlp import Limits, normalise, parse_request

    store = open_store(f"sqlite:///{tmp_path / 'retention.db'}")
    try:
        store.migrate()
        default = store.project("default")
        assert default is not None
        old, recent = minute_start(180), minute_start(5)
        for start in (old, recent):
            raw = httpx.Request("POST", "http://x", json=errors(2, start)).read()
            request, rejected = parse_request(raw, "application/json")
            store.write([(default.id, normalise(request, Limits(), rejected=rejected))])
        passes = IssuePass(store)
        while passes.step():
            pass
        store.delete_before(minute_start(60))
        from hoptrace.collector.store import issues_sql as db

        (issue,) = store.run_read(lambda sql: db.list_issues(sql, default.id, db.IssueQuery()))
        assert issue.count == 4  # the issue keeps its count
        occurrences = store.run_read(lambda sql: db.latest_occurrences(sql, default.id, issue.id, 10))
        assert sorted(o.time_ns >= recent for o in occurrences) == [True, True]
        minutes = store.run_read(lambda sql: db.timeline(sql, default.id, issue.id, 0, 2**40))
        assert [m for m, _ in minutes] == [recent // MINUTE]
    finally:
        store.close()


def _charge(order: int) -> None:
    raise ValueError(f"card declined for order {order}")


def test_exceptions_from_the_opentelemetry_sdk_group_by_the_users_frames_and_count_once_per_raise(
    tmp_path: Any,
) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    with CollectorProcess(f"sqlite:///{tmp_path / 'sdk.db'}", env=ENV) as collector, collector.client() as api:
        provider = TracerProvider(resource=Resource.create({"service.name": "shop-worker"}))
        # Batched, as SDKs export by default: a raise's spans travel together (the issue pass
        # recognises one exception recorded on nested spans among the spans it reads together).
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{collector.url}/v1/traces"),
                                                       schedule_delay_millis=60_000))  # fmt: skip
        tracer = provider.get_tracer("test")
        SERVER = SpanKind.SERVER
        for order in range(5):
            try:  # the SDK records the exception on both spans it leaves, as it goes up
                with tracer.start_as_current_span("handle", kind=SERVER), tracer.start_as_current_span("charge"):
                    _charge(order)
            except ValueError:
                pass
        provider.shutdown()
        settled(api)
        (issue,) = issues(api)
        assert (issue["kind"], issue["count"], issue["functions"]) == ("exception", 5, ["shop-worker"])
        assert issue["title"] == "ValueError: card declined for order <n>"
        assert issue["culprit"].startswith("_charge (") and "test_issues_notify.py" in issue["culprit"]


def test_an_exception_counted_on_a_span_is_not_counted_again_when_its_parent_arrives_later(tmp_path: Any) -> None:
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    with CollectorProcess(f"sqlite:///{tmp_path / 'late.db'}", env=ENV) as collector, collector.client() as api:
        provider = TracerProvider(resource=Resource.create({"service.name": "shop-worker"}))
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{collector.url}/v1/traces")))
        tracer = provider.get_tracer("test")
        parent = tracer.start_span("handle", kind=SpanKind.SERVER)
        child = tracer.start_span("charge", context=trace.set_span_in_context(parent))
        try:
            _charge(1)
        except ValueError as error:
            child.record_exception(error)
            child.end()  # exported and counted on its own
            settled(api)
            assert [i["count"] for i in issues(api)] == [1]
            parent.record_exception(error)  # the same exception, on the span it went up into
            parent.end()
        other = tracer.start_span("handle", kind=SpanKind.SERVER)
        other.record_exception(ValueError("card declined for order 2"))  # raised there: counts
        other.end()
        provider.shutdown()
        settled(api)
        assert sorted(i["count"] for i in issues(api)) == [1, 1]
