"""Engines, sessions and migrations. Nothing connects at import time."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"

#: The newest migration's revision (``migrations/versions/``): a database already there is not
#: handed to Alembic at all, so a server's start does not load it (~11 MiB it would keep for
#: the process's life). A test holds this equal to Alembic's own head.
HEAD_REVISION = "0013"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets WAL, foreign keys and write-serializing transactions."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy, not pysqlite, emit BEGIN, so it can be BEGIN IMMEDIATE below.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # IMMEDIATE takes the write lock up front: concurrent read-then-write transactions
            # wait for each other instead of failing with SQLITE_BUSY when they upgrade.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql"):
        # An unreachable host fails the request (503) in seconds instead of hanging it.
        kwargs.setdefault("connect_args", {"connect_timeout": 10})
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, **kwargs)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    with factory() as session, session.begin():
        yield session


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


#: Any constant; replicas starting together on one PostgreSQL take turns on it.
_STARTUP_LOCK = 0x6D6F64656C7365


@contextmanager
def startup_lock(url: str) -> Iterator[Connection | None]:
    """Serialize start-up work (migrations, the first admin token) across replicas.

    On PostgreSQL: a session advisory lock, held on the yielded connection. On SQLite there is one
    host; write transactions are serialized by ``BEGIN IMMEDIATE`` already, and None is yielded.
    """
    if not url.startswith("postgresql"):
        yield None
        return
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"SELECT pg_advisory_lock({_STARTUP_LOCK})")
            conn.commit()
            try:
                yield conn
            finally:
                conn.rollback()
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({_STARTUP_LOCK})")
                conn.commit()
    finally:
        engine.dispose()


def migrate(url: str, *, locked: Connection | None = None, isolated: bool = False) -> None:
    """Bring the database schema to the newest migration.

    Replicas starting at the same moment on one PostgreSQL migrate one at a time; pass the
    connection of an already held :func:`startup_lock` as ``locked``. ``isolated``: a due
    migration runs in a child process (the lock stays held here), so that a long-running server
    does not carry alembic and the migration scripts (~11 MiB) for the rest of its life.

    Raises:
        MigrationError: the child process failed (its error is on standard error).
    """
    if locked is None and url.startswith("postgresql"):
        with startup_lock(url) as conn:
            migrate(url, locked=conn, isolated=isolated)
        return
    if locked is not None:
        current = _at_head(locked)
        locked.commit()
    else:
        current = _url_at_head(url)
    if current:
        return
    if isolated:
        _migrate_in_child(url)
        return
    from alembic import command

    cfg = alembic_config(url)
    if locked is not None:
        cfg.attributes["connection"] = locked
        command.upgrade(cfg, "head")
        locked.commit()
    else:
        command.upgrade(cfg, "head")


class MigrationError(RuntimeError):
    """The child process migrating the database failed."""


def _migrate_in_child(url: str) -> None:
    # The URL (it may hold a password) goes through standard input, never the command line.
    from sbom.isolated import child_environment

    # -P: the working directory is not on the child's import path (a file planted there must
    # not stand in for the migration).
    code = "from registry.server.db import _upgrade_stdin; _upgrade_stdin()"
    done = subprocess.run(
        [sys.executable, "-P", "-c", code],
        input=url.encode("utf-8"),
        env=child_environment(),
        check=False,
    )
    if done.returncode != 0:
        raise MigrationError(
            f"migrating the database failed (exit status {done.returncode}); the migration's "
            "error is above"
        )
    if not _url_at_head(url):  # whatever the child did, the start does not go on without it
        raise MigrationError(
            f"the migration finished, but the database is not at revision {HEAD_REVISION}"
        )


def _upgrade_stdin() -> None:
    """The child of an isolated :func:`migrate`: upgrade the database named on standard input
    (the parent holds the start-up lock, if any)."""
    from alembic import command

    command.upgrade(alembic_config(sys.stdin.read().strip()), "head")


def _url_at_head(url: str) -> bool:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return _at_head(conn)
    finally:
        engine.dispose()


def _at_head(conn: Connection) -> bool:
    """Whether the database records exactly :data:`HEAD_REVISION` as its schema's revision."""
    if not inspect(conn).has_table("alembic_version"):
        return False
    versions = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all()
    return list(versions) == [HEAD_REVISION]
