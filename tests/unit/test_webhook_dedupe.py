"""Webhook dedupe keys: header, JSON pointer, body hash, bounds."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest

from triggerd.model import DedupeConfig
from triggerd.webhooks.dedupe import dedupe_key, resolve_json_pointer, validate_dedupe_config

BODY = b'{"data": {"id": "evt_1"}}'
DOC: dict[str, Any] = {
    "data": {"id": "evt_1", "n": 7, "flag": True, "none": None, "obj": {"b": 1, "a": [2]}},
    "a/b": "slash",
    "m~n": "tilde",
    "~1": "literal",
    "": "empty key",
    "list": ["zero", {"id": "one"}],
    "blank": "  ",
}
SHA_BODY = hashlib.sha256(BODY).hexdigest()


def test_no_config_no_key() -> None:
    assert dedupe_key(None, {"X-Delivery": "d1"}, BODY, DOC) is None


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"X-GitHub-Delivery": "72d3162e-cc78"}, "webhook:72d3162e-cc78"),
        ({"x-github-delivery": "72d3162e-cc78"}, "webhook:72d3162e-cc78"),
        ({"X-GITHUB-DELIVERY": "72d3162e-cc78"}, "webhook:72d3162e-cc78"),
        ({}, None),
        ({"X-GitHub-Delivery": ""}, None),
        ({"X-GitHub-Delivery": "   "}, None),
    ],
)
def test_header(headers: dict[str, str], expected: str | None) -> None:
    config = DedupeConfig(header="X-GitHub-Delivery")
    assert dedupe_key(config, headers, BODY, DOC) == expected


@pytest.mark.parametrize(
    ("pointer", "expected"),
    [
        ("/data/id", "webhook:evt_1"),
        ("/data/n", "webhook:7"),
        ("/data/flag", "webhook:true"),
        ("/data/obj", 'webhook:{"a":[2],"b":1}'),
        ("/a~1b", "webhook:slash"),
        ("/m~0n", "webhook:tilde"),
        ("/~01", "webhook:literal"),
        ("/", "webhook:empty key"),
        ("/list/0", "webhook:zero"),
        ("/list/1/id", "webhook:one"),
        ("/data/none", None),
        ("/data/missing", None),
        ("/data/id/deeper", None),
        ("/list/2", None),
        ("/list/-", None),
        ("/list/01", None),
        ("/list/x", None),
        ("/list/" + "1" * 5000, None),
        ("/blank", None),
        ("data/id", None),
        ("/bad~2escape", None),
    ],
)
def test_json_pointer(pointer: str, expected: str | None) -> None:
    config = DedupeConfig(json_pointer=pointer)
    assert dedupe_key(config, {}, BODY, DOC) == expected


def test_json_pointer_on_a_non_object_body() -> None:
    # parse_body puts a JSON array under "body".
    config = DedupeConfig(json_pointer="/body/0/id")
    assert dedupe_key(config, {}, b"", {"body": [{"id": 9}]}) == "webhook:9"
    assert dedupe_key(config, {}, b"", None) is None
    assert dedupe_key(config, {}, b"", "a string") is None


def test_values_that_are_not_json_count_as_absent() -> None:
    config = DedupeConfig(json_pointer="/v")
    assert dedupe_key(config, {}, b"", {"v": object()}) is None
    assert dedupe_key(config, {}, b"", {"v": float("nan")}) is None


def test_whole_document_pointer() -> None:
    assert resolve_json_pointer(DOC, "") is DOC
    assert resolve_json_pointer([1, 2], "/1") == 2


@pytest.mark.parametrize("body", [BODY, b"", b"\xff\x00"])
def test_body_hash(body: bytes) -> None:
    config = DedupeConfig(body_hash=True)
    expected = "webhook:" + hashlib.sha256(body).hexdigest()
    assert dedupe_key(config, {}, body, None) == expected


def test_body_hash_of_empty_body_is_the_known_digest() -> None:
    config = DedupeConfig(body_hash=True)
    assert dedupe_key(config, {}, b"", {}) == (
        "webhook:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_sources_are_tried_in_order() -> None:
    config = DedupeConfig(header="X-Id", json_pointer="/data/id", body_hash=True)
    assert dedupe_key(config, {"X-Id": "h"}, BODY, DOC) == "webhook:h"
    assert dedupe_key(config, {}, BODY, DOC) == "webhook:evt_1"
    assert dedupe_key(config, {}, BODY, {}) == f"webhook:{SHA_BODY}"
    without_hash = DedupeConfig(header="X-Id", json_pointer="/data/id")
    assert dedupe_key(without_hash, {}, BODY, {}) is None


def test_long_keys_are_hashed() -> None:
    config = DedupeConfig(header="X-Id")
    at_limit = "k" * 200
    assert dedupe_key(config, {"X-Id": at_limit}, b"", None) == f"webhook:{at_limit}"
    long = "k" * 201
    digest = hashlib.sha256(long.encode()).hexdigest()
    assert dedupe_key(config, {"X-Id": long}, b"", None) == f"webhook:sha256:{digest}"


@pytest.mark.parametrize("value", ["a\x00b", "\udcff", "\ud800"])
def test_keys_text_cannot_hold_are_hashed(value: str) -> None:
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    key = dedupe_key(DedupeConfig(header="X-Id"), {"X-Id": value}, b"", None)
    assert key == f"webhook:sha256:{digest}"


def test_non_ascii_key_kept() -> None:
    key = dedupe_key(DedupeConfig(json_pointer="/id"), {}, b"", {"id": "événement"})
    assert key == "webhook:événement"


@pytest.mark.parametrize(
    ("config", "problems"),
    [
        (DedupeConfig(header="X-Id"), []),
        (DedupeConfig(json_pointer="/data/id"), []),
        (DedupeConfig(json_pointer=""), []),
        (DedupeConfig(body_hash=True), []),
        (DedupeConfig(), ["dedupe needs one of header, json or body_hash"]),
        (DedupeConfig(header=" "), ["dedupe header must not be empty"]),
        (
            DedupeConfig(json_pointer="data.id"),
            [
                "dedupe json 'data.id' is not a JSON pointer (RFC 6901: it starts with '/' and"
                " writes '~' as '~0' and '/' inside a name as '~1', e.g. '/data/id')"
            ],
        ),
        (
            DedupeConfig(json_pointer="/a~b"),
            [
                "dedupe json '/a~b' is not a JSON pointer (RFC 6901: it starts with '/' and"
                " writes '~' as '~0' and '/' inside a name as '~1', e.g. '/data/id')"
            ],
        ),
        (DedupeConfig(body_hash=True, ttl=timedelta(0)), ["dedupe ttl must be positive"]),
    ],
)
def test_validate_dedupe_config(config: DedupeConfig, problems: list[str]) -> None:
    assert validate_dedupe_config(config) == problems
