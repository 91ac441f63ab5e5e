"""The weekly top-N digest: when its slot comes (explicit times, no sleeping), and delivered
through a running collector's outbox on SQLite and PostgreSQL to a real local receiver playing
Slack (Block Kit) and a signed webhook, once per week across schedulers."""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import datetime, timezone
from typing import Any

import pytest

from hoptrace.collector.digest import DigestScheduler, slot_at
from hoptrace.collector.store import open_store
from tests.collector_server import CollectorProcess
from tests.integration.test_issues_notify import ENV, PUBLIC_URL, SECRET, minute_start, send, wait_for
from tests.integration.test_top import WEEK, calls, settled
from tests.notify_receiver import Receiver

H = 3600 * 10**9


def ns(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()) * 10**9


def test_the_slot_is_the_latest_weekday_and_hour_at_or_before_now() -> None:
    # 2027-03-03 is a Wednesday.
    assert slot_at(0, 8, ns("2027-03-03T10:00:00")) == ns("2027-03-01T08:00:00")  # Monday before
    assert slot_at(2, 8, ns("2027-03-03T10:00:00")) == ns("2027-03-03T08:00:00")  # today, passed
    assert slot_at(2, 11, ns("2027-03-03T10:00:00")) == ns("2027-02-24T11:00:00")  # today, not yet: a week ago
    assert slot_at(2, 10, ns("2027-03-03T10:00:00")) == ns("2027-03-03T10:00:00")  # exactly now
    assert slot_at(6, 23, ns("2027-03-03T10:00:00")) == ns("2027-02-28T23:00:00")  # Sunday night


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'digest.db'}"
    from tests.pg import create_database

    return create_database(request.getfixturevalue("postgres_url"))


def test_the_weekly_digest_goes_once_per_slot_through_the_outbox(store_url: str) -> None:
    now = minute_start(30)
    with Receiver() as receiver, CollectorProcess(store_url, env=ENV) as collector, collector.client() as api:
        send(api, calls("cart", "GET /cart", now, 40, 20))
        send(api, calls("cart", "GET /cart", now - WEEK, 20, 20))
        send(api, calls("checkout", "POST /checkout", now, 10, 800, failed=3))
        settled(api)
        slack = api.post("/api/v1/channels", json={"name": "s", "type": "slack", "url": f"{receiver.url}/slack"}).json()
        hook = api.post("/api/v1/channels", json={"name": "h", "type": "webhook", "url": f"{receiver.url}/hook",
                                                  "secret": SECRET}).json()  # fmt: skip
        github = api.post("/api/v1/channels", json={"name": "g", "type": "github", "owner": "o", "repo": "r",
                                                    "token": "t", "api_url": receiver.url}).json()  # fmt: skip
        assert api.get("/api/v1/digest").json() == {"configured": False}
        assert api.post("/api/v1/digest/send").status_code == 404
        refused = api.put("/api/v1/digest", json={"channel_id": github["id"]})
        assert refused.status_code == 400 and "slack or webhook" in refused.json()["detail"]
        assert api.put("/api/v1/digest", json={"channel_id": 999}).status_code == 400
        assert api.put("/api/v1/digest", json={"channel_id": slack["id"], "hour": 24}).status_code == 422

        # Sent on request: a Slack Block Kit message with the rankings and their changes.
        saved = api.put("/api/v1/digest", json={"channel_id": slack["id"], "weekday": 0, "hour": 8, "limit": 3})
        assert saved.status_code == 200, saved.text
        assert saved.json()["weekday_name"] == "monday" and saved.json()["last_sent_slot"] is not None
        assert api.post("/api/v1/digest/send").status_code == 202
        wait_for("the slack digest", lambda: len(receiver.ok_calls("/slack")) == 1)
        message = receiver.ok_calls("/slack")[0].json()
        header = {"type": "header", "text": {"type": "plain_text", "text": "Weekly digest: default"}}
        assert message["blocks"][0] == header
        text = "\n".join(b["text"]["text"] for b in message["blocks"] if b["type"] == "section")
        assert "Most called: cart 40 (+100%); checkout 10 (new)" in text
        assert "Most failing: checkout 3 (new)" in text
        assert message["blocks"][-1]["elements"][0]["url"] == f"{PUBLIC_URL}/top"

        # Scheduled: the next slot an hour from now, seen by schedulers told the time (two, as
        # two replicas would be): it goes once, to the signed webhook, and not again that week.
        soon = datetime.fromtimestamp(time.time() + 3600, tz=timezone.utc)
        api.put("/api/v1/digest", json={"channel_id": hook["id"], "weekday": soon.weekday(), "hour": soon.hour})
        slot = slot_at(soon.weekday(), soon.hour, int(soon.timestamp()) * 10**9)
        one, two = open_store(store_url), open_store(store_url)
        try:
            assert DigestScheduler(one).step(slot - 1) == 0  # not yet
            assert DigestScheduler(one).step(slot) == 1
            assert DigestScheduler(two).step(slot + H) == 0  # the other replica: already sent
            assert DigestScheduler(one).step(slot + 6 * 24 * H) == 0  # still the same week
        finally:
            one.close()
            two.close()
        wait_for("the webhook digest", lambda: len(receiver.ok_calls("/hook")) == 1)
        call = receiver.ok_calls("/hook")[0]
        expected = hmac.new(SECRET.encode(), call.body, hashlib.sha256).hexdigest()
        assert call.headers["X-Hoptrace-Signature-256"] == f"sha256={expected}"
        assert call.headers["X-Hoptrace-Event"] == "digest"
        body = call.json()
        assert body["event"] == "digest" and body["project"] == "default"
        assert body["top"]["to"].startswith(soon.strftime("%Y-%m-%dT%H:00:00"))
        cart = body["top"]["functions"]["most_called"][0]
        assert (cart["name"], cart["count"], cart["previous"]["count"]) == ("cart", 40, 20)
        states = [n["state"] for n in api.get("/api/v1/notifications").json()["notifications"]]
        assert states == ["delivered", "delivered"]
        assert api.delete("/api/v1/digest").status_code == 204
        assert api.get("/api/v1/digest").json() == {"configured": False}
