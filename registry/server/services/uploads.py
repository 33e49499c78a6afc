"""Chunked, resumable blob uploads with a final digest check (OCI-distribution style).

Protocol: ``start`` declares the digest and size (and answers "already have it" when the
namespace already holds the blob); chunks arrive in order, each starting exactly at the current
offset; ``finish`` checks that every declared byte arrived and that they hash to the declared
digest, and only then makes the blob visible in the store. A mismatch aborts the upload: nothing
reaches the final key.

A blob whose every byte comes in one request (the finishing chunk starting at 0) goes to a store
that can take it whole (:meth:`UploadService.finish_whole`, S3) in a single write instead of a
part plus an assembly; the digest is checked before the store lets the blob appear.

State lives in the database (offset, running SHA-256 state, parts), so any replica can take the
next chunk. Each chunk claims a fresh part number before its bytes are stored, and the offset
advances only if it still equals the chunk's start: two writers racing on one offset cannot mix
their bytes, and the loser gets 416.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, Result, delete, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from attest.digests import Digest
from registry.errors import (
    DigestMismatchError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    UploadExpiredError,
    UploadIncompleteError,
    UploadOffsetError,
)
from registry.server.config import Settings
from registry.server.db import transaction
from registry.server.models import Blob, Namespace, NamespaceBlob, UploadPart, UploadSession
from registry.server.services.auth import Action, Principal, Role
from registry.server.services.common import Clock, aware, ensure_namespace, insert_for, utcnow
from registry.server.services.journal import Actor
from registry.server.services.journal import record as audit_record
from registry.server.storage import BlobStore, Part
from registry.server.storage.base import WHOLE_BLOB, Readable
from registry.server.storage.hashstate import ResumableSha256

log = logging.getLogger(__name__)

_FINISHING = -1  # offset value while one request assembles the blob
#: The store handle of a batch's claim on a digest (:meth:`UploadService.put_batch`): nothing is
#: staged in the store for it.
NOTHING_STAGED = ""
#: Digests named per audit entry of a batch (each entry's details stay well below the
#: journal's limit).
_AUDIT_DIGESTS = 100


def _batch_index(body: Readable, length: int) -> tuple[list[tuple[Digest, int]], Readable]:
    """Read and check a batch's index line; the declared ``(digest, size)`` in order, and the
    rest of the body."""
    from pydantic import ValidationError

    from registry.wire import (
        BATCH_BLOB_MAX_BYTES,
        BATCH_INDEX_MAX_BYTES,
        BATCH_MAX_BYTES,
        BlobBatchIndex,
    )

    if length > BATCH_MAX_BYTES:
        raise PayloadTooLargeError(
            f"a batch of {length} bytes exceeds the limit of {BATCH_MAX_BYTES}",
            limit=BATCH_MAX_BYTES,
        )
    line = bytearray()
    while (end := line.find(b"\n")) < 0:
        piece = body.read(64 * 1024) if len(line) <= BATCH_INDEX_MAX_BYTES else b""
        if not piece:
            raise InvalidRequestError(
                "a batch starts with its index: one line of JSON of at most "
                f"{BATCH_INDEX_MAX_BYTES} bytes ending in a newline"
            )
        line += piece
    if end >= BATCH_INDEX_MAX_BYTES:
        raise InvalidRequestError(
            f"the batch index is longer than {BATCH_INDEX_MAX_BYTES} bytes",
            limit=BATCH_INDEX_MAX_BYTES,
        )
    line, rest = line[: end + 1], bytes(line[end + 1 :])
    try:
        parsed = BlobBatchIndex.model_validate_json(bytes(line))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidRequestError(
            f"invalid batch index: {where or 'the line'}: {first['msg']}"
        ) from None
    index = [(Digest.parse(entry.digest), entry.size) for entry in parsed.blobs]
    for digest, size in index:
        if size > BATCH_BLOB_MAX_BYTES:
            raise PayloadTooLargeError(
                f"blob {digest.prefixed} of {size} bytes is larger than a batch takes "
                f"({BATCH_BLOB_MAX_BYTES}); upload it in a session",
                limit=BATCH_BLOB_MAX_BYTES,
            )
    declared = len(line) + sum(size for _, size in index)
    if declared != length:
        raise InvalidRequestError(
            f"the batch body is {length} bytes but its index declares {declared}",
            expected=declared,
            got=length,
        )
    return index, _After(rest, body)


class _After:
    """The rest of a body: ``head`` (read past the index line), then ``body``."""

    def __init__(self, head: bytes, body: Readable) -> None:
        self._head = memoryview(head)
        self._body = body

    def read(self, size: int = -1, /) -> bytes:
        if not self._head:
            return self._body.read(size)
        take = len(self._head) if size < 0 else min(size, len(self._head))
        piece, self._head = bytes(self._head[:take]), self._head[take:]
        return piece


def _read_exactly(body: Readable, size: int) -> bytes:
    """``size`` bytes from ``body``, or :class:`InvalidRequestError` when it ends first."""
    data = bytearray()
    while len(data) < size:
        piece = body.read(size - len(data))
        if not piece:
            raise InvalidRequestError(
                f"the batch body ended {size - len(data)} bytes before its index's end"
            )
        data += piece
    return bytes(data)


@dataclass(frozen=True, slots=True)
class UploadStatus:
    """What a client needs to continue an upload."""

    id: str | None
    namespace: str
    digest: Digest
    size: int
    offset: int
    expires_at: datetime | None
    exists: bool = False


@dataclass(frozen=True, slots=True)
class ChunkTicket:
    """Permission to send one chunk: where it starts, how long it is, the hash state before it."""

    upload_id: str
    start: int
    length: int
    hash_state: bytes


def _rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE matched (the result of an UPDATE is always a CursorResult)."""
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


class UploadService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        store: BlobStore,
        settings: Settings,
        *,
        clock: Clock = utcnow,
    ) -> None:
        self._sessions = sessions
        self._store = store
        self._settings = settings
        self._clock = clock

    # -- sessions ---------------------------------------------------------------------------

    def start(
        self, principal: Principal, namespace: str, digest: Digest, size: int
    ) -> UploadStatus:
        """Open an upload session, or report that the namespace already holds this blob.

        A blob held only by *other* namespaces must still be uploaded: knowing a digest is not
        proof of having the bytes. The bytes are verified and then dropped (stored once).
        """
        principal.require(Action.PUSH, namespace)
        digest = Digest(digest)
        if size < 0:
            raise InvalidRequestError("size must be >= 0", size=size)
        if size > self._settings.max_blob_bytes:
            raise PayloadTooLargeError(
                f"a file of {size} bytes exceeds the limit of {self._settings.max_blob_bytes}",
                size=size,
                limit=self._settings.max_blob_bytes,
            )
        now = self._clock()
        with transaction(self._sessions) as session:
            ns = ensure_namespace(session, namespace, now)
            held = session.execute(
                select(Blob.size)
                .join(NamespaceBlob, NamespaceBlob.digest == Blob.digest)
                .where(NamespaceBlob.namespace_id == ns.id, Blob.digest == digest)
            ).scalar_one_or_none()
        if held is not None:
            if held != size:
                raise InvalidRequestError(
                    f"blob sha256:{digest} is {held} bytes, not {size}", expected=held, got=size
                )
            return UploadStatus(None, namespace, digest, size, size, None, exists=True)

        handle = self._store.start_upload(digest)
        upload_id = str(uuid.uuid4())
        expires = now + timedelta(seconds=self._settings.upload_ttl_seconds)
        row = UploadSession(
            id=upload_id, namespace_id=ns.id, digest=digest, size=size, offset=0,
            hash_state=ResumableSha256().state(), backend_handle=handle, next_part=1,
            created_at=now, expires_at=expires, created_by=principal.name,
            token_id=principal.token_id,
        )  # fmt: skip
        try:
            self._open(row, principal, namespace)
        except BaseException:
            # No session row holds the staged upload: abort it now, or it stays in the store.
            with contextlib.suppress(Exception):
                self._store.abort_upload(handle, digest)
            raise
        return UploadStatus(upload_id, namespace, digest, size, 0, expires)

    def _open(self, row: UploadSession, principal: Principal, namespace: str) -> None:
        with transaction(self._sessions) as session:
            session.add(row)
            audit_record(session, principal, "start_upload", f"/v1/namespaces/{namespace}/uploads",
                         at=row.created_at, details={"upload_id": row.id, "size": row.size,
                                                     "digest": row.digest.prefixed})  # fmt: skip

    def _load(self, session: Session, principal: Principal, upload_id: str) -> UploadSession:
        row = session.get(UploadSession, upload_id)
        if row is not None and row.backend_handle == NOTHING_STAGED:
            row = None  # a batch's claim on a digest is no session anyone may continue
        namespace = None if row is None else session.get(Namespace, row.namespace_id)
        if row is None or namespace is None or not principal.can_see(namespace.name):
            raise NotFoundError(f"upload {upload_id} does not exist", upload_id=upload_id)
        principal.require(Action.PUSH, namespace.name)
        opener = (
            row.token_id == principal.token_id if row.token_id else row.created_by == principal.name
        )
        if not opener and principal.role is not Role.ADMIN:
            # Another pusher of the namespace may not read, feed or cancel it (as if unknown).
            raise NotFoundError(f"upload {upload_id} does not exist", upload_id=upload_id)
        if aware(row.expires_at) <= self._clock():
            raise UploadExpiredError(
                f"upload {upload_id} expired at {aware(row.expires_at).isoformat()}; start again",
                upload_id=upload_id,
            )
        return row

    def status(self, principal: Principal, upload_id: str) -> UploadStatus:
        with self._sessions() as session:
            row = self._load(session, principal, upload_id)
            ns = session.get(Namespace, row.namespace_id)
            assert ns is not None
            # A session being completed has every byte: a client that asks sends the final
            # (empty) request, which completes it if its finisher died.
            offset = row.size if row.offset == _FINISHING else row.offset
            return UploadStatus(
                row.id, ns.name, Digest(row.digest), row.size, offset, aware(row.expires_at)
            )

    # -- chunks -----------------------------------------------------------------------------

    def begin_chunk(
        self, principal: Principal, upload_id: str, start: int, length: int
    ) -> ChunkTicket:
        """Check a chunk's placement and size before reading its body."""
        with self._sessions() as session:
            row = self._load(session, principal, upload_id)
        if start != row.offset:
            raise UploadOffsetError(
                f"chunk starts at byte {start} but upload {upload_id} ends at byte "
                f"{max(row.offset, 0)}",
                offset=max(row.offset, 0),
                got=start,
            )
        if length <= 0:
            raise InvalidRequestError("a chunk must carry at least one byte")
        if length > self._settings.max_chunk_bytes:
            raise PayloadTooLargeError(
                f"chunk of {length} bytes exceeds the limit of {self._settings.max_chunk_bytes}",
                limit=self._settings.max_chunk_bytes,
            )
        if start + length > row.size:
            raise PayloadTooLargeError(
                f"chunk ends at byte {start + length}, past the declared size {row.size}",
                size=row.size,
            )
        is_last = start + length == row.size
        if not is_last and length < self._settings.min_chunk_bytes:
            raise InvalidRequestError(
                f"every chunk but the last must be at least {self._settings.min_chunk_bytes} "
                f"bytes (got {length})",
                min_chunk_bytes=self._settings.min_chunk_bytes,
            )
        return ChunkTicket(upload_id, start, length, row.hash_state)

    def commit_chunk(
        self, ticket: ChunkTicket, body: Readable, state_after: Callable[[], bytes]
    ) -> int:
        """Store a chunk streamed from ``body`` and advance the session; returns the new offset.

        ``state_after`` gives the running hash state once ``body`` has been read to its end (the
        receiver hashes the bytes as it hands them over).
        """
        with transaction(self._sessions) as session:
            claimed = session.execute(
                update(UploadSession)
                .where(UploadSession.id == ticket.upload_id)
                .where(UploadSession.offset == ticket.start)
                .values(next_part=UploadSession.next_part + 1)
                .returning(
                    UploadSession.next_part, UploadSession.backend_handle, UploadSession.digest
                )
            ).one_or_none()
        if claimed is None:
            raise UploadOffsetError(
                f"upload {ticket.upload_id} moved on while this chunk was in flight",
                got=ticket.start,
            )
        number, handle, digest = claimed[0] - 1, claimed[1], claimed[2]
        part = self._store.put_part(handle, digest, number, body, ticket.length)
        new_state = state_after()
        with transaction(self._sessions) as session:
            advanced = _rowcount(
                session.execute(
                    update(UploadSession)
                    .where(UploadSession.id == ticket.upload_id)
                    .where(UploadSession.offset == ticket.start)
                    .values(offset=ticket.start + ticket.length, hash_state=new_state)
                )
            )
            if advanced != 1:
                raise UploadOffsetError(
                    f"upload {ticket.upload_id} moved on while this chunk was in flight",
                    got=ticket.start,
                )
            session.add(
                UploadPart(
                    session_id=ticket.upload_id,
                    part_number=part.number,
                    offset=ticket.start,
                    size=ticket.length,
                    etag=part.etag,
                )
            )
        return ticket.start + ticket.length

    def takes_whole(self, start: int, length: int, size: int) -> bool:
        """Whether a finishing chunk carries the whole blob and the store can write it whole."""
        return start == 0 and 0 < length == size and hasattr(self._store, WHOLE_BLOB)

    def finish_whole(
        self,
        principal: Principal,
        ticket: ChunkTicket,
        body: Readable,
        hexdigest: Callable[[], str],
        state_after: Callable[[], bytes],
    ) -> tuple[str, int]:
        """Store a blob that arrives whole in one chunk (``ticket`` from :meth:`begin_chunk`,
        starting at 0 and ending at the declared size) and make it visible; returns its digest
        (hex) and size.

        ``hexdigest`` gives the digest of the bytes read from ``body`` so far (the receiver
        hashes them as it hands them over), ``state_after`` their hash state, recorded with the
        claim (a retried finish trusts a stored object only when that state matches). The
        store calls the check once the whole body was read, before the blob can appear: a
        mismatch stores nothing and discards the upload.
        The session is claimed only after the bytes are stored (two racing requests would both
        have written the same verified bytes); any other failure leaves it at offset 0, to be
        sent again.

        Raises:
            DigestMismatchError: the bytes hash to another digest (the upload is discarded).
            UploadOffsetError: another request finished or advanced the upload meanwhile.
        """
        with self._sessions() as session:
            row = self._load(session, principal, ticket.upload_id)
        mismatch: list[DigestMismatchError] = []

        def check() -> None:
            actual = hexdigest()
            if actual != row.digest:
                mismatch.append(
                    DigestMismatchError(
                        f"uploaded bytes hash to sha256:{actual}, not the declared "
                        f"sha256:{row.digest}; the upload was discarded",
                        expected=row.digest.prefixed,
                        got=f"sha256:{actual}",
                    )
                )
                raise mismatch[0]

        try:
            getattr(self._store, WHOLE_BLOB)(row.digest, body, row.size, check)
        except BaseException:
            if mismatch:
                self._discard(row)
                raise mismatch[0] from None
            raise
        if not mismatch and hexdigest() != row.digest:  # pragma: no cover - the store must check
            raise RuntimeError("the blob store did not check the digest of a whole blob")
        with transaction(self._sessions) as session:
            claimed = _rowcount(
                session.execute(
                    update(UploadSession)
                    .where(UploadSession.id == row.id, UploadSession.offset == 0)
                    .values(offset=_FINISHING, hash_state=state_after())
                )
            )
        if claimed != 1:
            raise UploadOffsetError(
                f"upload {row.id} moved on while this chunk was in flight", got=ticket.start
            )
        with contextlib.suppress(Exception):  # nothing staged there; S3 lifecycle as a backstop
            self._store.abort_upload(row.backend_handle, row.digest)
        self._publish(principal, row)
        return Digest(row.digest), row.size

    # -- batches ----------------------------------------------------------------------------

    def put_batch(
        self, principal: Principal, namespace: str, body: Readable, length: int
    ) -> list[tuple[Digest, int]]:
        """Store a batch of small blobs read from ``body`` (``length`` bytes: the index line,
        then the blobs' bytes in its order; :data:`registry.wire.BATCH_MEDIA_TYPE`) and record
        them in the namespace; returns each distinct ``(digest, size)`` in the index's order.

        Every blob is hashed before it is written, and written at its content key only when its
        bytes match the digest the index declares. The batch is all or nothing for the
        namespace: the blobs are recorded in one transaction after every one was stored, so a
        refused batch (a mismatch, a short body) adds nothing to it. For as long as the batch
        runs, each of its digests is claimed by an upload-session row (handle
        :data:`NOTHING_STAGED`), which is what garbage collection checks before it deletes an
        object that has no blob row: a blob stored here is never deleted before its row exists.

        Raises:
            InvalidRequestError: a malformed index, or a body of another length than declared.
            PayloadTooLargeError: past a batch limit.
            DigestMismatchError: a blob's bytes hash to another digest (nothing is recorded).
        """
        principal.require(Action.PUSH, namespace)
        index, body = _batch_index(body, length)
        wanted: dict[Digest, int] = {}
        for entry in index:
            digest, size = entry
            if wanted.setdefault(digest, size) != size:
                raise InvalidRequestError(
                    f"the batch declares blob {digest.prefixed} twice, with sizes "
                    f"{wanted[digest]} and {size}",
                    digest=digest.prefixed,
                )
        now = self._clock()
        claims = self._claim(principal, namespace, wanted, now)
        try:
            for position, (digest, size) in enumerate(index):
                data = _read_exactly(body, size)
                actual = hashlib.sha256(data).hexdigest()
                if actual != digest:
                    raise DigestMismatchError(
                        f"blob {position} of the batch hashes to sha256:{actual}, not the "
                        f"declared {digest.prefixed}; nothing of the batch was recorded",
                        expected=digest.prefixed,
                        got=f"sha256:{actual}",
                        position=position,
                    )
                self._store.put_verified(digest, data)
            if body.read(1):
                raise InvalidRequestError("the batch body is longer than its index declares")
            self._publish_batch(principal, namespace, claims, wanted)
        except BaseException:
            with contextlib.suppress(Exception):  # else expiry removes them
                with transaction(self._sessions) as session:
                    session.execute(delete(UploadSession).where(UploadSession.id.in_(claims)))
            raise
        return list(wanted.items())

    def _claim(
        self, principal: Principal, namespace: str, wanted: dict[Digest, int], now: datetime
    ) -> list[str]:
        expires = now + timedelta(seconds=self._settings.upload_ttl_seconds)
        ids = [str(uuid.uuid4()) for _ in wanted]
        with transaction(self._sessions) as session:
            ns = ensure_namespace(session, namespace, now)
            session.execute(
                insert(UploadSession),
                [
                    {"id": claim, "namespace_id": ns.id, "digest": digest, "size": size,
                     "offset": _FINISHING, "hash_state": b"", "backend_handle": NOTHING_STAGED,
                     "next_part": 1, "created_at": now, "expires_at": expires,
                     "created_by": principal.name, "token_id": principal.token_id}
                    for claim, (digest, size) in zip(ids, wanted.items(), strict=True)
                ],
            )  # fmt: skip
        return ids

    def _publish_batch(
        self, principal: Principal, namespace: str, claims: list[str], wanted: dict[Digest, int]
    ) -> None:
        now = self._clock()
        with transaction(self._sessions) as session:
            ns = ensure_namespace(session, namespace, now)
            insert_row = insert_for(session)
            released = _rowcount(
                session.execute(delete(UploadSession).where(UploadSession.id.in_(claims)))
            )
            if released != len(claims):
                # Expired while the batch ran (a body sent slower than the upload lifetime):
                # gc may have deleted what it stored. Record nothing; the client sends again.
                raise UploadExpiredError(
                    "the batch took longer than an upload may live and was not recorded; "
                    "send it again",
                    upload_ttl_seconds=self._settings.upload_ttl_seconds,
                )
            blob = insert_row(Blob)
            session.execute(
                # A no-op update on conflict locks an existing row (PostgreSQL), so a gc sweep
                # cannot delete it before the namespace's row below refers to it.
                blob.on_conflict_do_update(
                    index_elements=["digest"], set_={"digest": blob.excluded.digest}
                ),
                [{"digest": d, "size": size, "created_at": now} for d, size in wanted.items()],
            )
            already = set(
                session.execute(
                    select(NamespaceBlob.digest).where(
                        NamespaceBlob.namespace_id == ns.id,
                        NamespaceBlob.digest.in_(list(wanted)),
                    )
                ).scalars()
            )
            session.execute(
                insert_row(NamespaceBlob).on_conflict_do_nothing(
                    index_elements=["namespace_id", "digest"]
                ),
                [{"namespace_id": ns.id, "digest": d, "created_at": now} for d in wanted],
            )
            # The entries name what the namespace did not hold before: a batch of blobs it
            # already held changes nothing (the request is logged as such, like a session
            # answered "already held").
            held = [(d, size) for d, size in wanted.items() if d not in already]
            for i in range(0, len(held), _AUDIT_DIGESTS):  # every digest named, entries kept short
                part = held[i : i + _AUDIT_DIGESTS]
                audit_record(session, principal, "upload_blobs",
                             f"/v1/namespaces/{namespace}/blobs", at=now,
                             details={"count": len(part), "size": sum(size for _, size in part),
                                      "digests": [d.prefixed for d, _ in part]})  # fmt: skip

    # -- completion -------------------------------------------------------------------------

    def finish(self, principal: Principal, upload_id: str) -> tuple[Digest, int]:
        """Verify the whole blob and make it visible; returns its digest (hex) and size.

        Raises:
            UploadIncompleteError: not every declared byte has arrived (the session stays open).
            DigestMismatchError: the bytes hash to another digest (the upload is discarded).
        """
        with self._sessions() as session:
            row = self._load(session, principal, upload_id)
        if row.offset not in (row.size, _FINISHING):
            raise UploadIncompleteError(
                f"upload {upload_id} has {max(row.offset, 0)} of {row.size} bytes",
                offset=max(row.offset, 0),
                size=row.size,
            )
        # A session already claimed is claimed again: its finisher may have died between the
        # claim and the publication (a killed replica), and nothing else would ever release it.
        # Completing twice is harmless: the store keeps one object (an existing one ends the
        # upload), publication inserts only what is missing and audits once.
        with transaction(self._sessions) as session:
            claimed = _rowcount(
                session.execute(
                    update(UploadSession)
                    .where(
                        UploadSession.id == upload_id,
                        UploadSession.offset.in_((row.size, _FINISHING)),
                    )
                    .values(offset=_FINISHING)
                )
            )
        if claimed != 1:
            raise UploadOffsetError(f"upload {upload_id} is already being completed")
        own_bytes_verified = ResumableSha256.from_state(row.hash_state).hexdigest() == row.digest
        if (
            row.offset == _FINISHING
            and own_bytes_verified
            and self._store.size(row.digest) == row.size
        ):
            # This session's own bytes hashed to the digest (its hash state says so: a blob
            # sent whole records its final state when it is claimed) and reached their content
            # key: what is left is publishing them. An object that is there without this
            # session's bytes having matched (another namespace's upload) publishes nothing:
            # knowing a digest is not holding its bytes.
            self._publish(principal, row)
            return Digest(row.digest), row.size
        try:
            actual = ResumableSha256.from_state(row.hash_state).hexdigest()
            if actual != row.digest:
                raise DigestMismatchError(
                    f"uploaded bytes hash to sha256:{actual}, not the declared "
                    f"sha256:{row.digest}; the upload was discarded",
                    expected=row.digest.prefixed,
                    got=f"sha256:{actual}",
                )
            with self._sessions() as session:
                parts = [
                    Part(p.part_number, p.etag)
                    for p in session.execute(
                        select(UploadPart)
                        .where(UploadPart.session_id == upload_id)
                        .order_by(UploadPart.offset)
                    ).scalars()
                ]
            self._store.complete_upload(row.backend_handle, row.digest, parts)
        except BaseException:
            self._discard(row)
            raise
        self._publish(principal, row)
        return Digest(row.digest), row.size

    def _publish(self, principal: Principal, row: UploadSession) -> None:
        """Record a stored, verified blob in the namespace and close its session."""
        now = self._clock()
        upload_id = row.id
        with transaction(self._sessions) as session:
            insert = insert_for(session)
            blob = insert(Blob).values(digest=row.digest, size=row.size, created_at=now)
            session.execute(  # a no-op update on conflict locks the row against a gc sweep
                blob.on_conflict_do_update(
                    index_elements=["digest"], set_={"digest": blob.excluded.digest}
                )
            )
            session.execute(
                insert(NamespaceBlob)
                .values(namespace_id=row.namespace_id, digest=row.digest, created_at=now)
                .on_conflict_do_nothing(index_elements=["namespace_id", "digest"])
            )
            session.execute(delete(UploadPart).where(UploadPart.session_id == upload_id))
            closed = _rowcount(
                session.execute(delete(UploadSession).where(UploadSession.id == upload_id))
            )
            if closed:  # a second finisher of the same session publishes nothing new
                audit_record(session, principal, "finish_upload", f"/v1/uploads/{upload_id}",
                             at=now, details={"digest": row.digest.prefixed,
                                              "size": row.size})  # fmt: skip

    def cancel(self, principal: Principal, upload_id: str) -> None:
        with self._sessions() as session:
            row = self._load(session, principal, upload_id)
        self._discard(row, by=principal)

    def expire(self) -> int:
        """Abort and forget every expired session; returns how many."""
        now = self._clock()
        with self._sessions() as session:
            rows = list(
                session.execute(
                    select(UploadSession).where(UploadSession.expires_at <= now)
                ).scalars()
            )
        for row in rows:
            self._discard(row)
        return len(rows)

    def _discard(self, row: UploadSession, *, by: Actor | None = None) -> None:
        try:
            if row.backend_handle != NOTHING_STAGED:
                self._store.abort_upload(row.backend_handle, row.digest)
        except Exception:  # the session row still goes; expiry retries nothing, S3 lifecycle does
            log.exception("could not abort staged parts of upload %s", row.id)
        with transaction(self._sessions) as session:
            session.execute(delete(UploadPart).where(UploadPart.session_id == row.id))
            gone = _rowcount(
                session.execute(delete(UploadSession).where(UploadSession.id == row.id))
            )
            if by is not None and gone:
                audit_record(session, by, "cancel_upload", f"/v1/uploads/{row.id}",
                             at=self._clock(),
                             details={"digest": row.digest.prefixed})  # fmt: skip
