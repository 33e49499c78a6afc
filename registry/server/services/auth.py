"""API tokens and who may do what.

Tokens look like ``ms_<id>_<secret>``. Only SHA-256 of the secret is stored (the secret is 256
random bits, so a fast hash is enough); comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from registry.errors import (
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)
from registry.server.db import transaction
from registry.server.models import ApiToken
from registry.server.services import tlog
from registry.server.services.common import Clock, Page, PageRequest, aware, paged, utcnow
from registry.server.services.journal import Actor
from registry.server.services.journal import record as audit_record

_TOKEN_ID_CHARS = frozenset("0123456789abcdef")  # secrets.token_hex
TOKEN_PREFIX = "ms_"  # noqa: S105 - a public prefix, not a secret


class Role(StrEnum):
    ADMIN = "admin"
    PUBLISHER = "publisher"
    RELEASER = "releaser"
    DEPLOYER = "deployer"
    AUDITOR = "auditor"


class Action(StrEnum):
    READ = "read"
    PUSH = "push"
    ATTEST = "attest"
    RELEASE = "release"
    AUDIT = "audit"
    ADMINISTER = "administer"


_ALLOWED: dict[Role, frozenset[Action]] = {
    Role.ADMIN: frozenset(Action),
    Role.PUBLISHER: frozenset({Action.READ, Action.PUSH, Action.ATTEST}),
    Role.RELEASER: frozenset({Action.READ, Action.RELEASE}),
    Role.DEPLOYER: frozenset({Action.READ}),
    Role.AUDITOR: frozenset({Action.READ, Action.AUDIT}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller."""

    token_id: str
    name: str
    role: Role
    namespace: str | None  # None: every namespace

    def require(self, action: Action, namespace: str | None) -> None:
        """Raise :class:`PermissionDeniedError` unless this caller may act on ``namespace``."""
        in_scope = self.namespace is None or self.namespace == namespace
        if not in_scope or action not in _ALLOWED[self.role]:
            where = f"namespace {namespace!r}" if namespace else "this registry"
            raise PermissionDeniedError(
                f"token {self.name!r} ({self.role}) may not {action} in {where}",
                action=str(action),
                namespace=namespace,
            )

    def allowed(self, action: Action, namespace: str | None) -> bool:
        in_scope = self.namespace is None or self.namespace == namespace
        return in_scope and action in _ALLOWED[self.role]

    def can_see(self, namespace: str) -> bool:
        return self.namespace is None or self.namespace == namespace


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: str
    name: str
    role: Role
    namespace: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked: bool


@dataclass(frozen=True, slots=True)
class IssuedToken:
    id: str
    secret: str  # shown once


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


class TokenService:
    def __init__(self, sessions: sessionmaker[Session], *, clock: Clock = utcnow) -> None:
        self._sessions = sessions
        self._clock = clock

    def count(self) -> int:
        with self._sessions() as session:
            return int(session.execute(select(func.count()).select_from(ApiToken)).scalar_one())

    def create(
        self,
        *,
        name: str,
        role: Role,
        namespace: str | None = None,
        expires_in: timedelta | None = None,
        by: Actor | str | None = None,
    ) -> IssuedToken:
        """Store a new token; with ``by`` (who asked) the creation is audited in the same
        transaction."""
        if role not in (Role.ADMIN, Role.AUDITOR) and namespace is None:
            raise InvalidRequestError(
                "only admin and auditor tokens may span every namespace; give --namespace"
            )
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        now = self._clock()
        with transaction(self._sessions) as session:
            session.add(
                ApiToken(
                    id=token_id,
                    name=name,
                    secret_hash=_hash(secret),
                    role=str(role),
                    namespace=namespace,
                    created_at=now,
                    expires_at=now + expires_in if expires_in else None,
                )
            )
            facts = _token_facts(token_id, name, str(role), namespace, "issued")
            facts["expires_at"] = (now + expires_in).isoformat() if expires_in else None
            if by is not None:
                audit_record(session, by, "create_token", "/v1/tokens", at=now,
                             details={"token_id": token_id, "name": name, "role": str(role),
                                      "namespace": namespace}, log=facts)  # fmt: skip
            else:  # the first admin token (bootstrap): logged, not audited
                tlog.append(session, tlog.build_entry("create_token", actor="registry",
                                                      role=None, at=now, facts=facts))  # fmt: skip
        return IssuedToken(id=token_id, secret=f"{TOKEN_PREFIX}{token_id}_{secret}")

    def authenticate(self, token: str | None) -> Principal:
        """The principal a bearer token stands for.

        Raises:
            AuthenticationError: missing, malformed, unknown, expired or revoked token (one
                message for all, so the answer does not tell an attacker which).
        """
        denied = AuthenticationError("a valid API token is required (Authorization: Bearer …)")
        if not token or not token.startswith(TOKEN_PREFIX):
            raise denied
        token_id, sep, secret = token.removeprefix(TOKEN_PREFIX).partition("_")
        if not sep or len(token_id) != 16 or not secret or len(secret) > 128:
            raise denied
        if not set(token_id) <= _TOKEN_ID_CHARS:  # e.g. a NUL smuggled in by basic auth
            raise denied
        with self._sessions() as session:
            row = session.get(ApiToken, token_id)
        expected = row.secret_hash if row is not None else _hash("x" * 43)
        matches = hmac.compare_digest(expected, _hash(secret) if secret.isascii() else "")
        if row is None or not matches or row.revoked_at is not None:
            raise denied
        if row.expires_at is not None and aware(row.expires_at) <= self._clock():
            raise denied
        return Principal(
            token_id=row.id, name=row.name, role=Role(row.role), namespace=row.namespace
        )

    def revoke(self, token_id: str, *, by: Actor | str | None = None) -> None:
        """Revoke a token; with ``by`` (who asked) the revocation is audited in the same
        transaction."""
        with transaction(self._sessions) as session:
            row = session.get(ApiToken, token_id)
            if row is not None and row.revoked_at is None:
                now = self._clock()
                if row.role == str(Role.ADMIN) and row.namespace is None:
                    self._keep_one_admin(session, row)
                else:  # locked and read again: two revocations at once log it once
                    session.refresh(row, with_for_update=True)
                if row.revoked_at is not None:  # revoked meanwhile by someone else
                    return
                row.revoked_at = now
                facts = _token_facts(row.id, row.name, row.role, row.namespace, "revoked")
                if by is not None:
                    audit_record(session, by, "revoke_token", f"/v1/tokens/{token_id}",
                                 at=now, details={"token_id": token_id}, log=facts)  # fmt: skip
                else:
                    tlog.append(session, tlog.build_entry("revoke_token", actor="registry",
                                                          role=None, at=now,
                                                          facts=facts))  # fmt: skip

    def _keep_one_admin(self, session: Session, row: ApiToken) -> None:
        """Refuse to revoke a registry-wide admin token unless another one remains that does
        not expire: otherwise every administrator is locked out, now or when the others expire,
        and nothing over the API could issue one again (bootstrap only does on an empty table).

        Every active registry-wide admin row, this one included, is locked in id order
        (PostgreSQL; SQLite's write lock already serializes) and read again: two admins revoking
        each other at once queue on the same first row instead of deadlocking, and the second
        sees the first's revocation."""
        admins = (
            session.execute(
                select(ApiToken)
                .where(
                    ApiToken.role == str(Role.ADMIN),
                    ApiToken.namespace.is_(None),
                    ApiToken.revoked_at.is_(None),
                )
                .order_by(ApiToken.id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
            .scalars()
            .all()
        )
        session.refresh(row)
        if row.revoked_at is not None:
            return
        others = [admin for admin in admins if admin.id != row.id]
        if not any(other.expires_at is None for other in others):
            raise ConflictError(
                f"refusing to revoke token {row.id}: no other registry-wide admin token that "
                "does not expire would remain, and every administrator would be locked out for "
                "good. Create one first (`modelseal token create --role admin`), or, with "
                "access to the server, `modelseal admin token create --data-dir DIR`",
                token_id=row.id,
            )

    # -- administration over the API (admins only) ---------------------------------------------

    def issue(
        self,
        principal: Principal,
        *,
        name: str,
        role: Role,
        namespace: str | None,
        expires_in: timedelta | None,
    ) -> IssuedToken:
        """Create a token (admins; a namespace admin only inside its namespace)."""
        principal.require(Action.ADMINISTER, namespace)
        return self.create(
            name=name, role=role, namespace=namespace, expires_in=expires_in, by=principal
        )

    def list_tokens(self, principal: Principal, page: PageRequest) -> Page[TokenRecord]:
        """Every token, without secrets (admins see their scope), oldest first; a page's cursor
        is the id of its last item."""
        principal.require(Action.ADMINISTER, principal.namespace)
        with self._sessions() as session:
            scoped = principal.namespace is not None
            scope = [ApiToken.namespace == principal.namespace] if scoped else []
            query = select(ApiToken).where(*scope).order_by(ApiToken.created_at, ApiToken.id)
            if page.after is not None:
                last = session.execute(
                    select(ApiToken.created_at, ApiToken.id).where(
                        ApiToken.id == page.after, *scope
                    )
                ).one_or_none()
                if last is None:
                    raise InvalidRequestError("the cursor names no token", cursor=page.after)
                query = query.where(tuple_(ApiToken.created_at, ApiToken.id) > tuple_(*last))
            rows = session.execute(query.limit(page.limit + 1)).scalars()
            records = [
                TokenRecord(
                    id=r.id,
                    name=r.name,
                    role=Role(r.role),
                    namespace=r.namespace,
                    created_at=aware(r.created_at),
                    expires_at=aware(r.expires_at) if r.expires_at else None,
                    revoked=r.revoked_at is not None,
                )
                for r in rows
            ]
            return paged(records, page, lambda r: r.id)

    def revoke_as(self, principal: Principal, token_id: str) -> None:
        with self._sessions() as session:
            row = session.get(ApiToken, token_id)
        if row is None:
            raise NotFoundError(f"token {token_id} does not exist")
        principal.require(Action.ADMINISTER, row.namespace)
        self.revoke(token_id, by=principal)


def _token_facts(
    token_id: str, name: str, role: str, namespace: str | None, change: str
) -> dict[str, object]:
    """A token's transparency-log facts: who it is and what it may do, never its secret."""
    return {"subject": f"token/{token_id}", "token_id": token_id, "name": name, "role": role,
            "namespace": namespace, "change": change}  # fmt: skip
