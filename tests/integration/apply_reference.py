"""The per-object ``apply`` as it was before it was batched, kept as the reference the
batched one must agree with (same rows for the same sequence of files)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

from triggerd.definitions import canonical_json, trigger_config_to_json
from triggerd.errors import DefinitionError, Problem
from triggerd.model import TriggerSpec, WorkflowSpec, normalize_webhook_path
from triggerd.store.workflows import version_document


@dataclass(kw_only=True)
class ApplyReport:
    lines: list[str] = field(default_factory=list)
    changed: bool = False

    def add(self, line: str, *, changed: bool) -> None:
        self.lines.append(line)
        self.changed = self.changed or changed


def _trigger_document(trigger: TriggerSpec) -> dict[str, Any]:
    return {
        "type": str(trigger.type),
        "enabled": trigger.enabled,
        "version": trigger.version,
        "config": trigger_config_to_json(trigger.config),
        "input": trigger.input,
    }


async def reference_apply(
    conn: asyncpg.Connection, specs: list[WorkflowSpec], *, prune: bool = False
) -> ApplyReport:
    """Create or update workflows, publish changed versions and upsert triggers, all in one
    transaction: either everything is written or nothing is."""
    report = ApplyReport()
    async with conn.transaction():
        legacy = await _unnormalized_paths(conn)
        for spec in specs:
            await _apply_one(conn, spec, report, prune=prune, legacy=legacy)
    return report


# Enabled webhook triggers whose stored path still has a slash at either end (written
# before paths were normalized): normalized path -> (trigger id, full name, stored path).
_Legacy = dict[str, tuple[str, str, str]]


async def _unnormalized_paths(conn: asyncpg.Connection) -> _Legacy:
    """The unique index compares stored text, so a stored "t/none/" does not stop a new
    "t/none" although both are routed as one path: those rows are compared by hand."""
    rows = await conn.fetch(
        "SELECT t.id::text AS id, w.key || '/' || t.name AS full_name,"
        " t.config->>'path' AS path FROM workflow_triggers t"
        " JOIN workflows w ON w.id = t.workflow_id"
        " WHERE t.type = 'webhook' AND t.enabled"
        " AND t.config->>'path' <> btrim(t.config->>'path', '/')"
    )
    return {normalize_webhook_path(r["path"]): (r["id"], r["full_name"], r["path"]) for r in rows}


def _forget(legacy: _Legacy, trigger_id: Any) -> None:
    for path, (legacy_id, _, _) in list(legacy.items()):
        if legacy_id == str(trigger_id):
            del legacy[path]


def _refuse_legacy_path(
    legacy: _Legacy, doc: dict[str, Any], old: Any, spec: WorkflowSpec, trigger: TriggerSpec
) -> None:
    if doc["type"] != "webhook" or not doc["enabled"]:
        return
    path = doc["config"].get("path")
    taken = legacy.get(path) if isinstance(path, str) else None
    if taken is None or (old is not None and str(old["id"]) == taken[0]):
        return
    _, owner, stored = taken
    name = f"{spec.key}/{trigger.name}"
    used = f"is already used by the enabled trigger {owner} (stored as {stored!r})"
    raise DefinitionError(
        f"webhook path {path!r} of trigger {name} {used}",
        [Problem("<database>", name, f"webhook path {path!r} {used}")],
    )


async def _apply_one(
    conn: asyncpg.Connection,
    spec: WorkflowSpec,
    report: ApplyReport,
    *,
    prune: bool,
    legacy: _Legacy,
) -> None:
    row = await conn.fetchrow(
        "SELECT id, name, description, status FROM workflows WHERE tenant_id = $1 AND key = $2"
        " FOR UPDATE",
        spec.tenant_id,
        spec.key,
    )
    if row is None:
        workflow_id = await conn.fetchval(
            "INSERT INTO workflows (tenant_id, key, name, description, status)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING id",
            spec.tenant_id,
            spec.key,
            spec.name,
            spec.description,
            str(spec.status),
        )
        report.add(f"workflow {spec.key}: created", changed=True)
    else:
        workflow_id = row["id"]
        # A document that does not name its status keeps the stored one.
        status = str(spec.status) if spec.status_given else row["status"]
        if (row["name"], row["description"], row["status"]) != (
            spec.name,
            spec.description,
            status,
        ):
            await conn.execute(
                "UPDATE workflows SET name = $2, description = $3, status = $4,"
                " updated_at = now() WHERE id = $1",
                workflow_id,
                spec.name,
                spec.description,
                status,
            )
            detail = "" if status == row["status"] else f" (status {row['status']} -> {status})"
            report.add(f"workflow {spec.key}: updated{detail}", changed=True)
        else:
            report.add(f"workflow {spec.key}: unchanged", changed=False)

    wanted = version_document(spec)
    latest = await conn.fetchrow(
        "SELECT id, version, graph, parameter_schema, env_config, timeout_ms"
        " FROM workflow_versions WHERE workflow_id = $1 AND is_latest",
        workflow_id,
    )
    current = (
        None
        if latest is None
        else {
            "graph": latest["graph"],
            "parameter_schema": latest["parameter_schema"],
            "env_config": latest["env_config"],
            "timeout_ms": latest["timeout_ms"],
        }
    )
    if current is None or canonical_json(current) != canonical_json(wanted):
        number = await conn.fetchval(
            "SELECT COALESCE(max(version), 0) + 1 FROM workflow_versions WHERE workflow_id = $1",
            workflow_id,
        )
        await conn.execute(
            "UPDATE workflow_versions SET is_latest = false WHERE workflow_id = $1 AND is_latest",
            workflow_id,
        )
        await conn.execute(
            "INSERT INTO workflow_versions (workflow_id, version, graph, parameter_schema,"
            " env_config, timeout_ms, is_latest, published_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, true, now())",
            workflow_id,
            number,
            wanted["graph"],
            wanted["parameter_schema"],
            wanted["env_config"],
            wanted["timeout_ms"],
        )
        report.add(f"workflow {spec.key}: version {number} published", changed=True)

    existing = {
        r["name"]: r
        for r in await conn.fetch(
            "SELECT id, name, type, enabled, version, config, input FROM workflow_triggers"
            " WHERE workflow_id = $1",
            workflow_id,
        )
    }
    for trigger in spec.triggers:
        doc = _trigger_document(trigger)
        label = f"trigger {spec.key}/{trigger.name}"
        old = existing.pop(trigger.name, None)
        _refuse_legacy_path(legacy, doc, old, spec, trigger)
        if old is not None:
            _forget(legacy, old["id"])  # its row now holds the file's (normalized) path
        try:
            if old is None:
                await conn.execute(
                    "INSERT INTO workflow_triggers (workflow_id, name, type, enabled, version,"
                    " config, input) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    workflow_id,
                    trigger.name,
                    doc["type"],
                    doc["enabled"],
                    doc["version"],
                    doc["config"],
                    doc["input"],
                )
                report.add(f"{label}: created", changed=True)
                continue
            old_doc = {
                "type": old["type"],
                "enabled": old["enabled"],
                "version": old["version"],
                "config": old["config"],
                "input": old["input"],
            }
            if canonical_json(old_doc) == canonical_json(doc):
                report.add(f"{label}: unchanged", changed=False)
                continue
            await conn.execute(
                "UPDATE workflow_triggers SET type = $2, enabled = $3, version = $4,"
                " config = $5, input = $6, updated_at = now(),"
                " enabled_at = CASE WHEN $3 AND NOT enabled THEN now() ELSE enabled_at END"
                " WHERE id = $1",
                old["id"],
                doc["type"],
                doc["enabled"],
                doc["version"],
                doc["config"],
                doc["input"],
            )
            detail = "" if old["enabled"] == doc["enabled"] else (
                f" (enabled {str(old['enabled']).lower()} -> {str(doc['enabled']).lower()})")
            report.add(f"{label}: updated{detail}", changed=True)
        except asyncpg.UniqueViolationError as exc:
            if "webhook_path" in str(exc.constraint_name or ""):
                path = doc["config"].get("path")
                raise DefinitionError(
                    f"webhook path {path!r} of {label} is already used by another enabled trigger",
                    [
                        Problem(
                            "<database>",
                            f"{spec.key}/{trigger.name}",
                            f"webhook path {path!r} is already used by another enabled trigger",
                        )
                    ],
                ) from None
            raise
    for name, old in existing.items():
        _forget(legacy, old["id"])  # deleted or disabled below
        label = f"trigger {spec.key}/{name}"
        if prune:
            await conn.execute("DELETE FROM workflow_triggers WHERE id = $1", old["id"])
            report.add(f"{label}: deleted (not in the file)", changed=True)
        elif old["enabled"]:
            await conn.execute(
                "UPDATE workflow_triggers SET enabled = false, updated_at = now() WHERE id = $1",
                old["id"],
            )
            report.add(f"{label}: disabled (not in the file)", changed=True)
