"""Blob store on a local directory: the embedded default.

Layout under ``root``: ``blobs/sha256/<hex>`` (visible blobs, read-only files) and
``uploads/<handle>/<part>`` (staged parts). A blob appears at its final key by an atomic rename of
a fully written, fsynced file, so a reader never sees a partial blob.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from attest.digests import is_sha256_hex
from registry.errors import NotFoundError, StorageUnavailableError
from registry.server.storage.base import (
    READ_SIZE,
    Part,
    Readable,
    StagedUpload,
    StoredBlob,
    blob_key,
)

_HANDLE_CHARS = frozenset("0123456789abcdef")


class LocalBlobStore:
    """A :class:`~registry.server.storage.base.BlobStore` on a directory."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.description = f"local:{self.root}"
        for sub in ("blobs/sha256", "uploads", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def _path(self, digest: str) -> Path:
        return self.root / blob_key(digest)

    def _upload_dir(self, handle: str) -> Path:
        if not _is_handle(handle):
            raise ValueError(f"not a local upload handle: {handle!r}")
        return self.root / "uploads" / handle

    def exists(self, digest: str) -> bool:
        return self._path(digest).is_file()

    def size(self, digest: str) -> int | None:
        try:
            return self._path(digest).stat().st_size
        except FileNotFoundError:
            return None

    def read(self, digest: str, *, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        """The blob's bytes. Any other failure of the disk is a StorageUnavailableError (as
        the S3 store's are), never a bare OSError: a caller that reads on behalf of a verdict
        (the scanner) must tell the store failing from the file being unreadable."""
        try:
            handle = self._path(digest).open("rb")
        except FileNotFoundError:
            raise NotFoundError(
                f"blob sha256:{digest} is not in the store", digest=digest
            ) from None
        except OSError as exc:
            raise _unavailable(digest, exc) from exc
        return _read_file(handle, start, length, digest)

    def presigned_read_url(self, digest: str, *, expires: int) -> str | None:
        return None  # a local directory has no URL of its own: the service streams it

    def start_upload(self, digest: str) -> str:
        blob_key(digest)
        handle = uuid.uuid4().hex
        self._upload_dir(handle).mkdir(parents=True)
        return handle

    def put_part(self, handle: str, digest: str, number: int, body: Readable, size: int) -> Part:
        target = self._upload_dir(handle) / f"{number:05d}"
        written = 0
        try:
            out = target.open("xb")
        except FileNotFoundError:  # cancelled or expired while this chunk was on its way
            raise NotFoundError("the upload is gone (cancelled or expired)") from None
        with out:
            while written < size:
                piece = body.read(min(READ_SIZE, size - written))
                if not piece:
                    break
                out.write(piece)
                written += len(piece)
        if written != size:
            target.unlink(missing_ok=True)
            raise StorageUnavailableError(f"part {number} ended after {written} of {size} bytes")
        return Part(number=number, etag=f"{size}")

    def complete_upload(self, handle: str, digest: str, parts: Sequence[Part]) -> None:
        final = self._path(digest)
        upload_dir = self._upload_dir(handle)
        if final.exists():
            self.abort_upload(handle, digest)
            return
        # Its own file per call: two finishers of one session (one of them a retry after a
        # crash) must never write into the same file.
        tmp = self.root / "tmp" / f"{handle}.{uuid.uuid4().hex}.assemble"
        with tmp.open("wb") as out:
            for part in parts:
                part_path = upload_dir / f"{part.number:05d}"
                if str(part_path.stat().st_size) != part.etag:
                    raise RuntimeError(f"staged part {part.number} of upload {handle} changed size")
                with part_path.open("rb") as src:
                    _copy_all(src, out)
            out.flush()
            os.fsync(out.fileno())
        tmp.chmod(0o444)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
        shutil.rmtree(upload_dir, ignore_errors=True)

    def put_verified(self, digest: str, data: bytes) -> None:
        final = self._path(digest)
        tmp = self.root / "tmp" / f"{digest}.{uuid.uuid4().hex}.put"
        try:
            with tmp.open("xb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            tmp.chmod(0o444)
            os.replace(tmp, final)
            _fsync_dir(final.parent)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StorageUnavailableError(f"cannot store blob sha256:{digest}: {exc}") from exc

    def abort_upload(self, handle: str, digest: str) -> None:
        shutil.rmtree(self._upload_dir(handle), ignore_errors=True)

    def delete(self, digest: str) -> None:
        self._path(digest).unlink(missing_ok=True)

    def list_blobs(self) -> Iterator[StoredBlob]:
        for name, stat in _listed(self.root / "blobs" / "sha256", is_sha256_hex):
            yield StoredBlob(name, stat.st_size, _mtime(stat.st_mtime))

    def list_uploads(self) -> Iterator[StagedUpload]:
        """Staged uploads (``uploads/<handle>``) and files being written into place
        (``tmp/<name>``, listed as handle ``tmp/<name>``: one a crash left behind is garbage
        like a staged upload nobody finished)."""
        for name, stat in _listed(self.root / "uploads", _is_handle):
            yield StagedUpload(name, None, _mtime(stat.st_mtime))
        for name, stat in _listed(self.root / "tmp", _is_tmp_name):
            yield StagedUpload(f"tmp/{name}", None, _mtime(stat.st_mtime), writing=True)

    def abort_staged(self, upload: StagedUpload) -> None:
        name = upload.handle.removeprefix("tmp/")
        if name != upload.handle:
            if not _is_tmp_name(name):
                raise ValueError(f"not a local temporary file: {upload.handle!r}")
            (self.root / "tmp" / name).unlink(missing_ok=True)
            return
        shutil.rmtree(self._upload_dir(upload.handle), ignore_errors=True)


def _listed(directory: Path, wanted: Callable[[str], bool]) -> Iterator[tuple[str, os.stat_result]]:
    """The entries of ``directory`` whose names ``wanted`` accepts, with their stat (entries
    removed while listing are skipped)."""
    with os.scandir(directory) as entries:
        for entry in entries:
            if not wanted(entry.name):
                continue
            try:
                yield entry.name, entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue


def _is_handle(name: str) -> bool:
    return len(name) == 32 and set(name) <= _HANDLE_CHARS


def _is_tmp_name(name: str) -> bool:
    """A file this store writes under ``tmp/`` (``<hex>.<hex>.put`` or ``.assemble``)."""
    parts = name.split(".")
    return (
        len(parts) == 3
        and parts[2] in ("put", "assemble")
        and all(part and set(part) <= _HANDLE_CHARS for part in parts[:2])
    )


def _mtime(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _unavailable(digest: str, exc: OSError) -> StorageUnavailableError:
    return StorageUnavailableError(
        f"reading blob sha256:{digest} failed: {exc.strerror or type(exc).__name__}",
        digest=digest,
    )


def _read_file(handle: object, start: int, length: int | None, digest: str) -> Iterator[bytes]:
    import io

    assert isinstance(handle, io.BufferedReader)
    with handle:
        remaining = length
        try:
            handle.seek(start)
            while remaining is None or remaining > 0:
                want = READ_SIZE if remaining is None else min(READ_SIZE, remaining)
                piece = handle.read(want)
                if not piece:
                    break
                if remaining is not None:
                    remaining -= len(piece)
                yield piece
        except OSError as exc:
            raise _unavailable(digest, exc) from exc


def _copy_all(src: object, dst: object) -> None:
    """Kernel-side copy where possible (copy_file_range), plain reads otherwise."""
    import io

    assert isinstance(src, io.BufferedReader) and isinstance(dst, io.BufferedWriter)
    dst.flush()
    in_fd, out_fd = src.fileno(), dst.fileno()
    try:
        while True:
            copied = os.copy_file_range(in_fd, out_fd, 1 << 30)
            if copied == 0:
                return
    except OSError:
        shutil.copyfileobj(src, dst, READ_SIZE)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
