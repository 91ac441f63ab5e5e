"""Order notifications (SQS, subscribed to the order-placed topic with SNS's JSON envelope)."""

from __future__ import annotations

import json
from typing import Any

import hoptrace


@hoptrace.lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    for record in hoptrace.records(event):
        envelope = json.loads(record["body"])  # {"Type": "Notification", "MessageId": ..., "Message": ...}
        order = json.loads(envelope["Message"])
        hoptrace.label("order_id", order["order_id"])
        hoptrace.label("customer", order["customer_id"])
        print(f"mail to {order['customer_id']}: your order {order['order_id']} of {order['total']} is on its way")
    return {"batchItemFailures": []}
