"""Transaction entries of a window for the top-N (``collector/top.py``), shared by both backends:
a range of the transactions index by start, newest first, bounded."""

from __future__ import annotations

import json

from ..top import MAX_TRANSACTIONS, Figures
from .graph_sql import Sql


def entries(sql: Sql, project: int, start_ns: int, end_ns: int) -> tuple[dict[str, Figures], bool]:
    """Per entry name (what started the transactions: ``POST /checkout``, a schedule, a queue), the
    transactions that started in [start, end) with their end-to-end durations; and whether the
    window held more than ``MAX_TRANSACTIONS`` (then only the newest are counted)."""
    rows = sql.rows(
        "SELECT duration_ns, errors, summary FROM transactions WHERE project_id = ? AND start_ns >= ?"
        " AND start_ns < ? ORDER BY start_ns DESC LIMIT ?",
        [project, start_ns, end_ns, MAX_TRANSACTIONS + 1],
    )
    out: dict[str, Figures] = {}
    for duration_ns, errors, summary in rows[:MAX_TRANSACTIONS]:
        entry = json.loads(summary).get("entry") or {}
        name = str(entry.get("name") or "unknown")
        figures = out.get(name)
        if figures is None:
            figures = out[name] = Figures()
        figures.count += 1
        figures.errors += int(errors) > 0
        figures.latency.add(int(duration_ns) / 1e6)
    return out, len(rows) > MAX_TRANSACTIONS
