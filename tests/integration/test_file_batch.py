"""Small files of a version many to a response (``POST .../versions/{v}/files``), both
backends: the rules of a single file's download hold for every file of a batch, a pull checks
each file against the verified manifest before writing it, and each batch is an audited read."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from registry.errors import (
    ConnectionFailedError,
    PullVerificationError,
    StorageUnavailableError,
)
from registry.server.db import make_engine, make_sessionmaker
from registry.server.models import AuditEntry
from registry.server.storage import open_blob_store
from registry.wire import BATCH_BLOB_MAX_BYTES, FILE_BATCH_MEDIA_TYPE
from tests.support import Live


def small_model(root: Path, files: int = 30) -> Path:
    (root / "parts").mkdir(parents=True)
    for i in range(files):
        (root / "parts" / f"{i:03d}.json").write_text(json.dumps({"i": i, "pad": "x" * i}))
    (root / "weights.bin").write_bytes(os.urandom(BATCH_BLOB_MAX_BYTES + 10))  # alone
    return root


def ask(live: Live, ref_path: str, paths: Any, token: str | None = None) -> httpx.Response:
    return httpx.post(
        f"{live.url}/v1/namespaces/{ref_path}/files",
        json={"paths": paths},
        headers={"Authorization": f"Bearer {token or live.admin_token}"},
        timeout=60,
    )


def accesses(live: Live) -> list[tuple[str, str]]:
    sessions = make_sessionmaker(make_engine(live.settings.resolved_database_url))
    with sessions() as session:
        rows = session.execute(
            select(AuditEntry).where(AuditEntry.action == "download_files")
        ).scalars()
        return [(e.outcome, e.actor) for e in rows]


def test_a_pull_fetches_small_files_in_batches_and_checks_each(live: Live, tmp_path: Path) -> None:
    root = small_model(tmp_path / "m")
    with live.client() as client:
        client.push(root, "ns/small@1")
        client.pull("ns/small@1", tmp_path / "out", unsafe_skip_verify=True)
    for path in root.rglob("*"):
        if path.is_file():
            assert (tmp_path / "out" / path.relative_to(root)).read_bytes() == path.read_bytes()
    assert accesses(live) == [("ok", "admin")]  # one batch of 30, audited as a read

    answer = ask(live, "ns/artifacts/small/versions/1", ["parts/002.json", "parts/000.json"])
    assert answer.status_code == 200 and answer.headers["content-type"] == FILE_BATCH_MEDIA_TYPE
    head, _, rest = answer.content.partition(b"\n")
    listed = json.loads(head)["files"]
    assert [f["path"] for f in listed] == ["parts/002.json", "parts/000.json"]  # asked order
    assert rest == (root / "parts/002.json").read_bytes() + (root / "parts/000.json").read_bytes()


def test_a_tampered_small_file_fails_the_pull_and_nothing_lands(live: Live, tmp_path: Path) -> None:
    root = small_model(tmp_path / "m", files=5)
    with live.client() as client:
        version = client.push(root, "ns/small@1")
        victim = next(f for f in version.files if f.path == "parts/003.json")
        digest = victim.digest.removeprefix("sha256:")
        store = open_blob_store(live.settings)
        forged = b"{" + b"Z" * (victim.size - 2) + b"}"
        if hasattr(store, "root"):  # local: the file is read-only, as written
            path = store.root / "blobs" / "sha256" / digest
            path.chmod(0o644)
            path.write_bytes(forged)
        else:  # S3: overwrite the object behind the registry's back (the store is the attacker)
            store._s3.put_object(Bucket=store.bucket, Key=store._key(digest), Body=forged)
        target = tmp_path / "out"
        with pytest.raises(PullVerificationError) as raised:
            client.pull("ns/small@1", target, unsafe_skip_verify=True)
        assert "parts/003.json" in str(raised.value)
    assert not target.exists()
    assert not any(p.name.startswith(".out.") for p in tmp_path.iterdir())  # no staging left


def test_the_rules_of_a_single_download_hold_for_a_batch(live: Live, tmp_path: Path) -> None:
    root = small_model(tmp_path / "m", files=3)
    with live.client() as admin:
        admin.push(root, "ns/small@1")
        deployer = admin.create_token("d", "deployer", "ns").token or ""
        outsider = admin.create_token("o", "deployer", "other").token or ""
    where = "ns/artifacts/small/versions/1"
    one = ["parts/000.json"]
    assert ask(live, where, one, token=deployer).status_code == 403  # pending: not to deployers
    assert ask(live, where, one, token=outsider).status_code in (403, 404)
    assert ask(live, where, one, token="ms_" + "0" * 40).status_code == 401
    assert ask(live, where, ["parts/nope.json"]).status_code == 404
    assert ask(live, where, ["weights.bin"]).status_code == 413  # larger than a batch carries
    assert ask(live, where, one * 2).status_code in (400, 422)  # a path twice
    assert ask(live, where, ["../etc/passwd"]).status_code in (400, 422)
    assert ask(live, where, []).status_code in (400, 422)
    assert ask(live, where, [f"p{i}" for i in range(1001)]).status_code in (400, 422)
    assert ask(live, "ns/artifacts/small/versions/2", one).status_code == 404
    denied = [outcome for outcome, _ in accesses(live)]
    assert denied.count("denied") >= 2 and "ok" not in denied
    with live.client() as admin:
        admin.reject("ns/small@1", "found bad")
    assert ask(live, where, one).status_code in (409, 410)  # rejected: served to nobody


def test_a_blob_missing_mid_answer_is_an_audited_error_and_nothing_lands(
    live: Live, tmp_path: Path
) -> None:
    """The 200 has gone out when the store fails: the answer is cut short, the client says
    the registry's store may be failing (not that it cannot be reached, not that the bytes
    were forged), the target stays absent, and the failure is on the audit record."""
    root = small_model(tmp_path / "m", files=5)
    with live.client() as client:
        version = client.push(root, "ns/small@1")
        gone = next(f for f in version.files if f.path == "parts/002.json")
        open_blob_store(live.settings).delete(gone.digest.removeprefix("sha256:"))
        target = tmp_path / "out"
        with pytest.raises((StorageUnavailableError, ConnectionFailedError)) as raised:
            client.pull("ns/small@1", target, unsafe_skip_verify=True)
        assert "store" in str(raised.value)
    assert not target.exists()
    assert ("error", "admin") in accesses(live)


def test_long_non_ascii_paths_are_pulled_in_batches_that_fit(live: Live, tmp_path: Path) -> None:
    """Three hundred files whose paths are 180 emoji each (720 bytes): their index would not
    fit one answer (the registry caps it at 256 KiB), so the client asks for fewer at a time."""
    root = tmp_path / "m"
    deep = root / ("\U0001f600" * 60) / ("\U0001f601" * 60) / ("\U0001f602" * 60)
    deep.mkdir(parents=True)
    for i in range(300):
        (deep / f"{i:03d}").write_text(str(i))
    with live.client() as client:
        client.push(root, "ns/emoji@1")
        client.pull("ns/emoji@1", tmp_path / "out", unsafe_skip_verify=True)
    pulled = tmp_path / "out" / deep.relative_to(root)
    assert sorted(p.name for p in pulled.iterdir()) == sorted(p.name for p in deep.iterdir())
    assert len(accesses(live)) >= 2  # more than one batch


def test_the_audit_entry_of_a_download_names_the_version_its_selector_chose(
    live: Live, tmp_path: Path
) -> None:
    """An auditor reading who downloaded what must not have to resolve an alias or digest as it
    stood then: the entry names the version served."""
    root = small_model(tmp_path / "m", files=3)
    with live.client() as admin:
        pushed = admin.push(root, "ns/small@1")
    by_digest = f"ns/artifacts/small/versions/{pushed.root_digest}"
    assert ask(live, by_digest, ["parts/000.json"]).status_code == 200
    sessions = make_sessionmaker(make_engine(live.settings.resolved_database_url))
    with sessions() as session:
        [entry] = session.execute(
            select(AuditEntry).where(AuditEntry.action == "download_files")
        ).scalars()
    assert entry.target.endswith(f"/versions/{pushed.root_digest}/files")
    assert json.loads(entry.details)["version"] == "ns/small@1"
