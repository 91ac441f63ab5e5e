"""Partner import (scheduled): a legacy job that queues partners' orders for the checkout worker.

It is deliberately *not* traced by hoptrace: the demo runs it with the OpenTelemetry SDK's own
Lambda and botocore instrumentation, which records the SQS message id but carries no trace
context in the message. hoptrace joins its sends to the worker by that message id alone.
"""

from __future__ import annotations

import json
import os
import random
import time
from typing import Any

import boto3

sqs: Any = boto3.client("sqs")
PARTNERS = ("acme-outdoor", "globex-retail")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    partner = PARTNERS[int(time.time() // 60) % len(PARTNERS)]
    order_id = f"ptn-{random.randrange(16**8):08x}"
    order = {
        "order_id": order_id,
        "customer_id": partner,
        "card": "4242",
        "items": [{"product_id": "p-100", "quantity": 3, "price": "12.50"}],
        "channel": "partner",
    }
    sqs.send_message(QueueUrl=os.environ["CHECKOUT_QUEUE_URL"], MessageBody=json.dumps(order))
    return {"imported": [order_id]}
