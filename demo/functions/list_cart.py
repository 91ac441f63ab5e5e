"""GET /cart/{customer_id}: the lines of a customer's cart and its total."""

from __future__ import annotations

import os
from typing import Any

import boto3
from boto3.dynamodb.conditions import Key

import hoptrace

from .shared import response

dynamodb: Any = boto3.resource("dynamodb")


@hoptrace.lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    customer = (event.get("pathParameters") or {}).get("customer_id", "")
    hoptrace.label("customer", customer)
    table = dynamodb.Table(os.environ["CART_TABLE"])
    lines = table.query(KeyConditionExpression=Key("customer_id").eq(customer)).get("Items", [])
    total = sum(line["price"] * line["quantity"] for line in lines)
    return response(200, {"customer_id": customer, "lines": lines, "total": total})
