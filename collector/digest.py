"""The weekly digest: a project's top-N with trends (``collector/top.py``), sent once a week
through one of its notification channels (a Slack incoming webhook as Block Kit, or the signed
JSON webhook; a GitHub issue a week would be noise, so GitHub channels are refused).

When: a project's digest names a UTC weekday and hour; its *slot* is the latest such instant
at or before now. The notifier's loop asks whether a project's current slot is later than the
last one sent; if so, in one write transaction it moves ``last_slot_ns`` to that slot (only if
still earlier: a replica or a restart never sends a week twice) and writes the digest into the
notification outbox, which delivers it like any notification (retried with backoff, once after
a 2xx, still after a restart). The digest covers the seven days before its slot against the
seven before those. Saving a digest's settings marks the current slot as sent, so the first
digest goes out at the next slot, not at once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from typing import Any

from .store import SpanStore
from .store.graph_sql import Sql

logger = logging.getLogger("hoptrace.collector")
HOUR_NS = 3600 * 10**9
DAY_NS = 24 * HOUR_NS
WEEK_NS = 7 * DAY_NS
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
CHANNEL_TYPES = ("slack", "webhook")
EVENT = "digest"


@dataclass(frozen=True)
class Digest:
    """A project's digest settings."""

    channel_id: int
    weekday: int = 0  # 0 = Monday (UTC)
    hour: int = 8  # UTC
    limit: int = 5  # items per ranking
    enabled: bool = True
    last_slot_ns: int = 0


def slot_at(weekday: int, hour: int, now_ns: int) -> int:
    """The latest instant at or before ``now_ns`` that is ``weekday`` (0 = Monday) at ``hour``:00 UTC."""
    day = now_ns // DAY_NS * DAY_NS
    # 1970-01-01 was a Thursday (weekday 3).
    today = (now_ns // DAY_NS + 3) % 7
    slot = day - ((today - weekday) % 7) * DAY_NS + hour * HOUR_NS
    return slot if slot <= now_ns else slot - WEEK_NS


# -- storage ---------------------------------------------------------------------------------------

COLUMNS = "channel_id, weekday, hour, top_limit, enabled, last_slot_ns"


def load(sql: Sql, project: int) -> Digest | None:
    rows = sql.rows(f"SELECT {COLUMNS} FROM digests WHERE project_id = ?", [project])
    if not rows:
        return None
    r = rows[0]
    return Digest(int(r[0]), int(r[1]), int(r[2]), int(r[3]), bool(r[4]), int(r[5]))


def save(sql: Sql, project: int, d: Digest, now_ns: int) -> Digest:
    """Store the settings; the current slot counts as sent (the first digest goes at the next)."""
    saved = Digest(d.channel_id, d.weekday, d.hour, d.limit, d.enabled, slot_at(d.weekday, d.hour, now_ns))
    sql.run(
        f"INSERT INTO digests (project_id, {COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (project_id) DO UPDATE"
        " SET channel_id = excluded.channel_id, weekday = excluded.weekday, hour = excluded.hour,"
        " top_limit = excluded.top_limit, enabled = excluded.enabled, last_slot_ns = excluded.last_slot_ns",
        [project, saved.channel_id, saved.weekday, saved.hour, saved.limit, int(saved.enabled), saved.last_slot_ns],
    )
    return saved


def delete(sql: Sql, project: int) -> bool:
    return sql.run("DELETE FROM digests WHERE project_id = ?", [project]) > 0


def due(sql: Sql, now_ns: int) -> list[tuple[int, Digest, int]]:
    """(project, settings, slot) of every enabled digest whose current slot was not sent yet."""
    out = []
    for r in sql.rows(f"SELECT project_id, {COLUMNS} FROM digests WHERE enabled = 1", []):
        d = Digest(int(r[1]), int(r[2]), int(r[3]), int(r[4]), bool(r[5]), int(r[6]))
        slot = slot_at(d.weekday, d.hour, now_ns)
        if slot > d.last_slot_ns:
            out.append((int(r[0]), d, slot))
    return out


def enqueue(sql: Sql, project: int, channel_id: int, slot_ns: int, payload: dict[str, Any]) -> bool:
    """Mark the slot sent and put the digest in the outbox (due at once, by the wall clock),
    unless another pass did already. ``slot_ns`` 0: a digest asked for now
    (``POST /api/v1/digest/send``), whatever the schedule."""
    if slot_ns and not sql.run(
        "UPDATE digests SET last_slot_ns = ? WHERE project_id = ? AND last_slot_ns < ?", [slot_ns, project, slot_ns]
    ):
        return False
    sql.run(
        "INSERT INTO notify_outbox (project_id, channel_id, rule_id, issue_id, event, payload, created_ns, attempts,"
        " next_attempt_ns, state, last_error) VALUES (?, ?, 0, 0, ?, ?, ?, 0, ?, 'pending', '')",
        [project, channel_id, EVENT, json.dumps(payload, separators=(",", ":")), time.time_ns(), time.time_ns()],
    )
    return True


# -- the scheduler -------------------------------------------------------------------------------


class DigestScheduler:
    """Puts due digests into the outbox; ``step(now_ns)`` takes the time it is told (tests)."""

    def __init__(self, store: SpanStore, clock: Callable[[], int] = time.time_ns) -> None:
        self.store = store
        self.clock = clock

    def step(self, now_ns: int | None = None) -> int:
        """Enqueue every due digest; returns how many. Reads only, unless one is due."""
        from .top_api import compute  # the API module holds the one way the rankings are computed

        now = self.clock() if now_ns is None else now_ns
        sent = 0
        for project, d, slot in self.store.run_read(lambda sql: due(sql, now)):
            payload = digest_payload(compute(self.store, project, slot - WEEK_NS, slot, d.limit))
            write = partial(enqueue, project=project, channel_id=d.channel_id, slot_ns=slot, payload=payload)
            if self.store.run_write(write):
                sent += 1
        return sent


def digest_payload(top: dict[str, Any]) -> dict[str, Any]:
    return {"event": EVENT, "top": top}


# -- messages ------------------------------------------------------------------------------------

_GROUPS = (("functions", "Functions"), ("routes", "API routes"), ("entries", "Transaction entries"))
_RANKINGS = (("slowest", "Slowest (p95)", "p95_ms"), ("most_called", "Most called", "count"),
             ("most_failing", "Most failing", "errors"))  # fmt: skip


def _change(item: dict[str, Any], metric: str) -> str:
    if item.get("new"):
        return "new"
    c = item["change"].get(metric)
    return "–" if c is None else f"{c:+.0%}"


def _figure(item: dict[str, Any], metric: str) -> str:
    if metric == "p95_ms":
        return "–" if item["p95_ms"] is None else f"{item['p95_ms']:.0f} ms"
    return str(item[metric])


def lines(top: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """Per group, one text line per ranking item: ``name: figure (change week over week)``."""
    out = []
    for key, title in _GROUPS:
        rows = []
        for rank, label, metric in _RANKINGS:
            items = top[key][rank]
            listed = "; ".join(f"{i['name']} {_figure(i, metric)} ({_change(i, metric)})" for i in items) or "none"
            rows.append(f"{label}: {listed}")
        out.append((title, rows))
    return out


def _day(iso: str) -> str:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def slack_digest(project: str, payload: dict[str, Any], public_url: str) -> dict[str, Any]:
    """A Block Kit message: a header, the window, a section per group, a link to the Top page."""
    top = payload["top"]
    headline = f"Weekly digest: {project}"
    window = f"{_day(top['from'])} – {_day(top['to'])}, against the week before"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": headline[:150]}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": window}]},
    ]
    for title, rows in lines(top):
        text = f"*{title}*\n" + "\n".join(f"• {_escape(r)}" for r in rows)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}})
    link = f"{public_url.rstrip('/')}/top"
    blocks.append({"type": "actions", "elements": [
        {"type": "button", "text": {"type": "plain_text", "text": "Open the top lists"}, "url": link}]})  # fmt: skip
    return {"text": f"{headline} ({link})", "blocks": blocks}


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def webhook_digest(delivery_id: int, project: str, payload: dict[str, Any], public_url: str) -> bytes:
    document = {"delivery": delivery_id, "event": EVENT, "project": project, "url": f"{public_url.rstrip('/')}/top",
                "top": payload["top"]}  # fmt: skip
    return json.dumps(document, separators=(",", ":")).encode()
