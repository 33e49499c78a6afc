"""Locked out for good: the last registry-wide admin token that does not expire cannot be revoked
(409), and an operator with access to the server (not the API) can always issue one again,
audited. Both backends."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update

from registry.errors import AuthenticationError, ConflictError
from registry.server.db import make_engine, make_sessionmaker
from registry.server.models import ApiToken, AuditEntry
from registry.server.services.auth import Role, TokenService
from tests.support import Live, run_cli


def _admin_id(live: Live) -> str:
    with live.client() as client:
        [admin] = [t for t in client.list_tokens() if t.role == "admin" and not t.revoked]
    return admin.id


def test_the_last_lasting_admin_token_cannot_be_revoked(live: Live) -> None:
    """Attacker: anyone holding an admin token (or an API fuzzer): revoking the only admin
    token must not lock every administrator out. The acceptance: with another non-expiring
    admin token present, the revocation goes through."""
    first = _admin_id(live)
    with live.client() as client:
        with pytest.raises(ConflictError, match="locked out for good"):
            client.revoke_token(first)
        # An admin token that expires does not count: the lock-out would only be later.
        client.create_token("temp-admin", "admin", None, expires_days=1)
        with pytest.raises(ConflictError, match="no other registry-wide admin token"):
            client.revoke_token(first)
        scoped = client.create_token("ns-admin", "admin", "ns")
        client.revoke_token(scoped.id)  # namespace admins are not the way back: no guard
        second = client.create_token("second-admin", "admin", None)
    answer = run_cli("token", "revoke", first, live=live, token=second.token)
    assert answer.returncode == 0, answer.stderr
    refused = run_cli("token", "revoke", second.id, live=live, token=second.token)
    assert refused.returncode == 1
    assert "refusing to revoke token" in refused.stderr
    assert "modelseal admin token create --data-dir" in refused.stderr
    with live.client(token=second.token) as client:
        assert {t.id for t in client.list_tokens() if not t.revoked} >= {second.id}


@pytest.mark.integration
def test_two_admins_revoking_each_other_at_once_leave_one(pg_url: str) -> None:
    engine = make_engine(pg_url)
    tokens = TokenService(make_sessionmaker(engine))
    a = tokens.create(name="a", role=Role.ADMIN)
    b = tokens.create(name="b", role=Role.ADMIN)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def revoke(target: str, by: str) -> None:
        barrier.wait()
        try:
            tokens.revoke(target, by=by)
            outcomes.append("revoked")
        except ConflictError:
            outcomes.append("refused")

    threads = [threading.Thread(target=revoke, args=(a.id, "b")),
               threading.Thread(target=revoke, args=(b.id, "a"))]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    engine.dispose()
    assert sorted(outcomes) == ["refused", "revoked"]


def _lock_out(live: Live) -> None:
    """Every admin token revoked behind the API's back (as an older release allowed)."""
    engine = make_engine(live.settings.resolved_database_url)
    with engine.begin() as conn:
        conn.execute(update(ApiToken).values(revoked_at=datetime.now(UTC)))
    engine.dispose()


def test_an_operator_on_the_server_issues_an_admin_token_again(live: Live, tmp_path: Path) -> None:
    _lock_out(live)
    with live.client() as client, pytest.raises(AuthenticationError):
        client.list_tokens()
    settings = live.settings
    where = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        where += ["--database-url", settings.database_url]

    # The rejection first: a directory that is not the registry's issues nothing.
    wrong = run_cli("admin", "token", "create", "--data-dir", str(tmp_path / "elsewhere"))
    assert wrong.returncode == 1 and wrong.stdout == ""
    assert "holds no registry database" in wrong.stderr

    made = run_cli("admin", "token", "create", *where, "--name", "recovered")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("ms_") and token not in made.stderr
    with live.client(token=token) as client:
        assert any(t.name == "recovered" and t.role == "admin" for t in client.list_tokens())
    engine = make_engine(settings.resolved_database_url)
    with make_sessionmaker(engine)() as session:
        [entry] = session.execute(
            select(AuditEntry).where(AuditEntry.action == "create_token")
        ).scalars()
    engine.dispose()
    assert entry.actor.startswith("operator:") and "@" in entry.actor
    assert entry.outcome == "ok" and '"name": "recovered"' in entry.details
    verified = run_cli("audit", "verify", live=live, token=token)
    assert verified.returncode == 0, verified.stderr
    assert httpx.get(f"{live.url}/health").status_code == 200
