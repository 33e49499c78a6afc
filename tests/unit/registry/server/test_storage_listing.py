"""Listing what a blob store holds (for fsck and gc), both stores; and store errors that reach
clients name no Python object (a botocore message once showed ``<…_WholePieces object at 0x…>``)."""

from __future__ import annotations

import hashlib
import io
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from registry.errors import StorageUnavailableError
from registry.server.storage import BlobStore, LocalBlobStore, S3BlobStore
from tests.services import SeaweedServer


@pytest.fixture(
    params=[
        pytest.param("local", id="local"),
        pytest.param("s3", id="s3", marks=pytest.mark.integration),
    ]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return LocalBlobStore(tmp_path / "store")
    s3: SeaweedServer = request.getfixturevalue("s3_env")
    return S3BlobStore(
        request.getfixturevalue("s3_storage_url"), endpoint_url=s3.endpoint_url, region=s3.region
    )


def _stored(store: BlobStore, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    handle = store.start_upload(digest)
    part = store.put_part(handle, digest, 1, io.BytesIO(data), len(data))
    store.complete_upload(handle, digest, [part])
    return digest


def test_blobs_and_staged_uploads_are_listed(store: BlobStore) -> None:
    before = datetime.now(UTC) - timedelta(minutes=5)
    assert list(store.list_blobs()) == [] and list(store.list_uploads()) == []
    a, b = _stored(store, b"first blob"), _stored(store, b"second, longer blob")
    listed = {blob.digest: blob for blob in store.list_blobs()}
    assert set(listed) == {a, b}
    assert listed[a].size == 10 and listed[b].size == 19
    assert all(before < blob.modified <= datetime.now(UTC) + timedelta(minutes=5)
               for blob in listed.values())  # fmt: skip

    pending = hashlib.sha256(b"never finished").hexdigest()
    handle = store.start_upload(pending)
    store.put_part(handle, pending, 1, io.BytesIO(b"never"), 5)
    [staged] = store.list_uploads()
    assert staged.handle == handle and before < staged.started
    assert staged.digest == (pending if isinstance(store, S3BlobStore) else None)
    store.abort_staged(staged)
    store.abort_staged(staged)  # idempotent
    assert list(store.list_uploads()) == []
    assert {blob.digest for blob in store.list_blobs()} == {a, b}  # aborting touched no blob

    store.delete(a)
    assert [blob.digest for blob in store.list_blobs()] == [b]


def test_names_that_are_not_blob_keys_are_not_listed(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "store")
    digest = _stored(store, b"kept")
    (store.root / "blobs" / "sha256" / "README").write_text("not a blob")
    (store.root / "blobs" / "sha256" / digest.upper()).write_text("not ours either")
    (store.root / "uploads" / "not-a-handle").mkdir()
    assert [blob.digest for blob in store.list_blobs()] == [digest]
    assert list(store.list_uploads()) == []


@pytest.fixture
def hangs_up() -> Iterator[str]:
    """An endpoint that accepts each connection and closes it at once (a store going away
    mid-request): botocore retries, cannot rewind the one-pass body, and says so."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(5)
    listener.close()


def test_a_store_error_shows_no_object_repr(hangs_up: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    store = S3BlobStore("s3://bucket/prefix", endpoint_url=hangs_up, region="us-east-1")
    with pytest.raises(StorageUnavailableError) as caught:
        store.put_part("upload-id", "0" * 64, 1, io.BufferedReader(io.BytesIO(b"x" * 100)), 100)
    text = str(caught.value)
    assert "object at 0x" not in text and "<" not in text, text
    assert hangs_up not in text  # the endpoint URL is not the client's business
    assert text.startswith("store part 1: the blob store")
    with pytest.raises(StorageUnavailableError) as listed:
        list(store.list_blobs())
    assert "object at 0x" not in str(listed.value) and hangs_up not in str(listed.value)


def test_a_local_blob_that_cannot_be_read_is_the_store_failing(tmp_path: Path) -> None:
    """Any disk error but a missing file is StorageUnavailableError (never a bare OSError a
    caller could mistake for something the file says), on opening and while reading."""
    from registry.errors import NotFoundError

    store = LocalBlobStore(tmp_path / "store")
    data = b"weights" * 100
    digest = hashlib.sha256(data).hexdigest()
    store.put_verified(digest, data)
    path = store._path(digest)
    path.unlink()
    path.mkdir()  # reads of it fail (EISDIR), as EIO or a stale NFS handle would
    with pytest.raises(StorageUnavailableError, match="reading blob"):
        b"".join(store.read(digest))
    path.rmdir()
    with pytest.raises(NotFoundError):
        store.read(digest)


def test_an_s3_body_that_breaks_in_a_way_botocore_does_not_wrap_is_the_store_failing() -> None:
    """urllib3's SSLError (a corrupted TLS record) comes through botocore's StreamingBody
    unwrapped: the store still says StorageUnavailableError, never the library's error."""

    class TlsBroke(Exception):
        pass

    class Body:
        closed = False

        def read(self, size: int = -1) -> bytes:
            raise TlsBroke("DECRYPTION_FAILED_OR_BAD_RECORD_MAC")

        def close(self) -> None:
            self.closed = True

    body = Body()

    class Client:
        def get_object(self, **kwargs: object) -> dict[str, object]:
            return {"Body": body}

    store = S3BlobStore("s3://bucket/prefix", client=Client())
    with pytest.raises(StorageUnavailableError, match="TlsBroke"):
        b"".join(store.read("ab" * 32))
    assert body.closed
