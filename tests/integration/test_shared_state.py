"""State shared across replicas lives in the database: two registry instances over one real
PostgreSQL share the rate limits (and the security-event outbox, below)."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from registry.server.api.problems import unavailable
from registry.server.config import Settings
from registry.server.db import make_engine, make_sessionmaker, transaction
from registry.server.models import EventOutbox
from registry.server.services import journal
from registry.server.services.events import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    Event,
    SecurityEvents,
    stage,
    verify_signature,
)
from registry.server.services.ratelimit import TokenBuckets
from tests.support import Live, free_port, make_model_dir, replica, serve

pytestmark = pytest.mark.integration


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
        # 1 token at 0.01/s: 100 s, less what refilled since the fifth (seconds on a busy machine)
        assert 90 <= int(refused.headers["retry-after"]) <= 100
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


# -- the security-event outbox -------------------------------------------------------------------

SECRET = b"outbox-webhook-secret"


class Receiver:
    """A real HTTP webhook receiver on loopback. ``statuses(n)`` answers the n-th request (1-based,
    default 204); while ``hold`` is clear the first request is not answered."""

    def __init__(self, statuses: Callable[[int], int] = lambda n: 204) -> None:
        self.requests: list[tuple[float, dict[str, str], bytes]] = []
        self.cond = threading.Condition()
        self.hold: threading.Event | None = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.cond:
                    receiver.requests.append((time.monotonic(), dict(self.headers), body))
                    n = len(receiver.requests)
                    receiver.cond.notify_all()
                if n == 1 and receiver.hold is not None:
                    receiver.hold.wait(30)
                self.send_response(statuses(n))
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, count: int, timeout: float = 15) -> list[dict[str, Any]]:
        """The bodies of the first ``count`` requests (fewer on timeout), each signature checked
        and its event id header matching the body."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.requests) < count and time.monotonic() < deadline:
                self.cond.wait(0.05)
            got = list(self.requests)
        bodies = []
        for _, headers, body in got:
            assert verify_signature(SECRET, body, headers[SIGNATURE_HEADER])
            parsed = json.loads(body)
            assert headers[EVENT_ID_HEADER] == parsed["event_id"]
            bodies.append(parsed)
        return bodies

    def quiet(self, count: int, seconds: float = 0.7) -> bool:
        """No more than ``count`` requests arrive within ``seconds``."""
        time.sleep(seconds)
        with self.cond:
            return len(self.requests) <= count


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    if r.hold is not None:
        r.hold.set()
    r.server.shutdown()


@contextmanager
def worker(
    url: str, hook: str, *, name: str = "replica", **extra: Any
) -> Iterator[tuple[SecurityEvents, sessionmaker[Session]]]:
    """One replica's events and outbox worker (its own engine and pool, as a process has; its
    connections carry ``name`` as their PostgreSQL application_name)."""
    engine = make_engine(url, connect_args={"connect_timeout": 10, "application_name": name})
    sessions = make_sessionmaker(engine)
    events = SecurityEvents(webhooks=[hook], secret=SECRET, allow_private=True,
                            sessions=sessions, poll_seconds=0.05, **extra)  # fmt: skip
    try:
        yield events, sessions
    finally:
        events.stop()
        engine.dispose()


def _rows(url: str) -> list[EventOutbox]:
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as session:
            return list(session.execute(select(EventOutbox).order_by(EventOutbox.id)).scalars())
    finally:
        engine.dispose()


def _revoked(sessions: sessionmaker[Session], version: str) -> None:
    with transaction(sessions) as session:
        stage(session, Event.VERSION_REVOKED, actor="admin", version=version, reason="test")


def _delivered(events: SecurityEvents) -> float:
    return float(events.metrics.deliveries.labels(outcome="delivered")._value.get())


def test_an_event_whose_change_rolls_back_is_never_delivered(
    tmp_path: Path, pg_url: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rejection is staged with its event, then the transaction fails before commit: no
    event row, nothing sent. The same rejection committed: exactly one event."""
    settings = Settings(data_dir=tmp_path / "data", database_url=pg_url, webhooks=[receiver.url],
                        webhook_secret=SECRET.decode(), webhook_allow_private=True,
                        webhook_poll_seconds=0.05)  # fmt: skip
    with serve(settings) as live, live.client() as admin:
        admin.push(make_model_dir(tmp_path / "m"), "ns/m@1")

        def crash(action: str) -> None:
            if action == "reject_version":
                raise RuntimeError("crash before the rejection's audit entry")

        monkeypatch.setattr(journal, "crash_hook", crash)
        answer = httpx.post(f"{live.url}/v1/namespaces/ns/artifacts/m/versions/1/reject",
                            json={"reason": "crashed"},
                            headers={"Authorization": f"Bearer {live.admin_token}"})  # fmt: skip
        assert answer.status_code == 500
        assert admin.show("ns/m@1").state == "pending"
        assert _rows(pg_url) == []
        assert receiver.quiet(0)

        monkeypatch.setattr(journal, "crash_hook", None)
        admin.reject("ns/m@1", "unsigned build")
        [event] = receiver.wait(1)
        assert (event["event"], event["version"], event["reason"]) == (
            "version_rejected", "ns/m@1", "unsigned build"
        )  # fmt: skip
        assert receiver.quiet(1)
        [row] = _rows(pg_url)
        assert (row.status, row.attempts, row.event_id) == ("delivered", 1, event["event_id"])


def test_an_event_left_by_a_stopped_replica_is_delivered_by_another(
    pg_url: str, receiver: Receiver
) -> None:
    with (
        worker(pg_url, receiver.url) as (first, sessions),
        worker(pg_url, receiver.url) as (second, _),
    ):
        first.start()
        first.stop()  # the first replica goes away before delivering what it wrote
        _revoked(sessions, "ns/m@1")
        assert receiver.quiet(0)  # nobody delivered it: the first worker really is gone
        assert [r.status for r in _rows(pg_url)] == ["pending"]
        second.start()
        [event] = receiver.wait(1)
        assert event["version"] == "ns/m@1"
        assert receiver.quiet(1)
        assert [(r.status, r.attempts) for r in _rows(pg_url)] == [("delivered", 1)]
        assert (_delivered(first), _delivered(second)) == (0, 1)


def test_a_replica_dying_mid_delivery_releases_its_claim_at_once(
    pg_url: str, receiver: Receiver
) -> None:
    """The first worker holds the row (locked) while its receiver hangs: the second skips it.
    The first replica's connection dies: the second delivers at once (no lease to wait out).
    The receiver may then see the event twice, with one event id to dedupe by."""
    receiver.hold = threading.Event()
    with (
        worker(pg_url, receiver.url, name="first") as (first, sessions),
        worker(pg_url, receiver.url, name="second") as (second, _),
    ):
        first.start()
        _revoked(sessions, "ns/m@1")
        assert len(receiver.wait(1)) == 1  # the first worker is mid-attempt
        second.start()
        assert receiver.quiet(1, 1.0)  # SKIP LOCKED: the claimed row is not taken twice
        killed = _terminate_claimers(pg_url, "first")  # the second may be mid-poll too
        assert killed == 1
        started = time.monotonic()
        events = receiver.wait(2, timeout=10)
        assert len(events) == 2 and time.monotonic() - started < 5
        assert events[0]["event_id"] == events[1]["event_id"]
        receiver.hold.set()
        deadline = time.monotonic() + 10
        while _rows(pg_url)[0].status != "delivered" and time.monotonic() < deadline:
            time.sleep(0.05)
        [row] = _rows(pg_url)
        assert (row.status, row.attempts) == ("delivered", 1)
        assert _delivered(second) == 1


def _terminate_claimers(url: str, application: str) -> int:
    """Kill the database sessions of the replica ``application`` that hold an outbox claim
    (that replica's process dying)."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            killed = conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    " AND state = 'idle in transaction' AND query LIKE :claim"
                    " AND application_name = :application"
                ),
                {"claim": "%FOR UPDATE SKIP LOCKED%", "application": application},
            )
            return len(killed.all())
    finally:
        engine.dispose()


def test_two_workers_deliver_each_event_once(pg_url: str) -> None:
    receiver = Receiver(lambda n: time.sleep(0.01) or 204)  # type: ignore[func-returns-value]
    try:
        with (
            worker(pg_url, receiver.url) as (first, sessions),
            worker(pg_url, receiver.url) as (second, _),
        ):
            first.start()
            second.start()
            for i in range(40):
                _revoked(sessions, f"ns/m@{i}")
            events = receiver.wait(40, timeout=30)
            assert receiver.quiet(40)
            ids = [e["event_id"] for e in events]
            assert len(ids) == 40 and len(set(ids)) == 40
            assert sorted(e["version"] for e in events) == sorted(f"ns/m@{i}" for i in range(40))
            assert _delivered(first) + _delivered(second) == 40
            assert _delivered(first) > 0 and _delivered(second) > 0  # both really worked
            assert {(r.status, r.attempts) for r in _rows(pg_url)} == {("delivered", 1)}
    finally:
        receiver.server.shutdown()


def test_a_failing_receiver_gets_retries_with_backoff_then_the_row_is_dead(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = Receiver(lambda n: 503)
    try:
        with worker(pg_url, receiver.url, max_attempts=4, retry_seconds=0.2) as (events, sessions):
            events.start()
            _revoked(sessions, "ns/m@1")
            bodies = receiver.wait(4, timeout=15)
            assert receiver.quiet(4, 1.5)  # the bound: no fifth attempt
            times = [t for t, _, _ in receiver.requests]
            gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
            for gap, backoff in zip(gaps, (0.2, 0.4, 0.8), strict=True):
                assert gap >= backoff * 0.9, gaps
            assert len({b["event_id"] for b in bodies}) == 1  # one event, four attempts
            [row] = _rows(pg_url)
            assert (row.status, row.attempts, row.last_error) == ("dead", 4, "answered 503")
            outcome = events.metrics.deliveries.labels
            assert (outcome(outcome="retried")._value.get(),
                    outcome(outcome="failed")._value.get()) == (3, 1)  # fmt: skip
            assert events.maintain() == {"pending": 0, "delivered": 0, "dead": 1}
            assert b'modelseal_webhook_outbox{status="dead"} 1.0' in events.metrics.exposition()
            assert any("is dead after 4 attempt(s)" in r.message for r in caplog.records)
    finally:
        receiver.server.shutdown()


def test_a_permanent_refusal_is_dead_at_once_and_a_recovered_receiver_gets_the_event(
    pg_url: str,
) -> None:
    """A 4xx (not 429) will not change by retrying: dead after one attempt. A 429 or 5xx is
    retried, and a receiver that comes back gets the event."""
    receiver = Receiver(lambda n: {1: 410, 2: 429, 3: 500}.get(n, 204))
    try:
        with worker(pg_url, receiver.url, retry_seconds=0.1) as (events, sessions):
            _revoked(sessions, "ns/gone@1")
            assert events.deliver_next()  # 410
            _revoked(sessions, "ns/m@2")
            events.start()
            bodies = receiver.wait(4)
            assert receiver.quiet(4)
            assert [b["version"] for b in bodies] == ["ns/gone@1"] + ["ns/m@2"] * 3
            rows = _rows(pg_url)
            assert [(r.status, r.attempts) for r in rows] == [("dead", 1), ("delivered", 3)]
            assert rows[0].last_error == "answered 410"
    finally:
        receiver.server.shutdown()
