"""The upload sessions a client has open, so that a push interrupted by a killed process, a lost
replica or a store outage resumes where it stopped instead of uploading every byte again.

One small JSON file per (namespace, blob) in ``$MODELSEAL_CONFIG_DIR/uploads/`` (default
``~/.config/modelseal/uploads/``), written atomically with mode 0600: the upload threads of one
push, and concurrent pushes, each touch their own file. The registry's URL is not part of the
key: replicas of one registry may be reached under different names, and a session id means
something only to the registry that issued it. So a record is only a hint: the client asks the
registry it talks to about the session before using it, and starts a fresh session when that
registry does not know it (finished, expired, cancelled, or another registry's).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from attest.atomic import write_atomic


def default_directory() -> Path:
    base = os.environ.get("MODELSEAL_CONFIG_DIR")
    root = Path(base) if base else Path.home() / ".config" / "modelseal"
    return root / "uploads"


@dataclass(frozen=True)
class OpenUpload:
    namespace: str
    digest: str  # hex
    size: int
    upload_id: str


class UploadJournal:
    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or default_directory()

    def _path(self, namespace: str, digest: str) -> Path:
        key = hashlib.sha256(f"{namespace}\n{digest}".encode()).hexdigest()
        return self.directory / f"{key[:32]}.json"

    def recall(self, namespace: str, digest: str, size: int) -> str | None:
        """The session id recorded for this blob, or None (also for a damaged record)."""
        try:
            data = json.loads(self._path(namespace, digest).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        expected = {"namespace": namespace, "digest": digest, "size": size}
        if any(data.get(k) != v for k, v in expected.items()):
            return None
        upload_id = data.get("upload_id")
        return upload_id if isinstance(upload_id, str) and upload_id else None

    def remember(self, namespace: str, digest: str, size: int, upload_id: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._path(namespace, digest)
        record = {"namespace": namespace, "digest": digest, "size": size, "upload_id": upload_id}
        # A hint, not a commitment: no fsync (a lost record means one fresh upload session).
        write_atomic(path, json.dumps(record, sort_keys=True), durable=False)

    def forget(self, namespace: str, digest: str) -> None:
        self._path(namespace, digest).unlink(missing_ok=True)

    def open_uploads(self) -> Iterator[OpenUpload]:
        """Every session recorded (damaged records are skipped)."""
        try:
            paths = sorted(self.directory.glob("*.json"))
        except OSError:
            return
        for path in paths:
            try:
                data = json.loads(path.read_text())
                yield OpenUpload(str(data["namespace"]), str(data["digest"]), int(data["size"]),
                                 str(data["upload_id"]))  # fmt: skip
            except (OSError, ValueError, KeyError, TypeError):
                continue
