"""State shared across replicas lives in the database: two registry instances over one real
PostgreSQL share the rate limits (and the security-event outbox, below)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy.exc import OperationalError

from registry.server.api.problems import unavailable
from registry.server.app import create_app
from registry.server.config import Settings
from registry.server.db import make_engine
from registry.server.ratelimit import TokenBuckets
from tests.conftest import Live, free_port, serve

pytestmark = pytest.mark.integration


@contextmanager
def replica(settings: Settings) -> Iterator[str]:
    """One more registry process over the same database (no bootstrap: the first one did)."""
    app = create_app(settings, expiry_interval=None)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def two_replicas(tmp_path: Path, pg_url: str, **extra: Any) -> Iterator[tuple[Live, str, str]]:
    settings = Settings(data_dir=tmp_path / "data", database_url=pg_url, **extra)
    with serve(settings) as live, replica(settings) as other:
        yield live, live.url, other


# -- rate limits ---------------------------------------------------------------------------------


def test_two_replicas_share_a_token_bucket(tmp_path: Path, pg_url: str) -> None:
    """Five requests allowed per token in all: spread over both replicas, the sixth is refused
    (per-process buckets would allow five on each)."""
    with two_replicas(tmp_path, pg_url, rate_per_token=0.01, burst_per_token=5) as (live, a, b):
        with live.client() as admin:  # one of the five
            other_token = admin.create_token("other", "deployer", "ns").token
        headers = {"Authorization": f"Bearer {live.admin_token}"}
        codes = [httpx.get(f"{url}/v1/namespaces", headers=headers).status_code
                 for url in (a, b, a, b, a)]  # fmt: skip
        assert codes == [200, 200, 200, 200, 429]
        refused = httpx.get(f"{b}/v1/namespaces", headers=headers)
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"].endswith("/rate-limited")
        assert int(refused.headers["retry-after"]) == 100  # 1 token at 0.01/s
        # Another token has its own bucket, on both replicas.
        mine = {"Authorization": f"Bearer {other_token}"}
        assert httpx.get(f"{a}/v1/namespaces", headers=mine).status_code == 200
        assert httpx.get(f"{b}/v1/namespaces", headers=mine).status_code == 200


def test_two_replicas_share_an_address_bucket(tmp_path: Path, pg_url: str) -> None:
    """Token guessing from one address, alternating replicas, runs into one address limit."""
    with two_replicas(tmp_path, pg_url, rate_per_address=0.01, burst_per_address=6) as (
        _live,
        a,
        b,
    ):
        guess = {"Authorization": "Bearer ms_0000000000000000_guess"}
        codes = [httpx.get(f"{url}/v1/namespaces", headers=guess).status_code
                 for url in (a, b) * 4]  # fmt: skip
        assert codes == [401] * 6 + [429, 429]
        assert httpx.get(f"{b}/health").status_code == 200  # liveness is never limited


def test_the_limiter_fails_like_the_database_not_open(tmp_path: Path) -> None:
    """A limiter that cannot reach its database raises the outage (the API's 503), never
    answers 'allowed' (unlimited) or 'limited'."""
    engine = make_engine(f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none")
    buckets = TokenBuckets(engine, "token", rate=1, burst=1)
    with pytest.raises(OperationalError) as raised:
        buckets.take("t")
    assert unavailable(raised.value) == (
        "database-unavailable",
        "the database is unavailable; retry shortly",
    )
