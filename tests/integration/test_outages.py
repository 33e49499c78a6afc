"""Outages are 503, not 500: the real PostgreSQL and SeaweedFS stopped under a running registry.

Every failure is a 503 problem+json with ``Retry-After`` (no 500, no dropped connection),
``/health`` stays a liveness answer, ``/ready`` says 503 naming the component, and once the
service is back the same registry process serves again (no restart). The SDK retries idempotent
requests through a short outage, and says how often it tried when it gives up."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from registry.errors import RegistryError
from registry.sdk.transfer import Retry
from registry.server.config import Settings
from registry.server.db import migrate
from tests.services import PostgresServer, SeaweedServer
from tests.support import Live, serve

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[PostgresServer, SeaweedServer]]:
    """A PostgreSQL and a SeaweedFS of this module's own: stopping them disturbs no other test."""
    with PostgresServer() as pg, SeaweedServer(stop_grace=1.0) as s3:
        s3.create_bucket("outages")
        yield pg, s3


@pytest.fixture
def live_outage(
    servers: tuple[PostgresServer, SeaweedServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Live]:
    pg, s3 = servers
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", s3.region)
    url = pg.create_database(f"o_{uuid.uuid4().hex[:10]}")
    migrate(url)
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=url,
        storage=f"s3://outages/{uuid.uuid4().hex[:8]}",
        s3_endpoint_url=s3.endpoint_url,
        s3_region=s3.region,
    )
    with serve(settings) as running:
        yield running


def _load(live: Live, paths: list[str], rounds: int) -> Counter[int]:
    """``rounds`` passes over ``paths`` from 4 threads, plain HTTP (no SDK retries); every
    answer is checked: a 5xx is a 503 problem+json with Retry-After."""
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    headers = {"Authorization": f"Bearer {live.admin_token}"}

    def worker() -> None:
        with httpx.Client(base_url=live.url, headers=headers, timeout=60) as http:
            for _ in range(rounds):
                for path in paths:
                    try:
                        answer = http.get(path)
                    except httpx.TransportError as exc:  # a dropped connection
                        failures.append(f"{path}: {exc!r}")
                        continue
                    statuses[answer.status_code] += 1
                    if answer.status_code >= 500 and not (
                        answer.status_code == 503
                        and answer.headers.get("retry-after") == "2"
                        and answer.headers["content-type"] == "application/problem+json"
                    ):
                        failures.append(f"{path}: {answer.status_code} {answer.text[:200]}")

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert failures == []
    return statuses


def test_a_database_outage_is_503_and_the_registry_recovers_without_restart(
    live_outage: Live, servers: tuple[PostgresServer, SeaweedServer], model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    pg, _ = servers
    live = live_outage
    with live.client() as client:
        client.push(model_dir, "ns/m@1")
    paths = ["/v1/namespaces", "/v1/namespaces/ns/artifacts/m/versions/1", "/v1/tokens"]
    assert httpx.get(f"{live.url}/ready").json() == {
        "status": "ready", "database": "ok", "store": "ok"
    }  # fmt: skip

    pg.pause()
    try:
        down = _load(live, paths, rounds=5)
        assert down == Counter({503: 60}), down
        assert httpx.get(f"{live.url}/health").status_code == 200  # liveness only
        ready = httpx.get(f"{live.url}/ready")
        assert ready.status_code == 503 and ready.headers["retry-after"] == "2"
        assert ready.json()["facts"] == {"database": "unavailable", "store": "ok"}
        # The SDK retries a read, then says how often it tried.
        monkeypatch.setattr(Retry, "attempts", 3)
        monkeypatch.setattr(Retry, "base", 0.05)
        with live.client() as client, pytest.raises(RegistryError) as gave_up:
            client.show("ns/m@1")
        assert "gave up after 3 attempts" in str(gave_up.value)
        assert gave_up.value.detail.startswith("the database is unavailable")
        # … and rides out an outage shorter than its backoff.
        monkeypatch.setattr(Retry, "attempts", 6)
        monkeypatch.setattr(Retry, "base", 1.0)
        timer = threading.Timer(1.0, pg.resume)
        timer.start()
        with live.client() as client:
            assert client.show("ns/m@1").state == "pending"
        timer.join()
    finally:
        if not _up(live):
            pg.resume()
    up = _load(live, paths, rounds=2)
    assert up == Counter({200: 24}), up
    assert httpx.get(f"{live.url}/ready").status_code == 200


def _up(live: Live) -> bool:
    return httpx.get(f"{live.url}/ready").json().get("database") == "ok"


def test_a_store_outage_is_503_and_the_registry_recovers_without_restart(
    live_outage: Live, servers: tuple[PostgresServer, SeaweedServer], model_dir: Path,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    _, s3 = servers
    live = live_outage
    with live.client() as client:
        version = client.push(model_dir, "ns/m@1")
    first = version.files[0].path
    file_path = f"/v1/namespaces/ns/artifacts/m/versions/1/files/{first}"
    monkeypatch.setattr(Retry, "attempts", 2)
    monkeypatch.setattr(Retry, "base", 0.05)
    s3.pause()
    try:
        down = _load(live, [file_path, "/v1/namespaces"], rounds=1)
        assert down == Counter({503: 4, 200: 4}), down  # metadata reads still work
        ready = httpx.get(f"{live.url}/ready")
        assert ready.status_code == 503
        assert ready.json()["facts"] == {"database": "ok", "store": "unavailable"}
        assert "127.0.0.1" not in ready.text  # no internal address to anonymous callers
        other = model_dir.parent / "other"
        other.mkdir()
        (other / "config.json").write_text('{"other": true}')
        with live.client() as client, pytest.raises(RegistryError) as refused:
            client.push(other, "ns/other@1")
        assert "blob store" in str(refused.value)
    finally:
        s3.resume()
    with live.client() as client:
        client.push(other, "ns/other@1")
        client.pull("ns/m@1", tmp_path / "out", unsafe_skip_verify=True)
    assert (tmp_path / "out" / first).read_bytes() == (model_dir / first).read_bytes()
    assert httpx.get(f"{live.url}/ready").status_code == 200
