"""Token buckets in the database (SQLite here; PostgreSQL and two replicas in
tests/integration/test_shared_state.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from registry.server.db import make_engine, migrate
from registry.server.models import RateLimitBucket
from registry.server.services.ratelimit import PRUNE_MARGIN_SECONDS, TokenBuckets


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    migrate(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def test_buckets_allow_a_burst_then_refill_at_the_rate(engine: Engine) -> None:
    now = [1000.0]
    buckets = TokenBuckets(engine, "token", rate=2, burst=3, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == 0.5  # the next token is due in 1/rate s
    assert buckets.take("a") == 0.5  # a refused request spends nothing
    assert buckets.take("b") == 0.0  # keys are independent
    now[0] += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0
    now[0] += 100  # refills up to the burst, not beyond
    assert [buckets.take("a") for _ in range(4)] == [0.0, 0.0, 0.0, 0.5]


def test_two_limiters_on_one_database_share_a_bucket(engine: Engine) -> None:
    """Two replicas' limiters (here: two objects, two connections) count one client once."""
    now = [1000.0]
    one = TokenBuckets(engine, "token", rate=1, burst=4, clock=lambda: now[0])
    other = TokenBuckets(make_engine(str(engine.url)), "token", rate=1, burst=4,
                         clock=lambda: now[0])  # fmt: skip
    answers = [(one if i % 2 else other).take("t1") for i in range(6)]
    assert answers == [0.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    # … but different bucket names (token vs address) never mix.
    address = TokenBuckets(engine, "address", rate=1, burst=4, clock=lambda: now[0])
    assert address.take("t1") == 0.0


def test_a_clock_behind_the_last_count_refills_nothing(engine: Engine) -> None:
    now = [1000.0]
    buckets = TokenBuckets(engine, "token", rate=1, burst=1, clock=lambda: now[0])
    assert buckets.take("a") == 0.0
    now[0] -= 30  # another replica's clock, half a minute behind
    assert buckets.take("a") == 1.0
    assert buckets.take("a") == 1.0  # nothing was minted by going back in time
    now[0] += 31
    assert buckets.take("a") == 0.0


def test_zero_rate_means_unlimited_and_touches_no_row(engine: Engine) -> None:
    buckets = TokenBuckets(engine, "token", rate=0, burst=1)
    assert all(buckets.take("x") == 0.0 for _ in range(100))
    with engine.connect() as conn:
        assert conn.execute(select(RateLimitBucket.key)).all() == []


def test_long_keys_are_hashed_into_the_column(engine: Engine) -> None:
    buckets = TokenBuckets(engine, "address", rate=1, burst=1, clock=lambda: 5.0)
    assert buckets.take("k" * 500) == 0.0
    assert buckets.take("k" * 500) == 1.0
    assert buckets.take("k" * 499) == 0.0  # a different key, not a truncated collision
    with engine.connect() as conn:
        keys = conn.execute(select(RateLimitBucket.key)).scalars().all()
    assert all(len(k) <= 128 and k.startswith("sha256:") for k in keys) and len(keys) == 2


def test_prune_deletes_only_buckets_idle_long_enough_to_be_full(engine: Engine) -> None:
    now = [1000.0]
    buckets = TokenBuckets(engine, "token", rate=2, burst=10, clock=lambda: now[0])
    other = TokenBuckets(engine, "address", rate=2, burst=10, clock=lambda: now[0])
    buckets.take("idle")
    other.take("idle")
    now[0] += 10 / 2 + PRUNE_MARGIN_SECONDS - 1
    buckets.take("busy")
    assert buckets.prune() == 0  # not idle long enough yet
    now[0] += 2
    assert buckets.prune() == 1
    with engine.connect() as conn:
        rows = {tuple(r) for r in conn.execute(select(RateLimitBucket.bucket, RateLimitBucket.key))}
    assert rows == {("token", "busy"), ("address", "idle")}  # the other limit prunes its own


def test_a_bucket_needs_room_for_one_token(engine: Engine) -> None:
    with pytest.raises(ValueError, match="at least one token"):
        TokenBuckets(engine, "token", rate=1, burst=0.5)
