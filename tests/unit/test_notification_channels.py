"""Channel names live in one module: no other source names a channel by its string, only
the store's LISTEN connection listens, and the SQL migrations notify known channels."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import triggerd
from triggerd.db import known_migrations

PACKAGE = Path(triggerd.__file__).parent
CHANNELS_MODULE = PACKAGE / "notifications" / "channels.py"
WIRE_NAME = re.compile(r"triggerd_(?:v\d+_)?(?:triggers|executions|cancel|finished)")
# A metric family that happens to share a channel's name; it is not a channel.
NOT_CHANNELS = {("api/metrics.py", "triggerd_executions")}


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p != CHANNELS_MODULE)


def test_no_channel_name_is_written_outside_the_channel_module() -> None:
    found = []
    for path in _sources():
        relative = path.relative_to(PACKAGE).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Constant) or not isinstance(node.value, str):
                continue
            text = node.value
            bare = WIRE_NAME.fullmatch(text) and (relative, text) not in NOT_CHANNELS
            in_sql = re.search(r"(pg_notify\s*\(\s*'|LISTEN\s+\"?)" + WIRE_NAME.pattern, text)
            if bare or in_sql:
                found.append(f"{relative}:{node.lineno}: {text[:60]!r}")
    assert found == []


def test_only_the_hubs_connection_listens() -> None:
    listening = [
        path.relative_to(PACKAGE).as_posix()
        for path in _sources()
        if re.search(r"\badd_listener\(|[\"']LISTEN\s", path.read_text(encoding="utf-8"))
    ]
    assert listening == ["store/notifications.py"]


def test_the_migrations_notify_known_channels() -> None:
    from triggerd.notifications.channels import ALL

    migrations = known_migrations()
    assert migrations
    sent = {
        name
        for migration in migrations
        for name in re.findall(r"pg_notify\('([^']+)'", migration.sql)
    }
    assert sent == {"triggerd_triggers"}
    assert sent <= {channel.wire for channel in ALL}


def test_version_one_keeps_the_old_wire_names_and_later_versions_are_named_beside_them() -> None:
    from triggerd.notifications.channels import ALL, CANCEL, Channel

    assert [c.wire for c in ALL] == [
        "triggerd_triggers", "triggerd_executions", "triggerd_cancel", "triggerd_finished"
    ]
    assert Channel(name=CANCEL.name, version=2).wire == "triggerd_v2_cancel"
    with pytest.raises(ValueError, match=r"^bad channel \"x'; --\" v1$"):
        Channel(name="x'; --")
    with pytest.raises(ValueError, match=r"^bad channel 'cancel' v0$"):
        Channel(name="cancel", version=0)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ('{"op": "UPDATE", "id": "0b9c1e8e-2d4f-4c55-9d6e-0f2a3b4c5d6e"}',
         "0b9c1e8e-2d4f-4c55-9d6e-0f2a3b4c5d6e"),
        ('{"op": "DELETE"}', None),
        ('{"id": "not-a-uuid"}', None),
        ("not json", None),
        ("[1]", None),
    ],
)
def test_trigger_change_payloads(payload: str, expected: str | None) -> None:
    from triggerd.notifications.channels import trigger_change_id

    assert trigger_change_id(payload) == expected
