"""Load shedding on queue time, per connection.

``[http] max_pending`` refuses requests once runs wait to be executed; it cannot see
requests that wait to be *read*. When the HTTP side is the bottleneck (several
``[http] processes``, each with an executor that keeps up), requests queue on their
connections instead: a sender that pipelines, or keeps sending on a keep-alive
connection, waits longer and longer and never hears a ``429``. The server cannot see when
a request arrived, but it sees how many are parsed behind the one it handles and how fast
that connection's requests are handled: their product estimates how long the newest one
will wait. Past ``bound`` seconds the head is answered ``429`` at once (cheap: nothing is
read or stored), which drains the queue, as CoDel drops at the head of a queue whose
sojourn time stays too long.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The pace a connection is assumed to have before two of its requests were timed.
MIN_PACE = 0.001
# Connections seen backlogged are forgotten when seen caught up; this many at most are
# kept (a client that closes a backlogged connection leaves its entry behind).
MAX_TRACKED = 4096
# Weight of the newest gap in a connection's pace (an exponential average).
PACE_WEIGHT = 0.25


@dataclass
class _Backlog:
    last_start: float
    pace: float  # seconds between the starts of two admitted requests, backlogged
    refusing: bool = False


@dataclass
class QueueShedder:
    """Per connection: whether the request starting now is refused because those queued
    behind it would wait more than ``bound`` seconds. Once a connection is refused, it is
    refused until it has caught up (nothing queued behind): the queue the server sees is
    capped (aiohttp parses at most 32 requests ahead, the rest wait in the socket), so an
    estimate from it would admit again while older requests still wait unseen."""

    bound: float
    _connections: dict[object, _Backlog] = field(default_factory=dict)

    def refuse(self, connection: object, behind: int, now: float) -> bool:
        """``behind``: requests parsed and queued after this one on ``connection``."""
        if behind <= 0:
            # Caught up: the next backlog is measured afresh.
            self._connections.pop(connection, None)
            return False
        state = self._connections.get(connection)
        if state is None:
            if len(self._connections) >= MAX_TRACKED:
                self._forget_oldest()
            state = self._connections[connection] = _Backlog(last_start=now, pace=MIN_PACE)
        elif state.refusing:
            return True
        else:
            # The previous request (admitted) had this one behind it: the gap is how long
            # that connection takes per request.
            gap = max(MIN_PACE, now - state.last_start)
            state.pace += PACE_WEIGHT * (gap - state.pace)
            state.last_start = now
        state.refusing = behind * state.pace > self.bound
        return state.refusing

    def tracked(self) -> int:
        return len(self._connections)

    def _forget_oldest(self) -> None:
        oldest = min(self._connections, key=lambda c: self._connections[c].last_start)
        del self._connections[oldest]
