"""Which POSTs the console takes as its own pages' (the planted-cookie login CSRF): what a
browser's Sec-Fetch-Site says, else its Origin against the origins the console is served
at, scheme and port included."""

from __future__ import annotations

import pytest

from triggerd.console.sessions import cross_site_post, origin_of

OWN = {"http://ops.example:80"}


@pytest.mark.parametrize(("scheme", "netloc", "origin"), [
    ("http", "ops.example", "http://ops.example:80"),
    ("HTTPS", "Ops.Example:443", "https://ops.example:443"),
    ("https", "ops.example", "https://ops.example:443"),
    ("http", "[::1]:8080", "http://[::1]:8080"),
    ("ftp", "ops.example", None),
    ("http", "", None),
    ("http", "ops.example:99999", None),
])
def test_an_origin_is_written_one_way(scheme: str, netloc: str, origin: str | None) -> None:
    assert origin_of(scheme, netloc) == origin


@pytest.mark.parametrize(("headers", "refused"), [
    ({}, False),  # no browser
    ({"Sec-Fetch-Site": "same-origin"}, False),
    ({"Sec-Fetch-Site": "none"}, False),
    ({"Sec-Fetch-Site": "same-site", "Origin": "http://ops.example"}, True),
    ({"Sec-Fetch-Site": "cross-site"}, True),
    ({"Origin": "http://ops.example"}, False),  # the default port, written or not
    ({"Origin": "http://OPS.example:80"}, False),
    # Another port, or the same host over https, is another origin: either can plant the
    # login form's cookie (cookies are not kept apart by port or scheme).
    ({"Origin": "http://ops.example:8080"}, True),
    ({"Origin": "https://ops.example"}, True),
    ({"Origin": "null"}, True),
    ({"Origin": "garbage"}, True),
])
def test_a_post_from_another_origin_is_refused(headers: dict[str, str], refused: bool) -> None:
    said = cross_site_post(headers, OWN)
    assert (said is not None) == refused, said


def test_public_url_names_an_origin_too() -> None:
    # Behind a proxy that rewrites Host, public_url is what the browser saw; its default
    # port written out is the same origin as without it.
    own = {origin_of("http", "127.0.0.1:8080"), origin_of("https", "ops.example:443")}
    assert cross_site_post({"Origin": "https://ops.example"}, {o for o in own if o}) is None
