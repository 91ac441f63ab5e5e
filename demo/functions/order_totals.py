"""Customer totals (DynamoDB stream of the orders table): add each new order to its customer's total."""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any

import boto3

import hoptrace

dynamodb: Any = boto3.resource("dynamodb")


@hoptrace.lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    totals = dynamodb.Table(os.environ["TOTALS_TABLE"])
    for record in hoptrace.records(event):
        if record["eventName"] != "INSERT":
            continue
        image = record["dynamodb"]["NewImage"]
        order_id, customer = image["order_id"]["S"], image["customer_id"]["S"]
        hoptrace.label("order_id", order_id)
        hoptrace.label("customer", customer)
        totals.update_item(
            Key={"customer_id": customer},
            UpdateExpression="ADD orders_total :t, order_count :one",
            ExpressionAttributeValues={":t": Decimal(image["total"]["N"]), ":one": 1},
        )
    return {"batchItemFailures": []}
