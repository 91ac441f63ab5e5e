"""Checkout worker (SQS, batches of up to 10): charge the card, record the order, announce it.

Each record is one order. A payment that fails (declined, throttled twice, gateway error) is
reported in ``batchItemFailures`` so only that message comes back, after the queue's visibility
timeout; after ``maxReceiveCount`` attempts SQS moves it to the dead-letter queue. A paid order
is written to the ``orders`` table (whose stream feeds the totals function) and published on
the ``order-placed`` topic (fanned out to notifications and analytics).
"""

from __future__ import annotations

import json
import logging
import os
import time
from decimal import Decimal
from typing import Any

import boto3
from opentelemetry import trace

import hoptrace

from .shared import HttpError, call

log = logging.getLogger("shop.checkout-worker")  # warnings and errors show in the transaction's timeline
dynamodb: Any = boto3.resource("dynamodb")
sns: Any = boto3.client("sns")


MAX_ATTEMPTS = 3  # the checkout queue's maxReceiveCount (demo/app.py)


class PaymentFailed(Exception):
    """The gateway did not take the payment; the message is retried."""


def charge(order: dict[str, Any], attempt: int) -> dict[str, Any]:
    """Charge the order's card; one quick retry when the gateway throttles us (429)."""
    amount = sum(Decimal(i["price"]) * int(i["quantity"]) for i in order["items"])
    request = {"order_id": order["order_id"], "card": order["card"], "amount": str(amount), "attempt": attempt}
    for backoff in (0.2, None):
        try:
            answer: dict[str, Any] = call("POST", f"{os.environ['PAYMENTS_URL']}/charges", request, timeout_s=5.0)
            return answer
        except HttpError as exc:
            if exc.status == 429 and backoff is not None:
                log.warning("payment gateway throttled order %s; retrying in %.1f s", order["order_id"], backoff)
                time.sleep(backoff)
                continue
            raise PaymentFailed(f"payment gateway answered {exc.status}: {exc.body[:120]}") from exc
    raise AssertionError("unreachable")


def place(order: dict[str, Any], payment: dict[str, Any]) -> None:
    total = sum(Decimal(i["price"]) * int(i["quantity"]) for i in order["items"])
    dynamodb.Table(os.environ["ORDERS_TABLE"]).put_item(
        Item={
            "order_id": order["order_id"],
            "customer_id": order["customer_id"],
            "total": total,
            "lines": len(order["items"]),
            "payment_id": payment["payment_id"],
            "channel": order.get("channel", "web"),
            "status": "PLACED",
        }
    )
    sns.publish(
        TopicArn=os.environ["ORDER_TOPIC_ARN"],
        Message=json.dumps({"order_id": order["order_id"], "customer_id": order["customer_id"], "total": str(total)}),
        MessageAttributes={"event_type": {"DataType": "String", "StringValue": "order_placed"}},
    )
    if order.get("channel", "web") == "web":
        cart = dynamodb.Table(os.environ["CART_TABLE"])
        for item in order["items"]:
            cart.delete_item(Key={"customer_id": order["customer_id"], "product_id": item["product_id"]})


@hoptrace.lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    failures = []
    for record in hoptrace.records(event):
        order = json.loads(record["body"])
        hoptrace.label("order_id", order["order_id"])
        hoptrace.label("customer", order["customer_id"])
        attempt = int(record.get("attributes", {}).get("ApproximateReceiveCount", "1"))
        try:
            payment = charge(order, attempt)
        except PaymentFailed as exc:
            # On the record's span (current in the loop): the failure becomes an issue, with this stack.
            trace.get_current_span().record_exception(exc)
            if attempt >= MAX_ATTEMPTS:
                log.error("order %s: %s; attempt %d was the last, it goes to the dead-letter queue",
                          order["order_id"], exc, attempt)  # fmt: skip
            else:
                log.warning("order %s: %s; SQS retries it (attempt %d)", order["order_id"], exc, attempt)
            failures.append({"itemIdentifier": record["messageId"]})
            continue
        place(order, payment)
    return {"batchItemFailures": failures}
