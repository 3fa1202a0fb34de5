"""How many PostgreSQL connections a daemon may open, against what the server takes: a
pool larger than the server's free slots fails only under load, with PostgreSQL's "too
many clients", long after the start that could have said so. Plain values and functions."""

from __future__ import annotations

from dataclasses import dataclass

from triggerd.config import Settings

# The least pool an extra [http] processes worker is given when the server's slots are
# short: one connection for its group commit, one for its executor's claims and writes.
WORKER_POOL_MIN = 2


@dataclass(frozen=True, kw_only=True)
class ServerSlots:
    """The server's connection limits and use, from ``pg_settings`` and
    ``pg_stat_activity``."""

    max_connections: int
    reserved: int  # superuser_reserved_connections + reserved_connections: not ours
    in_use: int  # client connections now, every client's

    @property
    def available(self) -> int:
        """The slots a daemon's connections may take."""
        return self.max_connections - self.reserved


def worker_pool_max(settings: Settings, available: int | None = None) -> int:
    """Each extra [http] processes worker's pool: ``[database] pool_max``, as the main
    process's: each runs an executor of its own (``[executor] concurrency`` is per
    process) beside its webhooks' group commit, the main process's load but the
    scheduler's. ``available``: the server's max_connections less its reserved slots,
    when known; then no more than an even share of what the main process's pool and
    LISTEN connection leave, a LISTEN connection each included (a fixed 6 had outgrown
    neither a large pool_max nor a small server), but at least WORKER_POOL_MIN."""
    size = settings.database.pool_max
    workers = max(0, settings.http.processes - 1)
    if workers and available is not None:
        share = (available - settings.database.pool_max - 1) // workers - 1
        size = min(size, max(WORKER_POOL_MIN, share))
    return size


def connections_needed(settings: Settings, available: int | None = None) -> int:
    """The most connections one daemon opens to the server: its pool and its LISTEN
    connection, and each extra HTTP process's pool (:func:`worker_pool_max` of the same
    ``available``) and LISTEN connection."""
    workers = max(0, settings.http.processes - 1)
    return (settings.database.pool_max + 1
            + workers * (worker_pool_max(settings, available) + 1))


def shortfall(needed: int, slots: ServerSlots, *, own: int = 0) -> str | None:
    """Why ``needed`` connections may not fit (None: they fit). ``own``: how many of
    ``slots.in_use`` are this daemon's already."""
    available = slots.available
    if needed > available:
        return (f"this daemon may open {needed} connections, more than the server takes"
                f" ({slots.max_connections} max_connections less {slots.reserved} reserved)")
    others = max(0, slots.in_use - own)
    if needed + others > available:
        return (f"this daemon may open {needed} connections, and {others} of the server's"
                f" {available} are taken by other clients: {available - others} are left")
    return None
