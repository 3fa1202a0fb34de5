"""Where retention's scans go on from, pass after pass (plain state, no I/O).

A pass reads the runs (and inbox rows) older than the retention in order; a batch that
was not full read everything up to its cut. The next pass starts at that cut, so the runs
kept before it (a delivery id that still dedupes for days, a parked run, a child its
parent still waits on) are not read by every pass: with a retention of a day and the
default 7-day `dedupe.ttl`, six days of a webhook tenant's runs were read each minute.
Once an hour the positions start over, so what was kept and may go now (its key expired,
the parked run ended) goes within about an hour of becoming eligible.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from triggerd.store.executions import RetentionPositions
from triggerd.store.inbox import InboxPosition

# Seconds between passes that start from the oldest rows again.
RESCAN_INTERVAL = 3600.0


@dataclass(kw_only=True)
class RetentionCursor:
    """The positions a retention pass starts from; :meth:`for_pass` starts them over once
    ``RESCAN_INTERVAL`` has passed since they last did."""

    runs: RetentionPositions = field(default_factory=dict)
    inbox: InboxPosition = field(default_factory=InboxPosition)
    started_over_at: float | None = None

    def for_pass(self, now: float) -> RetentionCursor:
        """Ready for a pass beginning at ``now`` (a monotonic clock's seconds)."""
        if self.started_over_at is None or now - self.started_over_at >= RESCAN_INTERVAL:
            self.runs.clear()
            self.inbox.after = None
            self.started_over_at = now
        return self
