"""OTLP decoding and validation, function by function: bodies, JSON ids, per-span rules, answers."""

from __future__ import annotations

import gzip
import json
import time
import zlib
from typing import Any

import pytest
from google.protobuf import json_format
from google.rpc import code_pb2, error_details_pb2, status_pb2  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from hoptrace.collector.otlp import (
    MAX_INDEXED_BYTES,
    TRUNCATED_FLAG,
    Limits,
    RequestError,
    SpanBatch,
    decode,
    error_body,
    normalise,
    parse_request,
    read_body,
    response_body,
    span_bytes,
)
from tests.otlp_build import new_id, request, span

LIMITS = Limits()
NOW = time.time_ns()


def refusal(call: Any, *args: Any) -> RequestError:
    with pytest.raises(RequestError) as caught:
        call(*args)
    return caught.value


# -- bodies ------------------------------------------------------------------------------------


def test_gzip_and_deflate_bodies_are_inflated() -> None:
    assert read_body(gzip.compress(b"hello"), "gzip", LIMITS) == b"hello"
    assert read_body(zlib.compress(b"hello"), "Deflate", LIMITS) == b"hello"
    assert read_body(b"plain", None, LIMITS) == b"plain"
    assert read_body(b"plain", "identity", LIMITS) == b"plain"


def test_gzip_members_are_joined_and_zero_padding_after_them_ignored() -> None:
    assert read_body(gzip.compress(b"ab") + gzip.compress(b"cd") + b"\0" * 4, "gzip", LIMITS) == b"abcd"


def test_an_empty_gzip_body_is_an_empty_body() -> None:
    assert read_body(b"", "gzip", LIMITS) == b""


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"not gzip at all", "not valid gzip"),
        (gzip.compress(b"x" * 100)[:-5], "truncated"),
        (gzip.compress(b"x") + b"junk", "not valid gzip"),
    ],
    ids=["garbage", "cut", "trailing-junk"],
)
def test_broken_gzip_is_a_400_that_says_why(body: bytes, says: str) -> None:
    error = refusal(read_body, body, "gzip", LIMITS)
    assert error.status == 400
    assert says in error.message


def test_trailing_data_after_a_deflate_stream_is_a_400() -> None:
    error = refusal(read_body, zlib.compress(b"x") + b"more", "deflate", LIMITS)
    assert (error.status, "trailing data" in error.message) == (400, True)


def test_a_bomb_is_refused_once_the_limit_is_passed() -> None:
    small = Limits(max_body_bytes=1000)
    error = refusal(read_body, gzip.compress(bytes(10**7)), "gzip", small)
    assert error.status == 413
    assert "larger than 1000 bytes once decompressed" in error.message
    assert read_body(gzip.compress(bytes(1000)), "gzip", small) == bytes(1000)  # exactly at the limit


def test_a_bomb_spread_over_members_is_refused_too() -> None:
    small = Limits(max_body_bytes=1000)
    error = refusal(read_body, gzip.compress(bytes(600)) * 2, "gzip", small)
    assert error.status == 413


def test_unknown_encodings_are_a_415() -> None:
    error = refusal(read_body, b"x", "br", LIMITS)
    assert error.status == 415
    assert "Content-Encoding 'br' is not supported" in error.message


# -- JSON --------------------------------------------------------------------------------------


def json_body(*spans: dict[str, Any]) -> bytes:
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": list(spans)}]}]}).encode()


def json_span(**fields: Any) -> dict[str, Any]:
    start = NOW - 10**9
    return {
        "traceId": new_id(16).hex(),
        "spanId": new_id(8).hex(),
        "name": "s",
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + 1000),
        **fields,
    }


def test_json_ids_in_either_case_of_hex_become_bytes() -> None:
    trace_id, span_id = new_id(16), new_id(8)
    decoded, rejected = parse_request(
        json_body(json_span(traceId=trace_id.hex().upper(), spanId=span_id.hex())), "application/json"
    )
    assert rejected == []
    parsed = decoded.resource_spans[0].scope_spans[0].spans[0]
    assert (parsed.trace_id, parsed.span_id) == (trace_id, span_id)


def test_a_json_span_with_an_id_that_is_not_hex_is_taken_out_and_named() -> None:
    bad = json_span(traceId="g" * 32)
    link_bad = json_span(links=[{"traceId": new_id(16).hex(), "spanId": "xyz"}])
    good = json_span()
    decoded, rejected = parse_request(json_body(bad, link_bad, good), "application/json; charset=utf-8")
    assert [s.span_id.hex() for s in decoded.resource_spans[0].scope_spans[0].spans] == [good["spanId"]]
    assert [(r.span, "is not hex" in r.reason) for r in rejected] == [(bad["spanId"], True), (link_bad["spanId"], True)]
    assert "links[0].spanId" in rejected[1].reason
    batch = normalise(decoded, LIMITS, rejected=rejected)
    assert (batch.rejected, len(batch.spans)) == (2, 1)
    assert bad["spanId"] in batch.error_message


def test_json_ids_of_the_wrong_length_are_rejected_like_protobuf_ones() -> None:
    short = json_span(spanId="abcd")
    batch = decode(json_body(short), None, "application/json", LIMITS)
    assert batch.rejected == 1
    assert "invalid span id" in batch.error_message


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{", "not valid JSON"),
        (b"\xff\xfe{", "not valid JSON"),
        (b'"a string"', "must be an object"),
        (b'{"resourceSpans": 5}', "resourceSpans must be a list, got a number"),
        (b'{"resourceSpans": [7]}', "each item of resourceSpans must be an object"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": {}}]}]}', "spans must be a list, got an object"),
        (b'{"resourceSpans": [{"resource": {"attributes": 1}}]}', "not a valid OTLP"),
        (b'{"a": ' * 5000 + b"1" + b"}" * 5000, "nested too deeply"),
        (b'{"x\\udc00": 1}', "member name that is not valid Unicode"),  # an unpaired surrogate escape
        (b'{"resourceSpans": [{"resource": {"\\ud800": 1}}]}', "member name that is not valid Unicode"),
    ],
)
def test_malformed_json_is_a_400_that_says_why(body: bytes, says: str) -> None:
    error = refusal(parse_request, body, "application/json")
    assert error.status == 400
    assert says in error.message


def test_json_null_lists_are_empty() -> None:
    decoded, rejected = parse_request(b'{"resourceSpans": [{"scopeSpans": null}]}', "application/json")
    assert (len(decoded.resource_spans), rejected) == (1, [])


def test_a_json_body_with_too_many_spans_is_refused_before_conversion() -> None:
    error = refusal(parse_request, json_body(*[json_span() for _ in range(3)]), "application/json", Limits(max_spans=2))
    assert error.status == 413
    assert "3 spans, more than the limit of 2" in error.message


def test_malformed_protobuf_is_a_400_and_other_media_types_a_415() -> None:
    assert refusal(parse_request, b"\x0a\xff", "application/x-protobuf").status == 400
    assert refusal(parse_request, b"", "application/protobuf").status == 415


# -- per-span rules ----------------------------------------------------------------------------


def test_each_bad_span_is_rejected_with_its_reason_and_id() -> None:
    good = span("good")
    early = span("early", start_ns=10**9)
    backwards = span("backwards")
    backwards.end_time_unix_nano = backwards.start_time_unix_nano - 1
    far_end = span("far end")
    far_end.end_time_unix_nano = NOW + 5 * 86400 * 10**9
    zero_trace = span("zero trace", trace_id=bytes(16))
    odd_parent = span("odd parent", parent=b"\1\2\3")
    batch = normalise(request([good, early, backwards, far_end, zero_trace, odd_parent]), LIMITS, NOW)
    assert [row.name for row in batch.spans] == ["good"]
    assert batch.rejected == 5
    message = batch.error_message
    for reason, named in (
        ("start time out of range", early),
        ("end time before the start", backwards),
        ("end time out of range", far_end),
        ("invalid trace id", zero_trace),
        ("invalid parent span id", odd_parent),
    ):
        assert f"{reason}" in message and named.span_id.hex() in message, (reason, message)


def test_a_rejection_message_stays_short_however_many_spans_are_rejected() -> None:
    batch = SpanBatch()
    for i in range(1000):
        batch.reject("start time out of range", f"{i:016x}")
    batch.reject("end time before the start", "ab" * 8)
    assert batch.rejected == 1001
    assert batch.error_message == (
        "start time out of range: spans 0000000000000000, 0000000000000001, 0000000000000002 and 997 more; "
        f"end time before the start: span {'ab' * 8}"
    )


def test_spans_past_the_limit_refuse_the_request() -> None:
    error = refusal(normalise, request([span() for _ in range(3)]), Limits(max_spans=2))
    assert (error.status, "3 spans, more than the limit of 2" in error.message) == (413, True)


# -- truncation and indexing -------------------------------------------------------------------


def stored_span(batch: SpanBatch) -> Any:
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    decoded = Span()
    decoded.ParseFromString(batch.spans[0].data)
    return decoded


def test_long_names_status_messages_and_arrays_are_cut_and_the_span_flagged() -> None:
    limits = Limits(max_attribute_bytes=100)
    s = span("n" * 500, attributes={"list": ["x" * 60] * 10, "short": "ok"})
    s.status.message = "m" * 300
    batch = normalise(request([s]), limits, NOW)
    kept = stored_span(batch)
    assert kept.name.startswith("n" * 100 + "…[truncated 400 bytes]")
    assert kept.status.message.startswith("m" * 100 + "…[truncated")
    attrs = {kv.key: kv.value for kv in kept.attributes}
    assert attrs["list"].ByteSize() < 300  # trailing items past the limit dropped
    assert attrs["short"].string_value == "ok"
    assert attrs[TRUNCATED_FLAG].bool_value is True
    assert batch.spans[0].name == kept.name


def test_a_span_within_the_limit_is_stored_untouched() -> None:
    s = span("small", attributes={"a": "b"})
    batch = normalise(request([s]), LIMITS, NOW)
    assert batch.spans[0].data == s.SerializeToString()


def test_spans_are_stored_as_sent_in_the_body_of_several_resources_and_scopes() -> None:
    first = request([span("a", attributes={"hoptrace.label.k": "1"}), span("b")], service="one")
    second = request([span("c")], service="two")
    first.resource_spans.extend(second.resource_spans)
    first.resource_spans[0].scope_spans.add().spans.append(span("d"))
    first.resource_spans[0].schema_url = "https://opentelemetry.io/schemas/1.24.0"
    body = first.SerializeToString()
    sent = [s for rs in first.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert span_bytes(body) == [s.SerializeToString() for s in sent]
    batch = decode(body, None, "application/x-protobuf", LIMITS)
    assert [(s.name, s.service_name) for s in batch.spans] == [("a", "one"), ("b", "one"), ("d", "one"), ("c", "two")]
    assert [s.data for s in batch.spans] == [s.SerializeToString() for s in sent]
    assert [(t.key, t.value) for t in batch.terms] == [("label.k", "1")]


def test_a_body_with_fields_the_walk_does_not_know_has_its_spans_encoded_again() -> None:
    s = span("a")
    body = request([s]).SerializeToString() + b"\x28\x01"  # field 5, varint: unknown to OTLP
    assert span_bytes(body) is None
    assert span_bytes(b"\x0a\x05\x12\x09") is None  # a length past the end
    assert decode(body, None, "application/x-protobuf", LIMITS).spans[0].data == s.SerializeToString()


def test_an_oversized_resource_is_cut_and_its_spans_flagged() -> None:
    limits = Limits(max_attribute_bytes=100)
    batch = normalise(request([span()], resource={"big": "r" * 1000}), limits, NOW)
    assert TRUNCATED_FLAG in {kv.key for kv in stored_span(batch).attributes}
    resource_data = next(iter(batch.resources.values())).data
    assert b"r" * 101 not in resource_data


def test_values_too_long_to_index_are_kept_on_the_span_but_not_indexed() -> None:
    long_label = "L" * (MAX_INDEXED_BYTES + 1)
    s = span(attributes={"hoptrace.label.long": long_label, "hoptrace.label.k": "v", "faas.invocation_id": "i-1"})
    batch = normalise(request([s]), LIMITS, NOW)
    assert sorted((t.key, t.value) for t in batch.terms) == [("invocation", "i-1"), ("label.k", "v")]
    assert long_label in {kv.value.string_value for kv in stored_span(batch).attributes}


def test_a_service_name_too_long_for_an_index_is_cut_for_its_column() -> None:
    batch = normalise(request([span()], service="s" * 5000), LIMITS, NOW)
    assert len(batch.spans[0].service_name.encode()) < MAX_INDEXED_BYTES + 40
    assert batch.spans[0].service_name.endswith("bytes]")


# -- answers -----------------------------------------------------------------------------------


def test_full_success_leaves_partial_success_unset_in_both_encodings() -> None:
    body, media = response_body(SpanBatch(), json_response=False)
    decoded = ExportTraceServiceResponse()
    decoded.ParseFromString(body)
    assert (media, decoded.HasField("partial_success")) == ("application/x-protobuf", False)
    assert response_body(SpanBatch(), json_response=True) == (b"{}", "application/json")


def test_partial_success_counts_and_explains_in_json() -> None:
    batch = SpanBatch()
    batch.reject("invalid span id", "00")
    body, _ = response_body(batch, json_response=True)
    assert json.loads(body) == {"partialSuccess": {"rejectedSpans": "1", "errorMessage": "invalid span id: span 00"}}


def test_a_400_carries_bad_request_and_a_503_retry_info() -> None:
    body, media = error_body(400, "broken", json_response=False)
    status = status_pb2.Status()
    status.ParseFromString(body)
    assert (media, status.code, status.message) == ("application/x-protobuf", code_pb2.INVALID_ARGUMENT, "broken")
    assert status.details[0].Is(error_details_pb2.BadRequest.DESCRIPTOR)

    body, media = error_body(503, "busy", json_response=True, retry_after_s=3)
    doc = json.loads(body)
    assert (media, doc["code"], doc["message"]) == ("application/json", code_pb2.UNAVAILABLE, "busy")
    retry = json_format.ParseDict(doc, status_pb2.Status()).details[0]
    info = error_details_pb2.RetryInfo()
    assert retry.Unpack(info) and info.retry_delay.seconds == 3


def test_truncation_keeps_whole_utf8_characters() -> None:
    limits = Limits(max_attribute_bytes=5)
    batch = normalise(request([span(attributes={"e": "éééé"})]), limits, NOW)  # 8 bytes
    value: AnyValue = next(kv.value for kv in stored_span(batch).attributes if kv.key == "e")
    assert value.string_value == "éé…[truncated 4 bytes]"


# -- limits and their configuration ------------------------------------------------------------


def test_the_default_limits_are_5_mb_10000_spans_and_16_kib_per_value() -> None:
    assert (LIMITS.max_body_bytes, LIMITS.max_spans, LIMITS.max_attribute_bytes) == (5 * 1024 * 1024, 10_000, 16384)


def test_a_limit_below_one_is_refused_with_its_name() -> None:
    with pytest.raises(ValueError, match="max spans limit must be at least 1"):
        Limits(max_spans=0)


def test_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from hoptrace.collector.config import CollectorConfig

    monkeypatch.setenv("HOPTRACE_MAX_BODY_BYTES", "1000")
    monkeypatch.setenv("HOPTRACE_MAX_SPANS_PER_REQUEST", "7")
    monkeypatch.setenv("HOPTRACE_MAX_ATTRIBUTE_BYTES", "64")
    assert CollectorConfig.from_env().limits == Limits(1000, 7, 64)
    monkeypatch.setenv("HOPTRACE_MAX_SPANS_PER_REQUEST", "many")
    with pytest.raises(ValueError, match="HOPTRACE_MAX_SPANS_PER_REQUEST='many' is not a whole number"):
        CollectorConfig.from_env()


def test_a_request_of_many_empty_entries_is_refused_before_it_is_walked() -> None:
    """Empty resourceSpans / scopeSpans cost no spans but time each: more of them than spans allowed is a 413."""
    limits = Limits(max_spans=10)
    many_resources = b"\x0a\x00" * 11  # eleven empty resourceSpans
    error = refusal(decode, many_resources, None, "application/x-protobuf", limits)
    assert (error.status, "11 resourceSpans and scopeSpans entries" in error.message) == (413, True)
    many_scopes = json.dumps({"resourceSpans": [{"scopeSpans": [{}] * 10}]}).encode()
    error = refusal(decode, many_scopes, None, "application/json", limits)
    assert (error.status, "more than the limit of 10" in error.message) == (413, True)
    assert decode(b"\x0a\x00" * 10, None, "application/x-protobuf", limits).spans == []


def test_reasons_past_the_listed_few_are_summed_up() -> None:
    batch = SpanBatch()
    for i in range(12):
        batch.reject(f"links[{i}].spanId is not hex", f"{i:016x}")
    assert batch.rejected == 12
    assert batch.error_message.count("is not hex") == 8
    assert batch.error_message.endswith("; 4 more for other reasons")
