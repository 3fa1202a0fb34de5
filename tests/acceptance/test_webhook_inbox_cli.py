"""``triggerd webhooks list | show | replay`` as a real process: the same operations and
the same answers as the admin API, with exit codes for every kind of bad id."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg

from tests.acceptance.test_cli import one_line_error, triggerd

DOC = """
workflows:
  - key: gh
    name: gh
    graph: {nodes: [{id: start, type: noop}]}
    triggers:
      - {name: push, type: webhook, path: gh, filter: "{{ input.action == 'opened' }}"}
"""
MISSING = "0190c2a4-0000-7000-8000-000000000000"


async def test_list_show_replay_and_bad_ids(dsn: str, tmp_path: Path) -> None:
    (tmp_path / "doc.yaml").write_text(DOC)
    assert triggerd("apply", str(tmp_path / "doc.yaml"), dsn=dsn).returncode == 0
    conn = await asyncpg.connect(dsn)
    try:
        trigger_id = await conn.fetchval("SELECT id FROM workflow_triggers")
        opened, closed, binary = [
            str(await conn.fetchval(
                "INSERT INTO webhook_requests (trigger_id, method, path, headers, body,"
                " outcome) VALUES ($1, 'POST', '/hooks/gh', $2::jsonb, $3, 'filtered')"
                " RETURNING id", trigger_id, json.dumps({"content-type": content_type}), body))
            for content_type, body in [("application/json", b'{"action": "opened"}'),
                                       ("application/json", b'{"action": "closed"}'),
                                       ("application/octet-stream", b"\xff\x00")]
        ]
    finally:
        await conn.close()

    listed = triggerd("webhooks", "list", "--trigger", "gh/push", "--json", dsn=dsn)
    assert listed.returncode == 0, listed.stderr
    assert {r["id"] for r in json.loads(listed.stdout)} == {opened, closed, binary}
    shown = json.loads(triggerd("webhooks", "show", binary, "--json", dsn=dsn).stdout)
    assert (shown["body_text"], shown["body_base64"]) == (None, "/wA=")

    keys = []
    for _ in range(2):
        replayed = triggerd("webhooks", "replay", opened, "--json", dsn=dsn)
        assert replayed.returncode == 0, replayed.stderr
        keys.append(json.loads(replayed.stdout)["dedupe_key"])
    assert keys == [f"replay:{opened}:1", f"replay:{opened}:2"]

    result = triggerd("webhooks", "replay", closed, dsn=dsn)
    assert result.returncode == 4
    assert one_line_error(result) == (
        f"triggerd: error: webhook request {closed} does not match the trigger's current"
        " filter")
    result = triggerd("webhooks", "show", "nope", dsn=dsn)
    assert result.returncode == 2
    assert one_line_error(result) == (
        "triggerd: error: 'nope' is not a webhook request id (a UUID, or 8 or more of its"
        " leading hex digits)")
    result = triggerd("webhooks", "replay", MISSING, dsn=dsn)
    assert result.returncode == 3
    assert one_line_error(result) == f"triggerd: error: no webhook request {MISSING}"
    result = triggerd("webhooks", "list", "--limit", "0", dsn=dsn)
    assert (result.returncode, one_line_error(result)) == (
        2, "triggerd: error: --limit: 0 is out of range 1-500")
    result = triggerd("webhooks", "list", "--outcome", "lost", dsn=dsn)
    assert result.returncode == 2
    assert one_line_error(result) == (
        "triggerd: error: --outcome: 'lost' is not one of accepted, filtered, debounced")

    # The trigger deleted (the file lists another one; --prune deletes the rest).
    (tmp_path / "doc.yaml").write_text(DOC.replace(
        "{name: push, type: webhook, path: gh,", "{name: other, type: webhook, path: gh2,"))
    assert triggerd("apply", "--prune", str(tmp_path / "doc.yaml"), dsn=dsn).returncode == 0
    result = triggerd("webhooks", "replay", opened, dsn=dsn)
    assert result.returncode == 4
    assert one_line_error(result) == (
        f"triggerd: error: webhook request {opened} cannot be replayed: its trigger was"
        " deleted")


# Chosen ids: two that share their first 8 digits, one that no other starts like.
AMBIGUOUS_1 = "abcdef01-0000-4000-8000-000000000001"
AMBIGUOUS_2 = "abcdef01-0000-4000-8000-000000000002"
UNIQUE = "12345678-9abc-4def-8000-000000000003"


async def test_list_pages_by_cursor(dsn: str, tmp_path: Path) -> None:
    """A full page prints the next cursor on stderr (as executions list does) and
    --cursor reads the page after it; a cursor no page printed is exit 2."""
    (tmp_path / "doc.yaml").write_text(DOC)
    assert triggerd("apply", str(tmp_path / "doc.yaml"), dsn=dsn).returncode == 0
    conn = await asyncpg.connect(dsn)
    try:
        trigger_id = await conn.fetchval("SELECT id FROM workflow_triggers")
        stored = {str(await conn.fetchval(
            "INSERT INTO webhook_requests (trigger_id, method, path, headers, body, outcome)"
            " VALUES ($1, 'POST', '/hooks/gh', '{}', '{}', 'filtered') RETURNING id",
            trigger_id)) for _ in range(5)}
    finally:
        await conn.close()
    seen: list[str] = []
    pages = 0
    cursor: list[str] = []
    while True:
        page = triggerd("webhooks", "list", "--limit", "2", "--json", *cursor, dsn=dsn)
        assert page.returncode == 0, page.stderr
        seen += [row["id"] for row in json.loads(page.stdout)]
        pages += 1
        if not page.stderr:
            break
        more = page.stderr.strip().split()
        assert (more[:3], more[4:]) == (["more:", "add", "--cursor"],
                                        ["for", "the", "next", "page"]), page.stderr
        cursor = ["--cursor", more[3]]
    assert pages == 3 and len(seen) == 5 and set(seen) == stored
    whole = triggerd("webhooks", "list", "--limit", "5", dsn=dsn)
    assert (whole.returncode, whole.stderr) == (0, "")  # the last page says no more
    for bad in ("yesterday", "0190c2a4", MISSING + "0", ""):
        result = triggerd("webhooks", "list", "--cursor", bad, dsn=dsn)
        assert (result.returncode, one_line_error(result)) == (
            2, f"triggerd: error: --cursor: {bad!r} is not a cursor this command printed"), bad


async def test_show_and_replay_take_a_unique_prefix(dsn: str, tmp_path: Path) -> None:
    """As ``executions show | retry | cancel``: 8 or more leading hex digits name a request
    when only it starts so; the same messages and exit codes for the rest."""
    (tmp_path / "doc.yaml").write_text(DOC)
    assert triggerd("apply", str(tmp_path / "doc.yaml"), dsn=dsn).returncode == 0
    conn = await asyncpg.connect(dsn)
    try:
        await conn.executemany(
            "INSERT INTO webhook_requests (id, trigger_id, method, path, headers, body,"
            " outcome, received_at) SELECT $1::uuid, id, 'POST', '/hooks/gh',"
            " '{\"content-type\": \"application/json\"}', '{\"action\": \"opened\"}',"
            " 'filtered', '2026-01-02T03:04:05Z' FROM workflow_triggers",
            [(i,) for i in (AMBIGUOUS_1, AMBIGUOUS_2, UNIQUE)])
    finally:
        await conn.close()

    # A full id prints what it always printed.
    shown = triggerd("webhooks", "show", UNIQUE, "--json", dsn=dsn)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == {
        "id": UNIQUE, "trigger": "gh/push", "tenant": "default", "method": "POST",
        "path": "/hooks/gh", "received_at": "2026-01-02T03:04:05+00:00",
        "outcome": "filtered", "execution_id": None, "delivery_count": 1,
        "last_seen_at": None, "body_bytes": 20, "detail": None, "query": {},
        "headers": {"content-type": "application/json"}, "remote_addr": None,
        "body_text": '{"action": "opened"}', "body_base64": None}
    # A unique prefix (any case, with or without its dashes) shows the same.
    for prefix in ("123456789ABC", "12345678-9abc-4d"):
        by_prefix = triggerd("webhooks", "show", prefix, "--json", dsn=dsn)
        assert by_prefix.returncode == 0, (prefix, by_prefix.stderr)
        assert by_prefix.stdout == shown.stdout, prefix
    text = triggerd("webhooks", "show", "12345678", dsn=dsn)
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[0] == f"id: {UNIQUE}"
    shown = triggerd("webhooks", "show", "abcdef01-0000-4000-8000-00000000000", dsn=dsn)
    assert shown.returncode == 2  # a prefix of both

    replayed = triggerd("webhooks", "replay", "12345678", "--json", dsn=dsn)
    assert replayed.returncode == 0, replayed.stderr
    doc = json.loads(replayed.stdout)
    assert (doc["replay_of"], doc["dedupe_key"], doc["status"]) == (
        UNIQUE, f"replay:{UNIQUE}:1", "NEW")
    replayed = triggerd("webhooks", "replay", AMBIGUOUS_2, "--json", dsn=dsn)
    assert replayed.returncode == 0, replayed.stderr
    doc = json.loads(replayed.stdout)
    assert set(doc) == {"execution_id", "replay_of", "dedupe_key", "status"}
    assert (doc["replay_of"], doc["dedupe_key"], doc["status"]) == (
        AMBIGUOUS_2, f"replay:{AMBIGUOUS_2}:1", "NEW")
    replayed = triggerd("webhooks", "replay", "12345678-9ABC", dsn=dsn)
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.strip() != doc["execution_id"]

    malformed = ("triggerd: error: {!r} is not a webhook request id (a UUID, or 8 or more of"
                 " its leading hex digits)")
    for action in ("show", "replay"):
        # Every spelling parse_id refuses is in tests/unit/test_ids.py; here, that the
        # commands answer its refusal.
        for bad in ("not-a-uuid", "1234567"):
            result = triggerd("webhooks", action, bad, dsn=dsn)
            assert result.returncode == 2, (action, bad, result.stderr)
            assert one_line_error(result) == malformed.format(bad), (action, bad)
        result = triggerd("webhooks", action, "abcdef01", dsn=dsn)
        assert result.returncode == 2, (action, result.stderr)
        assert one_line_error(result) == (
            "triggerd: error: webhook request id prefix 'abcdef01' is ambiguous: it matches"
            " more than one webhook request; give more digits")
        result = triggerd("webhooks", action, "99999999", dsn=dsn)
        assert result.returncode == 3, (action, result.stderr)
        assert one_line_error(result) == (
            "triggerd: error: no webhook request whose id starts with '99999999'")
        result = triggerd("webhooks", action, MISSING, dsn=dsn)
        assert result.returncode == 3, (action, result.stderr)
        assert one_line_error(result) == f"triggerd: error: no webhook request {MISSING}"


def test_help_says_a_prefix_works() -> None:
    for action in ("show", "replay"):
        helped = triggerd("webhooks", action, "--help")
        assert helped.returncode == 0, helped.stderr
        assert "a prefix of it that names only it (8 or more leading hex digits)" in (
            " ".join(helped.stdout.split())), action
