"""The registry builds, validates and signs a CycloneDX 1.6 ML-BOM for every model version.

Built off the request path by a worker in any replica (:mod:`.bomjobs`) once a model
version is committed and scanned, and rebuilt while it is pending whenever provenance or
evaluation results arrive (the newest BOM attestation is the current one; a build that would
change nothing stores nothing). Every digest in it comes from the registry's own records: the
version's files, and the dependency versions the (verified) provenance names, looked up here.
Evidence is re-verified before it is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session, sessionmaker

from attest.bundle import Bundle
from attest.keys import TrustedKey
from attest.predicates import CYCLONEDX_BOM, SCAN, SLSA_PROVENANCE, TEST_RESULT
from attest.provenance import Provenance, model_card, read_predicate
from attest.scan import MIN_RULESET
from attest.signing import KeySigner, UriSigner
from attest.statement import Statement, make_statement
from registry import __version__
from registry.errors import NotFoundError, ServiceUnavailableError
from registry.names import Ref, parse_ref
from registry.server.models import Artifact, Attestation, Namespace, Version
from registry.server.services.attestations import READER, REBUILDS, AttestationService
from registry.server.services.auth import Action, Principal
from registry.server.services.bomjobs import BomJobs, BomState, BomStatus, Outcome, bom_state
from registry.server.services.common import Clock, utcnow
from registry.server.services.scanning import REGISTRY_SIGNER, ScanService, registry_attestation
from registry.server.services.versions import (
    State,
    VersionRecord,
    VersionService,
    selecting,
    version_id,
)
from sbom import (
    BomCode,
    BomDataset,
    BomFile,
    BomModelRef,
    EnvPackage,
    Metric,
    ModelBomInput,
    parse_environment,
)
from sbom.isolated import BomChild

#: Every BOM this process builds is built and strictly validated in one child process shared
#: by all services, stopped when idle: the builder's and the validator's ~30 MiB are not
#: carried between builds.
BOM_CHILD = BomChild()


@dataclass(frozen=True, slots=True)
class BomTarget:
    """A version as the BOM answers see it: its BOM status and current BOM (the newest
    registry-signed CycloneDX bundle, read only when the status is ready)."""

    ref: str
    kind: str
    state: str
    file_count: int
    bom: BomState
    current: bytes | None


#: Evidence whose arrival about a pending model asks for its BOM to be built (again): the
#: registry's scan (every file's verdict), provenance, evaluation results.
TRIGGERS = frozenset({SCAN, *REBUILDS})
#: How long a release waits for the version's pending ML-BOM before it answers 503.
RELEASE_WAIT_SECONDS = 60.0
#: The ``Retry-After`` of that answer.
RETRY_AFTER_SECONDS = 5


class BomService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        versions: VersionService,
        attestations: AttestationService,
        signer: KeySigner | UriSigner,
        *,
        clock: Clock = utcnow,
        scans: ScanService | None = None,
    ) -> None:
        self._sessions = sessions
        self._versions = versions
        self._attestations = attestations
        self._signer = signer
        self._clock = clock
        self._scans = scans
        #: The job queue (set by the app): :meth:`settle` runs or waits for a pending build.
        self.jobs: BomJobs | None = None

    def build(self, record: VersionRecord) -> Bundle | None:
        """Build, validate and sign the BOM of a model version; None when it would be the
        current BOM again (builds are deterministic) or the version is no model. Writes nothing.

        Raises:
            BomError: the BOM does not validate (strict CycloneDX 1.6).
            BomValidatorUnavailableError: the BOM child process failed (the job retries).
        """
        if record.kind != "model":
            return None
        # built and validated strictly (slow, once) in the child process
        bom = BOM_CHILD.build(self.bom_input(record))
        current = self.current(record)
        if current is not None and dict(Bundle.parse(current).statement().predicate) == bom:
            return None  # nothing changed: no new attestation
        statement = make_statement(
            name=f"{record.namespace}/{record.name}",
            root_digest=record.root_digest,
            predicate_type=CYCLONEDX_BOM,
            predicate=bom,
        )
        return self._signer.sign(statement)

    def build_job(self, version_id: int) -> Outcome:
        """A version's job (:mod:`.bomjobs`): the version as it is now, scanned first if it
        never was (a version of many files is scanned here, after its commit answered; the
        commit request that would have scanned a smaller one may have died), then a model's
        BOM. A rejected version, a dataset and code get no BOM."""
        found = self._find(version_id)
        if found is None or found[2] == State.REJECTED:
            return Outcome(built=False)
        ref, kind, state, ruleset = found
        outdated = state == State.RELEASED and (ruleset is None or ruleset < MIN_RULESET)
        must_scan = self._scans is not None and (
            state == State.SCANNING or outdated or not self._scanned(version_id)
        )
        if kind != "model" and not must_scan:
            return Outcome(built=False)  # (without loading a dataset's millions of file rows)
        record = self._version(ref)
        if record is None:
            return Outcome(built=False)
        if must_scan and self._scans is not None:
            # (A stale scan is the gate's to redo, as before: two rescans racing would both
            # be recorded.) The report does not ask for the BOM again: it is built next.
            record = self._scans.scan_version(record, ask_bom=False)
        if outdated or record.kind != "model" or record.state in (State.REJECTED, State.SCANNING):
            # (a released version rescanned under newer rules keeps the BOM it was released
            # with; one whose file the rescan found unsafe has been revoked)
            return Outcome(built=False)
        bundle = self.build(record)
        if bundle is None:
            return Outcome(built=True)
        built = record

        def write(session: Session) -> None:
            session.add(registry_attestation(version_id, built, bundle, self._signer,
                                             self._clock(), actor=REGISTRY_SIGNER))  # fmt: skip

        return Outcome(built=True, record=write)

    def _scanned(self, version_id: int) -> bool:
        with self._sessions() as session:
            return bool(session.execute(select(exists().where(
                Attestation.version_id == version_id, Attestation.predicate_type == SCAN,
                Attestation.signer == REGISTRY_SIGNER,
            ))).scalar_one())  # fmt: skip

    def _find(self, version_id: int) -> tuple[str, str, str, str | None] | None:
        """The reference, kind, state and scan ruleset of a version, or None."""
        with self._sessions() as session:
            row = session.execute(
                select(Namespace.name, Artifact.name, Version.version, Artifact.kind,
                       Version.state, Version.scan_ruleset)
                .join(Artifact, Version.artifact_id == Artifact.id)
                .join(Namespace, Artifact.namespace_id == Namespace.id)
                .where(Version.id == version_id)
            ).first()  # fmt: skip
        if row is None:
            return None
        return f"{row[0]}/{row[1]}@{row[2]}", row[3], row[4], row[5]

    def settle(self, record: VersionRecord, *, timeout: float) -> BomState:
        """The version's BOM status after building its pending BOM now, in this thread, or
        waiting up to ``timeout`` seconds for the worker building it (:meth:`BomJobs.settle`):
        for a caller that must not go on without it (a release names the BOM it relied on).
        Still ``pending`` after ``timeout``, or while a failed attempt's backoff runs."""
        if record.kind == "model" and self.jobs is not None:
            with self._sessions() as session:
                vid = version_id(session, record)
            self.jobs.settle(vid, timeout=timeout)
        return self.status(record)

    def settle_for_release(self, record: VersionRecord) -> None:
        """Before a release runs the gate: the version's pending ML-BOM built now (or waited for,
        up to :data:`RELEASE_WAIT_SECONDS`), so the release attestation names the BOM it relied
        on. A failed BOM does not hold a release back (the gate decides whether the policy needs
        one); one still pending after the wait answers 503 with Retry-After, and the version
        stays pending.

        Raises:
            ServiceUnavailableError: the BOM is still being built.
        """
        state = self.settle(record, timeout=RELEASE_WAIT_SECONDS)
        if state.status is BomStatus.PENDING:
            raise ServiceUnavailableError(
                f"the ML-BOM of {record.ref} is still being built; retry the release",
                retry_after=RETRY_AFTER_SECONDS,
            )

    def status(self, record: VersionRecord) -> BomState:
        """The version's BOM status (None for datasets and code)."""
        if record.kind != "model":
            return BomState(None)
        with self._sessions() as session:
            return bom_state(session, version_id(session, record))

    def target(self, principal: Principal, ref: Ref) -> BomTarget:
        """The version ``ref`` selects (as :meth:`VersionService.resolve` selects it), its BOM
        status and current BOM, without reading its file list (which costs a model of 20,000
        files a good part of a second: a client waiting for a pending BOM asks repeatedly).

        Raises:
            NotFoundError: no such namespace, artifact, version, alias or digest.
        """
        principal.require(Action.READ, ref.namespace)
        query = selecting(
            select(Version.id, Version.version, Version.state, Version.file_count, Artifact.kind),
            ref,
        )
        with self._sessions() as session:
            row = session.execute(query.limit(1)).first()
            if row is None:
                raise NotFoundError(f"{ref} does not exist", ref=str(ref))
            vid, version, state, file_count, kind = row
            status = bom_state(session, vid) if kind == "model" else BomState(None)
            current = None
            if status.status is BomStatus.READY:
                current = session.execute(
                    select(Attestation.bundle)
                    .where(Attestation.version_id == vid,
                           Attestation.predicate_type == CYCLONEDX_BOM)
                    .order_by(Attestation.id.desc())
                    .limit(1)
                ).scalar_one_or_none()  # fmt: skip
        return BomTarget(f"{ref.namespace}/{ref.name}@{version}", kind, state, file_count,
                         status, current)  # fmt: skip

    def bom_input(self, record: VersionRecord) -> ModelBomInput:
        newest = self._newest(record)
        provenance, evaluation = newest.get(SLSA_PROVENANCE), newest.get(TEST_RESULT)
        read = read_predicate(provenance.predicate) if provenance else Provenance()
        card = model_card(read) if provenance else {}
        datasets: list[BomDataset] = []
        base_models: list[BomModelRef] = []
        code: BomCode | None = None
        for dep in read.dependencies:
            target = self._version(dep.ref)
            if target is None:
                continue  # refused at attach time; a BOM only names what the registry holds
            digest = target.root_digest.prefixed
            if dep.role == "dataset":
                datasets.append(self._dataset(target))
            elif dep.role == "base-model":
                base_models.append(BomModelRef(ref=target.ref, root_digest=digest))
            else:
                code = BomCode(ref=target.ref, root_digest=digest)
        if code is None and read.git is not None:
            code = BomCode(git_uri=read.git.url, git_commit=read.git.commit, dirty=read.git.dirty)
        environment: tuple[EnvPackage, ...] = ()
        env = read.byproduct("environment")
        if env is not None:
            environment = parse_environment(env.content, env.filename or "environment")
        return ModelBomInput(
            ref=record.ref,
            root_digest=record.root_digest.prefixed,
            files=_scanned_files(record, newest.get(SCAN)),
            datasets=tuple(datasets),
            base_models=tuple(base_models),
            code=code,
            environment=environment,
            metrics=_metrics(evaluation.predicate if evaluation else {}),
            task=_text(card.get("task")),
            architecture=_text(card.get("architecture")),
            considerations=card.get("considerations")
            if isinstance(card.get("considerations"), dict)
            else None,
            parameters=read.parameters,
            created=record.created_at,
            tool_version=__version__,
        )

    def _dataset(self, target: VersionRecord) -> BomDataset:
        provenance = self._newest(target).get(SLSA_PROVENANCE)
        read = read_predicate(provenance.predicate) if provenance else Provenance()
        card = model_card(read) if provenance else {}
        uris = dict(target.uris)
        sources = tuple(dict.fromkeys([*read.sources, *uris.values()]))
        return BomDataset(
            ref=target.ref,
            root_digest=target.root_digest.prefixed,
            files=tuple(BomFile(path=f.path, size=f.size, sha256=f.sha256) for f in target.files),
            sources=sources,
            external=target.external,
            state=target.state,
            description=_text(card.get("description")),
            classification=_text(card.get("classification")),
            owner=_text(card.get("owner")),
        )

    def _version(self, ref: str) -> VersionRecord | None:
        try:
            return self._versions.resolve(READER, parse_ref(ref))
        except (NotFoundError, ValueError):
            return None

    def _newest(self, record: VersionRecord) -> dict[str, Statement]:
        """The newest statement of each predicate type about ``record`` whose signature still
        verifies (one verification pass over its evidence)."""
        registry = TrustedKey(REGISTRY_SIGNER, self._signer.public_key)
        verifier = self._attestations.verifier(extra_keys=[registry])  # never empty
        evidence = self._attestations.verified_evidence(record, verifier=verifier)
        # The registry's key vouches for its scan only; user evidence comes from identities.
        registry_id = f"sha256:{registry.fingerprint}"
        return {
            v.statement.predicate_type: v.statement
            for v in evidence  # oldest first
            if (v.signer_id == registry_id) == (v.statement.predicate_type == SCAN)
        }

    def current(self, record: VersionRecord) -> bytes | None:
        """The newest BOM bundle of a version."""
        with self._sessions() as session:
            return session.execute(
                select(Attestation.bundle)
                .where(
                    Attestation.version_id == version_id(session, record),
                    Attestation.predicate_type == CYCLONEDX_BOM,
                )
                .order_by(Attestation.id.desc())
                .limit(1)
            ).scalar_one_or_none()


def _scanned_files(record: VersionRecord, scan: Statement | None) -> tuple[BomFile, ...]:
    """The version's files with the registry scan's format and verdict for each."""
    verdicts: dict[str, Mapping[str, Any]] = {}
    if scan is not None:
        for entry in scan.predicate.get("files", []):
            if isinstance(entry, Mapping) and isinstance(entry.get("path"), str):
                verdicts[entry["path"]] = entry
    files = []
    for f in record.files:
        entry = verdicts.get(f.path, {})
        fmt, verdict = entry.get("format"), entry.get("verdict")
        files.append(
            BomFile(
                path=f.path,
                size=f.size,
                sha256=f.sha256,
                scan_format=fmt if isinstance(fmt, str) else None,
                scan_verdict=verdict if isinstance(verdict, str) else None,
            )
        )
    return tuple(files)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _metrics(predicate: Mapping[str, Any]) -> tuple[Metric, ...]:
    metrics = predicate.get("metrics")
    if not isinstance(metrics, dict):
        return ()
    return tuple(
        Metric(name=str(k), value=v)
        for k, v in sorted(metrics.items())
        if isinstance(v, int | float | str) and not isinstance(v, bool)
    )


class AfterCommit:
    """:class:`VersionService`'s scanner hook: scan a new version. Its BOM is built by a worker
    (:mod:`.bomjobs`): the commit asked for it, and the scan asks again, due now."""

    def __init__(self, scans: ScanService) -> None:
        self.scans = scans

    def scan_version(self, record: VersionRecord) -> VersionRecord:
        return self.scans.scan_version(record)
