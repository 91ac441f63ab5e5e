"""POST /cart: put a product in a customer's cart, priced by the catalog service."""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any

import boto3

import hoptrace

from .shared import HttpError, body_of, call, response

dynamodb: Any = boto3.resource("dynamodb")  # created after `import hoptrace`: its calls are traced


@hoptrace.lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        item = body_of(event)
        customer, product_id = str(item["customer_id"]), str(item["product_id"])
        quantity = int(item.get("quantity", 1))
    except (KeyError, ValueError) as exc:
        return response(400, {"message": f"expected customer_id, product_id and quantity: {exc}"})
    hoptrace.label("customer", customer)
    try:
        product = call("GET", f"{os.environ['CATALOG_URL']}/products/{product_id}")
    except HttpError as exc:
        return response(404 if exc.status == 404 else 502, {"message": f"catalog: {exc}"})
    table = dynamodb.Table(os.environ["CART_TABLE"])
    table.put_item(
        Item={
            "customer_id": customer,
            "product_id": product_id,
            "name": product["name"],
            "price": Decimal(str(product["price"])),
            "quantity": quantity,
        }
    )
    return response(200, {"customer_id": customer, "product_id": product_id, "quantity": quantity})
