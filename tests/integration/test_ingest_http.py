"""OTLP/HTTP ingest against the real ``hoptrace serve`` process, rule by rule.

Every test posts real bodies (protobuf, OTLP JSON, gzip) to ``/v1/traces`` and reads the
result back through the query API (``/api/v1/traces/{id}``, ``/api/v1/spans``) or counts what
the store holds: a refused request must leave nothing behind.
"""

from __future__ import annotations

import gzip
import json
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from hoptrace.collector.store import open_store
from tests.collector_server import CollectorProcess
from tests.otlp_build import new_id, request, span

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MiB = 1024 * 1024


class Collector:
    """A running collector plus a way to count what its store holds."""

    def __init__(self, process: CollectorProcess) -> None:
        self.process = process
        self.http = process.client()

    def post(self, body: bytes, content_type: str = PROTOBUF, **headers: str) -> httpx.Response:
        return self.http.post("/v1/traces", content=body, headers={"Content-Type": content_type, **headers})

    def trace(self, trace_id: bytes | str) -> list[dict[str, Any]] | None:
        """The trace's spans through the API, or None when the collector has none of it."""
        hex_id = trace_id if isinstance(trace_id, str) else trace_id.hex()
        response = self.http.get(f"/api/v1/traces/{hex_id}")
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        spans: list[dict[str, Any]] = response.json()["spans"]
        return spans

    def stored_spans(self) -> int:
        store = open_store(self.process.store_url)
        try:
            return store.count_spans()
        finally:
            store.close()


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    """One collector with the default limits, on a fresh SQLite file, for the whole module."""
    db = tmp_path_factory.mktemp("ingest") / "ht.db"
    with CollectorProcess(f"sqlite:///{db}") as process:
        c = Collector(process)
        yield c
        c.http.close()


@pytest.fixture(scope="module")
def small_collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    """A collector whose limits were lowered on the command line."""
    db = tmp_path_factory.mktemp("ingest-small") / "ht.db"
    with CollectorProcess(f"sqlite:///{db}", "--max-body-bytes", "65536", "--max-spans", "20") as process:
        c = Collector(process)
        yield c
        c.http.close()


def otlp_json(trace_id: bytes, spans: list[dict[str, Any]], service: str = "json-svc") -> bytes:
    """An OTLP JSON body as the spec writes it: hex ids, lowerCamelCase, enums as numbers."""
    for s in spans:
        s.setdefault("traceId", trace_id.hex().upper())  # hex is case-insensitive
    doc = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                "scopeSpans": [{"scope": {"name": "test.library", "version": "1.0.0"}, "spans": spans}],
            }
        ]
    }
    return json.dumps(doc).encode()


def json_span(name: str, span_id: bytes, start_ns: int, **fields: Any) -> dict[str, Any]:
    return {
        "spanId": span_id.hex(),
        "name": name,
        "kind": 2,
        "startTimeUnixNano": str(start_ns),  # 64-bit integers travel as strings
        "endTimeUnixNano": str(start_ns + 5_000_000),
        **fields,
    }


def rpc_status(response: httpx.Response) -> Any:
    """The google.rpc.Status of an error answer, decoded the way it was encoded."""
    if response.headers["content-type"].startswith(JSON):
        return response.json()
    assert response.headers["content-type"] == PROTOBUF
    status = status_pb2.Status()
    status.ParseFromString(response.content)
    return {"code": status.code, "message": status.message, "details": list(status.details)}


def export_response(response: httpx.Response) -> ExportTraceServiceResponse:
    assert response.headers["content-type"] == PROTOBUF
    decoded = ExportTraceServiceResponse()
    decoded.ParseFromString(response.content)
    return decoded


def recent(seconds_ago: float = 30) -> int:
    return time.time_ns() - int(seconds_ago * 1e9)


# -- encodings ---------------------------------------------------------------------------------


def test_a_protobuf_export_is_stored_with_ids_parents_attributes_events_and_links(collector: Collector) -> None:
    root = span("GET /orders", attributes={"http.route": "/orders", "retries": 3, "ratio": 0.5, "ok": True})
    root.events.add(name="cache.miss", time_unix_nano=root.start_time_unix_nano + 1000).attributes.add(
        key="cache.key", value={"string_value": "order:1"}
    )
    child = span("SELECT", trace_id=root.trace_id, parent=root.span_id, kind=Span.SPAN_KIND_CLIENT, error=True)
    linked = span("consume", kind=Span.SPAN_KIND_CONSUMER)
    linked.links.add(trace_id=root.trace_id, span_id=root.span_id)
    response = collector.post(request([root, child, linked], service="orders").SerializeToString())
    assert response.status_code == 200
    assert not export_response(response).HasField("partial_success")  # full success leaves it unset

    spans = {s["name"]: s for s in collector.trace(root.trace_id) or []}
    assert set(spans) == {"GET /orders", "SELECT"}
    assert spans["GET /orders"]["span_id"] == root.span_id.hex()
    assert spans["GET /orders"]["parent_span_id"] is None
    assert spans["SELECT"]["parent_span_id"] == root.span_id.hex()
    assert spans["SELECT"]["kind"] == "CLIENT"
    assert spans["SELECT"]["status"] == {"code": "ERROR", "message": "failed"}
    assert spans["GET /orders"]["attributes"] == {"http.route": "/orders", "retries": 3, "ratio": 0.5, "ok": True}
    assert spans["GET /orders"]["events"][0]["name"] == "cache.miss"
    assert spans["GET /orders"]["events"][0]["attributes"] == {"cache.key": "order:1"}
    assert spans["GET /orders"]["resource"]["service.name"] == "orders"
    consumer = (collector.trace(linked.trace_id) or [])[0]
    assert consumer["links"] == [{"trace_id": root.trace_id.hex(), "span_id": root.span_id.hex(), "attributes": {}}]


def test_an_otlp_json_export_is_answered_in_json_and_stored(collector: Collector) -> None:
    trace_id, root_id, child_id = new_id(16), new_id(8), new_id(8)
    start = recent()
    body = otlp_json(
        trace_id,
        [
            json_span(
                "POST /pay",
                root_id,
                start,
                attributes=[
                    {"key": "http.request.method", "value": {"stringValue": "POST"}},
                    {"key": "amount.cents", "value": {"intValue": "1999"}},
                    {"key": "tags", "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"boolValue": True}]}}},
                ],
                events=[{"name": "validated", "timeUnixNano": str(start + 1000)}],
                status={"code": 1},
                futureField={"ignored": True},  # receivers must ignore unknown fields
            ),
            json_span("charge", child_id, start + 1_000_000, parentSpanId=root_id.hex().upper(), kind=3),
        ],
        service="payments",
    )
    response = collector.post(body, JSON)
    assert response.status_code == 200
    assert response.headers["content-type"] == JSON
    assert response.json() == {}  # an ExportTraceServiceResponse with nothing to report

    spans = {s["name"]: s for s in collector.trace(trace_id) or []}
    assert spans["POST /pay"]["span_id"] == root_id.hex()
    assert spans["POST /pay"]["attributes"] == {
        "http.request.method": "POST",
        "amount.cents": 1999,
        "tags": ["a", True],
    }
    assert spans["POST /pay"]["status"]["code"] == "OK"
    assert spans["POST /pay"]["start_unix_nano"] == str(start)
    assert spans["POST /pay"]["events"][0]["name"] == "validated"
    assert spans["charge"]["parent_span_id"] == root_id.hex()
    assert spans["charge"]["kind"] == "CLIENT"
    assert spans["charge"]["service"] == "payments"


@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
def test_a_gzip_body_is_accepted_in_either_encoding(collector: Collector, content_type: str) -> None:
    trace_id = new_id(16)
    if content_type == PROTOBUF:
        body = request([span("zipped", trace_id=trace_id)]).SerializeToString()
    else:
        body = otlp_json(trace_id, [json_span("zipped", new_id(8), recent())])
    response = collector.post(gzip.compress(body), content_type, **{"Content-Encoding": "gzip"})
    assert response.status_code == 200
    assert [s["name"] for s in collector.trace(trace_id) or []] == ["zipped"]


def test_an_empty_export_succeeds_and_stores_nothing(collector: Collector) -> None:
    before = collector.stored_spans()
    response = collector.post(b"")  # an empty ExportTraceServiceRequest
    assert response.status_code == 200
    assert not export_response(response).HasField("partial_success")
    assert collector.post(b'{"resourceSpans": []}', JSON).json() == {}
    assert collector.stored_spans() == before


# -- partial success ---------------------------------------------------------------------------


def test_spans_with_absurd_timestamps_or_bad_ids_are_rejected_one_by_one(collector: Collector) -> None:
    trace_id = new_id(16)
    good = span("good", trace_id=trace_id)
    far_future = span("future", trace_id=trace_id, start_ns=time.time_ns() + 400 * 86400 * 10**9)
    epoch_zero = span("zero", trace_id=trace_id, start_ns=0)
    backwards = span("backwards", trace_id=trace_id)
    backwards.end_time_unix_nano = backwards.start_time_unix_nano - 1
    short_id = span("short id", trace_id=trace_id, span_id=b"\x01\x02")
    before = collector.stored_spans()
    response = collector.post(request([good, far_future, epoch_zero, backwards, short_id]).SerializeToString())
    assert response.status_code == 200
    partial = export_response(response).partial_success
    assert partial.rejected_spans == 4
    assert "start time out of range" in partial.error_message
    assert "end time before the start" in partial.error_message
    assert "invalid span id" in partial.error_message
    assert [s["name"] for s in collector.trace(trace_id) or []] == ["good"]
    assert collector.stored_spans() == before + 1


def test_a_json_span_with_a_non_hex_id_is_rejected_alone(collector: Collector) -> None:
    trace_id = new_id(16)
    start = recent()
    body = otlp_json(
        trace_id,
        [
            json_span("fine", new_id(8), start),
            json_span("not hex", new_id(8), start, traceId="zz" * 16),
            json_span("base64 id", new_id(8), start, parentSpanId="AAECAwQFBgc="),
        ],
    )
    response = collector.post(body, JSON)
    assert response.status_code == 200
    partial = response.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "2"  # int64 in JSON is a string
    assert "hex" in partial["errorMessage"]
    assert [s["name"] for s in collector.trace(trace_id) or []] == ["fine"]


# -- refused requests --------------------------------------------------------------------------


def test_a_malformed_protobuf_body_is_a_400_that_says_why_and_stores_nothing(collector: Collector) -> None:
    valid = request([span("never stored")]).SerializeToString()
    before = collector.stored_spans()
    response = collector.post(valid[: len(valid) // 2])  # cut inside a span
    assert response.status_code == 400
    status = rpc_status(response)
    assert "not a valid OTLP protobuf" in status["message"]
    assert status["code"] == 3  # google.rpc.Code INVALID_ARGUMENT
    bad_request = error_details_pb2.BadRequest()
    assert status["details"][0].Unpack(bad_request)
    assert collector.stored_spans() == before


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"resourceSpans": [', "not valid JSON"),
        (b"[1, 2]", "must be an object"),
        (b'{"resourceSpans": {"scopeSpans": []}}', "resourceSpans must be a list"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": 7}]}]}]}', "not a valid OTLP"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
    ids=["truncated", "array", "wrong-type", "wrong-field-type", "deep"],
)
def test_a_malformed_json_body_is_a_400_in_json_that_says_why(collector: Collector, body: bytes, says: str) -> None:
    before = collector.stored_spans()
    response = collector.post(body, JSON)
    assert response.status_code == 400
    assert response.headers["content-type"] == JSON
    status = response.json()
    assert says in status["message"]
    assert status["details"][0]["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    assert collector.stored_spans() == before


def test_valid_spans_in_a_refused_json_request_are_not_stored(collector: Collector) -> None:
    trace_id = new_id(16)
    doc = json.loads(otlp_json(trace_id, [json_span("would be valid", new_id(8), recent())]))
    doc["resourceSpans"].append({"scopeSpans": "not a list"})
    response = collector.post(json.dumps(doc).encode(), JSON)
    assert response.status_code == 400
    assert collector.trace(trace_id) is None


@pytest.mark.parametrize(
    ("headers", "says"),
    [
        ({"Content-Type": "text/plain"}, "Content-Type 'text/plain' is not supported"),
        ({"Content-Type": "application/protobuf"}, "use application/x-protobuf or application/json"),
        ({"Content-Type": PROTOBUF, "Content-Encoding": "br"}, "Content-Encoding 'br' is not supported"),
        ({"Content-Type": PROTOBUF, "Content-Encoding": "zstd"}, "use gzip or none"),
    ],
)
def test_an_unsupported_content_type_or_encoding_is_a_415(
    collector: Collector, headers: dict[str, str], says: str
) -> None:
    trace_id = new_id(16)
    response = collector.http.post(
        "/v1/traces", content=request([span(trace_id=trace_id)]).SerializeToString(), headers=headers
    )
    assert response.status_code == 415
    assert says in rpc_status(response)["message"]
    assert collector.trace(trace_id) is None


def test_garbage_that_claims_to_be_gzip_is_a_400(collector: Collector) -> None:
    zipped = gzip.compress(request([span()]).SerializeToString())
    before = collector.stored_spans()
    for body, says in (
        (b"definitely not gzip", "not valid gzip"),
        (zipped[:-12], "truncated"),
        (zipped + b"trailing junk", "not valid gzip"),
    ):
        response = collector.post(body, **{"Content-Encoding": "gzip"})
        assert response.status_code == 400, body
        assert says in rpc_status(response)["message"]
    assert collector.stored_spans() == before


def test_concatenated_gzip_members_are_one_body(collector: Collector) -> None:
    trace_id = new_id(16)
    whole = request([span("first", trace_id=trace_id), span("second", trace_id=trace_id)]).SerializeToString()
    cut = len(whole) // 2
    body = gzip.compress(whole[:cut]) + gzip.compress(whole[cut:])  # RFC 1952 allows several members
    assert collector.post(body, **{"Content-Encoding": "gzip"}).status_code == 200
    assert sorted(s["name"] for s in collector.trace(trace_id) or []) == ["first", "second"]


# -- limits ------------------------------------------------------------------------------------


def test_the_default_limits_are_5_mb_and_10000_spans(collector: Collector) -> None:
    before = collector.stored_spans()
    trace_id = new_id(16)
    too_many = request([span(trace_id=trace_id) for _ in range(10_001)]).SerializeToString()
    response = collector.post(too_many)
    assert response.status_code == 413
    assert "10001 spans, more than the limit of 10000" in rpc_status(response)["message"]
    assert collector.stored_spans() == before

    padding = "x" * 10_000  # 600 spans of ~10 kB: just over 5 MB
    too_big = request([span(attributes={"pad": padding}) for _ in range(530)]).SerializeToString()
    assert len(too_big) > 5 * MiB
    response = collector.post(too_big)
    assert response.status_code == 413
    assert f"larger than {5 * MiB} bytes" in rpc_status(response)["message"]
    assert collector.stored_spans() == before

    at_limit = request([span(trace_id=trace_id) for _ in range(10_000)]).SerializeToString()
    assert collector.post(at_limit).status_code == 200
    assert collector.stored_spans() == before + 10_000


def test_command_line_limits_refuse_big_bodies_and_too_many_spans(small_collector: Collector) -> None:
    before = small_collector.stored_spans()
    many = [span() for _ in range(21)]
    response = small_collector.post(request(many).SerializeToString())
    assert response.status_code == 413
    assert "more than the limit of 20" in rpc_status(response)["message"]

    json_many = otlp_json(new_id(16), [json_span("s", new_id(8), recent()) for _ in range(21)])
    assert len(json_many) < 65536
    response = small_collector.post(json_many, JSON)
    assert response.status_code == 413
    assert "more than the limit of 20" in response.json()["message"]

    big = request([span(attributes={"pad": "y" * 70_000})]).SerializeToString()
    assert small_collector.post(big).status_code == 413
    # The limit is on the uncompressed size: a small gzip body that inflates past it is refused too.
    zipped = gzip.compress(big)
    assert len(zipped) < 65536
    response = small_collector.post(zipped, **{"Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert "once decompressed" in rpc_status(response)["message"]
    assert small_collector.stored_spans() == before

    assert small_collector.post(request([span() for _ in range(20)]).SerializeToString()).status_code == 200
    assert small_collector.stored_spans() == before + 20


def test_a_decompression_bomb_is_refused_without_inflating_it(tmp_path: Path) -> None:
    """1 MB of gzip that would inflate to 1 GiB: refused, and the collector's peak memory stays small."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS, 9, zlib.Z_RLE)
    zeros = bytes(MiB)
    bomb = b"".join([*(packer.compress(zeros) for _ in range(1024)), packer.flush()])
    assert len(bomb) < 2 * MiB
    with CollectorProcess(f"sqlite:///{tmp_path / 'bomb.db'}") as process:
        c = Collector(process)
        response = c.post(bomb, **{"Content-Encoding": "gzip"})
        assert response.status_code == 413
        assert "once decompressed" in rpc_status(response)["message"]
        assert c.stored_spans() == 0
        assert process.proc is not None
        peak_kib = _status_kib(process.proc.pid, "VmHWM")
        assert peak_kib < 256 * 1024, f"the collector's peak RSS reached {peak_kib} KiB"
        c.http.close()


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


# -- truncation --------------------------------------------------------------------------------


def test_oversized_attribute_values_are_truncated_with_a_marker_and_the_span_flagged(collector: Collector) -> None:
    trace_id = new_id(16)
    huge = "é" * 30_000  # 60 kB of UTF-8, past the default 16 KiB
    big = span("big", trace_id=trace_id, attributes={"payload": huge, "small": "kept"})
    big.events.add(name="dump").attributes.add(key="body", value={"string_value": "z" * 40_000})
    normal = span("normal", trace_id=trace_id, attributes={"small": "kept"})
    response = collector.post(request([big, normal]).SerializeToString())
    assert response.status_code == 200
    assert not export_response(response).HasField("partial_success")  # truncation is not rejection

    spans = {s["name"]: s for s in collector.trace(trace_id) or []}
    payload = spans["big"]["attributes"]["payload"]
    kept, marker = payload.split("…[truncated ")
    assert len(kept.encode()) <= 16 * 1024
    assert huge.startswith(kept)
    assert marker == f"{len(huge.encode()) - len(kept.encode())} bytes]"
    assert spans["big"]["attributes"]["small"] == "kept"
    assert spans["big"]["attributes"]["hoptrace.truncated"] is True
    assert spans["big"]["events"][0]["attributes"]["body"].startswith("z" * 16_000)
    assert len(spans["big"]["events"][0]["attributes"]["body"]) < 17_000
    assert "hoptrace.truncated" not in spans["normal"]["attributes"]


def test_an_oversized_label_is_truncated_and_the_other_labels_still_found(collector: Collector) -> None:
    trace_id = new_id(16)
    label = "L" * 20_000
    posted = span("labelled", trace_id=trace_id, attributes={"hoptrace.label.note": label, "hoptrace.label.k": "v"})
    assert collector.post(request([posted]).SerializeToString()).status_code == 200
    stored = (collector.trace(trace_id) or [])[0]
    assert stored["attributes"]["hoptrace.label.note"].startswith("L" * 16_000)
    found = collector.http.get("/api/v1/spans", params={"label.k": "v"}).json()["spans"]
    assert stored["span_id"] in [s["span_id"] for s in found]
