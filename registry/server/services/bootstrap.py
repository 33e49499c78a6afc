"""First start: migrate the database and issue the first admin token."""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine

from attest.atomic import write_atomic
from attest.scan import MIN_RULESET
from registry.errors import ConfigurationError
from registry.server.config import Settings
from registry.server.db import make_engine, make_sessionmaker, migrate, startup_lock
from registry.server.services.auth import IssuedToken, Role, TokenService
from registry.server.services.common import utcnow
from registry.server.services.keys import load_registry_signer, register_registry_key
from registry.server.services.scanning import rescan_outdated
from registry.server.services.tlog import load_log_key, register_log

log = logging.getLogger(__name__)

ADMIN_TOKEN_FILE = "admin-token"  # noqa: S105 - a file name


def bootstrap(settings: Settings) -> Path | None:
    """Prepare a data dir and database; returns the admin-token path when one was written.

    The schema is migrated to the newest revision on every start (idempotent). When the database
    holds no token at all, an admin token is created and written to ``DATA_DIR/admin-token`` with
    mode 0600 — the only place its secret ever exists.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    url = settings.resolved_database_url
    # One lock around both steps: replicas starting together issue exactly one admin token.
    with startup_lock(url) as locked:
        migrate(url, locked=locked, isolated=True)
        engine = make_engine(url)
        try:
            sessions = make_sessionmaker(engine)
            register_registry_key(sessions, load_registry_signer(settings))
            register_log(sessions, settings, load_log_key(settings))  # its origin and key
            outdated = rescan_outdated(sessions, utcnow())
            if outdated:
                log.warning(
                    "%d pending version(s) were scanned under rules older than %s: they are "
                    "scanned again and served to nobody until then (%s)",
                    len(outdated),
                    MIN_RULESET,
                    ", ".join(outdated[:20]),
                )
            tokens = TokenService(sessions)
            if tokens.count():
                return None
            issued = tokens.create(name="admin", role=Role.ADMIN)
        finally:
            engine.dispose()
    target = settings.data_dir / ADMIN_TOKEN_FILE
    write_secret_file(target, issued.secret + "\n")
    return target


def write_secret_file(target: Path, text: str) -> None:
    """Write a file readable only by its owner, atomically (never world-readable, even briefly)."""
    write_atomic(target, text)


def operator_actor() -> str:
    """Who an operator command acts as in the audit log: ``operator@HOST`` (and the OS user)."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid-{os.getuid()}"
    return f"operator:{user}@{socket.gethostname()}"[:128]


def operator_engine(settings: Settings) -> Engine:
    """An engine on the registry's database for an operator command (which never migrates it).

    Raises:
        ConfigurationError: the database holds no modelseal schema (a wrong URL or data dir).
    """
    from sqlalchemy import inspect

    engine = make_engine(settings.resolved_database_url)
    if not inspect(engine).has_table("api_tokens"):
        engine.dispose()
        raise ConfigurationError(
            f"{settings.resolved_database_url.split('@')[-1]} holds no modelseal schema: "
            "is this the registry's database (--data-dir / --database-url)?"
        )
    return engine


def operator_admin_token(
    settings: Settings, *, name: str = "operator-admin", expires_in: timedelta | None = None
) -> IssuedToken:
    """Issue a registry-wide admin token straight into the database (audited, as
    :func:`operator_actor`): the way back for an operator with access to the server when no
    admin token works. Needs the database to be migrated already (a running registry's is)."""
    engine = operator_engine(settings)
    try:
        tokens = TokenService(make_sessionmaker(engine))
        return tokens.create(name=name, role=Role.ADMIN, expires_in=expires_in, by=operator_actor())
    finally:
        engine.dispose()
