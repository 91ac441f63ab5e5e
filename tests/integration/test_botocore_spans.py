"""Every boto3/botocore call becomes a span, whatever client or session made it; errors and throttles are recognised."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError
from opentelemetry.trace import SpanKind, StatusCode

import hoptrace
from tests.conftest import REGION, Tracing, free_port
from tests.lambda_context import LambdaContext

NO_RETRIES = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=2, read_timeout=5)


class FakeDynamoDB:
    """Answers every request with one AWS JSON error, the way DynamoDB does."""

    def __init__(self, status: int, code: str) -> None:
        body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": "Rate exceeded"}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("x-amzn-RequestId", "REQ-THROTTLED-1")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def throttling_dynamodb() -> Iterator[FakeDynamoDB]:
    fake = FakeDynamoDB(400, "ProvisionedThroughputExceededException")
    yield fake
    fake.close()


def test_calls_from_the_default_session_a_new_session_and_plain_botocore_are_all_traced(
    tracing: Tracing, moto_endpoint: str
) -> None:
    boto3.setup_default_session(region_name=REGION)
    boto3.client("s3", endpoint_url=moto_endpoint).list_buckets()
    boto3.session.Session(region_name=REGION).client("sqs", endpoint_url=moto_endpoint).list_queues()
    plain: Any = botocore.session.get_session().create_client("sns", region_name=REGION, endpoint_url=moto_endpoint)
    plain.list_topics()
    names = sorted(s.name for s in tracing.spans())
    assert names == ["S3.ListBuckets", "SNS.ListTopics", "SQS.ListQueues"]


def test_a_call_span_carries_rpc_attributes_and_the_request_id(tracing: Tracing, boto_session: Any) -> None:
    sqs = boto_session.client("sqs")

    @hoptrace.lambda_handler
    def fn(event: Any, context: Any) -> None:
        sqs.create_queue(QueueName="attrs")

    fn({}, LambdaContext())
    span = tracing.span("SQS.CreateQueue")
    (invocation,) = [s for s in tracing.spans() if "faas.trigger" in s.attributes]
    assert span.kind is SpanKind.CLIENT
    assert span.parent.span_id == invocation.context.span_id
    assert span.attributes["rpc.system"] == "aws-api"
    assert span.attributes["rpc.service"] == "SQS"
    assert span.attributes["rpc.method"] == "CreateQueue"
    assert span.attributes["cloud.region"] == REGION
    assert span.attributes["http.response.status_code"] == 200
    assert span.attributes["aws.request_id"]
    assert span.status.status_code is StatusCode.UNSET


def test_a_throttled_call_is_marked_and_the_error_reaches_the_user_unchanged(
    tracing: Tracing, throttling_dynamodb: FakeDynamoDB
) -> None:
    client = boto3.session.Session(region_name=REGION).client(
        "dynamodb", endpoint_url=throttling_dynamodb.url, config=NO_RETRIES
    )
    with pytest.raises(ClientError) as info:
        client.get_item(TableName="orders", Key={"id": {"S": "1"}})
    assert info.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    span = tracing.span("DynamoDB.GetItem")
    assert span.attributes["hoptrace.throttled"] is True
    assert span.attributes["error.type"] == "ProvisionedThroughputExceededException"
    assert span.attributes["http.response.status_code"] == 400
    assert span.attributes["aws.request_id"] == "REQ-THROTTLED-1"
    assert span.status.status_code is StatusCode.ERROR


def test_a_client_error_that_is_not_a_throttle_is_an_error_without_the_throttle_mark(tracing: Tracing) -> None:
    fake = FakeDynamoDB(400, "ResourceNotFoundException")
    try:
        client = boto3.session.Session(region_name=REGION).client("dynamodb", endpoint_url=fake.url, config=NO_RETRIES)
        with pytest.raises(ClientError):
            client.describe_table(TableName="missing")
    finally:
        fake.close()
    span = tracing.span("DynamoDB.DescribeTable")
    assert span.attributes["error.type"] == "ResourceNotFoundException"
    assert "hoptrace.throttled" not in span.attributes
    assert span.status.status_code is StatusCode.ERROR


def test_an_unreachable_endpoint_records_the_exception_and_reraises_it(tracing: Tracing) -> None:
    client = boto3.session.Session(region_name=REGION).client(
        "sqs", endpoint_url=f"http://127.0.0.1:{free_port()}", config=NO_RETRIES
    )
    with pytest.raises(EndpointConnectionError):
        client.list_queues()
    span = tracing.span("SQS.ListQueues")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "EndpointConnectionError"
    assert [e.name for e in span.events] == ["exception"]


def test_a_call_that_fails_parameter_validation_leaves_no_span_open_after_the_invocation(
    tracing: Tracing, boto_session: Any
) -> None:
    from botocore.exceptions import ParamValidationError

    sqs = boto_session.client("sqs")

    @hoptrace.lambda_handler
    def fn(event: Any, context: Any) -> str:
        try:
            sqs.send_message(QueueUrl="http://x/q", MessageBody=123)
        except ParamValidationError:
            return "handled"
        return "not raised"

    assert fn({}, LambdaContext()) == "handled"
    span = tracing.span("SQS.SendMessage")
    assert span.attributes["hoptrace.span.unfinished"] is True
    processor: Any = tracing.state.processor
    assert processor.open_spans() == []


def test_request_payloads_are_captured_redacted_only_when_enabled(boto_session: Any) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from hoptrace.instrumentation import setup

    for enabled in (False, True):
        setup.shutdown()
        exporter = InMemorySpanExporter()
        st = setup.init(exporter=exporter, lambda_mode=True, capture_payloads=enabled)
        try:
            sqs = boto_session.client("sqs")
            url = sqs.create_queue(QueueName="payloads")["QueueUrl"]
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"sku": "A-1", "password": "hunter2"}))
            st.flush(5)
            (send,) = [s for s in exporter.get_finished_spans() if s.name == "SQS.SendMessage"]
            captured = (send.attributes or {}).get("hoptrace.payload.request")
            if not enabled:
                assert captured is None
            else:
                assert isinstance(captured, str)
                assert "A-1" in captured and "hunter2" not in captured and "[REDACTED]" in captured
                assert "traceparent" not in captured  # captured before hoptrace added its attributes
        finally:
            setup.shutdown()


def test_an_answer_read_at_export_is_the_one_aws_gave_whatever_the_user_then_does_with_it(
    tracing: Tracing, boto_session: Any
) -> None:
    # The usual answer of an AWS call is read when the span is exported, not during the call:
    # the user's later changes to their response must not reach the span, and the request (the
    # message body here) is not kept until then.
    sqs = boto_session.client("sqs")
    url = sqs.create_queue(QueueName="answers")["QueueUrl"]
    s3 = boto_session.client("s3")
    s3.create_bucket(Bucket="answers")
    s3.put_object(Bucket="answers", Key="k", Body=b"data")
    tracing.clear()
    seen: dict[str, Any] = {}

    @hoptrace.lambda_handler
    def fn(event: Any, context: Any) -> str:
        sent = sqs.send_message(QueueUrl=url, MessageBody="x" * 1000)
        seen.update(id=sent["MessageId"], md5=sent["MD5OfMessageBody"], request=sent["ResponseMetadata"]["RequestId"])
        sent.pop("ResponseMetadata")
        sent["MessageId"] = "changed by the user"
        got = s3.get_object(Bucket="answers", Key="k")
        seen["s3_request"] = got["ResponseMetadata"]["RequestId"]
        got.clear()
        return "done"

    assert fn({}, LambdaContext()) == "done"
    send = tracing.span("SQS.SendMessage")
    assert send.attributes["messaging.message.id"] == seen["id"]
    assert send.attributes["hoptrace.pointers"] == (f"sqs:msg:{seen['id']}", f"md5:{seen['md5']}")
    assert send.attributes["aws.request_id"] == seen["request"]
    assert send.attributes["http.response.status_code"] == 200
    assert send.attributes["messaging.destination.name"] == "answers"
    get = tracing.span("S3.GetObject")
    assert get.attributes["aws.request_id"] == seen["s3_request"]
    assert get.attributes["http.response.status_code"] == 200


def test_an_answer_waiting_for_export_keeps_neither_the_request_nor_a_streamed_body(
    tracing: Tracing, boto_session: Any
) -> None:
    from hoptrace.instrumentation import spans

    sqs = boto_session.client("sqs")
    url = sqs.create_queue(QueueName="kept")["QueueUrl"]
    s3 = boto_session.client("s3")
    s3.create_bucket(Bucket="kept")
    s3.put_object(Bucket="kept", Key="k", Body=b"data")
    processor: Any = tracing.state.processor
    tracing.clear()
    sqs.send_message(QueueUrl=url, MessageBody="y" * 5000)
    s3.get_object(Bucket="kept", Key="k")["Body"].read()
    waiting = {s.name: s._deferred for s in processor._finished}
    assert set(waiting) == {"SQS.SendMessage", "S3.GetObject"}
    for name, deferred in waiting.items():
        assert deferred is not None, name
        call, _status, kept = deferred[1]
        assert call.params == {}, name  # the request is not kept
        assert "Body" not in kept, name  # nor a streamed answer
    finished = list(processor._finished)
    spans.settle(finished)
    assert all(s._deferred is None and s.end_time is not None for s in finished)
    assert {s.name for s in tracing.spans()} == {"SQS.SendMessage", "S3.GetObject"}
