"""Which methods a webhook trigger answers, HEAD included where GET is."""

from __future__ import annotations

import pytest

from triggerd.webhooks.methods import allow_header, allows


@pytest.mark.parametrize(("methods", "method", "expected"), [
    (("GET",), "HEAD", True),
    (("POST", "GET"), "HEAD", True),
    (("POST",), "HEAD", False),
    (("POST",), "GET", False),
    (("POST", "PUT"), "PUT", True),
    (("GET",), "OPTIONS", False),
])
def test_allows(methods: tuple[str, ...], method: str, expected: bool) -> None:
    assert allows(methods, method) is expected


@pytest.mark.parametrize(("methods", "expected"), [
    (("POST", "PUT"), "POST, PUT"),
    (("GET",), "GET, HEAD"),
    (("POST", "GET"), "POST, GET, HEAD"),
])
def test_allow_header(methods: tuple[str, ...], expected: str) -> None:
    assert allow_header(methods) == expected
