"""Webhook targets are vetted, bodies are HMAC-signed, auth-failure bursts are detected."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from registry.errors import ConfigurationError
from registry.server.db import make_engine, make_sessionmaker, migrate, transaction
from registry.server.models import EventOutbox
from registry.server.services.events import (
    Event,
    SecurityEvents,
    Target,
    UnresolvableTargetError,
    WebhookTargetError,
    parse_target,
    resolve,
    sign,
    stage,
    verify_signature,
)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://127.8.9.1:8080/hook",
        "http://[::1]/hook",
        "http://localhost/hook",
        "https://169.254.169.254/latest/meta-data",  # cloud metadata
        "http://10.0.0.7/hook",
        "http://172.16.3.4/hook",
        "http://192.168.1.1/hook",
        "http://100.64.0.1/hook",  # shared address space
        "http://[fc00::1]/hook",
        "http://[fe80::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",  # v4-mapped loopback
        "http://0.0.0.0/hook",
        "http://224.0.0.1/hook",
    ],
)
def test_non_public_targets_are_refused(url: str) -> None:
    with pytest.raises(WebhookTargetError, match=r"MODELSEAL_WEBHOOK_ALLOW_PRIVATE|unicast"):
        parse_target(url, allow_private=False)


@pytest.mark.parametrize(
    "url",
    ["ftp://hooks.example/x", "https://user:pw@hooks.example/x", "hooks.example/x", "http://"],
)
def test_malformed_targets_are_refused(url: str) -> None:
    with pytest.raises(WebhookTargetError):
        parse_target(url, allow_private=True)


def test_public_and_explicitly_allowed_private_targets() -> None:
    target = parse_target("https://8.8.8.8:8443/h?x=1", allow_private=False)
    assert (target.host, target.port, target.path, target.https) == (
        "8.8.8.8",
        8443,
        "/h?x=1",
        True,
    )
    assert parse_target("http://127.0.0.1:9/h", allow_private=True).port == 9
    with pytest.raises(WebhookTargetError, match="unicast"):  # never, even when allowed
        parse_target("http://0.0.0.0/h", allow_private=True)


def test_a_name_resolving_to_loopback_is_refused_at_delivery() -> None:
    """The DNS-rebinding guard: names are checked when resolved, not only when configured."""
    target = Target(url="http://localhost/h", https=False, host="localhost", port=80, path="/h")
    with pytest.raises(WebhookTargetError, match="loopback"):
        resolve(target, allow_private=False)
    assert resolve(target, allow_private=True) in {"127.0.0.1", "::1"}


def test_a_name_that_does_not_resolve_is_a_transient_failure_not_a_misconfiguration() -> None:
    """Delivery retries it; were it a ConfigurationError, ``serve`` would report it as start-up
    misconfiguration and delivery would drop the event as refused."""
    target = Target(
        url="http://hook.invalid/h", https=False, host="hook.invalid", port=80, path="/h"
    )
    with pytest.raises(UnresolvableTargetError, match="cannot resolve") as caught:
        resolve(target, allow_private=False)
    assert not isinstance(caught.value, ConfigurationError | WebhookTargetError)


def test_webhooks_need_a_secret() -> None:
    with pytest.raises(WebhookTargetError, match="MODELSEAL_WEBHOOK_SECRET"):
        SecurityEvents(webhooks=["https://8.8.8.8/h"])


def test_signature_round_trip_and_rejections() -> None:
    body = b'{"event":"version_revoked"}'
    now = int(time.time())
    header = sign(b"k", body, now)
    assert verify_signature(b"k", body, header)
    assert not verify_signature(b"other key", body, header)
    assert not verify_signature(b"k", body + b" ", header)
    assert not verify_signature(b"k", body, sign(b"k", body, now - 3600))  # stale
    assert not verify_signature(b"k", body, "garbage")


def test_auth_failure_bursts_raise_one_event_per_burst() -> None:
    now = [0.0]
    events = SecurityEvents(burst_count=3, burst_window=10, clock=lambda: now[0])
    counter = events.metrics.events.labels(event=str(Event.AUTH_FAILURE_BURST))
    for _ in range(2):
        events.auth_failure("10.0.0.1")
        events.auth_failure("10.0.0.2")
    assert counter._value.get() == 0
    now[0] = 11.0  # the first two from 10.0.0.1 fall out of the window
    events.auth_failure("10.0.0.1")
    assert counter._value.get() == 0
    events.auth_failure("10.0.0.1")
    events.auth_failure("10.0.0.1")
    assert counter._value.get() == 1
    events.auth_failure("10.0.0.1")  # the window restarts after an event
    assert counter._value.get() == 1
    assert events.metrics.auth_failures._value.get() == 8


def test_sqlite_outbox_rows_exist_only_for_committed_changes_and_failures_are_retried(
    tmp_path: Path,
) -> None:
    """SQLite: a staged event whose transaction rolls back leaves no row; a committed one is
    claimed outside the write lock and, when the receiver cannot be reached, retried later."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    migrate(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    events = SecurityEvents(webhooks=[closed], secret=b"k", allow_private=True,
                            sessions=sessions, retry_seconds=60)  # fmt: skip
    counter = events.metrics.events.labels(event=str(Event.VERSION_REVOKED))
    with pytest.raises(RuntimeError), transaction(sessions) as session:
        stage(session, Event.VERSION_REVOKED, version="ns/m@1")
        raise RuntimeError("the change fails")
    with sessions() as session:
        assert session.execute(select(EventOutbox)).all() == []
    assert counter._value.get() == 0 and not events.deliver_next()

    with transaction(sessions) as session:
        stage(session, Event.VERSION_REVOKED, version="ns/m@1")
    assert counter._value.get() == 1
    assert events.deliver_next()  # connection refused: one failed attempt
    assert not events.deliver_next()  # not due again for a minute
    with sessions() as session:
        row = session.execute(select(EventOutbox)).scalar_one()
    assert (row.status, row.attempts, row.target) == ("pending", 1, closed)
    assert "ConnectionRefusedError" in (row.last_error or "")
    assert json.loads(row.body)["event_id"] == row.event_id
    assert events.metrics.deliveries.labels(outcome="retried")._value.get() == 1
    engine.dispose()


def test_webhooks_need_the_database_outbox() -> None:
    with pytest.raises(WebhookTargetError, match="database"):
        SecurityEvents(webhooks=["https://8.8.8.8/h"], secret=b"k")


def test_a_repeated_client_report_sends_one_webhook_and_dead_rows_expire(tmp_path: Path) -> None:
    """A token reporting the same failure again and again fills neither the outbox nor the
    receivers (attack round 3: 1,000 reports were 1,000 rows); dead rows do not stay for ever."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    url = f"sqlite:///{tmp_path / 'r.db'}"
    migrate(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    now = [1000.0]
    events = SecurityEvents(webhooks=["http://127.0.0.1:9/hook"], secret=b"k", allow_private=True,
                            sessions=sessions, clock=lambda: now[0])  # fmt: skip

    def report(reference: str, actor: str = "ci") -> None:
        events.emit(Event.VERIFICATION_FAILURE, source="client pull", actor=actor,
                    reference=reference, detail="x" * 4000)  # fmt: skip

    def rows() -> int:
        with sessions() as session:
            return len(session.execute(select(EventOutbox)).all())

    for _ in range(50):
        report("ns/m@1")
    assert rows() == 1
    report("ns/m@2")
    report("ns/m@1", actor="other")
    assert rows() == 3
    now[0] += 61
    report("ns/m@1")
    assert rows() == 4
    counter = events.metrics.events.labels(event=str(Event.VERIFICATION_FAILURE))
    assert counter._value.get() == 53  # every report is counted
    events.emit(Event.VERIFICATION_FAILURE, source="registry", actor="ci", reference="ns/m@1",
                detail="refused at upload")  # fmt: skip
    events.emit(Event.VERIFICATION_FAILURE, source="registry", actor="ci", reference="ns/m@1",
                detail="refused at upload")  # fmt: skip
    assert rows() == 6  # the registry's own events are never folded

    old = datetime.now(UTC) - timedelta(days=31)
    recent = datetime.now(UTC) - timedelta(days=29)
    with transaction(sessions) as session:
        ids = list(session.execute(select(EventOutbox.id)).scalars())
        session.execute(update(EventOutbox).where(EventOutbox.id == ids[0])
                        .values(status="dead", updated_at=old))  # fmt: skip
        session.execute(update(EventOutbox).where(EventOutbox.id == ids[1])
                        .values(status="dead", updated_at=recent))  # fmt: skip
    assert events.maintain()["dead"] == 1
    assert rows() == 5
    engine.dispose()
