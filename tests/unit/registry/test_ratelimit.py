from __future__ import annotations

from registry.server.ratelimit import TokenBuckets


def test_buckets_allow_a_burst_then_refill_at_the_rate() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate=2, burst=3, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == 0.5  # the next token is due in 1/rate s
    assert buckets.take("b") == 0.0  # keys are independent
    now[0] += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0


def test_zero_rate_means_unlimited() -> None:
    buckets = TokenBuckets(rate=0, burst=1)
    assert all(buckets.take("x") == 0.0 for _ in range(100))
