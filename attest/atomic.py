"""Replace a small file all at once: readers see the old content or the new, never a part.

Every writer (thread or process) gets its own temporary file next to the target, so two writers
of one path never rename each other's half-written file away; the last rename wins. The file is
created with the final mode from the start (a secret is never readable by others, even briefly),
and a failed write leaves neither a temporary file nor a changed target.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(
    path: Path,
    data: bytes | str,
    *,
    mode: int = 0o600,
    durable: bool = True,
    sync_directory: bool = False,
) -> None:
    """Write ``data`` to ``path`` through a unique temporary file and one rename.

    ``durable`` flushes the content to disk before the rename (a crash leaves the old file or the
    new one, not an empty one); ``sync_directory`` also makes the rename itself durable.
    The parent directory must exist.
    """
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if mode != 0o600:  # mkstemp creates 0600
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if sync_directory:
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
