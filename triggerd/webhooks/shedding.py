"""Load shedding on queue time, per connection.

``[http] max_pending`` refuses requests once runs wait to be executed; it cannot see
requests that wait to be *read*. When the HTTP side is the bottleneck (several
``[http] processes``, each with an executor that keeps up), requests queue on their
connections instead: a sender that pipelines, or keeps sending on a keep-alive
connection, waits longer and longer and never hears a ``429``. The server cannot see when
a request arrived, but it sees how many are parsed behind the one it starts: each of those
has waited at least since the first start that saw it queued. A request that has waited
longer than ``bound`` is answered ``429`` at once (cheap: nothing is read or stored), as
CoDel drops at the head of a queue whose sojourn time stays too long; and so is every
request after it on that connection until the connection has caught up (nothing queued
behind): the queue the server sees is capped (aiohttp parses at most 32 requests ahead,
the rest wait in the socket unseen), so requests read later may have waited longer than
they seem to.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

# Connections seen backlogged are forgotten when seen caught up; this many at most are
# kept (a client that closes a backlogged connection leaves its entry behind).
MAX_TRACKED = 4096


@dataclass
class _Backlog:
    # For each request queued behind the last one started, in order: when a start first
    # saw it queued (it arrived no later).
    seen: deque[float] = field(default_factory=deque)
    refusing: bool = False


@dataclass
class QueueShedder:
    """Per connection: whether the request starting now is refused because it has waited
    (at least) more than ``bound`` seconds, or an earlier one on its connection had and
    the connection has not caught up since."""

    bound: float
    # Least recently started first: the one forgotten when the table is full.
    _connections: OrderedDict[object, _Backlog] = field(default_factory=OrderedDict)

    def refuse(self, connection: object, behind: int, now: float) -> bool:
        """``behind``: requests parsed and queued after this one on ``connection``."""
        state = self._connections.get(connection)
        if state is None:
            if behind <= 0:
                return False  # nothing waited before it was seen, nothing waits behind
            if len(self._connections) >= MAX_TRACKED:
                self._connections.popitem(last=False)
            state = self._connections[connection] = _Backlog()
        else:
            self._connections.move_to_end(connection)
            waited = now - state.seen.popleft() if state.seen else 0.0
            if waited > self.bound:
                state.refusing = True
        refused = state.refusing
        if behind <= 0:
            # Caught up: the next backlog is measured afresh.
            del self._connections[connection]
            return refused
        if len(state.seen) > behind:
            # Requests started in between without asking (other routes): which entry is
            # whose is unknown, and the latest guess refuses nobody too early.
            state.seen.clear()
        # Those behind that no start had seen are seen now.
        state.seen.extend([now] * (behind - len(state.seen)))
        return refused

    def tracked(self) -> int:
        return len(self._connections)

    def forget(self, closed: Callable[[object], bool]) -> None:
        """Forget the connections ``closed`` says have ended: the table holds each one
        (its identity must not be taken by a new connection while it is here), and one
        that ended while backlogged would otherwise stay until pushed out."""
        for connection in [c for c in self._connections if closed(c)]:
            del self._connections[connection]
