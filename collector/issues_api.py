"""Issues, notification rules and channels under ``/api/v1``.

Access: with tokens configured, reading issues, rules, channels and notifications takes the
project's read (or admin) token, and so does changing an issue's status (triage from the UI);
creating, changing or deleting rules and channels takes the project's admin token
(``hoptrace project token NAME --kind admin``). A channel's secrets (Slack webhook URL, signing
key, GitHub token) are written, never returned: the API says which are set.
"""

from __future__ import annotations

import re
import time
from typing import Any, Literal, Optional

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, Field

from . import auth
from .api import _time_ns
from .app import collector_of
from .issues import WARNING, Rule
from .logs import log_json
from .notify import ISSUE_LOCK
from .store import issues_sql as db
from .store.graph_sql import Sql
from .store.logs_sql import logs_of_traces
from .views import rfc3339

API = "/api/v1"
router = APIRouter()
MINUTE_NS = 60 * 10**9
ID_MAX = 2**31 - 1  # ids are INTEGER columns: larger ones cannot exist (and would overflow the query)
INT_MIN = -(2**31)
DAY_NS = 24 * 3600 * 10**9

Kind = Literal["exception", "http_5xx", "timeout", "out_of_memory", "crash", "error", "warning"]
Status = Literal["open", "resolved", "ignored"]
Bucket = Literal["minute", "hour", "day"]
IfExists = Literal["reopen-and-comment", "comment", "nothing"]


def project_of(request: Request, write: bool = False, name: str | None = None) -> int:
    """The project a request acts on: its token's (read or admin; admin only when ``write``).

    Open collectors (no tokens) act on the default project, or on ``name`` when given.
    """
    c = collector_of(request)
    store = c.store
    if not store.has_tokens():
        if not name:
            return c.default_project_id
        found = store.project(name) if "\0" not in name else None
        if found is None:
            raise HTTPException(404, f"no project named {name!r}")
        return found.id
    grant = auth.grant_for(store, auth.token_from(request.headers, None if write else request.query_params))
    if grant is None:
        raise HTTPException(401, "a valid token is required (Authorization: Bearer <token>)")
    allowed = ("admin",) if write else ("read", "admin")
    if grant.kind not in allowed:
        raise HTTPException(403, f"this is a {grant.kind} token; this call needs {' or '.join(allowed)} token")
    if name and name != grant.project.name:
        raise HTTPException(403, f"this token opens project {grant.project.name!r}, not {name!r}")
    return grant.project.id


def issue_json(i: db.IssueRow) -> dict[str, Any]:
    return {
        "id": i.id,
        "kind": i.kind,
        "title": i.title,
        "culprit": i.culprit,
        "functions": list(i.functions),
        "count": i.count,
        "first_seen": rfc3339(i.first_seen_ns),
        "last_seen": rfc3339(i.last_seen_ns),
        "status": i.status,
        "regression": i.regression,
        "status_changed": rfc3339(i.status_ns),
        **({"subtype": i.culprit} if i.kind == WARNING else {}),
    }


# -- issues ---------------------------------------------------------------------------------------


@router.get(f"{API}/issues", tags=["issues"], summary="Errors grouped into issues, most recently seen first")
def list_issues(
    request: Request,
    project: Optional[str] = Query(None, description="project name (default: the token's)"),
    kind: Optional[str] = Query(None, pattern="^(exception|http_5xx|timeout|out_of_memory|crash|error|warning)$"),
    status: Optional[str] = Query(None, pattern="^(open|resolved|ignored)$"),
    function: Optional[str] = Query(None, description="only issues seen in this function"),
    from_: Optional[str] = Query(None, alias="from", description="seen at or after (RFC 3339 or unix ms)"),
    to: Optional[str] = Query(None, description="first seen before (RFC 3339 or unix ms)"),
    limit: int = Query(50, ge=1, le=500),
    cursor: Optional[str] = Query(None, description="next_cursor of the previous page"),
    spark: int = Query(0, ge=0, le=240, description="with this many bins: each issue's counts over from/to"),
) -> dict[str, Any]:
    """Each issue: ``id``, ``kind`` (exception, http_5xx, timeout, out_of_memory, crash, error; ``warning``, raised from
    function health, with its ``subtype``: memory, near_timeout, cold_starts, throttles,
    record_age, new_error_type), ``title``, ``culprit``,
    ``functions``, ``count``, ``first_seen``, ``last_seen``, ``status`` (open, resolved, ignored)
    and ``regression`` (it came back after being resolved); with ``spark=N``, ``spark``: its
    occurrences over ``from``/``to`` (default: the last day) in N equal bins, so a list draws its
    sparklines without asking for each issue's timeline."""
    project_id = project_of(request, name=project)
    before = None
    if cursor:
        if not re.fullmatch(r"[0-9]{1,19}:[0-9]{1,12}", cursor):
            raise HTTPException(400, "cursor is not one this API returned")
        seen, _, issue_id = cursor.partition(":")
        before = (min(int(seen), 2**63 - 1), min(int(issue_id), ID_MAX))
    start, end = _time_ns(from_, "from"), _time_ns(to, "to")
    query = db.IssueQuery(kind, status, function, start, end, limit, before)
    store = collector_of(request).store
    found = store.run_read(lambda sql: db.list_issues(sql, project_id, query))
    last = found[-1] if len(found) == limit else None
    listed = [issue_json(i) for i in found]
    if spark and found:
        end = time.time_ns() if end is None else end
        start = end - DAY_NS if start is None else start
        if start >= end:
            raise HTTPException(400, "from must be before to")
        first, stop = start // MINUTE_NS, -(-end // MINUTE_NS)
        counts = store.run_read(lambda sql: db.timelines(sql, project_id, [i.id for i in found], first, stop))
        for item, issue in zip(listed, found):
            item["spark"] = _bins(counts.get(issue.id, []), start, end, spark)
    return {"issues": listed, "next_cursor": f"{last.last_seen_ns}:{last.id}" if last else None}


def _bins(minutes: list[tuple[int, int]], start: int, end: int, bins: int) -> list[int]:
    """Per-minute counts summed into ``bins`` equal parts of [start, end) (a minute by its start;
    the minute holding ``start`` goes in the first)."""
    out = [0] * bins
    span = max(1, end - start)
    for minute, n in minutes:
        at = minute * MINUTE_NS
        out[min(bins - 1, max(0, (at - start) * bins // span))] += n
    return out


@router.get(f"{API}/issues/status", tags=["issues"], summary="How far issues and notifications lag behind ingest")
def issues_status(request: Request) -> dict[str, Any]:
    """``queued_spans``: error spans stored but not yet counted into issues; ``pending_notifications``:
    notifications not yet delivered (waiting for their next attempt)."""
    project_of(request)
    store = collector_of(request).store
    return {
        "queued_spans": store.run_read(db.queue_size),
        "pending_notifications": store.run_read(db.outbox_pending),
    }


@router.get(f"{API}/issues/{{issue_id}}", tags=["issues"], summary="One issue: timeline, latest occurrences")
def get_issue(
    request: Request,
    issue_id: int = Path(ge=1, le=ID_MAX),
    from_: Optional[str] = Query(None, alias="from", description="timeline start; default: a day before `to`"),
    to: Optional[str] = Query(None, description="timeline end; default: now"),
    occurrences: int = Query(10, ge=0, le=100, description="how many of the latest occurrences"),
) -> dict[str, Any]:
    """The issue, its per-minute ``timeline`` (minutes with occurrences in the window), its latest
    ``occurrences`` with message, stack trace, trace id and the ids of the transactions their trace
    belongs to, and the ``notifications`` sent (or being sent) about it."""
    project_id = project_of(request)
    store = collector_of(request).store
    end = _time_ns(to, "to") or time.time_ns()
    start = _time_ns(from_, "from")
    start = end - DAY_NS if start is None else start
    if start >= end:
        raise HTTPException(400, "from must be before to")

    def read(sql: Sql) -> dict[str, Any] | None:
        issue = db.get_issue(sql, project_id, issue_id)
        if issue is None:
            return None
        minutes = db.timeline(sql, project_id, issue_id, start // MINUTE_NS, -(-end // MINUTE_NS))
        latest = db.latest_occurrences(sql, project_id, issue_id, occurrences)
        sent = db.notifications(sql, project_id, issue_id, 50)
        return {
            **issue_json(issue),
            "timeline": {"from": rfc3339(start), "to": rfc3339(end),
                         "minutes": [{"minute": rfc3339(m * MINUTE_NS), "count": n} for m, n in minutes]},
            "occurrences": [
                {**occurrence_json(o), "logs": [log_json(r) for r in logs_of_traces(sql, project_id, [o.trace_id], 20)]}
                for o in latest
            ],
            "notifications": [notification_json(n) for n in sent],
        }  # fmt: skip

    found = store.run_read(read)
    if found is None:
        raise HTTPException(404, f"no issue {issue_id} in this project")
    return found


def occurrence_json(o: db.OccurrenceRow) -> dict[str, Any]:
    return {
        "trace_id": o.trace_id.hex(),
        "span_id": o.span_id.hex(),
        "time": rfc3339(o.time_ns),
        "function": o.function,
        "message": o.message,
        "stacktrace": o.stacktrace,
        "transaction_ids": [t.hex() for t in o.transaction_ids],
    }


def notification_json(n: db.NotificationRow) -> dict[str, Any]:
    return {
        "id": n.id,
        "issue_id": n.issue_id,
        "channel_id": n.channel_id,
        "rule_id": n.rule_id,
        "event": n.event,
        "created": rfc3339(n.created_ns),
        "state": n.state,
        "attempts": n.attempts,
        "last_error": n.last_error or None,
        "done": rfc3339(n.done_ns) if n.done_ns is not None else None,
    }


class StatusChange(BaseModel):
    status: Status = Field(description="open, resolved or ignored")


def _change_status(request: Request, issue_id: int, change: StatusChange) -> dict[str, Any]:
    project_id = project_of(request)
    store = collector_of(request).store

    def write(sql: Sql) -> db.IssueRow | None:
        changed = db.set_status(sql, project_id, issue_id, change.status)
        return db.get_issue(sql, project_id, issue_id) if changed else None

    changed = store.run_write(write, lock=ISSUE_LOCK)  # in turn with the issue pass: neither undoes the other
    if changed is None:
        raise HTTPException(404, f"no issue {issue_id} in this project")
    return issue_json(changed)


@router.post(f"{API}/issues/{{issue_id}}/status", tags=["issues"], summary="Resolve, ignore or reopen an issue")
def post_status(request: Request, change: StatusChange, issue_id: int = Path(ge=1, le=ID_MAX)) -> dict[str, Any]:
    """A resolved issue that occurs again reopens by itself, marked ``regression``; an ignored one
    keeps counting but notifies no one. Takes a read or admin token."""
    return _change_status(request, issue_id, change)


@router.patch(f"{API}/issues/{{issue_id}}", tags=["issues"], summary="Resolve, ignore or reopen an issue")
def patch_issue(request: Request, change: StatusChange, issue_id: int = Path(ge=1, le=ID_MAX)) -> dict[str, Any]:
    """The same as ``POST /api/v1/issues/{id}/status``."""
    return _change_status(request, issue_id, change)


@router.get(f"{API}/notifications", tags=["notifications"], summary="Notifications sent or being sent")
def list_notifications(
    request: Request,
    issue_id: Optional[int] = Query(None, ge=1, le=ID_MAX),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """Newest first: ``state`` pending (with ``attempts`` and ``last_error``), delivered, failed or
    dropped (its channel was deleted)."""
    project_id = project_of(request)
    rows = collector_of(request).store.run_read(lambda sql: db.notifications(sql, project_id, issue_id, limit))
    return {"notifications": [notification_json(n) for n in rows]}


# -- channels ------------------------------------------------------------------------------------

_SECRET_FIELDS = {"slack": ("url",), "webhook": ("secret",), "github": ("token",)}
_CONFIG_FIELDS = {"slack": (), "webhook": ("url",), "github": ("owner", "repo", "api_url", "labels", "if_exists")}


class ChannelIn(BaseModel):
    """A channel. Slack: ``url`` (the incoming webhook, kept secret). Webhook: ``url`` and
    ``secret`` (the HMAC-SHA256 key). GitHub: ``owner``, ``repo``, ``token``, optional ``labels``,
    ``if_exists`` and ``api_url`` (GitHub Enterprise)."""

    name: str = Field(min_length=1, max_length=200)
    type: Literal["slack", "webhook", "github"]
    url: Optional[str] = Field(None, max_length=2000)
    secret: Optional[str] = Field(None, min_length=1, max_length=500)
    token: Optional[str] = Field(None, min_length=1, max_length=500)
    owner: Optional[str] = Field(None, max_length=100)
    repo: Optional[str] = Field(None, max_length=100)
    api_url: Optional[str] = Field(None, max_length=500)
    labels: list[str] = Field(default_factory=list, max_length=20)
    if_exists: IfExists = "reopen-and-comment"


class ChannelPatch(BaseModel):
    """Fields to change; secrets left out stay as they are."""

    name: Optional[str] = Field(None, min_length=1, max_length=200)
    url: Optional[str] = Field(None, max_length=2000)
    secret: Optional[str] = Field(None, min_length=1, max_length=500)
    token: Optional[str] = Field(None, min_length=1, max_length=500)
    owner: Optional[str] = Field(None, max_length=100)
    repo: Optional[str] = Field(None, max_length=100)
    api_url: Optional[str] = Field(None, max_length=500)
    labels: Optional[list[str]] = Field(None, max_length=20)
    if_exists: Optional[IfExists] = None


def _check_url(value: Any, name: str) -> None:
    if not isinstance(value, str) or not re.match(r"https?://[^/\s]+", value):
        raise HTTPException(400, f"{name} must be an http:// or https:// URL")


def _channel_row(channel_id: int, name: str, type_: str, fields: dict[str, Any]) -> db.ChannelRow:
    """Split a channel's fields into config and secret, checking what its type needs."""
    secret = {k: fields[k] for k in _SECRET_FIELDS[type_] if fields.get(k) is not None}
    config = {k: fields[k] for k in _CONFIG_FIELDS[type_] if fields.get(k) is not None}
    if type_ == "slack":
        if "url" not in secret:
            raise HTTPException(400, "a slack channel needs url: its incoming webhook URL")
        _check_url(secret["url"], "url")
    if type_ == "webhook":
        if "url" not in config or "secret" not in secret:
            raise HTTPException(400, "a webhook channel needs url and secret (the HMAC-SHA256 signing key)")
        _check_url(config["url"], "url")
    if type_ == "github":
        missing = [k for k in ("owner", "repo") if not config.get(k)] + ([] if "token" in secret else ["token"])
        if missing:
            raise HTTPException(400, f"a github channel needs {', '.join(missing)}")
        for part in ("owner", "repo"):
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", config[part]):
                raise HTTPException(400, f"{part}={config[part]!r} is not a GitHub {part} name")
        if "api_url" in config:
            _check_url(config["api_url"], "api_url")
        config.setdefault("if_exists", "reopen-and-comment")
        config.setdefault("labels", [])
    return db.ChannelRow(channel_id, name, type_, config, secret)


def channel_json(c: db.ChannelRow) -> dict[str, Any]:
    """A channel as the API shows it: never its secrets, only which are set."""
    return {"id": c.id, "name": c.name, "type": c.type, "config": dict(c.config), "secrets_set": sorted(c.secret)}


@router.get(f"{API}/channels", tags=["notifications"], summary="Notification channels (secrets never shown)")
def list_channels(request: Request) -> dict[str, Any]:
    project_id = project_of(request)
    rows = collector_of(request).store.run_read(lambda sql: db.channels(sql, project_id))
    return {"channels": [channel_json(c) for c in rows]}


@router.post(f"{API}/channels", tags=["notifications"], summary="Add a channel (admin token)", status_code=201)
def create_channel(request: Request, body: ChannelIn) -> dict[str, Any]:
    project_id = project_of(request, write=True)
    row = _channel_row(0, body.name, body.type, body.model_dump())
    store = collector_of(request).store
    new_id = store.run_write(lambda sql: db.save_channel(sql, project_id, row))
    return channel_json(db.ChannelRow(new_id, row.name, row.type, row.config, row.secret))


def _get_channel(request: Request, project_id: int, channel_id: int) -> db.ChannelRow:
    found = collector_of(request).store.run_read(lambda sql: db.channel(sql, project_id, channel_id))
    if found is None:
        raise HTTPException(404, f"no channel {channel_id} in this project")
    return found


@router.get(f"{API}/channels/{{channel_id}}", tags=["notifications"], summary="One channel (secrets never shown)")
def get_channel(request: Request, channel_id: int = Path(ge=1, le=ID_MAX)) -> dict[str, Any]:
    return channel_json(_get_channel(request, project_of(request), channel_id))


@router.patch(f"{API}/channels/{{channel_id}}", tags=["notifications"], summary="Change a channel (admin token)")
def patch_channel(request: Request, body: ChannelPatch, channel_id: int = Path(ge=1, le=ID_MAX)) -> dict[str, Any]:
    project_id = project_of(request, write=True)
    old = _get_channel(request, project_id, channel_id)
    fields = {**old.config, **old.secret, **body.model_dump(exclude_none=True)}
    row = _channel_row(channel_id, body.name or old.name, old.type, fields)
    collector_of(request).store.run_write(lambda sql: db.save_channel(sql, project_id, row))
    return channel_json(row)


@router.delete(f"{API}/channels/{{channel_id}}", tags=["notifications"], summary="Delete a channel and its rules",
               status_code=204)  # fmt: skip
def delete_channel(request: Request, channel_id: int = Path(ge=1, le=ID_MAX)) -> Response:
    project_id = project_of(request, write=True)
    if not collector_of(request).store.run_write(lambda sql: db.delete_channel(sql, project_id, channel_id)):
        raise HTTPException(404, f"no channel {channel_id} in this project")
    return Response(status_code=204)


# -- rules ---------------------------------------------------------------------------------------


class RuleIn(BaseModel):
    """When to notify a channel about an issue (faultline's semantics): the first occurrence (and a
    regression) always; then whenever the count in the current ``bucket`` has reached
    ``threshold`` and is a multiple of ``interval``. A negative threshold: the first occurrence only.
    ``kinds`` and ``functions`` narrow it (empty: all)."""

    name: str = Field(min_length=1, max_length=200)
    channel_id: int = Field(ge=1, le=ID_MAX)
    threshold: int = Field(1, ge=INT_MIN, le=ID_MAX)
    interval: int = Field(1, ge=1, le=ID_MAX)
    bucket: Bucket = "hour"
    kinds: list[Kind] = Field(default_factory=list)
    functions: list[str] = Field(default_factory=list, max_length=100)
    enabled: bool = True


class RulePatch(BaseModel):
    name: Optional[str] = Field(None, min_length=1, max_length=200)
    channel_id: Optional[int] = Field(None, ge=1, le=ID_MAX)
    threshold: Optional[int] = Field(None, ge=INT_MIN, le=ID_MAX)
    interval: Optional[int] = Field(None, ge=1, le=ID_MAX)
    bucket: Optional[Bucket] = None
    kinds: Optional[list[Kind]] = None
    functions: Optional[list[str]] = Field(None, max_length=100)
    enabled: Optional[bool] = None


def rule_json(rule: Rule, name: str) -> dict[str, Any]:
    return {
        "id": rule.id, "name": name, "channel_id": rule.channel_id, "threshold": rule.threshold,
        "interval": rule.interval, "bucket": rule.bucket, "kinds": list(rule.kinds), "functions": list(rule.functions),
        "enabled": rule.enabled,
    }  # fmt: skip


def _save_rule(request: Request, project_id: int, rule: Rule, name: str) -> dict[str, Any]:
    def write(sql: Sql) -> int:
        if db.channel(sql, project_id, rule.channel_id) is None:
            raise HTTPException(400, f"no channel {rule.channel_id} in this project: create it first")
        return db.save_rule(sql, project_id, name, rule)

    saved = collector_of(request).store.run_write(write)
    if not saved:
        raise HTTPException(404, f"no rule {rule.id} in this project")
    return rule_json(Rule(saved, *_rule_fields(rule)), name)


def _rule_fields(r: Rule) -> tuple[Any, ...]:
    return (r.channel_id, r.threshold, r.interval, r.bucket, r.kinds, r.functions, r.enabled)


@router.get(f"{API}/rules", tags=["notifications"], summary="Notification rules")
def list_rules(request: Request) -> dict[str, Any]:
    project_id = project_of(request)
    store = collector_of(request).store
    rules, names = store.run_read(lambda sql: (db.load_rules(sql, project_id), db.rule_names(sql, project_id)))
    return {"rules": [rule_json(r, names.get(r.id, "")) for r in rules]}


@router.post(f"{API}/rules", tags=["notifications"], summary="Add a rule (admin token)", status_code=201)
def create_rule(request: Request, body: RuleIn) -> dict[str, Any]:
    project_id = project_of(request, write=True)
    rule = Rule(0, body.channel_id, body.threshold, body.interval, body.bucket, tuple(body.kinds),
                tuple(body.functions), body.enabled)  # fmt: skip
    return _save_rule(request, project_id, rule, body.name)


def _get_rule(request: Request, project_id: int, rule_id: int) -> tuple[Rule, str]:
    store = collector_of(request).store
    rules, names = store.run_read(lambda sql: (db.load_rules(sql, project_id), db.rule_names(sql, project_id)))
    for rule in rules:
        if rule.id == rule_id:
            return rule, names.get(rule_id, "")
    raise HTTPException(404, f"no rule {rule_id} in this project")


@router.get(f"{API}/rules/{{rule_id}}", tags=["notifications"], summary="One rule")
def get_rule(request: Request, rule_id: int = Path(ge=1, le=ID_MAX)) -> dict[str, Any]:
    return rule_json(*_get_rule(request, project_of(request), rule_id))


@router.patch(f"{API}/rules/{{rule_id}}", tags=["notifications"], summary="Change a rule (admin token)")
def patch_rule(request: Request, body: RulePatch, rule_id: int = Path(ge=1, le=ID_MAX)) -> dict[str, Any]:
    project_id = project_of(request, write=True)
    old, name = _get_rule(request, project_id, rule_id)
    change = body.model_dump(exclude_none=True)
    rule = Rule(
        rule_id,
        change.get("channel_id", old.channel_id),
        change.get("threshold", old.threshold),
        change.get("interval", old.interval),
        change.get("bucket", old.bucket),
        tuple(change.get("kinds", old.kinds)),
        tuple(change.get("functions", old.functions)),
        change.get("enabled", old.enabled),
    )
    return _save_rule(request, project_id, rule, change.get("name", name))


@router.delete(f"{API}/rules/{{rule_id}}", tags=["notifications"], summary="Delete a rule (admin token)",
               status_code=204)  # fmt: skip
def delete_rule(request: Request, rule_id: int = Path(ge=1, le=ID_MAX)) -> Response:
    project_id = project_of(request, write=True)
    if not collector_of(request).store.run_write(lambda sql: db.delete_rule(sql, project_id, rule_id)):
        raise HTTPException(404, f"no rule {rule_id} in this project")
    return Response(status_code=204)
