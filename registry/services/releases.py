"""Policies and the release gate on the registry side.

The gate itself is :func:`attest.gate.evaluate` (pure, shared with offline verification); this
service gathers the evidence from the database, verifies every bundle again (signatures are
never trusted from storage), runs the gate, records the verdict, and signs a release attestation.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from attest.digests import manifest_digest
from attest.gate import RELEASE, Reason, Subject, evaluate
from attest.keys import TrustedKey
from attest.policy import DEFAULT_POLICY_YAML, KindPolicy, Policy, PolicyError, parse_policy
from attest.signing import KeySigner, UriSigner
from attest.statement import make_statement
from attest.verifying import Verified, Verifier
from registry.db import transaction
from registry.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    RegistryError,
    ReleaseRefusedError,
)
from registry.models import NamespacePolicy, Version
from registry.names import parse_ref
from registry.services.attestations import AttestationService
from registry.services.auth import Action, Principal, Role
from registry.services.common import Clock, aware, ensure_namespace, get_namespace, utcnow
from registry.services.scanning import REGISTRY_SIGNER, registry_attestation
from registry.services.versions import State, VersionRecord, VersionService, version_id

MAX_POLICY_BYTES = 256 * 1024
#: The registry's own read-only view, used by the gate to resolve dependencies.
GATE = Principal(token_id="-", name="release-gate", role=Role.AUDITOR, namespace=None)  # noqa: S106


@dataclass(frozen=True, slots=True)
class PolicyRecord:
    namespace: str
    revision: int  # 0: the built-in default
    document: str
    created_at: datetime | None
    created_by: str | None


class ReleaseService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        versions: VersionService,
        evidence: AttestationService,
        signer: KeySigner | UriSigner,
        *,
        clock: Clock = utcnow,
    ) -> None:
        self._sessions = sessions
        self._versions = versions
        self._evidence = evidence
        self._signer = signer
        self._clock = clock

    # -- policies ---------------------------------------------------------------------------

    def set_policy(self, principal: Principal, namespace: str, text: str) -> PolicyRecord:
        """Validate and store a new policy revision (admins only).

        Raises:
            InvalidRequestError: the policy is invalid (the message names the line).
        """
        principal.require(Action.ADMINISTER, namespace)
        if len(text.encode()) > MAX_POLICY_BYTES:
            raise InvalidRequestError(f"a policy may be at most {MAX_POLICY_BYTES} bytes")
        try:
            parse_policy(text)
        except PolicyError as exc:
            raise InvalidRequestError(f"invalid policy: {exc}") from None
        now = self._clock()
        with transaction(self._sessions) as session:
            ns = ensure_namespace(session, namespace, now)
            current = session.execute(
                select(func.max(NamespacePolicy.revision)).where(
                    NamespacePolicy.namespace_id == ns.id
                )
            ).scalar_one()
            row = NamespacePolicy(
                namespace_id=ns.id,
                revision=(current or 0) + 1,
                document=text,
                created_at=now,
                created_by=principal.name,
            )
            session.add(row)
        return PolicyRecord(namespace, row.revision, text, now, principal.name)

    def get_policy(
        self, principal: Principal, namespace: str, revision: int | None = None
    ) -> PolicyRecord:
        """The policy in force, or an older ``revision`` (0: the built-in default).

        Raises:
            NotFoundError: no such revision.
        """
        principal.require(Action.READ, namespace)
        with self._sessions() as session:
            return self._policy_record(session, namespace, revision)

    def _policy_record(
        self, session: Session, namespace: str, revision: int | None = None
    ) -> PolicyRecord:
        if revision == 0:
            return PolicyRecord(namespace, 0, DEFAULT_POLICY_YAML, None, None)
        namespace_id = _namespace_id(session, namespace)
        row = None
        if namespace_id is not None:
            query = select(NamespacePolicy).where(NamespacePolicy.namespace_id == namespace_id)
            if revision is not None:
                query = query.where(NamespacePolicy.revision == revision)
            row = session.execute(
                query.order_by(NamespacePolicy.revision.desc()).limit(1)
            ).scalar_one_or_none()
        if row is None and revision is not None:
            raise NotFoundError(f"namespace {namespace!r} has no policy revision {revision}")
        if row is None:
            return PolicyRecord(namespace, 0, DEFAULT_POLICY_YAML, None, None)
        return PolicyRecord(
            namespace, row.revision, row.document, aware(row.created_at), row.created_by
        )

    # -- the gate ---------------------------------------------------------------------------

    def _verifier(self) -> Verifier:
        registry = TrustedKey(REGISTRY_SIGNER, self._signer.public_key)
        return self._evidence.verifier(extra_keys=[registry])

    def _subject(self, session: Session, record: VersionRecord, verifier: Verifier) -> Subject:
        evidence = self._evidence.verified_evidence(record, verifier=verifier, session=session)
        return Subject(
            ref=record.ref,
            kind=record.kind,
            root_digest=record.root_digest,
            state=record.state,
            files=record.files,
            pushed_by=record.created_by,
            evidence=tuple(evidence),
            registry_signer_id=self._signer.identity,
        )

    def check(
        self, principal: Principal, record: VersionRecord, *, releaser: str | None
    ) -> tuple[list[Reason], list[Verified], PolicyRecord]:
        """Run the gate; returns the reasons (empty: releasable), the evidence relied on and
        the policy in force. Sessions are short and never nested (SQLite takes its write lock
        for every transaction)."""
        verifier = self._verifier()
        policies: dict[str, Policy] = {}

        def policy_record(namespace: str) -> PolicyRecord:
            with self._sessions() as session:
                return self._policy_record(session, namespace)

        def load(target: VersionRecord) -> Subject:
            with self._sessions() as session:
                return self._subject(session, target, verifier)

        def policy_for(subject: Subject) -> KindPolicy:
            namespace = subject.ref.split("/", 1)[0]
            if namespace not in policies:
                policies[namespace] = parse_policy(policy_record(namespace).document)
            return policies[namespace].for_kind(subject.kind)

        def resolve(ref: str) -> Subject | None:
            try:
                # The gate itself may read any namespace: a dependency in another team's
                # namespace must be verifiable by a releaser scoped to this one.
                target = self._versions.resolve(GATE, parse_ref(ref))
            except RegistryError:  # unknown or invalid: "not registered"
                return None
            return load(target)

        subject = load(record)
        reasons = evaluate(subject, policy_for, resolve, releaser=releaser)
        return reasons, list(subject.evidence), policy_record(record.namespace)

    def release(self, principal: Principal, ref_text: str) -> VersionRecord:
        """Release a pending version if its whole chain verifies under the policy.

        Raises:
            ReleaseRefusedError: the gate failed; the version stays pending with the reasons.
            ConflictError: the version is rejected or revoked.
        """
        ref = parse_ref(ref_text)
        principal.require(Action.RELEASE, ref.namespace)
        record = self._versions.resolve(principal, ref)
        if record.state == State.RELEASED:
            return record
        if record.state != State.PENDING:
            raise ConflictError(
                f"{record.ref} is {record.state} and cannot be released"
                + (f": {record.state_reason}" if record.state_reason else ""),
                state=record.state,
            )
        reasons, evidence, policy = self.check(principal, record, releaser=principal.name)
        if reasons:
            text = "\n".join(str(r) for r in reasons)
            self._set_state(record, State.PENDING, f"release refused:\n{text}")
            raise ReleaseRefusedError(
                f"{record.ref} cannot be released:\n{text}",
                reasons=[str(r) for r in reasons],
                links=[{"link": r.link, "message": r.message} for r in reasons],
            )
        now = self._clock()
        statement = make_statement(
            name=f"{record.namespace}/{record.name}",
            root_digest=record.root_digest,
            predicate_type=RELEASE,
            predicate={
                "version": record.ref,
                # Facts an offline verifier would otherwise read from unsigned export files.
                "kind": record.kind,
                "pushedBy": record.created_by,
                "manifestSha256": manifest_digest(record.files),
                "releasedAt": now.isoformat(),
                "releasedBy": principal.name,
                "policy": {
                    "revision": policy.revision,
                    "sha256": hashlib.sha256(policy.document.encode()).hexdigest(),
                },
                "evidence": [
                    {
                        "predicateType": e.statement.predicate_type,
                        "bundleSha256": e.bundle.digest,
                        "signer": e.signer_id,
                        # The identity name the policy matched: an export's trust.yaml is
                        # checked against these, since no one signs that file.
                        "signerName": e.signer,
                    }
                    for e in evidence
                ],
            },
        )
        bundle = self._signer.sign(statement)
        with transaction(self._sessions) as session:
            vid = version_id(session, record)
            session.add(
                registry_attestation(vid, record, bundle, self._signer, now, actor=principal.name)
            )
            moved = session.execute(
                update(Version)
                .where(Version.id == vid, Version.state == State.PENDING)
                .values(state=State.RELEASED, state_reason=None)
            ).rowcount  # type: ignore[attr-defined]
            if moved != 1:
                raise ConflictError(f"{record.ref} changed state during the release")
        return dataclasses.replace(record, state=State.RELEASED, state_reason=None)

    def reject(self, principal: Principal, ref_text: str, reason: str) -> VersionRecord:
        """Explicitly reject a pending version (it can never be released)."""
        ref = parse_ref(ref_text)
        principal.require(Action.RELEASE, ref.namespace)
        if not reason.strip():
            raise InvalidRequestError("a rejection needs a reason")
        record = self._versions.resolve(principal, ref)
        if record.state != State.PENDING:
            raise ConflictError(
                f"{record.ref} is {record.state}; only pending versions can be rejected"
            )
        text = f"rejected by {principal.name}: {reason.strip()[:2000]}"
        self._set_state(record, State.REJECTED, text)
        return dataclasses.replace(record, state=State.REJECTED, state_reason=text)

    def _set_state(self, record: VersionRecord, state: str, reason: str | None) -> None:
        with transaction(self._sessions) as session:
            session.execute(
                update(Version)
                .where(Version.id == version_id(session, record), Version.state == State.PENDING)
                .values(state=state, state_reason=reason)
            )


def _namespace_id(session: Session, namespace: str) -> int | None:
    try:
        return get_namespace(session, namespace).id
    except NotFoundError:
        return None
