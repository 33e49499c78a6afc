"""Small files many to a request (``POST /v1/namespaces/{ns}/blobs``), both backends: every
blob is hashed before it is stored, a batch is recorded whole or not at all, the index is
checked before any byte is stored, and garbage collection never deletes what a batch stores."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

import attest.files
from attest.digests import Digest
from registry.errors import (
    DigestMismatchError,
    NotFoundError,
    UploadExpiredError,
    UploadOffsetError,
)
from registry.server.db import make_engine, make_sessionmaker
from registry.server.models import AuditEntry, Blob, Namespace, NamespaceBlob, UploadSession
from registry.server.services.auth import Principal, Role
from registry.server.services.bootstrap import operator_actor
from registry.server.services.maintenance import MaintenanceService
from registry.server.services.uploads import UploadService
from registry.server.storage import open_blob_store
from registry.wire import BATCH_BLOB_MAX_BYTES, BATCH_MAX_BLOBS, BATCH_MAX_BYTES, BATCH_MEDIA_TYPE
from tests.support import Live

MiB = 1024 * 1024


def _index_line(entries: Sequence[dict[str, Any]]) -> bytes:
    return json.dumps({"blobs": list(entries)}).encode() + b"\n"


def batch_body(blobs: Sequence[bytes], *, declare: Sequence[bytes] | None = None) -> bytes:
    """A batch of ``blobs``, its index declaring the digests and sizes of ``declare``."""
    declared = blobs if declare is None else declare
    index = [{"digest": f"sha256:{hashlib.sha256(b).hexdigest()}", "size": len(b)}
             for b in declared]  # fmt: skip
    return _index_line(index) + b"".join(blobs)


def post(live: Live, body: bytes, *, namespace: str = "ns", token: str | None = None,
         headers: dict[str, str] | None = None) -> httpx.Response:  # fmt: skip
    sent = {"Authorization": f"Bearer {token or live.admin_token}",
            "Content-Type": BATCH_MEDIA_TYPE, **(headers or {})}  # fmt: skip
    return httpx.post(f"{live.url}/v1/namespaces/{namespace}/blobs", content=body,
                      headers=sent, timeout=60)  # fmt: skip


class Db:
    def __init__(self, live: Live) -> None:
        self.sessions = make_sessionmaker(make_engine(live.settings.resolved_database_url))

    def held(self, namespace: str = "ns") -> set[str]:
        with self.sessions() as session:
            return set(
                session.execute(
                    select(NamespaceBlob.digest)
                    .join(Namespace, Namespace.id == NamespaceBlob.namespace_id)
                    .where(Namespace.name == namespace)
                ).scalars()
            )

    def count(self, model: Any) -> int:
        with self.sessions() as session:
            return int(session.execute(select(func.count()).select_from(model)).scalar_one())

    def audited(self, action: str) -> list[dict[str, Any]]:
        with self.sessions() as session:
            found = session.execute(select(AuditEntry).where(AuditEntry.action == action))
            return [json.loads(e.details) for e in found.scalars()]


def _hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_batch_is_stored_verified_recorded_and_audited(live: Live) -> None:
    blobs = [os.urandom(n) for n in (0, 1, 4096, BATCH_BLOB_MAX_BYTES)]
    blobs.append(blobs[2])  # the same bytes twice: answered once
    response = post(live, batch_body(blobs))
    assert response.status_code == 201, response.text
    answered = [(b["digest"], b["size"]) for b in response.json()["blobs"]]
    assert answered == [(f"sha256:{_hex(b)}", len(b)) for b in blobs[:4]]
    db = Db(live)
    assert db.held() == {_hex(b) for b in blobs}
    store = open_blob_store(live.settings)
    for data in blobs[:4]:
        assert b"".join(store.read(_hex(data))) == data
    assert db.count(UploadSession) == 0  # the batch's claims are gone
    (entry,) = db.audited("upload_blobs")
    assert entry["count"] == 4 and entry["size"] == sum(len(b) for b in blobs[:4])
    assert entry["digests"] == [f"sha256:{_hex(b)}" for b in blobs[:4]]
    again = post(live, batch_body(blobs))  # content-addressed: sending again is harmless
    assert again.status_code == 201 and again.json() == response.json()


def test_one_mismatching_blob_records_none_of_the_batch(live: Live) -> None:
    good, evil = os.urandom(1000), os.urandom(1000)
    body = batch_body([good, evil], declare=[good, os.urandom(1000)])
    response = post(live, body)
    assert response.status_code == 400
    assert response.json()["type"].endswith("digest-mismatch")
    assert "blob 1 of the batch" in response.json()["detail"]
    db = Db(live)
    assert db.held() == set()  # not even the good one, checked and stored before the bad one
    assert db.count(Blob) == 0 and db.count(UploadSession) == 0
    assert not open_blob_store(live.settings).exists(_hex(evil))  # never at any content key
    assert db.audited("upload_blobs") == []


#: (body, status, words in the detail, case)
MALFORMED = [
    (b"", 400, "index", "empty"),
    (b"not json\n", 400, "invalid batch index", "not-json"),
    (b'{"blobs": []}\n', 400, "blobs", "no-blobs"),
    (
        b'{"blobs": [{"digest": "sha256:' + b"0" * 64 + b'", "size": 1}]}',
        400,
        "newline",
        "no-newline",
    ),
    (_index_line([{"digest": "md5:00", "size": 1}]) + b"x", 400, "digest", "bad-digest"),
    (_index_line([{"digest": "sha256:" + "0" * 64, "size": -1}]), 400, "size", "negative-size"),
    (
        _index_line([{"digest": "sha256:" + "0" * 64, "size": "1"}]) + b"x",
        400,
        "size",
        "size-as-text",
    ),
    (
        _index_line([{"digest": "sha256:" + "0" * 64, "size": 1, "path": "../../etc/passwd"}])
        + b"x",
        400,
        "path",
        "extra-field",
    ),
    (
        _index_line([{"digest": "sha256:" + "0" * 64, "size": BATCH_BLOB_MAX_BYTES + 1}])
        + b"x" * (BATCH_BLOB_MAX_BYTES + 1),
        413,
        "session",
        "blob-too-large",
    ),
    (
        _index_line([{"digest": "sha256:" + "0" * 64, "size": 0}] * (BATCH_MAX_BLOBS + 1)),
        400,
        "blobs",
        "too-many",
    ),
    (batch_body([b"abc"]) + b"d", 400, "declares", "body-longer"),
    (batch_body([b"abc"])[:-1], 400, "declares", "body-shorter"),
    (
        _index_line(
            [
                {"digest": "sha256:" + _hex(b"a"), "size": 1},
                {"digest": "sha256:" + _hex(b"a"), "size": 2},
            ]
        )
        + b"aaa",
        400,
        "twice",
        "one-digest-two-sizes",
    ),
    (b" " * (300 * 1024) + b"\n", 400, "index", "index-too-long"),
]


def test_a_malformed_batch_is_refused_and_stores_nothing(live: Live) -> None:
    for body, status, words, case in MALFORMED:
        response = post(live, body)
        assert response.status_code == status, (case, response.text)
        assert words in response.json()["detail"], case
    db = Db(live)
    assert db.held() == set() and db.count(Blob) == 0 and db.count(UploadSession) == 0


def test_a_body_past_the_batch_limit_is_refused_before_it_is_read(live: Live) -> None:
    response = post(live, b"x" * (BATCH_MAX_BYTES + 1))
    assert response.status_code == 413, response.text


def test_a_batch_needs_a_content_length(live: Live) -> None:
    body = batch_body([b"abc"])
    response = httpx.post(
        f"{live.url}/v1/namespaces/ns/blobs",
        content=iter([body]),  # chunked transfer encoding: no length up front
        headers={"Authorization": f"Bearer {live.admin_token}", "Content-Type": BATCH_MEDIA_TYPE},
    )
    assert response.status_code == 400 and "Content-Length" in response.json()["detail"]
    assert Db(live).held() == set()


def test_only_pushers_of_the_namespace_may_send_a_batch(live: Live) -> None:
    with live.client() as admin:
        deployer = admin.create_token("d", "deployer", "ns").token or ""
        outsider = admin.create_token("o", "publisher", "other").token or ""
        pusher = admin.create_token("p", "publisher", "ns").token or ""
    body = batch_body([b"weights"])
    assert post(live, body, token=deployer).status_code == 403
    assert post(live, body, token=outsider).status_code in (403, 404)
    assert post(live, body, token="ms_" + "0" * 40).status_code == 401
    assert Db(live).held() == set() and Db(live).count(Blob) == 0
    assert post(live, body, namespace="Bad..Name", token=pusher).status_code in (400, 422)
    assert post(live, body, token=pusher).status_code == 201
    assert Db(live).held() == {_hex(b"weights")}


def test_gc_during_a_batch_never_deletes_what_it_stores(live: Live) -> None:
    """An object with no blob row (an orphan) is what gc deletes: a batch writes objects before
    it records their rows, so its claims must keep gc away from them in between."""
    data = [os.urandom(100), os.urandom(200)]
    settings = live.settings
    sessions = make_sessionmaker(make_engine(settings.resolved_database_url))
    store = open_blob_store(settings)
    # The first blob is already an object with no row (a crashed upload's leftover), so gc
    # has it listed as an orphan whatever the grace.
    store.put_verified(_hex(data[0]), data[0])
    gc = MaintenanceService(sessions, store)
    uploads = UploadService(sessions, store, settings)
    real_put = store.put_verified
    swept: list[Any] = []

    def put_then_collect(digest: str, blob: bytes) -> None:
        real_put(digest, blob)
        swept.append(gc.gc(operator_actor(), grace=timedelta(0)))

    store.put_verified = put_then_collect  # type: ignore[method-assign]
    admin = Principal(token_id="t", name="admin", role=Role.ADMIN, namespace=None)
    body = batch_body(data)
    uploads.put_batch(admin, "ns", io.BytesIO(body), len(body))
    assert len(swept) == 2
    for blob in data:  # each object survived the gc run right after it was written
        assert b"".join(store.read(_hex(blob))) == blob
    assert Db(live).held() == {_hex(b) for b in data}


def test_a_push_sends_small_files_in_batches_and_large_ones_in_sessions(
    live: Live, tmp_path: Path
) -> None:
    root = tmp_path / "model"
    (root / "shards").mkdir(parents=True)
    for i in range(1200):  # three batches of at most 500
        (root / "shards" / f"{i:04d}.json").write_text(json.dumps({"i": i}))
    (root / "same-a.txt").write_text("twice")
    (root / "same-b.txt").write_text("twice")
    (root / "weights.bin").write_bytes(os.urandom(BATCH_BLOB_MAX_BYTES + 1))
    with live.client() as client:
        version = client.push(root, "ns/many@1")
        assert version.file_count == 1203
        target = tmp_path / "pulled"
        client.pull("ns/many@1", target, unsafe_skip_verify=True)
    for path in root.rglob("*"):
        if path.is_file():
            assert (target / path.relative_to(root)).read_bytes() == path.read_bytes()
    db = Db(live)
    batches = db.audited("upload_blobs")
    assert sum(b["count"] for b in batches) == 1201  # every blob named in the audit log
    assert len(db.audited("finish_upload")) == 1  # weights.bin, in a session
    assert db.count(UploadSession) == 0


def test_a_file_changed_after_it_was_hashed_fails_the_push(
    live: Live, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "model"
    root.mkdir()
    config = root / "config.json"
    config.write_text('{"a": 1}')
    original = attest.files.hash_file

    def hash_then_change(item: Any) -> Any:
        digest = original(item)
        config.write_text('{"a": 2}')  # same size, other bytes
        return digest

    monkeypatch.setattr(attest.files, "hash_file", hash_then_change)  # push imports it per call
    with live.client() as client, pytest.raises(DigestMismatchError):
        client.push(root, "ns/changed@1")
    assert Db(live).held() == set()
    assert Db(live).audited("put_version") == []


# -- holes an attack on the batch found (each failed before its fix) ------------------------------


def _services(live: Live) -> tuple[Any, Any, UploadService, Principal]:
    sessions = make_sessionmaker(make_engine(live.settings.resolved_database_url))
    store = open_blob_store(live.settings)
    admin = Principal(token_id="t", name="admin", role=Role.ADMIN, namespace=None)
    return sessions, store, UploadService(sessions, store, live.settings), admin


def test_a_batch_that_outlives_its_claims_records_nothing(live: Live) -> None:
    """Claims expire like sessions (and expiry or gc deletes them): a batch whose body took
    longer than that may have had its objects collected, so it must not record them."""
    sessions, store, uploads, admin = _services(live)
    real_put = store.put_verified

    def put_then_expire(digest: str, blob: bytes) -> None:
        real_put(digest, blob)
        with sessions.begin() as session:  # what expiry does to a claim past its lifetime
            session.execute(UploadSession.__table__.delete())

    store.put_verified = put_then_expire  # type: ignore[method-assign]
    body = batch_body([b"slow one", b"slow two"])
    with pytest.raises(UploadExpiredError):
        uploads.put_batch(admin, "ns", io.BytesIO(body), len(body))
    assert Db(live).held() == set() and Db(live).count(Blob) == 0


def test_a_batch_claim_cannot_be_continued_as_an_upload_session(live: Live) -> None:
    sessions, store, uploads, admin = _services(live)
    real_put = store.put_verified
    tried: list[str] = []

    def put_then_finish_the_claim(digest: str, blob: bytes) -> None:
        real_put(digest, blob)
        with sessions() as session:
            claims = list(session.execute(select(UploadSession.id)).scalars())
        for claim in claims:
            for attempt in (uploads.status, uploads.finish, uploads.cancel):
                with pytest.raises(NotFoundError):
                    attempt(admin, claim)
            tried.append(claim)
        raise RuntimeError("the batch is cut off here")

    store.put_verified = put_then_finish_the_claim  # type: ignore[method-assign]
    body = batch_body([b"claimed"])
    with pytest.raises(RuntimeError):
        uploads.put_batch(admin, "ns", io.BytesIO(body), len(body))
    assert tried and Db(live).held() == set()


def test_a_session_at_finishing_with_wrong_bytes_does_not_take_anothers_blob(
    live: Live, tmp_path: Path
) -> None:
    """Two finishers of one session race: the first claims it (offset -1) and is still
    checking the digest when the second arrives. The object is at its content key because
    another namespace stored it: the second finisher must not publish it for this session,
    whose own bytes were junk (that would hand the victim's bytes to whoever knows a digest)."""
    secret = os.urandom(3000)
    digest = _hex(secret)
    with live.client() as admin:
        admin.push(_one_file(tmp_path / "victim", secret), "victim/m@1")
        evil = admin.create_token("e", "publisher", "evil").token or ""
    auth = {"Authorization": f"Bearer {evil}"}
    started = httpx.post(f"{live.url}/v1/namespaces/evil/uploads", headers=auth,
                         json={"digest": f"sha256:{digest}", "size": len(secret)})  # fmt: skip
    assert started.status_code == 201, started.text
    upload = started.json()["id"]
    junk = httpx.patch(f"{live.url}/v1/uploads/{upload}", content=os.urandom(len(secret)),
                       headers={**auth, "Content-Range": f"bytes 0-{len(secret) - 1}"})  # fmt: skip
    assert junk.status_code == 202, junk.text
    sessions = make_sessionmaker(make_engine(live.settings.resolved_database_url))
    with sessions.begin() as session:  # the first finisher's claim, mid-check
        session.execute(
            UploadSession.__table__.update().where(UploadSession.id == upload).values(offset=-1)
        )
    second = httpx.put(f"{live.url}/v1/uploads/{upload}", headers=auth)
    assert second.status_code == 400 and second.json()["type"].endswith("digest-mismatch")
    assert Db(live).held("evil") == set()


def _one_file(root: Path, data: bytes) -> Path:
    root.mkdir(parents=True)
    (root / "secret.bin").write_bytes(data)
    return root


def test_a_temporary_file_left_by_a_crash_is_garbage(live: Live) -> None:
    if live.settings.storage:
        pytest.skip("the local store's temporary files")
    sessions, store, _uploads, _admin = _services(live)
    tmp = store.root / "tmp"  # type: ignore[attr-defined]
    left = tmp / f"{'a' * 64}.{'b' * 32}.put"
    left.write_bytes(b"half a blob")
    old = time.time() - 3 * 86400
    os.utime(left, (old, old))
    fresh = tmp / f"{'c' * 64}.{'d' * 32}.put"  # a write in progress
    fresh.write_bytes(b"being written")
    gc = MaintenanceService(sessions, store)
    found = {(f.kind, f.subject) for f in gc.fsck(operator_actor()).findings}
    assert ("stale-upload", f"tmp/{left.name}") in found
    gc.gc(operator_actor(), grace=timedelta(hours=24))
    assert not left.exists() and fresh.exists()


def test_a_file_being_written_survives_gc_without_grace(live: Live) -> None:
    """gc --grace-hours 0 leaves a temporary file written to in the last 10 minutes (a push in
    progress), and collects one idle for longer."""
    if live.settings.storage:
        pytest.skip("the local store's temporary files")
    sessions, store, _uploads, _admin = _services(live)
    tmp = store.root / "tmp"  # type: ignore[attr-defined]
    writing = tmp / f"{'e' * 64}.{'f' * 32}.put"
    writing.write_bytes(b"being written")
    idle = tmp / f"{'1' * 64}.{'2' * 32}.put"
    idle.write_bytes(b"abandoned")
    old = time.time() - 11 * 60
    os.utime(idle, (old, old))
    report = MaintenanceService(sessions, store).gc(operator_actor(), grace=timedelta(0))
    assert writing.exists() and not idle.exists()
    assert {f.subject for f in report.findings if f.kind == "stale-upload"} == {f"tmp/{idle.name}"}


def _stall(live: Live, token: str, namespace: str = "ns") -> Any:
    """A batch upload that sends its index and then nothing: an open socket."""
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(live.url)
    body = batch_body([os.urandom(1000)])
    conn = socket.create_connection((where.hostname, where.port), timeout=10)
    conn.sendall(
        f"POST /v1/namespaces/{namespace}/blobs HTTP/1.1\r\nHost: x\r\n".encode()
        + f"Authorization: Bearer {token}\r\nContent-Type: {BATCH_MEDIA_TYPE}\r\n".encode()
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body.split(b"\n", 1)[0]
        + b"\n"
    )
    return conn


def test_one_tokens_stalled_uploads_leave_room_for_another_tokens(
    live: Live, tmp_path: Path
) -> None:
    if live.settings.storage:
        pytest.skip("the upload slots are the same whatever the backend")
    with live.client() as admin:
        evil = admin.create_token("evil", "publisher", "evil").token or ""
        honest = admin.create_token("honest", "publisher", "ns").token or ""
    stalled = [_stall(live, evil, "evil") for _ in range(20)]  # more than all the slots
    try:
        time.sleep(1.0)
        root = tmp_path / "model"
        root.mkdir()
        (root / "config.json").write_text('{"honest": true}')
        started = time.monotonic()
        with live.client(token=honest, timeout=15) as client:
            client.push(root, "ns/honest@1")
        assert time.monotonic() - started < 10
    finally:
        for conn in stalled:
            conn.close()


def test_a_body_that_stops_arriving_is_dropped(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    from registry.server.api.routes import uploads as upload_routes

    monkeypatch.setattr(upload_routes, "BODY_IDLE_SECONDS", 1.0)
    conn = _stall(live, live.admin_token)
    try:
        conn.settimeout(15)
        answer = conn.recv(4096)
    finally:
        conn.close()
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"no byte of the batch body arrived" in answer
    assert Db(live).count(UploadSession) == 0 and Db(live).held() == set()


def test_slow_uploads_do_not_starve_every_other_request(live: Live) -> None:
    """Each upload that streams its body holds a worker thread while the body trickles in: 45
    of them (more than the default pool of 40) must leave the rest of the API answering."""
    if live.settings.storage:
        pytest.skip("the thread pools are the same whatever the backend")
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(live.url)
    body = batch_body([os.urandom(1000)])
    head = body.split(b"\n", 1)[0] + b"\n"
    slow: list[socket.socket] = []
    try:
        for _ in range(45):
            conn = socket.create_connection((where.hostname, where.port), timeout=10)
            conn.sendall(
                b"POST /v1/namespaces/ns/blobs HTTP/1.1\r\nHost: x\r\n"
                + f"Authorization: Bearer {live.admin_token}\r\n".encode()
                + f"Content-Type: {BATCH_MEDIA_TYPE}\r\n".encode()
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + head  # the index, then nothing: the blob never comes
            )
            slow.append(conn)
        time.sleep(1.0)
        started = time.monotonic()
        answer = httpx.get(f"{live.url}/v1/namespaces", timeout=15,
                           headers={"Authorization": f"Bearer {live.admin_token}"})  # fmt: skip
        assert answer.status_code == 200
        assert time.monotonic() - started < 10
    finally:
        for conn in slow:
            conn.close()
    deadline = time.monotonic() + 20
    while Db(live).count(UploadSession) and time.monotonic() < deadline:
        time.sleep(0.2)  # the cut-off batches drop their claims
    assert Db(live).count(UploadSession) == 0 and Db(live).held() == set()


def test_a_chunk_that_arrives_after_its_upload_was_cancelled_is_a_404(live: Live) -> None:
    """A chunk takes its ticket, the session is cancelled, then the chunk's bytes reach the
    store: the answer is "gone", never a server error (it was a FileNotFoundError, a 500)."""
    _sessions, store, uploads, admin = _services(live)
    data = os.urandom(3000)
    started = uploads.start(admin, "ns", Digest(_hex(data)), len(data))
    assert started.id is not None
    ticket = uploads.begin_chunk(admin, started.id, 0, len(data))
    real_put_part = store.put_part

    def cancelled_meanwhile(*args: Any) -> Any:  # the chunk has claimed its part number
        assert started.id is not None
        uploads.cancel(admin, started.id)
        return real_put_part(*args)

    store.put_part = cancelled_meanwhile  # type: ignore[method-assign]
    with pytest.raises((NotFoundError, UploadOffsetError)):
        uploads.commit_chunk(ticket, io.BytesIO(data), lambda: b"")
