"""Load shedding on queue time (triggerd.webhooks.shedding): plain values, no clock."""

from __future__ import annotations

from triggerd.webhooks.shedding import MAX_TRACKED, MIN_PACE, QueueShedder


def test_a_connection_with_nothing_behind_is_never_refused() -> None:
    shedder = QueueShedder(bound=0.0)
    assert [shedder.refuse("c", 0, t) for t in (0.0, 5.0, 10.0)] == [False] * 3
    assert shedder.tracked() == 0


def test_a_short_pipelined_burst_is_admitted() -> None:
    # 31 requests parsed at once, handled 10 ms apart: the newest waits about 0.3 s.
    shedder = QueueShedder(bound=1.0)
    refused = [shedder.refuse("c", 31 - n, n * 0.01) for n in range(32)]
    assert not any(refused)
    assert shedder.tracked() == 0  # the last one had nothing behind: forgotten


def test_a_slow_backlogged_connection_is_refused_until_it_has_caught_up() -> None:
    shedder = QueueShedder(bound=1.0)
    # 30 behind, each request taking 0.1 s: the pace climbs towards 0.1 s per request,
    # and 30 x pace passes 1 s on the way.
    now, decisions = 0.0, []
    for _ in range(10):
        decisions.append(shedder.refuse("c", 30, now))
        now += 0.1
    first = decisions.index(True)
    assert first > 1 and not any(decisions[:first])
    # Refused answers are quick and the queue shrinks, yet the refusals go on while
    # anything is queued (older requests may wait in the socket, unseen)...
    assert [shedder.refuse("c", behind, now + 0.001 * behind) for behind in (29, 5, 1)] \
        == [True, True, True]
    # ... and end once it has caught up.
    assert shedder.refuse("c", 0, now + 0.01) is False
    assert shedder.refuse("c", 3, now + 0.02) is False  # a new backlog, measured afresh


def test_connections_are_judged_apart() -> None:
    shedder = QueueShedder(bound=1.0)
    for n in range(12):
        shedder.refuse("slow", 30, n * 0.2)
    assert shedder.refuse("slow", 30, 2.6) is True
    assert shedder.refuse("fast", 30, 2.6) is False


def test_many_many_backlogged_connections_keep_a_bounded_table() -> None:
    shedder = QueueShedder(bound=1.0)
    for n in range(MAX_TRACKED + 10):
        shedder.refuse(n, 1, float(n))
    assert shedder.tracked() == MAX_TRACKED
    # The oldest went first: connection 0's next request starts a new measurement.
    now = float(MAX_TRACKED + 10)
    assert shedder.refuse(0, round(2.0 / MIN_PACE), now) is True
    assert shedder.refuse(MAX_TRACKED + 9, 1, now) is False
