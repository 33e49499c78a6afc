"""The schema comes from Alembic, and the migrations match the models (``alembic check``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory

from registry.server.db import HEAD_REVISION, alembic_config, migrate


def test_sqlite_migrations_match_models(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    migrate(url)
    migrate(url)  # idempotent
    command.check(alembic_config(url))


@pytest.mark.integration
def test_postgres_migrations_match_models(pg_url: str) -> None:
    migrate(pg_url)
    command.check(alembic_config(pg_url))


def test_downgrade_to_base_and_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    migrate(url)
    command.downgrade(alembic_config(url), "base")
    migrate(url)
    command.check(alembic_config(url))


def test_the_head_a_start_trusts_is_alembics_head(tmp_path: Path) -> None:
    """A start skips Alembic when the database is at HEAD_REVISION: a new migration whose
    revision is not written there would never run."""
    script = ScriptDirectory.from_config(alembic_config(f"sqlite:///{tmp_path / 'r.db'}"))
    assert script.get_heads() == [HEAD_REVISION]


def test_a_database_behind_the_head_is_still_migrated(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    migrate(url)
    command.downgrade(alembic_config(url), "0011")
    migrate(url)  # not at the head: Alembic runs
    command.check(alembic_config(url))
