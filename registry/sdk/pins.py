"""What a client remembers between runs: the registry key it pinned on first contact, the newest
signed audit-log checkpoint it has seen from that registry (count and head, beside the key: a log
rolled back behind it is refused), and the newest release it has seen behind each alias (so a
rollback to an older one is noticed).

Stored as JSON in ``$MODELSEAL_CONFIG_DIR/pins.json`` (default ``~/.config/modelseal``), written
atomically with mode 0600.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


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
        if not isinstance(data, dict):
            raise ValueError(f"{self.path} is not a pin file")
        data.setdefault("registries", {})
        data.setdefault("aliases", {})
        return data

    def _save(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
        os.replace(tmp, self.path)

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

    def newest_release(self, url: str, ref: str) -> dict[str, str] | None:
        entry = self._load()["aliases"].get(url, {}).get(ref)
        return entry if isinstance(entry, dict) else None

    def remember_release(self, url: str, ref: str, version: str, released_at: str) -> None:
        data = self._load()
        data["aliases"].setdefault(url, {})[ref] = {"version": version, "releasedAt": released_at}
        self._save(data)
