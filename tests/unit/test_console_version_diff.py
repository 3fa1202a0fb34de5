"""The workflow page's difference of two versions: bounded work, and saying when it is."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from triggerd.console.version_diff import first_lines, version_diff
from triggerd.store.records import VersionRecord


def version(number: int, nodes: list[dict[str, Any]]) -> VersionRecord:
    return VersionRecord(id=f"v{number}", workflow_id="w", version=number,
                         graph={"nodes": nodes}, parameter_schema={}, env_config={},
                         timeout_ms=1000, is_latest=False, published_at=None,
                         created_at=datetime(2026, 1, 1, tzinfo=UTC))


def test_first_lines_keeps_both_limits_and_says_when_it_cut() -> None:
    assert first_lines(["ab", "cd"], 5, 10) == (["ab", "cd"], False)
    assert first_lines(["ab", "cd", "ef"], 2, 10) == (["ab", "cd"], True)
    assert first_lines(["ab", "cd", "ef"], 5, 5) == (["ab", "cd"], True)
    # One line longer than the characters allowed is compared as its start.
    assert first_lines(["abcdef"], 5, 4) == (["abcd"], True)


def test_small_versions_are_compared_whole() -> None:
    old = version(1, [{"id": "a", "type": "noop"}])
    new = version(2, [{"id": "b", "type": "noop"}])
    diff = version_diff(old, new)
    assert not diff.cut
    assert [line for kind, line in diff.lines if kind in ("add", "remove")] == [
        '-        "id": "a",', '+        "id": "b",']


def test_large_versions_are_compared_by_their_first_lines_and_say_so() -> None:
    nodes = [{"id": f"n{i}", "type": "noop"} for i in range(400)]
    changed = [*nodes[:-1], {"id": "last", "type": "noop"}]
    early = [{"id": "first", "type": "noop"}, *nodes[1:]]
    # A change past the lines compared is not seen, and the result says it is partial.
    cut = version_diff(version(1, nodes), version(2, changed), max_lines=100)
    assert cut.cut and cut.compared_lines == 100 and cut.lines == ()
    found = version_diff(version(1, nodes), version(2, early), max_lines=100)
    assert found.cut
    assert ("add", '+        "id": "first",') in found.lines
    assert version_diff(version(1, nodes), version(2, changed)).cut is False
