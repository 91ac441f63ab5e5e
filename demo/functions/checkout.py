"""POST /checkout: turn the cart into an order and hand it to the checkout worker through SQS.

The API answers 202 at once; payment, the order record and the "order placed" event happen
asynchronously, which is exactly the part a per-function view loses sight of.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import boto3
from boto3.dynamodb.conditions import Key

import hoptrace

from .shared import body_of, response

dynamodb: Any = boto3.resource("dynamodb")
sqs: Any = boto3.client("sqs")


@hoptrace.lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        request = body_of(event)
        customer, card = str(request["customer_id"]), str(request.get("card", "4242"))
    except (KeyError, ValueError) as exc:
        return response(400, {"message": f"expected customer_id and card: {exc}"})
    hoptrace.label("customer", customer)
    lines = dynamodb.Table(os.environ["CART_TABLE"]).query(KeyConditionExpression=Key("customer_id").eq(customer))
    items = [
        {"product_id": line["product_id"], "quantity": int(line["quantity"]), "price": str(line["price"])}
        for line in lines.get("Items", [])
    ]
    if not items:
        return response(409, {"message": f"the cart of {customer} is empty"})
    order_id = f"ord-{uuid.uuid4().hex[:10]}"
    hoptrace.label("order_id", order_id)
    order = {"order_id": order_id, "customer_id": customer, "card": card, "items": items, "channel": "web"}
    sqs.send_message(QueueUrl=os.environ["CHECKOUT_QUEUE_URL"], MessageBody=json.dumps(order))
    return response(202, {"order_id": order_id, "status": "accepted"})
