"""Fingerprints of time zone rules: the SHA-256 of the compiled tz database file (TZif)
that :mod:`zoneinfo` reads for a zone, found the way it finds it (``zoneinfo.TZPATH``
first, then the ``tzdata`` package). A tzdata update that changes a zone's rules changes
its file; one that leaves them alone leaves it byte for byte."""

from __future__ import annotations

import hashlib
import zoneinfo
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path


def zone_file(zone: str) -> Path | Traversable | None:
    """The compiled file ``zoneinfo`` reads for ``zone``: the first under
    ``zoneinfo.TZPATH``, else the ``tzdata`` package's; None when neither has it."""
    if not zone or zone.startswith(("/", ".")) or ".." in zone.split("/"):
        return None
    for directory in zoneinfo.TZPATH:
        candidate = Path(directory) / zone
        if candidate.is_file():
            return candidate
    try:
        packaged = resources.files("tzdata.zoneinfo").joinpath(*zone.split("/"))
    except ModuleNotFoundError:
        return None
    return packaged if packaged.is_file() else None


def zone_fingerprint(zone: str) -> str | None:
    """``sha256:<hex>`` of the zone's TZif file, or None when there is no such zone."""
    found = zone_file(zone)
    return None if found is None else _digest(found.read_bytes())


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


__all__ = ["zone_file", "zone_fingerprint"]
