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


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.integration)]
)
def test_an_isolated_migration_runs_in_a_child_and_leaves_alembic_out(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A server's start migrates in a child process (the start-up lock held by the server), so
    the server never carries alembic; the schema is the same, and a start behind the head still
    catches up."""
    import subprocess
    import sys

    url = (f"sqlite:///{tmp_path / 'r.db'}" if backend == "sqlite"
           else request.getfixturevalue("pg_url"))  # fmt: skip
    probe = (
        "import sys\n"
        "from registry.server.db import migrate\n"
        "migrate(sys.stdin.read(), isolated=True)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))\n"
    )
    for _start in range(2):
        done = subprocess.run([sys.executable, "-c", probe], input=url, capture_output=True,
                              text=True, check=False, cwd=tmp_path)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip() == "[]"
        command.check(alembic_config(url))
        command.downgrade(alembic_config(url), "0011")


def test_an_isolated_migration_that_fails_says_so(tmp_path: Path) -> None:
    """A database stamped with a revision this registry does not know: the child fails, and the
    start stops with an error (never serving an unmigrated schema)."""
    from sqlalchemy import create_engine, text

    from registry.server.db import MigrationError

    url = f"sqlite:///{tmp_path / 'r.db'}"
    migrate(url)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00f'"))
    engine.dispose()
    with pytest.raises(MigrationError, match="migrating the database failed"):
        migrate(url, isolated=True)


def test_a_module_planted_in_the_working_directory_does_not_run_as_the_migration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attacker: whoever can write the server's working directory. A planted ``registry``
    package there would migrate nothing and exit 0; the child never imports it."""
    planted = tmp_path / "cwd" / "registry" / "server"
    planted.mkdir(parents=True)
    for package in (planted.parent, planted):
        (package / "__init__.py").write_text("")
    (planted / "db.py").write_text("def _upgrade_stdin():\n    pass\n")
    monkeypatch.chdir(tmp_path / "cwd")
    url = f"sqlite:///{tmp_path / 'r.db'}"
    migrate(url, isolated=True)
    command.check(alembic_config(url))
