"""The whole path: an instrumented function → the real collector process → SQLite → the query API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hoptrace
from hoptrace.instrumentation import setup
from tests.collector_server import CollectorProcess
from tests.lambda_context import LambdaContext


def test_an_instrumented_function_is_found_through_the_api(tmp_path: Path, boto_session: Any) -> None:
    with CollectorProcess(f"sqlite:///{tmp_path / 'ht.db'}") as collector:
        setup.shutdown()
        try:
            hoptrace.init(endpoint=collector.url, lambda_mode=True, service_name="cart", flush_budget_ms=2000)
            sqs = boto_session.client("sqs")
            url = sqs.create_queue(QueueName="smoke")["QueueUrl"]

            @hoptrace.lambda_handler
            def handler(event: Any, context: Any) -> dict[str, Any]:
                hoptrace.label("order_id", "o-991")
                sqs.send_message(QueueUrl=url, MessageBody="hello")
                return {"statusCode": 200}

            handler({}, LambdaContext(function_name="cart"))
        finally:
            setup.shutdown()
        with collector.client() as http:
            found = http.get("/api/v1/spans", params={"label.order_id": "o-991"}).json()["spans"]
            assert [s["name"] for s in found] == ["cart"]
            trace = http.get(f"/api/v1/traces/{found[0]['trace_id']}").json()
            names = sorted(s["name"] for s in trace["spans"])
            assert names == ["SQS.SendMessage", "cart"]  # CreateQueue ran outside the invocation
            send = next(s for s in trace["spans"] if s["name"] == "SQS.SendMessage")
            assert send["kind"] == "PRODUCER"
            assert send["parent_span_id"] == found[0]["span_id"]
            assert send["resource"]["service.name"] == "cart"
            services = http.get("/api/v1/services").json()["services"]
            assert [s["name"] for s in services] == ["cart"]
