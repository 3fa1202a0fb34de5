"""Typed, frozen records returned by the store."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from triggerd.model import DEFAULT_TENANT, JSON


@dataclass(frozen=True, kw_only=True)
class WorkflowRecord:
    id: str
    tenant_id: str
    key: str
    name: str
    description: str
    status: str
    created_at: datetime
    updated_at: datetime
    latest_version: int | None = None


@dataclass(frozen=True, kw_only=True)
class VersionRecord:
    id: str
    workflow_id: str
    version: int
    graph: dict[str, JSON]
    parameter_schema: dict[str, JSON]
    env_config: dict[str, JSON]
    timeout_ms: int
    is_latest: bool
    published_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, kw_only=True)
class VersionSummary:
    """A version as a list shows it: no graph, schema or env (a list of hundreds of large
    versions read them all)."""

    version: int
    is_latest: bool
    published_at: datetime | None


@dataclass(frozen=True, kw_only=True)
class TriggerRecord:
    id: str
    workflow_id: str
    workflow_key: str
    name: str
    type: str
    enabled: bool
    version: int | None
    config: dict[str, JSON]
    input: dict[str, JSON]
    enabled_at: datetime
    created_at: datetime
    updated_at: datetime
    tenant_id: str = DEFAULT_TENANT
    workflow_status: str = "active"  # an archived workflow's triggers do not fire

    @property
    def full_name(self) -> str:
        return f"{self.workflow_key}/{self.name}"


@dataclass(frozen=True, kw_only=True)
class ExecutionRecord:
    id: str
    workflow_id: str
    workflow_key: str | None
    workflow_version_id: str | None
    version: int | None
    trigger_id: str | None
    trigger_name: str | None
    trigger_type: str
    dedupe_key: str | None
    status: str
    input: JSON
    output: JSON
    context: JSON
    error_code: str | None
    error_message: str | None
    scheduled_for: datetime | None
    created_at: datetime
    start_time: datetime | None
    end_time: datetime | None
    attempt: int
    lease_owner: str | None
    lease_expires_at: datetime | None
    resume_at: datetime | None
    retry_of: str | None
    parent_execution_id: str | None = None  # a child run of a workflow node
    tenant_id: str = DEFAULT_TENANT
    agent_id: str | None = None
    session_id: str | None = None
    conversation_id: str | None = None
    correlation: JSON = None  # the other correlation keys the trigger mapped


@dataclass(frozen=True, kw_only=True)
class NodeExecutionRecord:
    id: str
    execution_id: str
    node_id: str
    node_type: str
    status: str
    attempt: int
    input: JSON
    output: JSON
    branch: str | None
    error_code: str | None
    error_message: str | None
    start_time: datetime | None
    end_time: datetime | None
    execution_time_ms: float | None
    from_node_id: str | None
    edge_condition: str | None


@dataclass(frozen=True, kw_only=True)
class SlotRecord:
    trigger_id: str
    scheduled_for: datetime
    outcome: str
    execution_id: str | None
    decided_at: datetime
    detail: str | None


def row_to(cls: type[Any], row: Any) -> Any:
    """Build a record from an asyncpg Record, turning UUIDs into strings (one pass over
    the row's items)."""
    fields = cls.__dataclass_fields__
    values: dict[str, Any] = {}
    for name, value in row.items():
        if name in fields and name not in values:  # the first of two equal names, as row[name]
            values[name] = str(value) if isinstance(value, uuid.UUID) else value
    return cls(**values)


def columns(cls: type[Any], alias: str, *, computed: tuple[str, ...] = ()) -> str:
    """``alias.a, alias.b, ...`` for the record's fields that are columns of its table.

    Never ``*``: a column a newer triggerd adds (expand/contract, rolling upgrades) must
    not change what an older one reads, nor the result type of a cached statement.
    """
    names = [n for n in cls.__dataclass_fields__ if n not in computed]
    return ", ".join(f"{alias}.{n}" for n in names)


class Arguments(list[Any]):
    """A statement's arguments, collected as its conditions are written: :meth:`add` keeps
    a value and returns the placeholder (``$n``) that names it. Lists build one statement
    per combination of filters, each with only the arguments it uses."""

    def add(self, value: Any) -> str:
        self.append(value)
        return f"${len(self)}"
