"""docs/operations.md's backup and restore, done as written, on PostgreSQL + SeaweedFS: a released
version survives a backup (pg_dump first, then the bucket's objects and the data dir's key files)
restored into a fresh database and a fresh bucket, pulled verified against the registry key it
was released under, with the audit chain intact and fsck clean."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from registry.server.config import Settings
from registry.server.db import make_engine, make_sessionmaker
from registry.server.services import Role, TokenService
from tests.integration.test_release import World
from tests.services import PostgresServer, SeaweedServer
from tests.support import Live, free_port, run_cli, serve

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
KEY_FILES = ("registry.key", "registry.pub", "log.key", "log.pub", "admin-token")


def _pg(server: PostgresServer, tool: str, *args: str) -> None:
    done = subprocess.run(
        [str(server.bindir / tool), "-h", server.host, "-p", str(server.port), "-U", server.user,
         *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def _where(settings: Settings) -> list[str]:
    assert settings.database_url and settings.storage
    return ["--data-dir", str(settings.data_dir), "--database-url", settings.database_url,
            "--storage", settings.storage]  # fmt: skip


@contextmanager
def _modelseal_serve(settings: Settings, endpoint: str) -> Iterator[str]:
    """`modelseal serve` on the restored pieces, as an operator starts it."""
    port = free_port()
    env = {"MODELSEAL_S3_ENDPOINT_URL": endpoint, "PATH": str(Path(sys.executable).parent)}
    env.update({k: v for k, v in os.environ.items() if k.startswith(("AWS_", "HOME"))})
    process = subprocess.Popen(
        [sys.executable, "-m", "registry", "serve", *_where(settings), "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the restored registry did not start"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(30)


def test_a_released_version_survives_backup_and_restore(
    pg_server: PostgresServer,
    pg_url: str,
    s3_env: SeaweedServer,
    s3_storage_url: str,
    tmp_path: Path,
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data", database_url=pg_url, storage=s3_storage_url,
        s3_endpoint_url=s3_env.endpoint_url, s3_region=s3_env.region, min_chunk_bytes=5 * MiB,
    )  # fmt: skip
    backup = tmp_path / "backup"
    (backup / "objects").mkdir(parents=True)
    s3 = s3_env.client()
    bucket, _, prefix = s3_storage_url.removeprefix("s3://").partition("/")

    with serve(settings) as live:
        world = World(live, tmp_path / "world")
        (tmp_path / "world").mkdir()
        root = world.dataset("fraud/tx@3")  # pushed, signed, released
        assert live.client().show("fraud/tx@3").state == "released"
        engine = make_engine(pg_url)
        deployer = TokenService(make_sessionmaker(engine)).create(
            name="deploy", role=Role.DEPLOYER, namespace="fraud"
        )
        engine.dispose()

        # 1. The database first ...
        _pg(pg_server, "pg_dump", "--format=custom", "--file", str(backup / "registry.dump"),
            urlparse(pg_url).path.lstrip("/"))  # fmt: skip
        # 2. ... then the blobs (immutable and content-addressed: a later copy is a superset) ...
        copied = 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", ()):
                relative = item["Key"].removeprefix(prefix + "/")
                target = backup / "objects" / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, item["Key"], str(target))
                copied += 1
        assert copied >= 1
        # 3. ... and the data dir's key files.
        for name in KEY_FILES:
            shutil.copy2(settings.data_dir / name, backup / name)

    # Restore: a fresh database, a fresh bucket, a fresh data dir.
    fresh_db = f"restored_{uuid.uuid4().hex[:8]}"
    restored_url = pg_server.create_database(fresh_db)
    _pg(pg_server, "pg_restore", "--no-owner", "--dbname", fresh_db,
        str(backup / "registry.dump"))  # fmt: skip
    fresh_bucket = f"restored-{uuid.uuid4().hex[:8]}"
    s3_env.create_bucket(fresh_bucket)
    data_dir = tmp_path / "restored-data"
    data_dir.mkdir(mode=0o700)
    for name in KEY_FILES:
        shutil.copy2(backup / name, data_dir / name)
    restored = settings.model_copy(
        update={
            "data_dir": data_dir,
            "database_url": restored_url,
            "storage": f"s3://{fresh_bucket}/{prefix}",
        }
    )
    env = {"MODELSEAL_S3_ENDPOINT_URL": s3_env.endpoint_url}

    # The database without its blobs is no restore: fsck says which are missing.
    incomplete = run_cli("admin", "fsck", *_where(restored), extra_env=env)
    assert incomplete.returncode == 1 and "missing-object" in incomplete.stdout

    for path in (backup / "objects").rglob("*"):
        if path.is_file():
            relative = path.relative_to(backup / "objects").as_posix()
            s3.upload_file(str(path), fresh_bucket, f"{prefix}/{relative}")
    clean = run_cli("admin", "fsck", *_where(restored), "--rehash", extra_env=env)
    assert clean.returncode == 0, clean.stdout + clean.stderr

    registry_pub = (backup / "registry.pub").read_bytes()
    admin_token = (backup / "admin-token").read_text().strip()
    with _modelseal_serve(restored, s3_env.endpoint_url) as url:
        target = tmp_path / "pulled"
        restored_live = Live(url, admin_token, restored)
        with restored_live.client(token=deployer.secret) as client:
            pulled = client.pull("fraud/tx@3", target, registry_key=registry_pub)
        assert pulled.state == "released" and pulled.root_digest == root
        assert (target / "transactions.csv").read_text() == "id,amount\n1,10\n"
        key_file = tmp_path / "registry.pub"
        key_file.write_bytes(registry_pub)
        verified = run_cli("audit", "verify", "--registry-key", str(key_file), live=restored_live)
        assert verified.returncode == 0, verified.stderr
        assert "audit log intact" in verified.stderr
    assert run_cli("admin", "fsck", *_where(restored), extra_env=env).returncode == 0
