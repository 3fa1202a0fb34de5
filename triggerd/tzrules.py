"""Fingerprints of time zone rules: the SHA-256 of the compiled tz database file (TZif)
that :mod:`zoneinfo` reads for a zone, found the way it finds it (``zoneinfo.TZPATH``
first, then the ``tzdata`` package). A tzdata update that changes a zone's rules changes
its file; one that leaves them alone leaves it byte for byte."""

from __future__ import annotations

import hashlib
import zoneinfo
from importlib import resources
from pathlib import Path


def zone_fingerprint(zone: str) -> str | None:
    """``sha256:<hex>`` of the zone's TZif file, or None when there is no such zone."""
    if not zone or zone.startswith(("/", ".")) or ".." in zone.split("/"):
        return None
    for directory in zoneinfo.TZPATH:
        candidate = Path(directory) / zone
        if candidate.is_file():
            return _digest(candidate.read_bytes())
    try:
        data = resources.files("tzdata.zoneinfo").joinpath(*zone.split("/")).read_bytes()
    except (ModuleNotFoundError, FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    return _digest(data)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


__all__ = ["zone_fingerprint"]
