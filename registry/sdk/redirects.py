"""Registries whose storage URLs this machine could not use, remembered between runs.

A registry that presigns downloads sends the SDK to its blob store with a 307 (see
:mod:`registry.sdk.transfer`); when the store cannot be used from here (unreachable, refused,
an https registry pointing at plain http, a URL of no use) the transport streams through the
registry instead. Remembering that per registry URL for :data:`REMEMBER_SECONDS` (a day) spares
the next process (the next CLI run) the storage connect timeout: it asks for no redirect at all
until the record is that old, then probes again. A redirect that works clears an old record.

Stored as JSON in ``$MODELSEAL_CONFIG_DIR/storage-redirects.json`` beside the pins (default
``~/.config/modelseal``), written atomically (a temporary file renamed over it) with mode 0600;
at most :data:`MAX_ENTRIES` registries (the oldest records go first) and :data:`MAX_BYTES` bytes.
The file only chooses between two download paths whose bytes are verified the same way, so it
is a cache, not trust: a damaged, oversized or unreadable file is ignored with a warning (the
store is probed as if nothing were remembered, and the next record replaces the file), and one
that cannot be written costs a warning, never the download.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from attest.atomic import write_atomic
from registry.sdk.pins import default_path as _pins_path

log = logging.getLogger(__name__)

FILE_NAME = "storage-redirects.json"
FORMAT = 1
#: How long a registry's storage URLs stay known as unusable: then they are tried again.
REMEMBER_SECONDS = 24 * 3600.0
MAX_ENTRIES = 32
MAX_BYTES = 64 * 1024
MAX_REASON = 300


class _Damaged(ValueError):
    """The file is not a record this module wrote."""


@dataclass(frozen=True)
class Unusable:
    """When (epoch seconds) and why a registry's storage URLs could not be used from here."""

    at: float
    reason: str


def record_key(url: str) -> str:
    """The registry URL a record is filed under: no user information, no trailing slash."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return parts._replace(netloc=netloc, query="", fragment="").geturl().rstrip("/")


class RedirectMemory:
    """The unusable-storage records of one client configuration directory.

    ``path``: the JSON file (default ``storage-redirects.json`` beside ``pins.json``, resolved
    on first use); ``ttl``: seconds a record holds; ``clock``: epoch seconds (injectable)."""

    def __init__(
        self,
        path: Path | None = None,
        *,
        ttl: float = REMEMBER_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._path = path
        self.ttl = ttl
        self._clock = clock
        self._warned = False
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        if self._path is None:
            self._path = _pins_path().with_name(FILE_NAME)
        return self._path

    def recall(self, url: str) -> Unusable | None:
        """The record of ``url``, fresh or not (see :meth:`fresh`); None when there is none or
        the file cannot be read (warned about)."""
        return self._load().get(record_key(url))

    def fresh(self, record: Unusable) -> bool:
        """Whether ``record`` still holds: made less than ``ttl`` seconds ago (a time ahead of
        the clock, which went back, does not hold: the store is probed again)."""
        return 0.0 <= self._clock() - record.at < self.ttl

    def age(self, record: Unusable) -> float:
        """Seconds since ``record`` was made."""
        return self._clock() - record.at

    def remember(self, url: str, reason: str) -> bool:
        """Record that ``url``'s storage URLs are unusable now, because of ``reason``; keeps
        the newest :data:`MAX_ENTRIES` records. Returns whether the file was written (a
        failure is warned about)."""
        with self._lock:
            records = self._load()
            records[record_key(url)] = Unusable(self._clock(), reason[:MAX_REASON])
            newest = sorted(records.items(), key=lambda item: item[1].at, reverse=True)
            return self._save(dict(newest[:MAX_ENTRIES]))

    def forget(self, url: str) -> None:
        """Drop ``url``'s record (its storage URLs worked); writes only if there was one."""
        with self._lock:
            records = self._load()
            if records.pop(record_key(url), None) is not None:
                self._save(records)

    def _warn(self, problem: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning(
                "%s %s: ignored, storage URLs will be tried (it is rewritten on the next "
                "record; downloads are verified either way)",
                self.path,
                problem,
            )

    def _load(self) -> dict[str, Unusable]:
        try:
            with self.path.open("rb") as handle:
                raw = handle.read(MAX_BYTES + 1)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            self._warn(f"cannot be read ({exc.strerror or exc})")
            return {}
        try:
            return _parse(raw)
        except _Damaged as exc:
            self._warn(f"is damaged ({exc})")
            return {}

    def _save(self, records: dict[str, Unusable]) -> bool:
        document = {
            "format": FORMAT,
            "registries": {url: {"at": r.at, "reason": r.reason} for url, r in records.items()},
        }
        path = self.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_atomic(path, json.dumps(document, indent=1, sort_keys=True), durable=False)
        except OSError as exc:
            log.warning("cannot write %s (%s): the next run tries the storage URLs again",
                        path, exc.strerror or exc)  # fmt: skip
            return False
        return True


def _parse(raw: bytes) -> dict[str, Unusable]:
    """The records in ``raw``, checked: the format, every URL, time and reason.

    Raises:
        _Damaged: anything else (too large, not JSON, other shapes or types)."""
    if len(raw) > MAX_BYTES:
        raise _Damaged(f"larger than {MAX_BYTES} bytes")
    try:
        data = json.loads(raw)
    except ValueError as exc:  # UnicodeDecodeError included
        raise _Damaged(f"not JSON: {exc}") from None
    except RecursionError:  # a few KiB of '[' nest deeper than the parser goes
        raise _Damaged("nested too deeply to be a record") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise _Damaged(f"not a format-{FORMAT} record of storage redirects")
    registries = data.get("registries")
    if not isinstance(registries, dict) or len(registries) > MAX_ENTRIES:
        raise _Damaged(f"'registries' is not an object of at most {MAX_ENTRIES} entries")
    records = {}
    for url, entry in registries.items():
        damaged = _Damaged(f"the entry {url[:100]!r} is not a URL with a time and a reason")
        if not isinstance(entry, dict) or urlsplit(url).scheme not in {"http", "https"}:
            raise damaged
        at, reason = entry.get("at"), entry.get("reason")
        if isinstance(at, bool) or not isinstance(at, int | float) or not isinstance(reason, str):
            raise damaged
        if not math.isfinite(at):
            raise damaged
        records[url] = Unusable(float(at), reason[:MAX_REASON])
    return records
