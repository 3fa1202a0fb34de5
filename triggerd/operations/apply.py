"""``apply`` of definition files: the one implementation behind ``triggerd apply`` and the
daemon's ``[daemon] definitions``.

Files whose fingerprint (bytes, order, options, code: :mod:`triggerd.definitions.fingerprint`)
an earlier apply recorded, against rows still as that apply left them, are answered without
being parsed again: a 100,000-trigger file took seconds to read and check for nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import asyncpg

from triggerd.config import Settings
from triggerd.definitions.api import load_files_by_file
from triggerd.definitions.checks import MAX_WORKFLOW_DEPTH, known_node_types
from triggerd.definitions.fingerprint import code_fingerprint, files_fingerprint
from triggerd.definitions.loading import expand_paths
from triggerd.errors import DefinitionError
from triggerd.model import DEFAULT_TENANT, WorkflowSpec
from triggerd.operations.actor import SCHEDULER, Actor
from triggerd.secrets import policies_fingerprint, secret_policy_problems
from triggerd.store.audit import AuditEntry
from triggerd.store.workflows import ApplyReport, apply_workflows, unchanged_apply

# How many applied file sets are remembered (a deployment applies one or a few).
KEPT_FINGERPRINTS = 16


def _target(paths: Sequence[str | Path]) -> str:
    """The audit target: the files' names (the full list is in the detail)."""
    names = ", ".join(Path(p).name for p in paths)
    return names if len(names) <= 200 else names[:197] + "..."


def _tenant_audits(
    audit: AuditEntry, by_file: Sequence[tuple[str, Sequence[WorkflowSpec]]]
) -> dict[str, AuditEntry]:
    """Each tenant's audit row names only the files with its workflows: a file list is
    another tenant's business (acme's audit showed globex's file names)."""
    files: dict[str, list[str]] = {}
    for path, specs in by_file:
        for tenant in dict.fromkeys(spec.tenant_id for spec in specs):
            files.setdefault(tenant, []).append(path)
    return {
        tenant: dataclasses.replace(audit, target=_target(names),
                                    detail={**audit.detail, "files": names})
        for tenant, names in files.items()
    }


def _read_all(paths: Sequence[str | Path]) -> list[bytes] | None:
    """Every file's bytes; ``None`` when one cannot be read (load_files then says why, in
    its words)."""
    contents: list[bytes] = []
    for path in paths:
        try:
            contents.append(Path(path).read_bytes())
        except (OSError, ValueError):  # ValueError: a NUL in the name
            return None
    return contents


def _fingerprint(contents: list[bytes], prune: bool, tenant: str | None,
                 policies: str) -> str:
    return files_fingerprint(
        contents, prune=prune, code=code_fingerprint(), node_types=known_node_types(),
        tenant=tenant, policies=policies,
    )


@contextlib.asynccontextmanager
async def _connection(
    db: asyncpg.Connection | asyncpg.Pool,
) -> AsyncIterator[asyncpg.Connection]:
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            yield conn
    else:
        yield db


def _refuse_unusable_secrets(
    by_file: Sequence[tuple[str, Sequence[WorkflowSpec]]], settings: Settings | None
) -> None:
    """Each file's secrets its tenant may not read, named by the file and the path within
    it, as ``check`` names them."""
    if settings is None:
        return
    problems = [problem for path, specs in by_file
                for problem in secret_policy_problems(path, specs, settings, os.environ)]
    if problems:
        raise DefinitionError(f"{len(problems)} problem(s) found", problems)


async def apply_files(
    db: asyncpg.Connection | asyncpg.Pool,
    paths: Sequence[str | Path],
    *,
    prune: bool = False,
    plan: bool = False,
    actor: Actor | None = None,
    tenant: str | None = None,
    settings: Settings | None = None,
) -> ApplyReport:
    """Apply the definition files (see :func:`~triggerd.store.workflows.apply_workflows`);
    raises :class:`~triggerd.errors.DefinitionError` listing every problem.

    Reading and checking a large file takes seconds: that runs in a thread, so a daemon
    applying its definitions keeps serving meanwhile (given a pool, it holds no connection
    while it reads). An apply that changes something is audited as ``actor``'s (the
    daemon's own apply of ``[daemon] definitions`` is the scheduler's). ``tenant``: the
    tenant of the files that name none (``apply --tenant``; None: the default one).
    ``settings``: refuse secrets a workflow's tenant may not read under them
    (:func:`~triggerd.secrets.secret_policy_problems`)."""
    paths = await asyncio.to_thread(expand_paths, paths)  # a directory: the files in it
    depth = (MAX_WORKFLOW_DEPTH if settings is None
             else settings.executor.max_workflow_depth)
    audit = AuditEntry(actor=(actor or SCHEDULER).name, action="apply",
                       target_kind="definitions", target=_target(paths),
                       detail={"files": [str(p) for p in paths], "prune": prune},
                       # Each tenant the files change gets this entry with its own id.
                       tenant_id=tenant or DEFAULT_TENANT)
    contents = await asyncio.to_thread(_read_all, paths)
    if contents is None:
        by_file = await asyncio.to_thread(load_files_by_file, paths, tenant=tenant,
                                          max_workflow_depth=depth)
        _refuse_unusable_secrets(by_file, settings)
        specs = [spec for _, specs_of_file in by_file for spec in specs_of_file]
        async with _connection(db) as conn:
            return await apply_workflows(conn, specs, prune=prune, plan=plan, audit=audit)
    # What the check depends on besides the files: the secret policies and the depth.
    policies = ("" if settings is None else policies_fingerprint(settings, os.environ)) + (
        f";depth={depth}")
    fingerprint = await asyncio.to_thread(_fingerprint, contents, prune, tenant, policies)
    async with _connection(db) as conn:
        known = await unchanged_apply(conn, fingerprint, plan=plan)
    if known is not None:
        return known
    # The bytes the fingerprint was taken of, not the files again: they may change meanwhile.
    by_file = await asyncio.to_thread(load_files_by_file, paths, contents=contents,
                                      tenant=tenant, max_workflow_depth=depth)
    specs = [spec for _, specs_of_file in by_file for spec in specs_of_file]
    _refuse_unusable_secrets(by_file, settings)
    async with _connection(db) as conn:
        return await apply_workflows(
            conn, specs, prune=prune, plan=plan, fingerprint=fingerprint, keep=KEPT_FINGERPRINTS,
            audit=audit, tenant_audits=_tenant_audits(audit, by_file),
        )
