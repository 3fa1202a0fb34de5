"""Workflows, versions and triggers: the SQL behind ``triggerd apply`` and the listings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

from triggerd.definitions import canonical_json, graph_to_json, trigger_config_to_json
from triggerd.errors import DefinitionError, NotFound, Problem, UsageError
from triggerd.model import TriggerSpec, WorkflowSpec, normalize_webhook_path
from triggerd.store.records import TriggerRecord, VersionRecord, WorkflowRecord, columns, row_to


@dataclass(kw_only=True)
class ApplyReport:
    """What ``apply`` did, one line per object, in the order it happened."""

    lines: list[str] = field(default_factory=list)
    changed: bool = False

    def add(self, line: str, *, changed: bool) -> None:
        self.lines.append(line)
        self.changed = self.changed or changed


def env_config_of(spec: WorkflowSpec) -> dict[str, Any]:
    return {
        "env": dict(spec.env),
        "secrets": {name: ref.to_json() for name, ref in spec.secrets.items()},
    }


def version_document(spec: WorkflowSpec) -> dict[str, Any]:
    """The parts of a workflow that make up an immutable version."""
    return {
        "graph": graph_to_json(spec.graph),
        "parameter_schema": spec.parameter_schema,
        "env_config": env_config_of(spec),
        "timeout_ms": int(spec.timeout.total_seconds() * 1000),
    }


def _trigger_document(trigger: TriggerSpec) -> dict[str, Any]:
    return {
        "type": str(trigger.type),
        "enabled": trigger.enabled,
        "version": trigger.version,
        "config": trigger_config_to_json(trigger.config),
        "input": trigger.input,
    }


async def apply_workflows(
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
        if (row["name"], row["description"], row["status"]) != (
            spec.name,
            spec.description,
            str(spec.status),
        ):
            await conn.execute(
                "UPDATE workflows SET name = $2, description = $3, status = $4,"
                " updated_at = now() WHERE id = $1",
                workflow_id,
                spec.name,
                spec.description,
                str(spec.status),
            )
            report.add(f"workflow {spec.key}: updated", changed=True)
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
            report.add(f"{label}: updated", changed=True)
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


# --- reads ---------------------------------------------------------------------------

_TRIGGER_COLUMNS = (
    "t.id, t.workflow_id, w.key AS workflow_key, t.name, t.type, t.enabled, t.version,"
    " t.config, t.input, t.enabled_at, t.created_at, t.updated_at"
)


async def list_triggers(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    enabled_only: bool = False,
    trigger_type: str | None = None,
    workflow_key: str | None = None,
    workflow_id: str | None = None,
    after: tuple[str, str, str] | None = None,
    limit: int | None = None,
) -> list[TriggerRecord]:
    """Triggers ordered by workflow key and name; ``workflow_key`` or ``workflow_id`` narrow
    the query to those workflows' (an index lookup, not a scan of every trigger).
    ``after`` (a workflow key, a trigger name and its id: names are unique per tenant only)
    and ``limit`` read one page."""
    after_key, after_name, after_id = after if after is not None else (None, None, None)
    rows = await conn.fetch(
        f"SELECT {_TRIGGER_COLUMNS} FROM workflow_triggers t JOIN workflows w"
        " ON w.id = t.workflow_id"
        " WHERE ($1::boolean IS FALSE OR t.enabled) AND ($2::text IS NULL OR t.type = $2)"
        " AND ($3::text IS NULL OR w.key = $3) AND ($4::uuid IS NULL OR w.id = $4)"
        " AND ($5::text IS NULL OR (w.key, t.name, t.id) > ($5, $6::text, $7::uuid))"
        " ORDER BY w.key, t.name, t.id LIMIT $8",
        enabled_only,
        trigger_type,
        workflow_key,
        workflow_id,
        after_key,
        after_name,
        after_id,
        limit,
    )
    return [row_to(TriggerRecord, r) for r in rows]


def split_trigger_name(full_name: str) -> tuple[str, str]:
    workflow_key, sep, name = full_name.partition("/")
    if not sep or not workflow_key or not name or "/" in name:
        raise UsageError(
            f"trigger name {full_name!r} must be workflow_key/trigger_name"
            " (e.g. nightly-report/nightly)"
        )
    return workflow_key, name


async def get_trigger(conn: asyncpg.Connection | asyncpg.Pool, full_name: str) -> TriggerRecord:
    workflow_key, name = split_trigger_name(full_name)
    row = await conn.fetchrow(
        f"SELECT {_TRIGGER_COLUMNS} FROM workflow_triggers t JOIN workflows w"
        " ON w.id = t.workflow_id WHERE w.key = $1 AND t.name = $2",
        workflow_key,
        name,
    )
    if row is None:
        raise NotFound(f"no trigger named {full_name!r}")
    record: TriggerRecord = row_to(TriggerRecord, row)
    return record


async def get_trigger_by_id(
    conn: asyncpg.Connection | asyncpg.Pool, trigger_id: str
) -> TriggerRecord | None:
    row = await conn.fetchrow(
        f"SELECT {_TRIGGER_COLUMNS} FROM workflow_triggers t JOIN workflows w"
        " ON w.id = t.workflow_id WHERE t.id = $1",
        trigger_id,
    )
    return None if row is None else row_to(TriggerRecord, row)


async def set_trigger_enabled(
    conn: asyncpg.Connection | asyncpg.Pool, full_name: str, enabled: bool
) -> tuple[TriggerRecord, bool]:
    """Enable or disable a trigger; returns the trigger and whether anything changed."""
    trigger = await get_trigger(conn, full_name)
    if trigger.enabled == enabled:
        return trigger, False
    try:
        await conn.execute(
            "UPDATE workflow_triggers SET enabled = $2, updated_at = now(),"
            " enabled_at = CASE WHEN $2 THEN now() ELSE enabled_at END WHERE id = $1",
            trigger.id,
            enabled,
        )
    except asyncpg.UniqueViolationError:
        raise DefinitionError(
            f"cannot enable {full_name}: its webhook path is used by another enabled trigger"
        ) from None
    return await get_trigger(conn, full_name), True


_WORKFLOW_COLUMNS = columns(WorkflowRecord, "w", computed=("latest_version",))
_VERSION_COLUMNS = columns(VersionRecord, "v")


async def list_workflows(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    after: tuple[str, str] | None = None,
    limit: int | None = None,
) -> list[WorkflowRecord]:
    """Workflows ordered by key (then id: a key is unique per tenant only); ``after`` (a key
    and an id) and ``limit`` read one page, by keyset rather than by offset."""
    after_key, after_id = after if after is not None else (None, None)
    rows = await conn.fetch(
        f"SELECT {_WORKFLOW_COLUMNS},"
        " (SELECT max(version) FROM workflow_versions v WHERE v.workflow_id = w.id)"
        " AS latest_version FROM workflows w"
        " WHERE ($1::text IS NULL OR (w.key, w.id) > ($1, $2::uuid)) ORDER BY w.key, w.id"
        " LIMIT $3",
        after_key,
        after_id,
        limit,
    )
    return [row_to(WorkflowRecord, r) for r in rows]


async def get_workflow(conn: asyncpg.Connection | asyncpg.Pool, key: str) -> WorkflowRecord:
    row = await conn.fetchrow(
        f"SELECT {_WORKFLOW_COLUMNS},"
        " (SELECT max(version) FROM workflow_versions v WHERE v.workflow_id = w.id)"
        " AS latest_version FROM workflows w WHERE w.key = $1",
        key,
    )
    if row is None:
        raise NotFound(f"no workflow with key {key!r}")
    record: WorkflowRecord = row_to(WorkflowRecord, row)
    return record


async def list_versions(
    conn: asyncpg.Connection | asyncpg.Pool, workflow_id: str
) -> list[VersionRecord]:
    rows = await conn.fetch(
        f"SELECT {_VERSION_COLUMNS} FROM workflow_versions v WHERE workflow_id = $1"
        " ORDER BY version",
        workflow_id,
    )
    return [row_to(VersionRecord, r) for r in rows]


async def resolve_version(
    conn: asyncpg.Connection | asyncpg.Pool, workflow_id: str, version: int | None
) -> VersionRecord | None:
    """The pinned version, or the latest published one."""
    if version is None:
        row = await conn.fetchrow(
            f"SELECT {_VERSION_COLUMNS} FROM workflow_versions v"
            " WHERE workflow_id = $1 AND is_latest",
            workflow_id,
        )
    else:
        row = await conn.fetchrow(
            f"SELECT {_VERSION_COLUMNS} FROM workflow_versions v"
            " WHERE workflow_id = $1 AND version = $2",
            workflow_id,
            version,
        )
    return None if row is None else row_to(VersionRecord, row)
