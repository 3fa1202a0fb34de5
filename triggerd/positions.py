"""Positions in lists ordered newest first by ``(created_at, id)`` (executions, backfills),
as the opaque cursors the API's ``next_cursor`` and the CLI's ``--cursor`` pass around:
``<microseconds since the epoch>-<id as 32 hex digits>``. A position names a row exactly,
so a page that ends among rows sharing one ``created_at`` loses none of them."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

CURSOR_PATTERN = r"^[0-9]{1,16}-[0-9a-f]{32}$"
_CURSOR = re.compile(CURSOR_PATTERN)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def encode_position(created_at: datetime, row_id: str) -> str:
    micros = (created_at - _EPOCH) // _MICROSECOND
    return f"{micros}-{uuid.UUID(row_id).hex}"


def decode_position(text: str) -> tuple[datetime, str] | None:
    """The position a cursor names; None when ``text`` is no cursor. (16 digits of
    microseconds end in the year 2286: every value the pattern allows is an instant.)"""
    if not _CURSOR.fullmatch(text):
        return None
    micros, _, hex_id = text.partition("-")
    return _EPOCH + int(micros) * _MICROSECOND, str(uuid.UUID(hex_id))
