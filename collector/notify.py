"""The collector's two background loops for issues: the issue pass and the notifier.

- ``IssuePass`` counts queued error spans into issues (``store/issues_sql.py``) and, in the same
  transaction, writes the notifications the rules prescribe into the outbox.
- ``Notifier`` delivers the outbox: it claims due notifications (a lease in the store, so a
  replica or a restart never sends one another is sending), sends each to its channel, and marks
  it delivered on a 2xx — or due again after a backoff, or failed for good after a 4xx or too
  many attempts. Nothing here runs on the ingest path: a dead, slow or failing receiver costs
  ingest nothing, and what is not delivered yet waits in the store across restarts.

Channels: a Slack incoming webhook (Block Kit), a generic JSON webhook signed with HMAC-SHA256
(``X-Hoptrace-Signature-256: sha256=<hex>`` of the body), and GitHub issues through the REST
API (create; when one exists: reopen and comment, comment only, or nothing).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from typing import Any

from . import digest
from .store import SpanStore, StepLoop
from .store import issues_sql as db
from .store.issues_sql import Delivery

logger = logging.getLogger("hoptrace.collector")

# pg_advisory_xact_lock key of the issue pass ("hopissu"): replicas count one batch at a time.
ISSUE_LOCK = 0x686F7069737375
CHANNEL_TYPES = ("slack", "webhook", "github")
GITHUB_IF_EXISTS = ("reopen-and-comment", "comment", "nothing")
USER_AGENT = "hoptrace-notifier"


class IssuePass:
    """Counts queued error spans into issues, a bounded batch per transaction."""

    def __init__(
        self, store: SpanStore, on_notifications: Callable[[], None] = lambda: None, record_age_warn_s: float = 300.0
    ) -> None:
        self.store = store
        self._on_notifications = on_notifications
        self._record_age_ms = record_age_warn_s * 1000
        self._loop = StepLoop(self.step, "hoptrace-issues", idle_s=0.5)

    def step(self) -> int:
        """One batch: prepare on a reader, apply in one write transaction; returns its row count."""
        while True:
            prepared = self.store.run_read(partial(db.prepare, record_age_ms=self._record_age_ms))
            if prepared is None:
                return 0
            if self.store.run_write(partial(db.apply, prepared=prepared), lock=ISSUE_LOCK):
                if prepared.occurrences or prepared.health:  # health: warnings may notify
                    self._on_notifications()
                return len(prepared.rows)

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()


@dataclass(frozen=True)
class NotifyConfig:
    public_url: str = "http://127.0.0.1:4318"  # where links in messages point (the UI)
    backoff_s: float = 2.0  # first retry after this; doubles per attempt
    max_backoff_s: float = 600.0
    max_attempts: int = 12
    timeout_s: float = 10.0  # per HTTP call to a receiver
    lease_s: float = 120.0  # a claimed notification comes due again after this if never finished


class Notifier:
    """Delivers the outbox (see the module docstring)."""

    def __init__(self, store: SpanStore, config: NotifyConfig | None = None) -> None:
        self.store = store
        self.config = config or NotifyConfig()
        self.digests = digest.DigestScheduler(store)
        self._loop = StepLoop(self.step, "hoptrace-notifier", idle_s=min(1.0, self.config.backoff_s))

    def start(self) -> None:
        self._loop.start()

    def wake(self) -> None:
        self._loop.wake()

    def stop(self) -> None:
        self._loop.stop()

    def step(self) -> int:
        try:
            self.digests.step()  # a due weekly digest goes into the outbox, delivered below
        except Exception:  # the digest must never stop notifications
            logger.exception("hoptrace: the weekly digest could not be prepared")
        now = time.time_ns()
        if not self.store.run_read(partial(db.any_due, now=now)):
            return 0  # polled on a reader: an idle notifier never takes the write lock
        lease = int(self.config.lease_s * 1e9)
        claimed = self.store.run_write(lambda sql: db.claim_due(sql, now, lease, 16))
        for delivery in claimed:
            if self._loop.stopping:  # give the rest back at once rather than let their leases run out
                self.store.run_write(partial(db.release, delivery_id=delivery.id, now=time.time_ns()))
                continue
            state, error = self._attempt(delivery)
            attempts = delivery.attempts + 1
            next_ns = time.time_ns()
            if state == "pending":
                if attempts >= self.config.max_attempts:
                    state, error = "failed", f"gave up after {attempts} attempts: {error}"
                else:
                    delay = min(self.config.max_backoff_s, self.config.backoff_s * 2 ** (attempts - 1))
                    next_ns += int(delay * 1e9)
            if state != "delivered":
                logger.warning("hoptrace: notification %d to %s channel %r: %s (%s)", delivery.id,
                               delivery.channel.type, delivery.channel.name, error, state)  # fmt: skip
            self.store.run_write(
                partial(db.finish, delivery_id=delivery.id, state=state, error=error, next_attempt_ns=next_ns)
            )
        return len(claimed)

    def _attempt(self, d: Delivery) -> tuple[str, str]:
        """(``delivered`` | ``pending`` | ``failed``, what went wrong)."""
        try:
            if d.event == digest.EVENT:
                return self._digest(d)
            if d.channel.type == "slack":
                _post(d.channel.secret["url"], slack_message(d, self.config.public_url), {}, self.config.timeout_s)
            elif d.channel.type == "webhook":
                body = webhook_body(d, self.config.public_url)
                _post(d.channel.config["url"], body, webhook_headers(d, body, d.channel.secret["secret"]),
                      self.config.timeout_s)  # fmt: skip
            elif d.channel.type == "github":
                self._github(d)
            else:
                return "failed", f"unknown channel type {d.channel.type!r}"
        except _Refused as exc:
            return "failed", str(exc)
        except (_Retry, OSError) as exc:
            return "pending", str(exc) or type(exc).__name__
        return "delivered", ""

    def _digest(self, d: Delivery) -> tuple[str, str]:
        url, timeout = self.config.public_url, self.config.timeout_s
        if d.channel.type == "slack":
            _post(d.channel.secret["url"], digest.slack_digest(d.project, d.payload, url), {}, timeout)
        elif d.channel.type == "webhook":
            body = digest.webhook_digest(d.id, d.project, d.payload, url)
            _post(d.channel.config["url"], body, webhook_headers(d, body, d.channel.secret["secret"]), timeout)
        else:
            return "failed", f"a digest goes to a slack or webhook channel, not {d.channel.type}"
        return "delivered", ""

    def _github(self, d: Delivery) -> None:
        cfg, token = d.channel.config, d.channel.secret["token"]
        base = f"{cfg.get('api_url') or 'https://api.github.com'}".rstrip("/") + f"/repos/{cfg['owner']}/{cfg['repo']}"
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                   "X-GitHub-Api-Version": "2022-11-28"}  # fmt: skip
        timeout = self.config.timeout_s
        number = self.store.run_read(lambda sql: db.github_issue(sql, d.channel.id, d.issue_id))
        link = issue_url(self.config.public_url, d.issue_id)
        if number is None:
            created = _post(f"{base}/issues", github_issue(d, link, cfg.get("labels") or []), headers, timeout)
            number = int(json.loads(created or b"{}").get("number") or 0)
            if number:
                self.store.run_write(lambda sql: db.remember_github_issue(sql, d.channel.id, d.issue_id, number))
            return
        mode = cfg.get("if_exists") or "reopen-and-comment"
        if mode == "nothing":
            return
        if mode == "reopen-and-comment":
            _post(f"{base}/issues/{number}", {"state": "open"}, headers, timeout, method="PATCH")
        _post(f"{base}/issues/{number}/comments", {"body": github_comment(d, link)}, headers, timeout)


class _Retry(Exception):
    """The receiver may take it later (5xx, 408, 429, no answer)."""


class _Refused(Exception):
    """The receiver refused it for good (another 4xx): retrying would not help."""


def _post(url: str, body: Any, headers: dict[str, str], timeout_s: float, method: str = "POST") -> bytes:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Content-Type": "application/json", "User-Agent": USER_AGENT, **headers})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:  # http(s) URLs only: checked on save
            return bytes(answer.read())
    except urllib.error.HTTPError as exc:
        text = f"{method} {_host(url)} answered {exc.code}"
        if 400 <= exc.code < 500 and exc.code not in (408, 425, 429):
            raise _Refused(text) from None
        raise _Retry(text) from None
    except urllib.error.URLError as exc:
        raise _Retry(f"{method} {_host(url)}: {exc.reason}") from None


def _host(url: str) -> str:
    """The URL without its path (a Slack webhook's path is its secret)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


# -- messages ---------------------------------------------------------------------------------------


def issue_url(public_url: str, issue_id: int) -> str:
    return f"{public_url.rstrip('/')}/issues/{issue_id}"


def transaction_url(public_url: str, trace_id: str) -> str:
    # A trace's transaction is found from any of its traces' ids (the UI searches by trace id).
    return f"{public_url.rstrip('/')}/transactions?q={trace_id}"


_HEADLINES = {"new": "New issue", "regression": "Regression", "threshold": "Still occurring"}


def _when(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(d: Delivery, public_url: str) -> dict[str, Any]:
    """A Block Kit message: headline, the issue linked back to the UI, counts, the stack trace."""
    issue, occ, rule = d.payload["issue"], d.payload["occurrence"], d.payload["rule"]
    link = issue_url(public_url, d.issue_id)
    headline = f"{_HEADLINES.get(d.event, d.event)}: {issue['title']}"
    functions = ", ".join(issue["functions"]) or "-"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(headline, 150)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _cut(
            f"*<{link}|{_slack_escape(issue['title'])}>*\n{issue['kind']} in {_slack_escape(functions)}"
            f" · {_slack_escape(issue['culprit'])}", 3000)}},
        {"type": "section", "fields": [
            {"type": "mrkdwn",
             "text": f"*Occurrences*\n{issue['count']} ({rule['bucket_count']} this {rule['bucket']})"},
            {"type": "mrkdwn", "text": f"*Project*\n{_slack_escape(d.project)}"},
            {"type": "mrkdwn", "text": f"*First seen*\n{_when(issue['first_seen_ns'])}"},
            {"type": "mrkdwn", "text": f"*Last seen*\n{_when(issue['last_seen_ns'])}"},
        ]},
    ]  # fmt: skip
    if occ.get("stacktrace"):
        trace = _slack_escape(occ["stacktrace"][-2800:]).replace("```", "'''")
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"```{trace}```"}})
    blocks.append({"type": "actions", "elements": [
        {"type": "button", "text": {"type": "plain_text", "text": "Open the issue"}, "url": link},
        {"type": "button", "text": {"type": "plain_text", "text": "Its transaction"},
         "url": transaction_url(public_url, occ["trace_id"])},
    ]})  # fmt: skip
    return {"text": f"{headline} ({link})", "blocks": blocks}


def webhook_body(d: Delivery, public_url: str) -> bytes:
    """The generic webhook's JSON: the issue as it was when counted, with links back to the UI."""
    issue, occ = dict(d.payload["issue"]), dict(d.payload["occurrence"])
    issue["url"] = issue_url(public_url, d.issue_id)
    occ["transaction_url"] = transaction_url(public_url, occ["trace_id"])
    document = {"delivery": d.id, "event": d.event, "project": d.project, "issue": issue, "occurrence": occ,
                "rule": d.payload["rule"]}  # fmt: skip
    return json.dumps(document, separators=(",", ":")).encode()


def webhook_headers(d: Delivery, body: bytes, secret: str) -> dict[str, str]:
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "X-Hoptrace-Event": d.event,
        "X-Hoptrace-Delivery": str(d.id),
        "X-Hoptrace-Signature-256": f"sha256={signature}",
    }


def github_issue(d: Delivery, link: str, labels: list[str]) -> dict[str, Any]:
    issue, occ = d.payload["issue"], d.payload["occurrence"]
    body = [
        f"**{issue['kind']}** in {', '.join(issue['functions']) or '-'} — [open in hoptrace]({link})",
        "",
        f"- culprit: `{issue['culprit']}`",
        f"- occurrences: {issue['count']}",
        f"- first seen: {_when(issue['first_seen_ns'])}",
        f"- trace: `{occ['trace_id']}`",
    ]
    if occ.get("stacktrace"):
        body += ["", "```", occ["stacktrace"].replace("```", "'''"), "```"]
    return {"title": _cut(f"[hoptrace] {issue['title']}", 250), "body": "\n".join(body), "labels": list(labels)}


def github_comment(d: Delivery, link: str) -> str:
    issue, occ = d.payload["issue"], d.payload["occurrence"]
    return (
        f"{_HEADLINES.get(d.event, d.event)}: {issue['count']} occurrences so far (last {_when(issue['last_seen_ns'])},"
        f" in {occ['function']}, trace `{occ['trace_id']}`). [Open in hoptrace]({link})"
    )
