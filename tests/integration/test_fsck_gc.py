"""``modelseal admin fsck`` and ``admin gc``, operator commands on the server, both backends:
each finding next to the clean case, and gc's promise that a blob a version names survives."""

from __future__ import annotations

import hashlib
import io
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from attest.files import LocalFile
from registry.server.db import make_engine, make_sessionmaker
from registry.server.models import AuditEntry, Blob, NamespaceBlob, UploadSession
from registry.server.services import journal, maintenance
from registry.server.services.bootstrap import operator_actor
from registry.server.services.maintenance import MaintenanceService
from registry.server.storage import BlobStore, LocalBlobStore, S3BlobStore, open_blob_store
from tests.support import Live, make_model_dir, run_cli


def _where(live: Live) -> list[str]:
    """The flags that name the registry's database and store, as `serve` was given them."""
    settings = live.settings
    flags = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        flags += ["--database-url", settings.database_url]
    if settings.storage:
        flags += ["--storage", settings.storage]
    return flags


def _env(live: Live) -> dict[str, str]:
    endpoint = live.settings.s3_endpoint_url
    return {"MODELSEAL_S3_ENDPOINT_URL": endpoint} if endpoint else {}


def fsck(live: Live, *flags: str) -> tuple[int, dict[str, Any]]:
    done = run_cli("admin", "fsck", *_where(live), "--json", *flags, extra_env=_env(live))
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def gc(live: Live, *flags: str) -> tuple[int, dict[str, Any]]:
    done = run_cli("admin", "gc", *_where(live), "--json", *flags, extra_env=_env(live))
    assert done.returncode == 0, done.stderr
    return done.returncode, json.loads(done.stdout)


def _kinds(report: dict[str, Any]) -> set[tuple[str, str]]:
    return {(f["kind"], f["subject"]) for f in report["findings"]}


@pytest.fixture
def store(live: Live) -> BlobStore:
    return open_blob_store(live.settings)


def _push(live: Live, tmp_path: Path, ref: str = "ns/m@1", seed: int = 0) -> list[str]:
    root = make_model_dir(tmp_path / f"push-{seed}", seed=seed)
    with live.client() as client:
        client.push(root, ref)
        return [f.digest.removeprefix("sha256:") for f in client.show(ref).files]


def _upload_only(live: Live, tmp_path: Path, data: bytes, namespace: str = "ns") -> str:
    """A blob uploaded and never named by a version (an abandoned push)."""
    path = tmp_path / f"blob-{hashlib.sha256(data).hexdigest()[:8]}"
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    with live.client() as client:
        client.upload_blob(namespace, LocalFile(path.name, path, len(data)), digest)
    return digest


def _store_directly(store: BlobStore, data: bytes) -> str:
    """An object with no blob row (a crash between storing and recording it)."""
    digest = hashlib.sha256(data).hexdigest()
    handle = store.start_upload(digest)
    part = store.put_part(handle, digest, 1, io.BytesIO(data), len(data))
    store.complete_upload(handle, digest, [part])
    return digest


def _overwrite(store: BlobStore, digest: str, data: bytes) -> None:
    """Damage a stored blob behind the registry's back."""
    if isinstance(store, LocalBlobStore):
        path = store.root / "blobs" / "sha256" / digest
        path.chmod(0o644)
        path.write_bytes(data)
    else:
        assert isinstance(store, S3BlobStore)
        store._s3.put_object(Bucket=store.bucket, Key=store._key(digest), Body=data)


@pytest.fixture
def db(live: Live) -> Iterator[Any]:
    engine = make_engine(live.settings.resolved_database_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def _age(db: Any, digest: str, hours: float = 48) -> None:
    """Make a blob (and every namespace's upload of it) look ``hours`` old."""
    then = datetime.now(UTC) - timedelta(hours=hours)
    with db.begin() as session:
        session.execute(update(Blob).where(Blob.digest == digest).values(created_at=then))
        session.execute(
            update(NamespaceBlob).where(NamespaceBlob.digest == digest).values(created_at=then)
        )


def _rows(db: Any, model: Any) -> int:
    with db() as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


# -- fsck ---------------------------------------------------------------------------------------


def test_fsck_is_clean_then_reports_a_deleted_object(
    live: Live, tmp_path: Path, store: BlobStore, db: Any
) -> None:
    digests = _push(live, tmp_path)
    code, report = fsck(live)
    assert code == 0 and report["clean"] and report["findings"] == []
    assert report["counts"]["blobs"] == len(set(digests)) == report["counts"]["objects"]
    human = run_cli("admin", "fsck", *_where(live), extra_env=_env(live))
    assert human.returncode == 0 and "fsck: clean" in human.stderr

    store.delete(digests[0])
    code, report = fsck(live)
    assert code == 1 and not report["clean"]
    assert _kinds(report) == {("missing-object", f"sha256:{digests[0]}")}
    assert "referenced by a version" in report["findings"][0]["detail"]
    human = run_cli("admin", "fsck", *_where(live), extra_env=_env(live))
    assert human.returncode == 1
    assert "missing-object" in human.stdout and digests[0] in human.stdout
    # Audited as the operator, each run, in the chain `audit verify` checks.
    with db() as session:
        runs = session.execute(select(AuditEntry).where(AuditEntry.action == "fsck")).scalars()
        outcomes = [(e.actor, e.outcome) for e in runs]
    assert outcomes == [(operator_actor(), "clean")] * 2 + [(operator_actor(), "findings")] * 2
    verified = run_cli("audit", "verify", live=live)
    assert verified.returncode == 0, verified.stderr


def test_damaged_bytes_size_always_and_digest_with_rehash(
    live: Live, tmp_path: Path, store: BlobStore
) -> None:
    [first, *_] = digests = sorted(set(_push(live, tmp_path)))
    size = store.size(first)
    assert size is not None and size > 4
    original = b"".join(store.read(first))
    _overwrite(store, first, bytes([original[0] ^ 0xFF]) + original[1:])  # same size
    assert fsck(live) == (0, fsck(live)[1])  # plain fsck reads sizes only: it cannot tell
    code, report = fsck(live, "--rehash")
    assert code == 1
    [finding] = report["findings"]
    assert (finding["kind"], finding["subject"]) == ("digest-mismatch", f"sha256:{first}")
    assert (
        hashlib.sha256(bytes([original[0] ^ 0xFF]) + original[1:]).hexdigest() in finding["detail"]
    )

    _overwrite(store, first, original[:-3])  # truncated
    code, report = fsck(live)
    assert code == 1 and _kinds(report) == {("size-mismatch", f"sha256:{first}")}
    _overwrite(store, first, original)
    assert fsck(live, "--rehash")[0] == 0, digests


def test_orphans_expired_and_stale_uploads_are_reported_then_collected(
    live: Live, tmp_path: Path, store: BlobStore, db: Any
) -> None:
    _push(live, tmp_path)
    orphan = _store_directly(store, b"an object no row names")
    stale_digest = hashlib.sha256(b"staged, never recorded").hexdigest()
    stale = store.start_upload(stale_digest)
    with httpx.Client(timeout=60, base_url=live.url,
                      headers={"Authorization": f"Bearer {live.admin_token}"}) as http:  # fmt: skip
        started = http.post(
            "/v1/namespaces/ns/uploads",
            json={"digest": "sha256:" + hashlib.sha256(b"left").hexdigest(), "size": 4},
        )
        assert started.status_code == 201, started.text
        upload_id = started.json()["id"]
    with db.begin() as session:
        session.execute(
            update(UploadSession).values(expires_at=datetime.now(UTC) - timedelta(hours=1))
        )
    code, report = fsck(live)
    assert code == 1
    assert _kinds(report) == {
        ("orphan-object", f"sha256:{orphan}"),
        ("stale-upload", stale),
        ("expired-upload", upload_id),
    }

    # Within the grace period (default 24 h) nothing is touched, dry run or not.
    assert gc(live)[1]["findings"] == [] and gc(live, "--dry-run")[1]["findings"] == []
    _, dry = gc(live, "--dry-run", "--grace-hours", "0")
    assert {kind for kind, _ in _kinds(dry)} == {"orphan-object", "stale-upload", "expired-upload"}
    assert store.exists(orphan) and len(list(store.list_uploads())) == 2
    assert _rows(db, UploadSession) == 1

    _, done = gc(live, "--grace-hours", "0")
    assert _kinds(done) == _kinds(report)
    assert not store.exists(orphan) and list(store.list_uploads()) == []
    assert _rows(db, UploadSession) == 0
    assert fsck(live) == (0, fsck(live)[1])
    with db() as session:
        actions = {
            tuple(row) for row in session.execute(select(AuditEntry.action, AuditEntry.actor))
        }
    for action in ("gc_expire_uploads", "gc_delete_objects", "gc_abort_staged"):
        assert (action, operator_actor()) in actions
    assert ("gc", operator_actor()) in actions  # the dry runs


# -- gc ------------------------------------------------------------------------------------------


def test_gc_deletes_unreferenced_blobs_past_the_grace_period_only(
    live: Live, tmp_path: Path, store: BlobStore, db: Any
) -> None:
    kept = set(_push(live, tmp_path))
    for digest in kept:
        _age(db, digest)  # old, but a version names them: never collected
    fresh = _upload_only(live, tmp_path, b"uploaded a minute ago")
    old = _upload_only(live, tmp_path, b"uploaded two days ago")
    _age(db, old)
    # Uploaded long ago by one namespace, just now by another: a push may be about to name it.
    shared = _upload_only(live, tmp_path, b"uploaded again by another namespace")
    _age(db, shared)
    assert _upload_only(live, tmp_path, b"uploaded again by another namespace", "other") == shared
    code, report = fsck(live)
    assert code == 1 and {k for k, _ in _kinds(report)} == {"unreferenced-blob"}
    assert len(report["findings"]) == 3

    _, dry = gc(live, "--dry-run")
    assert _kinds(dry) == {("unreferenced-blob", f"sha256:{old}")}
    assert store.exists(old) and _rows(db, Blob) == len(kept) + 3

    _, done = gc(live)
    assert _kinds(done) == {
        ("unreferenced-blob", f"sha256:{old}"),
        ("orphan-object", f"sha256:{old}"),
    }
    assert not store.exists(old)
    assert all(store.exists(d) for d in kept | {fresh, shared})
    with db() as session:
        left = set(session.execute(select(Blob.digest)).scalars())
        entry = session.execute(
            select(AuditEntry).where(AuditEntry.action == "gc_delete_blobs")
        ).scalar_one()
    assert left == kept | {fresh, shared}
    assert entry.actor == operator_actor() and f"sha256:{old}" in entry.details
    target = tmp_path / "pulled"
    with live.client() as client:
        client.pull("ns/m@1", target, pending=True, unsafe_skip_verify=True)
    assert (target / "config.json").is_file()
    assert run_cli("audit", "verify", live=live).returncode == 0


def test_a_blob_referenced_between_mark_and_sweep_is_kept(
    live: Live, tmp_path: Path, store: BlobStore, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = b"the loser of a push, or so it seemed"
    digest = _upload_only(live, tmp_path, data)
    _age(db, digest)
    committed: list[str] = []

    def push_now(marked: list[str]) -> None:
        assert marked == [digest]  # marked for deletion: now a version names it
        from attest.digests import FileDigest

        with live.client() as client:
            client.commit_version("ns/late@1", "model", [FileDigest("w.bin", len(data), digest)])  # type: ignore[arg-type]
        committed.append(digest)

    monkeypatch.setattr(maintenance, "after_mark", push_now)
    service = MaintenanceService(db, store)
    report = service.gc(operator_actor(), grace=timedelta(hours=24))
    assert committed == [digest] and report.findings == []
    assert store.exists(digest)
    with live.client() as client:
        assert client.show("ns/late@1").files[0].digest == f"sha256:{digest}"
    monkeypatch.setattr(maintenance, "after_mark", None)
    assert fsck(live)[0] == 0


@pytest.mark.parametrize("backend", ["postgres-s3"], indirect=True)
def test_a_commit_holding_its_reference_uncommitted_keeps_the_blob(
    live: Live, tmp_path: Path, store: BlobStore, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL, truly concurrent: a version commit has inserted its file rows (holding the
    blob row's key-share lock) but not committed when gc sweeps. gc skips the locked row; the
    commit then succeeds with its blob in place."""
    data = b"referenced by a transaction still open"
    digest = _upload_only(live, tmp_path, data)
    _age(db, digest)
    inside, release = threading.Event(), threading.Event()

    def hold(action: str) -> None:
        if action == "put_version":
            inside.set()
            assert release.wait(30)

    monkeypatch.setattr(journal, "crash_hook", hold)
    outcome: list[object] = []

    def commit() -> None:
        from attest.digests import FileDigest

        with live.client() as client:
            outcome.append(
                client.commit_version(
                    "ns/held@1", "model", [FileDigest("w.bin", len(data), digest)]
                )  # type: ignore[arg-type]
            )

    thread = threading.Thread(target=commit)
    thread.start()
    assert inside.wait(30)
    try:
        report = MaintenanceService(db, store).gc(operator_actor(), grace=timedelta(hours=24))
    finally:
        release.set()
        thread.join(30)
    monkeypatch.setattr(journal, "crash_hook", None)
    assert report.findings == [] and len(outcome) == 1
    assert store.exists(digest) and _rows(db, Blob) == 1
    assert fsck(live)[0] == 0


@pytest.mark.parametrize("backend", ["postgres-s3"], indirect=True)
def test_a_commit_that_loses_its_blob_to_gc_is_told_which_and_nothing_is_half_written(
    live: Live, tmp_path: Path, store: BlobStore, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other order: gc collects the blob after the commit checked it, before the commit
    inserts its rows. The commit fails as MissingBlobsError naming the blob (not a 500), no
    version exists, and pushing again works."""
    from attest.digests import FileDigest
    from registry.errors import MissingBlobsError
    from registry.server.services.versions import VersionService

    data = b"collected between the check and the insert"
    digest = _upload_only(live, tmp_path, data)
    _age(db, digest)
    checked = VersionService._check_blobs

    def check_then_collect(session: Any, ns: Any, files: Any) -> None:
        checked(session, ns, files)
        monkeypatch.setattr(VersionService, "_check_blobs", staticmethod(checked))
        collector = threading.Thread(target=lambda: MaintenanceService(db, store).gc(
            operator_actor(), grace=timedelta(hours=24)))  # fmt: skip
        collector.start()
        collector.join(30)

    monkeypatch.setattr(VersionService, "_check_blobs", staticmethod(check_then_collect))
    file = FileDigest("w.bin", len(data), digest)
    with live.client() as client:
        with pytest.raises(MissingBlobsError) as refused:
            client.commit_version("ns/lost@1", "model", [file])  # type: ignore[arg-type]
        assert f"sha256:{digest}" in str(refused.value)
        assert client.list_artifacts("ns") == [] or all(
            a.name != "lost" or a.version_count == 0 for a in client.list_artifacts("ns")
        )
    assert not store.exists(digest)
    (tmp_path / "again").mkdir()
    again = _upload_only(live, tmp_path / "again", data)
    assert again == digest
    with live.client() as client:
        assert client.commit_version("ns/lost@1", "model", [file]).state == "pending"  # type: ignore[arg-type]
    assert fsck(live)[0] == 0


def test_bad_flags_are_refused(live: Live, tmp_path: Path) -> None:
    negative = run_cli("admin", "gc", *_where(live), "--grace-hours", "-1", extra_env=_env(live))
    assert negative.returncode == 2 and "--grace-hours" in negative.stderr
    nowhere = run_cli("admin", "fsck", "--data-dir", str(tmp_path / "elsewhere"))
    assert nowhere.returncode == 1 and "holds no registry database" in nowhere.stderr


@pytest.mark.parametrize(
    "command", [["admin", "fsck"], ["admin", "gc"], ["admin", "token", "create"]]
)
def test_operator_commands_refuse_a_database_that_is_not_a_registrys(
    tmp_path: Path, command: list[str]
) -> None:
    """A wrong --data-dir / --database-url is one line naming the flags, not a traceback, and
    nothing is created in that database."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "registry.db").write_bytes(b"")  # an SQLite file with no schema
    done = run_cli(*command, "--data-dir", str(data))
    assert done.returncode == 1, done.stderr
    assert "holds no modelseal schema" in done.stderr and "--database-url" in done.stderr
    assert "Traceback" not in done.stderr
    import sqlite3

    with sqlite3.connect(data / "registry.db") as db:
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == []


def test_a_password_on_the_command_line_is_warned_about(tmp_path: Path) -> None:
    """``--database-url`` with a password puts it in the process list; the variable does not."""
    url = "postgresql+psycopg://modelseal:s3cret@127.0.0.1:1/registry"  # nothing listens
    done = run_cli("admin", "fsck", "--data-dir", str(tmp_path), "--database-url", url)
    assert done.returncode != 0
    assert "carries a password" in done.stderr and "MODELSEAL_DATABASE_URL" in done.stderr
    quiet = run_cli("admin", "fsck", "--data-dir", str(tmp_path), "--database-url",
                    url.replace(":s3cret", ""))  # fmt: skip
    assert quiet.returncode != 0 and "carries a password" not in quiet.stderr
