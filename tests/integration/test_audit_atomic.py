"""A state change and its audit entry are one transaction (on PostgreSQL + SeaweedFS).

A crash point between the staged change and its audit entry (the service's hook raises there)
must leave neither: the version stays pending, the token valid, the alias where it was, … and
``audit verify`` stays intact. Then the same call, without the crash, changes state and writes
exactly one entry about it (the middleware does not log it a second time)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from attest.predicates import RELEASE
from registry.errors import RegistryError
from registry.server.db import make_engine, make_sessionmaker
from registry.server.models import (
    AliasEvent,
    ApiToken,
    AuditEntry,
    Identity,
    NamespacePolicy,
    Version,
)
from registry.server.services import journal
from registry.wire import BATCH_BLOB_MAX_BYTES
from tests.integration.test_release import POLICY, World
from tests.support import Live, run_cli

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("backend", ["postgres-s3"], indirect=True),
]


class Crash(Exception):
    """What the crash point raises."""


@pytest.fixture
def crash_at(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str | None], None]]:
    def arm(action: str | None) -> None:
        def hook(name: str) -> None:
            if name == action:
                raise Crash(f"crash point before the audit entry of {name}")

        monkeypatch.setattr(journal, "crash_hook", hook if action else None)

    yield arm
    monkeypatch.setattr(journal, "crash_hook", None)


@pytest.fixture
def world(live: Live, tmp_path: Path) -> World:
    return World(live, tmp_path)


def _rows(live: Live, query: Any) -> list[Any]:
    engine = make_engine(live.settings.resolved_database_url)
    try:
        with make_sessionmaker(engine)() as session:
            return list(session.execute(query).all())
    finally:
        engine.dispose()


def _entries(live: Live) -> list[AuditEntry]:
    return [r[0] for r in _rows(live, select(AuditEntry).order_by(AuditEntry.seq))]


def _intact(live: Live) -> None:
    verified = run_cli("audit", "verify", live=live)
    assert verified.returncode == 0, verified.stderr


def _crashes(live: Live, action: str, call: Callable[[], object], route: str = "") -> None:
    """``call`` answers 500; the only new entries are the failed requests' ``error`` (and
    the middleware's of requests that changed nothing, such as a blob the namespace holds)."""
    before = len(_entries(live))
    with pytest.raises(RegistryError, match="internal error"):
        call()
    new = [e for e in _entries(live)[before:] if '"unchanged": true' not in e.details]
    assert {(e.action, e.outcome) for e in new} == {(route or action, "error")}
    _intact(live)


def _once(live: Live, action: str, before: int) -> AuditEntry:
    """Exactly one entry of ``action`` since ``before``, written by the service (the
    middleware's carry the status), and none by the middleware for the same request."""
    new = _entries(live)[before:]
    [entry] = [e for e in new if e.action == action]
    assert entry.outcome == "ok"
    assert [e.seq for e in new if e.request_id == entry.request_id and '"status"' in e.details] \
        == []  # fmt: skip
    return entry


def test_a_crash_between_release_and_its_entry_leaves_the_version_pending(
    world: World, crash_at: Callable[[str | None], None]
) -> None:
    """The issue's case: kill during release left versions released with no audit entry."""
    world.model(deps=[("fraud/tx@3", world.dataset())])
    crash_at("release_version")
    _crashes(world.live, "release_version", lambda: world.releaser.release("fraud/m@1"))
    assert world.admin.show("fraud/m@1").state == "pending"
    assert world.admin.list_attestations("fraud/m@1", RELEASE) == []

    crash_at(None)
    before = len(_entries(world.live))
    assert world.releaser.release("fraud/m@1").state == "released"
    entry = _once(world.live, "release_version", before)
    assert entry.target == "/v1/namespaces/fraud/artifacts/m/versions/1/release"
    assert entry.actor == "release-bot"
    assert len(world.admin.list_attestations("fraud/m@1", RELEASE)) == 1
    _intact(world.live)
    # Releasing again changes nothing: the middleware records it, marked unchanged.
    before = len(_entries(world.live))
    world.releaser.release("fraud/m@1")
    [again] = _entries(world.live)[before:]
    assert (again.action, again.outcome) == ("release_version", "ok")
    assert '"unchanged": true' in again.details


def test_a_crash_in_a_revocation_cascade_revokes_nothing(
    world: World, crash_at: Callable[[str | None], None]
) -> None:
    tx = world.dataset("fraud/tx@3")
    world.model("fraud/m@1", deps=[("fraud/tx@3", tx)])
    world.releaser.release("fraud/m@1")
    for action in ("revoke_dependent", "revoke_version"):
        crash_at(action)
        _crashes(
            world.live,
            action,
            lambda: world.releaser.revoke("fraud/tx@3", "poisoned"),
            route="revoke_version",
        )
        assert world.admin.show("fraud/tx@3").state == "released"
        assert world.admin.show("fraud/m@1").state == "released"
    crash_at(None)
    before = len(_entries(world.live))
    world.releaser.revoke("fraud/tx@3", "poisoned")
    root = _once(world.live, "revoke_version", before)
    dependent = _once(world.live, "revoke_dependent", before)
    assert root.request_id == dependent.request_id
    assert dependent.target == "/v1/namespaces/fraud/artifacts/m/versions/1"
    _intact(world.live)


def test_every_state_change_is_written_with_its_entry_or_not_at_all(
    world: World, crash_at: Callable[[str | None], None], tmp_path: Path
) -> None:
    """Each state-changing call: crashed (nothing changed, no entry), then done (one entry)."""
    live, admin = world.live, world.admin
    world.model("fraud/m@1", deps=[("fraud/tx@3", world.dataset())])
    world.releaser.release("fraud/m@1")
    token = admin.create_token("victim", "deployer", "fraud")
    victim_id = token.id
    model = tmp_path / "tiny"  # its one small file travels in a batch (upload_blobs)
    model.mkdir()
    (model / "config.json").write_text('{"x": 1}')
    big = tmp_path / "big"  # a file larger than a batch takes: an upload session
    big.mkdir()
    (big / "weights.bin").write_bytes(b"\1" * (BATCH_BLOB_MAX_BYTES + 1))

    def policies() -> int:
        return len(_rows(live, select(NamespacePolicy.id)))

    def identities() -> int:
        return len(_rows(live, select(Identity.id)))

    def tokens() -> int:
        return len(_rows(live, select(ApiToken.id)))

    def revoked() -> bool:
        return _rows(live, select(ApiToken.revoked_at).where(ApiToken.id == victim_id))[0][0] \
            is not None  # fmt: skip

    def moves() -> int:
        return len(_rows(live, select(AliasEvent.id)))

    def versions() -> int:
        return len(_rows(live, select(Version.id)))

    def state(ref: str) -> str:
        return admin.show(ref).state

    cases: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
        ("set_policy", lambda: admin.set_policy("fraud", POLICY), policies),
        ("add_identity", lambda: admin.add_key_identity("extra", _pem()), identities),
        ("create_token", lambda: admin.create_token("t2", "deployer", "fraud"), tokens),
        ("revoke_token", lambda: admin.revoke_token(victim_id), revoked),
        ("set_alias", lambda: admin.set_alias("fraud", "m", "prod", "1"), moves),
        ("upload_blobs", lambda: admin.push(model, "fraud/tiny@1"), versions),
        ("start_upload", lambda: admin.push(big, "fraud/big@1"), versions),
        ("put_version", lambda: admin.push(model, "fraud/tiny@2"), versions),
        ("reject_version", lambda: admin.reject("fraud/tiny@1", "not needed"),
         lambda: state("fraud/tiny@1")),
    ]  # fmt: skip
    for action, call, observe in cases:
        seen = observe()
        crash_at(action)
        _crashes(live, action, call)
        assert observe() == seen, action
        crash_at(None)
        before = len(_entries(live))
        call()
        assert observe() != seen, action
        _once(live, action, before)
    _intact(live)


def _pem() -> str:
    from attest import keys

    return keys.public_pem(keys.generate().public_key()).decode()
