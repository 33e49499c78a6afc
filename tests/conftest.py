"""Shared fixtures: settings on the embedded default, real PostgreSQL + SeaweedFS, live servers
(the helpers they use, which test modules import too, are in ``tests/support.py``).

Backends are parametrized: ``backend`` yields a ready ``Settings`` for ``sqlite-local`` (unit
speed, no services) and ``postgres-s3`` (the real PostgreSQL and SeaweedFS started here, marked
``integration``). Schema always comes from the Alembic migrations.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from registry.server.config import Settings
from registry.server.db import migrate
from tests.services import PostgresServer, SeaweedServer
from tests.support import Live, free_port, make_model_dir, run_cli, self_signed, serve

__all__ = ["Live", "free_port", "make_model_dir", "run_cli", "self_signed", "serve"]

MiB = 1024 * 1024

# The tests' bare ``httpx.get(...)`` calls use httpx's default timeout, 5 s, which a loaded
# 2-core CI machine has exceeded on a fresh server's first request. Time is never what a test
# checks, so give those calls a minute. (The product always passes its timeouts explicitly;
# this shared default object is only the tests'.)
httpx._config.DEFAULT_TIMEOUT_CONFIG.read = 60.0
httpx._config.DEFAULT_TIMEOUT_CONFIG.write = 60.0
httpx._config.DEFAULT_TIMEOUT_CONFIG.connect = 60.0
httpx._config.DEFAULT_TIMEOUT_CONFIG.pool = 60.0


# -- real services (session scoped) ----------------------------------------------------------


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def pg_template(pg_server: PostgresServer) -> str:
    """A database migrated to head, copied for every test that needs PostgreSQL."""
    url = pg_server.create_database("modelseal_template")
    migrate(url)
    return "modelseal_template"


@pytest.fixture
def pg_url(pg_server: PostgresServer, pg_template: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = pg_server.create_database(name, template=pg_template)
    yield url
    pg_server.drop_database(name)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[SeaweedServer]:
    with SeaweedServer(stop_grace=1.0) as server:
        server.create_bucket("modelseal-test")
        yield server


@pytest.fixture
def s3_env(s3_server: SeaweedServer, monkeypatch: pytest.MonkeyPatch) -> SeaweedServer:
    """The standard AWS credential chain pointed at the test server (as production uses it)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", s3_server.region)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return s3_server


@pytest.fixture
def s3_storage_url() -> str:
    return f"s3://modelseal-test/{uuid.uuid4().hex[:12]}"


@pytest.fixture(autouse=True)
def _client_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test pins registry keys in its own client config, never the user's."""
    monkeypatch.setenv("MODELSEAL_CONFIG_DIR", str(tmp_path / "client-config"))


# -- settings per backend ----------------------------------------------------------------------


@pytest.fixture
def local_settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", min_chunk_bytes=1024)


@pytest.fixture(
    params=[
        pytest.param("sqlite-local", id="sqlite-local"),
        pytest.param("postgres-s3", id="postgres-s3", marks=pytest.mark.integration),
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings for one backend, database migrated."""
    if request.param == "sqlite-local":
        settings = Settings(data_dir=tmp_path / "data", min_chunk_bytes=1024)
        settings.data_dir.mkdir()
        migrate(settings.resolved_database_url)
        return settings
    pg_url = request.getfixturevalue("pg_url")
    s3 = request.getfixturevalue("s3_env")
    return Settings(
        data_dir=tmp_path / "data",
        database_url=pg_url,
        storage=request.getfixturevalue("s3_storage_url"),
        s3_endpoint_url=s3.endpoint_url,
        s3_region=s3.region,
        min_chunk_bytes=5 * MiB,
    )


# -- a live server in a thread -----------------------------------------------------------------


@pytest.fixture
def live(backend: Settings) -> Iterator[Live]:
    """The API served by uvicorn on a free loopback port, in a thread."""
    with serve(backend) as running:
        yield running


# -- real model files ------------------------------------------------------------------------------


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return make_model_dir(tmp_path / "model")
