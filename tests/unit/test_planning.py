"""Catch-up, misfire, jitter and grouping plans (pure: instants in, decisions out)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from triggerd.cron import CronSchedule, parse_cron
from triggerd.model import MisfirePolicy, SlotOutcome
from triggerd.planning import (
    SlotDecision,
    group_due,
    jitter_offset,
    plan_catchup,
    plan_failed_slots,
)

HOURLY = parse_cron("0 * * * *")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def plan(
    schedule: CronSchedule = HOURLY,
    *,
    misfire: MisfirePolicy = MisfirePolicy.LATEST,
    window: timedelta = timedelta(hours=1),
    max_catchup: int = 100,
    last_slot: str | None = None,
    enabled_since: str = "2026-01-01T00:00",
    now: str,
) -> list[SlotDecision]:
    return plan_catchup(
        schedule,
        misfire=misfire,
        catchup_window=window,
        max_catchup=max_catchup,
        last_slot=None if last_slot is None else utc(last_slot),
        enabled_since=utc(enabled_since),
        now=utc(now),
    )


def skipped(at: str, detail: str) -> SlotDecision:
    return SlotDecision(
        scheduled_for=utc(at), fire=False, reason=SlotOutcome.SKIPPED_MISFIRE, detail=detail
    )


def fired(at: str, policy: str) -> SlotDecision:
    return SlotDecision(
        scheduled_for=utc(at),
        fire=True,
        reason=SlotOutcome.FIRED,
        detail=f"catch-up (misfire policy {policy})",
    )


OUTSIDE_1H = "older than the catch-up window of 1h"
LATEST = "misfire policy latest: only the newest missed slot runs"


# --- which slots are missed ---------------------------------------------------------------


def test_new_trigger_only_counts_slots_after_it_was_enabled() -> None:
    got = plan(enabled_since="2026-01-01T10:30", now="2026-01-01T12:15")
    assert got == [skipped("2026-01-01T11:00", OUTSIDE_1H), fired("2026-01-01T12:00", "latest")]


def test_reenabled_trigger_ignores_slots_before_it_was_enabled_again() -> None:
    got = plan(
        last_slot="2026-01-01T05:00", enabled_since="2026-01-01T10:30", now="2026-01-01T12:15"
    )
    assert got == [skipped("2026-01-01T11:00", OUTSIDE_1H), fired("2026-01-01T12:00", "latest")]


def test_last_slot_after_enabling_is_where_catch_up_starts() -> None:
    got = plan(
        last_slot="2026-01-01T11:00", enabled_since="2026-01-01T10:30", now="2026-01-01T12:15"
    )
    assert got == [fired("2026-01-01T12:00", "latest")]


@pytest.mark.parametrize(
    ("last_slot", "now"),
    [
        ("2026-01-01T12:00", "2026-01-01T12:00"),  # the slot at now is already recorded
        ("2026-01-01T13:00", "2026-01-01T12:00"),  # a clock behind the ledger
        ("2026-01-01T12:00", "2026-01-01T12:59:59"),  # nothing due yet
    ],
)
def test_nothing_missed(last_slot: str, now: str) -> None:
    assert plan(last_slot=last_slot, now=now) == []


def test_a_slot_at_now_is_due() -> None:
    got = plan(last_slot="2026-01-01T11:00", now="2026-01-01T12:00")
    assert got == [fired("2026-01-01T12:00", "latest")]


# --- the window boundary ------------------------------------------------------------------


def test_window_boundary_is_inside() -> None:
    # 11:00 is exactly one hour before now: caught up.
    got = plan(misfire=MisfirePolicy.ALL, enabled_since="2026-01-01T10:30", now="2026-01-01T12:00")
    assert got == [fired("2026-01-01T11:00", "all"), fired("2026-01-01T12:00", "all")]


def test_one_microsecond_past_the_window_is_outside() -> None:
    got = plan_catchup(
        HOURLY,
        misfire=MisfirePolicy.ALL,
        catchup_window=timedelta(hours=1),
        max_catchup=100,
        last_slot=None,
        enabled_since=utc("2026-01-01T10:30"),
        now=utc("2026-01-01T12:00") + timedelta(microseconds=1),
    )
    assert got == [skipped("2026-01-01T11:00", OUTSIDE_1H), fired("2026-01-01T12:00", "all")]


def test_zero_window_catches_up_only_a_slot_at_now() -> None:
    got = plan(window=timedelta(0), enabled_since="2026-01-01T10:30", now="2026-01-01T12:00")
    outside = "older than the catch-up window of 0s"
    assert got == [skipped("2026-01-01T11:00", outside), fired("2026-01-01T12:00", "latest")]
    assert plan(window=timedelta(0), enabled_since="2026-01-01T10:30", now="2026-01-01T12:01") == [
        skipped("2026-01-01T11:00", outside),
        skipped("2026-01-01T12:00", outside),
    ]


# --- misfire policies ---------------------------------------------------------------------


def test_skip_records_every_missed_slot() -> None:
    got = plan(
        misfire=MisfirePolicy.SKIP,
        window=timedelta(hours=2),
        enabled_since="2026-01-01T08:30",
        now="2026-01-01T12:15",
    )
    outside = "older than the catch-up window of 2h"
    assert got == [
        skipped("2026-01-01T09:00", outside),
        skipped("2026-01-01T10:00", outside),
        skipped("2026-01-01T11:00", "misfire policy skip"),
        skipped("2026-01-01T12:00", "misfire policy skip"),
    ]


def test_latest_fires_only_the_newest() -> None:
    got = plan(window=timedelta(hours=6), enabled_since="2026-01-01T08:30", now="2026-01-01T12:15")
    assert got == [
        skipped("2026-01-01T09:00", LATEST),
        skipped("2026-01-01T10:00", LATEST),
        skipped("2026-01-01T11:00", LATEST),
        fired("2026-01-01T12:00", "latest"),
    ]


def test_latest_with_every_slot_outside_the_window_fires_nothing() -> None:
    got = plan(
        window=timedelta(minutes=30), enabled_since="2026-01-01T08:30", now="2026-01-01T11:45"
    )
    outside = "older than the catch-up window of 30m"
    assert got == [
        skipped("2026-01-01T09:00", outside),
        skipped("2026-01-01T10:00", outside),
        skipped("2026-01-01T11:00", outside),
    ]


def test_all_fires_each_oldest_first() -> None:
    got = plan(
        misfire=MisfirePolicy.ALL,
        window=timedelta(hours=3),
        enabled_since="2026-01-01T07:30",
        now="2026-01-01T11:15",
    )
    assert got == [
        skipped("2026-01-01T08:00", "older than the catch-up window of 3h"),
        fired("2026-01-01T09:00", "all"),
        fired("2026-01-01T10:00", "all"),
        fired("2026-01-01T11:00", "all"),
    ]


def test_all_fires_at_most_max_catchup_and_summarizes_what_exceeds_it() -> None:
    got = plan(
        misfire=MisfirePolicy.ALL,
        window=timedelta(hours=6),
        max_catchup=2,
        enabled_since="2026-01-01T06:30",
        now="2026-01-01T12:15",
    )
    extra = "misfire policy all: only the newest 2 missed slots run"
    assert got == [
        skipped(
            "2026-01-01T08:00",
            "2 older slots skipped, from 2026-01-01T07:00:00Z to 2026-01-01T08:00:00Z",
        ),
        skipped("2026-01-01T09:00", extra),
        skipped("2026-01-01T10:00", extra),
        fired("2026-01-01T11:00", "all"),
        fired("2026-01-01T12:00", "all"),
    ]


def test_one_summarized_slot() -> None:
    got = plan(max_catchup=2, enabled_since="2026-01-01T08:30", now="2026-01-01T12:15")
    assert got == [
        skipped("2026-01-01T09:00", "1 older slot skipped, at 2026-01-01T09:00:00Z"),
        skipped("2026-01-01T10:00", OUTSIDE_1H),
        skipped("2026-01-01T11:00", OUTSIDE_1H),
        fired("2026-01-01T12:00", "latest"),
    ]


def test_max_catchup_zero_fires_nothing_and_lists_nothing() -> None:
    got = plan(
        misfire=MisfirePolicy.ALL,
        window=timedelta(hours=6),
        max_catchup=0,
        enabled_since="2026-01-01T08:30",
        now="2026-01-01T12:15",
    )
    assert got == [
        skipped(
            "2026-01-01T12:00",
            "4 older slots skipped, from 2026-01-01T09:00:00Z to 2026-01-01T12:00:00Z",
        )
    ]


def test_a_year_down_gives_a_bounded_plan() -> None:
    # 525,600 minutely slots in 2025; the plan holds 3 listed, 1 summary and 1 fire.
    got = plan(
        parse_cron("* * * * *"),
        max_catchup=3,
        enabled_since="2025-01-01T00:00",
        now="2026-01-01T00:00",
    )
    assert got == [
        skipped(
            "2025-12-31T23:56",
            "525596 older slots skipped, from 2025-01-01T00:01:00Z to 2025-12-31T23:56:00Z",
        ),
        skipped("2025-12-31T23:57", LATEST),
        skipped("2025-12-31T23:58", LATEST),
        skipped("2025-12-31T23:59", LATEST),
        fired("2026-01-01T00:00", "latest"),
    ]


def test_a_year_down_with_policy_all() -> None:
    got = plan(
        parse_cron("*/10 * * * * *", "Europe/London"),
        misfire=MisfirePolicy.ALL,
        window=timedelta(seconds=30),
        max_catchup=2,
        enabled_since="2025-01-01T00:00",
        now="2026-01-01T00:00",
    )
    # 3,153,600 slots; 00:00:00 and 23:59:50 fire, 23:59:40 and :30 (in the window) are listed.
    assert got == [
        skipped(
            "2025-12-31T23:59:20",
            "3153596 older slots skipped, from 2025-01-01T00:00:10Z to 2025-12-31T23:59:20Z",
        ),
        skipped("2025-12-31T23:59:30", "misfire policy all: only the newest 2 missed slots run"),
        skipped("2025-12-31T23:59:40", "misfire policy all: only the newest 2 missed slots run"),
        fired("2025-12-31T23:59:50", "all"),
        fired("2026-01-01T00:00", "all"),
    ]


# --- DST ----------------------------------------------------------------------------------


def test_catch_up_through_a_repeated_hour_fires_both_passes() -> None:
    got = plan(
        parse_cron("*/30 * * * *", "America/New_York"),
        misfire=MisfirePolicy.ALL,
        window=timedelta(hours=6),
        enabled_since="2026-11-01T04:45",
        now="2026-11-01T07:00",
    )
    assert got == [
        fired("2026-11-01T05:00", "all"),  # 01:00 EDT
        fired("2026-11-01T05:30", "all"),  # 01:30 EDT
        fired("2026-11-01T06:00", "all"),  # 01:00 EST
        fired("2026-11-01T06:30", "all"),  # 01:30 EST
        fired("2026-11-01T07:00", "all"),  # 02:00 EST
    ]


def test_window_counts_real_elapsed_time_across_a_repeated_hour() -> None:
    # now 06:30Z is 01:30 EST; one hour back is 05:30Z (01:30 EDT).
    got = plan(
        parse_cron("*/30 * * * *", "America/New_York"),
        misfire=MisfirePolicy.SKIP,
        enabled_since="2026-11-01T04:45",
        now="2026-11-01T06:30",
    )
    assert got == [
        skipped("2026-11-01T05:00", OUTSIDE_1H),
        skipped("2026-11-01T05:30", "misfire policy skip"),
        skipped("2026-11-01T06:00", "misfire policy skip"),
        skipped("2026-11-01T06:30", "misfire policy skip"),
    ]


def test_fixed_time_in_a_repeated_hour_is_one_slot() -> None:
    got = plan(
        parse_cron("30 1 * * *", "America/New_York"),
        misfire=MisfirePolicy.ALL,
        window=timedelta(days=1),
        enabled_since="2026-10-31T12:00",
        now="2026-11-01T12:00",
    )
    assert got == [fired("2026-11-01T05:30", "all")]


def test_fixed_time_in_a_skipped_hour_is_caught_up_at_the_jump() -> None:
    got = plan(
        parse_cron("30 2 * * *", "America/New_York"),
        window=timedelta(days=1),
        enabled_since="2026-03-07T12:00",
        now="2026-03-08T12:00",
    )
    assert got == [fired("2026-03-08T07:00", "latest")]


# --- bad input ----------------------------------------------------------------------------


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="max_catchup must not be negative, got -1"):
        plan(max_catchup=-1, now="2026-01-01T12:00")
    with pytest.raises(ValueError, match="catchup_window must not be negative"):
        plan(window=timedelta(seconds=-1), now="2026-01-01T12:00")
    with pytest.raises(ValueError, match="now must be a timezone-aware datetime"):
        plan_catchup(
            HOURLY,
            misfire=MisfirePolicy.ALL,
            catchup_window=timedelta(hours=1),
            max_catchup=1,
            last_slot=None,
            enabled_since=utc("2026-01-01T00:00"),
            now=datetime(2026, 1, 1, 12),
        )


# --- jitter -------------------------------------------------------------------------------

TRIGGER = "0b6f6a4e-0000-4000-8000-000000000001"


def test_jitter_is_pinned_so_every_replica_and_version_agree() -> None:
    # blake2b-64 of "<trigger id>\0<UTC instant>" scaled into [0, jitter).
    assert jitter_offset(TRIGGER, utc("2026-01-01T00:00"), timedelta(seconds=30)) == timedelta(
        seconds=23, microseconds=147914
    )
    assert jitter_offset(TRIGGER, utc("2026-01-01T00:01"), timedelta(seconds=30)) == timedelta(
        seconds=15, microseconds=102961
    )


def test_jitter_ignores_how_the_instant_is_written() -> None:
    in_utc = utc("2026-03-08T07:00")
    in_new_york = datetime.fromisoformat("2026-03-08T03:00:00-04:00")
    jitter = timedelta(minutes=5)
    assert jitter_offset(TRIGGER, in_utc, jitter) == jitter_offset(TRIGGER, in_new_york, jitter)


def test_jitter_zero_and_below_a_microsecond_is_zero() -> None:
    assert jitter_offset(TRIGGER, utc("2026-01-01T00:00"), timedelta(0)) == timedelta(0)
    assert jitter_offset(TRIGGER, utc("2026-01-01T00:00"), timedelta(microseconds=1)) == timedelta(
        0
    )


def test_jitter_spreads_uniformly_below_the_bound() -> None:
    jitter = timedelta(seconds=100)
    offsets = [
        jitter_offset(f"trigger-{i}", utc("2026-01-01T00:00"), jitter).total_seconds()
        for i in range(2000)
    ]
    assert all(0 <= o < 100 for o in offsets)
    buckets = [0] * 10
    for o in offsets:
        buckets[int(o // 10)] += 1
    assert all(150 <= b <= 250 for b in buckets), buckets  # ~200 each
    assert len(set(offsets)) == len(offsets)


def test_negative_jitter_is_refused() -> None:
    with pytest.raises(ValueError, match="jitter must not be negative"):
        jitter_offset(TRIGGER, utc("2026-01-01T00:00"), timedelta(seconds=-1))


# --- grouping -----------------------------------------------------------------------------


def test_group_due_groups_by_instant_in_order() -> None:
    nine = utc("2026-01-01T09:00")
    eight = utc("2026-01-01T08:00")
    nine_in_new_york = datetime.fromisoformat("2026-01-01T04:00:00-05:00")
    got = group_due([("a", nine), ("b", eight), ("c", nine_in_new_york), ("d", nine)])
    assert got == {eight: ["b"], nine: ["a", "c", "d"]}
    assert list(got) == [eight, nine]
    assert all(key.tzinfo is UTC for key in got)
    assert group_due([]) == {}


def test_group_due_refuses_naive_instants() -> None:
    with pytest.raises(ValueError, match="fire instants must be timezone-aware"):
        group_due([("a", datetime(2026, 1, 1))])


# Slots whose write failed while a later slot of the trigger was recorded.
_NOW = datetime(2026, 3, 1, 10, 5, tzinfo=UTC)
_FAILED = [datetime(2026, 3, 1, 10, m, tzinfo=UTC) for m in (2, 0, 1)]


def _outcomes(decisions: list[SlotDecision]) -> list[tuple[int, bool]]:
    return [(d.scheduled_for.minute, d.fire) for d in decisions]


@pytest.mark.parametrize(("misfire", "newer_missed", "expected"), [
    # latest: the newest failed slot runs, unless the catch-up after them has a newer one
    (MisfirePolicy.LATEST, False, [(0, False), (1, False), (2, True)]),
    (MisfirePolicy.LATEST, True, [(0, False), (1, False), (2, False)]),
    (MisfirePolicy.SKIP, False, [(0, False), (1, False), (2, False)]),
    (MisfirePolicy.ALL, True, [(0, True), (1, True), (2, True)]),
])
def test_failed_slots_go_through_the_misfire_policy(
    misfire: MisfirePolicy, newer_missed: bool, expected: list[tuple[int, bool]]
) -> None:
    decisions = plan_failed_slots(_FAILED, misfire=misfire, catchup_window=timedelta(hours=1),
                                  max_catchup=100, now=_NOW, newer_missed=newer_missed)
    assert _outcomes(decisions) == expected
    for d in decisions:
        assert d.reason == (SlotOutcome.FIRED if d.fire else SlotOutcome.SKIPPED_MISFIRE)


def test_failed_slots_outside_the_window_or_past_max_catchup_are_skipped() -> None:
    decisions = plan_failed_slots(_FAILED, misfire=MisfirePolicy.ALL,
                                  catchup_window=timedelta(minutes=4, seconds=30),
                                  max_catchup=1, now=_NOW, newer_missed=False)
    assert _outcomes(decisions) == [(0, False), (1, False), (2, True)]
    assert decisions[0].detail == "older than the catch-up window of 4m30s"
    assert decisions[1].detail == "misfire policy all: only the newest 1 missed slots run"
    assert decisions[2].detail == "catch-up (misfire policy all)"
    assert plan_failed_slots([], misfire=MisfirePolicy.ALL, catchup_window=timedelta(1),
                             max_catchup=5, now=_NOW, newer_missed=False) == []
