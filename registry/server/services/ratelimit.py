"""Token-bucket rate limits, per API token and per client address, shared by every replica.

Each bucket is a row of ``rate_limit_buckets`` (bucket name, key): the tokens left and when they
were counted. A request spends one token with one statement, an ``INSERT … ON CONFLICT DO
UPDATE … RETURNING`` that refills the bucket for the time since it was counted, spends a token if
there is one and says whether it did: replicas behind one database limit a client as one
process would, with no read-then-write race between them. On PostgreSQL the statement runs in
autocommit (one round trip); on SQLite inside its write transaction.

Time is the counting replica's wall clock (unix seconds). A bucket never goes back in time: a
replica whose clock lags another's refills nothing until it catches up, so clock skew cannot
mint tokens beyond the skew itself.

When the database cannot be reached, :meth:`TokenBuckets.take` raises the driver's error, which
the API answers with a 503 like any other outage: requests are neither refused as limited nor
let through unlimited.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import Double, Engine, Table, bindparam, case, delete, func
from sqlalchemy.dialects import postgresql, sqlite

from registry.server.models import RateLimitBucket

#: A bucket idle this long past the time it needs to fill up again is deleted by :meth:`prune`.
PRUNE_MARGIN_SECONDS = 60.0
_KEY_LENGTH = 128  # the column's width; longer keys are hashed


class TokenBuckets:
    """The buckets named ``bucket`` (``token``, ``address``): ``rate`` tokens a second up to
    ``burst``. A rate of 0 means unlimited (no statement at all)."""

    def __init__(
        self,
        engine: Engine,
        bucket: str,
        rate: float,
        burst: float,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if burst < 1:
            raise ValueError("a bucket must hold at least one token")
        self.bucket = bucket
        self.rate = rate
        self.burst = burst
        self._clock = clock
        postgres = engine.dialect.name == "postgresql"
        # One statement is atomic by itself: no BEGIN/COMMIT round trips around it on PostgreSQL.
        self._engine = (
            engine.execution_options(isolation_level="AUTOCOMMIT") if postgres else engine
        )
        self._take = _take_statement(postgres)

    def take(self, key: str) -> float:
        """Spend one token for ``key``: 0.0 when allowed, else the seconds until one is due."""
        if self.rate <= 0:
            return 0.0
        if len(key) > _KEY_LENGTH:
            key = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
        params = {"bucket": self.bucket, "key": key, "now": self._clock(),
                  "rate": float(self.rate), "burst": float(self.burst)}  # fmt: skip
        with self._engine.begin() as conn:
            tokens, allowed = conn.execute(self._take, params).one()
        if allowed:
            return 0.0
        return max(0.0, (1 - float(tokens)) / self.rate)

    def prune(self) -> int:
        """Delete this limit's buckets that have been idle long enough to be full again (an
        absent bucket is a full one); returns how many."""
        if self.rate <= 0:
            return 0
        idle = self.burst / self.rate + PRUNE_MARGIN_SECONDS
        table = cast(Table, RateLimitBucket.__table__)
        with self._engine.begin() as conn:
            result = conn.execute(
                delete(table).where(
                    table.c.bucket == self.bucket, table.c.counted_at < self._clock() - idle
                )
            )
        return int(result.rowcount)


def _take_statement(postgres: bool) -> Any:
    table = cast(Table, RateLimitBucket.__table__)
    greatest, least = (func.greatest, func.least) if postgres else (func.max, func.min)
    insert = postgresql.insert if postgres else sqlite.insert
    now = bindparam("now", type_=Double)
    rate = bindparam("rate", type_=Double)
    burst = bindparam("burst", type_=Double)
    # Every SET expression reads the row as it was before this statement (both dialects).
    refilled = least(burst, table.c.tokens + greatest(0.0, now - table.c.counted_at) * rate)
    statement = insert(table).values(
        bucket=bindparam("bucket"), key=bindparam("key"), tokens=burst - 1.0, counted_at=now,
        allowed=True,
    )  # fmt: skip
    return statement.on_conflict_do_update(
        index_elements=[table.c.bucket, table.c.key],
        set_={
            "tokens": case((refilled >= 1.0, refilled - 1.0), else_=refilled),
            "counted_at": greatest(table.c.counted_at, now),
            "allowed": refilled >= 1.0,
        },
    ).returning(table.c.tokens, table.c.allowed)
