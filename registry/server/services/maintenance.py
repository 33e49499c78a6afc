"""Operator maintenance: ``fsck`` (the database against the blob store) and ``gc`` (garbage).

Garbage is what no committed version references: blobs uploaded but never named by a version
(the loser of two conflicting pushes, an abandoned push), objects in the store with no blob row
(a crash between storing a blob and recording it, or between gc's two steps), upload sessions
past their expiry, and staged uploads no session names.

gc never deletes a blob a committed version references, nor one a push is about to reference:

* **Mark, then sweep.** Candidates are blobs no version references whose row and every
  namespace's upload of them (``namespace_blobs.created_at``) are older than the grace period.
  The sweep re-checks each candidate inside the transaction that deletes its row, after locking
  the row (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite serializes writers with ``BEGIN
  IMMEDIATE``). A version commit that inserted a reference holds a key-share lock on the blob
  row, so the sweep skips it; one that comes after the lock waits for it and then fails its
  foreign key (``version_files.digest`` references ``blobs.digest``): a clean error, never a
  committed version whose blob is gone.
* **Rows first, objects after.** The object is deleted only after the row delete has committed,
  so a crash in between leaves an orphan object (reported by fsck, deleted by the next gc), never
  a row naming a missing object.
* **Objects under the upload lock.** An object with no row is deleted while ``upload_sessions``
  is locked against writers (PostgreSQL ``SHARE`` mode; SQLite: the write transaction), after
  checking again that no blob row and no upload session names its digest: an upload that would
  find the object already stored and skip writing it (:meth:`BlobStore.complete_upload`) holds a
  session row until its blob row is committed.

Each change is audited as the operator (:func:`~registry.server.services.bootstrap.
operator_actor`) in the transaction that makes it; the store-only deletions (objects, staged
uploads) are recorded right after them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, exists, select, text
from sqlalchemy.orm import Session, sessionmaker

from attest.digests import Digest
from registry.server.db import transaction
from registry.server.models import Blob, NamespaceBlob, UploadPart, UploadSession, VersionFile
from registry.server.services.common import Clock, aware, utcnow
from registry.server.services.journal import record as audit_record
from registry.server.services.uploads import NOTHING_STAGED
from registry.server.storage import BlobStore, StagedUpload
from registry.server.storage.base import IN_PROGRESS

#: Rows swept per transaction (one audit entry each; its details list every digest).
SWEEP_BATCH = 50

#: Test hook: called with the marked digests between mark and sweep.
after_mark: Callable[[list[str]], None] | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing fsck found, or gc did (or would do, with ``--dry-run``).

    ``kind``: ``missing-object``, ``size-mismatch``, ``digest-mismatch`` (damage: a blob row
    whose bytes are gone or wrong), ``unreferenced-blob``, ``orphan-object``, ``expired-upload``,
    ``stale-upload`` (garbage, which gc collects once older than its grace period)."""

    kind: str
    subject: str
    detail: str


@dataclass(slots=True)
class Report:
    findings: list[Finding] = field(default_factory=list)
    #: What was looked at: blob rows, store objects, upload sessions, staged uploads.
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not self.findings

    def add(self, kind: str, subject: str, detail: str) -> None:
        self.findings.append(Finding(kind, subject, detail))

    def tally(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for f in self.findings:
            found[f.kind] = found.get(f.kind, 0) + 1
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "counts": self.counts,
            "findings": [asdict(f) for f in self.findings],
        }


def _size(n: int) -> str:
    return f"{n} bytes"


class MaintenanceService:
    def __init__(
        self, sessions: sessionmaker[Session], store: BlobStore, *, clock: Clock = utcnow
    ) -> None:
        self._sessions = sessions
        self._store = store
        self._clock = clock

    # -- fsck -------------------------------------------------------------------------------

    def fsck(self, actor: str, *, rehash: bool = False) -> Report:
        """Check the database against the store; records one audit entry with the tallies.

        Every blob row must have its object with its size (and, with ``rehash``, bytes that
        hash to its digest, streamed piece by piece); every object a row; every blob a version
        naming it; every upload session an unexpired life; every staged upload a session."""
        report = Report()
        now = self._clock()
        # The store first: a blob completed after the listing has its row read below, and a
        # row not in the listing is looked up again before it is reported missing.
        objects = {blob.digest: blob for blob in self._store.list_blobs()}
        staged = list(self._store.list_uploads())
        with self._sessions() as session:
            rows = session.execute(select(Blob.digest, Blob.size)).all()
            referenced = _referenced(session)
            uploads = session.execute(
                select(
                    UploadSession.id,
                    UploadSession.digest,
                    UploadSession.backend_handle,
                    UploadSession.expires_at,
                )
            ).all()
        uploading = {u.digest for u in uploads}
        report.counts = {
            "blobs": len(rows),
            "objects": len(objects),
            "upload_sessions": len(uploads),
            "staged_uploads": len(staged),
        }
        for digest, size in rows:
            where = "referenced by a version" if digest in referenced else "no version names it"
            listed = objects.pop(digest, None)
            got = listed.size if listed is not None else self._store.size(digest)
            if got is None:
                report.add("missing-object", digest.prefixed, f"the store has no object ({where})")
            elif got != size:
                report.add(
                    "size-mismatch",
                    digest.prefixed,
                    f"the object has {_size(got)}, the row {_size(size)} ({where})",
                )
            elif rehash and (actual := self._hash(digest)) != digest:
                report.add(
                    "digest-mismatch",
                    digest.prefixed,
                    f"the object's bytes hash to sha256:{actual} ({where})",
                )
            if digest not in referenced:
                report.add(
                    "unreferenced-blob", digest.prefixed, f"{_size(size)}, no version names it"
                )
        for name, blob in sorted(objects.items()):  # the store's names: not checked digests
            if name not in uploading:  # else an upload is completing: its row comes next
                report.add(
                    "orphan-object",
                    f"sha256:{name}",
                    f"{_size(blob.size)}, no blob row, stored {_iso(blob.modified)}",
                )
        for u in uploads:
            if aware(u.expires_at) <= now:
                report.add(
                    "expired-upload",
                    u.id,
                    f"upload of sha256:{u.digest} expired {_iso(aware(u.expires_at))}",
                )
        handles = {u.backend_handle for u in uploads}
        for upload in staged:
            if upload.handle not in handles:
                report.add("stale-upload", upload.handle, _staged(upload))
        with transaction(self._sessions) as session:
            audit_record(
                session,
                actor,
                "fsck",
                "/admin/fsck",
                at=self._clock(),
                outcome="clean" if report.clean else "findings",
                details={"rehash": rehash, "counts": report.counts, "findings": report.tally()},
            )
        return report

    def _hash(self, digest: str) -> str:
        sha = hashlib.sha256()
        for piece in self._store.read(digest):
            sha.update(piece)
        return sha.hexdigest()

    # -- gc ---------------------------------------------------------------------------------

    def gc(self, actor: str, *, grace: timedelta, dry_run: bool = False) -> Report:
        """Collect garbage older than ``grace``; returns what was (or would be) deleted."""
        if grace < timedelta(0):
            raise ValueError("the grace period cannot be negative")
        report = Report()
        cutoff = self._clock() - grace
        self._expired_uploads(actor, cutoff, report, dry_run)
        marked = self._mark(cutoff)
        if after_mark is not None:
            after_mark([digest for digest, _ in marked])
        orphans: dict[str, int] = {}  # digest -> size of objects with no row
        if dry_run:
            for digest, size in marked:
                report.add("unreferenced-blob", digest.prefixed, f"{_size(size)}: would delete")
        else:
            for i in range(0, len(marked), SWEEP_BATCH):
                swept = self._sweep(actor, marked[i : i + SWEEP_BATCH], cutoff, report)
                orphans.update((digest.hex, size) for digest, size in swept.items())
        with self._sessions() as session:
            rows = set(session.execute(select(Blob.digest)).scalars())
        for blob in self._store.list_blobs():
            if blob.digest not in rows and blob.modified < cutoff:
                orphans.setdefault(blob.digest, blob.size)
        self._orphan_objects(actor, orphans, report, dry_run)
        self._stale_uploads(actor, cutoff, report, dry_run)
        report.counts = report.tally()
        if dry_run:
            with transaction(self._sessions) as session:
                audit_record(
                    session,
                    actor,
                    "gc",
                    "/admin/gc",
                    at=self._clock(),
                    outcome="dry-run",
                    details={"grace_seconds": grace.total_seconds(), "would": report.counts},
                )
        return report

    def _expired_uploads(self, actor: str, cutoff: datetime, report: Report, dry: bool) -> None:
        with self._sessions() as session:
            expired = (
                session.execute(select(UploadSession).where(UploadSession.expires_at <= cutoff))
                .scalars()
                .all()
            )
        if not expired:
            return
        for row in expired:
            if not dry and row.backend_handle != NOTHING_STAGED:  # a batch's claim: no parts
                self._store.abort_upload(row.backend_handle, row.digest)
            expired_at = _iso(aware(row.expires_at))
            report.add(
                "expired-upload",
                row.id,
                f"upload of sha256:{row.digest} expired "
                f"{expired_at}: " + ("would abort" if dry else "aborted"),
            )
        if dry:
            return
        ids = [row.id for row in expired]
        with transaction(self._sessions) as session:
            session.execute(delete(UploadPart).where(UploadPart.session_id.in_(ids)))
            session.execute(delete(UploadSession).where(UploadSession.id.in_(ids)))
            audit_record(
                session,
                actor,
                "gc_expire_uploads",
                "/admin/gc",
                at=self._clock(),
                details={"upload_ids": ids},
            )

    def _mark(self, cutoff: datetime) -> list[tuple[Digest, int]]:
        with self._sessions() as session:
            return [
                (digest, size)
                for digest, size in session.execute(
                    select(Blob.digest, Blob.size)
                    .where(*_collectable(cutoff))
                    .order_by(Blob.digest)
                )
            ]

    def _sweep(
        self, actor: str, marked: Sequence[tuple[Digest, int]], cutoff: datetime, report: Report
    ) -> dict[Digest, int]:
        """Delete the rows of the ``marked`` blobs that are still collectable; returns their
        digests and sizes, whose objects :meth:`_orphan_objects` deletes after this commits."""
        with transaction(self._sessions) as session:
            found = session.execute(
                select(Blob.digest, Blob.size)
                .where(Blob.digest.in_([digest for digest, _ in marked]), *_collectable(cutoff))
                .with_for_update(skip_locked=True, of=Blob)
            )
            locked = {digest: size for digest, size in found}
            # Locked now, so no version can add a reference; look again with a fresh snapshot
            # (a commit may have landed between the statement's snapshot and its lock).
            for digest in _referenced(session, locked):
                del locked[digest]
            if locked:
                doomed = sorted(locked)
                session.execute(delete(NamespaceBlob).where(NamespaceBlob.digest.in_(doomed)))
                session.execute(delete(Blob).where(Blob.digest.in_(doomed)))
                audit_record(
                    session,
                    actor,
                    "gc_delete_blobs",
                    "/admin/gc",
                    at=self._clock(),
                    details={
                        "digests": [d.prefixed for d in doomed],
                        "bytes": sum(locked.values()),
                    },
                )
        for digest, size in sorted(locked.items()):
            report.add("unreferenced-blob", digest.prefixed, f"{_size(size)}: row deleted")
        return locked

    def _orphan_objects(
        self, actor: str, orphans: dict[str, int], report: Report, dry: bool
    ) -> None:
        if dry:
            for digest, size in sorted(orphans.items()):
                report.add(
                    "orphan-object", f"sha256:{digest}", f"{_size(size)}, no blob row: would delete"
                )
            return
        names = sorted(orphans)
        for i in range(0, len(names), SWEEP_BATCH):
            batch = names[i : i + SWEEP_BATCH]
            deleted: list[str] = []
            with transaction(self._sessions) as session:
                if session.get_bind().dialect.name == "postgresql":
                    session.execute(text("LOCK TABLE upload_sessions IN SHARE MODE"))
                claimed = set(
                    session.execute(select(Blob.digest).where(Blob.digest.in_(batch))).scalars()
                ) | set(
                    session.execute(
                        select(UploadSession.digest).where(UploadSession.digest.in_(batch))
                    ).scalars()
                )
                for digest in batch:
                    if digest not in claimed:
                        self._store.delete(digest)
                        deleted.append(digest)
            if not deleted:
                continue
            # A transaction of its own: some writers take the audit append lock before
            # upload_sessions and others after it, so holding both here could deadlock.
            with transaction(self._sessions) as session:
                audit_record(
                    session,
                    actor,
                    "gc_delete_objects",
                    "/admin/gc",
                    at=self._clock(),
                    details={"digests": [f"sha256:{d}" for d in deleted]},
                )
            for digest in deleted:
                report.add(
                    "orphan-object", f"sha256:{digest}", f"{_size(orphans[digest])}: object deleted"
                )

    def _stale_uploads(self, actor: str, cutoff: datetime, report: Report, dry: bool) -> None:
        with self._sessions() as session:
            handles = set(session.execute(select(UploadSession.backend_handle)).scalars())
        writing = self._clock() - IN_PROGRESS  # a file written to since is being written
        stale = [
            u
            for u in self._store.list_uploads()
            if u.handle not in handles
            and u.started < cutoff
            and not (u.writing and u.started >= writing)
        ]
        for upload in stale:
            if not dry:
                self._store.abort_staged(upload)
            report.add(
                "stale-upload",
                upload.handle,
                _staged(upload) + (": would abort" if dry else ": aborted"),
            )
        if stale and not dry:
            with transaction(self._sessions) as session:
                audit_record(
                    session,
                    actor,
                    "gc_abort_staged",
                    "/admin/gc",
                    at=self._clock(),
                    details={"handles": [u.handle for u in stale]},
                )


def _collectable(cutoff: datetime) -> tuple[Any, ...]:
    """Blob conditions of gc: no version names it, and neither its row nor any namespace's
    upload of it is younger than ``cutoff``."""
    return (
        Blob.created_at < cutoff,
        ~exists().where(VersionFile.digest == Blob.digest),
        ~exists().where(NamespaceBlob.digest == Blob.digest, NamespaceBlob.created_at >= cutoff),
    )


def _referenced(session: Session, among: Iterable[str] | None = None) -> set[Digest]:
    """Digests some version names (of ``among``, or all)."""
    query = select(VersionFile.digest).distinct()
    if among is not None:
        query = query.where(VersionFile.digest.in_(list(among)))
    return set(session.execute(query).scalars())


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


def _staged(upload: StagedUpload) -> str:
    what = f"of sha256:{upload.digest}" if upload.digest else "staged"
    return f"upload {what} with no session, started {_iso(upload.started)}"
