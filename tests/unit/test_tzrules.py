"""Zone rule fingerprints: the file zoneinfo reads, hashed; no file for names that are not
zones, including names that would climb out of the tz directory."""

from __future__ import annotations

import hashlib
import zoneinfo

import pytest

from triggerd.tzrules import zone_file, zone_fingerprint


def test_a_zone_is_fingerprinted_by_the_file_zoneinfo_reads() -> None:
    found = zone_file("Europe/Madrid")
    assert found is not None
    zoneinfo.ZoneInfo("Europe/Madrid")  # the same zone zoneinfo knows
    assert zone_fingerprint("Europe/Madrid") == (
        "sha256:" + hashlib.sha256(found.read_bytes()).hexdigest())
    assert zone_fingerprint("Europe/Madrid") != zone_fingerprint("Asia/Tokyo")


@pytest.mark.parametrize("name", ["", "Nope/Zone", "../etc/passwd", "/etc/passwd",
                                  "Europe/../../etc/passwd", ".hidden", "Europe"])
def test_names_that_are_not_zones_have_no_fingerprint(name: str) -> None:
    assert zone_file(name) is None
    assert zone_fingerprint(name) is None
