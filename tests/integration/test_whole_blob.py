"""A blob sent whole goes to S3 in one PutObject: it must still never appear unverified."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Iterator

import pytest

from registry.errors import DigestMismatchError, StorageUnavailableError
from registry.server.storage import S3BlobStore
from registry.server.storage.pipe import BytePipe
from tests.services import SeaweedServer

pytestmark = pytest.mark.integration
MiB = 1024 * 1024


@pytest.fixture
def store(s3_env: SeaweedServer, s3_storage_url: str) -> Iterator[S3BlobStore]:
    yield S3BlobStore(s3_storage_url, endpoint_url=s3_env.endpoint_url, region=s3_env.region)


def _body(data: bytes, seen: hashlib._Hash) -> BytePipe:
    """A one-pass stream in 1 MiB pieces, as a request body arrives; ``seen`` hashes what is
    read from it (the route's tap)."""
    pipe = BytePipe(max_bytes=len(data) + 1, tap=seen.update)

    async def fill() -> None:
        for i in range(0, len(data), MiB):
            await pipe.put(data[i : i + MiB])

    asyncio.run(fill())
    pipe.close()
    return pipe


def test_a_whole_blob_is_checked_after_its_last_byte_is_read(store: S3BlobStore) -> None:
    data = os.urandom(3 * MiB + 17)
    digest = hashlib.sha256(data).hexdigest()
    seen = hashlib.sha256()
    checks: list[str] = []
    store.put_blob(digest, _body(data, seen), len(data), lambda: checks.append(seen.hexdigest()))
    assert checks == [digest]  # once, with every byte hashed
    assert b"".join(store.read(digest)) == data
    listed = store._s3.list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix)
    assert not listed.get("Uploads")


def test_a_failed_check_stores_nothing(store: S3BlobStore) -> None:
    """The last piece is held back until the check passed: a mismatch cuts the request short."""
    data = os.urandom(3 * MiB)
    digest = hashlib.sha256(data).hexdigest()

    def refuse() -> None:
        raise DigestMismatchError("no")

    with pytest.raises((DigestMismatchError, StorageUnavailableError)):
        store.put_blob(digest, _body(data, hashlib.sha256()), len(data), refuse)
    assert not store.exists(digest)


def test_the_store_refuses_bytes_of_another_digest(store: S3BlobStore) -> None:
    """Even with a check that (wrongly) passes, the store checks the declared SHA-256 itself."""
    claimed = hashlib.sha256(b"the real bytes").hexdigest()
    evil = os.urandom(2 * MiB)
    with pytest.raises(StorageUnavailableError):
        store.put_blob(claimed, _body(evil, hashlib.sha256()), len(evil), lambda: None)
    assert not store.exists(claimed)


def test_a_body_that_breaks_off_stores_nothing(store: S3BlobStore) -> None:
    data = os.urandom(2 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    pipe = BytePipe()
    asyncio.run(pipe.put(data[:MiB]))
    pipe.fail(RuntimeError("client went away"))
    with pytest.raises((RuntimeError, StorageUnavailableError)):
        store.put_blob(digest, pipe, len(data), lambda: None)
    assert not store.exists(digest)


def test_an_existing_blob_is_checked_not_rewritten(store: S3BlobStore) -> None:
    data = os.urandom(MiB + 5)
    digest = hashlib.sha256(data).hexdigest()
    store.put_blob(digest, _body(data, hashlib.sha256()), len(data), lambda: None)
    before = store._s3.head_object(Bucket=store.bucket, Key=store._key(digest))["ETag"]
    seen = hashlib.sha256()
    checks: list[str] = []
    store.put_blob(digest, _body(data, seen), len(data), lambda: checks.append(seen.hexdigest()))
    assert checks == [digest]
    assert store._s3.head_object(Bucket=store.bucket, Key=store._key(digest))["ETag"] == before
