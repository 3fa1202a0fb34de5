"""The webhook counters the metrics endpoint reads."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

from triggerd.webhooks.group_commit import GroupCommitStats

# How many latency samples each trigger keeps for metrics.
LATENCY_SAMPLES = 2048


@dataclass(kw_only=True)
class WebhookStats:
    """Counters for the metrics endpoint. ``responses`` is keyed by (trigger full name, or
    ``"-"`` when no trigger matched, and HTTP status)."""

    responses: collections.Counter[tuple[str, int]] = field(default_factory=collections.Counter)
    latency: dict[str, collections.deque[float]] = field(default_factory=dict)
    rate_limited: int = 0
    backpressure_rejections: int = 0
    database_unavailable: int = 0
    filtered: int = 0  # requests stored with outcome filtered (answered 200, no run)
    # Requests verified by each listed secret, by (trigger, index): rotation only.
    secrets_used: collections.Counter[tuple[str, int]] = field(
        default_factory=collections.Counter
    )
    pending_new: int = 0  # the NEW count backpressure compares with max_pending
    group_commit: GroupCommitStats = field(default_factory=GroupCommitStats)
    # The daemon's Prometheus metrics (triggerd.api.metrics.Metrics), when it serves them.
    sink: Any = None

    def secret_used(self, trigger: str, index: int) -> None:
        self.secrets_used[(trigger, index)] += 1
        if self.sink is not None:
            self.sink.webhook_secret(trigger, index)

    def record(self, trigger: str, status: int, seconds: float) -> None:
        self.responses[(trigger, status)] += 1
        if self.sink is not None:
            self.sink.webhook_request(trigger, status, seconds)
        samples = self.latency.get(trigger)
        if samples is None:
            samples = self.latency[trigger] = collections.deque(maxlen=LATENCY_SAMPLES)
        samples.append(seconds)

    def filtered_request(self, trigger: str) -> None:
        self.filtered += 1
        if self.sink is not None:
            self.sink.webhook_filtered_requests(trigger)
