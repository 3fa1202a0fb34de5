"""Webhook body parsing: content types, charsets, errors with status, code and place."""

from __future__ import annotations

import base64
import json
import math
import random
from typing import Any

import pytest

from triggerd.errors import TriggerdError
from triggerd.webhooks.body import (
    MAX_BODY_DEPTH,
    BodyError,
    ParsedBody,
    cached_content_type,
    parse_body,
    parse_content_type,
    parse_input,
)


def parse_error(content_type: str | None, body: bytes, mode: str = "parsed") -> BodyError:
    with pytest.raises(BodyError) as info:
        parse_body(content_type, body, mode=mode)
    return info.value


# --- JSON --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("application/json", b'{"a": 1, "b": [true, null]}', {"a": 1, "b": [True, None]}),
        ("application/json; charset=utf-8", b'{"a": "\xc3\xa9"}', {"a": "é"}),
        ("Application/JSON", b"{}", {}),
        ("application/vnd.github+json", b'{"ref": "main"}', {"ref": "main"}),
        ("application/cloudevents+json", b'{"id": "1"}', {"id": "1"}),
        ("application/json", b"[1, 2]", {"body": [1, 2]}),
        ("application/json", b'"text"', {"body": "text"}),
        ("application/json", b"42", {"body": 42}),
        ("application/json", b"null", {"body": None}),
        ("application/json", b'  \n{"a": 1}\n ', {"a": 1}),
        ("application/json", b'\xef\xbb\xbf{"bom": true}', {"bom": True}),
        ("application/json; charset=utf-16", '{"w": "é"}'.encode("utf-16"), {"w": "é"}),
        ("application/json", b'{"a": 1, "a": 2}', {"a": 2}),
    ],
)
def test_json(content_type: str, body: bytes, expected: dict[str, Any]) -> None:
    assert parse_body(content_type, body) == ParsedBody(input=expected, raw=body)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b"{",
            "invalid JSON body: Expecting property name enclosed in double quotes"
            " at line 1, column 2 (character 1)",
        ),
        (
            b'{"a": 1,\n "b": }',
            "invalid JSON body: Expecting value at line 2, column 7 (character 15)",
        ),
        (b"{} {}", "invalid JSON body: Extra data at line 1, column 4 (character 3)"),
        (b"   ", "invalid JSON body: Expecting value at line 1, column 4 (character 3)"),
        (b'{"a": NaN}', "invalid JSON body: NaN is not a JSON value"),
        (b"[Infinity]", "invalid JSON body: Infinity is not a JSON value"),
        (b"-Infinity", "invalid JSON body: -Infinity is not a JSON value"),
        (b"[" * 100_000 + b"]" * 100_000, "invalid JSON body: nested more than 128 levels deep"),
    ],
)
def test_invalid_json_is_400_saying_where(body: bytes, message: str) -> None:
    error = parse_error("application/json", body)
    assert (error.status, error.code, error.message) == (400, "invalid_body", message)
    assert isinstance(error, TriggerdError)


@pytest.mark.parametrize("extra", [b"", b'"n": 1234567890123456789, '])  # both parsers
def test_json_nested_past_the_limit_is_400_whichever_parser_reads_it(extra: bytes) -> None:
    """orjson took 1,024 levels and the standard library about 980: a body the admin API
    then could not answer. Both now stop at MAX_BODY_DEPTH."""
    def nested(depth: int) -> bytes:  # an object holding depth - 1 arrays
        return b"{" + extra + b'"k": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"

    parsed = parse_body("application/json", nested(MAX_BODY_DEPTH))
    assert "k" in parsed.input
    for depth in (MAX_BODY_DEPTH + 1, 1000):
        error = parse_error("application/json", nested(depth))
        assert (error.status, error.message) == (
            400, f"invalid JSON body: nested more than {MAX_BODY_DEPTH} levels deep")
    # Brackets inside strings are text, and wide is not deep.
    wide = b'{"s": "' + b"[" * 500 + b'", "list": [' + b",".join([b"[{}]"] * 500) + b"]}"
    assert len(parse_body("application/json", wide).input["list"]) == 500


def test_json_number_beyond_the_digit_limit_is_400() -> None:
    error = parse_error("application/json", b"[" + b"9" * 5000 + b"]")
    assert (error.status, error.code) == (400, "invalid_body")
    # In the sender's terms: Python's own words named sys.set_int_max_str_digits().
    assert error.message == "invalid JSON body: a number with more than 4300 digits"


def test_json_not_utf8_is_400() -> None:
    error = parse_error("application/json", b'{"a": "\xff"}')
    assert (error.status, error.code) == (400, "invalid_body")
    assert error.message == (
        "JSON body is not valid utf-8: 'utf-8' codec can't decode byte 0xff in position 7:"
        " invalid start byte"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b'{"a": "x\\u0000y"}',
            "JSON body: string at /a contains a NUL character (\\u0000), which cannot be stored",
        ),
        (
            b'{"a": [1, {"b/c~": "\\u0000"}]}',
            "JSON body: string at /a/1/b~1c~0 contains a NUL"
            " character (\\u0000), which cannot be stored",
        ),
        (
            b'{"k\\u0000": 1}',
            "JSON body: key at /k\\u0000 contains a NUL character (\\u0000),"
            " which cannot be stored",
        ),
        (
            b'["\\ud800"]',
            "JSON body: string at /body/0 contains an unpaired surrogate, which cannot be stored",
        ),
        (
            b'"\\udc00"',
            "JSON body: string at /body contains an unpaired surrogate, which cannot be stored",
        ),
        (
            b'{"\\ud800": 1}',
            "JSON body: key at /\\ud800 contains an unpaired surrogate, which cannot be stored",
        ),
    ],
)
def test_strings_postgres_cannot_store_are_400(body: bytes, message: str) -> None:
    error = parse_error("application/json", body)
    assert (error.status, error.code, error.message) == (400, "invalid_body", message)


def test_a_surrogate_a_charset_decodes_is_400_too() -> None:
    # No \u escape is left once this charset decoded the body: the text itself holds it.
    error = parse_error("application/json; charset=unicode_escape", b'{"a": "\\ud800"}')
    assert error.message == (
        "JSON body: string at /a contains an unpaired surrogate, which cannot be stored"
    )


def test_a_second_bom_is_invalid_json() -> None:
    error = parse_error("application/json", b"\xef\xbb\xbf\xef\xbb\xbf{}")
    assert error.message == (
        "invalid JSON body: Unexpected UTF-8 BOM (decode using utf-8-sig)"
        " at line 1, column 1 (character 0)"
    )


def test_paired_surrogate_escapes_are_fine() -> None:
    assert parse_body("application/json", b'{"e": "\\ud83d\\ude00"}').input == {"e": "😀"}


def test_deep_but_acceptable_json_is_walked_for_storability() -> None:
    # The \u escape makes the storability walk run, to the deepest level allowed.
    body = b'{"a": ' * MAX_BODY_DEPTH + b'"\\u0078"' + b"}" * MAX_BODY_DEPTH
    parsed: Any = parse_body("application/json", body).input
    depth = 0
    while isinstance(parsed, dict):
        parsed = parsed["a"]
        depth += 1
    assert (depth, parsed) == (MAX_BODY_DEPTH, "x")


# --- forms -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("application/x-www-form-urlencoded", b"a=1&b=two", {"a": "1", "b": "two"}),
        ("application/x-www-form-urlencoded", b"a=1&a=2&b=x&a=3", {"a": ["1", "2", "3"], "b": "x"}),
        ("application/x-www-form-urlencoded", b"q=hello+world%21", {"q": "hello world!"}),
        (
            "application/x-www-form-urlencoded",
            b"e=%C3%A9&empty=&flag",
            {"e": "é", "empty": "", "flag": ""},
        ),
        ("application/x-www-form-urlencoded; charset=iso-8859-1", b"e=%E9", {"e": "é"}),
        ("application/x-www-form-urlencoded", b"a%5B%5D=1&a%5B%5D=2", {"a[]": ["1", "2"]}),
        ("application/x-www-form-urlencoded", b"a=1;b=2", {"a": "1;b=2"}),
    ],
)
def test_form(content_type: str, body: bytes, expected: dict[str, Any]) -> None:
    assert parse_body(content_type, body) == ParsedBody(input=expected, raw=body)


def test_form_with_invalid_percent_encoded_utf8_is_400() -> None:
    error = parse_error("application/x-www-form-urlencoded", b"e=%E9")
    assert (error.status, error.code) == (400, "invalid_body")
    assert error.message.startswith("form body is not valid utf-8: 'utf-8' codec can't decode")


def test_form_with_nul_is_400() -> None:
    error = parse_error("application/x-www-form-urlencoded", b"a=%00")
    assert error.message == (
        "form body: string at /a contains a NUL character (\\u0000), which cannot be stored"
    )


# --- text --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("text/plain", b"hello", "hello"),
        ("text/plain; charset=utf-8", "héllo".encode(), "héllo"),
        ("text/plain; charset=ISO-8859-1", "héllo".encode("latin-1"), "héllo"),
        ('text/csv; charset="windows-1252"', b"a;\x80", "a;€"),
        ("text/xml", b"<a/>", "<a/>"),
    ],
)
def test_text(content_type: str, body: bytes, expected: str) -> None:
    assert parse_body(content_type, body) == ParsedBody(input={"body": expected}, raw=body)


def test_text_not_in_its_charset_is_400() -> None:
    error = parse_error("text/plain", b"caf\xe9")
    assert (error.status, error.code) == (400, "invalid_body")
    assert error.message.startswith("text body is not valid utf-8")


@pytest.mark.parametrize(
    "content_type", ["text/plain; charset=klingon", "application/json; charset=rot13"]
)
def test_unknown_charset_is_415(content_type: str) -> None:
    error = parse_error(content_type, b"x")
    assert (error.status, error.code) == (415, "unsupported_media_type")
    assert error.message.startswith("unsupported charset")


# --- empty, unsupported, missing ---------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [None, "", "application/json", "text/plain", "application/octet-stream", "nonsense"],
)
@pytest.mark.parametrize("mode", ["parsed", "raw"])
def test_empty_body_is_empty_input(content_type: str | None, mode: str) -> None:
    assert parse_body(content_type, b"", mode=mode) == ParsedBody(input={}, raw=b"")


@pytest.mark.parametrize(
    ("content_type", "message"),
    [
        (
            None,
            "the request has a body but no Content-Type (send application/json,"
            " application/x-www-form-urlencoded or text/*)",
        ),
        (
            "  ",
            "the request has a body but no Content-Type (send application/json,"
            " application/x-www-form-urlencoded or text/*)",
        ),
        (
            "application/octet-stream",
            "unsupported Content-Type 'application/octet-stream'"
            " (send application/json, application/x-www-form-urlencoded or text/*)",
        ),
        (
            "multipart/form-data; boundary=x",
            "unsupported Content-Type 'multipart/form-data'"
            " (send application/json, application/x-www-form-urlencoded or text/*)",
        ),
        (
            "application/jsonp",
            "unsupported Content-Type 'application/jsonp'"
            " (send application/json, application/x-www-form-urlencoded or text/*)",
        ),
        ("json", "malformed Content-Type 'json'"),
        ("application/json/x", "malformed Content-Type 'application/json/x'"),
        (
            "",
            "the request has a body but no Content-Type (send application/json,"
            " application/x-www-form-urlencoded or text/*)",
        ),
    ],
)
def test_unsupported_or_missing_type_is_415(content_type: str | None, message: str) -> None:
    error = parse_error(content_type, b"data")
    assert (error.status, error.code, error.message) == (415, "unsupported_media_type", message)


# --- raw mode ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("application/json", b'{"a": 1}', {"body": '{"a": 1}'}),
        ("application/octet-stream", b"caf\xc3\xa9", {"body": "café"}),
        (None, b"plain", {"body": "plain"}),
        ("nonsense", b"plain", {"body": "plain"}),
        ("application/octet-stream", b"\x89PNG\xff", {"body_base64": "iVBOR/8="}),
        ("text/plain", b"a\x00b", {"body_base64": "YQBi"}),
        ("application/json", b"{not json", {"body": "{not json"}),
    ],
)
def test_raw_mode_never_parses(
    content_type: str | None, body: bytes, expected: dict[str, Any]
) -> None:
    parsed = parse_body(content_type, body, mode="raw")
    assert parsed == ParsedBody(input=expected, raw=body)
    if "body_base64" in expected:
        assert base64.b64decode(expected["body_base64"]) == body


def test_unknown_mode_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown body mode 'binary'"):
        parse_body("text/plain", b"x", mode="binary")


# --- content type parsing ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("text/plain", ("text/plain", {})),
        (
            ' Text/Plain ; Charset="UTF-8" ; format=flowed',
            ("text/plain", {"charset": "UTF-8", "format": "flowed"}),
        ),
        ("application/json;charset=utf-8;", ("application/json", {"charset": "utf-8"})),
        ("application/json; novalue", ("application/json", {})),
    ],
)
def test_parse_content_type(value: str, expected: tuple[str, dict[str, str]]) -> None:
    assert parse_content_type(value) == expected


def test_cached_content_type_answers_like_parse_content_type() -> None:
    value = 'Text/Plain; charset="UTF-8"'
    assert cached_content_type(value) == parse_content_type(value)
    assert cached_content_type(value) is cached_content_type(value)
    for _ in range(2):  # a malformed value is refused every time, never remembered
        with pytest.raises(BodyError, match="malformed Content-Type 'json'"):
            cached_content_type("json")


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        # The text of a UTF-8 JSON body comes back with its input (BOM and spaces kept).
        ("application/json", b' {"a": 1}', ({"a": 1}, ' {"a": 1}')),
        ("application/json; charset=UTF8", b"[1]", ({"body": [1]}, "[1]")),
        ("application/json", b'\xef\xbb\xbf{"b": 2}', ({"b": 2}, '\ufeff{"b": 2}')),
        ("application/json; charset=latin-1", b'{"a": "\xe9"}', ({"a": "é"}, None)),
        ("text/plain", b"hi", ({"body": "hi"}, None)),
        ("application/x-www-form-urlencoded", b"a=1", ({"a": "1"}, None)),
        ("application/json", b"", ({}, None)),
    ],
)
def test_parse_input_returns_the_json_text_of_utf8_bodies(
    content_type: str, body: bytes, expected: tuple[dict[str, Any], str | None]
) -> None:
    assert parse_input(content_type, body) == expected
    assert parse_body(content_type, body).input == expected[0]


def test_raw_mode_input_has_no_json_text() -> None:
    assert parse_input("application/json", b'{"a": 1}', mode="raw") == (
        {"body": '{"a": 1}'},
        None,
    )


def test_number_too_large_for_a_double_is_400() -> None:
    with pytest.raises(BodyError) as info:
        parse_body("application/json", b'{"n": 1e400}')
    assert info.value.status == 400
    assert str(info.value) == "invalid JSON body: the number 1e400 is too large to store"


# --- the orjson fast path answers exactly as the standard library's parser ---------------


@pytest.mark.parametrize(
    "number",
    [
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775809",
        "18446744073709551615",
        "18446744073709551616",
        "123456789012345678901234567890",
        "1234567890123456789.5",
    ],
)
def test_integers_beyond_64_bits_keep_every_digit(number: str) -> None:
    data, _ = parse_input("application/json", f'{{"n": {number}}}'.encode())
    assert repr(data["n"]) == repr(json.loads(number))


def _random_json(rng: random.Random, depth: int = 0) -> str:
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.choice(["true", "false", "null"])
    if kind == 1:
        return str(rng.randint(-(2**70), 2**70) >> rng.randrange(72))
    if kind == 2:
        mantissa = f"{rng.choice(['', '-'])}{rng.randrange(10**rng.randrange(1, 20))}"
        fraction = f".{rng.randrange(10**rng.randrange(1, 20))}" if rng.random() < 0.7 else ""
        exponent = f"{rng.choice('eE')}{rng.choice(['', '+', '-'])}{rng.randrange(330)}"
        return mantissa + fraction + (exponent if rng.random() < 0.5 else "")
    if kind in (3, 4, 5):
        pieces = ["a", "é", "\\n", "\\u00e9", "\\ud83d\\ude00", "\\\\", '\\"', "€", "\\/", " "]
        return '"' + "".join(rng.choice(pieces) for _ in range(rng.randrange(6))) + '"'
    if kind in (6, 7):
        items = [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
        return "[" + ", ".join(items) + "]"
    members = [
        f"{_random_json(rng, 4) if rng.random() < 0.2 else json.dumps(rng.choice('abc'))}"
        f": {_random_json(rng, depth + 1)}"
        for _ in range(rng.randrange(4))
    ]
    members = [m for m in members if m.startswith('"')]
    return "{" + ", ".join(members) + "}"


def test_fast_path_agrees_with_the_standard_library_on_random_documents() -> None:
    """orjson parses first; a document it reads must come out exactly (types, signs,
    digits) as the standard library reads it, and one either refuses stays refused."""
    rng = random.Random(20261124)
    for _ in range(3000):
        text = _random_json(rng)
        try:
            expected: Any = json.loads(text)
        except ValueError:
            refused = True
        else:
            refused = _has_infinity(expected)  # 1e400: no jsonb can hold it
        if refused:
            with pytest.raises(BodyError):
                parse_input("application/json", text.encode())
            continue
        data, _ = parse_input("application/json", text.encode())
        wrapped = expected if isinstance(expected, dict) else {"body": expected}
        assert repr(data) == repr(wrapped), text


def _has_infinity(value: Any) -> bool:
    if isinstance(value, float):
        return math.isinf(value)
    if isinstance(value, list):
        return any(_has_infinity(v) for v in value)
    if isinstance(value, dict):
        return any(_has_infinity(v) for v in value.values())
    return False
