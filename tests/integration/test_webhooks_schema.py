"""The route table's quick validity check agrees with jsonschema (Draft 2020-12, with
format checking) on every instance, and stays out of schemas it does not understand."""

from __future__ import annotations

import random
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from triggerd.quickcheck import compile_quick_check

SCHEMAS: list[Any] = [
    {},
    True,
    False,
    {"type": "object"},
    {"type": ["string", "null"]},
    {"type": "integer"},
    {"type": "number", "minimum": 1, "exclusiveMaximum": 10},
    {"type": "object", "properties": {"day": {"type": "string", "format": "date"},
                                      "count": {"type": "integer", "minimum": 1}},
     "required": ["day"], "additionalProperties": False},
    {"properties": {"tags": {"type": "array", "items": {"type": "string", "maxLength": 3},
                             "minItems": 1, "maxItems": 2}}},
    {"properties": {"kind": {"enum": ["a", 1, None, [1], {"k": True}]}}},
    {"properties": {"flag": {"const": False}, "one": {"const": 1}}},
    {"properties": {"email": {"format": "email"}, "code": {"pattern": "^[A-Z]{2}$"}}},
    {"additionalProperties": {"type": "number"}, "properties": {"x": {}}},
    {"minProperties": 1, "maxProperties": 2, "title": "t", "description": "d"},
    {"minLength": 2},
    {"maximum": 0, "minimum": -5.5},
]

VALUES: list[Any] = [
    None, True, False, 0, 1, 1.0, 1.5, -5.5, 10, 9.99, 2, "", "a", "AB", "ab", "abcd",
    "2024-02-29", "2024-02-30", "x@example.com", "nope", [], [1], ["a"], ["a", "bbbb"],
    ["a", "b", "c"], [True], {}, {"k": True}, {"k": 1}, float("inf"),
]


def instances() -> list[Any]:
    rng = random.Random(7)
    keys = ["day", "count", "tags", "kind", "flag", "one", "email", "code", "x", "y"]
    found: list[Any] = list(VALUES)
    for _ in range(3000):
        found.append({k: rng.choice(VALUES) for k in rng.sample(keys, rng.randint(0, 4))})
    return found


@pytest.mark.parametrize("schema", SCHEMAS, ids=[str(i) for i in range(len(SCHEMAS))])
def test_quick_check_agrees_with_jsonschema(schema: Any) -> None:
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    check = compile_quick_check(schema)
    assert check is not None
    disagreements = [v for v in instances() if check(v) != validator.is_valid(v)]
    assert disagreements == []


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "#/$defs/x", "$defs": {"x": {}}},
        {"anyOf": [{"type": "string"}]},
        {"properties": {"a": {"oneOf": [{}]}}},
        {"patternProperties": {"^a": {}}, "additionalProperties": False},
        {"prefixItems": [{}], "items": False},
        {"x-custom": 1},
        {"type": "decimal"},
        {"minLength": 1.5},
        {"pattern": "("},
        [],
    ],
)
def test_quick_check_declines_what_it_does_not_know(schema: Any) -> None:
    assert compile_quick_check(schema) is None


def test_integers_and_booleans_follow_json_schema() -> None:
    check = compile_quick_check({"type": "integer"})
    assert check is not None
    assert [check(v) for v in (1, 1.0, 1.5, True)] == [True, True, False, False]
    enum = compile_quick_check({"enum": [1, [0]]})
    assert enum is not None
    assert [enum(v) for v in (1.0, True, [0.0], [False])] == [True, False, True, False]
