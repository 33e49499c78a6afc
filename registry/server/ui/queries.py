"""Read-only queries the console needs that no service offers as one call.

Each runs after the caller's access was checked through a service (``VersionService.resolve``,
``ReleaseService.get_policy``): these only fetch rows the caller was already allowed to read,
in one query where the services would take one per item. Nothing here writes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from attest.predicates import SLSA_PROVENANCE
from registry.server.models import (
    Artifact,
    Attestation,
    Identity,
    Namespace,
    NamespacePolicy,
    Version,
)
from registry.server.services.common import aware
from registry.server.services.versions import VersionRecord


@dataclass(frozen=True, slots=True)
class StoredBundle:
    id: int
    predicate_type: str
    raw: bytes
    signer: str  # the name column (verification decides what counts)
    created_at: datetime
    created_by: str


@dataclass(frozen=True, slots=True)
class PolicyRevision:
    revision: int
    created_at: datetime
    created_by: str


class Reads:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def bundles(
        self, record: VersionRecord, predicate_type: str | None = None
    ) -> list[StoredBundle]:
        """The stored bundles of a version, in the order attached (one query)."""
        query = (
            select(
                Attestation.id,
                Attestation.predicate_type,
                Attestation.bundle,
                Attestation.signer,
                Attestation.created_at,
                Attestation.created_by,
            )
            .join(Version, Attestation.version_id == Version.id)
            .join(Artifact, Version.artifact_id == Artifact.id)
            .join(Namespace, Artifact.namespace_id == Namespace.id)
            .where(
                Namespace.name == record.namespace,
                Artifact.name == record.name,
                Version.version == record.version,
            )
            .order_by(Attestation.id)
        )
        if predicate_type is not None:
            query = query.where(Attestation.predicate_type == predicate_type)
        with self._sessions() as session:
            rows = session.execute(query).all()
        return [StoredBundle(r[0], r[1], bytes(r[2]), r[3], aware(r[4]), r[5]) for r in rows]

    def settled_counts(self, namespace: str) -> dict[str, int]:
        """Per artifact of ``namespace``, how many of its versions are settled (neither
        scanning nor pending: what a token that does not see pending versions is shown)."""
        with self._sessions() as session:
            rows = session.execute(
                select(Artifact.name, func.count(Version.id))
                .join(Version, Version.artifact_id == Artifact.id)
                .join(Namespace, Artifact.namespace_id == Namespace.id)
                .where(Namespace.name == namespace, Version.state.not_in(("scanning", "pending")))
                .group_by(Artifact.name)
            ).all()
        return {name: int(count) for name, count in rows}

    def trust_fingerprint(self) -> str:
        """A digest of every registered identity: verification results are only reused while
        it is unchanged."""
        with self._sessions() as session:
            rows = session.execute(
                select(
                    Identity.name,
                    Identity.kind,
                    Identity.public_key_pem,
                    Identity.sigstore_issuer,
                    Identity.sigstore_identity,
                    Identity.identity_regex,
                ).order_by(Identity.name)
            ).all()
        digest = hashlib.sha256()
        for row in rows:
            digest.update(repr(tuple(row)).encode())
            digest.update(b"\x00")
        return digest.hexdigest()

    def policy_revisions(self, namespace: str) -> list[PolicyRevision]:
        """Every stored policy revision of a namespace, newest first."""
        with self._sessions() as session:
            rows = session.execute(
                select(
                    NamespacePolicy.revision, NamespacePolicy.created_at, NamespacePolicy.created_by
                )
                .join(Namespace, NamespacePolicy.namespace_id == Namespace.id)
                .where(Namespace.name == namespace)
                .order_by(NamespacePolicy.revision.desc())
            ).all()
        return [PolicyRevision(r[0], aware(r[1]), r[2]) for r in rows]


@dataclass(frozen=True, slots=True)
class VersionFacts:
    ref: str
    kind: str
    state: str
    root_digest: str


def _split(ref: str) -> tuple[str, str, str] | None:
    namespace, slash, rest = ref.partition("/")
    name, at, version = rest.partition("@")
    return (namespace, name, version) if slash and at else None


class LineageReads:
    """Batched reads for the lineage walk: one query per level for the versions it names and
    one for their provenance bundles (the caller checks ``read`` on each namespace first, as
    ``VersionService.resolve`` does)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def versions(self, refs: list[str]) -> dict[str, VersionFacts]:
        wanted = [t for t in (_split(r) for r in refs) if t is not None]
        if not wanted:
            return {}
        query = (
            select(Namespace.name, Artifact.name, Version.version, Artifact.kind, Version.state,
                   Version.root_digest)
            .join(Artifact, Version.artifact_id == Artifact.id)
            .join(Namespace, Artifact.namespace_id == Namespace.id)
            .where(tuple_(Namespace.name, Artifact.name, Version.version).in_(wanted))
        )  # fmt: skip
        with self._sessions() as session:
            rows = session.execute(query).all()
        return {
            f"{ns}/{name}@{version}": VersionFacts(f"{ns}/{name}@{version}", kind, state, digest)
            for ns, name, version, kind, state, digest in rows
        }

    def provenance(self, refs: list[str]) -> dict[str, list[bytes]]:
        wanted = [t for t in (_split(r) for r in refs) if t is not None]
        if not wanted:
            return {}
        query = (
            select(Namespace.name, Artifact.name, Version.version, Attestation.bundle)
            .join(Version, Attestation.version_id == Version.id)
            .join(Artifact, Version.artifact_id == Artifact.id)
            .join(Namespace, Artifact.namespace_id == Namespace.id)
            .where(tuple_(Namespace.name, Artifact.name, Version.version).in_(wanted))
            .where(Attestation.predicate_type == SLSA_PROVENANCE)
            .order_by(Attestation.id)
        )
        found: dict[str, list[bytes]] = {}
        with self._sessions() as session:
            for ns, name, version, raw in session.execute(query).all():
                found.setdefault(f"{ns}/{name}@{version}", []).append(bytes(raw))
        return found
