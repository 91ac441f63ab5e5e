"""Fuzzed bodies against the real collector (``hoptrace serve`` over HTTP): no crash, no 5xx,
and a refused request leaves nothing behind.

Every property posts to ``/v1/traces`` and counts the store's spans before and after. A 4xx
must leave the count unchanged; a 200 must add exactly the spans it did not reject. Where the
test can decode the body itself (protobuf, gzip, OTLP JSON made from protobuf), it also knows
which spans are valid and checks the collector's ``rejected_spans`` against that, then reads
the accepted spans back through the query API (which must not fail on what it accepted).

Last, schemathesis walks the served OpenAPI of a collector seeded with a few spans: no
operation may answer with a server error, whatever parameters or bodies it is sent.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import time
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from hoptrace.collector.otlp import EARLIEST_NS, FUTURE_SLACK_NS
from hoptrace.collector.store import open_store
from tests.collector_server import CollectorProcess
from tests.otlp_build import request as build_request
from tests.otlp_build import span as build_span
from tests.pg import create_database, drop_database

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MAX_BODY = 64 * 1024
MAX_SPANS = 40
MAX_ATTRIBUTE = 256  # small, so that generated values get truncated
FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
NOW = time.time_ns()
DAY = 24 * 3600 * 10**9
UINT64 = 2**64 - 1


class Fuzzed:
    """The collector under test: post a body, count what the store holds."""

    def __init__(self, process: CollectorProcess) -> None:
        self.process = process
        self.http = process.client()
        self.store = open_store(process.store_url)

    def post(self, body: bytes, content_type: str = PROTOBUF, **headers: str) -> httpx.Response:
        response = self.http.post("/v1/traces", content=body, headers={"Content-Type": content_type, **headers})
        assert response.status_code < 500, (response.status_code, response.text[:500])
        return response

    def stored(self) -> int:
        return self.store.count_spans()


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    """One collector with small limits, so that fuzzed bodies reach them."""
    db = tmp_path_factory.mktemp("fuzz") / "ht.db"
    args = ("--max-body-bytes", str(MAX_BODY), "--max-spans", str(MAX_SPANS))
    env = {"HOPTRACE_MAX_ATTRIBUTE_BYTES": str(MAX_ATTRIBUTE)}
    with CollectorProcess(f"sqlite:///{db}", *args, env=env) as process:
        c = Fuzzed(process)
        yield c
        c.http.close()
        c.store.close()


# -- strategies --------------------------------------------------------------------------------


def _ids(size: int) -> st.SearchStrategy[bytes]:
    """Mostly well-formed ids, sometimes empty, all-zero or the wrong length."""
    return st.one_of(
        st.binary(min_size=size, max_size=size),
        st.sampled_from([b"", bytes(size)]),
        st.binary(max_size=size * 2),
    )


# Around the value limit, cheaply: a short text repeated (multi-byte characters included).
_long_text = st.builds(lambda piece, n: piece * n, st.text(min_size=1, max_size=3), st.integers(20, MAX_ATTRIBUTE))
_scalars = st.one_of(
    st.builds(lambda v: AnyValue(string_value=v), st.text(max_size=40)),
    st.builds(lambda v: AnyValue(string_value=v), _long_text),
    st.builds(lambda v: AnyValue(bool_value=v), st.booleans()),
    st.builds(lambda v: AnyValue(int_value=v), st.integers(-(2**63), 2**63 - 1)),
    st.builds(lambda v: AnyValue(double_value=v), st.floats()),  # NaN and infinities included
    st.builds(lambda v: AnyValue(bytes_value=v), st.binary(max_size=16).map(lambda b: b * 40)),
    st.just(AnyValue()),  # no value at all
)


def _array(items: list[AnyValue]) -> AnyValue:
    value = AnyValue()
    value.array_value.values.extend(items)
    return value


def _kvlist(items: list[tuple[str, AnyValue]]) -> AnyValue:
    value = AnyValue()
    value.kvlist_value.values.extend(KeyValue(key=k, value=v) for k, v in items)
    return value


any_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.builds(_array, st.lists(inner, max_size=4)),
        st.builds(_kvlist, st.lists(st.tuples(st.text(max_size=8), inner), max_size=4)),
    ),
    max_leaves=4,
)
attribute_keys = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["hoptrace.label.order", "faas.invocation_id", "messaging.message.id", "hoptrace.pointers"]),
)
attributes = st.lists(st.builds(KeyValue, key=attribute_keys, value=any_values), max_size=3)
# Well inside the accepted window, or clearly outside it: the collector's clock never decides.
start_times = st.one_of(
    st.integers(NOW - 3600 * 10**9, NOW - 10**9),
    st.sampled_from([0, 1, EARLIEST_NS - 1, NOW + 30 * DAY, UINT64]),
    st.integers(0, UINT64),
)


@st.composite
def spans(draw: st.DrawFn) -> Span:
    start = draw(start_times)
    end = min(UINT64, max(0, start + draw(st.integers(-(10**9), 10**10))))
    span = Span(
        trace_id=draw(_ids(16)),
        span_id=draw(_ids(8)),
        parent_span_id=draw(st.one_of(st.just(b""), _ids(8))),
        name=draw(st.text(max_size=20)),
        kind=draw(st.integers(-2, 8)),  # type: ignore[arg-type]
        start_time_unix_nano=start,
        end_time_unix_nano=end,
        attributes=draw(attributes),
    )
    span.status.code = draw(st.integers(0, 4))  # type: ignore[assignment]
    span.status.message = draw(st.text(max_size=10))
    for _ in range(draw(st.integers(0, 2))):
        event = span.events.add(name=draw(st.text(max_size=10)), time_unix_nano=draw(st.integers(0, UINT64)))
        event.attributes.extend(draw(st.lists(st.builds(KeyValue, key=attribute_keys, value=_scalars), max_size=2)))
    for _ in range(draw(st.integers(0, 2))):
        span.links.add(trace_id=draw(_ids(16)), span_id=draw(_ids(8)))
    return span


@st.composite
def requests(draw: st.DrawFn) -> ExportTraceServiceRequest:
    """An ExportTraceServiceRequest of a few resources and scopes, with good and bad spans."""
    request = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(0, 2))):
        rs = request.resource_spans.add()
        service = draw(st.one_of(st.none(), st.text(max_size=20)))
        if service is not None:
            rs.resource.attributes.add(key="service.name", value=AnyValue(string_value=service))
        rs.resource.attributes.extend(draw(attributes))
        for _ in range(draw(st.integers(0, 2))):
            ss = rs.scope_spans.add()
            ss.scope.name = draw(st.text(max_size=10))
            ss.spans.extend(draw(st.lists(spans(), max_size=3)))
    return request


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with a few random edits: flipped bytes, cuts, insertions, truncation."""
    body = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "delete", "insert", "truncate"]))
        at = draw(st.integers(0, len(body)))
        if op == "flip" and at < len(body):
            body[at] ^= draw(st.integers(1, 255))
        elif op == "delete":
            del body[at : at + draw(st.integers(1, 16))]
        elif op == "insert":
            body[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            del body[at:]
    return bytes(body)


# -- oracles -----------------------------------------------------------------------------------


def is_valid(span: Span, now_ns: int) -> bool:
    """The collector's per-span rules, restated: ids of the right size and not zero, sane times."""
    return (
        len(span.trace_id) == 16
        and any(span.trace_id)
        and len(span.span_id) == 8
        and any(span.span_id)
        and len(span.parent_span_id) in (0, 8)
        and EARLIEST_NS <= span.start_time_unix_nano <= now_ns + FUTURE_SLACK_NS
        and span.start_time_unix_nano <= span.end_time_unix_nano <= now_ns + 2 * FUTURE_SLACK_NS
    )


def all_spans(request: ExportTraceServiceRequest) -> list[Span]:
    return [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]


def check_protobuf_outcome(
    c: Fuzzed, response: httpx.Response, before: int, decoded: ExportTraceServiceRequest | None
) -> None:
    """A body the test decoded itself (``decoded``; None if it is not a valid request)."""
    if decoded is None:
        assert response.status_code == 400, response.text[:300]
        assert c.stored() == before
        return
    posted = all_spans(decoded)
    if len(posted) > MAX_SPANS:
        assert response.status_code == 413
        assert c.stored() == before
        return
    assert response.status_code == 200, response.text[:300]
    valid = [s for s in posted if is_valid(s, time.time_ns())]
    answer = ExportTraceServiceResponse()
    if response.headers["content-type"] == JSON:
        json_format.Parse(response.content, answer)
    else:
        answer.ParseFromString(response.content)
    assert answer.partial_success.rejected_spans == len(posted) - len(valid)
    assert bool(answer.partial_success.error_message) == (len(valid) < len(posted))
    assert c.stored() == before + len(valid)
    check_readable(c, valid)


def check_readable(c: Fuzzed, accepted: list[Span]) -> None:
    """What was accepted reads back through the query API: each trace, with its spans."""
    for trace_id in {s.trace_id for s in accepted}:
        response = c.http.get(f"/api/v1/traces/{trace_id.hex()}")
        assert response.status_code == 200, response.text[:300]
        returned = {s["span_id"] for s in response.json()["spans"]}
        assert {s.span_id.hex() for s in accepted if s.trace_id == trace_id} <= returned


def decode_protobuf(body: bytes) -> ExportTraceServiceRequest | None:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError:
        return None
    return request


def json_span_count(doc: Any) -> int:
    """Spans in an OTLP JSON document the collector accepted (so its shape is right)."""
    return sum(
        len(ss.get("spans") or []) for rs in (doc.get("resourceSpans") or []) for ss in (rs.get("scopeSpans") or [])
    )


def otlp_json(request: ExportTraceServiceRequest) -> dict[str, Any]:
    """The request as OTLP JSON: protobuf's JSON mapping, with ids in hex and enums as numbers."""
    doc = json_format.MessageToDict(request, use_integers_for_enums=True)
    for rs in doc.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for span in ss.get("spans", []):
                for obj in (span, *span.get("links", [])):
                    for name in ("traceId", "spanId", "parentSpanId"):
                        if name in obj:
                            obj[name] = base64.b64decode(obj[name]).hex()
    return doc


# -- protobuf ----------------------------------------------------------------------------------


@FUZZ
@given(body=st.binary(max_size=512))
def test_random_bytes_as_protobuf_are_refused_or_stored_exactly(collector: Fuzzed, body: bytes) -> None:
    before = collector.stored()
    response = collector.post(body)
    check_protobuf_outcome(collector, response, before, decode_protobuf(body))


@FUZZ
@given(request=requests())
def test_generated_requests_store_exactly_their_valid_spans(
    collector: Fuzzed, request: ExportTraceServiceRequest
) -> None:
    before = collector.stored()
    response = collector.post(request.SerializeToString())
    check_protobuf_outcome(collector, response, before, request)


@FUZZ
@given(data=st.data(), request=requests())
def test_mutated_protobuf_requests_are_refused_or_stored_exactly(
    collector: Fuzzed, data: st.DataObject, request: ExportTraceServiceRequest
) -> None:
    body = data.draw(mutated(request.SerializeToString()))
    before = collector.stored()
    response = collector.post(body)
    check_protobuf_outcome(collector, response, before, decode_protobuf(body))


# -- JSON --------------------------------------------------------------------------------------

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12,
)
# Values with the right names in them, so that random documents reach past the first check.
otlp_keys = st.sampled_from(
    ["resourceSpans", "scopeSpans", "spans", "traceId", "spanId", "parentSpanId", "links", "attributes",
     "startTimeUnixNano", "endTimeUnixNano", "value", "stringValue", "arrayValue", "kvlistValue", "key", "name"]
)  # fmt: skip
otlp_shaped = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=34), st.sampled_from(["ab" * 8, "ab" * 16])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(otlp_keys, inner, max_size=4)),
    max_leaves=16,
)


def check_json_outcome(c: Fuzzed, response: httpx.Response, before: int, doc: Any) -> None:
    """Any JSON body: a 200 stores the spans it did not reject; anything else stores nothing."""
    assert response.headers["content-type"] == JSON
    if response.status_code != 200:
        assert response.status_code in (400, 413), response.text[:300]
        assert "message" in response.json()
        assert c.stored() == before
        return
    rejected = int(response.json().get("partialSuccess", {}).get("rejectedSpans", "0"))
    assert c.stored() == before + json_span_count(doc) - rejected


@FUZZ
@given(doc=st.one_of(json_values, st.dictionaries(otlp_keys, otlp_shaped, max_size=3)))
def test_random_json_documents_are_refused_or_stored_exactly(collector: Fuzzed, doc: Any) -> None:
    before = collector.stored()
    response = collector.post(json.dumps(doc).encode(), JSON)
    check_json_outcome(collector, response, before, doc)


@FUZZ
@given(request=requests())
def test_otlp_json_of_generated_requests_stores_exactly_their_valid_spans(
    collector: Fuzzed, request: ExportTraceServiceRequest
) -> None:
    before = collector.stored()
    response = collector.post(json.dumps(otlp_json(request)).encode(), JSON)
    check_protobuf_outcome(collector, response, before, request)


def _paths(doc: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _paths(value, (*path, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from _paths(value, (*path, i))


@FUZZ
@given(data=st.data(), request=requests())
def test_mutated_otlp_json_is_refused_or_stored_exactly(
    collector: Fuzzed, data: st.DataObject, request: ExportTraceServiceRequest
) -> None:
    doc = otlp_json(request)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(list(_paths(doc))))
        replacement = data.draw(st.one_of(json_values, otlp_shaped, st.sampled_from(["NaN", "-1", "1e400", "zz"])))
        if not path:
            doc = replacement
            continue
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        parent[path[-1]] = replacement
    body = json.dumps(doc).encode()
    if data.draw(st.booleans()):
        body = data.draw(mutated(body))  # and the text itself, now and then
    before = collector.stored()
    response = collector.post(body, JSON)
    try:
        parsed = json.loads(body)
    except ValueError:
        assert response.status_code == 400
        assert collector.stored() == before
        return
    check_json_outcome(collector, response, before, parsed)


# -- gzip --------------------------------------------------------------------------------------


def _gzip_members(body: bytes, cuts: list[int]) -> bytes:
    """``body`` as one gzip member per piece between ``cuts`` (RFC 1952 allows several)."""
    bounds = [0, *sorted(min(c, len(body)) for c in cuts), len(body)]
    return b"".join(gzip.compress(body[a:b]) for a, b in zip(bounds, bounds[1:], strict=False))


@FUZZ
@given(
    request=requests(),
    as_json=st.booleans(),
    cuts=st.lists(st.integers(0, 4096), max_size=2),
    padding=st.sampled_from([b"", b"\0" * 8]),
)
def test_valid_gzip_bodies_in_one_or_more_members_store_exactly_their_valid_spans(
    collector: Fuzzed, request: ExportTraceServiceRequest, as_json: bool, cuts: list[int], padding: bytes
) -> None:
    raw = json.dumps(otlp_json(request)).encode() if as_json else request.SerializeToString()
    before = collector.stored()
    response = collector.post(
        _gzip_members(raw, cuts) + padding, JSON if as_json else PROTOBUF, **{"Content-Encoding": "gzip"}
    )
    check_protobuf_outcome(collector, response, before, request)


@FUZZ
@given(data=st.data(), request=requests())
def test_corrupt_gzip_is_refused_with_nothing_stored(
    collector: Fuzzed, data: st.DataObject, request: ExportTraceServiceRequest
) -> None:
    zipped = gzip.compress(request.SerializeToString())
    body = data.draw(st.one_of(mutated(zipped), st.binary(max_size=256).map(lambda b: b"\x1f\x8b\x08" + b)))
    before = collector.stored()
    response = collector.post(body, **{"Content-Encoding": "gzip"})
    try:
        inflated: bytes | None = gzip.decompress(body)  # Python's gzip module as the reference
    except (OSError, EOFError, zlib.error):
        inflated = None
    if inflated is None or (response.status_code == 400 and _zlib_is_stricter(body)):
        assert response.status_code in (400, 413), response.text[:300]
        assert collector.stored() == before
    else:
        check_protobuf_outcome(collector, response, before, decode_protobuf(inflated))


def _zlib_is_stricter(body: bytes) -> bool:
    """Header flags where zlib (the collector) refuses what Python's gzip module lets pass.

    FHCRC: zlib checks the header CRC, Python's gzip skips it unread. Reserved bits (0xE0):
    RFC 1952 says a decompressor must refuse them; zlib does, Python's gzip ignores them.
    """
    return len(body) > 3 and bool(body[3] & 0xE2)


def test_a_gzip_body_that_inflates_past_the_limit_is_a_413_with_nothing_stored(collector: Fuzzed) -> None:
    padding = "p" * (MAX_BODY + 1)
    big = build_request([build_span(attributes={"pad": padding})]).SerializeToString()
    before = collector.stored()
    response = collector.post(gzip.compress(big), **{"Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert collector.stored() == before


# -- headers -----------------------------------------------------------------------------------

MEDIA_TYPES = {
    "application/x-protobuf": PROTOBUF,
    "Application/X-Protobuf": PROTOBUF,
    "application/x-protobuf; proto=opentelemetry": PROTOBUF,
    "application/json; charset=utf-8": JSON,
    "APPLICATION/JSON": JSON,
    "application/protobuf": None,
    "text/plain": None,
    "*/*": None,
    "": None,
}
ENCODINGS = {"": "", "identity": "", "gzip": "gzip", "GZip": "gzip", "deflate": "deflate"}
UNSUPPORTED_ENCODINGS = ["br", "x-gzip", "gzip, br", "zstd", "compress"]


@FUZZ
@given(
    request=requests(),
    content_type=st.sampled_from(list(MEDIA_TYPES)),
    encoding=st.sampled_from([*ENCODINGS, *UNSUPPORTED_ENCODINGS]),
)
def test_content_type_and_encoding_are_read_loosely_and_anything_else_is_a_415(
    collector: Fuzzed, request: ExportTraceServiceRequest, content_type: str, encoding: str
) -> None:
    media = MEDIA_TYPES[content_type]
    body = json.dumps(otlp_json(request)).encode() if media == JSON else request.SerializeToString()
    if ENCODINGS.get(encoding) == "gzip":
        body = gzip.compress(body)
    elif ENCODINGS.get(encoding) == "deflate":
        body = zlib.compress(body)
    before = collector.stored()
    response = collector.post(body, content_type, **({"Content-Encoding": encoding} if encoding else {}))
    if media is None or encoding in UNSUPPORTED_ENCODINGS:
        assert response.status_code == 415, response.text[:300]
        assert collector.stored() == before
    else:
        check_protobuf_outcome(collector, response, before, request)


# -- PostgreSQL ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_collector(postgres_url: str) -> Iterator[Fuzzed]:
    """The same checks on PostgreSQL, with the default value limit: its text and index rules differ."""
    url = create_database(postgres_url)
    try:
        with CollectorProcess(url, "--max-spans", str(MAX_SPANS)) as process:
            c = Fuzzed(process)
            yield c
            c.http.close()
            c.store.close()
    finally:
        drop_database(postgres_url, url)


@settings(FUZZ, max_examples=60)
@given(request=requests(), as_json=st.booleans())
def test_generated_requests_store_exactly_their_valid_spans_on_postgresql(
    pg_collector: Fuzzed, request: ExportTraceServiceRequest, as_json: bool
) -> None:
    before = pg_collector.stored()
    if as_json:
        response = pg_collector.post(json.dumps(otlp_json(request)).encode(), JSON)
    else:
        response = pg_collector.post(request.SerializeToString())
    check_protobuf_outcome(pg_collector, response, before, request)


def test_values_postgresql_cannot_index_or_hold_are_stored_and_found(pg_collector: Fuzzed) -> None:
    """A label or service name past the b-tree's ~2.7 kB row limit, NUL in names: one such span
    used to fail the whole group commit (every request in it answered 503)."""
    huge = os.urandom(5000).hex()  # incompressible: the index cannot squeeze it under the limit
    odd = build_span(
        "nul\0in name",
        attributes={"hoptrace.label.big": huge, "hoptrace.label.nul": "a\0b", "hoptrace.label.k": "v"},
    )
    before = pg_collector.stored()
    body = build_request([odd], service="s" + huge).SerializeToString()
    response = pg_collector.post(body)
    assert response.status_code == 200, response.text
    assert pg_collector.stored() == before + 1
    stored = pg_collector.http.get(f"/api/v1/traces/{odd.trace_id.hex()}").json()["spans"][0]
    assert stored["name"] == "nul\0in name"
    assert stored["attributes"]["hoptrace.label.big"] == huge  # kept whole on the span (under 16 KiB)
    found = pg_collector.http.get("/api/v1/spans", params={"label.k": "v"}).json()["spans"]
    assert odd.span_id.hex() in {s["span_id"] for s in found}
    found = pg_collector.http.get("/api/v1/spans", params={"label.nul": "a\0b"}).json()["spans"]
    assert odd.span_id.hex() in {s["span_id"] for s in found}


# -- the query API, by schemathesis ------------------------------------------------------------

schemathesis.serializer.alias(PROTOBUF, "application/octet-stream")  # the ingest body is raw bytes


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    """A collector holding a few spans: a trace with a parent, labels, ids, events and a link."""
    db = tmp_path_factory.mktemp("schema") / "ht.db"
    with CollectorProcess(f"sqlite:///{db}") as process:
        root = build_span("GET /orders", attributes={"http.route": "/orders", "hoptrace.label.order": "o-1"})
        root.events.add(name="cache.miss", time_unix_nano=UINT64)  # the latest time OTLP can say
        child = build_span("SELECT", trace_id=root.trace_id, parent=root.span_id, error=True)
        consumer = build_span("consume", attributes={"messaging.message.id": "m-1", "ratio": float("nan")})
        consumer.links.add(trace_id=root.trace_id, span_id=root.span_id)
        body = build_request([root, child, consumer], service="orders").SerializeToString()
        with process.client() as http:
            response = http.post("/v1/traces", content=body, headers={"Content-Type": PROTOBUF})
            assert response.status_code == 200
            assert http.get(f"/api/v1/traces/{root.trace_id.hex()}").status_code == 200
        yield process


@pytest.fixture(scope="module")
def api_schema(seeded: CollectorProcess) -> Any:
    return schemathesis.openapi.from_url(f"{seeded.url}/openapi.json")


# schemathesis's own pytest plumbing (``from_fixture``) does not run on pytest 9, so each
# operation's strategy is driven by hypothesis directly.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_no_operation_of_the_served_openapi_answers_with_a_server_error(api_schema: Any, mode: GenerationMode) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    paths = {op.path for op in operations}
    assert {"/v1/traces", "/api/v1/traces/{trace_id}", "/api/v1/spans", "/api/v1/services"} <= paths
    for operation in operations:
        if mode == GenerationMode.NEGATIVE and not (operation.query or operation.path_parameters or operation.body):
            continue  # nothing to make invalid

        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def call(case: schemathesis.Case[Any]) -> None:
            case.call_and_validate(checks=[not_a_server_error])

        call()


def test_the_served_openapi_documents_the_ingest_body(seeded: CollectorProcess) -> None:
    """So that schemathesis (and any reader) sends protobuf and JSON bodies, not an empty post."""
    with httpx.Client(base_url=seeded.url) as http:
        spec = http.get("/openapi.json").json()
    content = spec["paths"]["/v1/traces"]["post"]["requestBody"]["content"]
    assert set(content) == {PROTOBUF, JSON}


# -- what the fuzzing found, pinned ------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"from": "inf"},
        {"to": "-Infinity"},
        {"from": "1e300"},
        {"from": "0001-01-01T00:00:00+00:00"},
        {"min_ms": "inf"},
        {"max_ms": "1e308"},
        {"cursor": "99999999999999999999999:0123456789abcdef"},
        {"cursor": "1:0123"},
    ],
    ids=["inf", "minus-inf", "huge-ms", "year-1", "inf-duration", "huge-duration", "huge-cursor", "short-cursor"],
)
def test_span_search_answers_out_of_range_parameters_without_a_server_error(
    seeded: CollectorProcess, params: dict[str, str]
) -> None:
    """Non-finite or huge numbers used to reach the database (or int()) and fail with a 500."""
    with seeded.client() as http:
        response = http.get("/api/v1/spans", params=params)
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert response.json()["detail"]


def test_attribute_values_json_cannot_hold_read_back_as_otlp_json_strings(seeded: CollectorProcess) -> None:
    """NaN and infinities are valid OTLP doubles; the API's JSON used to fail on them with a 500."""
    root = build_span("odd values", attributes={"nan": float("nan"), "inf": float("-inf")})
    root.events.add(name="late", time_unix_nano=UINT64)
    with seeded.client() as http:
        body = build_request([root]).SerializeToString()
        assert http.post("/v1/traces", content=body, headers={"Content-Type": PROTOBUF}).status_code == 200
        response = http.get(f"/api/v1/traces/{root.trace_id.hex()}")
    assert response.status_code == 200, response.text
    stored = response.json()["spans"][0]
    assert stored["attributes"] == {"nan": "NaN", "inf": "-Infinity"}
    assert stored["events"][0]["time"].startswith("2554-07-21T23:34:33.")  # the largest uint64 time
