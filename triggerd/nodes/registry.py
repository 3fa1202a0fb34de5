"""The node types available to workflows: the built-in ones plus third-party types from the
``triggerd.nodes`` entry-point group, and :func:`run_node`, the one way to run a node.

:data:`BUILTIN_TYPES` is the one list of built-in types; what else needs them (the node
types a definition may use, the executor's buffered types) is derived from it and from the
metadata each type declares (:class:`~triggerd.nodes.base.DescribedNodeType`).

A third-party distribution declares, in its ``pyproject.toml``::

    [project.entry-points."triggerd.nodes"]
    sftp = "acme_nodes.sftp:SftpNode"   # a NodeType class (instantiated without arguments)
                                        # or a NodeType object; its ``name`` must be "sftp"

An entry point that cannot be loaded, is not a node type or reuses a taken name is logged
and left out (the built-in types keep working); a workflow that uses it then fails with
``UNKNOWN_NODE_TYPE`` and the reason.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import inspect
import logging
from collections.abc import Iterable, Mapping
from typing import Final

from triggerd.durations import format_duration
from triggerd.model import JSON
from triggerd.nodes.approval import ApprovalNode
from triggerd.nodes.base import (
    NODE_ERROR,
    TIMEOUT,
    UNKNOWN_NODE_TYPE,
    DescribedNodeType,
    NodeContext,
    NodeFailure,
    NodeResult,
    NodeType,
    described,
)
from triggerd.nodes.fail import FailNode
from triggerd.nodes.http import HttpNode
from triggerd.nodes.if_ import IfNode
from triggerd.nodes.log import LogNode
from triggerd.nodes.memory import MemoryNode
from triggerd.nodes.noop import NoopNode
from triggerd.nodes.respond import RespondNode
from triggerd.nodes.set import SetNode
from triggerd.nodes.subworkflow import WorkflowNode
from triggerd.nodes.switch import SwitchNode
from triggerd.nodes.wait import WaitNode

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP: Final = "triggerd.nodes"


# The built-in node types (stateless: one instance serves every run). Typed as
# DescribedNodeType so that a type without its metadata fails type checking.
BUILTIN_TYPES: Final[tuple[DescribedNodeType, ...]] = (
    HttpNode(),
    SetNode(),
    IfNode(),
    SwitchNode(),
    WaitNode(),
    LogNode(),
    FailNode(),
    RespondNode(),
    NoopNode(),
    ApprovalNode(),
    MemoryNode(),
    WorkflowNode(),
)


def builtin_node_types() -> dict[str, DescribedNodeType]:
    """The built-in types by name, each checked to declare its metadata (TypeError if not)."""
    return dict(_checked_builtins())


@functools.cache
def _checked_builtins() -> dict[str, DescribedNodeType]:
    # Their params schemas are constants, checked against the metaschema by the unit tests
    # (tests/unit/test_node_schemas.py) rather than at every start.
    return {
        node_type.name: described(node_type, check_schema=False) for node_type in BUILTIN_TYPES
    }


def buffered_node_types() -> frozenset[str]:
    """The built-in types without side effects: the executor buffers their rows instead of
    writing a RUNNING row before they run. Third-party types always get that row."""
    return frozenset(
        name for name, node_type in builtin_node_types().items() if not node_type.side_effects
    )


def stubbed_when_dry(node_type: object, params: JSON) -> bool:
    """Whether a dry test run records ``{"would_call": ...}`` instead of running a node of
    this type with these rendered params: types that act outside the run declare
    ``external_effects = True`` (a third-party type that does not say is taken to), unless
    their ``dry_safe(params)`` says this call changes nothing (a memory read)."""
    if not getattr(node_type, "external_effects", True):
        return False
    dry_safe = getattr(node_type, "dry_safe", None)
    return not (callable(dry_safe) and dry_safe(params) is True)


class NodeRegistry:
    """Node types by name, and why third-party ones that failed to load are missing."""

    def __init__(self, types: Mapping[str, NodeType], problems: Mapping[str, str] | None = None):
        self._types = dict(types)
        self._problems = dict(problems or {})

    def get(self, name: str) -> NodeType:
        node_type = self._types.get(name)
        if node_type is not None:
            return node_type
        reason = self._problems.get(name)
        detail = f": {reason}" if reason else f" (known: {', '.join(sorted(self._types))})"
        raise NodeFailure(UNKNOWN_NODE_TYPE, f"unknown node type {name!r}{detail}", retryable=False)

    def names(self) -> frozenset[str]:
        return frozenset(self._types)

    def problems(self) -> dict[str, str]:
        """Third-party entry points that were left out, with the reason."""
        return dict(self._problems)


def load_registry(
    entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
) -> NodeRegistry:
    """The built-in types plus those of ``entry_points`` (default: the installed ones)."""
    if entry_points is None:
        entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    types: dict[str, NodeType] = dict(builtin_node_types())
    problems: dict[str, str] = {}
    for entry_point in entry_points:
        name = entry_point.name
        try:
            if name in types:
                raise ValueError(f"the name {name!r} is already taken")
            types[name] = _load(entry_point)
        except Exception as exc:
            problems.setdefault(name, f"entry point {entry_point.value!r} left out: {exc}")
            logger.error(
                "node type %r from entry point %r left out: %s",
                name,
                entry_point.value,
                exc,
                extra={"event": "node_type_load_failed", "node_type": name},
            )
    return NodeRegistry(types, problems)


def _load(entry_point: importlib.metadata.EntryPoint) -> NodeType:
    loaded = entry_point.load()
    node_type = loaded() if isinstance(loaded, type) else loaded
    run = getattr(node_type, "run", None)
    if not isinstance(node_type, NodeType) or not inspect.iscoroutinefunction(run):
        raise TypeError(f"{loaded!r} is not a node type (it needs a 'name' and an 'async def run')")
    if node_type.name != entry_point.name:
        raise ValueError(
            f"it names itself {node_type.name!r}; the entry point's name must be the same"
        )
    return node_type


@functools.cache
def default_registry() -> NodeRegistry:
    """The registry of the installed distributions, loaded once (see :func:`reload_node_types`)."""
    return load_registry()


def reload_node_types() -> None:
    """Forget the loaded registry; the next lookup reads the entry points again."""
    default_registry.cache_clear()


def get_node_type(name: str) -> NodeType:
    """The node type called ``name``; raises NodeFailure ``UNKNOWN_NODE_TYPE``."""
    return default_registry().get(name)


def node_type_names() -> frozenset[str]:
    return default_registry().names()


async def run_node(
    params: JSON, ctx: NodeContext, *, registry: NodeRegistry | None = None
) -> NodeResult:
    """Run ``ctx.node`` once with its rendered ``params``.

    Applies the node's ``timeout`` (failure ``TIMEOUT``) and turns anything a node type
    raises other than :class:`NodeFailure` into failure ``NODE_ERROR``, so callers handle
    exactly one kind of failure. Cancellation propagates.
    """
    node = ctx.node
    node_type = (registry or default_registry()).get(node.type)
    try:
        if node.timeout is None:
            result = await node_type.run(params, ctx)
        else:
            async with asyncio.timeout(node.timeout.total_seconds()):
                result = await node_type.run(params, ctx)
    except NodeFailure:
        raise
    except TimeoutError as exc:
        limit = f" after {format_duration(node.timeout)}" if node.timeout is not None else ""
        raise NodeFailure(TIMEOUT, f"node {node.id!r} timed out{limit}") from exc
    except Exception as exc:
        logger.exception(
            "node type %r raised an unexpected error",
            node.type,
            extra={"event": "node_crashed", "execution_id": ctx.execution_id, "node_id": node.id},
        )
        raise NodeFailure(
            NODE_ERROR, f"{node.type} node {node.id!r} crashed: {type(exc).__name__}: {exc}"
        ) from exc
    returned: object = result  # third-party types may not keep their promise
    if not isinstance(returned, NodeResult):
        raise NodeFailure(
            NODE_ERROR,
            f"{node.type} node {node.id!r} returned {type(returned).__name__}, not a NodeResult",
        )
    return returned
