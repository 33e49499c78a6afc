"""Audit entries written in the transaction of the change they record.

A state change and its audit entry are one unit of work: every service that changes state calls
:func:`record` with its own session as the last step of the transaction, so a crash between the
two leaves neither. The request (its id and client address) is bound by the ASGI middleware
(:func:`bind_request`); outside a request (operator commands) a fresh id is used.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from attest.auditlog import GENESIS, entry_hash
from registry.server.models import AuditEntry
from registry.server.services import tlog

_APPEND_LOCK = 0x617564697421  # pg_advisory_xact_lock key: one appender at a time


class Actor(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def role(self) -> Any: ...


@dataclass(slots=True)
class RequestContext:
    """The request a service call runs for (bound by the audit middleware)."""

    request_id: str
    client: str | None = None
    #: Entries the services wrote for this request (the middleware then writes none for it).
    written: int = 0


_REQUEST: ContextVar[RequestContext | None] = ContextVar("modelseal_audit_request", default=None)


def bind_request(context: RequestContext) -> Token[RequestContext | None]:
    return _REQUEST.set(context)


def unbind_request(token: Token[RequestContext | None]) -> None:
    _REQUEST.reset(token)


def current_request() -> RequestContext | None:
    return _REQUEST.get()


#: Test hook: called with the action name after the change is staged in the transaction and
#: before its audit entry is written (raising there must leave neither).
crash_hook: Callable[[str], None] | None = None


def record(
    session: Session,
    actor: Actor | str,
    action: str,
    target: str,
    *,
    at: datetime,
    outcome: str = "ok",
    details: dict[str, Any] | None = None,
    request_id: str | None = None,
    log: dict[str, Any] | None = None,
) -> int:
    """Append an entry inside ``session``'s transaction (the one holding the change it records).

    Call it last in the unit of work: on PostgreSQL it takes the append lock, held to commit,
    so the chain is computed by one writer at a time and never forks.

    An action of :data:`registry.server.services.tlog.LOGGED_ACTIONS` also appends its
    transparency-log entry here, in the same transaction (after the audit lock, then the log's
    head lock), built from ``log`` (the entry's facts, ``subject`` among them); such an action
    without its facts is refused, so nothing trust-relevant commits unlogged."""
    if crash_hook is not None:
        crash_hook(action)
    context = current_request()
    if request_id is None:
        request_id = context.request_id if context is not None else uuid.uuid4().hex
    facts: dict[str, Any] = {"client": context.client if context is not None else None}
    role: str | None = None
    if not isinstance(actor, str):
        role = facts["role"] = str(actor.role)
        actor = actor.name
    facts.update(details or {})
    seq = append(session, actor=actor, action=action, target=target, outcome=outcome,
                  request_id=request_id, details=facts, at=at)  # fmt: skip
    if outcome == "ok" and (log is not None or action in tlog.LOGGED_ACTIONS):
        if log is None:
            log = tlog.facts_from_audit(session, action, target, details or {})
        tlog.append(session, tlog.build_entry(action, actor=actor, role=role, at=at, facts=log))
    if context is not None:
        context.written += 1
    return seq


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    target: str,
    outcome: str,
    request_id: str,
    details: dict[str, Any],
    at: datetime,
) -> int:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(_advisory_lock()))
    session.flush()
    last = session.execute(
        select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
    ).one_or_none()
    seq, previous = (last[0] + 1, last[1]) if last else (1, GENESIS)
    stamp = at.astimezone(UTC).isoformat(timespec="microseconds")
    fields = {
        "seq": seq,
        "at": stamp,
        "actor": actor[:128],
        "action": action[:64],
        "target": target[:1024],
        "outcome": outcome[:32],
        "request_id": request_id[:64],
        "details": _details_text(details),
    }
    session.add(
        AuditEntry(
            at=datetime.fromisoformat(stamp),
            prev_hash=previous,
            hash=entry_hash(previous, fields),
            **{k: v for k, v in fields.items() if k != "at"},
        )
    )
    session.flush()
    return seq


def _advisory_lock() -> Any:
    return func.pg_advisory_xact_lock(_APPEND_LOCK)


def version_target(namespace: str, name: str, version: str, action: str | None = None) -> str:
    """The API path of a version (what entries about it are matched by), and of an action on
    it: ``/v1/namespaces/ns/artifacts/m/versions/1/release``."""
    path = f"/v1/namespaces/{namespace}/artifacts/{name}/versions/{version}"
    return f"{path}/{action}" if action else path


#: The longest ``details`` text an entry keeps; longer ones are replaced by a summary.
DETAILS_MAX_CHARS = 8192


def _details_text(details: dict[str, Any] | None) -> str:
    """``details`` as the entry stores them: canonical JSON, or, past
    :data:`DETAILS_MAX_CHARS`, a JSON summary of that text (its length and SHA-256), never a
    cut that would not parse."""
    text = json.dumps(details, sort_keys=True)
    if len(text) <= DETAILS_MAX_CHARS:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()
    return json.dumps({"truncated": True, "chars": len(text), "sha256": digest}, sort_keys=True)
