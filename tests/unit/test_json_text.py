"""The JSON text of node rows and final outputs: what PostgreSQL's jsonb can hold, with
the same result whichever encoder (orjson, or the standard library's for what orjson
refuses) wrote it. Node rows travel as one JSON array, each value held to the same rule."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from triggerd.model import JSON
from triggerd.store.executions import NodeRow, _json_text, _node_rows_json

CASES = pytest.mark.parametrize(
    ("value", "stored"),
    [
        ({"a": [1, 2.5, "x", None, True]}, {"a": [1, 2.5, "x", None, True]}),
        ({"price": float("nan"), "big": float("inf")}, {"price": None, "big": None}),
        ({"text": "a\x00b"}, {"text": "a\ufffdb"}),
        ({"text": "lone \ud800 surrogate"}, {"text": "lone \ufffd surrogate"}),
        ({"k\x00": 1}, {"k\ufffd": 1}),
        ({1: "int key", None: "none key"}, {"1": "int key", "null": "none key"}),
        ({1: "int key", "k\x00": "a\x00"}, {"1": "int key", "k\ufffd": "a\ufffd"}),
        ({"n": 2**70}, {"n": 2**70}),
        ({"word": "BaNaNa Infinity"}, {"word": "BaNaNa Infinity"}),
        ({"é": "日本"}, {"é": "日本"}),
        ([["nested", {"deep": [float("-inf")]}]], [["nested", {"deep": [None]}]]),
    ],
)


@CASES
def test_json_text_is_what_jsonb_can_store(value: JSON, stored: JSON) -> None:
    text = _json_text(value)
    assert text is not None
    assert "\\u0000" not in text and "NaN" not in text.replace("BaNaNa", "")
    assert json.loads(text) == stored


def test_no_value_is_sql_null() -> None:
    assert _json_text(None) is None


@CASES
def test_node_rows_hold_what_jsonb_can_store(value: JSON, stored: JSON) -> None:
    started = datetime(2026, 12, 5, 9, 30, 0, 123456, tzinfo=UTC)
    row = NodeRow(
        execution_id="0b9a5a4e-7d1c-4a38-9d51-5e1b2f0c8a11", node_id="fetch", node_type="set",
        status="ERROR", attempt=2, input=value, output=value, error_message="bad \x00 byte",
        start_time=started, execution_time_ms=float("nan"),
    )
    text = _node_rows_json([row])
    assert "\\u0000" not in text and "NaN" not in text.replace("BaNaNa", "")
    [doc] = json.loads(text)
    assert doc["input"] == stored and doc["output"] == stored
    assert doc["error_message"] == "bad \ufffd byte"
    assert datetime.fromisoformat(doc["start_time"]) == started
    assert doc["execution_time_ms"] is None and doc["end_time"] is None
    assert (doc["execution_id"], doc["node_id"], doc["attempt"]) == (row.execution_id, "fetch", 2)


def test_a_node_row_is_sent_with_every_column_and_never_its_resume_copy() -> None:
    row = NodeRow(execution_id="e", node_id="n", node_type="set", status="SUCCESS", attempt=1,
                  input={"a": 1}, output=[1], branch="true", error_code="C", error_message="m",
                  end_time=datetime(2026, 12, 5, tzinfo=UTC), execution_time_ms=1.5,
                  from_node_id="p", edge_condition="true", resume_copy=b"\x01secret")
    [doc] = json.loads(_node_rows_json([row]))
    assert doc == {name: json.loads(json.dumps(getattr(row, name), default=str))
                   for name in NodeRow._fields if name != "resume_copy"} | {
        "end_time": "2026-12-05T00:00:00+00:00"}
    assert "resume_copy" not in repr(row) and "secret" not in repr(row)
    assert "node_id='n'" in repr(row)


@pytest.mark.parametrize("text", [
    '{"a": 1, "b": [1, 2.5, "x"], "c": null, "d": true}',
    "123456789012345678901234567890",  # past 64 bits: orjson would make it a float
    "-9223372036854775809",
    "18446744073709551616",
    '{"n": 12345678901234567890123, "m": 1}',
    "0.1234567890123456789012",
    '{"big": 1e400}',
    '"\\ud800"',
    '{"a": "\\u0000"}',
    "-0.0",
    '{"k": "v", "k": "w"}',
    '{"é": "日本", "z": {"y": [[]]}}',
    "NaN",  # never from jsonb, but read as before
])
def test_values_from_postgresql_read_as_the_standard_library_reads_them(text: str) -> None:
    from triggerd.db import decode_json

    expected, got = json.loads(text), decode_json(text)
    assert repr(got) == repr(expected)
    assert type(got) is type(expected)
