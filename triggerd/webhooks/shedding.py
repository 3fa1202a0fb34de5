"""Load shedding on queue time, per connection, for pipelined requests.

``[http] max_pending`` refuses requests once runs wait to be executed; it cannot see
requests that wait to be *read*. When the HTTP side is the bottleneck (several
``[http] processes``, each with an executor that keeps up), a sender that pipelines its
requests waits longer and longer and never hears a ``429``. The server cannot see when a
request arrived, but it sees, at each start, which requests are parsed behind the one it
starts (their numbers on the connection): each of those has waited at least since the
first start that saw it queued. A request that has waited longer than ``bound`` is
answered ``429`` at once (cheap: nothing is read or stored), as CoDel drops at the head
of a queue whose sojourn time stays too long. So is every later request on that
connection until it has caught up: until nothing is queued behind, or until a whole
queue's worth of requests (``UNSEEN_WITHIN``) started without aiohttp having stopped
reading the connection. aiohttp stops reading a connection with 32 requests parsed ahead
(and reads again at 16): requests left in the socket meanwhile may have waited longer than
they seem to once read, and while the sender keeps more in the socket, reading keeps
stopping.

Requests sent one at a time per connection (most webhook senders) never queue here: this
does not judge them.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

# Connections seen backlogged are forgotten when seen caught up; this many at most are
# kept (the least recently started goes first).
MAX_TRACKED = 4096
# Requests started since reading last stopped after which nothing can be left unseen in
# the socket from that stop (aiohttp stops reading at 32 parsed ahead).
UNSEEN_WITHIN = 32


@dataclass
class _Backlog:
    first: int  # the number on the connection of the request seen[0] is for
    # For the requests numbered first, first + 1, ...: when a start first saw each queued
    # (it arrived no later).
    seen: deque[float] = field(default_factory=deque)
    refusing: bool = False
    paused_at: int = -UNSEEN_WITHIN  # the number of the last start reading was stopped at


@dataclass
class QueueShedder:
    """Per connection: whether the request starting now is refused because it has waited
    (at least) more than ``bound`` seconds, or an earlier one on its connection had and
    requests may still have waited unseen."""

    bound: float
    _connections: OrderedDict[object, _Backlog] = field(default_factory=OrderedDict)

    def refuse(self, connection: object, number: int, behind: int, now: float, *,
               reading_paused: bool = False) -> bool:
        """``number``: the request's number on ``connection`` (they count up, gaps are
        requests that did not ask: other routes, refused earlier); ``behind``: how many
        are parsed and queued after it; ``reading_paused``: whether the connection's
        reading is stopped (its queue is full)."""
        state = self._connections.get(connection)
        waited = 0.0
        if state is not None:
            self._connections.move_to_end(connection)
            while state.seen and state.first < number:  # started without asking
                state.seen.popleft()
                state.first += 1
            if state.seen and state.first == number:
                waited = now - state.seen.popleft()
                state.first += 1
        elif behind <= 0:
            return False  # nothing waited before it was seen, nothing waits behind
        else:
            if len(self._connections) >= MAX_TRACKED:
                self._connections.popitem(last=False)
            state = self._connections[connection] = _Backlog(first=number + 1)
        if reading_paused:
            state.paused_at = number
        if waited > self.bound:
            state.refusing = True
        elif number - state.paused_at > UNSEEN_WITHIN:
            state.refusing = False  # nothing older can have waited unseen
        refused = state.refusing
        if behind <= 0:
            del self._connections[connection]  # caught up: measured afresh next time
            return refused
        if not state.seen:
            state.first = number + 1
        # Those behind that no start had seen are seen now.
        state.seen.extend([now] * (number + behind + 1 - state.first - len(state.seen)))
        return refused

    def excuse(self, connection: object, seconds: float) -> None:
        """The request in progress on ``connection`` kept those behind it waiting for
        ``seconds`` for an answer its sender asked for (a sync run's): that wait is not
        the server's queue."""
        state = self._connections.get(connection)
        if state is not None and seconds > 0:
            state.seen = deque(t + seconds for t in state.seen)

    def tracked(self) -> int:
        return len(self._connections)

    def forget(self, closed: Callable[[object], bool]) -> None:
        """Forget the connections ``closed`` says have ended: the table holds each one
        (its identity must not be taken by a new connection while it is here), and one
        that ended while backlogged would otherwise stay until pushed out."""
        for connection in [c for c in self._connections if closed(c)]:
            del self._connections[connection]
