"""How many PostgreSQL connections a daemon may open, against what the server takes: a
pool larger than the server's free slots fails only under load, with PostgreSQL's "too
many clients", long after the start that could have said so. Plain values and functions."""

from __future__ import annotations

from dataclasses import dataclass

from triggerd.config import Settings

# Each extra [http] processes worker's own pool (its group commit, its executor's writes and
# leases; and its LISTEN connection beside it).
WORKER_POOL_MAX = 6


@dataclass(frozen=True, kw_only=True)
class ServerSlots:
    """The server's connection limits and use, from ``pg_settings`` and
    ``pg_stat_activity``."""

    max_connections: int
    reserved: int  # superuser_reserved_connections + reserved_connections: not ours
    in_use: int  # client connections now, every client's


def connections_needed(settings: Settings) -> int:
    """The most connections one daemon opens to the server: its pool and its LISTEN
    connection, and each extra HTTP process's pool and LISTEN connection."""
    workers = max(0, settings.http.processes - 1)
    return settings.database.pool_max + 1 + workers * (WORKER_POOL_MAX + 1)


def shortfall(needed: int, slots: ServerSlots, *, own: int = 0) -> str | None:
    """Why ``needed`` connections may not fit (None: they fit). ``own``: how many of
    ``slots.in_use`` are this daemon's already."""
    available = slots.max_connections - slots.reserved
    if needed > available:
        return (f"this daemon may open {needed} connections, more than the server takes"
                f" ({slots.max_connections} max_connections less {slots.reserved} reserved)")
    others = max(0, slots.in_use - own)
    if needed + others > available:
        return (f"this daemon may open {needed} connections, and {others} of the server's"
                f" {available} are taken by other clients: {available - others} are left")
    return None
