"""The registry builds, validates and signs a CycloneDX 1.6 ML-BOM for every model version.

Built when a model version is committed, and rebuilt while it is pending whenever provenance or
evaluation results arrive (the newest BOM attestation is the current one). Every digest in it
comes from the registry's own records: the version's files, and the dependency versions the
(verified) provenance names, looked up here. Evidence is re-verified before it is read.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from attest.bundle import Bundle
from attest.keys import TrustedKey
from attest.predicates import CYCLONEDX_BOM, SCAN, SLSA_PROVENANCE, TEST_RESULT
from attest.provenance import Provenance, model_card, read_predicate
from attest.signing import KeySigner, UriSigner
from attest.statement import Statement, make_statement
from registry import __version__
from registry.errors import NotFoundError
from registry.names import parse_ref
from registry.server.db import transaction
from registry.server.models import Attestation
from registry.server.services.attestations import READER, AttestationService
from registry.server.services.common import Clock, utcnow
from registry.server.services.scanning import REGISTRY_SIGNER, ScanService, registry_attestation
from registry.server.services.versions import State, VersionRecord, VersionService, version_id
from sbom import (
    BomCode,
    BomDataset,
    BomFile,
    BomModelRef,
    EnvPackage,
    Metric,
    ModelBomInput,
    build_model_bom,
    parse_environment,
    validate_bom,
)

log = logging.getLogger(__name__)


class BomService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        versions: VersionService,
        attestations: AttestationService,
        signer: KeySigner | UriSigner,
        *,
        clock: Clock = utcnow,
    ) -> None:
        self._sessions = sessions
        self._versions = versions
        self._attestations = attestations
        self._signer = signer
        self._clock = clock

    def rebuild(self, record: VersionRecord) -> dict[str, Any] | None:
        """Build, validate, sign and store the BOM of a pending model version."""
        if record.kind != "model" or record.state != State.PENDING:
            return None
        bom = build_model_bom(self.bom_input(record))
        validate_bom(bom)
        current = self.current(record)
        if current is not None and dict(Bundle.parse(current).statement().predicate) == bom:
            return bom  # nothing changed: no new attestation (builds are deterministic)
        statement = make_statement(
            name=f"{record.namespace}/{record.name}",
            root_digest=record.root_digest,
            predicate_type=CYCLONEDX_BOM,
            predicate=bom,
        )
        bundle = self._signer.sign(statement)
        with transaction(self._sessions) as session:
            vid = version_id(session, record)
            session.add(registry_attestation(vid, record, bundle, self._signer, self._clock(),
                                             actor=REGISTRY_SIGNER))  # fmt: skip
        return bom

    def rebuild_logged(self, record: VersionRecord) -> None:
        """:meth:`rebuild` after a change that already happened: a failure is logged, never
        raised (the BOM is evidence about the version, not a condition of storing it)."""
        try:
            self.rebuild(record)
        except Exception:
            log.exception("%s: building the ML-BOM failed", record.ref)

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
            digest = f"sha256:{target.root_digest}"
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
            root_digest=f"sha256:{record.root_digest}",
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
            root_digest=f"sha256:{target.root_digest}",
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
    """:class:`VersionService`'s scanner hook: scan a new version, then build its BOM."""

    def __init__(self, scans: ScanService) -> None:
        self.scans = scans
        self.bom: BomService | None = None

    def scan_version(self, record: VersionRecord) -> VersionRecord:
        record = self.scans.scan_version(record)
        if self.bom is not None:
            self.bom.rebuild_logged(record)
        return record
