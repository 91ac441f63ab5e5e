"""Sales analytics (SQS, subscribed to the order-placed topic with raw message delivery)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import hoptrace

sales_by_customer: Counter[str] = Counter()  # kept while the sandbox is warm, as Lambda allows


@hoptrace.lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    for record in hoptrace.records(event):
        order = json.loads(record["body"])  # raw delivery: the message itself, no envelope
        hoptrace.label("order_id", order["order_id"])
        sales_by_customer[order["customer_id"]] += 1
    return {"batchItemFailures": []}
