"""Scan every file of a new version and record a registry-signed scan attestation.

An unsafe or unscannable file makes the version ``rejected`` (no evidence or policy can mend it,
and a pending version's files are served to its producers); any other verdict leaves it
``pending``, and the release gate reads the signed report (``unknown`` files keep it there
unless the policy accepts them). A file the scanner cannot finish is
a verdict, never an error: the version stays committed and audited. The service reads blobs
through ranged reads and never deserializes them.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from attest.bundle import Bundle
from attest.predicates import SCAN
from attest.scan import MIN_RULESET, ScanReport, scan_files
from attest.scan.core import ScratchFailure
from attest.signing import Signer
from attest.statement import make_statement
from registry.errors import RegistryError, ServiceUnavailableError
from registry.server.db import transaction
from registry.server.models import Attestation, Version
from registry.server.services import journal
from registry.server.services.bomjobs import NO_BOM_ASK
from registry.server.services.common import Clock, utcnow
from registry.server.services.events import Event, stage
from registry.server.services.journal import version_target
from registry.server.services.versions import State, VersionRecord, version_id
from registry.server.storage import BlobStore
from registry.server.storage.reader import WINDOW, BlobFile

EXTERNAL_FORMAT = "external"
NOT_SCANNED = "not-scanned"
REGISTRY_SIGNER = "registry"
#: Retry-After of a commit whose scan failed on the registry's own temporary disk.
SCRATCH_RETRY_SECONDS = 30


def registry_attestation(
    vid: int, record: VersionRecord, bundle: Bundle, signer: Signer, now: datetime, *, actor: str
) -> Attestation:
    """The row of a statement the registry itself signed about ``record``."""
    return Attestation(
        version_id=vid,
        predicate_type=bundle.statement().predicate_type,
        subject_digest=record.root_digest,
        bundle=bundle.raw,
        bundle_digest=bundle.digest,
        signer=REGISTRY_SIGNER,
        signer_id=signer.identity,
        created_at=now,
        created_by=actor,
    )


def _rejection(report: ScanReport) -> str | None:
    """Why ``report`` rejects its version, or None. An unsafe file holds code; an unscannable
    one could not be read to its end (malformed, or a limit such as a bomb's ratio or a
    pickle's opcode count stopped the reading), so it may hold code past where the scan
    stopped. Neither is ever released, by any evidence or policy; served to producers and
    evaluation jobs as a pending version, either would run on their machines."""
    for kind, files in (("unsafe", report.unsafe), ("unscannable", report.unscannable)):
        if files:
            return f"scan: {kind} files: " + "; ".join(
                f"{f.path} ({', '.join(f.findings[:2])})" for f in files[:10]
            )
    return None


class ScanService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        store: BlobStore,
        signer: Signer,
        *,
        clock: Clock = utcnow,
    ) -> None:
        self._sessions = sessions
        self._store = store
        self._signer = signer
        self._clock = clock
        #: Called (after the report is stored) when a rescan finds a released version's file
        #: unsafe or unscannable, with the reason: the app revokes the version (and what is
        #: built on it). None: the gate alone refuses what depends on it.
        self.on_finding: Callable[[VersionRecord, str], None] | None = None

    def scan(self, record: VersionRecord) -> ScanReport:
        stored = {f.path: f for f in record.files}

        def open_file(path: str) -> IO[bytes]:
            item = stored[path]
            if item.size <= WINDOW:
                # BlobFile's first read fetches a blob this small whole anyway; reading it once
                # into memory spares the scanner's many small reads and seeks their Python
                # overhead (a 20,000-file model: 2.3 s -> 1.4 s of scanning in the commit).
                whole = self._store.read(item.sha256, start=0, length=item.size)
                return io.BytesIO(b"".join(whole))
            return io.BufferedReader(BlobFile(self._store, item.sha256, item.size))

        try:
            return scan_files(((f.path, f.size) for f in record.files), open_file,
                              propagate=(RegistryError,))  # fmt: skip
        except ScratchFailure as exc:  # no verdict: the scan is tried again
            raise ServiceUnavailableError(
                f"scanning {record.ref} failed: {exc}", retry_after=SCRATCH_RETRY_SECONDS
            ) from exc

    def scan_version(self, record: VersionRecord, *, ask_bom: bool = True) -> VersionRecord:
        """Scan ``record`` and record the signed report; a version ``scanning`` becomes
        ``pending``, or ``rejected`` when a file is unsafe or unscannable. ``ask_bom=False``:
        the report does not ask for the model's BOM (the BOM job scanning it builds it next
        anyway)."""
        digests = {f.path: f.sha256 for f in record.files}
        if record.external:
            # No bytes here to scan: say so, signed; the gate refuses unscanned files unless the
            # policy accepts them (scan: {allow_formats: [external]}).
            report = ScanReport(())
            predicate = report.to_json()
            predicate["files"] = [
                {"path": path, "format": EXTERNAL_FORMAT, "verdict": NOT_SCANNED,
                 "findings": [f"external: bytes at {uri}"], "pickle": False}
                for path, uri in record.uris
            ]  # fmt: skip
            predicate["verdict"] = NOT_SCANNED
        else:
            report = self.scan(record)
            predicate = report.to_json()
        for entry in predicate["files"]:
            entry["digest"] = f"sha256:{digests[entry['path']]}"
        statement = make_statement(
            name=f"{record.namespace}/{record.name}",
            root_digest=record.root_digest,
            predicate_type=SCAN,
            predicate=predicate,
        )
        bundle = self._signer.sign(statement)
        state, reason = State.PENDING, _rejection(report)
        if reason is not None:
            state = State.REJECTED
        with transaction(self._sessions) as session:
            if not ask_bom:
                session.info[NO_BOM_ASK] = True
            vid = version_id(session, record)
            session.add(registry_attestation(vid, record, bundle, self._signer, self._clock(),
                                             actor=REGISTRY_SIGNER))  # fmt: skip
            ruleset = str(predicate.get("scanner", {}).get("ruleset", ""))[:32] or None
            released = record.state == State.RELEASED
            revoke = released and reason is not None and self.on_finding is not None
            if not revoke:  # (else once revoked: until then the version stays outdated, and
                # its job, the next start or the next gate scans it and tries again)
                session.execute(
                    update(Version).where(Version.id == vid).values(scan_ruleset=ruleset)
                )
            if record.state not in (State.SCANNING, State.PENDING):
                record_now = record  # a rescan: the report is recorded, the state kept here
            else:
                record_now = None
            if record_now is None and state != record.state:
                # From scanning (its first scan) or pending (a rescan found it unsafe or
                # unscannable).
                moved = session.execute(
                    update(Version)
                    .where(Version.id == vid, Version.state.in_((State.SCANNING, State.PENDING)))
                    .values(state=state, state_reason=reason)
                ).rowcount  # type: ignore[attr-defined]
                if moved == 1 and state == State.REJECTED:
                    # A malicious file is an alarm, not only a state: audited and sent out in
                    # the transaction of the rejection.
                    stage(session, Event.VERSION_REJECTED, actor=REGISTRY_SIGNER,
                          version=record.ref, root_digest=record.root_digest, reason=reason,
                          pushed_by=record.created_by)  # fmt: skip
                    journal.record(session, REGISTRY_SIGNER, "scan_reject",
                                   version_target(record.namespace, record.name, record.version),
                                   at=self._clock(),
                                   details={"reason": (reason or "")[:2000]})  # fmt: skip
        if record_now is not None:
            if revoke and self.on_finding is not None and reason is not None:
                self.on_finding(record, reason)
                with transaction(self._sessions) as session:
                    session.execute(
                        update(Version).where(Version.id == vid).values(scan_ruleset=ruleset)
                    )
            return record_now
        return dataclasses.replace(record, state=state, state_reason=reason)

    def rescan_if_stale(self, record: VersionRecord) -> VersionRecord:
        """Scan a pending or released version again when its newest registry scan was made
        under a ruleset older than :data:`~attest.scan.MIN_RULESET` (older rules called
        unidentified files clean); otherwise return it unchanged. Scanning again is always
        safe: the new signed report becomes the newest, and only a pending version changes
        state (unsafe or unscannable: rejected). A released version that now fails is handed to
        :attr:`on_finding` (the app revokes it and what is built on it), and the gate refuses
        what depends on it."""
        if record.state not in (State.PENDING, State.RELEASED) or record.external:
            return record
        with self._sessions() as session:
            raw = session.execute(
                select(Attestation.bundle)
                .where(
                    Attestation.version_id == version_id(session, record),
                    Attestation.predicate_type == SCAN,
                    Attestation.signer == REGISTRY_SIGNER,
                )
                .order_by(Attestation.id.desc())
                .limit(1)
            ).scalar_one_or_none()
        if raw is not None:
            scanner = Bundle.parse(raw).statement().predicate.get("scanner")
            ruleset = scanner.get("ruleset") if isinstance(scanner, dict) else None
            if isinstance(ruleset, str) and ruleset >= MIN_RULESET:
                return record
        return self.scan_version(record)


@dataclass(frozen=True, slots=True)
class Outdated:
    """A version whose newest scan was made under rules older than the minimum."""

    id: int
    namespace: str
    name: str
    version: str
    ruleset: str | None
    state: str


def queue_rescans(session: Session, versions: Sequence[Outdated], now: datetime) -> list[int]:
    """In ``session``'s transaction: put each pending one of ``versions`` back to ``scanning``,
    queue each one's scan job, due ``now``, and audit each as ``scan_outdated``. A version no
    longer in the state it was read in is left alone (another replica moved it). Returns the
    ids queued."""
    from registry.server.services.bomjobs import enqueue

    queued: list[int] = []
    for item in versions:
        if item.state == State.PENDING:
            moved = session.execute(
                update(Version)
                .where(Version.id == item.id, Version.state == State.PENDING)
                .values(state=State.SCANNING)
            ).rowcount  # type: ignore[attr-defined]
            if moved != 1:
                continue
        enqueue(session, item.id, now)
        journal.record(session, REGISTRY_SIGNER, "scan_outdated",
                       version_target(item.namespace, item.name, item.version), at=now,
                       details={"ruleset": item.ruleset, "minimum": MIN_RULESET,
                                "state": item.state})  # fmt: skip
        queued.append(item.id)
    return queued


def rescan_outdated(sessions: sessionmaker[Session], now: datetime) -> list[str]:
    """Have every pending or released version whose newest scan was made under a ruleset older
    than :data:`~attest.scan.MIN_RULESET` (or before rulesets were recorded) scanned again, its
    job due now (older rules may have called a file clean, or left an unscannable file pending).
    A pending version goes back to ``scanning`` first: its files are served to producers and
    evaluation jobs, so nobody gets them before the current rules judged them. A released one
    keeps being served meanwhile (deploys go on); a file the rescan finds unsafe or unscannable
    revokes it (:attr:`ScanService.on_finding`). Each is audited. Returns their references. Run
    at start-up, under the start-up lock."""
    from registry.server.models import Artifact, Namespace

    with transaction(sessions) as session:
        rows = session.execute(
            select(Version.id, Namespace.name, Artifact.name, Version.version,
                   Version.scan_ruleset, Version.state)
            .join(Artifact, Version.artifact_id == Artifact.id)
            .join(Namespace, Artifact.namespace_id == Namespace.id)
            .where(Version.state.in_((State.PENDING, State.RELEASED)),
                   (Version.scan_ruleset.is_(None)) | (Version.scan_ruleset < MIN_RULESET))
            .order_by(Version.id)
        ).all()  # fmt: skip
        outdated = [Outdated(*row) for row in rows]
        queued = set(queue_rescans(session, outdated, now))
    return [f"{o.namespace}/{o.name}@{o.version}" for o in outdated if o.id in queued]
