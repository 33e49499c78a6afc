"""Policies and the release gate on the registry side.

The gate itself is :func:`attest.gate.evaluate` (pure, shared with offline verification); this
service gathers the evidence from the database, verifies every bundle again (signatures are
never trusted from storage), runs the gate, records the verdict, and signs a release attestation.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from attest.bundle import Bundle
from attest.digests import manifest_digest
from attest.errors import AttestError, PolicyError
from attest.gate import DEPENDENCY_SCHEME, MAX_DEPTH, Candidate, Reason, evaluate
from attest.keys import TrustedKey
from attest.policy import (
    ANY_SIGNER,
    DEFAULT_POLICY_YAML,
    KindPolicy,
    Policy,
    parse_policy,
)
from attest.predicates import RELEASE, REVOCATION, SCAN, SLSA_PROVENANCE, STATUS
from attest.scan.rules import accepted_unknown
from attest.signing import KeySigner, UriSigner
from attest.statement import make_statement
from attest.verifying import Verified, Verifier
from registry.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    RegistryError,
    ReleaseRefusedError,
)
from registry.names import Ref, parse_ref
from registry.server.db import transaction
from registry.server.models import (
    Alias,
    Artifact,
    Attestation,
    Identity,
    Namespace,
    NamespacePolicy,
    Version,
)
from registry.server.services import journal, tlog
from registry.server.services.attestations import AttestationService
from registry.server.services.auth import Action, Principal, Role
from registry.server.services.common import Clock, aware, ensure_namespace, get_namespace, utcnow
from registry.server.services.events import Event, stage
from registry.server.services.journal import version_target
from registry.server.services.scanning import REGISTRY_SIGNER, ScanService, registry_attestation
from registry.server.services.versions import (
    State,
    VersionRecord,
    VersionService,
    scan_pending,
    version_id,
)

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


@dataclass(frozen=True, slots=True)
class Revoked:
    """One version a revocation moved from released to revoked."""

    record: VersionRecord
    built_on: str | None  # the dependency it was revoked for (None: the root cause itself)
    reason: str  # its state_reason


@dataclass(frozen=True, slots=True)
class Revocation:
    """The outcome of revoking ``record``: every version revoked now (root first, then the
    cascade), every released-or-revoked dependent, and the aliases that point at any of them."""

    record: VersionRecord
    revoked: list[Revoked] = field(default_factory=list)
    dependents: list[str] = field(default_factory=list)
    aliases: list[tuple[str, str]] = field(default_factory=list)  # (NS/NAME@ALIAS, version)


@dataclass(frozen=True, slots=True)
class AuditHead:
    """The audit log's current length and head, and the hash of entry ``since`` (None: the log
    has no such entry), as signed into status statements."""

    count: int
    head: str
    since: int | None = None
    since_hash: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"count": self.count, "head": self.head}
        if self.since is not None:
            out["entry"] = {"count": self.since, "hash": self.since_hash}
        return out


class ReleaseService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        versions: VersionService,
        evidence: AttestationService,
        signer: KeySigner | UriSigner,
        *,
        clock: Clock = utcnow,
        scans: ScanService | None = None,
    ) -> None:
        self._sessions = sessions
        self._versions = versions
        self._evidence = evidence
        self._signer = signer
        self._clock = clock
        self._scans = scans
        #: Called with each version this service releases, after the release commits (the
        #: OCI service stores the artifact and signs its manifest-digest statement).
        self.on_release: Callable[[VersionRecord], None] | None = None
        #: Called with a pending version before the gate runs for its release (the ML-BOM
        #: service builds or waits for the version's pending BOM, so the release names it).
        self.before_release: Callable[[VersionRecord], None] | None = None

    def _rescanned(self, record: VersionRecord) -> VersionRecord:
        """``record`` scanned again when its scan predates the current ruleset (the gate does
        not accept such scans, and a registry upgraded past a ruleset bump holds many)."""
        return record if self._scans is None else self._scans.rescan_if_stale(record)

    # -- policies ---------------------------------------------------------------------------

    def _check_identities(self, policy: Policy) -> None:
        """A policy may name only registered identities (a typo would otherwise make a rule no
        signer can ever satisfy, and only show at release time)."""
        named: set[str] = set()
        for rules in policy.kinds.values():
            for names in (rules.signature, rules.provenance, rules.evaluation_signers):
                named.update(n for n in names or () if n != ANY_SIGNER)
        if not named:
            return
        with self._sessions() as session:
            known = set(session.execute(select(Identity.name)).scalars())
        unknown = sorted(named - known)
        if unknown:
            raise InvalidRequestError(
                f"invalid policy: it names identities that are not registered: "
                f"{', '.join(unknown)}; registered: {', '.join(sorted(known)) or 'none'} "
                "(register one with `modelseal identity add NAME --key FILE.pub`)",
                unknown=unknown,
                registered=sorted(known),
            )

    def set_policy(self, principal: Principal, namespace: str, text: str) -> PolicyRecord:
        """Validate and store a new policy revision (admins only).

        Raises:
            InvalidRequestError: the policy is invalid (the message names the line).
        """
        principal.require(Action.ADMINISTER, namespace)
        if len(text.encode()) > MAX_POLICY_BYTES:
            raise InvalidRequestError(f"a policy may be at most {MAX_POLICY_BYTES} bytes")
        try:
            policy = parse_policy(text)
        except PolicyError as exc:
            raise InvalidRequestError(f"invalid policy: {exc}") from None
        self._check_identities(policy)
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
            journal.record(session, principal, "set_policy", f"/v1/namespaces/{namespace}/policy",
                           at=now, details={"revision": row.revision},
                           log={"subject": namespace, "namespace": namespace,
                                "revision": row.revision,
                                "sha256": tlog.sha256_hex(text)})  # fmt: skip
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

    def _subject(self, session: Session, record: VersionRecord, verifier: Verifier) -> Candidate:
        evidence = self._evidence.verified_evidence(record, verifier=verifier, session=session)
        return Candidate(
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
        self,
        principal: Principal,
        record: VersionRecord,
        *,
        releaser: str | None,
        rescan: bool = True,
    ) -> tuple[list[Reason], list[Verified], PolicyRecord]:
        """Run the gate; returns the reasons (empty: releasable), the evidence relied on and
        the policy in force. Sessions are short and never nested (SQLite takes its write lock
        for every transaction)."""
        verifier = self._verifier()
        policies: dict[str, Policy] = {}

        def policy_record(namespace: str) -> PolicyRecord:
            with self._sessions() as session:
                return self._policy_record(session, namespace)

        def load(target: VersionRecord) -> Candidate:
            if rescan:  # else a stale scan stays, and the gate says so (nothing is written)
                target = self._rescanned(target)
            with self._sessions() as session:
                return self._subject(session, target, verifier)

        def policy_for(subject: Candidate) -> KindPolicy:
            namespace = subject.ref.split("/", 1)[0]
            if namespace not in policies:
                policies[namespace] = parse_policy(policy_record(namespace).document)
            return policies[namespace].for_kind(subject.kind)

        def resolve(ref: str) -> Candidate | None:
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
        record = self._rescanned(self._versions.resolve(principal, ref))
        if record.state == State.RELEASED:
            return record
        if record.state == State.SCANNING:
            raise scan_pending(record)
        if record.state != State.PENDING:
            raise ConflictError(
                f"{record.ref} is {record.state} and cannot be released"
                + (f": {record.state_reason}" if record.state_reason else ""),
                state=record.state,
            )
        if self.before_release is not None:
            self.before_release(record)
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
                # Files released only because the policy accepts what the scanner could not
                # identify (scan: {allow_formats: [unknown]}), named where auditors read.
                "acceptedUnknown": self._accepted_unknown(record, evidence, policy),
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
        dependencies = [dep for _ref, _digest, dep in self._dependencies(record) if dep is not None]
        with transaction(self._sessions) as session:
            vid = version_id(session, record)
            # Lock every dependency and look again: a revocation that committed after the gate
            # ran must refuse this release (one that comes later waits for it and cascades).
            ids = [version_id(session, dep) for dep in dependencies]
            states = dict(session.execute(
                select(Version.id, Version.state).where(Version.id.in_(ids)).with_for_update()
            ).tuples().all()) if ids else {}  # fmt: skip
            for dep, dep_id in zip(dependencies, ids, strict=True):
                if states.get(dep_id) in (State.REVOKED, State.REJECTED):
                    raise ConflictError(
                        f"{record.ref} cannot be released: {dep.ref}, which it is built on, "
                        f"was {states[dep_id]} while the release was checked",
                        dependency=dep.ref,
                    )
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
            journal.record(session, principal, "release_version",
                           version_target(record.namespace, record.name, record.version, "release"),
                           at=now, details={"root_digest": record.root_digest,
                                            "policy_revision": policy.revision},
                           log={"subject": record.ref,
                                "root_digest": tlog.digest(record.root_digest),
                                "kind": record.kind, "policy_revision": policy.revision,
                                "policy_sha256": tlog.sha256_hex(policy.document),
                                "statement_sha256": bundle.digest})  # fmt: skip
        released = dataclasses.replace(record, state=State.RELEASED, state_reason=None)
        if self.on_release is not None:
            self.on_release(released)
        return released

    def _accepted_unknown(
        self, record: VersionRecord, evidence: list[Verified], policy: PolicyRecord
    ) -> list[str]:
        scans = [e for e in evidence if e.statement.predicate_type == SCAN
                 and e.signer_id == self._signer.identity]  # fmt: skip
        if not scans:
            return []
        allowed = parse_policy(policy.document).for_kind(record.kind).allow_formats
        return accepted_unknown(scans[-1].statement.predicate, allowed)

    def reject(self, principal: Principal, ref_text: str, reason: str) -> VersionRecord:
        """Explicitly reject a pending version (it can never be released)."""
        ref = parse_ref(ref_text)
        principal.require(Action.RELEASE, ref.namespace)
        if not reason.strip():
            raise InvalidRequestError("a rejection needs a reason")
        record = self._versions.resolve(principal, ref)
        if record.state == State.SCANNING:
            raise scan_pending(record)
        if record.state != State.PENDING:
            raise ConflictError(
                f"{record.ref} is {record.state}; only pending versions can be rejected"
            )
        text = f"rejected by {principal.name}: {reason.strip()[:2000]}"
        with transaction(self._sessions) as session:
            moved = session.execute(
                update(Version)
                .where(Version.id == version_id(session, record), Version.state == State.PENDING)
                .values(state=State.REJECTED, state_reason=text)
            ).rowcount  # type: ignore[attr-defined]
            if moved != 1:
                raise ConflictError(f"{record.ref} changed state during the rejection")
            stage(session, Event.VERSION_REJECTED, actor=principal.name, version=record.ref,
                  root_digest=record.root_digest, reason=reason)  # fmt: skip
            journal.record(session, principal, "reject_version",
                           version_target(record.namespace, record.name, record.version, "reject"),
                           at=self._clock(), details={"reason": reason.strip()[:2000]},
                           log={"subject": record.ref,
                                "root_digest": tlog.digest(record.root_digest),
                                "reason": reason.strip(), "by": "releaser"})  # fmt: skip
        return dataclasses.replace(record, state=State.REJECTED, state_reason=text)

    # -- revocation ---------------------------------------------------------------------------

    def revoke(self, principal: Principal, ref: Ref, reason: str) -> Revocation:
        """Revoke a released version and, transitively through provenance, every released
        version built on it; each gets a registry-signed revocation naming the root cause.
        Each round happens in one transaction (a failure leaves every state of that round as it
        was). Revoking a revoked version signs nothing for it, but revokes any released version
        built on it that escaped the cascade (a release that raced the revocation).

        Raises:
            InvalidRequestError: no reason given.
            ConflictError: the version is pending or rejected.
        """
        principal.require(Action.RELEASE, ref.namespace)
        reason = reason.strip()[:2000]
        if not reason:
            raise InvalidRequestError("a revocation needs a reason")
        record = self._versions.resolve(principal, ref)
        if record.state not in (State.RELEASED, State.REVOKED):
            raise ConflictError(
                f"{record.ref} is {record.state}; only released versions are revoked",
                state=record.state,
            )
        now = self._clock()
        root_text = f"revoked by {principal.name}: {reason}"
        done: list[Revoked] = []
        # The cascade is planned, signed and written, then planned again: a release of a
        # dependent that raced this revocation (committed after the first plan) is caught by
        # the next round; a release after this one locks the revoked row and refuses.
        for _round in range(MAX_DEPTH):
            cascade = self._dependents(record)
            planned = self._plan_revocation(record, cascade, root_text, first=not done)
            if not planned:
                break
            dependents = sorted(r.ref for r, _ in cascade)
            done.extend(self._revoke_planned(principal, record, planned, reason, now, dependents))
            record = dataclasses.replace(record, state=State.REVOKED)
        dependents = sorted(r.ref for r, _ in cascade)
        head = done[0].record if done and done[0].built_on is None else record
        return Revocation(head, done, dependents, self._aliases(record, cascade))

    def _plan_revocation(
        self,
        record: VersionRecord,
        cascade: list[tuple[VersionRecord, VersionRecord]],
        root_text: str,
        *,
        first: bool,
    ) -> list[Revoked]:
        """What still has to be revoked: the root (while released) and every released version
        built on it, each with the chain of dependencies that makes it revoked."""
        chains: dict[str, list[str]] = {record.ref: []}  # the dependencies down to the root
        planned = []
        if first and record.state == State.RELEASED:
            planned.append(Revoked(record, None, root_text))
        for dependent, via in cascade:
            chain = chains[dependent.ref] = [via.ref, *chains.get(via.ref, [])]
            if dependent.state != State.RELEASED:
                continue
            below = f" (built on {', built on '.join(chain[1:])})" if len(chain) > 1 else ""
            text = f"revoked because it is built on {chain[0]}{below}, {root_text}"
            planned.append(Revoked(dependent, via.ref, text))
        return planned

    def _revoke_planned(
        self,
        principal: Principal,
        record: VersionRecord,
        planned: list[Revoked],
        reason: str,
        now: datetime,
        dependents: list[str],
    ) -> list[Revoked]:
        """Sign and write one round of revocations, in one transaction (each with its
        ``version_revoked`` event)."""
        bundles = [self._signer.sign(self._revocation_statement(item, record, principal.name,
                                                                 reason, now))
                   for item in planned]  # fmt: skip
        done: list[Revoked] = []
        with transaction(self._sessions) as session:
            for item, bundle in zip(planned, bundles, strict=True):
                vid = version_id(session, item.record)
                moved = session.execute(
                    update(Version)
                    .where(Version.id == vid, Version.state == State.RELEASED)
                    .values(state=State.REVOKED, state_reason=item.reason)
                ).rowcount  # type: ignore[attr-defined]
                if moved != 1:
                    if item.record is record:  # revoked concurrently: that one counts
                        raise ConflictError(f"{record.ref} changed state during the revocation")
                    continue
                session.add(registry_attestation(vid, item.record, bundle, self._signer, now,
                                                 actor=principal.name))  # fmt: skip
                target = item.record
                if item.built_on is None:
                    stage(session, Event.VERSION_REVOKED, actor=principal.name,
                          version=target.ref, root_digest=target.root_digest, reason=reason,
                          dependents=dependents)  # fmt: skip
                    journal.record(session, principal, "revoke_version",
                                   version_target(target.namespace, target.name, target.version,
                                                  "revoke"),
                                   at=now, details={"reason": reason},
                                   log=_revocation_facts(target, bundle, record, None,
                                                         item.reason))  # fmt: skip
                else:
                    stage(session, Event.VERSION_REVOKED, actor=principal.name,
                          version=target.ref, root_digest=target.root_digest, reason=reason,
                          root_cause=record.ref, built_on=item.built_on)  # fmt: skip
                    journal.record(session, principal, "revoke_dependent",
                                   version_target(target.namespace, target.name, target.version),
                                   at=now, details={"root_cause": record.ref,
                                                    "built_on": item.built_on,
                                                    "reason": item.reason},
                                   log=_revocation_facts(target, bundle, record, item.built_on,
                                                         item.reason))  # fmt: skip
                done.append(dataclasses.replace(
                    item, record=dataclasses.replace(item.record, state=State.REVOKED,
                                                     state_reason=item.reason)))  # fmt: skip
        return done

    def _revocation_statement(
        self, item: Revoked, root: VersionRecord, actor: str, reason: str, now: datetime
    ) -> Any:
        return make_statement(
            name=f"{item.record.namespace}/{item.record.name}",
            root_digest=item.record.root_digest,
            predicate_type=REVOCATION,
            predicate={
                "version": item.record.ref,
                "revokedAt": now.astimezone(UTC).isoformat(),
                "reason": item.reason,
                "builtOn": item.built_on,
                "rootCause": {
                    "version": root.ref,
                    "rootDigest": root.root_digest.prefixed,
                    "reason": reason,
                    "revokedBy": actor,
                },
            },
        )

    def _aliases(
        self, record: VersionRecord, cascade: list[tuple[VersionRecord, VersionRecord]]
    ) -> list[tuple[str, str]]:
        """Aliases that point at ``record`` or any version of the cascade (now flagged)."""
        wanted = {(r.namespace, r.name, r.version) for r in [record, *(d for d, _ in cascade)]}
        with self._sessions() as session:
            rows = session.execute(
                select(Namespace.name, Artifact.name, Alias.name, Version.version)
                .join(Artifact, Alias.artifact_id == Artifact.id)
                .join(Namespace, Artifact.namespace_id == Namespace.id)
                .join(Version, Alias.version_id == Version.id)
            ).all()
        return sorted(
            (f"{ns}/{name}@{alias}", f"{ns}/{name}@{version}")
            for ns, name, alias, version in rows
            if (ns, name, version) in wanted
        )

    # -- current status -------------------------------------------------------------------------

    def status(self, principal: Principal, ref: Ref, audit: AuditHead | None) -> bytes:
        """A registry-signed statement of the version's current state, every dependency's
        (transitively through provenance), the audit log's head, and when it was issued.

        A version with a registry-signed revocation is reported revoked whatever its state
        column says (a row flipped back to released by hand does not make it servable).
        """
        record = self._versions.resolve(principal, ref)
        state, reason = self._current_state(record)
        dependencies = []
        for ref_text, digest, dep in self._dependencies(record):
            dep_reason: str | None
            if dep is None:
                dep_state, dep_reason = "missing", "named by the provenance, not in the registry"
            elif dep.root_digest != digest:
                dep_state = "mismatch"
                dep_reason = (f"the provenance names sha256:{digest}, the registry holds "
                              f"sha256:{dep.root_digest}")  # fmt: skip
            else:
                dep_state, dep_reason = self._current_state(dep)
            dependencies.append({"version": ref_text, "rootDigest": f"sha256:{digest}",
                                 "state": dep_state, "reason": dep_reason})  # fmt: skip
        predicate: dict[str, Any] = {
            "version": record.ref,
            "state": state,
            "reason": reason,
            "dependencies": dependencies,
            "issuedAt": self._clock().astimezone(UTC).isoformat(),
        }
        if audit is not None:
            predicate["auditLog"] = audit.to_json()
        statement = make_statement(
            name=f"{record.namespace}/{record.name}",
            root_digest=record.root_digest,
            predicate_type=STATUS,
            predicate=predicate,
        )
        return self._signer.sign(statement).raw

    def _version(self, ref_text: str) -> VersionRecord | None:
        try:
            return self._versions.resolve(GATE, parse_ref(ref_text))
        except RegistryError:
            return None

    def dependents(self, root: VersionRecord) -> list[tuple[VersionRecord, VersionRecord]]:
        """Every released or revoked version built on ``root``, with the version it is built on
        directly: what a revocation of ``root`` cascades to (in every namespace: callers show
        only what their caller may read)."""
        return self._dependents(root)

    def _dependents(self, root: VersionRecord) -> list[tuple[VersionRecord, VersionRecord]]:
        """Every released or revoked version built on ``root``, transitively: ``(dependent,
        the dependency its provenance names)``, nearest first, each once, depth-bounded."""
        with self._sessions() as session:
            rows = session.execute(
                select(Attestation.bundle, Namespace.name, Artifact.name, Version.version)
                .join(Version, Attestation.version_id == Version.id)
                .join(Artifact, Version.artifact_id == Artifact.id)
                .join(Namespace, Artifact.namespace_id == Namespace.id)
                .where(Attestation.predicate_type == SLSA_PROVENANCE)
                .where(Version.state.in_([State.RELEASED, State.REVOKED]))
            ).all()
        named_by: dict[tuple[str, str], set[str]] = {}  # (dependency, digest) -> dependents
        for raw, ns, name, version in rows:
            for dep in _provenance_dependencies(raw):
                named_by.setdefault(dep, set()).add(f"{ns}/{name}@{version}")
        found: list[tuple[VersionRecord, VersionRecord]] = []
        seen = {root.ref}
        frontier = [root]
        for _depth in range(MAX_DEPTH):
            following = []
            for current in frontier:
                for ref_text in sorted(named_by.get((current.ref, current.root_digest), ())):
                    dependent = self._version(ref_text)
                    if dependent is not None and dependent.ref not in seen:
                        seen.add(dependent.ref)
                        found.append((dependent, current))
                        following.append(dependent)
            frontier = following
        return found

    def _dependencies(self, record: VersionRecord) -> list[tuple[str, str, VersionRecord | None]]:
        """Every version ``record`` is built on, transitively through provenance, each once:
        ``(reference, digest the provenance names, the registered version or None)``."""
        found: list[tuple[str, str, VersionRecord | None]] = []
        seen = {record.ref}
        frontier = [record]
        for _depth in range(MAX_DEPTH):
            following = []
            for current in frontier:
                with self._sessions() as session:
                    raws = list(session.execute(
                        select(Attestation.bundle).where(
                            Attestation.version_id == version_id(session, current),
                            Attestation.predicate_type == SLSA_PROVENANCE,
                        )
                    ).scalars())  # fmt: skip
                for raw in raws:
                    for ref_text, digest in _provenance_dependencies(raw):
                        if ref_text in seen:
                            continue
                        seen.add(ref_text)
                        dep = self._version(ref_text)
                        found.append((ref_text, digest, dep))
                        if dep is not None:
                            following.append(dep)
            frontier = following
        return found

    def _current_state(self, record: VersionRecord) -> tuple[str, str | None]:
        """The version's state; revoked whenever the registry signed a revocation of it."""
        with self._sessions() as session:
            revoked = session.execute(
                select(Attestation.id)
                .where(
                    Attestation.version_id == version_id(session, record),
                    Attestation.predicate_type == REVOCATION,
                    # by the key, not the name column a database edit can change
                    Attestation.signer_id == self._signer.identity,
                )
                .limit(1)
            ).scalar_one_or_none()
        if revoked is not None and record.state != State.REVOKED:
            return State.REVOKED, "revoked (a registry-signed revocation exists)"
        return record.state, record.state_reason

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


def _provenance_dependencies(raw: bytes) -> list[tuple[str, str]]:
    """``(NS/NAME@VERSION, sha256 hex)`` of every registered dependency a provenance names."""
    try:
        predicate = Bundle.parse(raw).statement().predicate
    except AttestError:
        return []
    build = predicate.get("buildDefinition")
    deps = build.get("resolvedDependencies") if isinstance(build, dict) else None
    found = []
    for dep in deps if isinstance(deps, list) else []:
        if not isinstance(dep, dict):
            continue
        uri, digest = dep.get("uri"), dep.get("digest")
        if isinstance(uri, str) and uri.startswith(DEPENDENCY_SCHEME) and isinstance(digest, dict):
            found.append((uri.removeprefix(DEPENDENCY_SCHEME), str(digest.get("sha256", ""))))
    return found


def _revocation_facts(
    target: VersionRecord, bundle: Any, root: VersionRecord, built_on: str | None, reason: str
) -> dict[str, Any]:
    """The transparency-log facts of one revocation (the root's or a cascaded one's)."""
    return {
        "subject": target.ref,
        "root_digest": tlog.digest(target.root_digest),
        "statement_sha256": bundle.digest,
        "reason": reason,
        "root_cause": root.ref,
        "built_on": built_on,
    }
