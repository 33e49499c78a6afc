"""Evidence about versions: trusted identities and verified, byte-exact bundles."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from attest.bundle import Bundle
from attest.digests import Digest
from attest.errors import AttestError
from attest.evaluation import check_evaluation_predicate
from attest.keys import TrustedKey, fingerprint, load_public, public_pem
from attest.oms import check_oms
from attest.predicates import (
    AUDIT_CHECKPOINT,
    CYCLONEDX_BOM,
    LOG_KEY,
    OCI_RELEASE,
    OMS_SIGNATURE,
    RELEASE,
    REVOCATION,
    SCAN,
    SLSA_PROVENANCE,
    STATUS,
    TEST_RESULT,
)
from attest.provenance import ROLE_KINDS, Provenance, model_card, read_predicate
from attest.verifying import SigstoreIdentity, Verified, Verifier
from registry.errors import (
    ConflictError,
    EvidenceRejectedError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)
from registry.names import Ref, RefKind, parse_ref
from registry.server.config import Settings
from registry.server.db import transaction
from registry.server.models import Attestation, Identity, Version
from registry.server.services.auth import Action, Principal, Role
from registry.server.services.common import Clock, Page, PageRequest, aware, paged, utcnow
from registry.server.services.journal import record as audit_record
from registry.server.services.journal import version_target
from registry.server.services.versions import VersionRecord, VersionService, version_id
from sbom import parse_environment

#: Evidence after which a pending model's ML-BOM is rebuilt.
REBUILDS = frozenset({SLSA_PROVENANCE, TEST_RESULT})
#: What only the registry signs: a bundle of these types from anyone else is refused (even one
#: signed by a key someone registered as an identity: the gate reads the newest scan).
REGISTRY_ONLY = frozenset({SCAN, RELEASE, OCI_RELEASE, REVOCATION, STATUS, CYCLONEDX_BOM,
                           AUDIT_CHECKPOINT, LOG_KEY})  # fmt: skip

#: The registry's own read-only view, for checks across namespaces (never a caller's).
READER = Principal(token_id="-", name="registry", role=Role.AUDITOR, namespace=None)  # noqa: S106


@dataclass(frozen=True, slots=True)
class IdentityRecord:
    name: str
    kind: str
    fingerprint: Digest | None
    sigstore_issuer: str | None
    sigstore_identity: str | None
    regex: bool
    created_at: datetime
    created_by: str
    public_key_pem: str | None = None


@dataclass(frozen=True, slots=True)
class AttestationRecord:
    id: int
    ref: str
    predicate_type: str
    subject_digest: Digest
    bundle_digest: Digest
    signer: str
    signer_id: str
    created_at: datetime
    created_by: str


def _identity(row: Identity) -> IdentityRecord:
    return IdentityRecord(
        row.name,
        row.kind,
        None if row.fingerprint is None else Digest(row.fingerprint),
        row.sigstore_issuer,
        row.sigstore_identity,
        row.identity_regex,
        aware(row.created_at),
        row.created_by,
        row.public_key_pem,
    )


def _attestation(row: Attestation, ref: str) -> AttestationRecord:
    return AttestationRecord(
        row.id,
        ref,
        row.predicate_type,
        Digest(row.subject_digest),
        Digest(row.bundle_digest),
        row.signer,
        row.signer_id,
        aware(row.created_at),
        row.created_by,
    )


class AttestationService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        versions: VersionService,
        settings: Settings,
        *,
        clock: Clock = utcnow,
    ) -> None:
        self._sessions = sessions
        self._versions = versions
        self._settings = settings
        self._clock = clock
        #: Called with the version after new provenance or evaluation is stored (the ML-BOM).
        self.on_evidence: Callable[[VersionRecord], None] | None = None

    # -- identities -------------------------------------------------------------------------

    def add_key_identity(self, principal: Principal, name: str, pem: str) -> IdentityRecord:
        """Trust a public key under ``name``.

        Raises:
            InvalidRequestError: not a PEM public key of a supported type.
            ConflictError: the name or the key is already registered.
        """
        principal.require(Action.ADMINISTER, None)
        try:
            key = load_public(pem.encode())
        except ValueError as exc:
            raise InvalidRequestError(f"not a supported PEM public key: {exc}") from None
        row = Identity(
            name=name,
            kind="key",
            public_key_pem=public_pem(key).decode(),
            fingerprint=fingerprint(key),
            identity_regex=False,
            created_at=self._clock(),
            created_by=principal.name,
        )
        return self._add(row, principal)

    def add_sigstore_identity(
        self, principal: Principal, name: str, *, issuer: str, identity: str, regex: bool
    ) -> IdentityRecord:
        """Trust a Sigstore (keyless) identity under ``name``."""
        principal.require(Action.ADMINISTER, None)
        if not issuer.startswith("https://"):
            raise InvalidRequestError("a Sigstore issuer is an https:// URL")
        if regex:
            import re

            try:
                re.compile(identity)
            except re.error as exc:
                raise InvalidRequestError(f"invalid identity regex: {exc}") from None
        row = Identity(
            name=name,
            kind="sigstore",
            sigstore_issuer=issuer,
            sigstore_identity=identity,
            identity_regex=regex,
            created_at=self._clock(),
            created_by=principal.name,
        )
        return self._add(row, principal)

    def _add(self, row: Identity, principal: Principal) -> IdentityRecord:
        try:
            with transaction(self._sessions) as session:
                session.add(row)
                session.flush()
                details = {"name": row.name, "kind": row.kind, "fingerprint": row.fingerprint}
                facts = {
                    "subject": f"identity/{row.name}",
                    "name": row.name,
                    "kind": row.kind,
                    "change": "added",
                    "fingerprint": row.fingerprint,
                    "issuer": row.sigstore_issuer,
                    "identity": row.sigstore_identity,
                    "identity_regex": row.identity_regex,
                }
                audit_record(session, principal, "add_identity", "/v1/identities",
                             at=row.created_at, details=details, log=facts)  # fmt: skip
                return _identity(row)
        except IntegrityError:
            raise ConflictError(
                f"identity {row.name!r} (or its key) is already registered", name=row.name
            ) from None

    def list_identities(self, principal: Principal, page: PageRequest) -> Page[IdentityRecord]:
        principal.require(Action.READ, principal.namespace)
        with self._sessions() as session:
            query = select(Identity).order_by(Identity.name).limit(page.limit + 1)
            if page.after is not None:
                query = query.where(Identity.name > page.after)
            records = [_identity(r) for r in session.execute(query).scalars()]
            return paged(records, page, lambda r: r.name)

    def verifier(self, *, extra_keys: Sequence[TrustedKey] = ()) -> Verifier:
        """A verifier trusting exactly the registered identities (and ``extra_keys``).

        Raises:
            EvidenceRejectedError: nothing at all is trusted.
        """
        with self._sessions() as session:
            rows = list(session.execute(select(Identity)).scalars())
        trusted_keys = [
            TrustedKey.from_pem(r.name, r.public_key_pem.encode())
            for r in rows
            if r.kind == "key" and r.public_key_pem
        ] + list(extra_keys)
        identities = [
            SigstoreIdentity(r.name, r.sigstore_issuer, r.sigstore_identity, r.identity_regex)
            for r in rows
            if r.kind == "sigstore" and r.sigstore_issuer and r.sigstore_identity
        ]
        if not trusted_keys and not identities:
            raise EvidenceRejectedError(
                "no signer identity is registered: an admin must run "
                "`modelseal identity add` before evidence can be verified",
                reason="UnknownSignerError",
            )
        return Verifier(
            keys=trusted_keys,
            identities=identities,
            trusted_root=self._settings.sigstore_trusted_root,
        )

    # -- attestations ------------------------------------------------------------------------

    def attach(self, principal: Principal, ref: Ref, raw: bytes) -> tuple[AttestationRecord, bool]:
        """Verify a bundle about a version and store it byte-exact; ``(record, created)``.

        Checks, in order: the bundle parses (strict, bounded); its signer is a registered
        identity and the signature verifies; its subject is the version's root digest; an OMS
        manifest lists exactly the version's files; its predicate type is not one only the
        registry signs. A bundle carrying the same statement by the same signer as one already
        stored (however its JSON or signature is encoded) is that evidence again: the stored
        record comes back with ``created`` False.

        Raises:
            EvidenceRejectedError: any check failed (``facts["reason"]`` names which).
        """
        principal.require(Action.ATTEST, ref.namespace)
        version = self._versions.resolve(principal, ref)
        verified = self.verify(raw, version, principal)
        statement = verified.statement
        bundle = verified.bundle
        with transaction(self._sessions) as session:
            vid = version_id(session, version)
            # Serialise attachments to one version (PostgreSQL; SQLite's write lock already
            # does) so that two copies of one statement cannot both pass the check below.
            session.execute(select(Version.id).where(Version.id == vid).with_for_update())
            existing = _same_evidence(session, vid, verified)
            if existing is not None:
                return _attestation(existing, version.ref), False
            row = Attestation(
                version_id=vid,
                predicate_type=statement.predicate_type,
                subject_digest=statement.subject.sha256,
                bundle=bundle.raw,
                bundle_digest=bundle.digest,
                signer=verified.signer,
                signer_id=verified.signer_id,
                created_at=self._clock(),
                created_by=principal.name,
            )
            session.add(row)
            session.flush()
            record = _attestation(row, version.ref)
            audit_record(session, principal, "attach_attestation",
                         version_target(version.namespace, version.name, version.version,
                                        "attestations"),
                         at=row.created_at, details={"attestation_id": row.id,
                                                     "predicate_type": statement.predicate_type,
                                                     "signer": verified.signer})  # fmt: skip
        if self.on_evidence is not None and statement.predicate_type in REBUILDS:
            self.on_evidence(version)
        return record, True

    def verify(self, raw: bytes, version: VersionRecord, principal: Principal = READER) -> Verified:
        """Every check of :meth:`attach`, without storing anything."""
        try:
            bundle = Bundle.parse(raw, max_bytes=self._settings.max_bundle_bytes)
            verified = self.verifier().verify(bundle)
            if verified.statement.predicate_type in REGISTRY_ONLY:
                raise EvidenceRejectedError(
                    f"{verified.statement.predicate_type} statements are made by the registry "
                    "itself and cannot be attached",
                    reason="ReservedPredicateType",
                )
            subject = verified.statement.subject
            if subject.sha256 != version.root_digest:
                raise EvidenceRejectedError(
                    f"the bundle is about sha256:{subject.sha256}, but {version.ref} is "
                    f"sha256:{version.root_digest}",
                    reason="SubjectMismatchError",
                    expected=version.root_digest.prefixed,
                    got=f"sha256:{subject.sha256}",
                )
            if verified.statement.predicate_type == OMS_SIGNATURE:
                check_oms(verified.statement, version.files)
            if verified.statement.predicate_type == TEST_RESULT:
                check_evaluation_predicate(verified.statement.predicate)  # or it never counts
            if verified.statement.predicate_type == SLSA_PROVENANCE:
                provenance = read_predicate(verified.statement.predicate)
                self._check_dependencies(version, provenance, principal)
                _check_byproducts(provenance)
        except AttestError as exc:
            raise EvidenceRejectedError(
                exc.diagnostics(), reason=type(exc).__name__, **_plain(exc.facts)
            ) from exc
        return verified

    def _check_dependencies(
        self, version: VersionRecord, provenance: Provenance, principal: Principal
    ) -> None:
        """Provenance may only name registered versions, with their digests and kinds, that the
        caller may read: otherwise attaching provenance would be an oracle for the digests of
        other namespaces' versions (unknown and invisible answer alike)."""
        for dep in provenance.dependencies:
            try:
                ref = parse_ref(dep.ref)
                if ref.kind is not RefKind.VERSION:
                    raise InvalidRequestError("not a NS/NAME@VERSION reference")
                target = self._versions.resolve(principal, ref)
            except InvalidRequestError as exc:
                raise EvidenceRejectedError(
                    f"provenance names {dep.ref!r}: {exc.detail}", reason="UnknownDependencyError"
                ) from None
            except (NotFoundError, PermissionDeniedError):
                raise EvidenceRejectedError(
                    f"provenance names {dep.ref}, which is not registered "
                    f"(or not readable with token {principal.name!r})",
                    reason="UnknownDependencyError",
                    dependency=dep.ref,
                ) from None
            if target.root_digest != dep.root_digest:
                raise EvidenceRejectedError(
                    f"provenance names {dep.ref} with digest sha256:{dep.root_digest}, "
                    f"but the registry has sha256:{target.root_digest}",
                    reason="DependencyDigestMismatchError",
                    dependency=dep.ref,
                    expected=target.root_digest.prefixed,
                    got=f"sha256:{dep.root_digest}",
                )
            wanted = ROLE_KINDS[dep.role]
            if target.kind != wanted:
                raise EvidenceRejectedError(
                    f"provenance names {dep.ref} as a {dep.role}, but it is a {target.kind}",
                    reason="DependencyKindError",
                    dependency=dep.ref,
                )
            if target.root_digest == version.root_digest:
                raise EvidenceRejectedError(
                    f"provenance of {version.ref} names itself", reason="DependencyCycleError"
                )

    def verified_evidence(
        self,
        record: VersionRecord,
        *,
        verifier: Verifier | None = None,
        session: Session | None = None,
    ) -> list[Verified]:
        """Every stored bundle about ``record`` that still verifies and names its root digest,
        oldest first. Registry-internal (no access check); pass ``session`` when inside one
        (sessions never nest)."""
        verifier = verifier or self.verifier()  # reads identities: before any session opens
        if session is None:
            with self._sessions() as own:
                return self.verified_evidence(record, verifier=verifier, session=own)
        rows = session.execute(
            select(Attestation.bundle)
            .where(Attestation.version_id == version_id(session, record))
            .order_by(Attestation.id)
        ).scalars()
        evidence: list[Verified] = []
        for raw in rows:
            try:
                verified = verifier.verify(Bundle.parse(raw))
            except AttestError:
                continue  # no longer verifiable (or not by these signers): it does not count
            if verified.statement.subject.sha256 == record.root_digest:
                evidence.append(verified)
        return evidence

    def list_attestations(
        self, principal: Principal, ref: Ref, page: PageRequest, predicate_type: str | None = None
    ) -> Page[AttestationRecord]:
        """In the order attached; a page's cursor is the id of its last item."""
        version = self._versions.resolve(principal, ref)
        after = _int_cursor(page.after)
        with self._sessions() as session:
            query = select(Attestation).where(
                Attestation.version_id == version_id(session, version)
            )
            if predicate_type:
                query = query.where(Attestation.predicate_type == predicate_type)
            if after is not None:
                query = query.where(Attestation.id > after)
            rows = session.execute(query.order_by(Attestation.id).limit(page.limit + 1)).scalars()
            records = [_attestation(r, version.ref) for r in rows]
            return paged(records, page, lambda r: str(r.id))

    def get(self, principal: Principal, ref: Ref, attestation_id: int) -> bytes:
        """The exact bytes of one bundle of a version."""
        version = self._versions.resolve(principal, ref)
        with self._sessions() as session:
            row = session.get(Attestation, attestation_id)
            if row is None or row.version_id != version_id(session, version):
                raise NotFoundError(f"{version.ref} has no attestation {attestation_id}")
            return row.bundle


def _same_evidence(session: Session, vid: int, verified: Verified) -> Attestation | None:
    """The stored attestation of version ``vid`` with ``verified``'s statement by its signer.

    Evidence is the signed statement, not its JSON bytes nor its signature's encoding:
    re-serialising a bundle (other whitespace, key order) or re-encoding its signature must not
    make it count, or be listed, twice."""
    bundle = verified.bundle
    rows = session.execute(
        select(Attestation).where(
            Attestation.version_id == vid,
            Attestation.predicate_type == verified.statement.predicate_type,
            Attestation.signer_id == verified.signer_id,
        )
    ).scalars()
    for row in rows:
        if row.bundle_digest == bundle.digest:
            return row
        try:
            stored = Bundle.parse(row.bundle)
        except AttestError:
            continue  # it parsed when it was stored; a row edited since is not this evidence
        # Same signer (the query), same statement: the same evidence, whatever the signature's
        # encoding (ECDSA signatures are malleable: (r, n - s) verifies as well as (r, s)).
        if (stored.payload_type, stored.payload) == (bundle.payload_type, bundle.payload):
            return row
    return None


def _check_byproducts(provenance: Provenance) -> None:
    """The environment and model card a BOM is built from must parse (else 400 now)."""
    env = provenance.byproduct("environment")
    if env is not None:
        parse_environment(env.content, env.filename or "environment")
    model_card(provenance)


def _plain(facts: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in facts.items() if k != "reason"}


def _int_cursor(after: str | None) -> int | None:
    if after is None:
        return None
    if not after.isascii() or not after.isdigit() or len(after) > 18:
        raise InvalidRequestError("the cursor names no attestation", cursor=after)
    return int(after)
