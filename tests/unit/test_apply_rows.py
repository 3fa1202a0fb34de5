"""The rows apply writes for the files' triggers: each distinct config turned into JSON once."""

from __future__ import annotations

import json
from typing import Any

import pytest

from triggerd.definitions import load_documents, trigger_config_to_json
from triggerd.store import workflows


def test_each_distinct_config_is_serialized_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    real = trigger_config_to_json

    def counting(config: Any) -> dict[str, Any]:
        calls.append(config)
        return real(config)

    monkeypatch.setattr(workflows, "trigger_config_to_json", counting)
    cron = {"type": "cron", "cron": "5 * * * *", "timezone": "UTC"}
    specs = load_documents([("f.yaml", {"workflows": [
        {"key": f"w{w}", "graph": {"nodes": [{"id": "a", "type": "noop"}]},
         "triggers": [{"name": f"t{t}", **cron} for t in range(4)]
         + [{"name": "h", "type": "webhook", "path": f"w{w}/h"},
            {"name": "i", **cron, "input": {"k": [1, 2]}}]}
        for w in range(3)
    ]})])
    wanted = workflows.wanted_triggers(specs)
    assert len(calls) == 4  # the cron config, and each workflow's own webhook path
    assert len(wanted) == 18
    for spec in specs:
        for trigger in spec.triggers:
            want = wanted[spec.tenant_id, spec.key, trigger.name]
            alone = workflows.wanted_trigger(trigger)
            assert want.doc == alone.doc
            assert (want.config, want.input) == (alone.config, alone.input)
            assert json.loads(want.config) == want.doc["config"]
