"""Downloads straight from the store: presigned S3 URLs on a real SeaweedFS, real PostgreSQL.

On an S3 store (``s3_presign_downloads`` unset or true) a file GET that asks for it
(``?redirect=true``) is answered with a 307 to a short-lived presigned URL; the SDK follows it
without the registry's credentials and checks every byte exactly as it checks streamed ones.
Files of at most 1 MiB travel many to a request through the registry whatever the store (a
download batch), so the models here have shards larger than that: those are the files a pull
fetches through presigned URLs. Each acceptance sits next to a rejection: no URL for what may
not be downloaded, an expired or unsigned URL reads nothing, a tampered blob fails the pull, an
unreachable store falls back to streaming through the registry, and the client remembers that in
its configuration directory so the next run streams at once (until the record is a day old);
``false`` and a local store stream.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from registry.errors import PullVerificationError
from registry.server.config import Settings
from registry.wire import BATCH_BLOB_MAX_BYTES
from tests.integration.test_api import _overwrite_blob, _tree
from tests.integration.test_oci import _deployer_oci
from tests.integration.test_release import World, _deployer, _released
from tests.services import SeaweedServer
from tests.support import Live, free_port, make_model_dir, run_cli, serve

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
FILE = "/v1/namespaces/fraud/artifacts/m/versions/1/files/"


def _settings(
    tmp_path: Path, pg_url: str, s3: SeaweedServer, storage: str, **extra: object
) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=pg_url,
        storage=storage,
        s3_endpoint_url=s3.endpoint_url,
        s3_region=s3.region,
        min_chunk_bytes=5 * MiB,
        **{"s3_presign_downloads": True, **extra},  # type: ignore[arg-type]
    )


def _default_settings(
    tmp_path: Path, pg_url: str, s3: SeaweedServer, storage: str, **extra: object
) -> Settings:
    """As a registry on S3 is configured when nothing is said about presigning."""
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=pg_url,
        storage=storage,
        s3_endpoint_url=s3.endpoint_url,
        s3_region=s3.region,
        min_chunk_bytes=5 * MiB,
        **extra,  # type: ignore[arg-type]
    )
    assert settings.s3_presign_downloads is None
    return settings


@pytest.fixture
def presigning(
    tmp_path: Path, pg_url: str, s3_env: SeaweedServer, s3_storage_url: str
) -> Iterator[Live]:
    with serve(_settings(tmp_path, pg_url, s3_env, s3_storage_url)) as running:
        yield running


#: Rows per tensor for shards of about 1.2 MB: larger than a download batch carries.
BIG_ROWS = 9000


class BigWorld(World):
    model_rows = BIG_ROWS


@pytest.fixture
def world(presigning: Live, tmp_path: Path) -> World:
    return BigWorld(presigning, tmp_path)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A model whose two shards are fetched through presigned URLs (its config and vocabulary
    come in a download batch)."""
    return make_model_dir(tmp_path / "model", rows=BIG_ROWS)


def _large(tree: dict[str, bytes]) -> list[str]:
    """The files of a tree a pull fetches one by one (through a presigned URL where offered)."""
    return [path for path, data in tree.items() if len(data) > BATCH_BLOB_MAX_BYTES]


def _redirected(live: Live, actor: str) -> list[dict[str, object]]:
    with live.client() as admin:
        return [
            e
            for e in admin.audit_entries()
            if e["action"] == "get_version_file"
            and e["outcome"] == "redirected"
            and e["actor"] == actor
        ]


def test_a_verified_pull_reads_the_bytes_straight_from_the_store(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _released(world)
    files = world.admin.show("fraud/m@1").files
    with caplog.at_level(logging.WARNING, logger="registry.sdk.transfer"):
        pulled = _deployer(world).pull("fraud/m@1", tmp_path / "deploy")
    assert pulled.state == "released"
    assert _tree(tmp_path / "deploy") == _tree(tmp_path / "fraud_m@1")
    # no fallback: every file came from its presigned URL
    assert [r for r in caplog.records if r.name == "registry.sdk.transfer"] == []
    # each URL handed out is in the audit log, under the deployer's name and the file's path
    entries = _redirected(world.live, "deploy")
    assert sorted(str(e["target"]).rsplit("/files/", 1)[1] for e in entries) == sorted(
        f.path for f in files if f.size > BATCH_BLOB_MAX_BYTES
    )


def test_the_redirect_names_the_digest_and_the_url_is_the_only_credential(world: World) -> None:
    _released(world)
    item = next(f for f in world.admin.show("fraud/m@1").files if f.path == "config.json")
    token = world.live.admin_token
    with httpx.Client(
        timeout=60, base_url=world.live.url, headers={"Authorization": f"Bearer {token}"}
    ) as h:
        answer = h.get(FILE + "config.json", params={"redirect": "true"})
        streamed = h.get(FILE + "config.json")  # without asking: the bytes, as for any client
    assert answer.status_code == 307
    assert answer.headers["x-modelseal-digest"] == item.digest
    assert answer.headers["cache-control"] == "no-store"
    location = answer.headers["location"]
    s3_endpoint = world.live.settings.s3_endpoint_url
    assert s3_endpoint is not None and location.startswith(s3_endpoint)
    assert "X-Amz-Signature=" in location and token not in location
    assert item.digest.removeprefix("sha256:") in urlsplit(location).path
    assert streamed.status_code == 200

    direct = httpx.get(location)  # no token: the signature in the URL is all it takes
    assert direct.status_code == 200
    assert direct.content == streamed.content
    unsigned = httpx.get(location.split("?", 1)[0])
    assert unsigned.status_code == 403  # the bucket itself is not readable
    forged = httpx.get(location.replace(item.digest.removeprefix("sha256:"), "0" * 64))
    assert forged.status_code == 403  # the signature covers the key: no other blob


def test_no_url_is_handed_out_for_what_may_not_be_downloaded(world: World) -> None:
    _released(world)
    world.model("fraud/m@2")  # pending
    deployer = _deployer(world)
    pending = "/v1/namespaces/fraud/artifacts/m/versions/2/files/config.json"
    revoked = "/v1/namespaces/fraud/artifacts/tx/versions/3/files/transactions.csv"
    with deployer._http as h:
        # Asked before the revocation, which cascades to fraud/m@1 (built on fraud/tx@3).
        missing = h.get(FILE + "nope.bin", params={"redirect": "true"})
        world.releaser.revoke("fraud/tx@3", "poisoned rows")
        answers = {
            "pending": h.get(pending, params={"redirect": "true"}),
            "revoked": h.get(revoked, params={"redirect": "true"}),
            "missing": missing,
        }
    assert {k: a.status_code for k, a in answers.items()} == {
        "pending": 403,
        "revoked": 410,
        "missing": 404,
    }
    assert all("location" not in a.headers for a in answers.values())
    assert _redirected(world.live, "deploy") == []


def test_a_blob_tampered_in_the_bucket_fails_a_redirected_pull(
    world: World, tmp_path: Path
) -> None:
    _released(world)
    victim = next(f for f in world.admin.show("fraud/m@1").files if f.path.endswith(".safetensors"))
    data = bytearray((tmp_path / "fraud_m@1" / victim.path).read_bytes())
    data[100] ^= 1
    _overwrite_blob(world.live, victim.digest.removeprefix("sha256:"), bytes(data))
    with pytest.raises(PullVerificationError, match=victim.path):
        _deployer(world).pull("fraud/m@1", tmp_path / "deploy")
    assert not (tmp_path / "deploy").exists()
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".deploy")] == []


def test_an_expired_url_reads_nothing(
    tmp_path: Path, pg_url: str, s3_env: SeaweedServer, s3_storage_url: str, model_dir: Path
) -> None:
    settings = _settings(tmp_path, pg_url, s3_env, s3_storage_url, s3_presign_seconds=1)
    with serve(settings) as live, live.client() as client:
        client.push(model_dir, "ns/m@1")
        answer = client._http.get(
            "/v1/namespaces/ns/artifacts/m/versions/1/files/config.json",
            params={"redirect": "true"},
        )
        assert answer.status_code == 307
        time.sleep(2.5)
        assert httpx.get(answer.headers["location"]).status_code == 403


def test_an_unreachable_store_falls_back_to_streaming_through_the_registry(
    tmp_path: Path,
    pg_url: str,
    s3_env: SeaweedServer,
    s3_storage_url: str,
    model_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Clients that cannot reach the store (a wrong public endpoint here) still get their
    files, verified, through the registry; the log says why."""
    closed = f"http://127.0.0.1:{free_port()}"
    settings = _settings(tmp_path, pg_url, s3_env, s3_storage_url, s3_public_endpoint_url=closed)
    with serve(settings) as live, live.client() as client:
        client.push(model_dir, "ns/m@1")
        with caplog.at_level(logging.WARNING, logger="registry.sdk.transfer"):
            client.pull("ns/m@1", tmp_path / "pulled", unsafe_skip_verify=True)
    assert _tree(tmp_path / "pulled") == _tree(model_dir)
    fallbacks = [r.getMessage() for r in caplog.records if r.name == "registry.sdk.transfer"]
    # said once (or by each download already under way when the first one failed)
    assert 1 <= len(fallbacks) <= len(_tree(model_dir))
    assert all(closed.split("//")[1] in m and "streaming through the registry" in m
               for m in fallbacks)  # fmt: skip


def test_the_cli_follows_redirects_unless_told_to_go_through_the_registry(
    presigning: Live, model_dir: Path, tmp_path: Path
) -> None:
    with presigning.client() as client:
        client.push(model_dir, "ns/m@1")
    direct = run_cli("pull", "ns/m@1", "--to", str(tmp_path / "a"), "--no-progress",
                     "--unsafe-skip-verify", live=presigning)  # fmt: skip
    assert direct.returncode == 0, direct.stderr
    assert len(_redirected(presigning, "admin")) == len(_large(_tree(model_dir)))
    streamed = run_cli("pull", "ns/m@1", "--to", str(tmp_path / "b"), "--no-progress",
                       "--unsafe-skip-verify", "--via-registry", live=presigning)  # fmt: skip
    assert streamed.returncode == 0, streamed.stderr
    assert len(_redirected(presigning, "admin")) == len(_large(_tree(model_dir)))  # none more
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b") == _tree(model_dir)


# -- the default: on for S3 (the SDK falls back, and remembers) ----------------------------------


@pytest.fixture(autouse=True)
def _presign_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read the environment: these tests say what they mean."""
    monkeypatch.delenv("MODELSEAL_S3_PRESIGN_DOWNLOADS", raising=False)


def _memory_file() -> Path:
    """The client's record of unusable storage URLs (MODELSEAL_CONFIG_DIR is per test)."""
    from registry.sdk.redirects import RedirectMemory

    return RedirectMemory().path


def test_a_registry_on_s3_presigns_by_default_and_pulls_still_verify(
    tmp_path: Path,
    pg_url: str,
    s3_env: SeaweedServer,
    s3_storage_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = _default_settings(tmp_path, pg_url, s3_env, s3_storage_url)
    with caplog.at_level(logging.WARNING), serve(settings) as live:
        world = BigWorld(live, tmp_path)
        _released(world)
        files = [f for f in world.admin.show("fraud/m@1").files if f.size > BATCH_BLOB_MAX_BYTES]
        answer = httpx.get(f"{live.url}{FILE}config.json", params={"redirect": "true"},
                           headers={"Authorization": f"Bearer {live.admin_token}"})  # fmt: skip
        assert answer.status_code == 307
        assert str(answer.headers["location"]).startswith(s3_env.endpoint_url)
        deployer = _deployer(world)
        pulled = deployer.pull("fraud/m@1", tmp_path / "deploy")  # the SDK's defaults
        assert pulled.state == "released"
        assert _tree(tmp_path / "deploy") == _tree(tmp_path / "fraud_m@1")
        assert len(_redirected(live, "deploy")) == len(files)  # every file from the store
        # OCI clients cannot fall back to the registry: their blobs stream unless set to true.
        oci = _deployer_oci(world)
        layer = oci.get("fraud/m/manifests/1").json()["layers"][0]
        blob = oci.get(f"fraud/m/blobs/{layer['digest']}")
        assert blob.status_code == 200 and "location" not in blob.headers

        victim = next(f for f in files if f.path.endswith(".safetensors"))
        data = bytearray((tmp_path / "fraud_m@1" / victim.path).read_bytes())
        data[100] ^= 1
        _overwrite_blob(live, victim.digest.removeprefix("sha256:"), bytes(data))
        with pytest.raises(PullVerificationError, match=victim.path):
            deployer.pull("fraud/m@1", tmp_path / "again")
        assert not (tmp_path / "again").exists()
        assert len(_redirected(live, "deploy")) > len(files)  # the tampered bytes came direct
    assert [r.getMessage() for r in caplog.records
            if r.name in {"registry.server.app", "registry.sdk.transfer"}] == []  # fmt: skip
    assert not _memory_file().exists()


def test_presign_downloads_false_streams_every_file(
    tmp_path: Path,
    pg_url: str,
    s3_env: SeaweedServer,
    s3_storage_url: str,
    model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODELSEAL_S3_PRESIGN_DOWNLOADS", "false")
    settings = Settings(
        data_dir=tmp_path / "data", database_url=pg_url, storage=s3_storage_url,
        s3_endpoint_url=s3_env.endpoint_url, s3_region=s3_env.region, min_chunk_bytes=5 * MiB,
    )  # fmt: skip
    assert settings.s3_presign_downloads is False
    with serve(settings) as live, live.client() as client:
        client.push(model_dir, "ns/m@1")
        answer = client._http.get("/v1/namespaces/ns/artifacts/m/versions/1/files/config.json",
                                  params={"redirect": "true"})  # fmt: skip
        assert answer.status_code == 200 and "location" not in answer.headers
        client.pull("ns/m@1", tmp_path / "pulled", unsafe_skip_verify=True)
        assert _redirected(live, "admin") == []
    assert _tree(tmp_path / "pulled") == _tree(model_dir)


def _age_record(days: float) -> None:
    path = _memory_file()
    document = json.loads(path.read_text())
    for entry in document["registries"].values():
        entry["at"] -= days * 24 * 3600
    path.write_text(json.dumps(document))


def test_a_store_clients_cannot_reach_is_probed_once_and_remembered_for_a_day(
    tmp_path: Path,
    pg_url: str,
    s3_env: SeaweedServer,
    s3_storage_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first pull pays for the probe and falls back; the next process (a CLI run in the
    same configuration directory) asks for no URL at all; a day later the store is probed
    again. Every pull is a full verified pull of a release."""
    closed = f"http://127.0.0.1:{free_port()}"
    settings = _default_settings(tmp_path, pg_url, s3_env, s3_storage_url,
                                 s3_public_endpoint_url=closed)  # fmt: skip
    with serve(settings) as live:
        world = BigWorld(live, tmp_path)
        _released(world)
        expected = _tree(tmp_path / "fraud_m@1")
        with caplog.at_level(logging.WARNING, logger="registry.sdk.transfer"):
            world.admin.pull("fraud/m@1", tmp_path / "first")
        assert _tree(tmp_path / "first") == expected
        probed = len(_redirected(live, "admin"))
        assert probed >= 1  # asked for URLs until the first one failed
        [warning, *_] = [r.getMessage() for r in caplog.records
                         if r.name == "registry.sdk.transfer"]  # fmt: skip
        assert closed.split("//")[1] in warning and str(_memory_file()) in warning
        record = next(iter(json.loads(_memory_file().read_text())["registries"].items()))
        assert record[0] == live.url and "cannot reach" in record[1]["reason"]

        started = time.monotonic()
        second = run_cli("pull", "fraud/m@1", "--to", str(tmp_path / "second"), "--no-progress",
                         live=live)  # fmt: skip
        took = time.monotonic() - started
        assert second.returncode == 0, second.stderr
        assert _tree(tmp_path / "second") == expected
        assert len(_redirected(live, "admin")) == probed  # no URL asked for
        assert "streaming through the registry" not in second.stderr
        print(f"second run (remembered, streamed from the start): {took:.2f} s")

        _age_record(days=1.01)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="registry.sdk.transfer"):
            live.client().pull("fraud/m@1", tmp_path / "third")
        assert _tree(tmp_path / "third") == expected
        assert len(_redirected(live, "admin")) > probed  # probed again
        assert any(closed.split("//")[1] in r.getMessage() for r in caplog.records)
        renewed = json.loads(_memory_file().read_text())["registries"][live.url]
        assert time.time() - renewed["at"] < 600


def test_a_damaged_memory_is_ignored_with_a_warning(
    tmp_path: Path,
    pg_url: str,
    s3_env: SeaweedServer,
    s3_storage_url: str,
    model_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = _memory_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'{"format": 1, "registries": {"http://x": {"at": "\xff')
    settings = _default_settings(tmp_path, pg_url, s3_env, s3_storage_url)
    with serve(settings) as live, live.client() as client:
        client.push(model_dir, "ns/m@1")
        with caplog.at_level(logging.WARNING, logger="registry.sdk"):
            client.pull("ns/m@1", tmp_path / "pulled", unsafe_skip_verify=True)
        used = len(_redirected(live, "admin"))
        assert used == len(_large(_tree(model_dir)))  # the store was used
    assert _tree(tmp_path / "pulled") == _tree(model_dir)
    [warning] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert str(path) in warning and "is damaged" in warning and "ignored" in warning


def test_a_local_store_streams_by_default_without_a_warning(
    local_settings: Settings, model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from registry.server.db import migrate

    local_settings.data_dir.mkdir()
    migrate(local_settings.resolved_database_url)
    assert local_settings.s3_presign_downloads is None
    with caplog.at_level(logging.WARNING), serve(local_settings) as live, live.client() as client:
        client.push(model_dir, "ns/m@1")
        answer = client._http.get("/v1/namespaces/ns/artifacts/m/versions/1/files/config.json",
                                  params={"redirect": "true"})  # fmt: skip
        assert answer.status_code == 200
        client.pull("ns/m@1", tmp_path / "pulled", unsafe_skip_verify=True)
        assert _redirected(live, "admin") == []
    assert _tree(tmp_path / "pulled") == _tree(model_dir)
    assert [r.getMessage() for r in caplog.records if r.name.startswith("registry.s")] == []
    assert not _memory_file().exists()
