"""The transparency log: an append-only Merkle log of trust-relevant events (RFC 9162 hashing),
signed checkpoints (C2SP tlog-checkpoint in a C2SP signed note) and tiles (C2SP tlog-tiles).

Appending (:func:`append`) happens inside the database transaction of the change an entry
records, called from :func:`registry.server.services.journal.record` (the one place every state
change writes its audit entry), so a change and its entry commit together or not at all. The
appender locks the single head row (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite serializes
writers with ``BEGIN IMMEDIATE``), takes its size as the new entry's index and increments it:
one writer at a time across replicas, indexes without gaps or duplicates.

Entries are compact canonical JSON (sorted keys, no whitespace, ``"v": 1``), at most
:data:`MAX_ENTRY_BYTES`; docs/transparency-log.md lists every type and field.

:class:`LogService` signs checkpoints (periodically in a background thread, soon after appends,
and on demand when a proof is asked for an entry no checkpoint covers yet), writes tiles and
entry bundles to the blob store under ``tlog/`` after each checkpoint, and answers proofs. It
keeps the tree's hashes in memory (:class:`attest.tlog.MemoryTree`), filled from the entries
table; every entry read into it is checked against its stored leaf hash, and the tree is checked
against the newest signed checkpoint before anything is proven from it, so rows edited in the
database stop the log (a ``ConflictError``) instead of being signed or proven.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import socket
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from attest import keys, note, tlog
from attest.atomic import write_atomic
from attest.predicates import LOG_KEY
from attest.statement import Statement, make_statement
from registry.errors import ConflictError, InvalidRequestError, NotFoundError
from registry.server.config import Settings
from registry.server.db import transaction
from registry.server.models import LogCheckpoint, LogCosignature, LogEntry, LogHead
from registry.server.services.common import Clock, utcnow

if TYPE_CHECKING:
    from registry.server.storage.s3 import S3BlobStore

log = logging.getLogger(__name__)

ENTRY_VERSION = 1
MAX_ENTRY_BYTES = 64 * 1024 - 1  # an entry bundle prefixes entries with a uint16 length
MAX_TEXT = 2000  # free text (reasons) in an entry
MAX_PAGE = 1000  # entries per GET /v1/log/entries
HEAD_ID = 1
TILE_PREFIX = "tlog"  # tiles, entry bundles and the checkpoint in the blob store: tlog/<path>
LOG_KEY_FILE = "log"  # DATA_DIR/log.key, DATA_DIR/log.pub
BATCH_SECONDS = 0.5  # after an append, wait this long for more before signing a checkpoint
#: How far a checkpoint's time may be ahead of this replica's clock, or this replica's clock off
#: the database's, before signing is refused (a later checkpoint never goes back in time, so
#: one signed far ahead would carry every later one ahead with it).
MAX_CLOCK_SKEW = 300

#: The log entry type of each audited action that is logged. ``journal.record`` refuses one of
#: these actions without its log facts, so a new code path cannot change state unlogged.
LOGGED_ACTIONS: dict[str, str] = {
    "release_version": "release",
    "revoke_version": "revocation",
    "revoke_dependent": "revocation",
    "reject_version": "rejection",
    "scan_reject": "rejection",
    "set_alias": "alias",
    "set_policy": "policy",
    "add_identity": "identity",
    "remove_identity": "identity",
    "create_token": "token",
    "revoke_token": "token",
    "change_token_role": "token",
    "add_registry_key": "registry_key",
    "rotate_registry_key": "registry_key",
}

#: The entry types a version's status follows (GET …/versions/{v}/log).
STATUS_TYPES = ("release", "revocation")

#: The wake-up events of the process's LogServices, set when an append commits.
_LISTENERS: weakref.WeakSet[threading.Event] = weakref.WeakSet()


class LogEntryError(ValueError):
    """An entry could not be built (too large, missing facts): the change is refused."""


# -- entries -------------------------------------------------------------------------------------


def canonical(entry: dict[str, Any]) -> bytes:
    """Compact canonical JSON: sorted keys, no whitespace, UTF-8."""
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_hex(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def digest(hex_or_prefixed: str | None) -> str | None:
    """``sha256:<hex>`` from a bare or prefixed hex digest (None stays None)."""
    if hex_or_prefixed is None:
        return None
    return "sha256:" + hex_or_prefixed.removeprefix("sha256:")


def build_entry(
    action: str, *, actor: str, role: str | None, at: datetime, facts: dict[str, Any]
) -> dict[str, Any]:
    """The entry of ``action`` (one of :data:`LOGGED_ACTIONS`): the common fields and the
    action's facts (``subject`` among them). Free text is cut to :data:`MAX_TEXT` characters."""
    kind = LOGGED_ACTIONS.get(action)
    if kind is None:
        raise LogEntryError(f"{action!r} is not a logged action")
    if not isinstance(facts.get("subject"), str) or not facts["subject"]:
        raise LogEntryError(f"the log entry of {action!r} names no subject")
    entry: dict[str, Any] = {
        "v": ENTRY_VERSION,
        "type": kind,
        "action": action,
        "actor": actor[:128],
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
    }
    if role is not None:
        entry["role"] = role
    for key, value in facts.items():
        entry[key] = value[:MAX_TEXT] if isinstance(value, str) and key == "reason" else value
    return entry


def subject_of_target(target: str) -> str | None:
    """``ns/name@version`` from a version's API path (``/v1/namespaces/ns/artifacts/name/
    versions/v[/action]``), for actions whose callers pass only the audit target."""
    parts = target.strip("/").split("/")
    if len(parts) >= 7 and parts[:2] == ["v1", "namespaces"] and parts[3] == "artifacts":
        if parts[5] == "versions":
            return f"{parts[2]}/{parts[4]}@{parts[6]}"
    return None


def facts_from_audit(
    session: Session, action: str, target: str, details: dict[str, Any]
) -> dict[str, Any]:
    """Facts for a logged action whose caller passed none (the scanner's rejection): what the
    audit entry has, and the version's root digest."""
    if action != "scan_reject":
        raise LogEntryError(f"{action!r} changes trust state and its caller passed no log facts")
    subject = subject_of_target(target)
    if subject is None:
        raise LogEntryError(f"no version in the target {target[:200]!r}")
    from registry.server.models import Artifact, Namespace, Version  # the version's root

    namespace, rest = subject.split("/", 1)
    name, version = rest.split("@", 1)
    root = session.execute(
        select(Version.root_digest)
        .join(Artifact, Version.artifact_id == Artifact.id)
        .join(Namespace, Artifact.namespace_id == Namespace.id)
        .where(Namespace.name == namespace, Artifact.name == name, Version.version == version)
    ).scalar_one_or_none()
    return {
        "subject": subject,
        "root_digest": digest(root),
        "reason": str(details.get("reason") or ""),
        "by": "scanner",
    }


def append(session: Session, entry: dict[str, Any]) -> int:
    """Append ``entry`` inside ``session``'s transaction (the one holding the change it
    records); returns its index. Takes the head row's lock, held to commit.

    Raises:
        LogEntryError: the entry is over :data:`MAX_ENTRY_BYTES`.
    """
    data = canonical(entry)
    if len(data) > MAX_ENTRY_BYTES:
        raise LogEntryError(f"a log entry is at most {MAX_ENTRY_BYTES} bytes, not {len(data)}")
    session.flush()
    head = _lock_head(session)
    index = head.size
    session.add(
        LogEntry(
            idx=index,
            leaf_hash=tlog.leaf_hash(data),
            entry=data,
            type=str(entry["type"])[:32],
            subject=str(entry["subject"])[:300],
            created_at=datetime.fromisoformat(str(entry["at"])),
        )
    )
    head.size = index + 1
    session.flush()
    if not session.info.get("tlog_wake"):
        session.info["tlog_wake"] = True
        event.listen(session, "after_commit", _committed, once=True)
    return index


def _committed(session: Session) -> None:
    session.info.pop("tlog_wake", None)
    for wake in list(_LISTENERS):
        wake.set()


def _lock_head(session: Session) -> LogHead:
    head = session.execute(
        select(LogHead).where(LogHead.id == HEAD_ID).with_for_update()
    ).scalar_one_or_none()
    if head is None:  # a database migrated before 0011 ran creates it; never expected after
        raise ConflictError("the transparency log has no head row (run the migrations)")
    return head


# -- the log key ---------------------------------------------------------------------------------


def load_log_key(settings: Settings) -> ed25519.Ed25519PrivateKey:
    """The configured log key, or ``DATA_DIR/log.key`` (Ed25519, created 0600 on first use),
    as the registry key is (:func:`registry.server.services.keys.load_registry_signer`).

    Raises:
        SigningError: unreadable, readable by others, or not Ed25519.
    """
    from attest.errors import SigningError
    from attest.signing import KeySigner

    path = settings.log_signing_key
    if path is None:
        path = settings.data_dir / f"{LOG_KEY_FILE}.key"
        if not path.exists():
            settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            keys.write_keypair(
                settings.data_dir / LOG_KEY_FILE, keys.generate(keys.KeyType.ED25519)
            )
    key = KeySigner.from_file(Path(path)).private_key
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise SigningError(f"{path}: the log key must be Ed25519 (keygen --type ed25519)")
    return key


def default_origin() -> str:
    return f"modelseal/{socket.getfqdn() or 'localhost'}"[:200].replace(" ", "-")


def register_log(
    sessions: sessionmaker[Session], settings: Settings, key: ed25519.Ed25519PrivateKey
) -> tuple[str, str]:
    """Record the log's origin and key at first start; later, refuse a replica with another
    key or a configured origin that differs. Returns ``(origin, vkey)``.

    Raises:
        ConfigurationError: this replica's key or origin is not the log's.
    """
    from registry.errors import ConfigurationError

    with transaction(sessions) as session:
        head = _lock_head(session)
        origin = head.origin or settings.log_origin or default_origin()
        signer = note.NoteSigner(origin, key)
        if head.origin is None:
            head.origin, head.vkey = origin, signer.verifier.vkey
            return origin, signer.verifier.vkey
    if settings.log_origin is not None and settings.log_origin != head.origin:
        raise ConfigurationError(
            f"MODELSEAL_LOG_ORIGIN is {settings.log_origin!r}, but this registry's log is "
            f"{head.origin!r} (recorded at first start; every replica must use it)"
        )
    if head.vkey != signer.verifier.vkey:
        raise ConfigurationError(
            f"this replica's log key ({signer.verifier.vkey}) is not the log's ({head.vkey}); "
            "every replica must use the same MODELSEAL_LOG_SIGNING_KEY"
        )
    return origin, signer.verifier.vkey


# -- tiles in the blob store ---------------------------------------------------------------------


class TileStore(Protocol):
    """Named objects beside the blobs (``tlog/<path>``): tiles, entry bundles, checkpoint."""

    def put(self, path: str, data: bytes) -> None: ...

    def get(self, path: str) -> bytes | None: ...


class LocalTileStore:
    def __init__(self, root: Path) -> None:
        self.root = root / TILE_PREFIX

    def put(self, path: str, data: bytes) -> None:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, data, mode=0o644)  # public data: served to anyone who asks

    def get(self, path: str) -> bytes | None:
        try:
            return (self.root / path).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None


class S3TileStore:
    def __init__(self, settings: Settings, store: S3BlobStore) -> None:
        self.bucket = store.bucket
        self.prefix = f"{store.prefix}/{TILE_PREFIX}/" if store.prefix else f"{TILE_PREFIX}/"
        self._extra: dict[str, str] = {}
        if settings.s3_sse:
            self._extra["ServerSideEncryption"] = settings.s3_sse
            if settings.s3_sse == "aws:kms" and settings.s3_sse_kms_key_id:
                self._extra["SSEKMSKeyId"] = settings.s3_sse_kms_key_id
        self._s3: Any = store.client

    def put(self, path: str, data: bytes) -> None:
        self._s3.put_object(Bucket=self.bucket, Key=self.prefix + path, Body=data, **self._extra)

    def get(self, path: str) -> bytes | None:
        try:
            found = self._s3.get_object(Bucket=self.bucket, Key=self.prefix + path)
        except self._s3.exceptions.NoSuchKey:
            return None
        return bytes(found["Body"].read())


def open_tile_store(settings: Settings, store: object) -> TileStore | None:
    """The tile store beside ``store``'s blobs (None for a store of another kind: tiles are
    then only served computed)."""
    from registry.server.storage import LocalBlobStore, is_s3

    if isinstance(store, LocalBlobStore):
        return LocalTileStore(store.root)
    if is_s3(store):
        return S3TileStore(settings, store)
    return None


# -- the service ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignedHead:
    """A checkpoint row: the signed note (with any cosignature lines), size, root, time."""

    id: int
    size: int
    root_hash: bytes
    timestamp: int
    note: str


@dataclass(frozen=True, slots=True)
class StoredEntry:
    index: int
    entry: bytes
    type: str
    subject: str


@dataclass(frozen=True, slots=True)
class StatusProof:
    """A version's newest status event, the checkpoint that covers it, and its proof."""

    entry: StoredEntry
    checkpoint: SignedHead
    proof: list[bytes]


class LogService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        *,
        tiles: TileStore | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._tiles = tiles
        self._clock = clock
        self._key = load_log_key(settings)
        self._identity: tuple[str, str] | None = None
        self._tree = tlog.MemoryTree()
        #: The newest index of each (subject, type), read from verified entry bytes as the tree
        #: grows (never from the table's unsigned subject/type columns).
        self._newest: dict[tuple[str, str], int] = {}
        self._tree_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        _LISTENERS.add(self._wake)
        self._thread: threading.Thread | None = None
        #: Told of each checkpoint this replica signs, after its commit (the witness collector's
        #: wake-up, :mod:`registry.server.services.witnesses`); must not block.
        self.on_signed: Callable[[SignedHead], None] | None = None
        #: Signs the registry's statement vouching for this log's key (:meth:`key_binding`).
        self.registry_signer: Callable[[Statement], bytes] | None = None
        self._binding: bytes | None = None

    # -- identity ----------------------------------------------------------------------------

    def identity(self) -> tuple[str, str]:
        """``(origin, vkey)``, registered at first use when bootstrap has not done it."""
        if self._identity is None:
            self._identity = register_log(self._sessions, self._settings, self._key)
        return self._identity

    def key_binding(self) -> str:
        """A bundle signed by the registry key: a statement (:data:`~attest.predicates.LOG_KEY`)
        naming this log's origin and vkey, its subject the vkey's sha256. Signed once per
        process."""
        if self._binding is None:
            if self.registry_signer is None:
                raise ConflictError("the log has no registry signer to vouch for its key")
            origin, vkey = self.identity()
            statement = make_statement(
                name=f"log:{origin}",
                root_digest=hashlib.sha256(vkey.encode()).hexdigest(),
                predicate_type=LOG_KEY,
                predicate={"origin": origin, "vkey": vkey},
            )
            self._binding = self.registry_signer(statement)
        return self._binding.decode()

    def signer(self) -> note.NoteSigner:
        return note.NoteSigner(self.identity()[0], self._key)

    # -- the tree ----------------------------------------------------------------------------

    def _sync(self, session: Session, size: int) -> tlog.MemoryTree:
        """The in-memory tree, grown to at least ``size`` leaves from the entries table; each
        leaf read is checked (its index, and its stored hash against its bytes). Call with
        the tree lock held."""
        tree = self._tree
        while tree.size < size:
            rows = session.execute(
                select(LogEntry.idx, LogEntry.leaf_hash, LogEntry.entry)
                .where(LogEntry.idx >= tree.size, LogEntry.idx < size)
                .order_by(LogEntry.idx)
                .limit(10_000)
            ).all()
            if not rows:
                raise ConflictError(f"the log's entry {tree.size} is missing", index=tree.size)
            for idx, stored, data in rows:
                if idx != tree.size:
                    raise ConflictError(f"the log's entry {tree.size} is missing", index=tree.size)
                if tlog.leaf_hash(bytes(data)) != bytes(stored):
                    raise ConflictError(
                        f"the log's entry {idx} does not hash to its leaf hash (modified in the "
                        "database)",
                        index=idx,
                    )
                tree.append_leaf_hash(bytes(stored))
                about = _about(bytes(data))
                if about is not None:
                    self._newest[about] = idx
        return tree

    def _check_signed(self, tree: tlog.MemoryTree, head: SignedHead) -> None:
        if tree.root(head.size) != head.root_hash:
            raise ConflictError(
                f"the stored log does not hash to its signed checkpoint of size {head.size}: "
                "entries were modified in the database",
                size=head.size,
            )

    # -- checkpoints -------------------------------------------------------------------------

    def latest(self) -> SignedHead | None:
        self.identity()  # registered first, in its own transaction (not inside this one)
        with self._sessions() as session:
            return self._latest(session)

    def _latest(self, session: Session) -> SignedHead | None:
        """The newest checkpoint row, its size, root and time read from its note once the log
        key's signature on it verified (the row's own columns are not signed)."""
        row = _latest(session)
        if row is None:
            return None
        origin, vkey = self.identity()
        try:
            opened = note.open_note(row.note, [note.NoteVerifier.from_vkey(vkey)])
            signed = note.Checkpoint.parse(opened.text)
        except note.NoteError as exc:
            raise ConflictError(
                f"the newest log checkpoint (row {row.id}) does not verify with the log key: {exc}",
                checkpoint=row.id,
            ) from None
        if (signed.origin, signed.size, signed.root_hash, signed.timestamp) != (
            origin,
            row.size,
            row.root_hash,
            row.timestamp,
        ):
            raise ConflictError(
                f"the newest log checkpoint (row {row.id}) was modified in the database: its "
                "columns disagree with its signed note",
                checkpoint=row.id,
            )
        return row

    def _floor(self) -> note.Checkpoint | None:
        """The checkpoint in the blob store (written after each signature): what static readers
        have seen. A database that lost its checkpoint rows must still extend it."""
        if self._tiles is None:
            return None
        try:
            stored = self._tiles.get("checkpoint")
        except Exception as exc:
            log.warning("reading the stored log checkpoint failed: %s", exc)
            return None
        if stored is None:
            return None
        _origin, vkey = self.identity()
        try:
            opened = note.open_note(stored, [note.NoteVerifier.from_vkey(vkey)])
            return note.Checkpoint.parse(opened.text)
        except note.NoteError as exc:
            raise ConflictError(f"the stored log checkpoint does not verify: {exc}") from None

    def sign(self, *, force: bool = True) -> SignedHead:
        """Sign a checkpoint of the whole log now (``force=False``: only when the newest does
        not cover every entry; it is answered otherwise). Its time is never before the newest
        checkpoint's, its tree extends the newest's, and the tiles follow it to the store."""
        origin, _vkey = self.identity()
        signer = self.signer()
        with transaction(self._sessions) as session:
            head = _lock_head(session)
            size = head.size
            previous = self._latest(session)
            if previous is not None and not force and previous.size >= size:
                return previous
            floor = self._floor() if previous is None else None
            with self._tree_lock:
                tree = self._sync(session, size)
                if previous is not None:
                    self._check_signed(tree, previous)
                if floor is not None and (
                    floor.size > size or tree.root(floor.size) != floor.root_hash
                ):
                    raise ConflictError(
                        f"the log's checkpoints are gone from the database and its entries do "
                        f"not extend the stored checkpoint of size {floor.size}: refusing to "
                        "sign a fork",
                        size=floor.size,
                    )
                root = tree.root(size)
            now = self._clock()
            _check_clock(session, now)
            stamp = int(now.timestamp())
            newest: int | None = previous.timestamp if previous is not None else None
            if floor is not None:
                newest = max(newest or 0, floor.timestamp or 0)
            if newest is not None:
                if newest > stamp + MAX_CLOCK_SKEW:
                    raise ConflictError(
                        f"the newest log checkpoint is signed {newest - stamp} s ahead of this "
                        "replica's clock: refusing to carry the time forward",
                        ahead=newest - stamp,
                    )
                stamp = max(stamp, newest)
            checkpoint = note.Checkpoint(origin, size, root, stamp)
            text = note.sign_checkpoint(checkpoint, signer)
            row = LogCheckpoint(size=size, root_hash=root, timestamp=stamp, note=text,
                                created_at=self._clock())  # fmt: skip
            session.add(row)
            session.flush()
            signed = SignedHead(row.id, size, root, stamp, text)
            tiles_from = head.tiles_size
        self._write_tiles(tiles_from, signed)
        if self.on_signed is not None:
            try:
                self.on_signed(signed)
            except Exception:
                log.exception("the checkpoint hook failed")
        return signed

    def covering(self, index: int) -> SignedHead:
        """The newest checkpoint, signed now if none covers entry ``index`` yet (one signature
        covers every entry appended so far: bounded by appends, not by requests)."""
        latest = self.latest()
        if latest is None or latest.size <= index:
            latest = self.sign(force=False)
        if latest.size <= index:
            raise NotFoundError(f"the log has no entry {index}", index=index)
        return latest

    def _write_tiles(self, start: int, head: SignedHead) -> None:
        """Write the tiles and entry bundles that are new or wider from ``start`` to
        ``head.size``, then the checkpoint; record how far they reach. A failure is logged:
        the next checkpoint writes from where the last success left off."""
        if self._tiles is None or head.size <= start:
            return
        try:
            objects: list[tuple[str, bytes]] = []
            with self._sessions() as session:  # read it all, then write with no lock held
                _begin(session)
                with self._tree_lock:
                    tree = self._sync(session, head.size)
                    tiles = [(t, tlog.tile_data(t, tree)) for t in tlog.new_tiles(start, head.size)]
                for tile, data in tiles:
                    objects.append((tile.path(), data))
                    if tile.level == 0:
                        first = tile.index * tlog.TILE_WIDTH
                        bundle = [
                            e.entry for e in self._entries(session, first, first + tile.width)
                        ]
                        tlog.check_entry_bundle(bundle, data)
                        objects.append((tile.entries_path(), tlog.entry_bundle(bundle)))
            for path, data in objects:
                self._tiles.put(path, data)
            floor = self._floor()
            if floor is None or (head.size, head.timestamp) >= (floor.size, floor.timestamp or 0):
                self._tiles.put("checkpoint", head.note.encode())  # never backwards
            with transaction(self._sessions) as session:
                session.execute(
                    update(LogHead)
                    .where(LogHead.id == HEAD_ID, LogHead.tiles_size < head.size)
                    .values(tiles_size=head.size)
                )
        except Exception:
            log.exception("writing the log's tiles up to size %d failed", head.size)

    # -- background signing ------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="tlog-checkpoints", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        interval = self._settings.checkpoint_seconds
        due = time.monotonic()  # sign once at start: a fresh replica serves a fresh checkpoint
        while not self._stop.is_set():
            wait = max(0.0, due - time.monotonic()) if interval else None
            woken = self._wake.wait(wait)
            if self._stop.is_set():
                return
            try:
                if woken:
                    self._wake.clear()
                    self._stop.wait(BATCH_SECONDS)  # let a burst of appends land first
                    self.sign(force=False)
                if interval and time.monotonic() >= due:
                    latest = self.latest()
                    age = time.time() - latest.timestamp if latest is not None else interval
                    if age >= interval / 2:  # else another replica signed a moment ago
                        self.sign(force=True)
                    due = time.monotonic() + interval
            except Exception:
                log.exception("signing the log's checkpoint failed")
                self._stop.wait(1.0)

    # -- reads -------------------------------------------------------------------------------

    def checkpoint_note(self) -> str:
        """The newest signed checkpoint with its cosignatures (a signed note)."""
        return self.cosigned_note(self.latest() or self.sign(force=False))

    def cosigned_note(self, latest: SignedHead) -> str:
        """The signed note of ``latest`` with its witnesses' cosignature lines appended."""
        with self._sessions() as session:
            lines = session.execute(
                select(LogCosignature.signature)
                .where(LogCosignature.checkpoint_id == latest.id)
                .order_by(LogCosignature.id)
            ).scalars()
            extra = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
        return latest.note + extra

    def _proven_tree(self, size: int) -> tuple[SignedHead, tlog.MemoryTree]:
        """The newest checkpoint and the tree checked against it, when ``size`` is within it."""
        latest = self.latest() or self.sign(force=False)
        if size > latest.size:
            raise InvalidRequestError(
                f"size {size} is beyond the newest checkpoint's {latest.size}",
                size=size,
                checkpoint_size=latest.size,
            )
        with self._sessions() as session:
            _begin(session)  # the database first, then the tree (as sign() takes them)
            with self._tree_lock:
                tree = self._sync(session, latest.size)
                self._check_signed(tree, latest)
        return latest, tree

    def inclusion(self, index: int, size: int) -> list[bytes]:
        if not 0 <= index < size:
            raise InvalidRequestError(f"index {index} is not in a tree of size {size}",
                                      index=index, size=size)  # fmt: skip
        _latest_head, tree = self._proven_tree(size)
        with self._tree_lock:
            return tree.inclusion_proof(index, size)

    def consistency(self, old: int, new: int) -> list[bytes]:
        if not 0 <= old <= new:
            raise InvalidRequestError(f"old size {old} is larger than new size {new}",
                                      old=old, new=new)  # fmt: skip
        _latest_head, tree = self._proven_tree(new)
        with self._tree_lock:
            return tree.consistency_proof(old, new)

    def entries(self, start: int, end: int | None) -> tuple[int, list[StoredEntry]]:
        """Entries ``[start, end)`` within the newest checkpoint (at most :data:`MAX_PAGE`;
        ``end`` defaults to as many as that allows), and that checkpoint's size."""
        latest = self.latest() or self.sign(force=False)
        if end is None:
            end = min(start + MAX_PAGE, latest.size)
        if not 0 <= start <= end:
            raise InvalidRequestError(f"no entries [{start}, {end})", start=start, end=end)
        if end > latest.size:
            raise InvalidRequestError(
                f"end {end} is beyond the newest checkpoint's size {latest.size}",
                end=end,
                checkpoint_size=latest.size,
            )
        if end - start > MAX_PAGE:
            raise InvalidRequestError(f"at most {MAX_PAGE} entries per page", start=start, end=end)
        _head, tree = self._proven_tree(latest.size)
        with self._sessions() as session:
            return latest.size, self._checked(tree, self._entries(session, start, end))

    def _checked(self, tree: tlog.MemoryTree, entries: list[StoredEntry]) -> list[StoredEntry]:
        """``entries`` as the tree has them: a row edited after the tree read it is refused."""
        if not entries:
            return entries
        with self._tree_lock:
            leaves = tree.read_leaf_hashes(entries[0].index, entries[-1].index + 1)
        for entry, leaf in zip(entries, leaves, strict=True):
            if tlog.leaf_hash(entry.entry) != leaf:
                raise ConflictError(
                    f"the log's entry {entry.index} was modified in the database",
                    index=entry.index,
                )
        return entries

    @staticmethod
    def _entries(session: Session, start: int, end: int) -> list[StoredEntry]:
        rows = session.execute(
            select(LogEntry).where(LogEntry.idx >= start, LogEntry.idx < end).order_by(LogEntry.idx)
        ).scalars()
        found = [StoredEntry(r.idx, bytes(r.entry), r.type, r.subject) for r in rows]
        if len(found) != end - start or any(e.index != start + i for i, e in enumerate(found)):
            raise ConflictError(f"entries of the log in [{start}, {end}) are missing")
        return found

    def tile(self, path: str) -> bytes:
        """A tile or entry bundle (C2SP tlog-tiles path) of the newest checkpoint's tree: from
        the blob store when written there, else computed.

        Raises:
            InvalidRequestError: not a tile path.
            NotFoundError: the tile is beyond the newest checkpoint.
        """
        try:
            tile, is_entries = tlog.parse_tile_path(path)
        except tlog.TileError as exc:
            raise InvalidRequestError(str(exc), path=path[:200]) from None
        latest = self.latest() or self.sign(force=False)
        shift = tlog.TILE_HEIGHT * tile.level
        if tile.index * tlog.TILE_WIDTH + tile.width > latest.size >> shift:
            raise NotFoundError(
                f"{path} is beyond the newest checkpoint (size {latest.size})", path=path
            )
        if self._tiles is not None:
            try:
                stored = self._tiles.get(path)
            except Exception as exc:  # the store is down: answer from the database
                log.warning("reading %s from the blob store failed: %s", path, exc)
                stored = None
            if stored is not None:
                return stored
        with self._sessions() as session:
            _begin(session)
            with self._tree_lock:
                data = tlog.tile_data(tile, self._sync(session, latest.size))
            if not is_entries:
                return data
            first = tile.index * tlog.TILE_WIDTH
            entries = self._entries(session, first, first + tile.width)
            tlog.check_entry_bundle([e.entry for e in entries], data)  # edited rows refused
            return tlog.entry_bundle([e.entry for e in entries])

    def status_event(self, subject: str) -> StatusProof:
        """The newest release or revocation of the version ``subject`` (``ns/name@version``),
        the newest checkpoint (signed now if it does not cover the event yet) and the event's
        inclusion proof in it.

        Raises:
            NotFoundError: no status event of the version is logged.
        """
        return self.latest_event(subject, STATUS_TYPES, what="release or revocation")

    def latest_event(
        self, subject: str, types: tuple[str, ...], *, what: str | None = None
    ) -> StatusProof:
        """The newest entry about ``subject`` of one of ``types`` (an alias's newest move:
        ``ns/name@alias``, ``("alias",)``), the newest checkpoint (signed now if it does not
        cover the entry yet) and the entry's inclusion proof in it. Read-only.

        Raises:
            NotFoundError: no such entry is logged.
        """
        with self._sessions() as session:
            _begin(session)  # the database first, then the tree (as sign() takes them)
            size = session.execute(select(LogHead.size).where(LogHead.id == HEAD_ID)).scalar()
            with self._tree_lock:
                self._sync(session, int(size or 0))
                found_at = max((self._newest.get((subject, t), -1) for t in types), default=-1)
            if found_at < 0:
                kinds = what or " or ".join(types)
                raise NotFoundError(f"no {kinds} entry of {subject} is logged", subject=subject)
            row = session.get(LogEntry, found_at)
            if row is None:
                raise ConflictError(f"the log's entry {found_at} is missing", index=found_at)
            found = StoredEntry(row.idx, bytes(row.entry), row.type, row.subject)
        signed = self.covering(found.index)
        _head, tree = self._proven_tree(signed.size)
        [found] = self._checked(tree, [found])
        if _about(found.entry) not in {(subject, t) for t in types}:  # pragma: no cover
            raise ConflictError(f"the log's entry {found.index} is not about {subject}")
        with self._tree_lock:
            proof = tree.inclusion_proof(found.index, signed.size)
        return StatusProof(found, signed, proof)


def _about(data: bytes) -> tuple[str, str] | None:
    """An entry's (subject, type), read from its bytes."""
    try:
        parsed = json.loads(data)
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    subject, kind = parsed.get("subject"), parsed.get("type")
    return (subject, kind) if isinstance(subject, str) and isinstance(kind, str) else None


def _check_clock(session: Session, now: datetime) -> None:
    """On PostgreSQL (replicas on several hosts), refuse to sign with a clock far from the
    database's: the checkpoint's time is what clients judge freshness by."""
    if session.get_bind().dialect.name != "postgresql":
        return
    database = session.execute(select(func.now())).scalar_one()
    off = abs((now - database).total_seconds())
    if off > MAX_CLOCK_SKEW:
        raise ConflictError(
            f"this replica's clock is {off:.0f} s off the database's: refusing to sign the log",
            off=round(off),
        )


def _begin(session: Session) -> None:
    """Start the session's transaction (on SQLite, ``BEGIN IMMEDIATE`` waits for writers)."""
    session.connection()


def _latest(session: Session) -> SignedHead | None:
    row = session.execute(
        select(LogCheckpoint).order_by(LogCheckpoint.id.desc()).limit(1)
    ).scalar_one_or_none()
    if row is None:
        return None
    return SignedHead(row.id, row.size, bytes(row.root_hash), row.timestamp, row.note)


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()
