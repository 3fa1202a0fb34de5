"""The webhook auth schemes are named in three places (the verifier, the definition checks
and the definition JSON Schema): they must name the same schemes, so a scheme added to one
cannot be refused, or accepted unchecked, by another."""

from __future__ import annotations

import json
from pathlib import Path

import triggerd
from triggerd.definitions.checks import AUTH_KEYS
from triggerd.webhooks.auth import SCHEMES

SCHEMA = Path(triggerd.__file__).parent / "schemas" / "definitions.schema.json"


def _schema_enums(node: object) -> list[list[str]]:
    """Every ``enum`` under a ``scheme`` property of the definition schema."""
    found: list[list[str]] = []
    if isinstance(node, dict):
        scheme = node.get("properties", {}).get("scheme") if isinstance(
            node.get("properties"), dict) else None
        if isinstance(scheme, dict) and "enum" in scheme:
            found.append(list(scheme["enum"]))
        for value in node.values():
            found += _schema_enums(value)
    elif isinstance(node, list):
        for value in node:
            found += _schema_enums(value)
    return found


def test_the_three_lists_of_auth_schemes_agree() -> None:
    enums = _schema_enums(json.loads(SCHEMA.read_text(encoding="utf-8")))
    assert enums, "the schema has no scheme enum"
    assert len(SCHEMES) == len(set(SCHEMES))
    for enum in enums:
        assert set(enum) == set(SCHEMES)
    assert set(AUTH_KEYS) == set(SCHEMES)
