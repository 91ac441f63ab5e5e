"""hoptrace's own hop and transaction scenarios (issue 4), in memory through ``Correlator``."""

from __future__ import annotations

import pytest

from hoptrace.graph.correlator import Correlator
from hoptrace.graph.servicemap import ServiceMap
from hoptrace.graph.spans import GraphSpan
from tests.unit.graph_scenarios import CLIENT, CONSUMER, PRODUCER, SERVER, lam, link, new_trace, span

DAY_MS = 24 * 3600 * 1000


def sqs_send(trace: bytes, message_id: str, start_ms: float = 0, queue: str = "orders", **more) -> GraphSpan:
    return span(
        trace,
        "api",
        "SQS.SendMessage",
        PRODUCER,
        start_ms,
        10,
        resource=lam("api"),
        rpc__system="aws-api",
        rpc__service="SQS",
        messaging__system="aws_sqs",
        messaging__destination__name=queue,
        messaging__operation__type="send",
        hoptrace__pointers=[f"sqs:msg:{message_id}", "md5:abc"],
        **more,
    )


def sqs_invocation(trace: bytes, message_id: str, start_ms: float, parent: GraphSpan | None = None, **more):
    return span(
        trace,
        "worker",
        "orders process",
        CONSUMER,
        start_ms,
        20,
        parent=parent,
        resource=lam("worker"),
        faas__trigger="pubsub",
        hoptrace__trigger__source="aws:sqs",
        messaging__system="aws_sqs",
        messaging__destination__name="orders",
        messaging__operation__type="process",
        messaging__message__id=message_id,
        messaging__batch__message_count=1,
        hoptrace__pointers=[f"sqs:msg:{message_id}", "md5:abc"],
        **more,
    )


def test_a_consumer_arriving_before_its_producer_is_joined_when_the_producer_comes() -> None:
    producer_trace, consumer_trace = new_trace(), new_trace()
    send = sqs_send(producer_trace, "m-1")
    receive = sqs_invocation(consumer_trace, "m-1", 250)
    c = Correlator()
    assert c.add([receive]) == []
    assert [t.root_trace_id for t in c.transactions()] == [consumer_trace.hex()]

    (hop,) = c.add([send])
    assert (hop.from_span, hop.to_span, hop.via, hop.dwell_ms) == (send.span_id, receive.span_id, "message_id", 240.0)
    (txn,) = c.transactions()  # the consumer's own transaction is gone: it is reachable from the entry
    assert txn.root_trace_id == producer_trace.hex()
    assert txn.trace_ids == (producer_trace.hex(), consumer_trace.hex())


def test_a_batch_of_ten_records_from_ten_transactions_joins_each_and_merges_none() -> None:
    producers = [new_trace() for _ in range(10)]
    sends = [sqs_send(t, f"m-{i}", start_ms=i) for i, t in enumerate(producers)]
    batch_trace = new_trace()
    invocation = span(
        batch_trace,
        "worker",
        "worker",
        CONSUMER,
        1000,
        500,
        resource=lam("worker"),
        faas__trigger="pubsub",
        hoptrace__trigger__source="aws:sqs",
        messaging__system="aws_sqs",
        messaging__destination__name="orders",
        messaging__batch__message_count=10,
        links=tuple(link(s, "producer") for s in sends),
    )
    records = [
        span(
            s.trace_id,
            "worker",
            "orders process",
            CONSUMER,
            1000 + i * 40,
            30,
            parent=s,
            resource=lam("worker"),
            links=(link(invocation, "invocation"),),
            messaging__system="aws_sqs",
            messaging__destination__name="orders",
            messaging__operation__type="process",
            messaging__message__id=f"m-{i}",
            hoptrace__pointers=[f"sqs:msg:m-{i}", "md5:abc"],
        )
        for i, s in enumerate(sends)
    ]
    c = Correlator()
    c.add(sends)
    c.add([invocation, *records])

    txns = c.transactions()
    assert len(txns) == 10
    for producer, txn in zip(producers, txns):
        assert txn.root_trace_id == producer.hex()
        assert set(txn.trace_ids) == {producer.hex(), batch_trace.hex()}  # the batch invocation in each
        assert not txn.incomplete
    nodes, edges = c.rollups.window(0, 2**62)
    assert edges[("queue:orders", "function:worker", "deliver")].count == 10  # one per record, not per invocation
    assert edges[("queue:orders", "function:worker", "deliver")].dwell.count == 10
    assert nodes["function:worker"].count == 1  # one invocation


def test_sns_to_a_raw_and_a_non_raw_queue_reaches_both_consumers_without_context() -> None:
    publisher, raw_trace, wrapped_trace = new_trace(), new_trace(), new_trace()
    publish = span(
        publisher,
        "api",
        "SNS.Publish",
        PRODUCER,
        0,
        15,
        resource=lam("api"),
        messaging__system="aws_sns",
        messaging__destination__name="orders-topic",
        messaging__message__id="sns-1",
        hoptrace__pointers=["sns:msg:sns-1", "md5:body"],
    )
    raw = span(
        raw_trace,
        "audit",
        "audit-q process",
        CONSUMER,
        100,
        5,
        resource=lam("audit"),
        faas__trigger="pubsub",
        messaging__system="aws_sqs",
        messaging__destination__name="audit-q",
        hoptrace__pointers=["sqs:msg:q-1", "md5:body"],
    )
    wrapped = span(
        wrapped_trace,
        "mailer",
        "mail-q process",
        CONSUMER,
        120,
        5,
        resource=lam("mailer"),
        faas__trigger="pubsub",
        messaging__system="aws_sqs",
        messaging__destination__name="mail-q",
        hoptrace__pointers=["sqs:msg:q-2", "md5:envelope", "sns:msg:sns-1", "md5:body"],
    )
    c = Correlator()
    hops = c.add([raw, wrapped, publish])

    assert sorted((h.to_span, h.via) for h in hops) == sorted([(raw.span_id, "md5"), (wrapped.span_id, "message_id")])
    (txn,) = c.transactions()
    assert set(txn.trace_ids) == {publisher.hex(), raw_trace.hex(), wrapped_trace.hex()}
    assert txn.services == ("api", "audit", "mailer")


def test_an_md5_never_joins_two_sqs_messages_or_a_queue_the_message_was_not_sent_to() -> None:
    t1, t2 = new_trace(), new_trace()
    send = sqs_send(t1, "m-9")  # SQS send: joined by its message id only
    other = sqs_invocation(t2, "m-other", 50)  # same body md5, another message
    c = Correlator()
    assert c.add([send, other]) == []


def dynamodb_put(trace: bytes, start_ms: float, key: str = "k1", item: str = "i1", op: str = "PutItem") -> GraphSpan:
    pointers = [f"ddb:key:orders:{key}"] + ([f"ddb:item:orders:{item}"] if op == "PutItem" else [])
    return span(
        trace,
        "api",
        f"DynamoDB.{op}",
        CLIENT,
        start_ms,
        8,
        resource=lam("api"),
        rpc__system="aws-api",
        rpc__service="DynamoDB",
        db__system="dynamodb",
        db__operation__name=op,
        aws__dynamodb__table_names=["orders"],
        hoptrace__pointers=pointers,
    )


def stream_invocation(trace: bytes, start_ms: float, event: str = "INSERT", key: str = "k1", item: str | None = "i1"):
    pointers = [f"ddb:key:orders:{key}"] + ([f"ddb:item:orders:{item}"] if item else [])
    return span(
        trace,
        "projector",
        "orders process",
        CONSUMER,
        start_ms,
        12,
        resource=lam("projector"),
        faas__trigger="datasource",
        hoptrace__trigger__source="aws:dynamodb",
        db__system="dynamodb",
        aws__dynamodb__table_names=["orders"],
        hoptrace__dynamodb__event_name=event,
        messaging__batch__message_count=1,
        hoptrace__pointers=pointers,
    )


def test_a_dynamodb_write_reaches_the_stream_handler_with_context_lost() -> None:
    writer, reader = new_trace(), new_trace()
    put = dynamodb_put(writer, 0)
    handler = stream_invocation(reader, 400)
    c = Correlator()
    (hop,) = c.add([put, handler])

    assert (hop.via, hop.dwell_ms) == ("dynamodb_item", 392.0)
    _, edges = c.rollups.window(0, 2**62)
    assert set(edges) == {
        ("function:api", "table:orders", "sync"),
        ("table:orders", "stream:orders stream", "publish"),
        ("stream:orders stream", "function:projector", "deliver"),
    }
    assert edges[("stream:orders stream", "function:projector", "deliver")].dwell.count == 1
    (txn,) = c.transactions()
    assert txn.trace_ids == (writer.hex(), reader.hex())
    assert not txn.incomplete  # a DynamoDB write does not promise a stream consumer


def test_a_dynamodb_key_join_respects_the_event_name_and_the_window_and_takes_the_latest_write() -> None:
    w1, w2, w3, r1, r2 = (new_trace() for _ in range(5))
    old = dynamodb_put(w1, -2 * DAY_MS, op="UpdateItem")  # outside the stream's 24 h
    delete = dynamodb_put(w2, 100, op="DeleteItem")
    update = dynamodb_put(w3, 50, op="UpdateItem")
    modified = stream_invocation(r1, 300, event="MODIFY", item=None)  # KEYS_ONLY stream: only the key to go by
    removed = stream_invocation(r2, 300, event="REMOVE", item=None)
    c = Correlator()
    hops = c.add([old, delete, update, modified, removed])

    assert sorted((h.from_span, h.to_span) for h in hops) == sorted(
        [(update.span_id, modified.span_id), (delete.span_id, removed.span_id)]
    )


def test_a_retried_message_is_two_attempts_in_one_transaction() -> None:
    producer, first, second = new_trace(), new_trace(), new_trace()
    send = sqs_send(producer, "m-r")
    attempt1 = sqs_invocation(first, "m-r", 100, status=2, hoptrace__messaging__receive_count=1)
    attempt2 = sqs_invocation(second, "m-r", 30_100, hoptrace__messaging__receive_count=2, hoptrace__faas__retry=True)
    c = Correlator()
    hops = c.add([send, attempt1, attempt2])

    assert sorted((h.attempt, h.to_trace) for h in hops) == [(1, first), (2, second)]
    (txn,) = c.transactions()
    assert set(txn.trace_ids) == {producer.hex(), first.hex(), second.hex()}
    assert (txn.retries, txn.errors, txn.hops) == (1, 1, 2)


def test_clock_skew_gives_a_clamped_flagged_dwell() -> None:
    producer, consumer = new_trace(), new_trace()
    send = sqs_send(producer, "m-s", start_ms=1000)  # ends at 1010 by its own clock
    early = sqs_invocation(consumer, "m-s", 700)  # 310 ms "before" by the consumer's clock
    c = Correlator()
    (hop,) = c.add([send, early])
    assert (hop.dwell_ms, hop.skew) == (0.0, True)
    _, edges = c.rollups.window(0, 2**62)
    assert edges[("queue:orders", "function:worker", "deliver")].dwell.quantile(0.5) == 0.0


def test_a_single_record_invocation_continuing_the_producer_trace_is_a_parent_hop_in_one_trace() -> None:
    t = new_trace()
    send = sqs_send(t, "m-p")
    receive = sqs_invocation(t, "m-p", 60, parent=send)
    c = Correlator()
    (hop,) = c.add([receive, send])
    assert (hop.via, hop.dwell_ms) == ("parent", 50.0)  # the message id agrees; the strongest key is kept
    (txn,) = c.transactions()
    assert txn.trace_ids == (t.hex(),)
    assert txn.hops == 1


def test_a_lambda_invoke_and_an_api_route_name_their_nodes_from_semconv() -> None:
    t = new_trace()
    api = span(
        t,
        "orders-api",
        "POST /orders",
        SERVER,
        0,
        50,
        resource=lam("orders-api"),
        faas__trigger="http",
        http__request__method="POST",
        http__route="/orders",
    )
    invoke = span(
        t,
        "orders-api",
        "Lambda.Invoke",
        CLIENT,
        5,
        30,
        parent=api,
        resource=lam("orders-api"),
        rpc__system="aws-api",
        rpc__service="Lambda",
        faas__invoked_name="pricing",
    )
    priced = span(t, "pricing", "pricing", SERVER, 8, 20, parent=invoke, resource=lam("pricing"), faas__trigger="other")
    c = Correlator()
    c.add([api, invoke, priced])
    doc = ServiceMap(*c.rollups.window(0, 2**62)).to_json()
    assert {e["id"] for e in doc["edges"]} == {
        "api:POST /orders|function:orders-api|sync",
        "function:orders-api|function:pricing|sync",
    }
    (txn,) = c.transactions()
    assert txn.entry == {"trigger": "http", "name": "POST /orders", "service": "orders-api"}


def test_a_single_record_invocation_and_its_record_span_are_one_delivery() -> None:
    producer, consumer = new_trace(), new_trace()
    send = sqs_send(producer, "m-1")
    invocation = sqs_invocation(consumer, "m-1", 100)
    record = span(consumer, "worker", "orders process", CONSUMER, 101, 5, parent=invocation, resource=lam("worker"),
                  messaging__system="aws_sqs", messaging__destination__name="orders",
                  messaging__message__id="m-1", hoptrace__pointers=["sqs:msg:m-1"])  # fmt: skip
    c = Correlator()
    c.add([send, record])
    assert c.add([invocation]) == []  # the record's span already stands for this delivery
    (hop,) = c.hops
    assert hop.to_span == record.span_id
    (txn,) = c.transactions()
    assert txn.hops == 1


def test_a_batch_sent_twice_is_counted_once() -> None:
    producer, consumer = new_trace(), new_trace()
    send = sqs_send(producer, "m-twice")
    receive = sqs_invocation(consumer, "m-twice", 50, status=2)
    c = Correlator()
    c.add([send, receive])
    assert c.add([send, receive]) == []  # the client lost our acknowledgement and sent it again
    _, edges = c.rollups.window(0, 2**62)
    assert edges[("function:api", "queue:orders", "publish")].count == 1
    assert edges[("queue:orders", "function:worker", "deliver")].dwell.count == 1
    (txn,) = c.transactions()
    assert (txn.errors, txn.hops) == (1, 1)


def test_a_batch_from_more_transactions_than_a_small_group_holds_joins_each_and_what_it_sends_too() -> None:
    # The correlator keeps groups of traces as small tuples and turns them into sets past a few
    # (TransactionIndex): forty transactions take the set path for the batch trace's membership.
    producers = [new_trace() for _ in range(40)]
    sends = [sqs_send(t, f"m-{i}", start_ms=i) for i, t in enumerate(producers)]
    batch_trace = new_trace()
    invocation = span(
        batch_trace, "worker", "worker", CONSUMER, 1000, 500, resource=lam("worker"), faas__trigger="pubsub",
        messaging__system="aws_sqs", messaging__destination__name="orders", messaging__batch__message_count=40,
        links=tuple(link(s, "producer") for s in sends),
    )  # fmt: skip
    onward = sqs_send(batch_trace, "m-out", start_ms=1100, queue="totals")
    later_trace = new_trace()
    c = Correlator()
    c.add([invocation, onward])  # the batch first: its own transaction until its producers come
    assert [t.root_trace_id for t in c.transactions()] == [batch_trace.hex()]
    c.add(sends[:20])
    c.add(sends[20:])
    c.add([sqs_invocation(later_trace, "m-out", 2000)])
    txns = c.transactions()
    assert sorted(t.root_trace_id for t in txns) == sorted(p.hex() for p in producers)  # the batch's own is gone
    for t in txns:
        assert set(t.trace_ids) == {t.root_trace_id, batch_trace.hex(), later_trace.hex()}
    assert len(c.transaction_of(later_trace)) == 40


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="known defect, not fixed yet: reachability is per trace, so a hop leaving a batch trace from one "
    "record's span reaches every transaction the batch belongs to (fix: follow a hop out of a shared trace "
    "only from the record span it descends from; see the graphperf2 report)",
)
def test_a_batch_trace_does_not_hand_one_records_onward_work_to_its_batch_mates_transactions() -> None:
    # A batch of three messages: two from our producers (linked by the invocation, their records
    # processed in their own traces) and one from an uninstrumented producer whose record is
    # processed inside the batch's own trace, joined by its message id. What that record sends
    # on belongs to that record's transaction alone, not to the two others (demo: bob's order
    # listed another order's downstream traces).
    ours = [new_trace() for _ in range(2)]
    sends = [sqs_send(t, f"m-{i}", start_ms=i) for i, t in enumerate(ours)]
    foreign_trace = new_trace()
    foreign = span(
        foreign_trace, "importer", "SQS.SendMessage", CLIENT, 5, 10, rpc__system="aws-api", rpc__service="SQS",
        rpc__method="SendMessage",
        messaging__system="aws_sqs", messaging__destination__name="orders", messaging__message__id="m-x",
    )  # fmt: skip
    batch_trace = new_trace()
    invocation = span(
        batch_trace, "worker", "worker", CONSUMER, 1000, 500, resource=lam("worker"), faas__trigger="pubsub",
        messaging__system="aws_sqs", messaging__destination__name="orders", messaging__batch__message_count=3,
        links=tuple(link(s, "producer") for s in sends),
    )  # fmt: skip
    record = span(
        batch_trace, "worker", "orders process", CONSUMER, 1010, 100, parent=invocation, resource=lam("worker"),
        links=(link(invocation, "invocation"),), messaging__system="aws_sqs", messaging__destination__name="orders",
        messaging__operation__type="process", messaging__message__id="m-x", hoptrace__pointers=["sqs:msg:m-x"],
    )  # fmt: skip
    onward = sqs_send(batch_trace, "m-out", start_ms=1050, queue="totals", parent=record)
    later_trace = new_trace()
    c = Correlator()
    c.add([*sends, foreign, invocation, record, onward, sqs_invocation(later_trace, "m-out", 2000)])
    by_root = {t.root_trace_id: set(t.trace_ids) for t in c.transactions()}
    assert by_root[foreign_trace.hex()] == {foreign_trace.hex(), batch_trace.hex(), later_trace.hex()}
    for t in ours:
        assert by_root[t.hex()] == {t.hex(), batch_trace.hex()}
