"""DynamoDB: CLIENT spans for every call, and pointers that join a write to its stream record.

A stream record carries no trace context, so the hop from a write to the Lambda that reads the
table's stream is joined by pointers (DESIGN §3): the producer's span records
``ddb:key:<table>:<hash of the key attributes>`` (and, for PutItem, ``ddb:item:<table>:<hash of
the whole item>``); the consumer's record span records the same strings from ``Keys`` and
``NewImage``.

Canonical encoding of DynamoDB attribute values (what is hashed; other SDKs may reproduce it):

- an attribute map (item, key, image) becomes a JSON object ``{name: value}``;
- each attribute value keeps its one type tag: ``{"S": text}``, ``{"N": number}``,
  ``{"B": base64}``, ``{"BOOL": true|false}``, ``{"NULL": true}``, ``{"L": [values]}``,
  ``{"M": {name: value}}``, ``{"SS"|"NS"|"BS": [members]}``;
- numbers as DynamoDB stores them: ``[-]DIGITSEexp`` with no leading or trailing zeros in DIGITS
  (``1.50``, ``1.5`` and ``1.500E0`` are all ``15E-1``; ``100`` is ``1E2``; zero is ``0``);
- binary as standard padded base64 of the bytes, whether given as bytes or as base64 text;
- set members canonicalised, de-duplicated and sorted by their canonical text;
- serialised as JSON with object keys sorted by code point, ``ensure_ascii``, no whitespace
  (Python: ``json.dumps(v, sort_keys=True, separators=(",", ":"))``), UTF-8;
- ``sha256`` of that, hex, first 32 characters.

Text given for a ``B`` value means different things on the two sides: a Lambda event carries
base64 text, while botocore sends text given as a parameter as its UTF-8 bytes. ``text_binary``
says which applies; the producer side uses ``"utf-8"``.

Key attribute names are never asked of the user: they are learnt from ``Key`` parameters of any
call, from CreateTable/DescribeTable, and from stream records, into a small per-process cache.
PartiQL statements get a span but no pointers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from opentelemetry.trace import SpanKind

from . import POINTERS, AwsCall, RecordContext, add_pointers, extract_safely

HASH_CHARS = 32
TextBinary = Literal["base64", "utf-8"]

_WRITE_OPERATIONS = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
_NEW_IMAGE_VIEWS = frozenset({"NEW_IMAGE", "NEW_AND_OLD_IMAGES"})


# --- canonical encoding -----------------------------------------------------------------------


def canonical_number(value: Any) -> str:
    """A DynamoDB number in its one canonical spelling (see module docstring)."""
    text = str(value).strip()
    try:
        sign, digits, exponent = Decimal(text).as_tuple()
    except (InvalidOperation, ValueError):
        return text  # not a number DynamoDB would accept; hash it as written
    if not isinstance(exponent, int):  # NaN or Infinity, which DynamoDB rejects
        return text
    ds = "".join(map(str, digits)).lstrip("0")
    if not ds:
        return "0"
    stripped = ds.rstrip("0")
    exponent += len(ds) - len(stripped)
    return f"{'-' if sign else ''}{stripped}E{exponent}"


def _binary(value: Any, text_binary: TextBinary) -> str:
    if isinstance(value, str):
        if text_binary == "utf-8":
            raw = value.encode("utf-8")
        else:
            try:
                raw = base64.b64decode(value)
            except (binascii.Error, ValueError):
                raw = value.encode("utf-8")
    elif isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
    elif isinstance(getattr(value, "value", None), (bytes, bytearray)):  # boto3's Binary
        raw = bytes(value.value)
    else:
        raw = str(value).encode("utf-8")
    return base64.b64encode(raw).decode("ascii")


def _canonical_set(tag: str, members: Any, text_binary: TextBinary) -> list[str]:
    if not isinstance(members, Iterable) or isinstance(members, (str, bytes, Mapping)):
        members = [members]
    if tag == "NS":
        out = {canonical_number(m) for m in members}
    elif tag == "BS":
        out = {_binary(m, text_binary) for m in members}
    else:
        out = {str(m) for m in members}
    return sorted(out)


def canonical_value(value: Any, text_binary: TextBinary = "base64") -> Any:
    """One DynamoDB-JSON attribute value in the canonical (JSON-ready) form; never raises."""
    if not isinstance(value, Mapping) or len(value) != 1:
        return {"?": repr(value)}
    ((tag, inner),) = value.items()
    if tag == "S":
        return {"S": str(inner)}
    if tag == "N":
        return {"N": canonical_number(inner)}
    if tag == "B":
        return {"B": _binary(inner, text_binary)}
    if tag == "BOOL":
        return {"BOOL": bool(inner)}
    if tag == "NULL":
        return {"NULL": True}
    if tag in ("SS", "NS", "BS"):
        return {tag: _canonical_set(tag, inner, text_binary)}
    if tag == "L":
        items = inner if isinstance(inner, (list, tuple)) else []
        return {"L": [canonical_value(v, text_binary) for v in items]}
    if tag == "M":
        members = inner if isinstance(inner, Mapping) else {}
        return {"M": {str(k): canonical_value(v, text_binary) for k, v in members.items()}}
    return {"?": repr(value)}


def is_attribute_map(value: Any) -> bool:
    """Whether ``value`` is well-formed DynamoDB JSON: a map of tagged attribute values."""
    return isinstance(value, Mapping) and all(_is_attribute_value(v) for v in value.values())


def _is_attribute_value(value: Any) -> bool:
    if not isinstance(value, Mapping) or len(value) != 1:
        return False
    ((tag, inner),) = value.items()
    if tag in ("S", "N"):
        return isinstance(inner, (str, int, float, Decimal)) and not isinstance(inner, bool)
    if tag == "B":
        return isinstance(inner, (str, bytes, bytearray))
    if tag in ("BOOL", "NULL"):
        return isinstance(inner, bool)
    if tag in ("SS", "NS", "BS"):
        return isinstance(inner, list)
    if tag == "L":
        return isinstance(inner, list) and all(_is_attribute_value(v) for v in inner)
    return tag == "M" and is_attribute_map(inner)


def item_hash(attributes: Mapping[str, Any], text_binary: TextBinary = "base64") -> str:
    """Hash of an attribute map (item, image or key) in DynamoDB JSON, as both sides compute it."""
    doc = {str(k): canonical_value(v, text_binary) for k, v in attributes.items()}
    encoded = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(encoded).hexdigest()[:HASH_CHARS]


def key_hash(item: Mapping[str, Any], key_names: Iterable[str], text_binary: TextBinary = "base64") -> str | None:
    """Hash of the key attributes of ``item``; None if one of them is missing."""
    names = list(key_names)
    if not names or any(n not in item for n in names):
        return None
    return item_hash({n: item[n] for n in names}, text_binary)


def table_name(name_or_arn: Any) -> str:
    """The table's name from a name or an ARN (tables and their streams)."""
    text = str(name_or_arn or "")
    if text.startswith("arn:"):
        resource = text.split(":", 5)[-1]  # "table/NAME" or "table/NAME/stream/TS"
        parts = resource.split("/")
        if len(parts) >= 2 and parts[0] == "table":
            return parts[1]
    return text


# --- key names learnt per process ---------------------------------------------------------------

_KEY_CACHE_MAX = 1024
_key_names: dict[str, tuple[str, ...]] = {}
_key_lock = threading.Lock()


def learn_key_names(table: str, names: Iterable[str]) -> None:
    """Remember the primary-key attribute names of a table (at most two: hash and range)."""
    key = tuple(sorted(str(n) for n in names))
    if not table or not key or len(key) > 2 or _key_names.get(table) == key:
        return
    with _key_lock:
        _key_names.pop(table, None)
        _key_names[table] = key
        while len(_key_names) > _KEY_CACHE_MAX:
            del _key_names[next(iter(_key_names))]


def known_key_names(table: str) -> tuple[str, ...] | None:
    """The key attribute names seen for a table in this process, if any."""
    return _key_names.get(table)


def forget_key_names() -> None:
    """Empty the cache (tests)."""
    with _key_lock:
        _key_names.clear()


def _learn_from_key_schema(table: Any, schema: Any) -> None:
    if table and isinstance(schema, list):
        learn_key_names(
            table_name(table),
            [s["AttributeName"] for s in schema if isinstance(s, Mapping) and s.get("AttributeName")],
        )


# --- producer side ------------------------------------------------------------------------------


def _write_requests(operation: str, params: Mapping[str, Any]) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    """(table, "put" or "key", attribute map) for each write an operation makes."""
    if operation == "PutItem":
        if isinstance(params.get("Item"), Mapping):
            yield table_name(params.get("TableName")), "put", params["Item"]
    elif operation in ("UpdateItem", "DeleteItem"):
        if isinstance(params.get("Key"), Mapping):
            yield table_name(params.get("TableName")), "key", params["Key"]
    elif operation == "BatchWriteItem":
        yield from _batch_writes(params.get("RequestItems"))
    elif operation == "TransactWriteItems":
        for entry in params.get("TransactItems") or ():
            if not isinstance(entry, Mapping):
                continue
            for action, field in (("Put", "Item"), ("Update", "Key"), ("Delete", "Key")):
                request = entry.get(action)
                if isinstance(request, Mapping) and isinstance(request.get(field), Mapping):
                    kind = "put" if action == "Put" else "key"
                    yield table_name(request.get("TableName")), kind, request[field]


def _batch_writes(request_items: Any) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    if not isinstance(request_items, Mapping):
        return
    for table, requests in request_items.items():
        for request in requests if isinstance(requests, list) else ():
            if not isinstance(request, Mapping):
                continue
            put = request.get("PutRequest")
            delete = request.get("DeleteRequest")
            if isinstance(put, Mapping) and isinstance(put.get("Item"), Mapping):
                yield table_name(table), "put", put["Item"]
            elif isinstance(delete, Mapping) and isinstance(delete.get("Key"), Mapping):
                yield table_name(table), "key", delete["Key"]


def _as_attribute_map(value: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """DynamoDB JSON for a response map that boto3's resource layer may have turned into Python values."""
    if is_attribute_map(value):
        return value
    try:
        from boto3.dynamodb.types import TypeSerializer
    except ImportError:
        return None
    serializer = TypeSerializer()
    return {k: serializer.serialize(v) for k, v in value.items()}


def _pointers_for(table: str, kind: str, attrs: Mapping[str, Any]) -> list[str]:
    pointers: list[str] = []
    if kind == "put":
        pointers.append(f"ddb:item:{table}:{item_hash(attrs, 'utf-8')}")
        names = known_key_names(table)
        hashed = key_hash(attrs, names, "utf-8") if names else None
        if hashed is not None:
            pointers.insert(0, f"ddb:key:{table}:{hashed}")
    else:
        pointers.append(f"ddb:key:{table}:{item_hash(attrs, 'utf-8')}")
    return pointers


def _table_names(operation: str, params: Mapping[str, Any]) -> list[str]:
    names: set[str] = set()
    if params.get("TableName"):
        names.add(table_name(params["TableName"]))
    request_items = params.get("RequestItems")
    if isinstance(request_items, Mapping):
        names.update(table_name(t) for t in request_items)
    for entry in params.get("TransactItems") or ():
        if isinstance(entry, Mapping):
            for request in entry.values():
                if isinstance(request, Mapping) and request.get("TableName"):
                    names.add(table_name(request["TableName"]))
    return sorted(names)


def _learn_from_request(operation: str, params: Mapping[str, Any]) -> None:
    """Key names from the parameters: a ``Key`` always holds exactly the primary key."""
    if isinstance(params.get("Key"), Mapping) and params.get("TableName"):
        learn_key_names(table_name(params["TableName"]), params["Key"].keys())
    elif operation == "CreateTable":
        _learn_from_key_schema(params.get("TableName"), params.get("KeySchema"))
    elif operation == "BatchGetItem" and isinstance(params.get("RequestItems"), Mapping):
        for table, request in params["RequestItems"].items():
            keys = request.get("Keys") if isinstance(request, Mapping) else None
            if isinstance(keys, list) and keys and isinstance(keys[0], Mapping):
                learn_key_names(table_name(table), keys[0].keys())
    elif operation in ("TransactGetItems", "TransactWriteItems"):
        for entry in params.get("TransactItems") or ():
            for request in entry.values() if isinstance(entry, Mapping) else ():
                if isinstance(request, Mapping) and isinstance(request.get("Key"), Mapping):
                    learn_key_names(table_name(request.get("TableName")), request["Key"].keys())


class DynamoDbCarrier:
    """DynamoDB calls: described on CLIENT spans; writes leave pointers for the stream's consumer."""

    def span_kind(self, operation: str, params: Mapping[str, Any]) -> SpanKind:
        return SpanKind.CLIENT

    def on_request(self, call: AwsCall) -> None:
        span, params = call.span, call.params
        span.set_attribute("db.system", "dynamodb")
        span.set_attribute("db.operation.name", call.operation)
        tables = _table_names(call.operation, params)
        if tables:
            span.set_attribute("aws.dynamodb.table_names", tables)
        if params.get("IndexName"):
            span.set_attribute("aws.dynamodb.index_name", str(params["IndexName"]))

    def on_response(self, call: AwsCall, parsed: Mapping[str, Any]) -> None:
        operation, params = call.operation, call.params
        _learn_from_request(operation, params)
        if operation in ("DescribeTable", "CreateTable", "UpdateTable"):
            table = parsed.get("Table") or parsed.get("TableDescription")
            if isinstance(table, Mapping):
                _learn_from_key_schema(table.get("TableName"), table.get("KeySchema"))
            return
        if operation not in _WRITE_OPERATIONS:
            return
        writes = list(_write_requests(operation, params))
        for table, kind, attrs in writes:
            if kind == "key":  # a Key holds exactly the primary key: learn it before hashing puts
                learn_key_names(table, attrs.keys())
        pointers = [p for table, kind, attrs in writes for p in _pointers_for(table, kind, attrs)]
        unprocessed = parsed.get("UnprocessedItems")
        if operation == "BatchWriteItem" and unprocessed:
            pointers = _without_unprocessed(pointers, unprocessed, call)
        add_pointers(call.span, pointers)


def _without_unprocessed(pointers: list[str], unprocessed: Any, call: AwsCall) -> list[str]:
    """Drop pointers of writes DynamoDB handed back: their retry (another call) will record them."""
    skipped: set[str] = set()
    count = 0
    for table, kind, attrs in _batch_writes(unprocessed):
        count += 1
        as_json = _as_attribute_map(attrs)
        if as_json is not None:
            skipped.update(_pointers_for(table, kind, as_json))
    call.span.set_attribute("hoptrace.dynamodb.unprocessed_count", count)
    return [p for p in pointers if p not in skipped]


CARRIER = DynamoDbCarrier()


# --- consumer side ------------------------------------------------------------------------------


def extract(record: Mapping[str, Any]) -> RecordContext:
    """Pointers and attributes of one DynamoDB stream record of a Lambda event; never raises.

    Stream records carry no trace context, so ``parent`` is always None: the hop is joined by
    the pointers alone.
    """
    return extract_safely("dynamodb process", "DynamoDB stream record", _extract_into, record)


def _extract_into(rc: RecordContext, record: Any) -> None:
    problems: list[str] = []
    if not isinstance(record, Mapping):
        rc.failed_to_extract = f"DynamoDB stream record is a {type(record).__name__}, not an object"
        return
    arn = record.get("eventSourceARN")
    # Only a DynamoDB ARN names the table: anything else would invent a table from garbage.
    table = table_name(arn) if isinstance(arn, str) and arn.startswith("arn:") and ":table/" in arn else ""
    event_name = record.get("eventName")
    attrs = rc.attributes
    attrs["db.system"] = "dynamodb"
    attrs["messaging.operation.type"] = "process"
    if table:
        attrs["aws.dynamodb.table_names"] = [table]
        rc.name = f"{table} process"
    else:
        problems.append("no table: eventSourceARN missing or not a table stream ARN")
    if event_name in ("INSERT", "MODIFY", "REMOVE"):
        attrs["hoptrace.dynamodb.event_name"] = event_name
    else:
        problems.append(f"eventName is {event_name!r}, not INSERT, MODIFY or REMOVE")
    change = record.get("dynamodb")
    if not isinstance(change, Mapping):
        problems.append("no 'dynamodb' object in the record")
        change = {}
    if isinstance(change.get("SequenceNumber"), (str, int)):
        rc.record_id = str(change["SequenceNumber"])
    else:
        problems.append("no dynamodb.SequenceNumber")
    pointers: list[str] = []
    keys = change.get("Keys")
    if not keys or not is_attribute_map(keys):
        problems.append("Keys missing or not DynamoDB JSON")
    elif table:
        learn_key_names(table, keys.keys())
        pointers.append(f"ddb:key:{table}:{item_hash(keys)}")
    image = change.get("NewImage")
    if event_name in ("INSERT", "MODIFY"):
        if image is None:
            if change.get("StreamViewType") in _NEW_IMAGE_VIEWS:
                problems.append("no NewImage although the stream view includes it")
        elif not is_attribute_map(image):
            problems.append("NewImage is not DynamoDB JSON")
        elif table:
            pointers.append(f"ddb:item:{table}:{item_hash(image)}")
    if pointers:
        attrs[POINTERS] = pointers
    if problems:
        rc.failed_to_extract = "; ".join(problems)
