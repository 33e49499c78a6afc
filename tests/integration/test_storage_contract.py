"""One contract, both blob stores: the local directory and S3 on a real SeaweedFS."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from registry.errors import NotFoundError, StorageUnavailableError
from registry.server.storage import BlobStore, LocalBlobStore, Part, S3BlobStore
from registry.server.storage.pipe import BytePipe
from tests.services import SeaweedServer

MiB = 1024 * 1024


@pytest.fixture(
    params=[
        pytest.param("local", id="local"),
        pytest.param("s3", id="s3", marks=pytest.mark.integration),
        pytest.param("s3-sse", id="s3-sse", marks=pytest.mark.integration),
    ]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "local":
        yield LocalBlobStore(tmp_path / "store")
        return
    s3: SeaweedServer = request.getfixturevalue("s3_env")
    url = request.getfixturevalue("s3_storage_url")
    yield S3BlobStore(
        url,
        endpoint_url=s3.endpoint_url,
        region=s3.region,
        sse="AES256" if request.param == "s3-sse" else None,
    )


def _spool(tmp_path: Path, data: bytes) -> BytePipe:
    """Parts arrive as a one-pass stream, as they do from a request body."""
    pipe = BytePipe(max_bytes=len(data) + 1)

    async def fill() -> None:
        for i in range(0, len(data), MiB):
            await pipe.put(data[i : i + MiB])

    asyncio.run(fill())
    pipe.close()
    return pipe


def _put(store: BlobStore, tmp_path: Path, chunks: list[bytes]) -> tuple[str, str, list[Part]]:
    digest = hashlib.sha256(b"".join(chunks)).hexdigest()
    handle = store.start_upload(digest)
    parts = [
        store.put_part(handle, digest, i + 1, _spool(tmp_path, c), len(c))
        for i, c in enumerate(chunks)
    ]
    return digest, handle, parts


def _read(store: BlobStore, digest: str, **kwargs: int) -> bytes:
    return b"".join(store.read(digest, **kwargs))


def test_blob_is_invisible_until_completed(store: BlobStore, tmp_path: Path) -> None:
    digest, handle, parts = _put(store, tmp_path, [b"hello world"])
    assert not store.exists(digest)
    assert store.size(digest) is None
    with pytest.raises(NotFoundError):
        _read(store, digest)
    store.complete_upload(handle, digest, parts)
    assert store.exists(digest)
    assert store.size(digest) == 11
    assert _read(store, digest) == b"hello world"


def test_multipart_assembles_parts_in_order(store: BlobStore, tmp_path: Path) -> None:
    first, second, third = os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(1234)
    digest, handle, parts = _put(store, tmp_path, [first, second, third])
    store.complete_upload(handle, digest, parts)
    data = _read(store, digest)
    assert hashlib.sha256(data).hexdigest() == digest
    assert _read(store, digest, start=5 * MiB - 3, length=6) == first[-3:] + second[:3]


def test_only_listed_parts_are_assembled(store: BlobStore, tmp_path: Path) -> None:
    """A part a losing writer stored under its own number never reaches the blob."""
    good = os.urandom(5 * MiB)
    tail = b"tail"
    digest = hashlib.sha256(good + tail).hexdigest()
    handle = store.start_upload(digest)
    p1 = store.put_part(handle, digest, 1, _spool(tmp_path, good), len(good))
    store.put_part(handle, digest, 2, _spool(tmp_path, b"intruder"), 8)  # never listed
    p3 = store.put_part(handle, digest, 3, _spool(tmp_path, tail), len(tail))
    store.complete_upload(handle, digest, [p1, p3])
    assert _read(store, digest) == good + tail


def test_abort_leaves_nothing(store: BlobStore, tmp_path: Path) -> None:
    digest, handle, _ = _put(store, tmp_path, [b"abandoned"])
    store.abort_upload(handle, digest)
    store.abort_upload(handle, digest)  # idempotent
    assert not store.exists(digest)
    if isinstance(store, S3BlobStore):
        listed = store._s3.list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix)
        assert not listed.get("Uploads")
    else:
        assert isinstance(store, LocalBlobStore)
        assert not any((store.root / "uploads").iterdir())


def test_identical_content_is_stored_once(store: BlobStore, tmp_path: Path) -> None:
    digest, handle, parts = _put(store, tmp_path, [b"same bytes"])
    store.complete_upload(handle, digest, parts)
    digest2, handle2, parts2 = _put(store, tmp_path, [b"same bytes"])
    assert digest2 == digest
    store.complete_upload(handle2, digest2, parts2)
    assert _read(store, digest) == b"same bytes"
    if isinstance(store, LocalBlobStore):
        assert len(list((store.root / "blobs" / "sha256").iterdir())) == 1


def test_empty_blob(store: BlobStore, tmp_path: Path) -> None:
    digest = hashlib.sha256(b"").hexdigest()
    handle = store.start_upload(digest)
    store.complete_upload(handle, digest, [])
    assert store.size(digest) == 0
    assert _read(store, digest) == b""


def test_delete(store: BlobStore, tmp_path: Path) -> None:
    digest, handle, parts = _put(store, tmp_path, [b"to delete"])
    store.complete_upload(handle, digest, parts)
    store.delete(digest)
    store.delete(digest)
    assert not store.exists(digest)


def test_keys_are_derived_from_digests_only(store: BlobStore) -> None:
    with pytest.raises(ValueError, match="not a sha256 hex digest"):
        store.start_upload("../../etc/passwd")


@pytest.mark.integration
def test_s3_objects_are_content_addressed_and_encrypted(
    s3_env: SeaweedServer, s3_storage_url: str, tmp_path: Path
) -> None:
    store = S3BlobStore(s3_storage_url, endpoint_url=s3_env.endpoint_url, sse="AES256")
    digest, handle, parts = _put(store, tmp_path, [b"secret weights"])
    store.complete_upload(handle, digest, parts)
    head = s3_env.client().head_object(
        Bucket=store.bucket, Key=f"{store.prefix}/blobs/sha256/{digest}"
    )
    assert head["ContentLength"] == len(b"secret weights")
    assert head.get("ServerSideEncryption") == "AES256"


@pytest.mark.integration
def test_s3_wrong_credentials_are_a_storage_error(
    s3_server: SeaweedServer, s3_storage_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-" + s3_server.secret_key)
    store = S3BlobStore(s3_storage_url, endpoint_url=s3_server.endpoint_url, region="us-east-1")
    with pytest.raises(StorageUnavailableError, match="refused the request"):
        store.start_upload("0" * 64)
    with pytest.raises(ClientError):
        s3_server.client(secret_key="wrong").list_buckets()


def test_a_part_whose_stream_fails_is_not_stored(store: BlobStore, tmp_path: Path) -> None:
    digest = hashlib.sha256(b"x" * 10).hexdigest()
    handle = store.start_upload(digest)
    pipe = BytePipe()
    asyncio.run(pipe.put(b"x" * 4))
    pipe.fail(RuntimeError("client went away"))
    with pytest.raises((RuntimeError, StorageUnavailableError)):
        store.put_part(handle, digest, 1, pipe, 10)
    store.abort_upload(handle, digest)
    assert not store.exists(digest)
