"""Workflows, versions and triggers: the SQL behind ``triggerd apply`` and the listings."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from triggerd.definitions import canonical_json, graph_to_json, trigger_config_to_json
from triggerd.errors import DefinitionError, NotFound, Problem, UsageError
from triggerd.ids import time_ordered_id
from triggerd.inputs import call_input_problems, summary_problems
from triggerd.model import (
    DEFAULT_TENANT,
    CronConfig,
    TriggerSpec,
    WorkflowSpec,
    WorkflowStatus,
    inactive_state,
    normalize_webhook_path,
    tenant_label,
)
from triggerd.notifications.channels import TRIGGERS
from triggerd.store.audit import AuditEntry, record_audit
from triggerd.store.records import (
    Arguments,
    TriggerRecord,
    VersionRecord,
    VersionSummary,
    WorkflowRecord,
    columns,
    row_to,
)
from triggerd.tzrules import zone_fingerprint

# Config keys that are policies, not schedule: editing them keeps the catch-up floor.
POLICY_KEYS = ("misfire", "catchup_window", "max_catchup", "overlap", "jitter", "max_runs",
               "catchup_rate", "pause_after_failures", "monitor")


@dataclass(frozen=True, kw_only=True)
class Change:
    """One thing ``apply`` changed (or, with ``--plan``, would change)."""

    kind: str  # workflow | trigger
    name: str  # the workflow key, or workflow_key/trigger_name
    action: str  # created | updated | published | disabled | deleted
    detail: str = ""  # e.g. "version 2", "not in the file"

    @property
    def line(self) -> str:
        if self.action == "published":
            return f"{self.kind} {self.name}: {self.detail} published"
        suffix = f" ({self.detail})" if self.detail else ""
        return f"{self.kind} {self.name}: {self.action}{suffix}"

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "action": self.action, "detail": self.detail}


@dataclass(kw_only=True)
class ApplyReport:
    """What ``apply`` did: every change in the order of the files, and how many objects
    it left as they were (counted, not listed: a large unchanged file is one line)."""

    changes: list[Change] = field(default_factory=list)
    unchanged_workflows: int = 0
    unchanged_triggers: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    @property
    def lines(self) -> list[str]:
        """One line per change."""
        return [change.line for change in self.changes]

    @property
    def unchanged(self) -> int:
        return self.unchanged_workflows + self.unchanged_triggers

    @property
    def summary(self) -> str:
        """The one line that follows the changes."""
        if not self.changes:
            return "no changes"
        if not self.unchanged:  # a first apply: "0 triggers and 0 workflows unchanged"
            return f"{_count(len(self.changes), 'change')}, nothing unchanged"
        return (
            f"{_count(self.unchanged_triggers, 'trigger')} and"
            f" {_count(self.unchanged_workflows, 'workflow')} unchanged"
        )

    def to_json(self) -> dict[str, Any]:
        return {"changes": [c.to_json() for c in self.changes], "unchanged": self.unchanged}


def _changes_by_tenant(report: ApplyReport) -> dict[str, list[Change]]:
    """The changes of each tenant, from their names (``tenant:key`` outside the default
    tenant; keys and names have no ':')."""
    found: dict[str, list[Change]] = {}
    for change in report.changes:
        tenant, colon, _ = change.name.partition(":")
        found.setdefault(tenant if colon else DEFAULT_TENANT, []).append(change)
    return found


def apply_counts(report: ApplyReport, changes: Sequence[Change] | None = None
                 ) -> dict[str, Any]:
    """An apply's changes (or ``changes``, some of them) counted by kind and action
    (``{"trigger updated": 2, ...}``) and what it left as it was: the detail of its audit
    row."""
    counts: dict[str, int] = {}
    for change in report.changes if changes is None else changes:
        label = f"{change.kind} {change.action}"
        counts[label] = counts.get(label, 0) + 1
    return {"changes": counts, "unchanged": report.unchanged}


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def env_config_of(spec: WorkflowSpec) -> dict[str, Any]:
    config: dict[str, Any] = {
        "env": dict(spec.env),
        "secrets": {name: ref.to_json() for name, ref in spec.secrets.items()},
    }
    # Only when set: the versions published before the key keep their document.
    if spec.on_failure is not None:
        config["on_failure"] = spec.on_failure
    return config


def version_document(spec: WorkflowSpec) -> dict[str, Any]:
    """The parts of a workflow that make up an immutable version."""
    return {
        "graph": graph_to_json(spec.graph),
        "parameter_schema": spec.parameter_schema,
        "env_config": env_config_of(spec),
        "timeout_ms": int(spec.timeout.total_seconds() * 1000),
    }


def _trigger_document(
    trigger: TriggerSpec, config: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "type": str(trigger.type),
        "enabled": trigger.enabled,
        "version": trigger.version,
        "config": stored_config(trigger) if config is None else config,
        "input": trigger.input,
    }


def stored_config(trigger: TriggerSpec) -> dict[str, Any]:
    """The ``workflow_triggers.config`` document: the type's keys, and ``correlation``
    (read by the ingress and the scheduler) when the trigger maps any."""
    config = trigger_config_to_json(trigger.config)
    return {**config, "correlation": dict(trigger.correlation)} if trigger.correlation else config


def _cron_zones(specs: list[WorkflowSpec]) -> list[str]:
    return sorted({
        trigger.config.timezone
        for spec in specs
        for trigger in spec.triggers
        if isinstance(trigger.config, CronConfig)
    })


async def _record_zone_rules(conn: asyncpg.Connection, zones: list[str]) -> None:
    """The rules of the zones the file's cron triggers use, as applied (doctor compares)."""
    prints = [(zone, zone_fingerprint(zone)) for zone in zones]
    known = [(zone, found) for zone, found in prints if found is not None]
    if known:
        await conn.execute(
            "INSERT INTO zone_rules (zone, fingerprint)"
            " SELECT * FROM unnest($1::text[], $2::text[])"
            " ON CONFLICT (zone) DO UPDATE SET fingerprint = EXCLUDED.fingerprint,"
            " recorded_at = now() WHERE zone_rules.fingerprint <> EXCLUDED.fingerprint",
            [zone for zone, _ in known],
            [found for _, found in known],
        )


class _PlanOnly(Exception):
    """Raised inside the transaction of ``apply --plan`` to roll everything back."""


class _PathRace(Exception):
    """A webhook path taken by another apply after this one's check: the unique index
    refused the write. Its holder is looked up once the transaction has rolled back (the
    aborted transaction answers no query)."""

    def __init__(self, where: tuple[str, str], name: str) -> None:
        super().__init__(where[1])
        self.where = where
        self.name = name


async def _webhook_path_holder(conn: asyncpg.Connection, tenant: str, path: str,
                               other_than: str | None = None) -> str | None:
    """``workflow/trigger`` of the enabled webhook trigger of ``tenant`` at ``path`` (other
    than the trigger ``other_than``), if any."""
    holder: str | None = await conn.fetchval(
        "SELECT w.key || '/' || t.name FROM workflow_triggers t"
        " JOIN workflows w ON w.id = t.workflow_id WHERE t.tenant_id = $1"
        " AND t.type = 'webhook' AND t.enabled AND t.config->>'path' = $2"
        " AND t.id IS DISTINCT FROM $3::uuid LIMIT 1",
        tenant, path, other_than)
    return holder


async def apply_workflows(
    conn: asyncpg.Connection,
    specs: list[WorkflowSpec],
    *,
    prune: bool = False,
    plan: bool = False,
    fingerprint: str | None = None,
    keep: int = 16,
    audit: AuditEntry | None = None,
    tenant_audits: Mapping[str, AuditEntry] | None = None,
) -> ApplyReport:
    """Create or update workflows, publish changed versions and upsert triggers, all in one
    transaction: either everything is written or nothing is. With ``plan``, everything is
    done and then rolled back: the report says what would change.

    A few set-based statements whatever the number of workflows: read what exists, compare
    in Python (:func:`plan_apply`), write each kind of change with one statement.

    ``fingerprint`` (of the files ``specs`` were read from, see
    :mod:`triggerd.definitions.fingerprint`) is recorded with a digest of the rows as
    written, for :func:`unchanged_apply`; the latest ``keep`` fingerprints are kept.

    ``audit`` (who applied which files) is recorded in the same transaction when anything
    changed, with the count of changes by kind and action in its detail; a tenant in
    ``tenant_audits`` gets its own entry instead (its files only), and a tenant without
    one there (its workflows pruned) is told of no file."""
    report = ApplyReport()
    try:
        async with conn.transaction():
            report, ids = await _apply_all(conn, specs, prune=prune)
            zones = _cron_zones(specs)
            await _record_zone_rules(conn, zones)
            if plan:
                raise _PlanOnly
            if fingerprint is not None:
                await _record_applied(conn, fingerprint, ids, zones, specs, keep)
            if audit is not None and report.changed:
                # One row in each tenant whose workflows changed, so that tenant's own
                # audit list shows it (a `tenant: acme` document is acme's change).
                for tenant, changes in _changes_by_tenant(report).items():
                    entry = audit
                    if tenant_audits is not None:
                        entry = tenant_audits.get(tenant) or dataclasses.replace(
                            audit, target="(none of its files)",
                            detail={**audit.detail, "files": []})
                    await record_audit(conn, dataclasses.replace(
                        entry, tenant_id=tenant,
                        detail={**entry.detail, **apply_counts(report, changes)}))
    except _PlanOnly:
        pass
    except _PathRace as race:
        holder = await _webhook_path_holder(conn, *race.where)
        raise _path_taken(race.where[1], race.name, holder) from None
    return report


# A digest of every stored value an apply compares for the workflows $1: their rows, their
# latest versions and all their triggers. Each row's text form (which quotes every field,
# so it is unambiguous) is hashed twice with two seeds, and the hashes are summed per table
# with the row count: no sort, a fifth of the time of an md5 over the ordered rows.
_STATE_DIGEST = "SELECT concat_ws(' ', w.*, v.*, t.*) FROM " + ", ".join(
    f"(SELECT count(*), coalesce(sum(hashtextextended(r, 0)), 0),"
    f" coalesce(sum(hashtextextended(r, 1)), 0) FROM (SELECT ({columns})::text AS r"
    f" FROM {table} WHERE {where}) s) {alias}"
    for alias, columns, table, where in (
        ("w", "id, tenant_id, key, name, description, status", "workflows",
         "id = ANY($1::uuid[])"),
        ("v", "workflow_id, version, graph, parameter_schema, env_config, timeout_ms",
         "workflow_versions", "workflow_id = ANY($1::uuid[]) AND is_latest"),
        ("t", "id, workflow_id, name, type, enabled, version, config, input",
         "workflow_triggers", "workflow_id = ANY($1::uuid[])"),
    )
)


async def _record_applied(
    conn: asyncpg.Connection,
    fingerprint: str,
    ids: list[Any],
    zones: list[str],
    specs: list[WorkflowSpec],
    keep: int,
) -> None:
    state = await conn.fetchval(_STATE_DIGEST, ids)
    await conn.execute(
        "INSERT INTO applied_definitions (fingerprint, workflow_ids, zones, workflows,"
        " triggers, state) VALUES ($1, $2::uuid[], $3::text[], $4, $5, $6)"
        " ON CONFLICT (fingerprint) DO UPDATE SET workflow_ids = EXCLUDED.workflow_ids,"
        " zones = EXCLUDED.zones, workflows = EXCLUDED.workflows,"
        " triggers = EXCLUDED.triggers, state = EXCLUDED.state, applied_at = now()",
        fingerprint,
        ids,
        zones,
        len(specs),
        sum(len(spec.triggers) for spec in specs),
        state,
    )
    await conn.execute(
        "DELETE FROM applied_definitions WHERE fingerprint NOT IN (SELECT fingerprint"
        " FROM applied_definitions ORDER BY applied_at DESC, fingerprint LIMIT $1)",
        keep,
    )


async def unchanged_apply(
    conn: asyncpg.Connection, fingerprint: str, *, plan: bool = False
) -> ApplyReport | None:
    """The report of re-applying files whose ``fingerprint`` an apply recorded, while the
    rows of their workflows are still as that apply left them: nothing to change (an apply
    leaves nothing for the same files to change). ``None`` when the files must be read and
    compared in full: unknown fingerprint, rows changed since, or a stored webhook path
    from before paths were normalized (whose check needs the files' paths)."""
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT workflow_ids, zones, workflows, triggers, state FROM applied_definitions"
            " WHERE fingerprint = $1",
            fingerprint,
        )
        if row is None or row["state"] != await conn.fetchval(_STATE_DIGEST, row["workflow_ids"]):
            return None
        if await _unnormalized_paths(conn):
            return None
        if not plan:
            await _record_zone_rules(conn, list(row["zones"]))
    return ApplyReport(unchanged_workflows=row["workflows"], unchanged_triggers=row["triggers"])


# Enabled webhook triggers whose stored path still has a slash at either end (written
# before paths were normalized): (tenant, normalized path) -> (trigger id, full name, stored
# path).
_Legacy = dict[tuple[str, str], tuple[str, str, str]]


async def _unnormalized_paths(conn: asyncpg.Connection) -> _Legacy:
    """The unique index compares stored text, so a stored "t/none/" does not stop a new
    "t/none" although both are routed as one path: those rows are compared by hand."""
    rows = await conn.fetch(
        "SELECT t.id::text AS id, w.key || '/' || t.name AS full_name, t.tenant_id,"
        " t.config->>'path' AS path FROM workflow_triggers t"
        " JOIN workflows w ON w.id = t.workflow_id"
        " WHERE t.type = 'webhook' AND t.enabled"
        " AND t.config->>'path' <> btrim(t.config->>'path', '/')"
    )
    return {(r["tenant_id"], normalize_webhook_path(r["path"])):
            (r["id"], r["full_name"], r["path"]) for r in rows}


@dataclass(frozen=True, kw_only=True)
class StoredWorkflow:
    """What the database holds for one workflow of the files: its row, latest version
    document and triggers (by name), as plain values."""

    id: str
    name: str
    description: str
    status: str
    latest: dict[str, Any] | None  # the version document of the latest version
    max_version: int
    triggers: dict[str, StoredTrigger]  # by name


@dataclass(frozen=True, kw_only=True)
class StoredTrigger:
    id: str
    enabled: bool
    same: bool  # the stored row already holds what the file says (False: not in the file)


@dataclass(frozen=True, kw_only=True)
class WantedTrigger:
    """A trigger of the files as it is written: its document and JSON texts."""

    doc: dict[str, Any]
    config: str
    input: str


def wanted_trigger(trigger: TriggerSpec) -> WantedTrigger:
    doc = _trigger_document(trigger)
    return WantedTrigger(doc=doc, config=json.dumps(doc["config"]), input=json.dumps(doc["input"]))


def wanted_triggers(specs: list[WorkflowSpec]) -> dict[tuple[str, str, str], WantedTrigger]:
    """:func:`wanted_trigger` of every trigger of ``specs`` by (tenant, workflow key, name), each
    distinct config object serialized once: loading shares equal configs, and a large
    file is a few thousand schedules (the documents are shared too, and only read)."""
    texts: dict[int, tuple[dict[str, Any], str]] = {}  # id(config) -> its JSON and text
    wanted: dict[tuple[str, str, str], WantedTrigger] = {}
    for spec in specs:
        for trigger in spec.triggers:
            known = None if trigger.correlation else texts.get(id(trigger.config))
            if known is None:
                config = stored_config(trigger)
                known = (config, json.dumps(config))
                if not trigger.correlation:  # a mapping makes the document the trigger's own
                    texts[id(trigger.config)] = known
            wanted[spec.tenant_id, spec.key, trigger.name] = WantedTrigger(
                doc=_trigger_document(trigger, known[0]),
                config=known[1],
                input="{}" if trigger.input == {} else json.dumps(trigger.input),
            )
    return wanted


@dataclass(kw_only=True)
class ApplyPlan:
    """The writes :func:`plan_apply` decided, each a list of rows for one statement."""

    report: ApplyReport
    # (workflow id, its spec, the status it gets)
    workflow_updates: list[tuple[str, WorkflowSpec, str]] = field(default_factory=list)
    # (spec, version number, its version document)
    publish: list[tuple[WorkflowSpec, int, dict[str, Any]]] = field(default_factory=list)
    trigger_inserts: list[tuple[WorkflowSpec, str, WantedTrigger]] = field(default_factory=list)
    trigger_updates: list[tuple[str, WantedTrigger]] = field(default_factory=list)
    disable: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    # Enabled webhook paths written by this apply: (tenant, path) -> full trigger name, in
    # file order.
    webhook_paths: dict[tuple[str, str], str] = field(default_factory=dict)


def plan_apply(
    specs: list[WorkflowSpec],
    stored: dict[tuple[str, str], StoredWorkflow],
    created: set[tuple[str, str]],
    legacy: _Legacy,
    wanted: dict[tuple[str, str, str], WantedTrigger],
    *,
    prune: bool,
) -> ApplyPlan:
    """Compare the files with what is stored (by tenant and workflow key) and decide every
    write.

    ``created`` are the (tenant, key) pairs whose workflow rows this apply has just
    inserted; ``legacy`` the unnormalized stored paths (see :func:`_unnormalized_paths`);
    ``wanted`` the files' triggers by (tenant, workflow key, name). Raises
    :class:`DefinitionError` when a webhook path is taken by a legacy row this apply does
    not rewrite."""
    plan = ApplyPlan(report=ApplyReport())
    report = plan.report
    governed = {t.id for wf in stored.values() for t in wf.triggers.values()}
    # Rows of the files' workflows take the files' paths (or are disabled): only the others
    # can keep a path taken.
    foreign = {path: v for path, v in legacy.items() if v[0] not in governed}
    for spec in specs:
        ref = (spec.tenant_id, spec.key)
        label = tenant_label(spec.tenant_id, spec.key)
        wf = stored[ref]
        changed = ref in created
        if changed:
            report.changes.append(Change(kind="workflow", name=label, action="created"))
        else:
            status = str(spec.status) if spec.status_given else wf.status
            if (wf.name, wf.description, wf.status) != (spec.name, spec.description, status):
                plan.workflow_updates.append((wf.id, spec, status))
                report.changes.append(Change(
                    kind="workflow", name=label, action="updated",
                    detail="" if status == wf.status else f"status {wf.status} -> {status}"))
                changed = True
        version = version_document(spec)
        if wf.latest is None or canonical_json(wf.latest) != canonical_json(version):
            number = wf.max_version + 1
            plan.publish.append((spec, number, version))
            report.changes.append(
                Change(
                    kind="workflow", name=label, action="published", detail=f"version {number}"
                )
            )
            changed = True
        if not changed:
            report.unchanged_workflows += 1
        existing = dict(wf.triggers)
        for trigger in spec.triggers:
            want = wanted[spec.tenant_id, spec.key, trigger.name]
            doc = want.doc
            full = f"{label}/{trigger.name}"
            old = existing.pop(trigger.name, None)
            if doc["type"] == "webhook" and doc["enabled"]:
                path = doc["config"].get("path")
                if isinstance(path, str):
                    _refuse_legacy_path(foreign, (spec.tenant_id, path), full)
                    plan.webhook_paths.setdefault((spec.tenant_id, path), full)
            if old is None:
                plan.trigger_inserts.append((spec, trigger.name, want))
                report.changes.append(Change(kind="trigger", name=full, action="created"))
            elif old.same:
                report.unchanged_triggers += 1
            else:
                plan.trigger_updates.append((old.id, want))
                # A revert of an operator's enable or disable is named: apply --plan shows it.
                report.changes.append(Change(
                    kind="trigger", name=full, action="updated",
                    detail="" if old.enabled == doc["enabled"] else
                    f"enabled {str(old.enabled).lower()} -> {str(doc['enabled']).lower()}"))
        for name, old in existing.items():
            full = f"{label}/{name}"
            if prune:
                plan.delete.append(old.id)
                report.changes.append(
                    Change(kind="trigger", name=full, action="deleted", detail="not in the file")
                )
            elif old.enabled:
                plan.disable.append(old.id)
                report.changes.append(
                    Change(kind="trigger", name=full, action="disabled", detail="not in the file")
                )
    return plan


def _refuse_legacy_path(legacy: _Legacy, where: tuple[str, str], name: str) -> None:
    taken = legacy.get(where)
    if taken is None:
        return
    path = where[1]
    _, owner, stored = taken
    used = f"is already used by the enabled trigger {owner} (stored as {stored!r})"
    raise DefinitionError(
        f"webhook path {path!r} of trigger {name} {used}",
        [Problem("<database>", name, f"webhook path {path!r} {used}")],
    )


def _path_taken(path: str, name: str, holder: str | None = None) -> DefinitionError:
    """``holder``: the enabled trigger that has the path (unknown after a race)."""
    used = ("is already used by another enabled trigger" if holder is None else
            f"is already used by the enabled trigger {holder} (disable it, or give"
            f" {name} another path)")
    return DefinitionError(
        f"webhook path {path!r} of trigger {name} {used}",
        [Problem("<database>", name, f"webhook path {path!r} {used}")],
    )


@dataclass(frozen=True, kw_only=True)
class _Reference:
    """A workflow key one workflow names: its ``on_failure``, or a ``workflow`` node that
    names it literally (an expression is known only at run time)."""

    tenant_id: str
    referrer: str  # the naming workflow's key
    what: str  # on_failure | node 'x'
    key: str
    version: int | None = None  # a node's pinned version
    call_input: Any = None  # a node's input as written ({} when it gives none)
    # Where it is written: the file and the JSON path of the entry that names the key
    # (``None``: a document without a known place).
    origin: tuple[str, str] | None = None

    def problem(self, message: str, field: str = "workflow") -> Problem:
        """A problem at the place this reference is written (``field``: of a node's
        params), else under ``<database>`` and the naming workflow's key."""
        if self.origin is None:
            return Problem("<database>", self.referrer, message)
        file, path = self.origin
        return Problem(file, path if self.what == "on_failure" else f"{path}.{field}", message)


def _workflow_references(spec: WorkflowSpec) -> list[_Reference]:
    file, path = spec.origin if spec.origin is not None else (None, None)
    found = [] if spec.on_failure is None else [_Reference(
        tenant_id=spec.tenant_id, referrer=spec.key, what="on_failure", key=spec.on_failure,
        origin=None if file is None else (file, f"{path}.on_failure"))]
    for index, node in enumerate(spec.graph.nodes):
        params = node.params if isinstance(node.params, dict) else {}
        key = params.get("workflow")
        if node.type == "workflow" and isinstance(key, str) and "{{" not in key:
            version = params.get("version")
            found.append(_Reference(
                tenant_id=spec.tenant_id, referrer=spec.key, what=f"node {node.id!r}", key=key,
                version=version if isinstance(version, int) else None,
                call_input=params.get("input", {}),
                origin=None if file is None
                else (file, f"{path}.graph.nodes[{index}].params")))
    return found


async def _refuse_bad_workflow_references(
    conn: asyncpg.Connection, specs: list[WorkflowSpec]
) -> list[Any]:
    """Every ``on_failure`` and every ``workflow`` node names a workflow of the files or of
    the database, in the same tenant; a node's call can start it (not archived, its pinned
    version exists) with an input its schema can accept. Each of these failed every run
    that reached the node."""
    defined = {(spec.tenant_id, spec.key): spec for spec in specs}
    references = [r for spec in specs for r in _workflow_references(spec)]
    outside = sorted({(r.tenant_id, r.key) for r in references} - set(defined))
    stored: dict[tuple[str, str], asyncpg.Record] = {}
    if outside:
        rows = await conn.fetch(
            "SELECT w.tenant_id, w.key, w.status, w.id, v.parameter_schema"
            " FROM workflows w JOIN unnest($1::text[], $2::text[]) AS f (tenant_id, key)"
            " ON w.tenant_id = f.tenant_id AND w.key = f.key"
            " LEFT JOIN workflow_versions v ON v.workflow_id = w.id AND v.is_latest",
            [t for t, _ in outside], [k for _, k in outside])
        stored = {(r["tenant_id"], r["key"]): r for r in rows}
    pinned = {(r.tenant_id, r.key, r.version) for r in references
              if r.version is not None and (r.tenant_id, r.key) in stored}
    versions: dict[tuple[str, str, int], Any] = {}
    if pinned:
        rows = await conn.fetch(
            "SELECT w.tenant_id, w.key, v.version, v.parameter_schema FROM workflows w"
            " JOIN workflow_versions v ON v.workflow_id = w.id"
            " JOIN unnest($1::text[], $2::text[], $3::int[]) AS f (tenant_id, key, version)"
            " ON w.tenant_id = f.tenant_id AND w.key = f.key AND v.version = f.version",
            *(list(column) for column in zip(*pinned, strict=True)))
        versions = {(r["tenant_id"], r["key"], r["version"]): r["parameter_schema"]
                    for r in rows}
    problems: list[Problem] = []
    for ref in references:
        where = (ref.tenant_id, ref.key)
        spec, row = defined.get(where), stored.get(where)
        if spec is None and row is None:
            problems.append(ref.problem(f"{ref.what}: no workflow {ref.key!r} in the files"
                                        " or the database"))
            continue
        status = spec.status.value if spec is not None and spec.status_given else (
            row["status"] if row is not None else WorkflowStatus.ACTIVE.value)
        state = inactive_state(status)
        if state is not None:  # a call of it, or a failure, starts nothing
            problems.append(ref.problem(f"{ref.what}: workflow {ref.key!r} is {state}"))
            continue
        if ref.what == "on_failure":
            # One whose schema refuses the summary every error run gets fails each of them
            # INPUT_INVALID.
            target = spec.parameter_schema if spec is not None else (
                row["parameter_schema"] if row is not None else None)
            if isinstance(target, dict):
                problems += [ref.problem(f"on_failure: {ref.key!r}'s parameter_schema refuses"
                                         f" the failure summary its runs get: {problem}")
                             for problem in summary_problems(target)]
            continue
        schema: Any = None
        if spec is not None:
            schema = spec.parameter_schema if ref.version is None else None
        elif ref.version is None:
            schema = row["parameter_schema"] if row is not None else None
        elif (ref.tenant_id, ref.key, ref.version) in versions:
            schema = versions[(ref.tenant_id, ref.key, ref.version)]
        else:
            problems.append(ref.problem(f"{ref.what}: workflow {ref.key!r} has no version"
                                        f" {ref.version}", "version"))
            continue
        if isinstance(schema, dict):
            problems += [ref.problem(f"{ref.what}: its input does not match {ref.key!r}'s"
                                     f" parameter_schema: {problem}", "input")
                         for problem in call_input_problems(schema, ref.call_input)]
    if problems:
        raise DefinitionError(problems[0].message if len(problems) == 1 else
                              f"{len(problems)} calls of workflows that cannot succeed",
                              problems)
    return [row["id"] for row in stored.values()]


async def _apply_all(
    conn: asyncpg.Connection, specs: list[WorkflowSpec], *, prune: bool
) -> tuple[ApplyReport, list[Any]]:
    referenced = await _refuse_bad_workflow_references(conn, specs)
    legacy = await _unnormalized_paths(conn)
    tenants = [spec.tenant_id for spec in specs]
    keys = [spec.key for spec in specs]
    # Locked in one order (by id), so two applies of overlapping files queue, not deadlock.
    rows = await conn.fetch(
        "SELECT w.id, w.tenant_id, w.key, w.name, w.description, w.status FROM workflows w"
        " JOIN unnest($1::text[], $2::text[]) AS f (tenant_id, key)"
        " ON w.tenant_id = f.tenant_id AND w.key = f.key ORDER BY w.id FOR UPDATE OF w",
        tenants,
        keys,
    )
    found = {(r["tenant_id"], r["key"]): r for r in rows}
    new = [spec for spec in specs if (spec.tenant_id, spec.key) not in found]
    if new:
        inserted = await conn.fetch(
            "INSERT INTO workflows (id, tenant_id, key, name, description, status)"
            " SELECT * FROM unnest($6::uuid[], $1::text[], $2::text[], $3::text[], $4::text[],"
            " $5::text[]) RETURNING id, tenant_id, key, name, description, status",
            [s.tenant_id for s in new],
            [s.key for s in new],
            [s.name for s in new],
            [s.description for s in new],
            [str(s.status) for s in new],
            [time_ordered_id() for _ in new],
        )
        found.update(((r["tenant_id"], r["key"]), r) for r in inserted)
    ids = [found[spec.tenant_id, spec.key]["id"] for spec in specs]
    latest = {
        r["workflow_id"]: r
        for r in await conn.fetch(
            "SELECT v.workflow_id, v.graph, v.parameter_schema, v.env_config, v.timeout_ms,"
            " v.is_latest, m.max_version FROM (SELECT workflow_id, max(version) AS max_version"
            " FROM workflow_versions WHERE workflow_id = ANY($1::uuid[]) GROUP BY 1) m"
            " LEFT JOIN workflow_versions v ON v.workflow_id = m.workflow_id AND v.is_latest",
            ids,
        )
    }
    wanted = wanted_triggers(specs)
    # Workflows created just now have no stored triggers to compare with.
    created = {(spec.tenant_id, spec.key) for spec in new}
    existing = [wid for spec, wid in zip(specs, ids, strict=True)
                if (spec.tenant_id, spec.key) not in created]
    rows_of = [
        (wid, s, t)
        for s, wid in zip(specs, ids, strict=True)
        if (s.tenant_id, s.key) not in created
        for t in s.triggers
    ]
    docs = [wanted[s.tenant_id, s.key, t.name] for _, s, t in rows_of]
    triggers: dict[Any, dict[str, StoredTrigger]] = {i: {} for i in ids}
    # PostgreSQL compares each stored trigger with the file's, as the text of the jsonb it
    # would store: the same test as comparing the documents, without sending 100,000 of
    # them back to be decoded.
    for r in [] if not existing else await conn.fetch(
        "SELECT t.id, t.workflow_id, t.name, t.enabled, f.name IS NOT NULL"
        " AND t.type = f.type AND t.enabled = f.enabled"
        " AND t.version IS NOT DISTINCT FROM f.version"
        " AND t.config::text = f.config::jsonb::text"
        " AND t.input::text = f.input::jsonb::text AS same"
        " FROM workflow_triggers t LEFT JOIN unnest($2::uuid[], $3::text[], $4::text[],"
        " $5::boolean[], $6::int[], $7::text[], $8::text[])"
        " AS f (workflow_id, name, type, enabled, version, config, input)"
        " ON f.workflow_id = t.workflow_id AND f.name = t.name"
        " WHERE t.workflow_id = ANY($1::uuid[])",
        existing,
        [wid for wid, _, _ in rows_of],
        [t.name for _, _, t in rows_of],
        [d.doc["type"] for d in docs],
        [d.doc["enabled"] for d in docs],
        [d.doc["version"] for d in docs],
        [d.config for d in docs],
        [d.input for d in docs],
    ):
        triggers[r["workflow_id"]][r["name"]] = StoredTrigger(
            id=str(r["id"]), enabled=r["enabled"], same=bool(r["same"])
        )
    stored: dict[tuple[str, str], StoredWorkflow] = {}
    for spec, wid in zip(specs, ids, strict=True):
        row = found[spec.tenant_id, spec.key]
        version = latest.get(wid)
        document = (
            None
            if version is None or version["is_latest"] is None
            else {k: version[k] for k in ("graph", "parameter_schema", "env_config", "timeout_ms")}
        )
        stored[spec.tenant_id, spec.key] = StoredWorkflow(
            id=str(wid),
            name=row["name"],
            description=row["description"],
            status=row["status"],
            latest=document,
            max_version=0 if version is None else int(version["max_version"]),
            triggers=triggers[wid],
        )
    plan = plan_apply(specs, stored, created, legacy, wanted, prune=prune)
    await _check_paths(conn, plan, ids)
    await _write(conn, plan, stored)
    await _refuse_missing_pinned_versions(conn, specs, ids)
    # The workflows the files call (on_failure, workflow nodes) but do not define count in
    # the digest an unchanged re-apply compares: archived or given a new version since,
    # they may refuse the calls, which the files must then be checked for again.
    return plan.report, ids + [i for i in referenced if i not in ids]


async def _refuse_missing_pinned_versions(
    conn: asyncpg.Connection, specs: list[WorkflowSpec], ids: list[Any]
) -> None:
    """A trigger pinned (``version: N``) to a version its workflow does not have, with
    this apply's version written: every fire of it failed (NO_VERSION), a webhook answered
    404. Raised inside the apply's transaction, so nothing is written."""
    pinned = [(index, spec) for index, spec in enumerate(specs)
              if any(t.version is not None for t in spec.triggers)]
    if not pinned:
        return
    rows = await conn.fetch(
        "SELECT workflow_id, max(version) AS newest FROM workflow_versions"
        " WHERE workflow_id = ANY($1::uuid[]) GROUP BY workflow_id",
        [ids[index] for index, _ in pinned])
    newest = {r["workflow_id"]: r["newest"] for r in rows}
    problems: list[Problem] = []
    for index, spec in pinned:
        have = newest.get(ids[index], 0)
        file, path = spec.origin if spec.origin is not None else ("<database>", spec.key)
        for number, trigger in enumerate(spec.triggers):
            if trigger.version is not None and not 1 <= trigger.version <= have:
                problems.append(Problem(
                    file, f"{path}.triggers[{number}].version",
                    f"trigger {trigger.name!r}: workflow {spec.key!r} has no version"
                    f" {trigger.version} (its versions are 1-{have})"))
    if problems:
        raise DefinitionError(problems[0].message if len(problems) == 1 else
                              f"{len(problems)} triggers pinned to versions that do not"
                              " exist", problems)


async def _check_paths(conn: asyncpg.Connection, plan: ApplyPlan, ids: list[Any]) -> None:
    """Refuse, naming the trigger, a webhook path an enabled trigger outside the files'
    workflows holds (before writing; the unique index stays the last word)."""
    if not plan.webhook_paths:
        return
    taken = {
        (r["tenant_id"], r["path"]): r["holder"]
        for r in await conn.fetch(
            "SELECT t.tenant_id, t.config->>'path' AS path, w.key || '/' || t.name AS holder"
            " FROM workflow_triggers t JOIN workflows w ON w.id = t.workflow_id"
            " WHERE t.type = 'webhook' AND t.enabled AND t.config->>'path' = ANY($1::text[])"
            " AND NOT (t.workflow_id = ANY($2::uuid[]))",
            list({path for _, path in plan.webhook_paths}),
            ids,
        )
    }
    for where, name in plan.webhook_paths.items():
        if where in taken:
            raise _path_taken(where[1], name, taken[where])


async def notify_workflow_triggers(conn: asyncpg.Connection, workflow_ids: list[str]) -> None:
    """Tell the daemons (the triggers channel) that the triggers of these workflows changed."""
    await conn.execute(
        f"SELECT pg_notify('{TRIGGERS.wire}', json_build_object('op', 'UPDATE',"
        " 'id', t.id)::text) FROM workflow_triggers t WHERE t.workflow_id = ANY($1::uuid[])",
        workflow_ids)


def _copy_field(value: str | bool | int | None) -> str:
    if value is None:
        return "\\N"
    if value is True or value is False:
        return "t" if value else "f"
    text = str(value)
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        # (str.translate would do it in one call, but looks up every character: 1 s for
        # a first apply's 100,000 rows, where these tests take 0.1 s.)
        text = (text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
                .replace("\r", "\\r"))
    return text


class _CopyFields(dict[Any, str]):
    """One column's values in COPY's text format, each distinct value escaped once (a
    column holds one type: True and 1 would be one key)."""

    def __missing__(self, value: str | bool | int | None) -> str:
        text = self[value] = _copy_field(value)
        return text


def copy_text(rows: list[tuple[str | bool | int | None, ...]]) -> bytes:
    """``rows`` in COPY's text format. Text, not the binary format asyncpg's
    ``copy_records_to_table`` sends: the connections' json codecs are text codecs.

    Column by column: most of a column's values repeat (a workflow's id, a shared config's
    text), and mapping a memo over it keeps Python out of all but the first of each."""
    if not rows:
        return b""
    columns = [list(map(_CopyFields().__getitem__, column)) for column in zip(*rows, strict=True)]
    return ("\n".join(map("\t".join, zip(*columns, strict=True))) + "\n").encode()


# New trigger rows are sent this many at a time: PostgreSQL stores one slice while the
# next is written out (all at once, it waited for the whole text: 0.2 s of 100,000 rows).
COPY_SLICE = 2_000


async def _trigger_rows(
    inserts: list[tuple[WorkflowSpec, str, WantedTrigger]],
    stored: dict[tuple[str, str], StoredWorkflow],
) -> AsyncIterator[bytes]:
    for start in range(0, len(inserts), COPY_SLICE):
        yield copy_text([
            (time_ordered_id(), stored[spec.tenant_id, spec.key].id, name, want.doc["type"],
             want.doc["enabled"], want.doc["version"], want.config, want.input, spec.tenant_id)
            for spec, name, want in inserts[start : start + COPY_SLICE]
        ])


def _json_texts(values: list[Any]) -> list[str]:
    return [json.dumps(v) for v in values]


async def _write(
    conn: asyncpg.Connection, plan: ApplyPlan, stored: dict[tuple[str, str], StoredWorkflow]
) -> None:
    if plan.workflow_updates:
        await conn.execute(
            "UPDATE workflows w SET name = u.name, description = u.description,"
            " status = u.status, updated_at = now()"
            " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[])"
            " AS u (id, name, description, status) WHERE w.id = u.id",
            [wid for wid, _, _ in plan.workflow_updates],
            [s.name for _, s, _ in plan.workflow_updates],
            [s.description for _, s, _ in plan.workflow_updates],
            [status for _, _, status in plan.workflow_updates],
        )
        # A status change stops or starts every trigger of the workflow: tell the daemons
        # (the triggers' own rows did not change, so their notification did not fire).
        await notify_workflow_triggers(conn, [wid for wid, _, _ in plan.workflow_updates])
    if plan.publish:
        ids = [stored[spec.tenant_id, spec.key].id for spec, _, _ in plan.publish]
        docs = [doc for _, _, doc in plan.publish]
        await conn.execute(
            "UPDATE workflow_versions SET is_latest = false"
            " WHERE workflow_id = ANY($1::uuid[]) AND is_latest",
            ids,
        )
        await conn.execute(
            "INSERT INTO workflow_versions (workflow_id, version, graph, parameter_schema,"
            " env_config, timeout_ms, is_latest, published_at)"
            " SELECT id, version, graph::jsonb, parameter_schema::jsonb, env_config::jsonb,"
            " timeout_ms, true, now() FROM unnest($1::uuid[], $2::int[], $3::text[],"
            " $4::text[], $5::text[], $6::bigint[])"
            " AS v (id, version, graph, parameter_schema, env_config, timeout_ms)",
            ids,
            [number for _, number, _ in plan.publish],
            _json_texts([d["graph"] for d in docs]),
            _json_texts([d["parameter_schema"] for d in docs]),
            _json_texts([d["env_config"] for d in docs]),
            [d["timeout_ms"] for d in docs],
        )
    # Paths are released (disabled, deleted) before others take them.
    if plan.delete:
        await conn.execute("DELETE FROM workflow_triggers WHERE id = ANY($1::uuid[])", plan.delete)
    if plan.disable:
        await conn.execute(
            "UPDATE workflow_triggers SET enabled = false, updated_at = now()"
            " WHERE id = ANY($1::uuid[])",
            plan.disable,
        )
    try:
        if plan.trigger_updates:
            updates = [want for _, want in plan.trigger_updates]
            # The webhooks whose path changes leave the unique index first: the update
            # below checks it row by row, so two triggers swapping paths in one apply
            # collided with each other's old path. (The update enables them again; a
            # changed config moves enabled_at anyway.)
            await conn.execute(
                "UPDATE workflow_triggers t SET enabled = false"
                " FROM unnest($1::uuid[], $2::text[]) AS u (id, config)"
                " WHERE t.id = u.id AND t.type = 'webhook' AND t.enabled"
                " AND t.config->>'path' IS DISTINCT FROM u.config::jsonb->>'path'",
                [tid for tid, _ in plan.trigger_updates], [w.config for w in updates])
            await conn.execute(
                "UPDATE workflow_triggers t SET type = u.type, enabled = u.enabled,"
                " version = u.version, config = u.config::jsonb, input = u.input::jsonb,"
                " updated_at = now(),"
                # The edit rule: re-enabling or changing the schedule (not a policy) moves
                # the catch-up floor to now, so no slot from before the change runs. So
                # does a new max_runs of a trigger that had completed: reopened, it is
                # re-enabled (the slots after it completed were never due; they all ran
                # at the reload as a catch-up).
                " enabled_at = CASE WHEN u.enabled AND (NOT t.enabled OR t.type <> u.type"
                " OR t.config - $7::text[] IS DISTINCT FROM u.config::jsonb - $7::text[]"
                " OR (t.config->'max_runs' IS DISTINCT FROM u.config::jsonb->'max_runs'"
                " AND EXISTS (SELECT 1 FROM trigger_state st WHERE st.trigger_id = t.id"
                " AND st.completed_at IS NOT NULL)))"
                " THEN now() ELSE t.enabled_at END"
                " FROM unnest($1::uuid[], $2::text[], $3::boolean[], $4::int[], $5::text[],"
                " $6::text[]) AS u (id, type, enabled, version, config, input)"
                " WHERE t.id = u.id",
                [tid for tid, _ in plan.trigger_updates],
                [w.doc["type"] for w in updates],
                [w.doc["enabled"] for w in updates],
                [w.doc["version"] for w in updates],
                [w.config for w in updates],
                [w.input for w in updates],
                list(POLICY_KEYS),
            )
            # Reopened (its max_runs raised or removed): no longer completed, so its next
            # completion is dated when it happens.
            await conn.execute(
                "UPDATE trigger_state st SET completed_at = NULL, updated_at = now()"
                " FROM workflow_triggers t WHERE t.id = st.trigger_id"
                " AND st.trigger_id = ANY($1::uuid[]) AND st.completed_at IS NOT NULL"
                " AND (NOT t.config ? 'max_runs'"
                " OR st.scheduled_runs < (t.config->>'max_runs')::bigint)",
                [tid for tid, _ in plan.trigger_updates],
            )
        if plan.trigger_inserts:
            # COPY, not INSERT ... unnest: a quarter less of PostgreSQL's time for a first
            # apply of 100,000 triggers (no eight arrays to build, send and take apart).
            # Time-ordered ids, not the column's random default: they land at the right
            # edge of the primary key instead of on a random page each (0.25 s less).
            await conn.copy_to_table(
                "workflow_triggers",
                columns=["id", "workflow_id", "name", "type", "enabled", "version", "config",
                         "input", "tenant_id"],
                source=_trigger_rows(plan.trigger_inserts, stored),
            )
    except asyncpg.UniqueViolationError as exc:
        # A concurrent apply took the path after the check above.
        if "webhook_path" in str(exc.constraint_name or ""):
            where = _violating_path(str(exc.detail or ""))
            name = None if where is None else plan.webhook_paths.get(where)
            if where is not None and name is not None:
                raise _PathRace(where, name) from None
            raise DefinitionError(
                "a webhook path is already used by another enabled trigger"
            ) from None
        raise


def _violating_path(detail: str) -> tuple[str, str] | None:
    # PostgreSQL's detail: Key (tenant_id, (config ->> 'path'::text))=(acme, wf/hook) already
    # exists. A tenant name has no comma, so the first one ends it.
    match = re.search(r"\)=\(([^,]*), (.*)\) already exists", detail)
    return None if match is None else (match.group(1), match.group(2))


# --- reads ---------------------------------------------------------------------------

_TRIGGER_COLUMNS = (
    "t.id, t.workflow_id, t.tenant_id, w.key AS workflow_key, t.name, t.type, t.enabled,"
    " t.version,"
    " t.config, t.input, t.enabled_at, t.created_at, t.updated_at, w.status AS workflow_status"
)


_NIL_UUID = "00000000-0000-0000-0000-000000000000"


async def list_triggers(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    enabled_only: bool = False,
    trigger_type: str | None = None,
    workflow_key: str | None = None,
    workflow_id: str | None = None,
    tenant: str | None = None,
    after: tuple[str, str, str] | None = None,
    limit: int | None = None,
) -> list[TriggerRecord]:
    """Triggers ordered by workflow key and name; ``workflow_key`` or ``workflow_id`` narrow
    the query to those workflows'. ``after`` (a workflow key, a trigger name and its id:
    names are unique per tenant only) and ``limit`` read one page.

    A page costs O(page) index reads whatever the number of triggers: workflows are walked
    in key order (index ``workflows_key``) and each one's triggers in name order (index
    ``workflow_triggers_name``), so PostgreSQL stops after ``limit`` rows instead of
    sorting every trigger. Only the filters given are written into the statement, so each
    shape gets its own plan."""
    args = Arguments()
    arg = args.add

    outer: list[str] = []
    inner = ["t.workflow_id = w.id"]
    if enabled_only:
        inner.append("t.enabled")
    if trigger_type is not None:
        inner.append(f"t.type = {arg(trigger_type)}")
    if workflow_key is not None:
        outer.append(f"w.key = {arg(workflow_key)}")
    if workflow_id is not None:
        outer.append(f"w.id = {arg(workflow_id)}::uuid")
    if tenant is not None:
        outer.append(f"w.tenant_id = {arg(tenant)}")
    if after is not None:
        after_key, after_name, after_id = after
        # The trigger id names its workflow: (key, workflow id) breaks ties between tenants.
        key, name = arg(after_key), arg(after_name)
        # A trigger deleted since the page was read: its workflow's triggers after the name.
        workflow = (f"COALESCE((SELECT workflow_id FROM workflow_triggers"
                    f" WHERE id = {arg(after_id)}::uuid), '{_NIL_UUID}'::uuid)")
        outer.append(f"(w.key, w.id) >= ({key}, {workflow})")
        inner.append(f"(w.key, w.id, t.name) > ({key}, {workflow}, {name}::text)")
    bound = "" if limit is None else f" LIMIT {arg(limit)}"
    where = f" WHERE {' AND '.join(outer)}" if outer else ""
    rows = await conn.fetch(
        f"SELECT {_TRIGGER_COLUMNS} FROM workflows w CROSS JOIN LATERAL"
        f" (SELECT * FROM workflow_triggers t WHERE {' AND '.join(inner)}"
        f" ORDER BY t.name{bound}) t{where} ORDER BY w.key, w.id, t.name{bound}",
        *args,
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


async def get_trigger(
    conn: asyncpg.Connection | asyncpg.Pool, full_name: str, tenant: str = DEFAULT_TENANT
) -> TriggerRecord:
    """The trigger ``workflow_key/name`` of ``tenant``; NotFound when that tenant has none
    (also when another tenant has one: the message is the same). The message names the
    trigger as the lists print it, so a non-default tenant's says where it looked."""
    workflow_key, name = split_trigger_name(full_name)
    row = await conn.fetchrow(
        f"SELECT {_TRIGGER_COLUMNS} FROM workflow_triggers t JOIN workflows w"
        " ON w.id = t.workflow_id WHERE w.tenant_id = $3 AND w.key = $1 AND t.name = $2",
        workflow_key,
        name,
        tenant,
    )
    if row is None:
        raise NotFound(f"no trigger named {tenant_label(tenant, full_name)!r}")
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
    conn: asyncpg.Connection | asyncpg.Pool, full_name: str, enabled: bool,
    tenant: str = DEFAULT_TENANT,
) -> tuple[TriggerRecord, bool]:
    """Enable or disable a trigger; returns the trigger and whether anything changed."""
    trigger = await get_trigger(conn, full_name, tenant)
    if trigger.enabled == enabled:
        return trigger, False
    path = trigger.config.get("path") if trigger.type == "webhook" else None
    if enabled and isinstance(path, str):
        # The unique index would refuse the update without saying whose the path is; the
        # holder is named so the operator can find it (no file of theirs may define it).
        holder = await _webhook_path_holder(conn, trigger.tenant_id, path, trigger.id)
        if holder is not None:
            raise DefinitionError(
                f"cannot enable {full_name}: its webhook path {path!r} is used by the enabled"
                f" trigger {holder} (disable it, or give {full_name} another path)")
    try:
        await conn.execute(
            "UPDATE workflow_triggers SET enabled = $2, updated_at = now(),"
            " enabled_at = CASE WHEN $2 THEN now() ELSE enabled_at END WHERE id = $1",
            trigger.id,
            enabled,
        )
    except asyncpg.UniqueViolationError:  # enabled between the look-up and the update
        raise DefinitionError(
            f"cannot enable {full_name}: its webhook path is used by another enabled trigger"
        ) from None
    return await get_trigger(conn, full_name, tenant), True


_WORKFLOW_COLUMNS = columns(WorkflowRecord, "w", computed=("latest_version",))
_VERSION_COLUMNS = columns(VersionRecord, "v")


async def list_workflows(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    tenant: str | None = None,
    after: tuple[str, str] | None = None,
    limit: int | None = None,
) -> list[WorkflowRecord]:
    """Workflows ordered by key (then id: a key is unique per tenant only); ``after`` (a key
    and an id) and ``limit`` read one page, by keyset rather than by offset. The scratch
    copies of test runs (status ``test``, migration 0025) are never listed."""
    after_key, after_id = after if after is not None else (None, None)
    rows = await conn.fetch(
        f"SELECT {_WORKFLOW_COLUMNS},"
        " (SELECT max(version) FROM workflow_versions v WHERE v.workflow_id = w.id)"
        " AS latest_version FROM workflows w"
        " WHERE ($1::text IS NULL OR (w.key, w.id) > ($1, $2::uuid))"
        " AND ($4::text IS NULL OR w.tenant_id = $4) AND w.status <> 'test'"
        " ORDER BY w.key, w.id LIMIT $3",
        after_key,
        after_id,
        limit,
        tenant,
    )
    return [row_to(WorkflowRecord, r) for r in rows]


async def get_workflow(
    conn: asyncpg.Connection | asyncpg.Pool, key: str, tenant: str = DEFAULT_TENANT
) -> WorkflowRecord:
    """The workflow ``key`` of ``tenant`` (NotFound: none in that tenant, named as the lists
    print it)."""
    row = await conn.fetchrow(
        f"SELECT {_WORKFLOW_COLUMNS},"
        " (SELECT max(version) FROM workflow_versions v WHERE v.workflow_id = w.id)"
        " AS latest_version FROM workflows w WHERE w.tenant_id = $2 AND w.key = $1",
        key,
        tenant,
    )
    if row is None:
        raise NotFound(f"no workflow with key {tenant_label(tenant, key)!r}")
    record: WorkflowRecord = row_to(WorkflowRecord, row)
    return record


async def tenant_has_workflows(conn: asyncpg.Connection | asyncpg.Pool, tenant: str) -> bool:
    """Whether ``tenant`` has a workflow (test runs' scratch copies do not count): tenants
    have no table of their own, they come to be with their first applied workflow."""
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM workflows WHERE tenant_id = $1 AND status <> 'test')",
        tenant,
    )
    return found


async def list_versions(
    conn: asyncpg.Connection | asyncpg.Pool, workflow_id: str, *, after: int | None = None,
    limit: int | None = None,
) -> list[VersionRecord]:
    """The versions oldest first, above version ``after`` (a previous page's last; None:
    from the first), at most ``limit`` (None: all)."""
    rows = await conn.fetch(
        f"SELECT {_VERSION_COLUMNS} FROM workflow_versions v WHERE workflow_id = $1"
        " AND ($2::int IS NULL OR version > $2) ORDER BY version LIMIT $3",
        workflow_id, after, limit,
    )
    return [row_to(VersionRecord, r) for r in rows]


async def page_versions(
    conn: asyncpg.Connection | asyncpg.Pool, workflow_id: str, *, before: int | None,
    limit: int,
) -> list[VersionSummary]:
    """Up to ``limit`` versions, newest first, below version ``before`` (a previous page's
    last; None: from the newest), without their documents (the unique index on
    (workflow_id, version) reads just the page)."""
    rows = await conn.fetch(
        "SELECT version, is_latest, published_at FROM workflow_versions"
        " WHERE workflow_id = $1 AND ($2::int IS NULL OR version < $2)"
        " ORDER BY version DESC LIMIT $3",
        workflow_id, before, limit,
    )
    return [row_to(VersionSummary, r) for r in rows]


async def count_versions(conn: asyncpg.Connection | asyncpg.Pool, workflow_id: str) -> int:
    value: int = await conn.fetchval(
        "SELECT count(*) FROM workflow_versions WHERE workflow_id = $1", workflow_id)
    return value


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
