"""The shop as a deployment would describe it: functions, their triggers, and the AWS resources.

What a SAM template says for AWS's serverless shopping cart, reduced to what the demo needs:
four API routes with one function each; checkout handed to a worker through SQS (with a
dead-letter queue); "order placed" fanned out by SNS to two queues, one with raw delivery;
orders written to a DynamoDB table whose stream feeds a totals function; and a partner import
traced by plain OpenTelemetry rather than hoptrace. ``provision`` creates the resources on the
emulator and returns the environment the functions read them from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional

REGION = "us-east-1"
ACCOUNT = "123456789012"

CART_TABLE = "shopping-cart"
ORDERS_TABLE = "orders"
TOTALS_TABLE = "customer-totals"
CHECKOUT_QUEUE = "checkout-queue"
CHECKOUT_DLQ = "checkout-dlq"
NOTIFY_QUEUE = "order-notifications"
ANALYTICS_QUEUE = "order-analytics"
ORDER_TOPIC = "order-placed"
# The outside world the functions call over HTTP (see ``services``): a catalog and a payment gateway.
CATALOG_HOST = "catalog.shop.test"
PAYMENTS_HOST = "payments.shop.test"
MAX_RECEIVE_COUNT = 3  # checkout messages failing this often go to the dead-letter queue


@dataclass(frozen=True)
class Trigger:
    """What invokes a function: an API route, a queue, a table's stream or a schedule."""

    kind: str  # "api", "sqs", "stream", "schedule"
    source: str  # "METHOD /route", queue name, table name, or the schedule rule's name
    batch_size: int = 10
    batching_window_s: float = 0.0
    rate_s: float = 0.0  # schedules: every so many seconds


@dataclass(frozen=True)
class FunctionSpec:
    """One Lambda function: its name, handler, trigger and settings."""

    name: str
    handler: str  # "module.function", as in a Lambda function's configuration
    trigger: Trigger
    memory_mb: int = 256
    timeout_s: float = 15.0
    tracing: str = "hoptrace"  # "hoptrace", or "opentelemetry": the SDK's own Lambda and botocore instrumentation
    environment: dict[str, str] = field(default_factory=dict)


_F = "hoptrace.demo.functions."
FUNCTIONS: tuple[FunctionSpec, ...] = (
    FunctionSpec("add-to-cart", _F + "add_to_cart.handler", Trigger("api", "POST /cart")),
    FunctionSpec("list-cart", _F + "list_cart.handler", Trigger("api", "GET /cart/{customer_id}"), memory_mb=128),
    FunctionSpec("update-cart", _F + "update_cart.handler", Trigger("api", "PUT /cart/{customer_id}/{product_id}")),
    FunctionSpec("checkout", _F + "checkout.handler", Trigger("api", "POST /checkout")),
    FunctionSpec(
        "checkout-worker", _F + "checkout_worker.handler", Trigger("sqs", CHECKOUT_QUEUE, 10, 1.0), memory_mb=512
    ),
    FunctionSpec("notify-customer", _F + "notify_customer.handler", Trigger("sqs", NOTIFY_QUEUE, 10, 0.5)),
    FunctionSpec("analytics-ingest", _F + "analytics_ingest.handler", Trigger("sqs", ANALYTICS_QUEUE, 10, 0.5)),
    FunctionSpec("order-totals", _F + "order_totals.handler", Trigger("stream", ORDERS_TABLE, 100, 0.5)),
    FunctionSpec(
        "partner-import",
        _F + "partner_import.handler",
        Trigger("schedule", "partner-import-every-minute", rate_s=20.0),
        tracing="opentelemetry",
    ),
    # One function that sometimes runs out of memory, one that sometimes times out: killed
    # invocations, flagged with their class on the map and in their transactions.
    FunctionSpec(
        "sales-report",
        _F + "sales_report.handler",
        Trigger("schedule", "sales-report-every-15s", rate_s=15.0),
        memory_mb=128,
        timeout_s=6.0,
        environment={"HOPTRACE_DEMO_ENFORCE_MEMORY": "true"},
    ),
    FunctionSpec(
        "stock-sync", _F + "stock_sync.handler", Trigger("schedule", "stock-sync-every-15s", rate_s=15.0), timeout_s=3.0
    ),
)


def function(name: str) -> FunctionSpec:
    """The function called ``name``; a clear error for a name the shop does not have."""
    for spec in FUNCTIONS:
        if spec.name == name:
            return spec
    raise KeyError(f"the demo shop has no function {name!r}; it has {[f.name for f in FUNCTIONS]}")


def function_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


@dataclass
class Resources:
    """What ``provision`` created: URLs and ARNs the runner and the functions need."""

    endpoint: str
    queue_urls: dict[str, str]
    queue_arns: dict[str, str]
    topic_arn: str
    stream_arn: str
    subscriptions: dict[str, str] = field(default_factory=dict)  # queue name -> subscription ARN

    def environment(self) -> dict[str, str]:
        """The functions' environment variables (``Environment.Variables`` in a template)."""
        return {
            "CART_TABLE": CART_TABLE,
            "ORDERS_TABLE": ORDERS_TABLE,
            "TOTALS_TABLE": TOTALS_TABLE,
            "CHECKOUT_QUEUE_URL": self.queue_urls[CHECKOUT_QUEUE],
            "ORDER_TOPIC_ARN": self.topic_arn,
            "CATALOG_URL": f"http://{CATALOG_HOST}",
            "PAYMENTS_URL": f"http://{PAYMENTS_HOST}",
        }


def aws_client(service: str, endpoint: str) -> Any:
    """A boto3 client on the emulator, with dummy credentials (never the machine's real ones)."""
    import boto3

    make: Any = boto3.client  # one typed overload per service name; the name here is a variable
    return make(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="demo",
        aws_secret_access_key="demo",
    )


def _table(ddb: Any, name: str, keys: list[tuple[str, str]], stream: bool = False) -> Optional[str]:
    spec: dict[str, Any] = {
        "TableName": name,
        "KeySchema": [{"AttributeName": k, "KeyType": t} for k, t in keys],
        "AttributeDefinitions": [{"AttributeName": k, "AttributeType": "S"} for k, _ in keys],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if stream:
        spec["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    answer = ddb.create_table(**spec)
    arn: Optional[str] = answer["TableDescription"].get("LatestStreamArn")
    return arn


def provision(endpoint: str) -> Resources:
    """Create the shop's tables, queues, topic and subscriptions on a fresh emulator."""
    ddb = aws_client("dynamodb", endpoint)
    sqs = aws_client("sqs", endpoint)
    sns = aws_client("sns", endpoint)
    _table(ddb, CART_TABLE, [("customer_id", "HASH"), ("product_id", "RANGE")])
    _table(ddb, TOTALS_TABLE, [("customer_id", "HASH")])
    stream_arn = _table(ddb, ORDERS_TABLE, [("order_id", "HASH")], stream=True)
    assert stream_arn, "the emulator returned no stream ARN for the orders table"

    urls: dict[str, str] = {}
    arns: dict[str, str] = {}

    def queue(name: str, **attributes: str) -> None:
        urls[name] = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        got = sqs.get_queue_attributes(QueueUrl=urls[name], AttributeNames=["QueueArn"])
        arns[name] = got["Attributes"]["QueueArn"]

    queue(CHECKOUT_DLQ)
    redrive = {"deadLetterTargetArn": arns[CHECKOUT_DLQ], "maxReceiveCount": MAX_RECEIVE_COUNT}
    # A short visibility timeout so that a failed checkout comes back within seconds.
    queue(CHECKOUT_QUEUE, VisibilityTimeout="3", RedrivePolicy=json.dumps(redrive))
    queue(NOTIFY_QUEUE, VisibilityTimeout="10")
    queue(ANALYTICS_QUEUE, VisibilityTimeout="10")
    topic_arn = sns.create_topic(Name=ORDER_TOPIC)["TopicArn"]
    resources = Resources(endpoint, urls, arns, topic_arn, stream_arn)
    # The notifications queue gets SNS's JSON envelope; analytics asks for the raw message.
    for name, raw in ((NOTIFY_QUEUE, False), (ANALYTICS_QUEUE, True)):
        attrs = {"RawMessageDelivery": "true"} if raw else {}
        sub = sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arns[name], Attributes=attrs)
        resources.subscriptions[name] = sub["SubscriptionArn"]
    return resources
