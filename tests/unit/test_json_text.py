"""The JSON text of node rows and final outputs: what PostgreSQL's jsonb can hold, with
the same result whichever encoder (orjson, or the standard library's for what orjson
refuses) wrote it."""

from __future__ import annotations

import json

import pytest

from triggerd.model import JSON
from triggerd.store.executions import _json_text


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ({"a": [1, 2.5, "x", None, True]}, {"a": [1, 2.5, "x", None, True]}),
        ({"price": float("nan"), "big": float("inf")}, {"price": None, "big": None}),
        ({"text": "a\x00b"}, {"text": "a\ufffdb"}),
        ({"text": "lone \ud800 surrogate"}, {"text": "lone \ufffd surrogate"}),
        ({"k\x00": 1}, {"k\ufffd": 1}),
        ({1: "int key", None: "none key"}, {"1": "int key", "null": "none key"}),
        ({"n": 2**70}, {"n": 2**70}),
        ({"word": "BaNaNa Infinity"}, {"word": "BaNaNa Infinity"}),
        ({"é": "日本"}, {"é": "日本"}),
        ([["nested", {"deep": [float("-inf")]}]], [["nested", {"deep": [None]}]]),
    ],
)
def test_json_text_is_what_jsonb_can_store(value: JSON, stored: JSON) -> None:
    text = _json_text(value)
    assert text is not None
    assert "\\u0000" not in text and "NaN" not in text.replace("BaNaNa", "")
    assert json.loads(text) == stored


def test_no_value_is_sql_null() -> None:
    assert _json_text(None) is None
