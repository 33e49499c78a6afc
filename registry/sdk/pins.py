"""What a client remembers between runs: the registry key it pinned on first contact, the newest
signed audit-log checkpoint it has seen from that registry (count and head, beside the key: a log
rolled back behind it is refused); and of the registry's transparency log
(docs/transparency-log.md): its origin and note key pinned on first contact, the newest verified
checkpoint (a newer one must come with a consistency proof from it), and per logged subject (an
alias, a version) the index of the newest entry verified (an older one served later is a replay).

Stored as JSON in ``$MODELSEAL_CONFIG_DIR/pins.json`` (default ``~/.config/modelseal``), written
atomically with mode 0600; the log's read-modify-writes hold an exclusive lock on
``pins.json.lock`` so two pulls on one machine never lose each other's checkpoint.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from attest.atomic import write_atomic


def default_path() -> Path:
    base = os.environ.get("MODELSEAL_CONFIG_DIR")
    if base:
        return Path(base) / "pins.json"
    return Path.home() / ".config" / "modelseal" / "pins.json"


class PinStore:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_path()

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"registries": {}, "aliases": {}}
        except RecursionError:  # not a ValueError: callers name a damaged pin file by that
            raise ValueError(f"{self.path} is not a pin file (nested too deeply)") from None
        if not isinstance(data, dict):
            raise ValueError(f"{self.path} is not a pin file")
        data.setdefault("registries", {})
        data.setdefault("aliases", {})
        return data

    def _save(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(self.path, json.dumps(data, indent=2, sort_keys=True))

    def registry_key(self, url: str) -> str | None:
        """The PEM pinned for ``url``, if any."""
        entry = self._load()["registries"].get(url)
        return entry.get("public_key_pem") if isinstance(entry, dict) else None

    def registry_keys(self) -> dict[str, str]:
        """``{url: PEM}`` of every registry key pinned."""
        return {
            url: entry["public_key_pem"]
            for url, entry in self._load()["registries"].items()
            if isinstance(entry, dict) and isinstance(entry.get("public_key_pem"), str)
        }

    def pin_registry_key(self, url: str, fingerprint: str, pem: str) -> None:
        data = self._load()
        entry = data["registries"].get(url)
        entry = entry if isinstance(entry, dict) else {}
        entry.update({"fingerprint": fingerprint, "public_key_pem": pem})
        data["registries"][url] = entry
        self._save(data)

    def newest_checkpoint(self, url: str) -> dict[str, Any] | None:
        """``{"count", "head", "seen_at", "source"}`` of the newest signed audit-log head seen
        from ``url``, or None."""
        entry = self._load()["registries"].get(url)
        seen = entry.get("audit_checkpoint") if isinstance(entry, dict) else None
        if not isinstance(seen, dict):
            return None
        if not isinstance(seen.get("count"), int) or not isinstance(seen.get("head"), str):
            raise ValueError(f"{self.path}: the audit checkpoint of {url} is damaged")
        return seen

    def remember_checkpoint(self, url: str, count: int, head: str, seen_at: str,
                            source: str) -> None:  # fmt: skip
        """Remember a signed audit-log head; never goes back to a shorter one."""
        data = self._load()
        entry = data["registries"].get(url)
        entry = entry if isinstance(entry, dict) else {}
        current = entry.get("audit_checkpoint")
        if isinstance(current, dict) and int(current.get("count", 0)) >= count:
            return
        entry["audit_checkpoint"] = {"count": count, "head": head, "seen_at": seen_at,
                                     "source": source}  # fmt: skip
        data["registries"][url] = entry
        self._save(data)

    # The newest release seen behind an alias: the downgrade guard before the transparency log
    # (alias states now follow the log's moves, registry.sdk.logcheck); kept for old pin files.

    def newest_release(self, url: str, ref: str) -> dict[str, str] | None:
        entry = self._load()["aliases"].get(url, {}).get(ref)
        return entry if isinstance(entry, dict) else None

    def remember_release(self, url: str, ref: str, version: str, released_at: str) -> None:
        data = self._load()
        data["aliases"].setdefault(url, {})[ref] = {"version": version, "releasedAt": released_at}
        self._save(data)

    # -- the transparency log ----------------------------------------------------------------

    @contextmanager
    def locked(self) -> Iterator[None]:
        """An exclusive lock on ``pins.json.lock`` (beside the pin file) for a read-modify-write."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _registry(self, data: dict[str, Any], url: str) -> dict[str, Any]:
        entry = data["registries"].get(url)
        entry = entry if isinstance(entry, dict) else {}
        data["registries"][url] = entry
        return entry

    def log_key(self, url: str) -> dict[str, str] | None:
        """``{"origin", "vkey"}`` of the log pinned for ``url``, or None."""
        entry = self._load()["registries"].get(url)
        pinned = entry.get("log_key") if isinstance(entry, dict) else None
        if pinned is None:
            return None
        if not isinstance(pinned, dict) or not all(
            isinstance(pinned.get(k), str) for k in ("origin", "vkey")
        ):
            raise ValueError(f"{self.path}: the log key pinned for {url} is damaged")
        return {"origin": pinned["origin"], "vkey": pinned["vkey"]}

    def pin_log_key(self, url: str, origin: str, vkey: str) -> dict[str, str]:
        """Pin the log's origin and key for ``url`` unless one is pinned already; returns the
        pinned one (the caller compares)."""
        with self.locked():
            data = self._load()
            entry = self._registry(data, url)
            current = entry.get("log_key")
            if isinstance(current, dict):
                return {"origin": str(current.get("origin")), "vkey": str(current.get("vkey"))}
            entry["log_key"] = {"origin": origin, "vkey": vkey}
            self._save(data)
            return {"origin": origin, "vkey": vkey}

    def log_checkpoint(self, url: str) -> dict[str, Any] | None:
        """``{"text", "seen_at", "source"}`` of the newest verified log checkpoint seen from
        ``url`` (its checkpoint text, signature already checked), or None."""
        entry = self._load()["registries"].get(url)
        seen = entry.get("log_checkpoint") if isinstance(entry, dict) else None
        if seen is None:
            return None
        if not isinstance(seen, dict) or not isinstance(seen.get("text"), str):
            raise ValueError(f"{self.path}: the log checkpoint of {url} is damaged")
        return seen

    def remember_log_checkpoint(
        self, url: str, text: str, size: int, timestamp: int, seen_at: str, source: str
    ) -> None:
        """Remember a verified checkpoint unless one at least as new (size, then time) is
        remembered already (another process may have stored a newer one meanwhile)."""
        with self.locked():
            data = self._load()
            entry = self._registry(data, url)
            current = entry.get("log_checkpoint")
            if isinstance(current, dict):
                old = (int(current.get("size", -1)), int(current.get("timestamp", -1)))
                if old >= (size, timestamp):
                    return
            entry["log_checkpoint"] = {"text": text, "size": size, "timestamp": timestamp,
                                       "seen_at": seen_at, "source": source}  # fmt: skip
            self._save(data)

    def log_subject_index(self, url: str, subject: str) -> int | None:
        """The index of the newest entry about ``subject`` verified from ``url``, or None."""
        entry = self._load()["registries"].get(url)
        seen = entry.get("log_subjects") if isinstance(entry, dict) else None
        value = seen.get(subject) if isinstance(seen, dict) else None
        return value if isinstance(value, int) else None

    def remember_log_subject(self, url: str, subject: str, index: int) -> None:
        with self.locked():
            data = self._load()
            entry = self._registry(data, url)
            seen = entry.get("log_subjects")
            seen = seen if isinstance(seen, dict) else {}
            if isinstance(seen.get(subject), int) and seen[subject] >= index:
                return
            seen[subject] = index
            entry["log_subjects"] = seen
            self._save(data)
