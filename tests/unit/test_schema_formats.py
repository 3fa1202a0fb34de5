"""The JSON Schema formats whose checkers come from optional packages are enforced: the
project lists jsonschema's format-nongpl extra itself (without rfc3987-syntax, whose
import took a second on every start), so a missing package would silently accept
anything."""

from __future__ import annotations

import sys

import pytest
from jsonschema import Draft202012Validator

CHECKER = Draft202012Validator.FORMAT_CHECKER


@pytest.mark.parametrize(
    ("fmt", "good", "bad"),
    [
        ("date-time", "2026-03-08T07:00:00Z", "2026-03-08 7am"),  # rfc3339-validator
        ("uri", "https://example.com/a?b=1", "not a uri"),  # rfc3986-validator
        ("duration", "P1DT2H", "1 day"),  # isoduration
        ("json-pointer", "/a/0", "a/0"),  # jsonpointer
        ("uri-template", "https://x/{id}", "https://x/{id"),  # uri-template
        ("hostname", "example.com", "-bad-.com"),  # fqdn
        ("idn-hostname", "bücher.example", "a..b"),  # idna
    ],
)
def test_format_is_checked(fmt: str, good: str, bad: str) -> None:
    validator = Draft202012Validator({"type": "string", "format": fmt}, format_checker=CHECKER)
    assert list(validator.iter_errors(good)) == []
    assert [e.message for e in validator.iter_errors(bad)] == [f"{bad!r} is not a {fmt!r}"]


def test_definitions_do_not_import_the_slow_iri_grammar() -> None:
    import triggerd.definitions  # noqa: F401

    assert "rfc3987_syntax" not in sys.modules
