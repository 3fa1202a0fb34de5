"""How a trigger's preview marks its fires: the ledger's outcomes and max_runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from triggerd.cron import Fire
from triggerd.trigger_detail import marked_fires

NOW = datetime(2027, 1, 4, 12, 0, tzinfo=UTC)


def _fire(hours: int, note: str | None = None) -> Fire:
    at = NOW + timedelta(hours=hours)
    return Fire(at=at, local=at, note=note)


def _marks(fires: list[Fire], runs_left: int | None,
           recorded: dict[datetime, str] | None = None) -> list[tuple[str | None, str | None]]:
    return [(f["note"], f.get("reason"))
            for f in marked_fires(fires, recorded or {}, runs_left=runs_left, now=NOW)]


def test_without_max_runs_nothing_is_marked() -> None:
    assert _marks([_fire(1), _fire(2)], None) == [(None, None), (None, None)]


def test_fires_past_the_runs_left_are_marked() -> None:
    assert _marks([_fire(1), _fire(2), _fire(3)], 1) == [
        (None, None), ("skipped", "past max_runs"), ("skipped", "past max_runs")]


def test_a_completed_trigger_runs_none_of_them() -> None:
    assert _marks([_fire(1)], 0) == [("skipped", "past max_runs")]


def test_past_decided_and_excluded_instants_use_up_no_run() -> None:
    fires = [_fire(-1), _fire(1), _fire(2, "excluded"), _fire(3), _fire(4)]
    recorded = {NOW + timedelta(hours=1): "skipped_manual"}
    assert _marks(fires, 1, recorded) == [
        (None, None), ("skipped", "skipped by hand"), ("excluded", None), (None, None),
        ("skipped", "past max_runs")]
