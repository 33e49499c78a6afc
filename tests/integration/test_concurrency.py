"""Races and replicas: immutability under concurrent pushes, two API processes on one store."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from registry.errors import VersionConflictError
from registry.sdk.client import RegistryClient
from registry.server.db import make_engine
from registry.server.models import UploadPart, UploadSession, Version, VersionFile
from tests.services import PostgresServer, SeaweedServer
from tests.support import Live, free_port, make_model_dir

MiB = 1024 * 1024


def _counts(url: str) -> dict[str, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {
                m.__tablename__: int(conn.execute(select(func.count()).select_from(m)).scalar_one())
                for m in (Version, VersionFile, UploadSession, UploadPart)
            }
    finally:
        engine.dispose()


def test_twenty_concurrent_pushes_commit_exactly_one_content(live: Live, tmp_path: Path) -> None:
    contents = {
        "a": make_model_dir(tmp_path / "a", seed=1, shards=2),
        "b": make_model_dir(tmp_path / "b", seed=2, shards=3),
    }

    def push(i: int) -> tuple[str, str]:
        which = "a" if i % 2 else "b"
        with live.client(workers=2) as client:
            try:
                version = client.push(contents[which], "race/m@1")
                return which, version.root_digest
            except VersionConflictError:
                return which, "409"

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(push, range(20)))

    winners = {which for which, outcome in results if outcome != "409"}
    assert len(winners) == 1, results
    winner = winners.pop()
    assert Counter(which for which, outcome in results if outcome == "409") == Counter(
        {"b" if winner == "a" else "a": 10}
    )
    with live.client() as client:
        shown = client.show("race/m@1")
    assert {o for _, o in results if o != "409"} == {shown.root_digest}
    counts = _counts(live.settings.resolved_database_url)
    assert counts == {
        "versions": 1,
        "version_files": shown.file_count,
        "upload_sessions": 0,
        "upload_parts": 0,
    }


def test_a_chunk_race_on_one_offset_has_one_winner(live: Live) -> None:
    """Two writers send different bytes for the same offset: one is stored, one gets 416,
    and the finished blob is exactly the winner's bytes."""
    size = live.settings.min_chunk_bytes * 2
    good = os.urandom(size)
    digest = hashlib.sha256(good).hexdigest()
    headers = {"Authorization": f"Bearer {live.admin_token}"}
    with httpx.Client(base_url=live.url, headers=headers, timeout=60) as http:
        upload_id = http.post(
            "/v1/namespaces/ns/uploads", json={"digest": f"sha256:{digest}", "size": size}
        ).json()["id"]
        half = size // 2
        bodies = [good[:half], os.urandom(half)]

        def send(body: bytes) -> int:
            return http.patch(
                f"/v1/uploads/{upload_id}",
                content=body,
                headers={"Content-Range": f"bytes 0-{half - 1}"},
            ).status_code

        with ThreadPoolExecutor(max_workers=2) as pool:
            codes = list(pool.map(send, bodies))
        assert sorted(codes) in ([202, 416], [202, 202]) or codes.count(202) == 1, codes
        assert codes.count(202) == 1, codes
        finish = http.put(
            f"/v1/uploads/{upload_id}",
            content=good[half:],
            headers={"Content-Range": f"bytes {half}-{size - 1}"},
        )
        winner_was_good = codes[0] == 202
        assert finish.status_code == (201 if winner_was_good else 400), finish.text


# -- two API processes on one PostgreSQL + S3 ---------------------------------------------------


def _serve(data_dir: Path, env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "registry", "serve", "--data-dir", str(data_dir),
         "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(data_dir.parent / f"serve-{port}.log").open("wb"),
    )  # fmt: skip


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server did not become healthy: {log.read_text()[-2000:]}")


@pytest.mark.integration
def test_two_api_processes_serve_one_registry(
    pg_server: PostgresServer,
    s3_env: SeaweedServer,
    s3_storage_url: str,
    tmp_path: Path,
) -> None:
    db_url = pg_server.create_database("replicas")  # empty: both replicas migrate at once
    from attest import keys

    shared_key, _ = keys.write_keypair(tmp_path / "registry", keys.generate())
    log_key, _ = keys.write_keypair(tmp_path / "log", keys.generate(keys.KeyType.ED25519))
    env = {
        "MODELSEAL_SIGNING_KEY": str(shared_key),
        "MODELSEAL_LOG_SIGNING_KEY": str(log_key),  # every replica signs the one log
        **os.environ,
        "MODELSEAL_DATABASE_URL": db_url,
        "MODELSEAL_STORAGE": s3_storage_url,
        "MODELSEAL_S3_ENDPOINT_URL": s3_env.endpoint_url,
        "MODELSEAL_MIN_CHUNK_BYTES": str(5 * MiB),
    }
    ports = [free_port(), free_port()]
    dirs = [tmp_path / "replica-a", tmp_path / "replica-b"]
    procs = [_serve(d, env, p) for d, p in zip(dirs, ports, strict=True)]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    try:
        for url, proc, port in zip(urls, procs, ports, strict=True):
            _wait_healthy(url, proc, tmp_path / f"serve-{port}.log")
        tokens = [d / "admin-token" for d in dirs if (d / "admin-token").exists()]
        assert len(tokens) == 1, "exactly one replica issues the first admin token"
        token = tokens[0].read_text().strip()
        clients = [RegistryClient(u, token, chunk_size=5 * MiB) for u in urls]

        models = [make_model_dir(tmp_path / f"m{i}", seed=i, rows=20_000) for i in range(6)]

        def push(i: int) -> str:
            return clients[i % 2].push(models[i], f"fleet/m{i}@1").root_digest

        with ThreadPoolExecutor(max_workers=6) as pool:
            digests = list(pool.map(push, range(6)))

        def pull(i: int) -> Path:
            target = tmp_path / f"pulled-{i}"
            clients[(i + 1) % 2].pull(  # the other replica
                f"fleet/m{i}@{digests[i]}", target, unsafe_skip_verify=True
            )
            return target

        with ThreadPoolExecutor(max_workers=6) as pool:
            targets = list(pool.map(pull, range(6)))
        for model, target in zip(models, targets, strict=True):
            for f in model.rglob("*"):
                if f.is_file():
                    assert (target / f.relative_to(model)).read_bytes() == f.read_bytes()

        # One upload, resumed across replicas: chunk on A, chunk and finish on B.
        data = os.urandom(10 * MiB + 3)
        digest = hashlib.sha256(data).hexdigest()
        auth = {"Authorization": f"Bearer {token}"}
        a = httpx.Client(base_url=urls[0], headers=auth, timeout=60)
        b = httpx.Client(base_url=urls[1], headers=auth, timeout=60)
        upload_id = a.post(
            "/v1/namespaces/fleet/uploads", json={"digest": f"sha256:{digest}", "size": len(data)}
        ).json()["id"]
        assert (
            a.patch(
                f"/v1/uploads/{upload_id}",
                content=data[: 5 * MiB],
                headers={"Content-Range": f"bytes 0-{5 * MiB - 1}"},
            ).status_code
            == 202
        )
        assert b.get(f"/v1/uploads/{upload_id}").json()["offset"] == 5 * MiB
        done = b.put(
            f"/v1/uploads/{upload_id}",
            content=data[5 * MiB :],
            headers={"Content-Range": f"bytes {5 * MiB}-{len(data) - 1}"},
        )
        assert done.status_code == 201, done.text
        a.close()
        b.close()
        for c in clients:
            c.close()
        # A third replica holding another signing key refuses to start.
        rogue_key, _ = keys.write_keypair(tmp_path / "rogue", keys.generate())
        rogue_port = free_port()
        rogue = _serve(tmp_path / "replica-c", {**env, "MODELSEAL_SIGNING_KEY": str(rogue_key)},
                       rogue_port)  # fmt: skip
        assert rogue.wait(timeout=60) != 0
        log = (tmp_path / f"serve-{rogue_port}.log").read_text()
        assert "is not the registry's key" in log
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
