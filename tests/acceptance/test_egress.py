"""What a definition applied to the real daemon may reach (issue 12 item 8): its http nodes
cannot call the daemon's own port (admin API, webhooks), under its address or a name that
resolves to it, and its ``{file: PATH}`` secrets are read only under ``[daemon]
secret_roots`` (and $CREDENTIALS_DIRECTORY)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from tests.acceptance.conftest import Daemons
from tests.acceptance.test_cli import triggerd
from tests.helpers import apply_doc, final_status, fire

TOKEN = "egress-test-admin-token"


def workflow(key: str, node: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"key": key, "name": key, "graph": {"nodes": [node], "edges": []},
            "triggers": [{"name": "manual", "type": "manual"}], **extra}


def http(url: str) -> dict[str, Any]:
    return {"id": "call", "type": "http", "retry": {"max_attempts": 3, "backoff": "10ms"},
            "params": {"url": url, "headers": {"Authorization": f"Bearer {TOKEN}"}}}


async def test_own_port_and_secret_files_outside_the_roots_are_refused(
    daemons: Daemons, dsn: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    roots, elsewhere = tmp_path / "secrets", tmp_path / "elsewhere"
    roots.mkdir()
    elsewhere.mkdir()
    (roots / "token").write_text("inside-value\n")
    (elsewhere / "token").write_text("outside-value\n")
    config, port = daemons.write_config(
        database_url=dsn,
        sections={"api": {"token": TOKEN}, "daemon": {"secret_roots": [str(roots)]}})
    set_node = {"id": "call", "type": "set", "params": {"value": "{{ secrets.S | length }}"}}
    await apply_doc(pool, {"workflows": [
        workflow("own-api", http(f"http://127.0.0.1:{port}/api/v1/workflows")),
        workflow("own-by-name", http(f"http://localhost:{port}/api/v1/tokens")),
        workflow("secret-outside", set_node, secrets={"S": {"file": str(elsewhere / "token")}}),
        workflow("secret-inside", set_node, secrets={"S": {"file": str(roots / "token")}}),
    ]})
    daemon = daemons.spawn(config, port)
    await daemon.wait_ready()

    runs = {key: await fire(pool, f"{key}/manual")
            for key in ("own-api", "own-by-name", "secret-outside", "secret-inside")}
    final = {key: await final_status(pool, run, timeout=30) for key, run in runs.items()}
    nodes = {key: await pool.fetch(
        "SELECT status, attempt, error_code, error_message FROM node_executions"
        " WHERE execution_id = $1 ORDER BY attempt", run) for key, run in runs.items()}

    refusal = ("refused: it is this daemon's own listener"
               " (set [egress] allow_self = true to allow)")
    assert [tuple(r) for r in nodes["own-api"]] == [(
        "ERROR", 1, "EGRESS_DENIED",
        f"GET http://127.0.0.1:{port}/api/v1/workflows: egress to 127.0.0.1:{port} {refusal}")]
    assert final["own-api"]["status"] == "ERROR"
    # localhost may stand for 127.0.0.1 and ::1; every address of it is refused.
    [by_name] = nodes["own-by-name"]
    assert (by_name["attempt"], by_name["error_code"]) == (1, "EGRESS_DENIED")
    assert by_name["error_message"].startswith(
        f"GET http://localhost:{port}/api/v1/tokens: localhost resolves to denied addresses;"
        " egress to ")
    assert by_name["error_message"].endswith(refusal)

    outside = final["secret-outside"]
    assert (outside["status"], outside["error_code"], outside["error_message"]) == (
        "ERROR", "SECRET_MISSING",
        f"secret S is refused: file {elsewhere / 'token'} is outside the secret directories"
        " ($CREDENTIALS_DIRECTORY and [daemon] secret_roots); add its directory to"
        " [daemon] secret_roots")
    assert nodes["secret-outside"] == []
    inside = final["secret-inside"]
    assert (inside["status"], inside["output"]) == ("SUCCESS", len("inside-value"))
    assert "outside-value" not in "\n".join(daemon.stdout_lines + daemon.stderr_lines)

    # A test run through the admin API is refused the same (its executor had no own port:
    # a tenant's token could call the daemon's webhooks and API from the daemon itself).
    async with aiohttp.ClientSession() as session, session.post(
        f"{daemon.base_url}/api/v1/test-runs", headers={"Authorization": f"Bearer {TOKEN}"},
        json={"definition": {"workflows": [workflow(
            "tw", http(f"http://127.0.0.1:{port}/api/v1/workflows"))]}, "workflow": "tw"},
    ) as response:
        assert response.status == 200, await response.text()
        result = await response.json()
    assert result["status"] == "ERROR"
    assert [(n["error_code"], n["error_message"]) for n in result["nodes"]] == [(
        "EGRESS_DENIED",
        f"GET http://127.0.0.1:{port}/api/v1/workflows: egress to 127.0.0.1:{port} {refusal}")]
    assert await daemon.stop(signal.SIGTERM) == 0


def test_check_flags_secret_files_outside_the_roots(tmp_path: Path) -> None:
    roots = tmp_path / "secrets"
    roots.mkdir()
    config = tmp_path / "triggerd.toml"
    config.write_text(f'[daemon]\nsecret_roots = ["{roots}"]\n')
    definitions = tmp_path / "wf.yaml"
    definitions.write_text(
        "workflows:\n"
        "  - key: a\n"
        "    name: a\n"
        f"    secrets: {{IN: {{file: {roots}/in}}, OUT: {{file: /etc/passwd}},"
        f" UP: {{file: {roots}/../x}}, E: {{env: X}}}}\n"
        "    graph: {nodes: [{id: n, type: noop}]}\n"
        "    triggers:\n"
        "      - {name: hook, type: webhook, path: a,"
        " auth: {scheme: token, secret: {file: /root/.token}}}\n")
    result = triggerd("--config", str(config), "check", str(definitions))
    outside = ("is outside the secret directories ($CREDENTIALS_DIRECTORY and [daemon]"
               " secret_roots); add its directory to [daemon] secret_roots")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines() == [
        f"{definitions}: $.workflows[0].secrets.OUT.file: file /etc/passwd {outside}",
        f"{definitions}: $.workflows[0].secrets.UP.file: file {roots}/../x (it resolves to"
        f" {tmp_path}/x) {outside}",
        f"{definitions}: $.workflows[0].triggers[0].auth.secret.file: file /root/.token"
        f" {outside}",
        "triggerd: 3 problem(s) found; nothing was changed",
    ]
    definitions.write_text(definitions.read_text().replace("/etc/passwd", f"{roots}/out")
                           .replace(f"{roots}/../x", f"{roots}/x")
                           .replace("/root/.token", f"{roots}/token"))
    result = triggerd("--config", str(config), "check", str(definitions))
    assert (result.returncode, result.stdout.strip()) == (0, "ok: 1 file(s) valid")
    # With a file that uses another's calendar: the secrets are checked with the files
    # together (each alone, the calendar was unknown: exit 2 for valid files), and a
    # problem is named in its own file at its own path.
    calendar = tmp_path / "calendar.yaml"
    calendar.write_text("calendars:\n  - {name: work, weekdays: [mon]}\nworkflows: []\n")
    second = tmp_path / "second.yaml"
    second.write_text(
        "workflows:\n"
        "  - key: b\n"
        "    secrets: {OUT: {file: /etc/passwd}}\n"
        "    graph: {nodes: [{id: n, type: noop}]}\n"
        "    triggers: [{name: c, type: cron, cron: '0 9 * * *', calendar: {only: work}}]\n")
    result = triggerd("--config", str(config), "check", str(definitions), str(calendar),
                      str(second))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"{second}: $.workflows[0].secrets.OUT.file: file /etc/passwd {outside}",
        "triggerd: 1 problem(s) found; nothing was changed",
    ]
