"""``http``: one HTTP request through the executor's shared ``aiohttp`` session.

Params:

* ``url`` (required, http or https), ``method`` (default ``GET``)
* ``headers``: object of header values; ``query``: object of query values (a list value
  repeats the parameter); non-string values are sent as JSON text, null ones are left out
* ``json`` (any value, sent as JSON) or ``body`` (a string sent as is); not both
* ``timeout``: duration string for the whole exchange, default ``30s``
* ``accept``: list of accepted statuses, default 200-299

Output ``{"status": int, "headers": {lower-case name: value}, "body": ...}``: the body is
parsed when the response's content type is JSON (``application/json``, ``...+json``) and
parses (finite numbers only, nested at most ``MAX_JSON_NESTING`` deep, as a webhook's
body), else kept as text; an empty body is null. A repeated header's values are joined
by ``, `` (Set-Cookie too). Cookies an answer sets go with that request's later redirect
hops only.

Failures: ``EGRESS_DENIED`` (an address ``[egress]`` refuses, on the first request or a
redirect; never retried), ``HTTP_CONNECT`` (refused, DNS, connection dropped), ``TIMEOUT``,
``HTTP_STATUS`` (a status not accepted; ``retryable_status`` is the status and the output
is the response), ``HTTP_ERROR`` (a broken or too large response; or a redirect that cannot
be followed: not http(s), no host, or a host no connection can ever reach, never retried),
``INVALID_PARAMS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from http.cookies import BaseCookie
from typing import Any, Final

import aiohttp
from aiohttp import hdrs
from yarl import URL

from triggerd.durations import format_duration, parse_duration
from triggerd.egress import EGRESS_DENIED, EgressDenied, egress_session
from triggerd.errors import DurationError
from triggerd.expressions import is_template
from triggerd.httpnames import HEADER_NAME_RULE, is_header_name
from triggerd.jsonrules import MAX_JSON_NESTING, deeper_than, finite_float, refuse_constant
from triggerd.model import JSON
from triggerd.nodes.base import (
    ERROR_MESSAGE,
    TIMEOUT,
    NodeContext,
    NodeFailure,
    NodeResult,
    Params,
    duration_param,
    json_text,
    or_template,
    params_schema,
    template,
)

HTTP_CONNECT: Final = "HTTP_CONNECT"
HTTP_STATUS: Final = "HTTP_STATUS"
HTTP_ERROR: Final = "HTTP_ERROR"

DEFAULT_TIMEOUT: Final = "30s"
# Responses are stored in the database; refuse to hold anything bigger in memory.
MAX_RESPONSE_BYTES: Final = 10 * 1024 * 1024
MAX_REDIRECTS: Final = 10  # as aiohttp's default
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})

_METHOD = re.compile(r"[A-Z]+")
_JSON_TYPE = re.compile(r"^application/(?:[\w.+-]+\+)?json$")
_PARAMS: Final = ("method", "url", "headers", "query", "json", "body", "timeout", "accept")

PARAMS_SCHEMA = params_schema(
    "http",
    "One HTTP request. To send JSON, give the value as json: (an object, a list or any"
    " value, with expressions rendered inside; sent with Content-Type: application/json);"
    " body: sends a string as it is. Output {\"status\", \"headers\", \"body\"}: the"
    " body parsed when the response is JSON, else text; a status not accepted fails the"
    " node (HTTP_STATUS).",
    {
        "method": or_template(
            "The HTTP method (any case); default GET.",
            {"type": "string", "pattern": r"^\s*[A-Za-z]+\s*$"},
            default="GET",
            error="{value} is not an HTTP method (letters only, e.g. GET or POST)",
        ),
        "url": or_template(
            "The URL, http or https.",
            {"type": "string", "pattern": r"^\s*[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#:@]"},
            error="{value} is not an http(s) URL: it must start with http:// or https://"
            " and a host",
        ),
        "headers": or_template(
            "Request headers: values as text (other values as JSON text); null values are"
            " left out. Sent to the url's origin only: a redirect to another origin is"
            " followed without them.",
            {"type": ["object", "null"]},
        ),
        "query": or_template(
            "Query parameters: values as text (other values as JSON text), a list repeats"
            " the parameter; null values are left out.",
            {"type": ["object", "null"]},
        ),
        "json": {
            "description": "A body sent as JSON (Content-Type: application/json): any value"
            " (null too), with expressions rendered inside. Not with 'body'."
        },
        "body": {
            "description": "A body sent as it is (text). Not with 'json'.",
            "type": "string",
            ERROR_MESSAGE: "body must be a string, got {value}: to send an object or a list"
            " as JSON, use json: instead of body:",
        },
        "timeout": duration_param(
            f"The limit for the whole exchange, e.g. '10s' (more than 0); default"
            f" {DEFAULT_TIMEOUT}.",
            DEFAULT_TIMEOUT,
        ),
        "accept": or_template(
            "The statuses that count as success; default 200-299.",
            {
                "type": ["array", "null"],
                "minItems": 1,  # none: every answer would fail the node
                "items": {
                    "anyOf": [{"type": "integer", "minimum": 100, "maximum": 599}, template()]
                },
            },
            error="expected a non-empty list of HTTP statuses (100-599), got {value}",
        ),
    },
    required=["url"],
    extra={
        "not": {"required": ["json", "body"]},
        ERROR_MESSAGE: {"not": "give at most one of 'json' and 'body'"},
    },
    examples=[
        {
            "method": "POST",
            "url": "https://hooks.example/orders/{{ input.order_id }}",
            "headers": {"Authorization": "Bearer {{ secrets.API_TOKEN }}"},
            "json": {"order": "{{ input.order_id }}", "total": "{{ input.total }}"},
            "timeout": "10s",
            "accept": [200, 201, 409],
        },
        {
            "url": "https://api.example/reports",
            "query": {"day": "{{ input.day }}", "tag": ["a", "b"]},
        },
    ],
)


# An HTTP header name is a token (RFC 9110 5.1); its value has no line break or other
# control character but a tab (5.5): a run must not split its own request.
_HEADER_VALUE_FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def header_problem(name: str, value: str) -> str | None:
    """Why ``name: value`` cannot be sent as a request header; None when it can."""
    if not is_header_name(name):
        return f"{name[:60]!r} is not a header name ({HEADER_NAME_RULE})"
    if _HEADER_VALUE_FORBIDDEN.search(value):
        return f"the value of {name[:60]!r} has a line break or another control character"
    return None


class HttpNode:
    name = "http"
    side_effects = True
    # Sends a request: a dry test run records what it would send instead.
    external_effects = True
    params_schema = PARAMS_SCHEMA

    def literal_problems(self, params: dict[str, Any]) -> Iterator[tuple[tuple[str, ...], str]]:
        """What a run would refuse in the literal (expression-free) url, headers and
        timeout."""
        timeout = params.get("timeout")
        if isinstance(timeout, str) and not is_template(timeout):
            with contextlib.suppress(DurationError):
                if parse_duration(timeout) <= timedelta(0):
                    yield ("timeout",), "must be more than 0 (0 would be no limit at all)"
        url = params.get("url")
        if isinstance(url, str) and not is_template(url):
            try:
                problem = host_problem(URL(url.strip()))
            except ValueError as exc:
                yield ("url",), f"{url.strip()[:200]!r} is not a URL ({exc})"
            else:
                if problem is not None:
                    yield ("url",), f"{url.strip()[:200]!r} can never be connected to: {problem}"
        elif isinstance(url, str):
            head = _fixed_scheme(url)
            if head is not None:
                yield ("url",), (f"{url.strip()[:200]!r} is never an http(s) URL: every run"
                                 f" renders it starting with {head[:60]!r}, not http:// or"
                                 " https://")
        headers = params.get("headers")
        for name, value in (headers.items() if isinstance(headers, dict) else ()):
            if not isinstance(name, str) or is_template(name) or value is None:
                continue
            text = json_text(value)
            if isinstance(value, str) and is_template(value):
                text = ""  # known at run time only; the name still is
            problem = header_problem(name, text)
            if problem is not None:
                yield ("headers", name), problem

    async def run(self, params: JSON, ctx: NodeContext) -> NodeResult:
        checked = Params(self.name, params, _PARAMS)
        given = checked.text("method", "GET")
        method = given.strip().upper()
        if not _METHOD.fullmatch(method):
            # Quoted as given: the run's redactor masks a rendered secret only as it is.
            raise checked.invalid(f"parameter 'method': {given!r} is not an HTTP method")
        url = _url(checked)
        if "json" in checked and "body" in checked:
            raise checked.invalid("give at most one of 'json' and 'body'")
        headers = {name: json_text(value)
                   for name, value in checked.mapping("headers").items() if value is not None}
        for name, value in headers.items():
            problem = header_problem(name, value)
            if problem is not None:  # aiohttp raised a ValueError: the node "crashed"
                raise checked.invalid(f"parameter 'headers': {problem}")
        request: dict[str, Any] = {"headers": headers, "params": list(_query(checked))}
        if "json" in checked and checked.get("json") is None:
            # aiohttp reads json=None as "no body": null is a JSON value to send.
            request["data"] = b"null"
            if not any(name.lower() == "content-type" for name in headers):
                headers["Content-Type"] = "application/json"
        elif "json" in checked:
            request["json"] = checked.get("json")
        elif "body" in checked:
            request["data"] = checked.text("body").encode()
        timeout = checked.duration("timeout", DEFAULT_TIMEOUT)
        if timeout <= timedelta(0):
            # aiohttp reads a total of 0 as "no limit at all".
            raise checked.invalid("parameter 'timeout' must be more than 0")
        accept = _accept(checked)
        request["timeout"] = aiohttp.ClientTimeout(total=timeout.total_seconds())

        what = f"{method} {url.with_user(None).with_query(None).with_fragment(None)}"
        try:
            # One limit for the whole chain of redirects, as aiohttp's own following had
            # (each hop's request has it too): not timeout per hop.
            async with asyncio.timeout(timeout.total_seconds()):
                if ctx.http is not None:
                    output = await _exchange(ctx.http, method, url, request)
                else:  # outside the daemon (tools, tests): a session for this request
                    # only, under the default egress policy
                    async with egress_session() as session:
                        output = await _exchange(session, method, url, request)
        except TimeoutError as exc:
            raise NodeFailure(
                TIMEOUT, f"{what}: no complete response within {format_duration(timeout)}"
            ) from exc
        except EgressDenied as exc:
            # The same address is refused on every attempt: not worth a retry.
            raise NodeFailure(EGRESS_DENIED, f"{what}: {exc.message}", retryable=False) from exc
        except UnfollowableRedirect as exc:
            # The Location is the server's text (it may echo a key): only what is wrong.
            raise NodeFailure(HTTP_ERROR, f"{what}: {exc}", retryable=False) from exc
        except aiohttp.InvalidURL as exc:
            raise checked.invalid(f"parameter 'url': invalid URL ({exc})") from exc
        except aiohttp.ClientConnectionError as exc:
            raise NodeFailure(HTTP_CONNECT, f"{what}: cannot connect: {exc}") from exc
        except aiohttp.TooManyRedirects as exc:
            raise NodeFailure(HTTP_ERROR, f"{what}: {exc.message}") from exc
        except aiohttp.ClientResponseError as exc:
            # An answer aiohttp cannot parse. Its own text names the whole URL, query
            # included and encoded as yarl writes it, a form the redactor may not know.
            detail = " ".join(str(exc.message).split())
            raise NodeFailure(HTTP_ERROR, f"{what}: a malformed response: {detail}") from exc
        except aiohttp.ClientError as exc:
            raise NodeFailure(HTTP_ERROR, f"{what}: {type(exc).__name__}: {exc}") from exc

        status = output["status"]
        if status not in accept:
            raise NodeFailure(
                HTTP_STATUS,
                f"{what}: answered status {status}",
                retryable_status=status,
                output=output,
            )
        return NodeResult(output=output)


_SCHEMES: Final = ("http://", "https://")


def _fixed_scheme(template: str) -> str | None:
    """The literal text a URL template starts with when that text already rules out
    http:// and https:// (``ftp://{{ input.host }}``), else None: the expressions decide."""
    starts = [i for i in (template.find("{{"), template.find("{%")) if i >= 0]
    head = template[:min(starts, default=len(template))]
    if "{#" in head:
        return None  # a comment: what it hides is not judged
    head = head.lstrip()
    text = head.lower()
    if any(scheme.startswith(text) or text.startswith(scheme) for scheme in _SCHEMES):
        return None
    return head


def _url(checked: Params) -> URL:
    text = checked.text("url").strip()
    try:
        url = URL(text)
    except ValueError as exc:
        raise checked.invalid(f"parameter 'url': {text!r} is not a URL ({exc})") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise checked.invalid(f"parameter 'url': {text!r} is not an http(s) URL")
    problem = host_problem(url)
    if problem is not None:
        # The same on every attempt: not worth a retry (a host with an empty label crashed
        # the node in the resolver).
        raise checked.invalid(f"parameter 'url': {text!r} can never be connected to: {problem}")
    return url


# What a host name may hold in a URL (RFC 3986's reg-name, less percent-encoding, which
# the client sends to the resolver as it is and the URL Standard forbids in a domain).
_HOST_CHARACTERS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=")


def host_problem(url: URL) -> str | None:
    """Why no connection to ``url``'s host and port can ever be made, whatever a resolver
    answers; None when one may (a name that does not resolve now may later)."""
    host = url.raw_host or ""
    if url.explicit_port == 0:
        return "port 0 is no port a server listens on"
    if ":" in host:  # written in brackets
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"[{host[:60]}] is not an IPv6 address"
        return None
    if host.replace(".", "").isdigit():
        # The client takes an all-numeric host for an IPv4 address and refuses the forms
        # other than four numbers 0-255 (127.1, 2130706433, 010.0.0.1).
        parts = host.split(".")
        if len(parts) != 4 or not all(
            part.isascii() and part.isdigit() and len(part) <= 3 and int(part) <= 255
            and (part == "0" or not part.startswith("0")) for part in parts
        ):
            return f"{host[:60]!r} is not an IPv4 address (four numbers 0-255, e.g. 10.0.0.1)"
        return None
    bad = sorted(set(host) - _HOST_CHARACTERS)
    if bad:
        return f"its host {host[:60]!r} has {', '.join(map(repr, bad[:5]))}, which no host name has"
    if any(not 1 <= len(label) <= 63 for label in host.removesuffix(".").split(".")):
        # Python's resolver refuses such a name before it asks anyone.
        return f"its host {host[:60]!r} has an empty label or one longer than 63 characters"
    return None


def _query(checked: Params) -> Iterator[tuple[str, str]]:
    for name, value in checked.mapping("query").items():
        for item in value if isinstance(value, list) else [value]:
            if item is not None:
                yield name, json_text(item)


def _accept(checked: Params) -> frozenset[int] | range:
    value = checked.get("accept")
    if value is None:
        return range(200, 300)
    if not isinstance(value, list) or not value or not all(
        isinstance(s, int) and not isinstance(s, bool) and 100 <= s <= 599 for s in value
    ):
        raise checked.invalid(
            "parameter 'accept' must be a non-empty list of HTTP statuses (100-599)")
    return frozenset(value)


class UnfollowableRedirect(Exception):
    """Internal: a redirect whose Location cannot be followed. The server's answer is at
    fault (HTTP_ERROR), not the node's url (INVALID_PARAMS, which it was reported as)."""


async def _exchange(
    session: aiohttp.ClientSession, method: str, url: URL, request: dict[str, Any]
) -> dict[str, JSON]:
    """The answer, redirects followed (at most MAX_REDIRECTS). The node's headers go to
    the origin it names only: aiohttp would carry every header but Authorization to
    wherever a redirect points, a secret API key included. As browsers do, 303 (and 301
    or 302 after a POST) goes on as a GET without the body.

    Cookies a hop's answer sets are sent on the following hops they match (a login that
    answers 302 with its session cookie), as a browser does; they live for this one chain
    only: the session keeps none (it is shared by every run, of every tenant)."""
    origin = url.origin()
    # unsafe: else the jar takes no cookie from, and sends none to, a host named by its
    # address (an internal service); a cookie from one still goes back to that host only.
    jar = aiohttp.CookieJar(unsafe=True)
    for _ in range(MAX_REDIRECTS + 1):
        hop = _with_cookies(request, jar.filter_cookies(url))
        async with session.request(method, url, allow_redirects=False, **hop) as response:
            jar.update_cookies_from_headers(
                response.headers.getall(hdrs.SET_COOKIE, ()), response.url)
            location = response.headers.get("Location")
            if response.status not in _REDIRECTS or location is None:
                body = await _read_body(response)
                headers: dict[str, str] = {}
                for name, value in response.headers.items():
                    key = name.lower()
                    headers[key] = f"{headers[key]}, {value}" if key in headers else value
                return {
                    "status": response.status,
                    "headers": headers,
                    "body": _decode(body, response),
                }
        try:
            url = url.join(URL(location))
        except ValueError as exc:
            raise UnfollowableRedirect("a Location that is not a URL") from exc
        if url.scheme not in ("http", "https"):
            raise UnfollowableRedirect(
                f"a redirect to a {url.scheme[:20] or 'scheme-less'} URL (only http and https"
                " are followed)")
        if not url.host:
            raise UnfollowableRedirect("a redirect to a URL without a host")
        problem = host_problem(url)
        if problem is not None:
            # Checked as the node's own url is: an empty label crashed the node in the
            # resolver, and 127.1 was reported as the node's url being invalid.
            raise UnfollowableRedirect(
                f"a redirect to a host no connection can ever reach: {problem}")
        request = {**request, "params": ()}  # the Location holds the query it wants
        if response.status == 303 or (response.status in (301, 302) and method == "POST"):
            method = "GET" if method != "HEAD" else method
            request = {k: v for k, v in request.items() if k not in ("data", "json")}
        if url.origin() != origin:
            request["headers"] = {}
    raise aiohttp.TooManyRedirects(
        response.request_info, response.history,
        message=f"more than {MAX_REDIRECTS} redirects in a row"
        f" (the last to {url.with_user(None).with_query(None).with_fragment(None)})")


def _with_cookies(request: dict[str, Any], cookies: BaseCookie[str]) -> dict[str, Any]:
    """The hop's request with the chain's cookies for its URL after the node's own
    ``Cookie`` header, if any (sent as given: aiohttp would parse and rewrite it)."""
    if not cookies:
        return request
    pairs = "; ".join(f"{m.key}={m.coded_value}" for m in cookies.values())
    headers = dict(request["headers"])
    own = [name for name in headers if name.lower() == "cookie"]
    given = "; ".join(headers.pop(name) for name in own)
    headers["Cookie"] = f"{given}; {pairs}" if given else pairs
    return {**request, "headers": headers}


async def _read_body(response: aiohttp.ClientResponse) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise aiohttp.ClientPayloadError(
                f"the response body is larger than {MAX_RESPONSE_BYTES} bytes"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _decode(body: bytes, response: aiohttp.ClientResponse) -> JSON:
    if not body:
        return None
    try:
        text = body.decode(response.charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        text = body.decode("utf-8", errors="replace")
    if _JSON_TYPE.match(response.content_type.lower()):
        try:
            # NaN, Infinity and numbers past a float (1e999: infinity) are not JSON that
            # PostgreSQL's jsonb holds: the display copy showed null, the next node's
            # expression failed on it.
            value: JSON = json.loads(text, parse_constant=refuse_constant,
                                     parse_float=finite_float)
        except (ValueError, RecursionError):
            return text  # a broken (or too deep) JSON body is still worth keeping as text
        # Nested deeper than a webhook body may be, it crashed the node (the parser's
        # recursion) or the run's own writes (the executor's): kept as text too.
        if not deeper_than(text, value, MAX_JSON_NESTING):
            return value
    return text
