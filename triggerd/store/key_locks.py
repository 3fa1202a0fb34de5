"""Advisory transaction locks per (trigger, key), for what no unique index orders: the
claims of a concurrency key (triggerd/store/keyed.py) and the deliveries of one id to a
trigger with a filter, filtered or accepted (triggerd/store/webhooks.py, and keyed.py for
keyed triggers). Every replica computes the same lock id. A transaction takes them first,
sorted, before any row lock."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

# Takes the locks of an array of ids, as one statement before the statement they order
# (its snapshot then sees what the previous holder committed).
LOCK_KEYS = "SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k"


def key_lock(kind: str, trigger_id: str, key: str) -> int:
    """The advisory lock id of one (trigger, key) of a ``kind``: 64 bits of a hash,
    signed. The kind keeps a concurrency key and a delivery id of the same text apart."""
    digest = hashlib.blake2b(f"{kind}\0{trigger_id}\0{key}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def delivery_lock(trigger_id: str, delivery_id: str) -> int:
    """The lock of one delivery id of a trigger: taken by whatever stores a request that
    carries it on a trigger with a filter (the group commit, the keyed path), so that a
    filtered delivery and an accepted one of the id are stored one after the other."""
    return key_lock("delivery", trigger_id, delivery_id)


def lock_order(locks: Iterable[int]) -> list[int]:
    """Each lock once, sorted: two transactions of overlapping keys take them in the same
    order (no deadlock between them)."""
    return sorted(set(locks))
