"""A catch-up is written in pieces while it is planned: one piece written while the next
fills, never more, and a failed plan stops the piece being written."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from triggerd.model import OverlapPolicy
from triggerd.scheduler import service
from triggerd.scheduler.service import _CatchUpFlow, _Tally
from triggerd.store.slots import SlotRequest

T0 = datetime(2026, 3, 8, 7, 0, tzinfo=UTC)


def slots(trigger: str, count: int) -> list[SlotRequest]:
    return [
        SlotRequest(trigger_id=trigger, scheduled_for=T0 + timedelta(minutes=m),
                    slot_iso=f"m{m}", config_text="{}", overlap=OverlapPolicy.SKIP)
        for m in range(count)
    ]


class Writes:
    """A write that waits for the test to let it end."""

    def __init__(self) -> None:
        self.pieces: list[list[str]] = []  # the trigger ids of each piece, in order
        self.gates: list[asyncio.Event] = []
        self.canceled = 0

    async def __call__(self, requests: Sequence[SlotRequest], tally: _Tally) -> None:
        self.pieces.append([r.trigger_id for r in requests])
        gate = asyncio.Event()
        self.gates.append(gate)
        try:
            await gate.wait()
        except asyncio.CancelledError:
            self.canceled += 1
            raise


async def test_pieces_go_out_as_they_fill_and_one_waits_for_the_other(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(service, "CATCH_UP_PIECE", 5)
    writes = Writes()
    flow = _CatchUpFlow(write=writes)
    flow.add(slots("a", 3))
    await flow.flush_if_full()
    assert writes.pieces == []  # 3 < 5: still planning
    flow.add(slots("b", 4))
    await flow.flush_if_full()
    await asyncio.sleep(0)
    assert writes.pieces == [["a"] * 3 + ["b"] * 4]  # a trigger's slots stay together
    flow.add(slots("c", 6))
    waiting = asyncio.create_task(flow.flush_if_full())
    await asyncio.sleep(0.01)
    # The second piece is full, but the first is still being written: planning waits.
    assert not waiting.done() and len(writes.pieces) == 1
    writes.gates[0].set()
    await waiting
    await asyncio.sleep(0)
    assert writes.pieces[1] == ["c"] * 6
    flow.add(slots("d", 1))
    finishing = asyncio.create_task(flow.finish())
    await asyncio.sleep(0.01)
    assert len(writes.pieces) == 2  # the rest waits for the piece being written
    writes.gates[1].set()
    await asyncio.sleep(0.01)
    assert writes.pieces[2] == ["d"]
    writes.gates[2].set()
    await finishing
    assert flow.slots == 14 and flow.pending == []


async def test_a_failed_plan_stops_the_piece_being_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(service, "CATCH_UP_PIECE", 2)
    writes = Writes()
    flow = _CatchUpFlow(write=writes)
    flow.add(slots("a", 2))
    await flow.flush_if_full()
    await asyncio.sleep(0)
    assert len(writes.pieces) == 1
    await flow.abandon()
    assert writes.canceled == 1
    await flow.abandon()  # nothing left to stop
    assert writes.canceled == 1
