"""Every notification channel of triggerd, named once, with its payload.

A notification is a hint, never the truth: subscribers reconcile from the tables after any
gap in the LISTEN connection (see :mod:`triggerd.notifications.hub`).

Versions (expand/contract). A channel is a ``name`` and a payload ``version``; its wire
name is what ``LISTEN`` and ``pg_notify`` use. Version 1 keeps the wire names triggerd has
always used (``triggerd_<name>``), so replicas of every release hear each other. An
incompatible change of a payload adds version 2 beside version 1 instead of changing it:

1. release N sends both (``triggerd_v2_<name>`` with the new payload and the v1 one) and
   still listens to v1; the SQL trigger function behind :data:`TRIGGERS` changes in a
   migration, which is the only other place a wire name is written (migrations 0001 and
   0027);
2. release N+1 listens to v2 (every sender now sends it);
3. release N+2 stops sending v1.

At every step each running replica hears every change, so a rolling upgrade loses
nothing.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass

_NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True, kw_only=True)
class Channel:
    name: str
    version: int = 1
    # Who sends it and what its payload is, for the reader of this module.
    payload: str = ""

    def __post_init__(self) -> None:
        # The wire name is written into SQL text (pg_notify in a statement): keep it inert.
        if not _NAME.fullmatch(self.name) or self.version < 1:
            raise ValueError(f"bad channel {self.name!r} v{self.version}")

    @property
    def wire(self) -> str:
        """The PostgreSQL channel name."""
        if self.version == 1:
            return f"triggerd_{self.name}"  # the names of releases before versioning
        return f"triggerd_v{self.version}_{self.name}"


TRIGGERS = Channel(
    name="triggers",
    payload='{"op": "INSERT"|"UPDATE"|"DELETE", "id": trigger id}, one per changed row;'
    " sent by the workflow_triggers table triggers (migration 0027)",
)
EXECUTIONS = Channel(
    name="executions",
    payload="how many executions were created, 'released', 'held' or 'due'; wakes every"
    " executor",
)
# The payload of an EXECUTIONS notification about parked runs made due now (a decision, the
# end of a child a parent waits for): executors look for due runs at once, not at their
# next periodic look (see the executor's claim).
DUE = "due"
# The payload about held runs (debounced, concurrency keys, buffer_one's): executors look
# for them only when something says there may be some.
HELD = "held"
CANCEL = Channel(name="cancel", payload="the id of an execution whose cancel was requested")
FINISHED = Channel(
    name="finished",
    payload="the id of an execution that reached a final status; sent after the commit, for"
    " runs of sync webhooks only (the only ones anybody waits for)",
)

ALL = (TRIGGERS, EXECUTIONS, CANCEL, FINISHED)


def trigger_change_id(payload: str) -> str | None:
    """The trigger id of a :data:`TRIGGERS` payload; ``None`` when it cannot be read."""
    try:
        value = str(json.loads(payload)["id"])
        uuid.UUID(value)
    except (ValueError, KeyError, TypeError):
        return None
    return value
