"""The start's look for a missed fire is shared between triggers (a memo per load): what
one trigger learned must not answer for another whose last slot differs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from triggerd.cron import Fire, parse_cron
from triggerd.definitions import parse_trigger_config
from triggerd.model import CronConfig, TriggerType
from triggerd.scheduler.cache import CronEntry
from triggerd.scheduler.service import CatchupMemo, CronScheduler
from triggerd.schedules import CronPlan

NOW = datetime(2026, 3, 8, 7, 30, tzinfo=UTC)
RECENT = NOW - timedelta(seconds=1)
HOURLY = CronPlan(parse_cron("0 * * * *", "UTC"))


def entry(trigger_id: str) -> CronEntry:
    config = parse_trigger_config(TriggerType.CRON, {"cron": "0 * * * *"})
    assert isinstance(config, CronConfig)
    return CronEntry(id=trigger_id, full_name=f"w/{trigger_id}", config=config,
                     config_text='{"cron": "0 * * * *"}', key=("0 * * * *", "UTC"),
                     enabled_at=NOW - timedelta(days=1), floor=NOW)


def nothing_missed(trigger_id: str, since: datetime, memo: CatchupMemo) -> bool:
    return CronScheduler._nothing_missed(HOURLY, entry(trigger_id), since, RECENT, memo,
                                         now=NOW)


def test_a_trigger_that_missed_a_fire_is_not_answered_by_one_that_did_not() -> None:
    memo: CatchupMemo = {}
    # Fired at 07:00: nothing missed up to 07:30.
    assert nothing_missed("b", NOW.replace(minute=0), memo)
    # Last fired at 05:00: 06:00 and 07:00 were missed, whatever "b" found.
    assert not nothing_missed("a", NOW.replace(hour=5, minute=0), memo)
    # And the other way round: a second trigger with b's last slot shares b's answer.
    assert not nothing_missed("c", NOW.replace(hour=5, minute=0), memo)
    assert nothing_missed("d", NOW.replace(minute=0), memo)


def test_triggers_that_fired_together_share_one_look_at_the_schedule() -> None:
    memo: CatchupMemo = {}
    looks = 0
    real = HOURLY.next_fire

    class Counting(CronPlan):
        def next_fire(self, after: datetime) -> Fire | None:
            nonlocal looks
            looks += 1
            return real(after)

    counting = Counting(HOURLY.cron)
    since = NOW.replace(hour=5, minute=0)
    for n in range(50):
        assert not CronScheduler._nothing_missed(counting, entry(f"t{n}"), since, RECENT,
                                                  memo, now=NOW)
    assert looks == 1
