"""The schema comes from Alembic, and the migrations match the models (``alembic check``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command

from registry.server.db import alembic_config, migrate


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
