"""Entry points: load and check definition files or documents, read stored documents back."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from triggerd.definitions.build import (
    build_graph,
    build_trigger_config,
    build_workflow,
    document_tenant,
)
from triggerd.definitions.checks import (
    MAX_WORKFLOW_DEPTH,
    check_across,
    check_document,
    check_trigger_config,
    known_node_types,
)
from triggerd.definitions.loading import expand_paths, paused_gc, read_file
from triggerd.definitions.problems import Report, definition_error, described
from triggerd.definitions.schedule_checks import resolve_calendars, utc_now
from triggerd.definitions.schema import (
    validate_definition,
    validate_file,
    validate_trigger_config,
)
from triggerd.errors import Problem
from triggerd.expressions import constant_budget, constants_not_evaluated
from triggerd.model import Graph, TriggerConfig, TriggerType, WorkflowSpec

# File labels of problems found in documents read back from the database.
GRAPH_LABEL = "workflow_versions.graph"
TRIGGER_CONFIG_LABEL = "workflow_triggers.config"


def check_files(
    paths: Sequence[str | Path], *, node_types: Collection[str] | None = None,
    max_workflow_depth: int = MAX_WORKFLOW_DEPTH,
) -> list[Problem]:
    """Every problem in the given YAML (.yaml/.yml) or JSON (.json) files (a directory: the
    files in it); ``[]`` when they are valid together (workflow keys and webhook paths are
    unique across all of them)."""
    problems, _ = _analyze(_read(paths), node_types, depth=max_workflow_depth)
    return problems


def load_files(
    paths: Sequence[str | Path],
    *,
    node_types: Collection[str] | None = None,
    contents: Sequence[bytes] | None = None,
    tenant: str | None = None,
    max_workflow_depth: int = MAX_WORKFLOW_DEPTH,
) -> list[WorkflowSpec]:
    """The workflows of the given files, in file order; raises
    :class:`~triggerd.errors.DefinitionError` listing every problem across all files.
    ``contents``: the files' bytes, already read (what a fingerprint was taken of)."""
    return [spec for _, specs in load_files_by_file(
        paths, node_types=node_types, contents=contents, tenant=tenant,
        max_workflow_depth=max_workflow_depth) for spec in specs]


def load_files_by_file(
    paths: Sequence[str | Path],
    *,
    node_types: Collection[str] | None = None,
    contents: Sequence[bytes] | None = None,
    tenant: str | None = None,
    max_workflow_depth: int = MAX_WORKFLOW_DEPTH,
) -> list[tuple[str, list[WorkflowSpec]]]:
    """Like :func:`load_files` (the files checked together, so one may use another's
    calendars or name its error workflow), with each file's workflows apart."""
    with paused_gc():  # see paused_gc: a large file is millions of live objects
        entries = _read(paths, contents)
        problems, specs = _analyze(entries, node_types, tenant, depth=max_workflow_depth)
    if problems:
        raise definition_error(problems)
    grouped: list[tuple[str, list[WorkflowSpec]]] = []
    start = 0
    for report, _, document in entries:
        count = len(document["workflows"])
        grouped.append((report.file, specs[start:start + count]))
        start += count
    return grouped


def check_documents(
    docs: Sequence[tuple[str, Any]], *, node_types: Collection[str] | None = None,
    max_workflow_depth: int = MAX_WORKFLOW_DEPTH,
) -> list[Problem]:
    """Like :func:`check_files` for already parsed documents, each with its file label."""
    problems, _ = _analyze([(Report(file=label), True, doc) for label, doc in docs], node_types,
                           depth=max_workflow_depth)
    return problems


def load_documents(
    docs: Sequence[tuple[str, Any]], *, node_types: Collection[str] | None = None,
    tenant: str | None = None, max_workflow_depth: int = MAX_WORKFLOW_DEPTH,
) -> list[WorkflowSpec]:
    """Like :func:`load_files` for already parsed documents (e.g. the admin API's JSON
    body), each with the label its problems are reported under."""
    problems, specs = _analyze([(Report(file=label), True, doc) for label, doc in docs],
                               node_types, tenant, depth=max_workflow_depth)
    if problems:
        raise definition_error(problems)
    return specs


def _read(
    paths: Sequence[str | Path], contents: Sequence[bytes] | None = None
) -> list[tuple[Report, bool, Any]]:
    entries: list[tuple[Report, bool, Any]] = []
    if contents is None:  # else the caller read these very files (after expanding them)
        paths = expand_paths(paths)
    for number, path in enumerate(paths):
        report = Report(file=str(path))
        parsed, document = read_file(path, report, None if contents is None else contents[number])
        entries.append((report, parsed, document))
    return entries


def _analyze(
    entries: list[tuple[Report, bool, Any]], node_types: Collection[str] | None,
    tenant: str | None = None, *, depth: int = MAX_WORKFLOW_DEPTH,
) -> tuple[list[Problem], list[WorkflowSpec]]:
    with constant_budget():  # one budget for the constant expressions of the whole check
        return _analyzed(entries, node_types, tenant, depth=depth)


def _analyzed(
    entries: list[tuple[Report, bool, Any]], node_types: Collection[str] | None,
    tenant: str | None, *, depth: int,
) -> tuple[list[Problem], list[WorkflowSpec]]:
    types = known_node_types() if node_types is None else frozenset(node_types)
    parsed = [(report, document) for report, ok, document in entries if ok]
    if tenant is not None:
        # The tenant of documents that name none (a document's own `tenant:` wins).
        for _, document in parsed:
            if isinstance(document, dict) and "tenant" not in document:
                document["tenant"] = tenant
    for report, document in parsed:
        validate_file(document, report)
        check_document(document, report, node_types=types)
    check_across(parsed, max_workflow_depth=depth)
    resolve_calendars(parsed, utc_now())
    problems: list[Problem] = []
    for report, ok, document in entries:
        problems.extend(report.problems(document if ok else None))
    if problems:
        return problems, []
    built: dict[tuple[str, str], TriggerConfig] = {}  # equal configs are built once
    return [], [
        build_workflow(wf, built, tenant=document_tenant(document),
                       origin=(report.file, f"$.workflows[{index}]"))
        for report, document in parsed for index, wf in enumerate(document["workflows"])
    ]


def parse_trigger_config(type: TriggerType | str, config: Mapping[str, Any]) -> TriggerConfig:
    """A trigger config from its stored ``workflow_triggers.config`` document (the file's
    keys minus name/type/enabled/input/version); validated like the file, raising
    :class:`~triggerd.errors.DefinitionError` when it is not valid."""
    report = Report(file=TRIGGER_CONFIG_LABEL)
    try:
        trigger_type = TriggerType(type)
    except ValueError:
        report.add(
            (), f"unknown trigger type {type!r} (expected cron, interval, webhook or manual)"
        )
        raise definition_error(report.problems()) from None
    raw: object = config  # a stored document may be anything; say so instead of crashing
    if not isinstance(raw, Mapping):
        report.add((), f"expected a mapping, got {described(raw)}")
        raise definition_error(report.problems())
    doc = dict(raw)
    validate_trigger_config(trigger_type, doc, (), report)
    with constants_not_evaluated():  # checked at its apply (see there)
        check_trigger_config(trigger_type.value, doc, (), report)
    if report.items:
        raise definition_error(report.problems(doc))
    return build_trigger_config(trigger_type, doc)


def graph_from_json(doc: Mapping[str, Any]) -> Graph:
    """A graph from its stored ``workflow_versions.graph`` document (as written by
    :func:`graph_to_json`, or in the file's form).

    Checked against the schema only: the graph's shape was checked when the version was
    published, and a version must stay readable even if a node type is uninstalled later.
    """
    report = Report(file=GRAPH_LABEL)
    value = dict(doc) if isinstance(doc, Mapping) else doc
    validate_definition("graph", value, (), report)
    if report.items:
        raise definition_error(report.problems(value))
    return build_graph(value)
