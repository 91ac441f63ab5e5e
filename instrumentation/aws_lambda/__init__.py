"""Lambda support: handler tracing, trigger parsing, per-record spans, the timeout watchdog."""
