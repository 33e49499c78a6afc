"""A seekable, read-only file object over a stored blob (for the scanner).

Reads are served from one window fetched by ranged reads, so a scanner that looks at a header and
skips the rest (safetensors, ONNX) fetches kilobytes, not the whole blob. A read that continues
where the window ended fetches a large window (sequential scans); a read elsewhere (a probe for
a signature at some offset) fetches a small one.
"""

from __future__ import annotations

import io
from typing import Any

from registry.errors import RegistryError, StorageUnavailableError
from registry.server.storage.base import BlobStore

WINDOW = 1024 * 1024
PROBE = 64 * 1024


class BlobFile(io.RawIOBase):
    def __init__(self, store: BlobStore, digest: str, size: int) -> None:
        self._store = store
        self._digest = digest
        self._size = size
        self._pos = 0
        self._window_start = 0
        self._window = b""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._pos >= self._size or not len(view):
            return 0
        inside = self._window_start <= self._pos < self._window_start + len(self._window)
        if not inside:
            sequential = self._window and self._pos == self._window_start + len(self._window)
            wanted = WINDOW if sequential or self._pos == 0 else PROBE
            length = min(max(wanted, len(view)), self._size - self._pos)
            try:
                read = self._store.read(self._digest, start=self._pos, length=length)
                self._window = b"".join(read)
            except RegistryError:
                raise
            except Exception as exc:
                # Whatever a store or its HTTP stack lets through (an OSError, urllib3's
                # SSLError) is the store failing: the scanner must not judge the file by it.
                raise StorageUnavailableError(
                    f"reading blob sha256:{self._digest} failed: {type(exc).__name__}",
                    digest=self._digest,
                ) from exc
            if len(self._window) != length:  # a store that ignored the range, or cut it short
                raise StorageUnavailableError(
                    f"reading blob sha256:{self._digest}: {len(self._window)} bytes came back "
                    f"for {length} asked",
                    digest=self._digest,
                )
            self._window_start = self._pos
        offset = self._pos - self._window_start
        piece = self._window[offset : offset + len(view)]
        view[: len(piece)] = piece
        self._pos += len(piece)
        return len(piece)
