"""The one door from the command line into the server.

``modelseal serve`` and ``modelseal admin …`` import this module inside the command (so every
other command starts without FastAPI or SQLAlchemy); nothing else in :mod:`registry.cli` imports
:mod:`registry.server`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from registry.server.config import Settings
from registry.server.services.auth import IssuedToken
from registry.server.services.bootstrap import bootstrap, operator_actor, operator_admin_token
from registry.server.services.maintenance import MaintenanceService, Report

__all__ = [
    "Report",
    "Settings",
    "bootstrap",
    "collect_garbage",
    "fsck",
    "issue_admin_token",
    "operator_actor",
    "run",
    "run_witness",
    "settings",
]


def settings(
    data_dir: Path, database_url: str | None = None, storage: str | None = None
) -> Settings:
    """Settings for DATA_DIR, with the command line's overrides (the environment fills the rest)."""
    overrides: dict[str, Any] = {"data_dir": data_dir}
    if database_url:
        overrides["database_url"] = database_url
    if storage:
        overrides["storage"] = storage
    return Settings(**overrides)


def run(
    settings: Settings,
    *,
    host: str,
    port: int,
    tls_cert: Path | None,
    tls_key: Path | None,
    drain_seconds: int,
) -> None:
    """Serve the API with uvicorn until SIGTERM/SIGINT (after :func:`bootstrap`)."""
    import uvicorn

    from registry.server.api import httpproto
    from registry.server.app import create_app

    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
        log_level="info",
        access_log=False,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=drain_seconds,
        # uvicorn believes X-Forwarded-For from 127.0.0.1 by default: a client on the host (or
        # behind a TCP-level proxy) could then pick its own address for the per-address limits.
        http=httpproto.protocol(),
        proxy_headers=settings.forwarded_allow_ips is not None,
        forwarded_allow_ips=settings.forwarded_allow_ips or "",
    )


def run_witness(signer: Any, logs: list[Any], state_dir: Path, *, host: str, port: int) -> None:
    """Serve a witness (:mod:`registry.server.witness`) with uvicorn until SIGTERM/SIGINT:
    ``signer`` an :class:`attest.note.NoteSigner` of type 0x04, ``logs`` the
    :class:`attest.note.NoteVerifier` of each log it follows.

    Raises:
        ConfigurationError: the state directory holds a checkpoint that does not verify.
    """
    import uvicorn

    from registry.errors import ConfigurationError
    from registry.server import witness

    try:
        app = witness.create_app(witness.Witness(signer, logs, state_dir))
    except (witness.WitnessStateError, ValueError) as exc:
        raise ConfigurationError(str(exc)) from exc
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False,
                timeout_keep_alive=30)  # fmt: skip


def issue_admin_token(settings: Settings, *, name: str, expires_days: int | None) -> IssuedToken:
    """A registry-wide admin token written straight to the database (audited as the operator)."""
    return operator_admin_token(
        settings, name=name, expires_in=timedelta(days=expires_days) if expires_days else None
    )


def fsck(settings: Settings, *, rehash: bool) -> Report:
    """Check the database against the blob store (audited as the operator)."""
    with _maintenance(settings) as service:
        return service.fsck(operator_actor(), rehash=rehash)


def collect_garbage(settings: Settings, *, grace_hours: float, dry_run: bool) -> Report:
    """Delete what no version references, older than the grace period (audited as the
    operator)."""
    with _maintenance(settings) as service:
        return service.gc(operator_actor(), grace=timedelta(hours=grace_hours), dry_run=dry_run)


@contextmanager
def _maintenance(settings: Settings) -> Iterator[MaintenanceService]:
    from registry.server.db import make_sessionmaker
    from registry.server.services.bootstrap import operator_engine
    from registry.server.storage import open_blob_store

    engine = operator_engine(settings)
    try:
        yield MaintenanceService(make_sessionmaker(engine), open_blob_store(settings))
    finally:
        engine.dispose()
