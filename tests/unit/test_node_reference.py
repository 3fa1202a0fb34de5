"""docs/nodes.md is generated from the node types' schemas and kept in step with them; the
examples it shows are valid definitions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from triggerd.definitions import check_documents
from triggerd.nodes.reference import REGENERATE, render_reference
from triggerd.nodes.registry import builtin_node_types

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "nodes.md"
BUILTINS = builtin_node_types()


def test_the_committed_page_is_generated_from_the_schemas() -> None:
    committed = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
    assert committed == render_reference(BUILTINS), (
        f"docs/nodes.md differs from the node types' schemas; regenerate it: {REGENERATE}"
    )


def test_the_readme_links_the_page() -> None:
    assert "(docs/nodes.md)" in (ROOT / "README.md").read_text(encoding="utf-8")


EXAMPLES = [
    (name, i, example)
    for name, node_type in sorted(BUILTINS.items())
    for i, example in enumerate(node_type.params_schema.get("examples", []))
]


def test_every_type_has_an_example() -> None:
    assert {name for name, _, _ in EXAMPLES} == set(BUILTINS)


@pytest.mark.parametrize(("name", "index", "params"), EXAMPLES)
def test_every_example_passes_check(name: str, index: int, params: dict[str, Any]) -> None:
    # After a node 'build' (what the examples may read), in a workflow with the secret
    # they use; a switch example's branches need edges of their own.
    nodes = [{"id": "build", "type": "set", "params": {"value": 1}}]
    nodes.append({"id": "example", "type": name, "params": params})
    edges: list[dict[str, Any]] = [{"from": "build", "to": "example"}]
    if name in ("if", "switch"):
        nodes.append({"id": "after", "type": "noop"})
        edges.append({"from": "example", "to": "after", "when": "true" if name == "if" else "default"})  # noqa: E501
    workflow = {
        "key": "example",
        "secrets": {"API_TOKEN": {"env": "API_TOKEN"}},
        "graph": {"nodes": nodes, "edges": edges},
    }
    assert check_documents([("docs/nodes.md", {"workflows": [workflow]})]) == []
