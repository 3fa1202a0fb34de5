"""Load shedding on queue time (triggerd.webhooks.shedding): plain values, no clock.

``refuse(connection, number, behind, now)``: the request numbered ``number`` on its
connection starts at ``now`` with ``behind`` parsed after it."""

from __future__ import annotations

from triggerd.webhooks.shedding import MAX_TRACKED, UNSEEN_WITHIN, QueueShedder


def burst(shedder: QueueShedder, count: int, gap: float, start: float = 0.0) -> list[bool]:
    """``count`` requests parsed together and started ``gap`` seconds apart."""
    return [shedder.refuse("c", n + 1, count - 1 - n, start + n * gap) for n in range(count)]


def test_a_connection_with_nothing_behind_is_never_refused() -> None:
    shedder = QueueShedder(bound=0.0)
    assert [shedder.refuse("c", n, 0, n * 5.0) for n in (1, 2, 3)] == [False] * 3
    assert shedder.tracked() == 0


def test_a_pipelined_burst_is_admitted_while_each_waited_less_than_the_bound() -> None:
    # 30 requests parsed with the first, handled 30 ms apart: the last waited 0.9 s.
    shedder = QueueShedder(bound=1.0)
    assert not any(burst(shedder, 31, 0.03))
    assert shedder.tracked() == 0  # the last one had nothing behind: forgotten


def test_the_first_request_that_waited_too_long_is_refused_and_the_rest_of_the_queue() -> None:
    # 31 behind the first, handled 40 ms apart: the 27th waited 1.04 s; the ones after it
    # too (the connection has not caught up before its queue ends).
    shedder = QueueShedder(bound=1.0)
    assert burst(shedder, 32, 0.04) == [False] * 26 + [True] * 6


def test_a_refused_connection_stays_refused_while_its_reading_keeps_stopping() -> None:
    # A sender that keeps its socket full: aiohttp stops reading at every 32 parsed ahead.
    # Once refused, the quick refusals see requests read a moment ago (fresh-looking, yet
    # they waited in the socket): refused while reading stopped within the last 32 starts.
    shedder = QueueShedder(bound=1.0)
    assert shedder.refuse("c", 1, 31, 0.0, reading_paused=True) is False
    assert shedder.refuse("c", 2, 31, 1.5, reading_paused=True) is True
    decisions = [shedder.refuse("c", n, 31 - (n % 16), 1.5 + n * 0.001,
                                reading_paused=n % 16 == 0) for n in range(3, 200)]
    assert all(decisions)
    # Once the socket is drained (reading no longer stops), a whole queue's worth later
    # requests are judged by their own wait again.
    now = 2.0
    later = [shedder.refuse("c", n, 20, now + (n - 200) * 0.001) for n in range(200, 240)]
    assert later[:UNSEEN_WITHIN - 16] == [True] * (UNSEEN_WITHIN - 16) and not any(later[-5:])


def test_a_client_keeping_a_window_of_requests_is_not_refused_for_ever() -> None:
    # W always pipelined (a new one sent per answer; fewer than 32, so reading never
    # stops); one stall of 1.5 s.
    for window in (8, 17, 24, 31):
        shedder = QueueShedder(bound=1.0)
        decisions = []
        now = 0.0
        for number in range(1, 200):
            now += 1.5 if number == 50 else 0.001
            decisions.append(shedder.refuse("c", number, window - 1, now))
        assert any(decisions[48:52]) and not any(decisions[100:]), window


def test_requests_that_did_not_ask_do_not_lend_their_wait_to_the_next() -> None:
    # A webhook with one request behind it (another route, which does not ask); the
    # connection then idles 3 s and a third request comes alone.
    shedder = QueueShedder(bound=1.0)
    assert shedder.refuse("c", 1, 1, 100.0) is False
    assert shedder.refuse("c", 3, 0, 103.0) is False
    # In a steady pipeline where every other request goes elsewhere, each is judged by
    # its own wait (0.5 s here), not by its neighbour's.
    decisions = [shedder.refuse("d", n, 10, n * 0.05) for n in range(1, 200, 2)]
    assert not any(decisions)


def test_a_wait_the_request_in_progress_asked_for_is_excused() -> None:
    # Pipelined behind a sync request whose run took 5 s: not the server's queue.
    shedder = QueueShedder(bound=1.0)
    assert shedder.refuse("c", 1, 2, 0.0) is False
    shedder.excuse("c", 5.0)
    assert shedder.refuse("c", 2, 1, 5.1) is False
    assert shedder.refuse("c", 3, 0, 6.2) is True  # waited 1.2 s besides the excused 5


def test_connections_are_judged_apart() -> None:
    shedder = QueueShedder(bound=1.0)
    shedder.refuse("slow", 1, 30, 0.0)
    shedder.refuse("fast", 1, 30, 1.9)
    assert shedder.refuse("slow", 2, 29, 2.0) is True
    assert shedder.refuse("fast", 2, 29, 2.0) is False


def test_many_many_backlogged_connections_keep_a_bounded_table() -> None:
    shedder = QueueShedder(bound=1.0)
    for n in range(MAX_TRACKED + 10):
        shedder.refuse(n, 1, 1, float(n))
    assert shedder.tracked() == MAX_TRACKED
    # The least recently started went first: connection 0 is measured afresh.
    now = float(MAX_TRACKED + 10)
    assert shedder.refuse(0, 2, 1, now) is False
    assert shedder.refuse(MAX_TRACKED + 8, 2, 1, MAX_TRACKED + 9.5) is True


def test_ended_connections_are_forgotten() -> None:
    shedder = QueueShedder(bound=1.0)
    for name in ("open", "gone"):
        shedder.refuse(name, 1, 3, 0.0)
    shedder.forget(lambda connection: connection == "gone")
    assert shedder.tracked() == 1
    assert shedder.refuse("gone", 2, 3, 5.0) is False  # measured afresh
    assert shedder.refuse("open", 2, 2, 5.0) is True
