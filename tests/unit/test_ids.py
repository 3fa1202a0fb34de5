"""Execution ids on the command line: full UUIDs and prefixes of 8 or more hex digits."""

from __future__ import annotations

import pytest

from triggerd.errors import UsageError
from triggerd.ids import WEBHOOK_REQUEST, IdQuery, canonical_uuid, parse_execution_id, parse_id

FULL = "12345678-9abc-4def-8000-00000000000f"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (FULL, IdQuery(prefix=FULL, full=FULL, low=FULL, high=FULL)),
        (FULL.upper(), IdQuery(prefix=FULL, full=FULL, low=FULL, high=FULL)),
        (FULL.replace("-", ""), IdQuery(prefix=FULL.replace("-", ""), full=FULL, low=FULL,
                                        high=FULL)),
        ("12345678", IdQuery(prefix="12345678", full=None,
                             low="12345678-0000-0000-0000-000000000000",
                             high="12345678-ffff-ffff-ffff-ffffffffffff")),
        ("12345678-", IdQuery(prefix="12345678-", full=None,
                              low="12345678-0000-0000-0000-000000000000",
                              high="12345678-ffff-ffff-ffff-ffffffffffff")),
        ("12345678-9A", IdQuery(prefix="12345678-9a", full=None,
                                low="12345678-9a00-0000-0000-000000000000",
                                high="12345678-9aff-ffff-ffff-ffffffffffff")),
        ("123456789abc4d", IdQuery(prefix="123456789abc4d", full=None,
                                   low="12345678-9abc-4d00-0000-000000000000",
                                   high="12345678-9abc-4dff-ffff-ffffffffffff")),
        ("ffffffff", IdQuery(prefix="ffffffff", full=None,
                             low="ffffffff-0000-0000-0000-000000000000",
                             high="ffffffff-ffff-ffff-ffff-ffffffffffff")),
    ],
)
def test_ids_and_prefixes(text: str, expected: IdQuery) -> None:
    assert parse_execution_id(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "1234567", "1234-5678", "12345678--", "g2345678", "not-a-uuid", " 12345678",
     "{" + FULL + "}", "urn:uuid:" + FULL, FULL + "0", FULL.replace("-", "") + "0",
     "12345678-9abc4def", "\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18"],  # full-width
)
def test_malformed_ids_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_execution_id(text)
    assert str(info.value) == (
        f"{text!r} is not an execution id (a UUID, or 8 or more of its leading hex digits)"
    )
    assert info.value.exit_code == 2


def test_webhook_request_ids_read_alike_and_are_named_in_the_message() -> None:
    assert parse_id("12345678-9A", WEBHOOK_REQUEST) == parse_execution_id("12345678-9A")
    for text in ("1234567", "g2345678", "not-a-uuid"):
        with pytest.raises(UsageError) as info:
            parse_id(text, WEBHOOK_REQUEST)
        assert str(info.value) == (f"{text!r} is not a webhook request id (a UUID, or 8 or"
                                   " more of its leading hex digits)")
        assert info.value.exit_code == 2


def test_whole_ids_in_the_two_spellings_the_project_shows() -> None:
    canonical = "3f2a9c1e-0b7d-4c1e-9a2b-1234567890ab"
    for text in (canonical, canonical.upper(), canonical.replace("-", "")):
        assert canonical_uuid(text) == canonical, text
    for text in ("{" + canonical + "}", "urn:uuid:" + canonical, canonical[:-1],
                 canonical.replace("-", "", 1), canonical + "0", "", "nope",
                 canonical.replace("a", "g")):
        assert canonical_uuid(text) is None, text
