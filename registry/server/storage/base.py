"""The blob store interface.

Blobs are immutable and content-addressed: the key of a blob is ``blobs/sha256/<hex>``, derived
from a digest the service has already checked, never from anything a client supplied. Uploads are
staged in parts that are invisible to readers; :meth:`BlobStore.complete_upload` makes a blob
visible at its final key only after the service has verified the digest of every byte.

A store may also offer ``put_blob(digest, body, size, check)`` (S3 does): a blob whose bytes
arrive in one request is then written in one piece, and ``check`` (the service's digest check)
runs after the last byte was read from ``body`` and before the blob can become visible. The
service uses it when present (:data:`WHOLE_BLOB`), the staged parts otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from attest.digests import is_sha256_hex

#: Read size for streaming blobs out of a store.
READ_SIZE = 2 * 1024 * 1024


#: The name of the optional whole-blob method (see the module docstring).
WHOLE_BLOB = "put_blob"


def blob_key(digest: str) -> str:
    """The storage key of a blob, from its sha256 hex digest."""
    if not is_sha256_hex(digest):
        raise ValueError(f"not a sha256 hex digest: {digest!r}")
    return f"blobs/sha256/{digest}"


class Readable(Protocol):
    """What a part is streamed from: anything with ``read(size)``."""

    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Part:
    """One stored chunk of an upload; ``etag`` lets the store check the part it assembles."""

    number: int
    etag: str


@dataclass(frozen=True, slots=True)
class StoredBlob:
    """A blob visible in the store, as a listing shows it."""

    digest: str
    size: int
    modified: datetime


@dataclass(frozen=True, slots=True)
class StagedUpload:
    """An upload started and neither completed nor aborted. ``digest`` is the blob it was staged
    for where the store records it (S3: the key), else ``None`` (local: a directory per handle);
    ``started`` is when it began (S3) or last received a part (local). ``writing`` marks a file
    being written into place (local ``tmp/``): ``started`` is its last write, and one written
    to within :data:`IN_PROGRESS` is a write in progress, whatever the grace period."""

    handle: str
    digest: str | None
    started: datetime
    writing: bool = False


#: how recently a file being written into place must have been written to for gc to leave it
IN_PROGRESS = timedelta(minutes=10)


@runtime_checkable
class BlobStore(Protocol):
    """Where blob bytes live. Implementations: :class:`LocalBlobStore`, :class:`S3BlobStore`."""

    #: A short description for logs and ``/health`` (no credentials).
    description: str

    def exists(self, digest: str) -> bool:
        """Whether a blob is visible at its final key."""
        ...

    def size(self, digest: str) -> int | None:
        """Size of a visible blob, or ``None`` when absent."""
        ...

    def read(self, digest: str, *, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        """Stream a visible blob (or a byte range of it) in bounded pieces.

        Raises:
            NotFoundError: no blob with that digest.
            StorageUnavailableError: the store failed.
        """
        ...

    def presigned_read_url(self, digest: str, *, expires: int) -> str | None:
        """A URL that serves a blob without further credentials for ``expires`` seconds, or
        ``None`` when the store cannot hand one out (then the service streams the bytes).

        Computed locally, without asking the store whether the blob is there: the caller has
        the blob's record, and a client checks every byte it gets against the digest anyway.
        """
        ...

    def start_upload(self, digest: str) -> str:
        """Begin staging a blob; returns an opaque handle for the other upload calls."""
        ...

    def put_part(self, handle: str, digest: str, number: int, body: Readable, size: int) -> Part:
        """Store one part of exactly ``size`` bytes, streamed from ``body``.

        Raises:
            StorageUnavailableError: the store failed, or ``body`` ended early.
        """
        ...

    def complete_upload(self, handle: str, digest: str, parts: Sequence[Part]) -> None:
        """Assemble ``parts`` in order at the blob's final key (a no-op copy if already there).

        The caller has verified the digest of exactly these parts' bytes.
        """
        ...

    def put_verified(self, digest: str, data: bytes) -> None:
        """Write a small blob whose bytes the caller has already hashed to ``digest`` at its
        final key, visible all at once (never partly written); one already there is written
        again (the same bytes). Used for the blobs of a batch upload, which are held in memory.

        Raises:
            StorageUnavailableError: the store failed.
        """
        ...

    def abort_upload(self, handle: str, digest: str) -> None:
        """Drop every staged part of an upload. Idempotent."""
        ...

    def delete(self, digest: str) -> None:
        """Remove a blob (garbage collection). Idempotent."""
        ...

    def list_blobs(self) -> Iterator[StoredBlob]:
        """Every visible blob (for fsck and gc); names that are not blob keys are skipped."""
        ...

    def list_uploads(self) -> Iterator[StagedUpload]:
        """Every staged upload still holding parts (for fsck and gc)."""
        ...

    def abort_staged(self, upload: StagedUpload) -> None:
        """Drop a staged upload found by :meth:`list_uploads`. Idempotent."""
        ...
