"""Webhook request bodies: from content type and bytes to the run input.

Rules (mode ``parsed``, the default):

- an empty body is ``{}`` whatever the content type (or none);
- ``application/json`` and any ``*/*+json``: a JSON object is the input itself; any other
  JSON value ``v`` becomes ``{"body": v}``. Invalid JSON, ``NaN``/``Infinity`` (not JSON,
  and PostgreSQL ``jsonb`` refuses them) or undecodable bytes are ``400 invalid_body``;
- ``application/x-www-form-urlencoded``: the fields as a dict; a repeated key becomes a
  list of its values in order; blank values are kept as ``""``;
- ``text/*``: ``{"body": text}``;
- anything else, or a non-empty body without a content type: ``415 unsupported_media_type``.

A ``charset`` parameter is honoured for every accepted type (default UTF-8; a leading BOM
is ignored for JSON); an unknown charset is ``415``. Strings holding a NUL character or an
unpaired surrogate are ``400``: PostgreSQL cannot store them in ``jsonb``, and refusing
them here keeps that from becoming a ``500`` at insert time.

Mode ``raw`` never parses and accepts every content type: the input is ``{"body": text}``
when the bytes are UTF-8 (and storable as above), else ``{"body_base64": <standard base64>}``.
An empty body is still ``{}``. Either way :attr:`ParsedBody.raw` keeps the exact bytes.
"""

from __future__ import annotations

import base64
import codecs
import functools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import parse_qsl

import orjson

from triggerd.errors import TriggerdError
from triggerd.jsonrules import MAX_JSON_NESTING, deeper_than, refusal_text

BODY_MODES: tuple[str, ...] = ("parsed", "raw")

_MEDIA_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+")


class BodyError(TriggerdError):
    """The request body cannot become a run input; ``status`` and ``code`` are the answer."""

    INVALID = "invalid_body"
    UNSUPPORTED = "unsupported_media_type"

    def __init__(self, message: str, *, status: int, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code

    @classmethod
    def invalid(cls, message: str) -> BodyError:
        return cls(message, status=400, code=cls.INVALID)

    @classmethod
    def unsupported(cls, message: str) -> BodyError:
        return cls(message, status=415, code=cls.UNSUPPORTED)


@dataclass(frozen=True, kw_only=True)
class ParsedBody:
    input: dict[str, Any]  # the run input: a JSON object body or form fields; else {"body": v}
    raw: bytes


def parse_body(content_type: str | None, body: bytes, *, mode: str = "parsed") -> ParsedBody:
    """Turn a request body into the run input; raise :class:`BodyError` when it cannot."""
    data, _text = parse_input(content_type, body, mode=mode)
    return ParsedBody(input=data, raw=body)


def parse_input(
    content_type: str | None, body: bytes, *, mode: str = "parsed"
) -> tuple[dict[str, Any], str | None]:
    """:func:`parse_body`'s run input, without the wrapper (the ingress' hot path), and the
    text a JSON body was decoded to when its charset is UTF-8 (``None`` otherwise): for a
    JSON object that text is the input's JSON as sent, which spares re-decoding the body
    to store it."""
    if mode not in BODY_MODES:
        raise ValueError(f"unknown body mode {mode!r} (expected one of {', '.join(BODY_MODES)})")
    if not body:
        return {}, None
    if mode == "raw":
        return _raw_input(body), None
    if content_type is None or not content_type.strip():
        raise BodyError.unsupported(
            "the request has a body but no Content-Type (send application/json,"
            " application/x-www-form-urlencoded or text/*)"
        )
    media_type, params = cached_content_type(content_type)
    charset = params.get("charset")
    if media_type == "application/json" or media_type.endswith("+json"):
        text = _decode(body, charset, "JSON")
        value = _parse_json(text)
        if deeper_than(text, value, MAX_BODY_DEPTH):
            raise BodyError.invalid(
                f"invalid JSON body: nested more than {MAX_BODY_DEPTH} levels deep")
        data = value if isinstance(value, dict) else {"body": value}
        # The walk below only names the culprit: a text without \u escapes (the only way
        # to spell NUL or a surrogate in valid JSON) and without surrogates holds none.
        if not _surely_storable(text):
            _check_storable(data, "JSON body")
        utf8 = charset is None or charset.lower() in ("utf-8", "utf8")
        return data, text if utf8 else None
    if media_type == "application/x-www-form-urlencoded":
        data = _parse_form(body, charset)
        what = "form body"
    elif media_type.startswith("text/"):
        data = {"body": _decode(body, charset, "text")}
        what = "text body"
    else:
        raise BodyError.unsupported(
            f"unsupported Content-Type {media_type!r} (send application/json,"
            " application/x-www-form-urlencoded or text/*)"
        )
    _check_storable(data, what)
    return data, None


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """``"Text/Plain; charset=\\"UTF-8\\""`` -> ``("text/plain", {"charset": "UTF-8"})``.

    Raises a 415 :class:`BodyError` when the media type is not ``type/subtype``.
    """
    main, *rest = value.split(";")
    media_type = main.strip().lower()
    if not _MEDIA_TYPE.fullmatch(media_type):
        raise BodyError.unsupported(f"malformed Content-Type {value!r}")
    params: dict[str, str] = {}
    for item in rest:
        key, sep, param = item.partition("=")
        if not sep:
            continue
        param = param.strip()
        if len(param) >= 2 and param[0] == param[-1] == '"':
            param = param[1:-1]
        params[key.strip().lower()] = param
    return media_type, params


@functools.lru_cache(maxsize=64)
def cached_content_type(value: str) -> tuple[str, Mapping[str, str]]:
    """:func:`parse_content_type`, remembered: senders repeat the same few values, and
    every request needs its type. The parameters are shared: read them, never change
    them. A malformed value raises every time (errors are not cached)."""
    return parse_content_type(value)


def content_type_problem(content_type: str | None, body_mode: str) -> BodyError | None:
    """The 415 a content type earns before the body is read (``None``: acceptable).

    Mirrors :func:`parse_body`'s rules so that a request with an unsupported type is
    refused without reading its body; a missing type is judged once the body is read (an
    empty body needs none)."""
    if body_mode == "raw" or content_type is None or not content_type.strip():
        return None
    try:
        media_type, params = cached_content_type(content_type)
    except BodyError as exc:
        return exc
    if not (
        media_type == "application/json"
        or media_type.endswith("+json")
        or media_type == "application/x-www-form-urlencoded"
        or media_type.startswith("text/")
    ):
        return BodyError.unsupported(
            f"unsupported Content-Type {media_type!r} (send application/json,"
            " application/x-www-form-urlencoded or text/*)"
        )
    charset = params.get("charset")
    if charset is not None:
        try:
            codecs.lookup(charset)
        except LookupError:
            return BodyError.unsupported(f"unsupported charset {charset!r}")
    return None


def _raw_input(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and "\x00" not in text:
        return {"body": text}
    return {"body_base64": base64.b64encode(body).decode("ascii")}


def _decode(body: bytes, charset: str | None, what: str) -> str:
    encoding = charset or "utf-8"
    try:
        return body.decode(encoding)
    except LookupError:
        raise BodyError.unsupported(f"unsupported charset {charset!r}") from None
    except (UnicodeError, ValueError) as exc:
        raise BodyError.invalid(f"{what} body is not valid {encoding}: {exc}") from None


class _NotJson(Exception):
    def __init__(self, constant: str) -> None:
        super().__init__(constant)
        self.constant = constant


def _reject_constant(constant: str) -> NoReturn:
    raise _NotJson(constant)


def _finite_float(text: str) -> float:
    # 1e400 parses to infinity, which PostgreSQL's jsonb cannot hold: refuse it here.
    value = float(text)
    if math.isinf(value):
        raise _NotJson(text)
    return value


# One decoder for every body (json.loads would build one per call); it keeps no state
# between calls.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


# orjson reads an integer beyond 64 bits as a float, silently: such a text (any run of 19
# digits, even inside a string) goes to the standard library's parser, which keeps it.
_LONG_DIGIT_RUN = re.compile(r"[0-9]{19}")


def _parse_json(text: str) -> Any:
    text = text.removeprefix("\ufeff")
    if _LONG_DIGIT_RUN.search(text) is None:
        # The fast path, about four times quicker. Whatever orjson refuses (NaN, 1e400, lone
        # surrogates, a BOM, bad syntax) is parsed again below, so that the answer, and what
        # is accepted, are exactly those of the standard library's parser.
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    try:
        if text.startswith("\ufeff"):  # what json.loads says of a (second) BOM
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise BodyError.invalid(
            f"invalid JSON body: {exc.msg} at line {exc.lineno}, column {exc.colno}"
            f" (character {exc.pos})"
        ) from None
    except _NotJson as exc:
        if exc.constant in ("NaN", "Infinity", "-Infinity"):
            raise BodyError.invalid(
                f"invalid JSON body: {exc.constant} is not a JSON value"
            ) from None
        raise BodyError.invalid(
            f"invalid JSON body: the number {exc.constant} is too large to store"
        ) from None
    except RecursionError:  # far deeper than MAX_BODY_DEPTH: the same answer
        raise BodyError.invalid(
            f"invalid JSON body: nested more than {MAX_BODY_DEPTH} levels deep") from None
    except ValueError as exc:
        raise BodyError.invalid(f"invalid JSON body: {refusal_text(exc)}") from None


def _parse_form(body: bytes, charset: str | None) -> dict[str, Any]:
    encoding = charset or "utf-8"
    text = _decode(body, charset, "form")
    try:
        pairs = parse_qsl(text, keep_blank_values=True, encoding=encoding, errors="strict")
    except (UnicodeError, ValueError) as exc:
        raise BodyError.invalid(f"form body is not valid {encoding}: {exc}") from None
    fields: dict[str, Any] = {}
    for key, value in pairs:
        if key not in fields:
            fields[key] = value
        elif isinstance(fields[key], list):
            fields[key].append(value)
        else:
            fields[key] = [fields[key], value]
    return fields


# How deep a JSON body may nest (an http node's answer is held to the same).
MAX_BODY_DEPTH = MAX_JSON_NESTING


def _surely_storable(text: str) -> bool:
    """Whether every string parsed from the JSON ``text`` is storable, without walking
    them: in valid JSON a NUL or a lone surrogate can only come from a ``\\u`` escape
    (raw control characters are refused by the parser) or from a surrogate in the text
    itself. ``False`` only means "walk to find out"."""
    if "\\u" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# A JSON pointer kept as a linked list of segments, joined only when reporting: building
# the string for every value would cost O(size x depth) on large, deep bodies.
_Path = tuple["_Path", str] | None


def _check_storable(data: Any, what: str) -> None:
    """Refuse strings PostgreSQL cannot hold in jsonb, naming where (a JSON pointer)."""
    # Iterative: the JSON decoder allows nesting close to the recursion limit.
    stack: list[tuple[Any, _Path]] = [(data, None)]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            _check_string(value, path, what)
        elif isinstance(value, dict):
            for key, item in value.items():
                child = (path, key)
                _check_string(key, child, what, is_key=True)
                stack.append((item, child))
        elif isinstance(value, list):
            stack.extend((item, (path, str(index))) for index, item in enumerate(value))


def _check_string(text: str, path: _Path, what: str, *, is_key: bool = False) -> None:
    if "\x00" in text:
        problem = "a NUL character (\\u0000)"
    else:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            problem = "an unpaired surrogate"
        else:
            return
    segments: list[str] = []
    while path is not None:
        path, segment = path
        segments.append(_escape(segment))
    pointer = "".join(f"/{segment}" for segment in reversed(segments)) or "/"
    # The pointer may itself hold the offending characters: make it printable.
    shown = pointer.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\u0000")
    kind = "key" if is_key else "string"
    raise BodyError.invalid(f"{what}: {kind} at {shown} contains {problem}, which cannot be stored")


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")
