"""The admin API against its own OpenAPI document: the document is valid OpenAPI 3.1, and
schemathesis, run against the live app over real HTTP, finds no server error and no
answer that breaks the document (status, content type, headers, body schema), including
for the invalid requests it generates on purpose."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web
from jsonschema import Draft202012Validator
from schemathesis.specs.openapi.definitions import OPENAPI_31

from tests.helpers import apply_doc, fire, free_port
from triggerd.api.admin import add_admin_routes
from triggerd.api.admin_routes import ADMIN_ROUTES, openapi_document
from triggerd.api.openapi import OPENAPI_PATH
from triggerd.config import ApiSettings, Settings
from triggerd.daemon import create_app

TOKEN = "schemathesis-token"
DOC: dict[str, Any] = {
    "workflows": [
        {
            "key": "report",
            "name": "Report",
            "parameter_schema": {"type": "object", "properties": {"day": {"type": "string"}}},
            "graph": {"nodes": [{"id": "start", "type": "noop"}]},
            "triggers": [
                {"name": "nightly", "type": "cron", "cron": "0 2 * * *",
                 "timezone": "Europe/Madrid"},
                {"name": "manual", "type": "manual"},
                {"name": "push", "type": "webhook", "path": "report/push"},
            ],
        }
    ]
}
# Bounded so the run stays well under a minute; the seed makes a failure reproducible.
MAX_EXAMPLES = 25
SEED = 20260308
# Two operations validate their body against schemas the OpenAPI document cannot hold: a
# fire's input against the workflow's own parameter_schema, a definition document against
# the semantic checks of `triggerd check` (node types, cron expressions, graph shape). For
# them a schema-valid body may still be refused with 422; everywhere else a schema-valid
# request must be accepted.
# Skip and backfill take instants the document can only type: whether an instant is a
# fire of the schedule, a range's order and that it lies in the past are checked by the
# operation (400, as the CLI's exit 2). A test run names a workflow (and a trigger) of the
# definition it carries, which no schema can tie together (400, as `triggerd test`'s exit
# 2), and checks the definition and the input like apply and fire (422).
CONFIG = """
[[operations]]
include-operation-id-regex = "^(fireTrigger|applyDefinitions|resumeExecution)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "404", "409", "422"]

[[operations]]
include-operation-id-regex = "^(skipSlots|createBackfill|createTestRun)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "404", "409", "422"]
"""


def test_document_is_valid_openapi_3_1() -> None:
    doc = openapi_document()
    errors = sorted(Draft202012Validator(OPENAPI_31).iter_errors(doc), key=str)
    assert errors == []
    # The OpenAPI meta-schema does not look inside schemas: check each one as JSON Schema.
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    # Every operation but the document itself needs the token.
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            expected: list[Any] | None = [] if path == "/api/v1/openapi.json" else None
            assert operation.get("security") == expected, (method, path)
            if expected is None:
                assert "401" in operation["responses"], (method, path)


async def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    await apply_doc(pool, DOC)
    await fire(pool, "report/manual", {"day": "mon"})
    done = await fire(pool, "report/nightly")
    await pool.execute(
        "UPDATE workflow_executions SET status = 'SUCCESS', output = '{\"ok\": true}',"
        " start_time = now(), end_time = now() WHERE id = $1", done)

    config = tmp_path / "schemathesis.toml"
    run_report = tmp_path / "report.json"
    config.write_text(CONFIG)
    app = create_app(Settings(api=ApiSettings(token=TOKEN)), pool)
    add_admin_routes(app, environ={})
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
            f"http://127.0.0.1:{port}/api/v1/openapi.json",
            "--header", f"Authorization: Bearer {TOKEN}",
            "--checks", "all",
            "--max-examples", str(MAX_EXAMPLES),
            "--seed", str(SEED),
            "--workers", "1",
            "--generation-database", "none",
            "--request-timeout", "30",
            "--no-color",
            "--report", "json", "--report-json-path", str(run_report),
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
    finally:
        await runner.cleanup()
    report = output.decode(errors="replace")
    assert process.returncode == 0, report
    assert exercised_operations(json.loads(run_report.read_text())) == {
        route.label for route in ADMIN_ROUTES if route.path != OPENAPI_PATH
    }, report


def exercised_operations(run_report: dict[str, Any]) -> set[str]:
    """The operations schemathesis sent at least one request to. It never tests the
    operation that serves the document it was loaded from (getOpenApi): that one is
    fetched to load the document, and test_admin_api covers it."""
    return {
        label for label, phases in run_report["valid_rates"].items()
        if sum(sum(counts.values()) for counts in phases.values()) > 0
    }
