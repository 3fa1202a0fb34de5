"""No two modules of the ``triggerd`` package share a name while living in different
packages: a log line's logger, a traceback or a review comment that says ``listener`` must
name one thing."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import triggerd

PACKAGE_ROOT = Path(triggerd.__file__).resolve().parent

# Names that several packages use on purpose, each for the same role in its own package.
ALLOWED: dict[str, frozenset[str]] = {
    # Each package's long-running component (constructor, start/stop), the one the daemon
    # composes: the executor's and the scheduler's.
    "service": frozenset({"executor/service.py", "scheduler/service.py"}),
    # The store names its modules after the part whose SQL they hold; store/admin.py is the
    # SQL behind api/admin.py.
    "admin": frozenset({"api/admin.py", "store/admin.py"}),
    # store/backup.py is the SQL behind backup.py (triggerd backup / restore).
    "backup": frozenset({"backup.py", "store/backup.py"}),
    # Each HTTP surface's check of an incoming request's credentials: the admin API's
    # bearer token and the webhook signature schemes.
    "auth": frozenset({"api/auth.py", "webhooks/auth.py"}),
    # store/backfills.py is the SQL behind operations/backfills.py (the backfill operation).
    "backfills": frozenset({"operations/backfills.py", "store/backfills.py"}),
    # store/testruns.py is the SQL behind operations/testruns.py (triggerd test).
    "testruns": frozenset({"operations/testruns.py", "store/testruns.py"}),
    # store/executions.py holds the SQL behind operations/executions.py (cancel, retry).
    "executions": frozenset({"operations/executions.py", "store/executions.py"}),
    # The operations layer names its modules after the area they act on (DESIGN: one per
    # area); the store names the ingress's SQL after the same area.
    "webhooks": frozenset({"operations/webhooks.py", "store/webhooks.py"}),
    # operations/workflows.py is the lifecycle (archive, activate, delete) of the workflows
    # whose rows store/workflows.py reads and applies.
    "workflows": frozenset({"operations/workflows.py", "store/workflows.py"}),
    # store/approvals.py is the SQL behind operations/approvals.py (decisions).
    "approvals": frozenset({"operations/approvals.py", "store/approvals.py"}),
    # store/memory.py is the SQL behind nodes/memory.py (the memory node).
    "memory": frozenset({"nodes/memory.py", "store/memory.py"}),
}


def shared_names(
    paths: Iterable[str], allowed: dict[str, frozenset[str]]
) -> dict[str, list[str]]:
    """Module names (file names without ``.py``, ``__init__`` aside) found in more than one
    package, with their paths, except the allowed sets exactly as listed."""
    by_name: dict[str, list[str]] = {}
    for path in paths:
        name = PurePosixPath(path).stem
        if name != "__init__":
            by_name.setdefault(name, []).append(path)
    return {
        name: sorted(found)
        for name, found in sorted(by_name.items())
        if len(found) > 1 and frozenset(found) != allowed.get(name)
    }


def _module_paths() -> list[str]:
    return [
        path.relative_to(PACKAGE_ROOT).as_posix()
        for path in PACKAGE_ROOT.rglob("*.py")
        if "__pycache__" not in path.parts
    ]


def test_no_two_modules_share_a_name() -> None:
    assert shared_names(_module_paths(), ALLOWED) == {}


def test_a_shared_name_is_found_and_allowed_only_as_listed() -> None:
    paths = [
        "listener.py",
        "scheduler/listener.py",
        "a/__init__.py",
        "b/__init__.py",
        "executor/service.py",
        "scheduler/service.py",
    ]
    assert shared_names(paths, ALLOWED) == {
        "listener": ["listener.py", "scheduler/listener.py"]
    }
    # A third module of an allowed name is reported: the list names exact paths.
    assert shared_names([*paths, "webhooks/service.py"], ALLOWED) == {
        "listener": ["listener.py", "scheduler/listener.py"],
        "service": ["executor/service.py", "scheduler/service.py", "webhooks/service.py"],
    }


def test_every_allowed_path_exists() -> None:
    # A stale entry would allow a future module of that name without anyone deciding to.
    present = set(_module_paths())
    for paths in ALLOWED.values():
        assert paths <= present
