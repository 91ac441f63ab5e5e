"""Tables of issues and notifications: one migration (``schema.MIGRATIONS``), in the SQL both
backends accept (``{blob}``, ``{serial}`` spelled per backend), and what retention deletes."""

from __future__ import annotations

ISSUES_MIGRATION: list[str] = [
    # Error spans queued by ingest in the same transaction as the spans (packed trace + span
    # ids, like graph_backlog); the issue pass groups them and deletes the row in one transaction.
    """CREATE TABLE issue_queue (
        id {serial} PRIMARY KEY,
        project_id INTEGER NOT NULL,
        spans {blob} NOT NULL
    )""",
    """CREATE TABLE issues (
        id {serial} PRIMARY KEY,
        project_id INTEGER NOT NULL,
        fingerprint TEXT NOT NULL,
        kind TEXT NOT NULL,
        title TEXT NOT NULL,
        culprit TEXT NOT NULL,
        first_seen_ns BIGINT NOT NULL,
        last_seen_ns BIGINT NOT NULL,
        count BIGINT NOT NULL,
        status TEXT NOT NULL,
        regression SMALLINT NOT NULL,
        status_ns BIGINT NOT NULL,
        UNIQUE (project_id, fingerprint)
    )""",
    "CREATE INDEX issues_by_last_seen ON issues (project_id, last_seen_ns)",
    """CREATE TABLE issue_functions (
        project_id INTEGER NOT NULL,
        function TEXT NOT NULL,
        issue_id INTEGER NOT NULL,
        PRIMARY KEY (project_id, function, issue_id)
    )""",
    "CREATE INDEX issue_functions_by_issue ON issue_functions (project_id, issue_id)",
    # The count timeline: occurrences per issue and minute (hour and day buckets are sums).
    """CREATE TABLE issue_minutes (
        project_id INTEGER NOT NULL,
        issue_id INTEGER NOT NULL,
        minute BIGINT NOT NULL,
        count BIGINT NOT NULL,
        PRIMARY KEY (project_id, issue_id, minute)
    )""",
    # Every occurrence by its span (the key keeps a batch sent twice from counting twice).
    """CREATE TABLE issue_occurrences (
        project_id INTEGER NOT NULL,
        trace_id {blob} NOT NULL,
        span_id {blob} NOT NULL,
        seq INTEGER NOT NULL,
        issue_id INTEGER NOT NULL,
        time_ns BIGINT NOT NULL,
        function TEXT NOT NULL,
        message TEXT NOT NULL,
        stacktrace TEXT NOT NULL,
        PRIMARY KEY (project_id, trace_id, span_id, seq)
    )""",
    "CREATE INDEX issue_occurrences_by_issue ON issue_occurrences (project_id, issue_id, time_ns)",
    "CREATE INDEX issue_occurrences_by_time ON issue_occurrences (time_ns)",
    # Channels: ``config`` is what the API shows; ``secret`` (webhook URL of Slack, signing key,
    # GitHub token) is only ever read by the notifier.
    """CREATE TABLE notify_channels (
        id {serial} PRIMARY KEY,
        project_id INTEGER NOT NULL,
        name TEXT NOT NULL,
        type TEXT NOT NULL,
        config TEXT NOT NULL,
        secret TEXT NOT NULL,
        created_ns BIGINT NOT NULL
    )""",
    """CREATE TABLE notify_rules (
        id {serial} PRIMARY KEY,
        project_id INTEGER NOT NULL,
        name TEXT NOT NULL,
        channel_id INTEGER NOT NULL,
        threshold INTEGER NOT NULL,
        every INTEGER NOT NULL,
        bucket TEXT NOT NULL,
        kinds TEXT NOT NULL,
        functions TEXT NOT NULL,
        enabled SMALLINT NOT NULL,
        created_ns BIGINT NOT NULL
    )""",
    # The outbox: written in the issue pass's transaction, delivered by the notifier, which
    # claims a row by moving next_attempt_ns ahead (a lease) before sending it.
    """CREATE TABLE notify_outbox (
        id {serial} PRIMARY KEY,
        project_id INTEGER NOT NULL,
        channel_id INTEGER NOT NULL,
        rule_id INTEGER NOT NULL,
        issue_id INTEGER NOT NULL,
        event TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_ns BIGINT NOT NULL,
        attempts INTEGER NOT NULL,
        next_attempt_ns BIGINT NOT NULL,
        state TEXT NOT NULL,
        last_error TEXT NOT NULL,
        done_ns BIGINT
    )""",
    "CREATE INDEX notify_outbox_due ON notify_outbox (state, next_attempt_ns)",
    "CREATE INDEX notify_outbox_by_issue ON notify_outbox (project_id, issue_id)",
    # The GitHub issue opened for a hoptrace issue on a channel: later notifications comment on it.
    """CREATE TABLE notify_github_issues (
        channel_id INTEGER NOT NULL,
        issue_id INTEGER NOT NULL,
        number BIGINT NOT NULL,
        PRIMARY KEY (channel_id, issue_id)
    )""",
    # Admin tokens (rules and channels): the tokens table again, with a third kind.
    """CREATE TABLE tokens_v7 (
        token_hash TEXT PRIMARY KEY,
        project_id INTEGER NOT NULL REFERENCES projects (id),
        kind TEXT NOT NULL CHECK (kind IN ('ingest', 'read', 'admin')),
        created_ns BIGINT NOT NULL
    )""",
    "INSERT INTO tokens_v7 (token_hash, project_id, kind, created_ns) SELECT token_hash, project_id, kind, created_ns"
    " FROM tokens",
    "DROP TABLE tokens",
    "ALTER TABLE tokens_v7 RENAME TO tokens",
]

# Function health: errors per function, minute and class (exception, http_5xx, timeout, error),
# one per failed span, counted by the issue pass beside the occurrences; the rest of a function's
# health (invocations, throttles, latency, cold starts, timeouts) is the graph's node rollups.
HEALTH_MIGRATION: list[str] = [
    """CREATE TABLE function_errors (
        project_id INTEGER NOT NULL,
        function TEXT NOT NULL,
        minute BIGINT NOT NULL,
        kind TEXT NOT NULL,
        count BIGINT NOT NULL,
        PRIMARY KEY (project_id, function, minute, kind)
    )""",
    "CREATE INDEX function_errors_by_minute ON function_errors (minute)",
]

# An exception recorded on a span and again on the span it went up into (parent, or the
# invocation a batch record links to) is one error; this remembers where exceptions went up
# into, so the outer span counts nothing even when a later pass reads it.
RAISED_MIGRATION: list[str] = [
    """CREATE TABLE issue_raised (
        project_id INTEGER NOT NULL,
        span_id {blob} NOT NULL,
        error_key TEXT NOT NULL,
        time_ns BIGINT NOT NULL,
        PRIMARY KEY (project_id, span_id, error_key)
    )""",
    "CREATE INDEX issue_raised_by_time ON issue_raised (time_ns)",
]

# Function health rollups (collector/health.py) counted by the issue pass from every invocation
# span: per function and minute, counters, sketches ({blob}: init duration, record age) and the
# per-second busy milliseconds (concurrency). ``health_seen`` keeps a batch sent twice from
# counting twice; ``health_warned`` when each warning was last counted (once per window);
# ``function_error_types`` the exception types each function has shown (a new one warns).
HEALTH_ROLLUP_MIGRATION: list[str] = [
    """CREATE TABLE function_health (
        project_id INTEGER NOT NULL,
        function TEXT NOT NULL,
        minute BIGINT NOT NULL,
        invocations BIGINT NOT NULL,
        cold_starts BIGINT NOT NULL,
        throttles BIGINT NOT NULL,
        retries BIGINT NOT NULL,
        init {blob} NOT NULL,
        record_age {blob} NOT NULL,
        record_age_max BIGINT NOT NULL,
        memory_count BIGINT NOT NULL,
        memory_peak BIGINT NOT NULL,
        memory_limit BIGINT NOT NULL,
        memory_share_max BIGINT NOT NULL,
        memory_near BIGINT NOT NULL,
        deadline_count BIGINT NOT NULL,
        deadline_share_max BIGINT NOT NULL,
        deadline_near BIGINT NOT NULL,
        busy {blob} NOT NULL,
        PRIMARY KEY (project_id, function, minute)
    )""",
    "CREATE INDEX function_health_by_minute ON function_health (project_id, minute)",
    """CREATE TABLE health_seen (
        project_id INTEGER NOT NULL,
        span_id {blob} NOT NULL,
        minute BIGINT NOT NULL,
        PRIMARY KEY (project_id, span_id)
    )""",
    "CREATE INDEX health_seen_by_minute ON health_seen (minute)",
    """CREATE TABLE health_warned (
        project_id INTEGER NOT NULL,
        function TEXT NOT NULL,
        subtype TEXT NOT NULL,
        minute BIGINT NOT NULL,
        PRIMARY KEY (project_id, function, subtype)
    )""",
    """CREATE TABLE function_error_types (
        project_id INTEGER NOT NULL,
        function TEXT NOT NULL,
        type TEXT NOT NULL,
        first_seen_ns BIGINT NOT NULL,
        PRIMARY KEY (project_id, function, type)
    )""",
]

# The weekly top-N digest of a project (collector/digest.py): which channel, when (UTC weekday
# 0 = Monday, hour), how many per ranking, and the last slot sent (so each week sends once,
# across restarts and replicas).
DIGEST_MIGRATION: list[str] = [
    """CREATE TABLE digests (
        project_id INTEGER PRIMARY KEY,
        channel_id INTEGER NOT NULL,
        weekday SMALLINT NOT NULL,
        hour SMALLINT NOT NULL,
        top_limit INTEGER NOT NULL,
        enabled SMALLINT NOT NULL,
        last_slot_ns BIGINT NOT NULL
    )""",
]

# The tables ISSUES_MIGRATION creates (tokens aside, which it rebuilds).
ISSUES_TABLES = ("issue_queue", "issues", "issue_functions", "issue_minutes", "issue_occurrences", "notify_channels",
                 "notify_rules", "notify_outbox", "notify_github_issues")  # fmt: skip

HEALTH_TABLES = ("function_errors", "issue_raised", "function_health", "health_seen", "health_warned",  # 8-10, 12
                 "function_error_types", "digests")  # fmt: skip

# Beside the graph's retention (same named parameters): occurrences and minutes go; issues stay.
ISSUES_RETENTION = [
    "DELETE FROM issue_occurrences WHERE time_ns < %(cutoff)s",
    "DELETE FROM issue_minutes WHERE minute < %(minute)s",
    "DELETE FROM function_errors WHERE minute < %(minute)s",
    "DELETE FROM issue_raised WHERE time_ns < %(cutoff)s",
    "DELETE FROM function_health WHERE minute < %(minute)s",
    "DELETE FROM health_seen WHERE minute < %(minute)s",
    "DELETE FROM notify_outbox WHERE state <> 'pending' AND done_ns < %(cutoff)s",
]
