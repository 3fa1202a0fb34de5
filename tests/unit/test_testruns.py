"""The pure parts of test runs: what a dry run stubs and records, which workflow and
trigger run, the decision flags, the timeline line and the run's test flags."""

from __future__ import annotations

from typing import Any

import pytest

from triggerd.definitions import load_documents
from triggerd.errors import UsageError
from triggerd.executor.service import run_flags
from triggerd.nodes.registry import builtin_node_types, stubbed_when_dry
from triggerd.testrun_rules import decision_of, pick_target, timeline_line, would_call

TYPES = builtin_node_types()


@pytest.mark.parametrize(("name", "params", "stubbed"), [
    ("http", {"url": "https://x.example"}, True),
    ("workflow", {"workflow": "child"}, True),
    ("memory", {"op": "set", "key": "k", "value": 1}, True),
    ("memory", {"op": "increment", "key": "k"}, True),
    ("memory", {"op": "get", "key": "k"}, False),
    ("set", {"value": 1}, False),
    ("respond", {"status": 200}, False),
    ("approval", {"message": "ok?"}, False),
    ("wait", {"for": "1s"}, False),
    ("log", {"message": "x"}, False),
])
def test_what_a_dry_run_stubs(name: str, params: dict[str, Any], stubbed: bool) -> None:
    assert stubbed_when_dry(TYPES[name], params) is stubbed


def test_a_type_that_does_not_say_is_stubbed() -> None:
    class Sftp:
        name = "sftp"

    class Pure:
        name = "pure"
        external_effects = False

    assert stubbed_when_dry(Sftp(), {}) is True
    assert stubbed_when_dry(Pure(), {}) is False


def test_would_call_masks_credential_names_at_any_depth() -> None:
    params = {"url": "https://x.example", "headers": {"Authorization": "Bearer t",
                                                      "X-Api-Key": "k", "Accept": "json"},
              "json": {"user": "ada", "password": "p", "items": [{"token": "t", "n": 1}]},
              "cookie": None}
    assert would_call(params) == {
        "url": "https://x.example",
        "headers": {"Authorization": "***", "X-Api-Key": "***", "Accept": "json"},
        "json": {"user": "ada", "password": "***", "items": [{"token": "***", "n": 1}]},
        "cookie": None,
    }


DOC = {"workflows": [
    {"key": "a", "graph": {"nodes": [{"id": "n", "type": "noop"}]},
     "triggers": [{"name": "hook", "type": "webhook", "path": "a", "input": {"x": 1}},
                  {"name": "nightly", "type": "cron", "cron": "0 2 * * *"}]},
    {"key": "b", "graph": {"nodes": [{"id": "n", "type": "noop"}]}},
]}
SPECS = load_documents([("t.yaml", DOC)])


def test_pick_target() -> None:
    plain = pick_target(SPECS, "b", None)
    assert (plain.spec.key, plain.trigger_name, plain.trigger_type) == ("b", None, "manual")
    hook = pick_target(SPECS, "a", "hook")
    assert (hook.trigger_name, hook.trigger_type, hook.trigger_input) == (
        "hook", "webhook", {"x": 1})
    with pytest.raises(UsageError) as caught:
        pick_target(SPECS, "c", None)
    assert caught.value.message == "no workflow 'c' in the definitions (they have: a, b)"
    with pytest.raises(UsageError) as caught:
        pick_target(SPECS, "b", "hook")
    assert caught.value.message == "workflow 'b' has no trigger 'hook' (it has: none)"


def test_decision_flags() -> None:
    assert decision_of(False, False) is None
    assert decision_of(True, False) == "approved"
    assert decision_of(False, True) == "rejected"
    with pytest.raises(UsageError):
        decision_of(True, True)


def test_timeline_line() -> None:
    line = timeline_line({"node_id": "call", "node_type": "http", "status": "SUCCESS",
                          "execution_time_ms": 12.34, "output": {"would_call": {}}})
    assert line.split() == ["call", "http", "SUCCESS", "12.3ms", "(dry:", "not", "run)"]
    failed = timeline_line({"node_id": "stop", "node_type": "fail", "status": "ERROR",
                            "execution_time_ms": None, "error_code": "FAILED",
                            "error_message": "no way"})
    assert failed.split() == ["stop", "fail", "ERROR", "-", "FAILED:", "no", "way"]


def test_test_flags() -> None:
    assert run_flags({}) == (False, False)
    assert run_flags({"trigger": {"type": "cron"}}) == (False, False)
    assert run_flags({"test": {"dry": False}}) == (True, False)
    assert run_flags({"test": {"dry": True}}) == (True, True)
    assert run_flags({"test": "yes"}) == (False, False)
