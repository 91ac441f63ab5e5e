"""Payload capture: off by default, secrets redacted, capped in bytes, never raising."""

from __future__ import annotations

import copy
import datetime
import json
import re
from collections import OrderedDict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hoptrace.instrumentation.config import Config
from hoptrace.instrumentation.payload import (
    EVENT_ATTRIBUTE,
    REDACTED,
    REQUEST_ATTRIBUTE,
    RESPONSE_ATTRIBUTE,
    attribute_name,
    capture,
    render,
)

ON = Config(capture_payloads=True)
MARKER = re.compile(r"…\[truncated ≥?(\d+) bytes\]$")


def captured(obj: Any, config: Config = ON) -> Any:
    """Capture and parse back (for payloads small enough not to be truncated)."""
    text = capture(obj, config)
    assert text is not None
    return json.loads(text)


# An API Gateway REST (payload 1.0) proxy event, as AWS documents it, with secrets in it.
API_GATEWAY_EVENT: dict[str, Any] = {
    "resource": "/login",
    "path": "/login",
    "httpMethod": "POST",
    "headers": {
        "Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl",
        "Content-Type": "application/json",
        "Cookie": "session=abc123",
        "X-Api-Key": "k-123",
    },
    "multiValueHeaders": {"Authorization": ["Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl"]},
    "queryStringParameters": {"page": "1"},
    "requestContext": {"requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef", "stage": "prod"},
    "body": (
        '{"username": "ada", "password": "hunter2", "credentials": {"otp": "424242"},'
        ' "profile": {"refresh_token": "r-1", "city": "London"}}'
    ),
    "isBase64Encoded": False,
}


def test_capture_is_off_by_default() -> None:
    assert Config().capture_payloads is False
    assert capture({"a": 1}, Config()) is None


def test_capture_is_off_when_the_cap_is_zero() -> None:
    assert capture({"a": 1}, Config(capture_payloads=True, payload_max_bytes=0)) is None


def test_attribute_names_follow_the_span_contract() -> None:
    assert attribute_name("event") == EVENT_ATTRIBUTE == "hoptrace.payload.event"
    assert attribute_name("response") == RESPONSE_ATTRIBUTE == "hoptrace.payload.response"
    assert attribute_name("request") == REQUEST_ATTRIBUTE == "hoptrace.payload.request"


def test_plain_values_round_trip_as_json() -> None:
    payload = {"id": 7, "name": "Zoë", "ok": True, "none": None, "items": [1, 2.5, "x"]}
    assert captured(payload) == payload


def test_secret_keys_are_redacted_at_any_depth() -> None:
    payload = {"user": {"name": "ada", "credentials": {"user": "ada"}, "db_password": "p"}, "list": [{"secret": 1}]}
    out = captured(payload)
    assert out == {
        "user": {"name": "ada", "credentials": REDACTED, "db_password": REDACTED},
        "list": [{"secret": REDACTED}],
    }


def test_key_match_is_case_insensitive_and_anywhere_in_the_key() -> None:
    out = captured({"PASSWORD": "a", "X-Auth-Token": "b", "clientSecretValue": "c", "name": "d"})
    assert out == {"PASSWORD": REDACTED, "X-Auth-Token": REDACTED, "clientSecretValue": REDACTED, "name": "d"}


def test_header_maps_are_redacted_including_multi_value_headers() -> None:
    out = captured(API_GATEWAY_EVENT)
    assert out["headers"] == {
        "Authorization": REDACTED,
        "Content-Type": "application/json",
        "Cookie": REDACTED,
        "X-Api-Key": REDACTED,
    }
    assert out["multiValueHeaders"] == {"Authorization": REDACTED}
    assert out["requestContext"] == API_GATEWAY_EVENT["requestContext"]


def test_json_body_inside_a_string_is_redacted_and_stays_a_string() -> None:
    body = captured(API_GATEWAY_EVENT)["body"]
    assert isinstance(body, str)
    assert json.loads(body) == {
        "username": "ada",
        "password": REDACTED,
        "credentials": REDACTED,
        "profile": {"refresh_token": REDACTED, "city": "London"},
    }
    assert "hunter2" not in body and "r-1" not in body and "424242" not in body


def test_json_encoded_twice_is_redacted_at_both_levels() -> None:
    inner = json.dumps({"token": "t-1", "n": 1})
    out = captured({"Message": json.dumps({"payload": inner, "secret": "s-1"})})
    outer = json.loads(out["Message"])
    assert outer["secret"] == REDACTED
    assert json.loads(outer["payload"]) == {"token": REDACTED, "n": 1}


def test_malformed_json_text_still_has_its_secret_values_masked() -> None:
    out = captured({"body": '{"password": "hunter2", "user": "ada", '})
    assert "hunter2" not in out["body"]
    assert '"user": "ada"' in out["body"]


def test_name_value_entries_naming_a_secret_have_the_value_redacted() -> None:
    env = [{"Name": "DB_PASSWORD", "Value": "p-1"}, {"Name": "STAGE", "Value": "prod"}]
    out = captured({"Environment": env})
    assert out["Environment"] == [{"Name": "DB_PASSWORD", "Value": REDACTED}, {"Name": "STAGE", "Value": "prod"}]


def test_bearer_tokens_and_aws_secret_keys_in_free_text_are_masked() -> None:
    text = (
        "calling with Authorization: Bearer abc.DEF-123_xyz and key "
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY then ?api_key=abc123&page=2"
    )
    out = captured({"log": text})["log"]
    assert "abc.DEF-123_xyz" not in out
    assert "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY" not in out
    assert "abc123" not in out
    assert "Bearer [REDACTED]" in out and "page=2" in out


def test_ordinary_text_and_hashes_are_not_mistaken_for_secrets() -> None:
    text = "Basic authentication required; commit da39a3ee5e6b4b0d3255bfef95601890afd80709"
    assert captured({"message": text}) == {"message": text}


def test_redact_keys_are_configurable() -> None:
    config = Config(capture_payloads=True, redact_keys=("ssn", "iban"))
    out = captured({"ssn": "123", "customer_iban": "DE00", "password": "kept-now"}, config)
    assert out == {"ssn": REDACTED, "customer_iban": REDACTED, "password": "kept-now"}


def test_redact_keys_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    config = Config.from_env({"HOPTRACE_CAPTURE_PAYLOADS": "1", "HOPTRACE_REDACT_KEYS": "pin, ssn"})
    assert captured({"PIN": "1234", "name": "ada"}, config) == {"PIN": REDACTED, "name": "ada"}


def test_no_redact_keys_means_keys_are_kept() -> None:
    config = Config(capture_payloads=True, redact_keys=())
    assert captured({"password": "p", "name": "n"}, config) == {"password": "p", "name": "n"}


def test_long_payload_is_cut_to_the_cap_with_a_marker_counting_the_rest() -> None:
    payload = {"data": "a" * 10_000}
    full = len(json.dumps(payload, separators=(",", ":")).encode())
    text = capture(payload, Config(capture_payloads=True, payload_max_bytes=200))
    assert text is not None
    assert len(text.encode()) <= 200
    match = MARKER.search(text)
    assert match is not None
    kept = len(text[: match.start()].encode())
    assert kept + int(match.group(1)) == full
    assert text.startswith('{"data":"aaaa')


def test_cap_counts_utf8_bytes_and_never_splits_a_character() -> None:
    text = render({"greeting": "日本語の挨拶" * 200}, max_bytes=101, redact=ON.redact_pattern())
    encoded = text.encode("utf-8")  # would raise on a half character or lone surrogate
    assert len(encoded) <= 101
    assert MARKER.search(text)
    assert "日本語" in text


def test_payload_within_the_cap_has_no_marker() -> None:
    text = render({"a": "b"}, max_bytes=len('{"a":"b"}'), redact=ON.redact_pattern())
    assert text == '{"a":"b"}'


def test_cap_smaller_than_the_marker_is_still_respected() -> None:
    text = render({"a": "b" * 100}, max_bytes=7, redact=ON.redact_pattern())
    assert len(text.encode()) <= 7


def test_input_is_never_mutated() -> None:
    event = copy.deepcopy(API_GATEWAY_EVENT)
    capture(event, ON)
    assert event == API_GATEWAY_EVENT


def test_cyclic_structures_are_rendered_not_followed() -> None:
    payload: dict[str, Any] = {"name": "loop"}
    payload["self"] = payload
    items: list[Any] = [1]
    items.append(items)
    assert captured({"d": payload, "l": items}) == {"d": {"name": "loop", "self": "[cycle]"}, "l": [1, "[cycle]"]}


def test_shared_but_acyclic_references_are_rendered_each_time() -> None:
    shared = {"x": 1}
    assert captured([shared, shared]) == [{"x": 1}, {"x": 1}]


def test_very_deep_nesting_is_cut_off_without_raising() -> None:
    deep: Any = "bottom"
    for _ in range(5000):
        deep = [deep]
    text = render(deep, max_bytes=100_000, redact=ON.redact_pattern())
    assert "[nested too deep]" in text


def test_deep_json_text_is_kept_as_text() -> None:
    body = "[" * 100_000 + "]" * 100_000
    text = render({"body": body}, max_bytes=300, redact=ON.redact_pattern())
    assert len(text.encode()) <= 300 and text.startswith('{"body":"[[[')


def test_exponentially_shared_structure_renders_quickly_within_the_cap() -> None:
    node: Any = [0]
    for _ in range(200):  # 2**200 paths: only a bounded walk can finish
        node = [node, node]
    text = render(node, max_bytes=500, redact=ON.redact_pattern())
    assert len(text.encode()) <= 500
    assert MARKER.search(text)


def test_awkward_python_values_become_json() -> None:
    @dataclass
    class Order:
        id: int
        api_token: str

    out = captured(
        {
            "price": Decimal("19.99"),
            "qty": Decimal("3"),
            "precise": Decimal("0.1000000000000000000000000001"),
            "at": datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.timezone.utc),
            "day": datetime.date(2024, 5, 1),
            "raw": b'{"password": "p"}',
            "binary": b"\xff\xfe\x00",
            "tags": ("a", "b"),
            "nan": float("nan"),
            "order": Order(1, "t"),
            7: "int key",
            "ordered": OrderedDict([("b", 1)]),
        }
    )
    assert out["price"] == 19.99 and out["qty"] == 3
    assert out["precise"] == "0.1000000000000000000000000001"
    assert out["at"] == "2024-05-01T12:30:00+00:00"
    assert out["day"] == "2024-05-01"
    assert json.loads(out["raw"]) == {"password": REDACTED}
    assert out["binary"] == "base64://4A"
    assert out["tags"] == ["a", "b"]
    assert out["nan"] == "nan"
    assert out["order"] == {"id": 1, "api_token": REDACTED}
    assert out["7"] == "int key"
    assert out["ordered"] == {"b": 1}


def test_unserialisable_objects_become_a_safe_string() -> None:
    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError("no repr for you")

    out = captured({"obj": Hostile(), "plain": object()})
    assert out["obj"].endswith("Hostile>")
    assert out["plain"].startswith("<object object at")


def test_a_mapping_that_fails_while_iterated_gives_an_explanation_not_an_error() -> None:
    class Broken(dict):  # type: ignore[type-arg]
        def items(self) -> Any:
            raise RuntimeError("boom")

    text = capture(Broken(a=1), ON)
    assert text == '"[payload not captured: RuntimeError]"'


def test_lone_surrogates_do_not_produce_invalid_utf8() -> None:
    text = render({"s": "a\ud800b"}, max_bytes=100, redact=ON.redact_pattern())
    assert text.encode("utf-8") == b'{"s":"a?b"}'


def test_huge_integers_do_not_hit_the_digit_limit() -> None:
    assert captured({"n": 10**5000})["n"].startswith("[integer of")


keys = st.text(max_size=12) | st.sampled_from(["password", "Authorization", "token", "body"])
# Strings holding JSON, so the parse-and-redact path is exercised too.
json_texts = st.recursive(
    st.none() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=10,
).map(json.dumps)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary() | st.decimals() | json_texts,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(keys, children, max_size=6),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(payload=json_values, max_bytes=st.integers(min_value=1, max_value=600))
def test_capture_never_raises_and_never_exceeds_the_cap(payload: Any, max_bytes: int) -> None:
    before = copy.deepcopy(payload)
    text = capture(payload, Config(capture_payloads=True, payload_max_bytes=max_bytes))
    assert text is not None
    assert len(text.encode("utf-8")) <= max_bytes
    assert repr(payload) == repr(before)  # unchanged (repr: NaN never equals itself)
