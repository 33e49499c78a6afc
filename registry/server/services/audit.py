"""The append-only, hash-chained audit log and its registry-signed checkpoints.

Entries about state changes are written by the services inside the transaction of the change
(:mod:`registry.server.services.journal`); :meth:`AuditService.append` is for denied and failed
requests, which change nothing else.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from attest.auditlog import GENESIS, entry_hash
from attest.bundle import Bundle
from attest.errors import AttestError
from attest.keys import TrustedKey
from attest.predicates import AUDIT_CHECKPOINT
from attest.signing import KeySigner, UriSigner
from attest.statement import make_statement
from attest.verifying import Verifier
from registry.errors import ConflictError
from registry.server.db import transaction
from registry.server.models import AuditCheckpoint, AuditEntry
from registry.server.services.auth import Action, Principal
from registry.server.services.common import Clock, aware, utcnow
from registry.server.services.journal import append, record


class AuditService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        signer: KeySigner | UriSigner,
        *,
        clock: Clock = utcnow,
    ) -> None:
        self._sessions = sessions
        self._signer = signer
        self._clock = clock

    def append(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        outcome: str,
        request_id: str,
        details: dict[str, Any] | None = None,
    ) -> int:
        """Append one entry in a transaction of its own (denied and failed requests, events
        that change nothing else); concurrent writers are serialized so the chain never forks."""
        with transaction(self._sessions) as session:
            return append(session, actor=actor, action=action, target=target, outcome=outcome,
                           request_id=request_id, details=details or {},
                           at=self._clock())  # fmt: skip

    def entries(
        self, principal: Principal, *, after: int = 0, limit: int = 1000
    ) -> list[dict[str, Any]]:
        principal.require(Action.AUDIT, None)
        with self._sessions() as session:
            rows = session.execute(
                select(AuditEntry)
                .where(AuditEntry.seq > after)
                .order_by(AuditEntry.seq)
                .limit(min(limit, 10_000))
            ).scalars()
            return [as_dict(r) for r in rows]

    def checkpoint(self, principal: Principal | None = None) -> dict[str, Any]:
        """Sign the current head (periodically, and on demand by ``principal``: then the
        request is an entry after the signed head, in the checkpoint's transaction)."""
        with self._sessions() as session:
            last = session.execute(
                select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
            ).one_or_none()
        count, head = (int(last[0]), str(last[1])) if last else (0, GENESIS)
        now = self._clock()
        statement = make_statement(
            name="modelseal/audit-log",
            root_digest=head,
            predicate_type=AUDIT_CHECKPOINT,
            predicate={"count": count, "at": now.isoformat()},
        )
        bundle = self._signer.sign(statement)
        with transaction(self._sessions) as session:
            session.add(AuditCheckpoint(seq=count, head_hash=head, at=now, bundle=bundle.raw))
            if principal is not None:
                record(session, principal, "sign_audit_checkpoint", "/v1/audit/checkpoints",
                       at=now, details={"count": count})  # fmt: skip
        return {"count": count, "head": head, "bundle": bundle.raw.decode()}

    def head(self, since: int | None = None) -> tuple[int, str, str | None]:
        """``(count, head hash, hash of entry since)``; the last is None when the log has no
        entry ``since`` (or ``since`` is None or 0: nothing to compare).

        Nothing is taken from the hash columns: the chain is recomputed from the newest
        checkpoint at or before ``since`` whose signature verifies with the registry's key
        (the genesis when there is none) through the newest entry, so rows deleted, edited or
        reordered by someone with database access make this fail instead of reporting a head
        a client would accept.

        Raises:
            ConflictError: the stored log does not hash from its signed checkpoint.
        """
        anchor_seq, anchor_head = self._anchor(since)
        with self._sessions() as session:
            rows = session.execute(
                select(AuditEntry).where(AuditEntry.seq > anchor_seq).order_by(AuditEntry.seq)
            ).scalars()
            running, count, at = anchor_head, anchor_seq, None
            if since is not None and since == anchor_seq and since > 0:
                at = anchor_head
            for row in rows:
                fields = as_dict(row)
                if row.seq != count + 1 or row.prev_hash != running:
                    raise ConflictError(
                        f"the audit log is broken after entry {count}: entry {row.seq} does not "
                        "follow it (rows removed or reordered)",
                        seq=count + 1,
                    )
                running = entry_hash(running, fields)
                if running != row.hash:
                    raise ConflictError(
                        f"the audit log's entry {row.seq} was modified (it no longer hashes)",
                        seq=row.seq,
                    )
                count = row.seq
                if since is not None and row.seq == since:
                    at = running
        return count, running, at

    def _anchor(self, since: int | None) -> tuple[int, str]:
        """The newest checkpoint at or before ``since`` (any, without it) whose registry
        signature and statement verify: ``(count, head)``; ``(0, GENESIS)`` without one."""
        verifier = Verifier(keys=[TrustedKey("registry", self._signer.public_key)])
        with self._sessions() as session:
            query = select(AuditCheckpoint).order_by(AuditCheckpoint.seq.desc())
            if since is not None:
                query = query.where(AuditCheckpoint.seq <= since)
            for row in session.execute(query.limit(50)).scalars():
                try:
                    statement = verifier.verify(Bundle.parse(row.bundle)).statement
                except AttestError:
                    continue  # not the registry's: a forged row anchors nothing
                count = statement.predicate.get("count")
                if statement.predicate_type == AUDIT_CHECKPOINT and isinstance(count, int):
                    return count, statement.subject.sha256
        return 0, GENESIS

    def latest_checkpoint(self, principal: Principal) -> bytes | None:
        principal.require(Action.AUDIT, None)
        with self._sessions() as session:
            row = session.execute(
                select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(1)
            ).scalar_one_or_none()
            return None if row is None else row.bundle


def as_dict(row: AuditEntry) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "at": aware(row.at).astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": row.actor,
        "action": row.action,
        "target": row.target,
        "outcome": row.outcome,
        "request_id": row.request_id,
        "details": row.details,
        "prev_hash": row.prev_hash,
        "hash": row.hash,
    }
