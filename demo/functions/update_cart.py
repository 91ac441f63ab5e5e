"""PUT /cart/{customer_id}/{product_id}: change a line's quantity (0 removes it)."""

from __future__ import annotations

import os
from typing import Any

import boto3

import hoptrace

from .shared import body_of, response

dynamodb: Any = boto3.resource("dynamodb")


@hoptrace.lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    path = event.get("pathParameters") or {}
    customer, product_id = path.get("customer_id", ""), path.get("product_id", "")
    hoptrace.label("customer", customer)
    try:
        quantity = int(body_of(event)["quantity"])
    except (KeyError, ValueError) as exc:
        return response(400, {"message": f"expected a JSON body with an integer quantity: {exc}"})
    table = dynamodb.Table(os.environ["CART_TABLE"])
    key = {"customer_id": customer, "product_id": product_id}
    if quantity <= 0:
        table.delete_item(Key=key)
    else:
        table.update_item(
            Key=key,
            UpdateExpression="SET quantity = :q",
            ConditionExpression="attribute_exists(product_id)",
            ExpressionAttributeValues={":q": quantity},
        )
    return response(200, {"customer_id": customer, "product_id": product_id, "quantity": quantity})
