"""Planning one cron instant's writes from the scheduler's table (done ahead of the instant
when its timer wakes, and redone when the table changed meanwhile), and packing a
catch-up's slots into batches of whole triggers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from triggerd.cron import parse_cron, utc_iso
from triggerd.definitions import parse_trigger_config
from triggerd.model import CronConfig, OverlapPolicy, TriggerType
from triggerd.scheduler.cache import CronEntry, TriggerTable, catch_up_batches, plan_instant
from triggerd.schedules import CronPlan
from triggerd.store.slots import SlotRequest

AT = datetime(2026, 3, 8, 7, 0, tzinfo=UTC)
BEFORE = AT - timedelta(hours=1)


def add(table: TriggerTable, trigger_id: str, doc: dict[str, object],
        *, floor: datetime = BEFORE, next_at: datetime = AT) -> CronEntry:
    config = parse_trigger_config(TriggerType.CRON, doc)
    assert isinstance(config, CronConfig) and isinstance(config.cron, str)
    entry = CronEntry(
        id=trigger_id,
        full_name=f"w/{trigger_id}",
        config=config,
        config_text=str(sorted(doc.items())),
        key=(config.cron, config.timezone),
        enabled_at=BEFORE,
        floor=floor,
    )
    group, _ = table.add(entry, CronPlan(parse_cron(config.cron, config.timezone)))
    group.next_at = next_at
    return entry


def test_slots_are_split_into_batches_of_the_chunk_size() -> None:
    table = TriggerTable()
    for n in range(7):
        add(table, f"t{n}", {"cron": "0 7 * * *"})
    plan = plan_instant(table, AT, {("0 7 * * *", "UTC")}, 3)
    assert [b.trigger_ids for b in plan.batches] == [
        ["t0", "t1", "t2"], ["t3", "t4", "t5"], ["t6"],
    ]
    assert [b.slot_times for b in plan.batches] == [[AT]] * 3
    assert [g.key for g in plan.due] == [("0 7 * * *", "UTC")]
    assert plan.jittered == ()
    assert plan.changes == table.changes == 7


def test_jittered_caught_up_and_rescheduled_members_are_left_out() -> None:
    table = TriggerTable()
    add(table, "plain", {"cron": "0 7 * * *"})
    jittered = add(table, "jitter", {"cron": "0 7 * * *", "jitter": "30s"})
    add(table, "caught-up", {"cron": "0 7 * * *"}, floor=AT)
    add(table, "elsewhere", {"cron": "0 * * * *"}, next_at=AT + timedelta(hours=1))
    plan = plan_instant(table, AT, {("0 7 * * *", "UTC"), ("0 * * * *", "UTC")}, 100)
    assert [b.trigger_ids for b in plan.batches] == [["plain"]]
    assert plan.jittered == (jittered,)
    assert [g.key for g in plan.due] == [("0 7 * * *", "UTC")]


def test_an_instant_with_nothing_to_write_has_no_batches() -> None:
    table = TriggerTable()
    add(table, "caught-up", {"cron": "0 7 * * *"}, floor=AT)
    plan = plan_instant(table, AT, {("0 7 * * *", "UTC"), ("gone", "UTC")}, 100)
    assert plan.batches == ()
    assert len(plan.due) == 1


def test_every_table_change_makes_earlier_plans_stale() -> None:
    table = TriggerTable()
    add(table, "a", {"cron": "0 7 * * *"})
    plan = plan_instant(table, AT, {("0 7 * * *", "UTC")}, 100)
    add(table, "b", {"cron": "0 7 * * *"})  # added between planning and the instant
    assert table.changes != plan.changes
    replanned = plan_instant(table, AT, {("0 7 * * *", "UTC")}, 100)
    assert [b.trigger_ids for b in replanned.batches] == [["a", "b"]]
    table.remove("a")
    assert table.changes != replanned.changes
    table.remove("missing")  # nothing removed, nothing changed
    assert table.changes == replanned.changes + 1


def _requests(counts: dict[str, int]) -> list[SlotRequest]:
    return [
        SlotRequest(trigger_id=trigger_id, scheduled_for=AT - timedelta(minutes=m),
                    slot_iso=utc_iso(AT - timedelta(minutes=m)), config_text="{}",
                    overlap=OverlapPolicy.SKIP)
        for trigger_id, count in counts.items()
        for m in range(count, 0, -1)
    ]


def test_a_catch_up_is_packed_into_batches_of_whole_triggers() -> None:
    requests = _requests({"a": 2, "b": 3, "c": 1, "d": 6, "e": 2})
    batches = list(catch_up_batches(requests, 4))
    # a+b would be 5 > 4: b starts a batch; c joins it; d (6) alone; e after it.
    assert [b.trigger_ids for b in batches] == [
        ["a", "a"], ["b", "b", "b", "c"], ["d"] * 6, ["e", "e"]]
    # Every slot once, in its trigger's order.
    assert [(t, at) for b in batches for t, at, _ in b.rows()] == [
        (r.trigger_id, r.scheduled_for) for r in requests]
    assert list(catch_up_batches([], 4)) == []


def test_catch_up_batches_are_made_as_they_are_taken() -> None:
    # 100,000 slots: the first batch comes without packing (or copying) the others.
    requests = _requests({f"t{n:06d}": 1 for n in range(100_000)})
    batches = catch_up_batches(requests, 5_000)
    first = next(batches)
    assert first.trigger_ids == [f"t{n:06d}" for n in range(5_000)]
    assert sum(len(b) for b in batches) == 95_000  # the rest, on demand
