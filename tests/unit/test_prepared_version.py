"""A prepared (cached) workflow version knows which nodes' params hold expressions: the
others are rendered without building an expression context."""

from __future__ import annotations

from datetime import UTC, datetime

from triggerd.executor.runner import NO_CONTEXT, prepare_version
from triggerd.expressions import render


def test_prepared_version_names_the_nodes_whose_params_hold_expressions() -> None:
    graph = {
        "nodes": [
            {"id": "compute", "type": "set", "params": {"value": {"n": "{{ input.n + 1 }}"}}},
            {"id": "deep", "type": "set",
             "params": {"value": [{"a": ["x {% if 1 %}y{% endif %}"]}]}},
            {"id": "plain", "type": "set", "params": {"value": {"n": 1, "s": "text { x }"}}},
            {"id": "done", "type": "noop"},
        ],
        "edges": [{"from": "compute", "to": "deep"}, {"from": "deep", "to": "plain"},
                  {"from": "plain", "to": "done"}],
    }
    prepared = prepare_version({
        "id": "7b0c8f0e-0000-4000-8000-000000000001", "version": 1, "workflow_key": "w",
        "graph": graph, "parameter_schema": None, "env_config": None, "timeout_ms": 60_000,
        "created_at": datetime.now(UTC),
    })
    assert prepared.templated == frozenset({"compute", "deep"})
    # Params without expressions render to an equal copy without any context.
    plain = prepared.graph.node("plain").params
    rendered = render(plain, NO_CONTEXT)
    assert rendered == plain
    assert rendered is not plain
