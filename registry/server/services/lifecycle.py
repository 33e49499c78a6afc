"""After release: aliases and their history (revocation is ReleaseService's, with its cascade)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from registry.errors import ConflictError, InvalidRequestError, NotFoundError
from registry.names import Ref, RefKind, validate_alias
from registry.server.db import transaction
from registry.server.models import Alias, AliasEvent, Artifact, Namespace, Version
from registry.server.services import journal
from registry.server.services.auth import Action, Principal
from registry.server.services.common import Clock, Page, PageRequest, aware, paged, utcnow
from registry.server.services.versions import State, VersionService, version_id


@dataclass(frozen=True, slots=True)
class AliasMove:
    alias: str
    from_version: str | None
    to_version: str
    actor: str
    at: datetime


@dataclass(frozen=True, slots=True)
class AliasRecord:
    alias: str
    version: str
    state: str
    updated_at: datetime
    updated_by: str


class LifecycleService:
    def __init__(
        self, sessions: sessionmaker[Session], versions: VersionService, *, clock: Clock = utcnow
    ) -> None:
        self._sessions = sessions
        self._versions = versions
        self._clock = clock

    def set_alias(
        self, principal: Principal, namespace: str, name: str, alias: str, version: str
    ) -> AliasMove:
        """Point ``alias`` at a released version; every move is recorded.

        Raises:
            ConflictError: the version is not released (pending, rejected, revoked).
        """
        principal.require(Action.RELEASE, namespace)
        validate_alias(alias)
        record = self._versions.resolve(principal, Ref(namespace, name, version, RefKind.VERSION))
        if record.state != State.RELEASED:
            raise ConflictError(
                f"{record.ref} is {record.state}; aliases point only at released versions",
                state=record.state,
            )
        now = self._clock()
        with transaction(self._sessions) as session:
            vid = version_id(session, record)
            artifact_id = session.get(Version, vid).artifact_id  # type: ignore[union-attr]
            # Moves of one artifact's aliases queue on its row (PostgreSQL; SQLite's write lock
            # serializes already), so each reads the alias as the previous move left it: no
            # duplicate first insert, no stale "from" in the log. The target is then read again
            # under its own lock: a revocation committed meanwhile is seen, one in progress
            # waits for this move and then finds the alias to flag.
            session.execute(
                select(Artifact.id).where(Artifact.id == artifact_id).with_for_update()
            ).one()
            state = session.execute(
                select(Version.state).where(Version.id == vid).with_for_update()
            ).scalar_one()
            if state != State.RELEASED:
                raise ConflictError(
                    f"{record.ref} is {state}; aliases point only at released versions",
                    state=state,
                )
            current = session.execute(
                select(Alias)
                .where(Alias.artifact_id == artifact_id, Alias.name == alias)
                .execution_options(populate_existing=True)
            ).scalar_one_or_none()
            if current is not None and current.version_id == vid:  # already there: no move
                return AliasMove(alias, version, version, current.updated_by,
                                 aware(current.updated_at))  # fmt: skip
            previous, older = None, False
            if current is None:
                session.add(Alias(artifact_id=artifact_id, name=alias, version_id=vid,
                                  updated_at=now, updated_by=principal.name))  # fmt: skip
            else:
                before = session.get(Version, current.version_id)
                previous = before.version  # type: ignore[union-attr]
                older = _pushed_before(session.get(Version, vid), before)
                current.version_id, current.updated_at = vid, now
                current.updated_by = principal.name
            move = AliasEvent(artifact_id=artifact_id, alias=alias, from_version=previous,
                              to_version=version, actor=principal.name, at=now)  # fmt: skip
            session.add(move)
            journal.record(session, principal, "set_alias",
                           f"/v1/namespaces/{namespace}/artifacts/{name}/aliases/{alias}",
                           at=now, details={"from": previous, "to": version},
                           log={"subject": f"{namespace}/{name}@{alias}", "alias": alias,
                                "from": previous, "to": version,
                                "to_root_digest": record.root_digest.prefixed,
                                "older": older})  # fmt: skip
        return AliasMove(alias, previous, version, principal.name, now)

    def history(
        self, principal: Principal, namespace: str, name: str, alias: str, page: PageRequest
    ) -> Page[AliasMove]:
        """The moves of an alias, oldest first; a page's cursor is its last move's number."""
        principal.require(Action.READ, namespace)
        after = None
        if page.after is not None:
            if not page.after.isascii() or not page.after.isdigit() or len(page.after) > 18:
                raise InvalidRequestError("the cursor names no alias move", cursor=page.after)
            after = int(page.after)
        with self._sessions() as session:
            query = (
                select(AliasEvent)
                .join(Artifact, AliasEvent.artifact_id == Artifact.id)
                .join(Namespace, Artifact.namespace_id == Namespace.id)
                .where(
                    Namespace.name == namespace, Artifact.name == name, AliasEvent.alias == alias
                )
                .order_by(AliasEvent.id)
                .limit(page.limit + 1)
            )
            if after is not None:
                query = query.where(AliasEvent.id > after)
            rows = [(r.id, AliasMove(r.alias, r.from_version, r.to_version, r.actor, aware(r.at)))
                    for r in session.execute(query).scalars()]  # fmt: skip
        if not rows and after is None:
            raise NotFoundError(f"{namespace}/{name} has no alias {alias!r}")
        numbered = paged(rows, page, lambda r: str(r[0]))
        return Page([move for _, move in numbered.items], numbered.next_after)

    def list_aliases(
        self, principal: Principal, namespace: str, name: str, page: PageRequest
    ) -> Page[AliasRecord]:
        """The aliases of an artifact, by name; a page's cursor is its last alias."""
        principal.require(Action.READ, namespace)
        with self._sessions() as session:
            query = (
                select(Alias, Version)
                .join(Version, Alias.version_id == Version.id)
                .join(Artifact, Alias.artifact_id == Artifact.id)
                .join(Namespace, Artifact.namespace_id == Namespace.id)
                .where(Namespace.name == namespace, Artifact.name == name)
                .order_by(Alias.name)
                .limit(page.limit + 1)
            )
            if page.after is not None:
                query = query.where(Alias.name > page.after)
            records = [AliasRecord(a.name, v.version, v.state, aware(a.updated_at), a.updated_by)
                       for a, v in session.execute(query).all()]  # fmt: skip
            return paged(records, page, lambda r: r.alias)


def _pushed_before(new: Version | None, old: Version | None) -> bool:
    """Whether an alias move points back: to a version pushed before the one it left (the
    order of the registry's records, not of version numbers)."""
    if new is None or old is None:
        return False
    return (aware(new.created_at), new.id) < (aware(old.created_at), old.id)
