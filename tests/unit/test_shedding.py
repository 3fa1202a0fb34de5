"""Load shedding on queue time (triggerd.webhooks.shedding): plain values, no clock."""

from __future__ import annotations

from triggerd.webhooks.shedding import MAX_TRACKED, QueueShedder


def test_a_connection_with_nothing_behind_is_never_refused() -> None:
    shedder = QueueShedder(bound=0.0)
    assert [shedder.refuse("c", 0, t) for t in (0.0, 5.0, 10.0)] == [False] * 3
    assert shedder.tracked() == 0


def test_a_pipelined_burst_is_admitted_while_each_waited_less_than_the_bound() -> None:
    # 31 requests parsed with the first, handled 30 ms apart: the last waited 0.93 s.
    shedder = QueueShedder(bound=1.0)
    refused = [shedder.refuse("c", 31 - n, n * 0.03) for n in range(32)]
    assert not any(refused)
    assert shedder.tracked() == 0  # the last one had nothing behind: forgotten


def test_the_first_request_that_waited_too_long_is_refused_and_so_is_the_rest() -> None:
    # Handled 40 ms apart: the 26th waited 1.0 s, the 27th 1.04 s.
    shedder = QueueShedder(bound=1.0)
    refused = [shedder.refuse("c", 31 - n, n * 0.04) for n in range(32)]
    assert refused == [False] * 26 + [True] * 6
    assert shedder.tracked() == 0


def test_a_refused_connection_is_refused_until_it_has_caught_up() -> None:
    shedder = QueueShedder(bound=1.0)
    assert shedder.refuse("c", 5, 0.0) is False
    assert shedder.refuse("c", 20, 1.5) is True  # queued since 0.0 at the latest
    # Those read since (first seen at 1.5) seem fresh, yet the refusals go on while
    # anything is queued: older requests may have waited in the socket, unseen...
    assert [shedder.refuse("c", behind, 1.51) for behind in (19, 3, 1)] == [True] * 3
    # ... and end once it has caught up (this one is still refused).
    assert shedder.refuse("c", 0, 1.52) is True
    assert shedder.refuse("c", 3, 1.53) is False  # a new backlog, measured afresh
    assert shedder.tracked() == 1


def test_requests_started_without_asking_do_not_count_against_the_rest() -> None:
    shedder = QueueShedder(bound=1.0)
    shedder.refuse("c", 3, 0.0)  # three behind, seen at 0.0
    # Two of them went elsewhere (another route); the next one asking has one behind,
    # newly seen: it waited since 0.0 itself, the one behind only since 0.9.
    assert shedder.refuse("c", 1, 0.9) is False
    assert shedder.refuse("c", 0, 1.8) is False


def test_connections_are_judged_apart() -> None:
    shedder = QueueShedder(bound=1.0)
    shedder.refuse("slow", 30, 0.0)
    shedder.refuse("fast", 30, 1.9)
    assert shedder.refuse("slow", 29, 2.0) is True
    assert shedder.refuse("fast", 29, 2.0) is False


def test_many_many_backlogged_connections_keep_a_bounded_table() -> None:
    shedder = QueueShedder(bound=1.0)
    for n in range(MAX_TRACKED + 10):
        shedder.refuse(n, 1, float(n))
    assert shedder.tracked() == MAX_TRACKED
    # The oldest went first: connection 0 is measured afresh, the newest is not.
    now = float(MAX_TRACKED + 10)
    assert shedder.refuse(0, 1, now) is False
    assert shedder.refuse(MAX_TRACKED + 9, 1, now) is False
    assert shedder.refuse(MAX_TRACKED + 8, 1, now + 1.0) is True


def test_ended_connections_are_forgotten() -> None:
    shedder = QueueShedder(bound=1.0)
    for name in ("open", "gone"):
        shedder.refuse(name, 3, 0.0)
    shedder.forget(lambda connection: connection == "gone")
    assert shedder.tracked() == 1
    assert shedder.refuse("gone", 3, 5.0) is False  # measured afresh
    assert shedder.refuse("open", 2, 5.0) is True
