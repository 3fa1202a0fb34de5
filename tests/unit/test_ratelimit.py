"""Token buckets with explicit ``now`` values (monotonic seconds)."""

from __future__ import annotations

import math

import pytest

from triggerd.webhooks.ratelimit import (
    RateLimiter,
    TokenBucket,
    default_burst,
    validate_rate_limit,
)


def full(rate: float, burst: int, now: float = 100.0) -> TokenBucket:
    return TokenBucket(rate=rate, burst=burst, tokens=float(burst), updated=now)


def test_burst_then_refusal_with_the_wait() -> None:
    bucket = full(rate=2.0, burst=3)
    assert [bucket.take(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(100.0) == 0.5  # one token every 0.5 s
    assert bucket.take(100.25) == 0.25
    assert bucket.take(100.5) == 0.0
    assert bucket.take(100.5) == 0.5


def test_refused_requests_take_nothing() -> None:
    bucket = full(rate=1.0, burst=1)
    assert bucket.take(100.0) == 0.0
    for _ in range(10):
        assert bucket.take(100.0) == 1.0
    assert bucket.take(101.0) == 0.0


def test_refill_is_capped_at_burst() -> None:
    bucket = full(rate=10.0, burst=2)
    assert bucket.take(100.0) == 0.0
    assert bucket.take(100.0) == 0.0
    # An hour idle earns two tokens, not 36 000.
    assert [bucket.take(3700.0) for _ in range(3)] == [0.0, 0.0, 0.1]
    assert bucket.tokens == 0.0


def test_slow_rate_retry_after() -> None:
    bucket = full(rate=1 / 60, burst=1)  # one request a minute
    assert bucket.take(100.0) == 0.0
    wait = bucket.take(115.0)
    assert wait == pytest.approx(45.0)
    assert math.ceil(wait) == 45


def test_clock_going_backwards_earns_nothing() -> None:
    bucket = full(rate=1.0, burst=1)
    assert bucket.take(100.0) == 0.0
    assert bucket.take(50.0) == 1.0
    assert bucket.updated == 100.0
    assert bucket.take(100.5) == 0.5
    assert bucket.take(101.0) == 0.0


def test_steady_rate_is_admitted() -> None:
    bucket = full(rate=5.0, burst=1)
    # One request every 0.25 s, under the 5/s rate (binary fractions: no float drift).
    times = [100.0 + i * 0.25 for i in range(40)]
    assert all(bucket.take(t) == 0.0 for t in times)


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0), (math.nan, 1)])
def test_bucket_refuses_unusable_limits(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        full(rate=rate, burst=burst)


def test_limiter_keeps_one_bucket_per_key() -> None:
    limiter = RateLimiter()
    assert limiter.check("t1", 1.0, 2, 100.0) == 0.0
    assert limiter.check("t1", 1.0, 2, 100.0) == 0.0
    assert limiter.check("t1", 1.0, 2, 100.0) == 1.0
    assert limiter.check("t2", 1.0, 2, 100.0) == 0.0  # a fresh, full bucket
    assert limiter.check("t1", 1.0, 2, 100.5) == 0.5
    assert sorted(limiter.buckets) == ["t1", "t2"]


def test_limiter_applies_changed_limits() -> None:
    limiter = RateLimiter()
    for _ in range(10):
        assert limiter.check("t", 1.0, 10, 100.0) == 0.0
    assert limiter.check("t", 1.0, 10, 100.0) == 1.0
    # Reloaded with a faster rate: the wait shrinks at once.
    assert limiter.check("t", 4.0, 10, 100.0) == 0.25
    # Two seconds at 4/s earn 8 tokens; a smaller burst caps them.
    assert limiter.check("t", 4.0, 3, 102.0) == 0.0
    bucket = limiter.buckets["t"]
    assert (bucket.rate, bucket.burst, bucket.tokens) == (4.0, 3, 2.0)


def test_limiter_settles_the_old_rate_before_switching() -> None:
    limiter = RateLimiter()
    assert limiter.check("t", 1.0, 5, 100.0) == 0.0
    for _ in range(4):
        limiter.check("t", 1.0, 5, 100.0)
    assert limiter.buckets["t"].tokens == 0.0
    # 1 s at the old 1/s earns one token; the new rate applies only from now on.
    assert limiter.check("t", 100.0, 5, 101.0) == 0.0
    assert limiter.check("t", 100.0, 5, 101.0) == pytest.approx(0.01)


def test_limiter_refuses_unusable_new_limits() -> None:
    limiter = RateLimiter()
    limiter.check("t", 1.0, 1, 100.0)
    with pytest.raises(ValueError, match="burst must be at least 1, got 0"):
        limiter.check("t", 1.0, 0, 100.0)
    with pytest.raises(ValueError, match="rate must be a positive number"):
        limiter.check("u", 0.0, 1, 100.0)


def test_forget_and_prune() -> None:
    limiter = RateLimiter()
    limiter.check("busy", 1.0, 2, 100.0)
    limiter.check("busy", 1.0, 2, 100.0)
    limiter.check("idle", 1.0, 2, 100.0)
    limiter.check("gone", 1.0, 2, 100.0)
    limiter.forget("gone")
    limiter.forget("never-existed")
    assert sorted(limiter.buckets) == ["busy", "idle"]
    # At 101: idle has 1 + 1 = 2 tokens (full), busy has 0 + 1 = 1.
    assert limiter.prune(101.0) == 1
    assert sorted(limiter.buckets) == ["busy"]
    assert limiter.prune(102.0) == 1
    assert limiter.buckets == {}
    # A pruned key behaves exactly like a bucket that had refilled.
    assert limiter.check("busy", 1.0, 2, 102.0) == 0.0


@pytest.mark.parametrize(
    ("rate", "burst", "problems"),
    [
        (None, None, []),
        (10.0, None, []),
        (0.5, 3, []),
        (None, 5, ["burst needs a rate"]),
        (0.0, 1, ["rate must be a positive number of requests per second, got 0.0"]),
        (-2.0, 1, ["rate must be a positive number of requests per second, got -2.0"]),
        (math.inf, 1, ["rate must be a positive number of requests per second, got inf"]),
        (1.0, 0, ["burst must be at least 1, got 0"]),
    ],
)
def test_validate_rate_limit(rate: float | None, burst: int | None, problems: list[str]) -> None:
    assert validate_rate_limit(rate, burst) == problems


@pytest.mark.parametrize(("rate", "burst"), [(0.1, 1), (1.0, 1), (2.5, 2), (100.0, 100)])
def test_default_burst(rate: float, burst: int) -> None:
    assert default_burst(rate) == burst


def test_a_refund_gives_back_one_token_up_to_the_burst() -> None:
    limiter = RateLimiter()
    assert limiter.check("t", 0.001, 2, 0.0) == 0.0
    assert limiter.check("t", 0.001, 2, 0.0) == 0.0
    assert limiter.check("t", 0.001, 2, 0.0) > 0
    limiter.refund("t")
    assert limiter.check("t", 0.001, 2, 0.0) == 0.0
    limiter.refund("t")
    limiter.refund("t")
    limiter.refund("t")  # never above the burst
    assert limiter.check("t", 0.001, 2, 0.0) == 0.0
    assert limiter.check("t", 0.001, 2, 0.0) == 0.0
    assert limiter.check("t", 0.001, 2, 0.0) > 0
    limiter.refund("unknown")  # no bucket: nothing to give back
    assert "unknown" not in limiter.buckets
