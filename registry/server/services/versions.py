"""Artifact versions: immutable file sets identified by their OMS root digest."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, TypeVarTuple

from sqlalchemy import Select, func, insert, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, raiseload, sessionmaker

from attest.digests import Digest, FileDigest, root_digest
from attest.scan import MIN_RULESET
from registry.errors import (
    ConflictError,
    InvalidManifestError,
    InvalidRequestError,
    MissingBlobsError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    ScanPendingError,
    VersionConflictError,
    VersionUnavailableError,
)
from registry.names import Kind, Ref, RefKind
from registry.server.config import Settings
from registry.server.db import transaction
from registry.server.models import (
    Alias,
    Artifact,
    Blob,
    ExternalFile,
    Namespace,
    NamespaceBlob,
    Version,
    VersionFile,
)
from registry.server.services.auth import Action, Principal
from registry.server.services.common import (
    Clock,
    Page,
    PageRequest,
    aware,
    ensure_namespace,
    get_namespace,
    insert_for,
    paged,
    release_memory,
    utcnow,
)
from registry.server.services.journal import record as audit_record
from registry.server.services.journal import version_target
from registry.server.storage import BlobStore


class Scanner(Protocol):
    """Scans a freshly committed version; returns it with its new state."""

    def scan_version(self, record: VersionRecord) -> VersionRecord: ...


class State:
    #: Committed, not scanned yet: nothing of it is served, nothing can release or reject it.
    SCANNING = "scanning"
    PENDING = "pending"
    RELEASED = "released"
    REJECTED = "rejected"
    REVOKED = "revoked"


#: Seconds a client is told to wait before asking again for a version being scanned.
SCAN_RETRY_SECONDS = 5


def scan_pending(record: VersionRecord) -> ScanPendingError:
    """The refusal of anything but reading the metadata of a version being scanned."""
    return ScanPendingError(
        f"{record.ref} is being scanned: none of its files is served, and it cannot be "
        "released or rejected, until its scan is recorded; retry shortly",
        state=record.state,
        retry_after=SCAN_RETRY_SECONDS,
    )


@dataclass(frozen=True, slots=True)
class VersionRecord:
    namespace: str
    name: str
    version: str
    kind: str
    state: str
    root_digest: Digest
    file_count: int
    total_size: int
    created_at: datetime
    created_by: str
    files: tuple[FileDigest, ...]  # empty in the record of one served file (servable_file)
    state_reason: str | None = None
    external: bool = False
    uris: tuple[tuple[str, str], ...] = ()  # (path, uri) of external files
    scan_ruleset: str | None = None  # of its newest registry scan

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}@{self.version}"

    @property
    def scan_outdated(self) -> bool:
        """A pending version scanned under rules older than the scanner's minimum (a replica
        on older code committed it during a rolling upgrade): not served until scanned again,
        since its files go to producers and evaluation jobs."""
        return self.state == State.PENDING and (
            self.scan_ruleset is None or self.scan_ruleset < MIN_RULESET
        )


@dataclass(frozen=True, slots=True)
class ArtifactRecord:
    namespace: str
    name: str
    kind: str
    created_at: datetime
    version_count: int


def _record(version: Version, *, files: bool = True) -> VersionRecord:
    """A version's record; without ``files``, its ``files`` and ``uris`` are left empty (and
    not loaded: a version may have tens of thousands)."""
    artifact = version.artifact
    if not files:
        return VersionRecord(
            namespace=artifact.namespace.name, name=artifact.name, version=version.version,
            kind=artifact.kind, state=version.state, root_digest=Digest(version.root_digest),
            file_count=version.file_count, total_size=version.total_size,
            created_at=aware(version.created_at), created_by=version.created_by, files=(),
            state_reason=version.state_reason, external=version.external,
            scan_ruleset=version.scan_ruleset,
        )  # fmt: skip
    return VersionRecord(
        namespace=artifact.namespace.name,
        name=artifact.name,
        version=version.version,
        kind=artifact.kind,
        state=version.state,
        root_digest=Digest(version.root_digest),
        file_count=version.file_count,
        total_size=version.total_size,
        created_at=aware(version.created_at),
        created_by=version.created_by,
        files=tuple(
            FileDigest(f.path, f.size, Digest(f.digest))
            for f in (version.external_files if version.external else version.files)
        ),
        state_reason=version.state_reason,
        external=version.external,
        uris=tuple((f.path, f.uri) for f in version.external_files),
        scan_ruleset=version.scan_ruleset,
    )


def check_manifest(files: Sequence[FileDigest], *, max_files: int) -> None:
    """Structural checks of a manifest whose paths and digests are already validated."""
    if not files:
        raise InvalidManifestError("a version needs at least one file")
    if len(files) > max_files:
        raise InvalidManifestError(
            f"a version may hold at most {max_files} files (got {len(files)})", limit=max_files
        )
    paths = sorted(f.path for f in files)
    for previous, current in itertools.pairwise(paths):
        if previous == current:
            raise InvalidManifestError(f"path {current!r} appears twice", path=current)
    as_set = set(paths)
    for path in paths:
        parts = path.split("/")
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            if prefix in as_set:
                raise InvalidManifestError(
                    f"{prefix!r} is both a file and a directory (of {path!r})", path=prefix
                )
    for f in files:
        if f.size < 0:
            raise InvalidManifestError(f"{f.path!r} has a negative size", path=f.path)


class VersionService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        store: BlobStore,
        settings: Settings,
        *,
        clock: Clock = utcnow,
        scanner: Scanner | None = None,
        presign: bool = False,
    ) -> None:
        """``presign``: whether :meth:`file_location` hands out presigned URLs when asked
        (decided by :func:`registry.server.app.create_app` from the settings, the store and
        the API the service answers for)."""
        self._sessions = sessions
        self._store = store
        self._settings = settings
        self._clock = clock
        self._scanner = scanner
        self._presign = presign

    def commit(
        self,
        principal: Principal,
        *,
        namespace: str,
        name: str,
        version: str,
        kind: Kind,
        files: Sequence[FileDigest],
        uris: Mapping[str, str] | None = None,
    ) -> tuple[VersionRecord, bool]:
        """Create a version from a manifest of uploaded blobs; returns ``(version, created)``.

        Pushing the same manifest again is idempotent (``created`` is false, nothing is written).
        With ``uris`` (path -> URI of every file) the version is *external*: registered by
        manifest only, its bytes stay where they live and nothing is uploaded.

        Raises:
            InvalidManifestError: duplicate paths, file/directory clashes, sizes that disagree
                with the uploaded blobs.
            MissingBlobsError: some blobs were never uploaded to this namespace.
            VersionConflictError: the version exists with other content.
            ConflictError: the artifact exists with another kind.
        """
        principal.require(Action.PUSH, namespace)
        check_manifest(files, max_files=self._settings.max_manifest_files)
        digest = root_digest(files)
        external = uris is not None
        if external and set(uris or {}) != {f.path for f in files}:
            raise InvalidManifestError("an external version needs a URI for every file")
        wanted = {(f.path, f.size, f.sha256, (uris or {}).get(f.path)) for f in files}

        existing = self._find_existing(namespace, name, version)
        if existing is not None:
            same = self._same_or_conflict(existing, kind, wanted, digest)
            if same.state == State.SCANNING:
                self._ask_scan(same)  # its commit request may have died before scanning it
            return same, False

        now = self._clock()
        # Many files are scanned after the answer (the commit of a 20,000-file model would
        # spend most of its time scanning, and on S3 reading each file takes a request).
        deferred = not external and len(files) > self._settings.scan_inline_max_files
        try:
            with transaction(self._sessions) as session:
                ns = ensure_namespace(session, namespace, now)
                artifact = self._ensure_artifact(session, ns, name, kind, now)
                if not external:
                    self._check_blobs(session, ns, files)
                ordered = sorted(files, key=lambda f: f.path)
                row = Version(
                    artifact_id=artifact.id,
                    version=version,
                    root_digest=digest,
                    state=State.SCANNING,
                    file_count=len(files),
                    total_size=sum(f.size for f in files),
                    created_at=now,
                    created_by=principal.name,
                    external=external,
                )
                session.add(row)
                session.flush()
                # The file rows in one bulk INSERT: as ORM objects, 20,000 of them cost seconds
                # (and reading them back as many again); the record is made from what was written.
                if uris is not None:
                    session.execute(insert(ExternalFile), [
                        {"version_id": row.id, "path": f.path, "size": f.size,
                         "digest": f.sha256, "uri": uris[f.path]} for f in ordered
                    ])  # fmt: skip
                else:
                    session.execute(insert(VersionFile), [
                        {"version_id": row.id, "path": f.path, "size": f.size,
                         "digest": f.sha256} for f in ordered
                    ])  # fmt: skip
                # The background job (services/bomjobs.py) scans what this request does not,
                # and builds a model's ML-BOM: asked for in this transaction, so no committed
                # version is left unscanned or without its BOM. For a version scanned below it
                # waits in case the request dies first (the scan asks again, due now).
                from registry.server.services.bomjobs import (  # (import cycle)
                    SCAN_GRACE,
                    enqueue,
                )

                enqueue(session, row.id, now, delay=timedelta(0) if deferred else SCAN_GRACE)
                record = VersionRecord(
                    namespace=namespace,
                    name=name,
                    version=version,
                    kind=str(kind),
                    state=State.SCANNING,
                    root_digest=digest,
                    file_count=len(files),
                    total_size=row.total_size,
                    created_at=aware(now),
                    created_by=principal.name,
                    files=tuple(FileDigest(f.path, f.size, f.sha256) for f in ordered),
                    external=external,
                    uris=tuple((f.path, uris[f.path]) for f in ordered) if uris is not None else (),
                )
                audit_record(session, principal, "put_version",
                             version_target(namespace, name, version), at=now,
                             details={"root_digest": digest, "kind": str(kind),
                                      "external": external})  # fmt: skip
        except IntegrityError:
            # A concurrent push of the same version won the unique constraint.
            existing = self._find_existing(namespace, name, version)
            if existing is not None:
                return self._same_or_conflict(existing, kind, wanted, digest), False
            if not external:
                # Or a blob went away between the check and the insert (`admin gc` collected
                # it as unreferenced): the check, run again, says which.
                with self._sessions() as session:
                    self._check_blobs(session, get_namespace(session, namespace), files)
            raise
        if not deferred and self._scanner is not None:
            try:
                record = self._scanner.scan_version(record)
            finally:
                release_memory()
        return record, True

    def _ask_scan(self, record: VersionRecord) -> None:
        """Make the job of a version still ``scanning`` due now (the same push again)."""
        from registry.server.services.bomjobs import enqueue  # (import cycle)

        with transaction(self._sessions) as session:
            enqueue(session, version_id(session, record), self._clock())

    def _find_existing(self, namespace: str, name: str, version: str) -> VersionRecord | None:
        with self._sessions() as session:
            row = session.execute(
                select(Version)
                .join(Artifact, Version.artifact_id == Artifact.id)
                .join(Namespace, Artifact.namespace_id == Namespace.id)
                .where(Namespace.name == namespace, Artifact.name == name)
                .where(Version.version == version)
            ).scalar_one_or_none()
            return None if row is None else _record(row)

    @staticmethod
    def _same_or_conflict(
        existing: VersionRecord,
        kind: Kind,
        wanted: set[tuple[str, int, Digest, str | None]],
        digest: str,
    ) -> VersionRecord:
        uris = dict(existing.uris)
        have = {(f.path, f.size, f.sha256, uris.get(f.path)) for f in existing.files}
        if existing.kind != kind or have != wanted:
            raise VersionConflictError(
                f"{existing.ref} already exists with other content "
                f"(sha256:{existing.root_digest}); versions are immutable, push a new version",
                existing=existing.root_digest.prefixed,
                got=f"sha256:{digest}",
            )
        return existing

    @staticmethod
    def _ensure_artifact(
        session: Session, ns: Namespace, name: str, kind: Kind, now: datetime
    ) -> Artifact:
        insert = insert_for(session)
        session.execute(
            insert(Artifact)
            .values(namespace_id=ns.id, name=name, kind=str(kind), created_at=now)
            .on_conflict_do_nothing(index_elements=["namespace_id", "name"])
        )
        artifact = session.execute(
            select(Artifact).where(Artifact.namespace_id == ns.id, Artifact.name == name)
        ).scalar_one()
        if artifact.kind != kind:
            raise ConflictError(
                f"{ns.name}/{name} is a {artifact.kind}, not a {kind}",
                expected=artifact.kind,
                got=str(kind),
            )
        return artifact

    @staticmethod
    def _check_blobs(session: Session, ns: Namespace, files: Sequence[FileDigest]) -> None:
        digests = {f.sha256 for f in files}
        held: dict[str, int] = {}
        digest_list = sorted(digests)
        for i in range(0, len(digest_list), 500):
            batch = digest_list[i : i + 500]
            for digest, size in session.execute(
                select(Blob.digest, Blob.size)
                .join(NamespaceBlob, NamespaceBlob.digest == Blob.digest)
                .where(NamespaceBlob.namespace_id == ns.id, Blob.digest.in_(batch))
            ):
                held[digest] = size
        missing = sorted(digests - held.keys())
        if missing:
            shown = ", ".join(d.prefixed for d in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise MissingBlobsError(
                f"{len(missing)} blob(s) were never uploaded to namespace {ns.name!r}: "
                f"{shown}{more}",
                missing=[d.prefixed for d in missing],
            )
        for f in files:
            if held[f.sha256] != f.size:
                raise InvalidManifestError(
                    f"{f.path!r} is declared as {f.size} bytes but its blob has {held[f.sha256]}",
                    path=f.path,
                    expected=held[f.sha256],
                    got=f.size,
                )

    # -- reading ----------------------------------------------------------------------------

    def resolve(self, principal: Principal, ref: Ref) -> VersionRecord:
        """The version a reference selects.

        Raises:
            NotFoundError: no such namespace, artifact, version, alias or digest.
        """
        principal.require(Action.READ, ref.namespace)
        with self._sessions() as session:
            row = session.execute(selecting(select(Version), ref).limit(1)).scalar_one_or_none()
            if row is None:
                raise NotFoundError(f"{ref} does not exist", ref=str(ref))
            return _record(row)

    def list_namespaces(self, principal: Principal, page: PageRequest) -> Page[str]:
        """The namespaces the caller can see, by name (one query, at most a page plus one)."""
        with self._sessions() as session:
            query = select(Namespace.name).order_by(Namespace.name).limit(page.limit + 1)
            if principal.namespace is not None:
                query = query.where(Namespace.name == principal.namespace)
            if page.after is not None:
                query = query.where(Namespace.name > page.after)
            return paged(list(session.execute(query).scalars()), page, str)

    def list_artifacts(
        self, principal: Principal, namespace: str, page: PageRequest
    ) -> Page[ArtifactRecord]:
        principal.require(Action.READ, namespace)
        with self._sessions() as session:
            ns = get_namespace(session, namespace)
            query = (
                select(Artifact, func.count(Version.id))
                .outerjoin(Version, Version.artifact_id == Artifact.id)
                .where(Artifact.namespace_id == ns.id)
                .group_by(Artifact.id)
                .order_by(Artifact.name)
                .limit(page.limit + 1)
            )
            if page.after is not None:
                query = query.where(Artifact.name > page.after)
            rows = session.execute(query).all()
            records = [
                ArtifactRecord(ns.name, a.name, a.kind, aware(a.created_at), int(count))
                for a, count in rows
            ]
            return paged(records, page, lambda r: r.name)

    def list_versions(
        self, principal: Principal, namespace: str, name: str, page: PageRequest
    ) -> Page[VersionRecord]:
        """Oldest first; a page's cursor is the version string of its last item."""
        principal.require(Action.READ, namespace)
        with self._sessions() as session:
            ns = get_namespace(session, namespace)
            artifact = session.execute(
                select(Artifact).where(Artifact.namespace_id == ns.id, Artifact.name == name)
            ).scalar_one_or_none()
            if artifact is None:
                raise NotFoundError(f"{namespace}/{name} does not exist")
            query = (
                select(Version)
                .where(Version.artifact_id == artifact.id)
                .order_by(Version.created_at, Version.id)
                .limit(page.limit + 1)
            )
            if page.after is not None:
                last = session.execute(
                    select(Version.created_at, Version.id).where(
                        Version.artifact_id == artifact.id, Version.version == page.after
                    )
                ).one_or_none()
                if last is None:
                    raise InvalidRequestError(
                        f"the cursor names no version of {namespace}/{name}", cursor=page.after
                    )
                query = query.where(tuple_(Version.created_at, Version.id) > tuple_(*last))
            records = [_record(v) for v in session.execute(query).scalars()]
            return paged(records, page, lambda r: r.version)

    def file_location(
        self, principal: Principal, ref: Ref, path: str, *, redirect: bool
    ) -> tuple[VersionRecord, FileDigest, str | None]:
        """A file of a version ``principal`` may download (see :meth:`servable_file`), and,
        when ``redirect`` is asked for and this service presigns downloads, a short-lived URL
        its bytes can be fetched from directly (else ``None``: stream :meth:`read_file`).

        The checks run before any URL is made: a URL is only handed out for a file the
        principal may download right now."""
        record, item = self.servable_file(principal, ref, path)
        if not (redirect and self._presign):
            return record, item, None
        url = self._store.presigned_read_url(item.sha256, expires=self._settings.s3_presign_seconds)
        return record, item, url

    def read_file(self, item: FileDigest) -> Iterator[bytes]:
        """The bytes of a file :meth:`servable_file` allowed."""
        return self._store.read(item.sha256)

    def servable_file(
        self, principal: Principal, ref: Ref, path: str
    ) -> tuple[VersionRecord, FileDigest]:
        """A file of a version that ``principal`` may download.

        Rejected and revoked versions are never served; pending ones only to roles that take
        part in producing a release (publishers, releasers, admins), never to deployers.
        """
        record, found = self._servable(principal, ref, [path])
        return record, found[0]

    def servable_files(
        self, principal: Principal, ref: Ref, paths: Sequence[str], *, max_size: int
    ) -> tuple[VersionRecord, list[FileDigest]]:
        """Files of a version that ``principal`` may download (the rules of
        :meth:`servable_file`), in the order of ``paths``, each of at most ``max_size`` bytes.

        Raises:
            NotFoundError: the version, or one of the paths, does not exist; it is external.
            PayloadTooLargeError: a file is larger than ``max_size``.
        """
        record, found = self._servable(principal, ref, paths)
        for item in found:
            if item.size > max_size:
                raise PayloadTooLargeError(
                    f"{item.path} is {item.size} bytes, more than a batch carries ({max_size}); "
                    "fetch it alone",
                    path=item.path,
                    limit=max_size,
                )
        return record, found

    def rescan(self, record: VersionRecord) -> None:
        """Put a pending version whose scan is outdated back to ``scanning``, its job due now
        (audited ``scan_outdated``)."""
        from registry.server.services.scanning import Outdated, queue_rescans

        with transaction(self._sessions) as session:
            vid = version_id(session, record)
            outdated = Outdated(vid, record.namespace, record.name, record.version,
                                record.scan_ruleset, State.PENDING)  # fmt: skip
            queue_rescans(session, [outdated], self._clock())

    def _servable(
        self, principal: Principal, ref: Ref, paths: Sequence[str]
    ) -> tuple[VersionRecord, list[FileDigest]]:
        principal.require(Action.READ, ref.namespace)
        wanted = set(paths)
        with self._sessions() as session:
            # The version without its file list (loading every file row to serve one would
            # make a pull of N files cost N^2), then the files asked for.
            row = session.execute(
                selecting(select(Version), ref)
                .options(raiseload(Version.files), raiseload(Version.external_files))
                .limit(1)
            ).scalar_one_or_none()
            if row is None:
                raise NotFoundError(f"{ref} does not exist", ref=str(ref))
            record = _record(row, files=False)
            found: dict[str, VersionFile | ExternalFile] = {}
            for i in range(0, len(paths), 500):
                chunk = list(paths[i : i + 500])
                if row.external:
                    query = select(ExternalFile).where(
                        ExternalFile.version_id == row.id, ExternalFile.path.in_(chunk)
                    )
                    found.update((f.path, f) for f in session.execute(query).scalars())
                else:
                    files = select(VersionFile).where(
                        VersionFile.version_id == row.id, VersionFile.path.in_(chunk)
                    )
                    found.update((f.path, f) for f in session.execute(files).scalars())
        if record.state in (State.REJECTED, State.REVOKED):
            raise VersionUnavailableError(
                f"{record.ref} is {record.state}: {record.state_reason or 'no reason recorded'}",
                state=record.state,
            )
        if record.state != State.RELEASED and not (
            principal.allowed(Action.PUSH, ref.namespace)
            or principal.allowed(Action.RELEASE, ref.namespace)
        ):
            raise PermissionDeniedError(
                f"{record.ref} is {record.state}; only released versions are served to "
                f"{principal.role} tokens",
                state=record.state,
            )
        if record.state == State.SCANNING:
            raise scan_pending(record)
        if record.scan_outdated:
            self.rescan(record)
            raise scan_pending(dataclasses.replace(record, state=State.SCANNING))
        missing = sorted(wanted - set(found))
        if missing:
            raise NotFoundError(f"{ref} has no file {missing[0]!r}", ref=str(ref), path=missing[0])
        for path in paths:
            external = found[path]
            if isinstance(external, ExternalFile):
                raise NotFoundError(
                    f"{record.ref} is external: the registry holds no bytes of {path!r}; "
                    f"they live at {external.uri}",
                    ref=str(ref),
                    path=path,
                    uri=external.uri,
                )
        return record, [
            FileDigest(found[p].path, found[p].size, Digest(found[p].digest)) for p in paths
        ]


Ts = TypeVarTuple("Ts")


def selecting(query: Select[*Ts], ref: Ref) -> Select[*Ts]:
    """``query`` (of columns of :class:`Version`) narrowed to the version ``ref`` selects: by
    version, by root digest (the oldest such version first), or by alias."""
    query = (
        query.join(Artifact, Version.artifact_id == Artifact.id)
        .join(Namespace, Artifact.namespace_id == Namespace.id)
        .where(Namespace.name == ref.namespace, Artifact.name == ref.name)
    )
    if ref.kind is RefKind.VERSION:
        return query.where(Version.version == ref.selector)
    if ref.kind is RefKind.DIGEST:
        return query.where(Version.root_digest == ref.selector.removeprefix("sha256:")).order_by(
            Version.created_at, Version.id
        )
    return query.join(Alias, Alias.version_id == Version.id).where(
        Alias.name == ref.selector, Alias.artifact_id == Artifact.id
    )


def version_id(session: Session, version: VersionRecord) -> int:
    """The database id of a version record."""
    return int(
        session.execute(
            select(Version.id)
            .join(Artifact, Version.artifact_id == Artifact.id)
            .join(Namespace, Artifact.namespace_id == Namespace.id)
            .where(
                Namespace.name == version.namespace,
                Artifact.name == version.name,
                Version.version == version.version,
            )
        ).scalar_one()
    )
