"""Per-trigger webhook rate limits: token buckets as pure arithmetic over ``now``.

``now`` is monotonic seconds (``time.monotonic()`` read once by the route). A bucket holds
up to ``burst`` tokens, refills at ``rate`` tokens per second, and each request takes one.
Limits are per process: N replicas behind a load balancer admit up to N times the rate,
which is the usual trade for not putting a database round trip in front of every request.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    """One bucket. Mutable on purpose: it is private state of a :class:`RateLimiter`,
    updated on every request of the hot path, and never shared or stored; a frozen value
    would only add an allocation per request. The event loop runs ``take`` without an
    ``await`` in between, so no lock is needed."""

    rate: float  # tokens per second
    burst: int  # capacity
    tokens: float
    updated: float  # the monotonic instant ``tokens`` was computed for

    def __post_init__(self) -> None:
        _check(self.rate, self.burst)

    def refill(self, now: float) -> None:
        """Bring ``tokens`` up to ``now``. A clock that steps backwards adds nothing."""
        if now > self.updated:
            self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def take(self, now: float) -> float:
        """Take a token: ``0.0`` when allowed, else the seconds until one is available
        (the caller rounds up for ``Retry-After``). A refused request takes nothing."""
        self.refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


@dataclass
class RateLimiter:
    """Buckets keyed by trigger id, created full on first use; each call passes the key's
    current ``rate`` and ``burst``, so a reloaded trigger's new limits apply at once."""

    buckets: dict[str, TokenBucket] = field(default_factory=dict)

    def check(self, key: str, rate: float, burst: int, now: float) -> float:
        """Take a token from ``key``'s bucket; ``0.0`` or seconds to wait (see ``take``)."""
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = TokenBucket(
                rate=rate, burst=burst, tokens=float(burst), updated=now
            )
        elif bucket.rate != rate or bucket.burst != burst:
            _check(rate, burst)
            # Settle what was earned under the old rate, then cap at the new capacity.
            bucket.refill(now)
            bucket.rate = rate
            bucket.burst = burst
            bucket.tokens = min(bucket.tokens, float(burst))
        return bucket.take(now)

    def refund(self, key: str) -> None:
        """Give back the token a request took from ``key``'s bucket (a HEAD that verified:
        monitors probe with it, and it stores nothing)."""
        bucket = self.buckets.get(key)
        if bucket is not None:
            bucket.tokens = min(float(bucket.burst), bucket.tokens + 1.0)

    def forget(self, key: str) -> None:
        """Drop ``key``'s bucket (its trigger was deleted or lost its limit)."""
        self.buckets.pop(key, None)

    def prune(self, now: float) -> int:
        """Drop the buckets that have refilled completely: a full bucket behaves exactly
        like a fresh one, so this bounds memory without changing any answer. Returns how
        many were dropped."""
        full = [
            key
            for key, bucket in self.buckets.items()
            if bucket.tokens + max(0.0, now - bucket.updated) * bucket.rate >= bucket.burst
        ]
        for key in full:
            del self.buckets[key]
        return len(full)


def validate_rate_limit(rate: float | None, burst: int | None) -> list[str]:
    """Human-readable problems with a trigger's ``rate``/``burst``; ``[]`` when usable.

    ``burst`` without ``rate`` is a problem; ``rate`` without ``burst`` is fine (the caller
    uses :func:`default_burst`).
    """
    problems: list[str] = []
    if rate is None:
        if burst is not None:
            problems.append("burst needs a rate")
        return problems
    if not rate > 0 or rate == float("inf"):
        problems.append(f"rate must be a positive number of requests per second, got {rate}")
    if burst is not None and burst < 1:
        problems.append(f"burst must be at least 1, got {burst}")
    return problems


def default_burst(rate: float) -> int:
    """The burst used when a trigger sets only a rate: one second's worth, at least 1."""
    return max(1, int(rate))


def _check(rate: float, burst: int) -> None:
    problems = validate_rate_limit(rate, burst)
    if problems:
        raise ValueError("; ".join(problems))
