"""Service classes on the embedded backends, with an injected clock."""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from registry.errors import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    UploadExpiredError,
)
from registry.server.config import Settings
from registry.server.db import make_engine, make_sessionmaker, migrate
from registry.server.services import Action, Role, TokenService, UploadService
from registry.server.storage import LocalBlobStore
from registry.server.storage.hashstate import ResumableSha256


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def env(tmp_path: Path) -> tuple[Settings, Clock, TokenService, UploadService, LocalBlobStore]:
    settings = Settings(data_dir=tmp_path, min_chunk_bytes=4, upload_ttl_seconds=3600)
    migrate(settings.resolved_database_url)
    sessions = make_sessionmaker(make_engine(settings.resolved_database_url))
    clock = Clock()
    store = LocalBlobStore(tmp_path)
    return (
        settings,
        clock,
        TokenService(sessions, clock=clock),
        UploadService(sessions, store, settings, clock=clock),
        store,
    )


def test_tokens_expire_and_can_be_revoked(env: tuple) -> None:  # type: ignore[type-arg]
    _, clock, tokens, _, _ = env
    issued = tokens.create(name="ci", role=Role.PUBLISHER, namespace="ns",
                           expires_in=timedelta(days=1))  # fmt: skip
    principal = tokens.authenticate(issued.secret)
    assert (principal.name, principal.role, principal.namespace) == ("ci", Role.PUBLISHER, "ns")
    clock.now += timedelta(days=1)
    with pytest.raises(AuthenticationError):
        tokens.authenticate(issued.secret)
    other = tokens.create(name="ci2", role=Role.ADMIN)
    tokens.create(name="keeper", role=Role.ADMIN)  # the last admin token is never revoked
    tokens.authenticate(other.secret)
    tokens.revoke(other.id)
    with pytest.raises(AuthenticationError):
        tokens.authenticate(other.secret)


def test_tokens_are_stored_hashed(env: tuple, tmp_path: Path) -> None:  # type: ignore[type-arg]
    _, _, tokens, _, _ = env
    issued = tokens.create(name="ci", role=Role.ADMIN)
    secret = issued.secret.removeprefix("ms_").split("_", 1)[1]  # the id is hex, no "_"
    assert len(secret) >= 40
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("registry.db*"))
    assert secret.encode() not in stored
    tampered = issued.secret[:-1] + ("A" if issued.secret[-1] != "A" else "B")
    with pytest.raises(AuthenticationError):
        tokens.authenticate(tampered)


def test_scoped_tokens(env: tuple) -> None:  # type: ignore[type-arg]
    _, _, tokens, _, _ = env
    with pytest.raises(InvalidRequestError, match="only admin and auditor tokens"):
        tokens.create(name="x", role=Role.DEPLOYER)
    deployer = tokens.authenticate(tokens.create(name="d", role=Role.DEPLOYER,
                                                 namespace="ns").secret)  # fmt: skip
    deployer.require(Action.READ, "ns")
    with pytest.raises(PermissionDeniedError, match="may not push"):
        deployer.require(Action.PUSH, "ns")
    with pytest.raises(PermissionDeniedError, match="may not read in namespace 'other'"):
        deployer.require(Action.READ, "other")


def test_expired_upload_sessions_are_refused_and_cleaned(env: tuple) -> None:  # type: ignore[type-arg]
    _, clock, tokens, uploads, store = env
    admin = tokens.authenticate(tokens.create(name="a", role=Role.ADMIN).secret)
    data = b"0123456789"
    status = uploads.start(admin, "ns", hashlib.sha256(data).hexdigest(), len(data))
    assert status.id is not None
    ticket = uploads.begin_chunk(admin, status.id, 0, 5)
    hasher = ResumableSha256.from_state(ticket.hash_state)
    hasher.update(data[:5])
    assert uploads.commit_chunk(ticket, io.BytesIO(data[:5]), hasher.state) == 5
    assert any((store.root / "uploads").iterdir())

    clock.now += timedelta(hours=1, seconds=1)
    with pytest.raises(UploadExpiredError, match="expired"):
        uploads.status(admin, status.id)
    assert uploads.expire() == 1
    assert not any((store.root / "uploads").iterdir())
    with pytest.raises(NotFoundError):
        uploads.status(admin, status.id)


def test_sessions_are_invisible_across_namespaces(env: tuple) -> None:  # type: ignore[type-arg]
    _, _, tokens, uploads, _ = env
    admin = tokens.authenticate(tokens.create(name="a", role=Role.ADMIN).secret)
    other = tokens.authenticate(tokens.create(name="o", role=Role.PUBLISHER,
                                              namespace="other").secret)  # fmt: skip
    status = uploads.start(admin, "ns", "0" * 64, 3)
    assert status.id is not None
    with pytest.raises(NotFoundError):
        uploads.status(other, status.id)
    with pytest.raises(PermissionDeniedError):
        uploads.start(other, "ns", "0" * 64, 3)


def test_freed_heap_memory_can_be_handed_back_on_this_platform() -> None:
    """The BOM job and an inline scan hand freed C heap back to the OS (glibc's malloc_trim):
    found here, and callable."""
    from registry.server.services import common

    assert common._TRIM is not None
    common.release_memory()
