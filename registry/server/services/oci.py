"""Versions as OCI artifacts: CNCF ModelPack manifests generated from what the registry holds.

Nothing is stored for OCI: a version's manifest and its config blob are built from the version's
immutable record (namespace, name, version, kind, root digest, creation time, files) as canonical
JSON (sorted keys, no whitespace, sorted layers), so the same version gives the same bytes, and
so the same manifest digest, on every replica and after every restart. A version's state is
deliberately not in them: a release does not change the artifact. Each file is one raw layer
whose digest is the file's SHA-256 as the registry already verified it (no re-hash, no copy).

Access is decided by :class:`VersionService`: a manifest is shown only for a version its caller
could download a file of, and a blob's bytes only come through
:meth:`VersionService.file_location` for a file of such a version *in the repository asked*
(knowing a digest grants nothing).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased, sessionmaker

from attest.bundle import BUNDLE_MEDIA_TYPE
from attest.digests import FileDigest, is_sha256_hex
from attest.predicates import OCI_RELEASE, RELEASE, REVOCATION
from attest.signing import Signer
from attest.statement import make_statement
from registry.errors import InvalidRequestError, NotFoundError
from registry.names import Kind, Ref, RefKind, parse_selector
from registry.server.db import transaction
from registry.server.models import (
    Alias,
    Artifact,
    Attestation,
    Namespace,
    OciArtifact,
    OciReferrer,
    Version,
    VersionFile,
)
from registry.server.services.auth import Action, Principal
from registry.server.services.common import Clock, utcnow
from registry.server.services.lifecycle import LifecycleService
from registry.server.services.versions import State, VersionRecord, VersionService
from registry.server.storage import BlobStore

log = logging.getLogger(__name__)

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
MODEL_ARTIFACT_TYPE = "application/vnd.cncf.model.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.cncf.model.config.v1+json"
WEIGHT = "application/vnd.cncf.model.weight.v1.raw"
WEIGHT_CONFIG = "application/vnd.cncf.model.weight.config.v1.raw"
DOC = "application/vnd.cncf.model.doc.v1.raw"
CODE = "application/vnd.cncf.model.code.v1.raw"
DATASET = "application/vnd.cncf.model.dataset.v1.raw"
FILEPATH = "org.cncf.model.filepath"
TITLE = "org.opencontainers.image.title"
ROOT_DIGEST = "dev.modelseal.root-digest"
CREATED = "org.opencontainers.image.created"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
#: The empty config of an artifact whose content is all in its layers (image-spec 1.1).
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"
EMPTY_DIGEST = "sha256:" + hashlib.sha256(EMPTY_CONFIG).hexdigest()
#: Annotations cosign writes on a Sigstore-bundle referrer.
BUNDLE_CONTENT = "dev.sigstore.bundle.content"
BUNDLE_PREDICATE_TYPE = "dev.sigstore.bundle.predicateType"

#: OCI tags (distribution-spec): versions that are not valid tags are not listed as tags.
TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
_FILL_BATCH = 100  # artifacts stored per digest miss (a restored database fills over misses)

_WEIGHT_EXT = {
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".ckpt",
    ".gguf",
    ".ggml",
    ".onnx",
    ".h5",
    ".hdf5",
    ".keras",
    ".pb",
    ".tflite",
    ".npz",
    ".npy",
    ".msgpack",
    ".pkl",
    ".pickle",
    ".joblib",
    ".mlmodel",
    ".engine",
    ".plan",
    ".params",
}
_FORMATS = {
    ".safetensors": "safetensors",
    ".gguf": "gguf",
    ".onnx": "onnx",
    ".pt": "pytorch",
    ".pth": "pytorch",
    ".bin": "pytorch",
    ".ckpt": "pytorch",
    ".keras": "keras",
    ".h5": "keras",
    ".hdf5": "keras",
    ".tflite": "tflite",
    ".pb": "tensorflow",
    ".npz": "numpy",
    ".npy": "numpy",
}
_CONFIG_EXT = {
    ".json",
    ".yaml",
    ".yml",
    ".toml",
    ".cfg",
    ".ini",
    ".model",
    ".tiktoken",
    ".vocab",
    ".spm",
    ".jinja",
}
_DOC_EXT = {".md", ".rst", ".pdf", ".html", ".txt", ".adoc"}
_DOC_NAMES = ("readme", "license", "licence", "notice", "copying", "model_card", "modelcard",
              "citation", "changelog", "authors")  # fmt: skip
_CODE_EXT = {
    ".py",
    ".ipynb",
    ".sh",
    ".js",
    ".ts",
    ".go",
    ".rs",
    ".c",
    ".cc",
    ".cpp",
    ".h",
    ".hpp",
    ".cu",
    ".java",
    ".scala",
    ".r",
    ".jl",
    ".lua",
    ".rb",
    ".swift",
}
_CODE_NAMES = ("dockerfile", "makefile", "requirements", "pyproject", "setup.", "environment")
_DATA_EXT = {
    ".csv",
    ".tsv",
    ".parquet",
    ".arrow",
    ".jsonl",
    ".tfrecord",
    ".avro",
    ".orc",
    ".feather",
    ".xlsx",
    ".wav",
    ".flac",
    ".jpg",
    ".jpeg",
    ".png",
}


class OciCode(StrEnum):
    """Error codes of the distribution-spec."""

    BLOB_UNKNOWN = "BLOB_UNKNOWN"
    DIGEST_INVALID = "DIGEST_INVALID"
    MANIFEST_UNKNOWN = "MANIFEST_UNKNOWN"
    NAME_INVALID = "NAME_INVALID"
    NAME_UNKNOWN = "NAME_UNKNOWN"
    SIZE_INVALID = "SIZE_INVALID"
    UNAUTHORIZED = "UNAUTHORIZED"
    DENIED = "DENIED"
    UNSUPPORTED = "UNSUPPORTED"
    TOOMANYREQUESTS = "TOOMANYREQUESTS"


_STATUS = {
    OciCode.BLOB_UNKNOWN: 404,
    OciCode.DIGEST_INVALID: 400,
    OciCode.MANIFEST_UNKNOWN: 404,
    OciCode.NAME_INVALID: 400,
    OciCode.NAME_UNKNOWN: 404,
    OciCode.SIZE_INVALID: 416,
    OciCode.UNAUTHORIZED: 401,
    OciCode.DENIED: 403,
    OciCode.UNSUPPORTED: 405,
    OciCode.TOOMANYREQUESTS: 429,
}


class OciError(Exception):
    """A refusal in the distribution-spec's terms. ``hidden`` marks a version that exists but
    is not shown to this caller (pending, for a deployer): the answer is "unknown", and the
    route records the refusal in the audit log as a denial."""

    def __init__(
        self, code: OciCode, message: str, *, hidden: bool = False, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hidden = hidden
        self._status = status

    @property
    def status(self) -> int:
        return self._status if self._status is not None else _STATUS[self.code]

    def body(self) -> dict[str, Any]:
        return {"errors": [{"code": str(self.code), "message": self.message, "detail": None}]}


def canonical(value: Any) -> bytes:
    """Canonical JSON: sorted keys, no whitespace, UTF-8 (the manifest's bytes are its identity)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_media_type(kind: str, path: str) -> str:
    """The ModelPack layer type of a file, by the version's kind and the file's name."""
    if kind == Kind.DATASET:
        return DATASET
    if kind == Kind.CODE:
        return CODE
    lowered = path.lower()
    base = lowered.rsplit("/", 1)[-1]
    ext = "." + base.rsplit(".", 1)[-1] if "." in base else ""
    if ext in _WEIGHT_EXT:
        return WEIGHT
    if "tokenizer" in lowered or "vocab" in base or "merges" in base or ext in _CONFIG_EXT:
        return WEIGHT_CONFIG
    if ext in _DOC_EXT or base.startswith(_DOC_NAMES):
        return DOC
    if ext in _CODE_EXT or base.startswith(_CODE_NAMES):
        return CODE
    if ext in _DATA_EXT:
        return DATASET
    return WEIGHT  # an unnamed binary of a model: its weights, as far as a loader is concerned


@dataclass(frozen=True, slots=True)
class Document:
    """Bytes served under their digest (a manifest or a config blob)."""

    body: bytes
    digest: str
    media_type: str


@dataclass(frozen=True, slots=True)
class ServedManifest:
    record: VersionRecord
    manifest: Document


@dataclass(frozen=True, slots=True)
class ServedBlob:
    """A blob a caller may read: a file of a version (``item``; ``url`` when presigned), or a
    stored document (a config blob, an evidence bundle: ``document``)."""

    record: VersionRecord | None
    item: FileDigest | None = None
    url: str | None = None
    document: Document | None = None

    @property
    def size(self) -> int:
        if self.document is not None:
            return len(self.document.body)
        assert self.item is not None
        return self.item.size


@dataclass(frozen=True, slots=True)
class Referrer:
    """A descriptor of the referrers index: one evidence bundle as an artifact."""

    digest: str
    size: int
    predicate_type: str
    created: str

    def descriptor(self) -> dict[str, Any]:
        return {
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": self.digest,
            "size": self.size,
            "artifactType": BUNDLE_MEDIA_TYPE,
            "annotations": {
                BUNDLE_CONTENT: "dsse-envelope",
                BUNDLE_PREDICATE_TYPE: self.predicate_type,
                CREATED: self.created,
            },
        }


def _created(record: VersionRecord) -> str:
    return record.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _files(record: VersionRecord) -> list[FileDigest]:
    return sorted(record.files, key=lambda f: f.path)


def config_document(record: VersionRecord) -> Document:
    """The ModelPack config blob of a version (only immutable facts)."""
    files = _files(record)
    formats = {
        _FORMATS[ext]
        for f in files
        if layer_media_type(record.kind, f.path) == WEIGHT
        and (ext := "." + f.path.rsplit(".", 1)[-1].lower()) in _FORMATS
    }
    config: dict[str, Any] = {}
    if len(formats) == 1:
        config["format"] = formats.pop()
    body = {
        "descriptor": {
            "createdAt": _created(record),
            "name": f"{record.namespace}/{record.name}",
            "version": record.version,
        },
        "config": config,
        "modelfs": {"type": "layers", "diffIds": [f.sha256.prefixed for f in files]},
    }
    data = canonical(body)
    return Document(data, sha256_digest(data), CONFIG_MEDIA_TYPE)


def manifest_document(record: VersionRecord) -> Document:
    """The ModelPack manifest of a version: deterministic bytes, hence a stable digest."""
    config = config_document(record)
    layers = [
        {
            "mediaType": layer_media_type(record.kind, f.path),
            "digest": f.sha256.prefixed,
            "size": f.size,
            "annotations": {FILEPATH: f.path, TITLE: f.path},
        }
        for f in _files(record)
    ]
    body = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": MODEL_ARTIFACT_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": config.digest,
            "size": len(config.body),
        },
        "layers": layers,
        "annotations": {
            "org.opencontainers.image.created": _created(record),
            "org.opencontainers.image.version": record.version,
            ROOT_DIGEST: record.root_digest.prefixed,
        },
    }
    data = canonical(body)
    return Document(data, sha256_digest(data), MANIFEST_MEDIA_TYPE)


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def referrer_document(
    subject: Document, bundle: bytes, predicate_type: str, created: datetime
) -> Document:
    """One evidence bundle as an OCI artifact about ``subject`` (a model manifest), in the form
    cosign writes Sigstore bundles: an empty config, the bundle as the only layer, and the
    bundle's content and predicate type as annotations."""
    body = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": BUNDLE_MEDIA_TYPE,
        "config": {"mediaType": EMPTY_MEDIA_TYPE, "digest": EMPTY_DIGEST, "size": 2},
        "layers": [
            {"mediaType": BUNDLE_MEDIA_TYPE, "digest": sha256_digest(bundle), "size": len(bundle)}
        ],
        "subject": {
            "mediaType": subject.media_type,
            "digest": subject.digest,
            "size": len(subject.body),
        },
        "annotations": {
            BUNDLE_CONTENT: "dsse-envelope",
            BUNDLE_PREDICATE_TYPE: predicate_type,
            CREATED: _timestamp(created),
        },
    }
    data = canonical(body)
    return Document(data, sha256_digest(data), MANIFEST_MEDIA_TYPE)


def parse_digest(value: str) -> str:
    """The hex of a ``sha256:<hex>`` digest, or DIGEST_INVALID."""
    algorithm, _, hexpart = value.partition(":")
    if algorithm != "sha256" or not is_sha256_hex(hexpart):
        raise OciError(OciCode.DIGEST_INVALID, f"unsupported or malformed digest {value[:80]!r}")
    return hexpart


class OciService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        versions: VersionService,
        lifecycle: LifecycleService,
        store: BlobStore,
        signer: Signer,
        *,
        clock: Clock = utcnow,
    ) -> None:
        self._sessions = sessions
        self._versions = versions
        self._lifecycle = lifecycle
        self._store = store
        self._signer = signer
        self._clock = clock

    # -- who sees what --------------------------------------------------------------------------

    @staticmethod
    def _producer(principal: Principal, namespace: str) -> bool:
        """Whether ``principal`` takes part in producing this namespace's releases (and so may
        pull pending versions, as file downloads allow)."""
        return principal.allowed(Action.PUSH, namespace) or principal.allowed(
            Action.RELEASE, namespace
        )

    def _states(self, principal: Principal, namespace: str) -> tuple[str, ...]:
        if self._producer(principal, namespace):
            return (State.RELEASED, State.PENDING)
        return (State.RELEASED,)

    def _signed_revocation(self) -> Any:
        """An EXISTS clause: the registry (by its key, not a name column a database edit can
        change) signed a revocation of the version."""
        revocation = aliased(Attestation)
        return (
            select(revocation.id)
            .where(
                revocation.version_id == Version.id,
                revocation.predicate_type == REVOCATION,
                revocation.signer_id == self._signer.identity,
            )
            .correlate(Version)
            .exists()
        )

    @staticmethod
    def _repository(namespace: str, name: str) -> Any:
        """The versions of repository ``namespace/name`` (a select to add columns to)."""
        return (
            select(Version.version)
            .join(Artifact, Version.artifact_id == Artifact.id)
            .join(Namespace, Artifact.namespace_id == Namespace.id)
            .where(Namespace.name == namespace, Artifact.name == name)
        )

    def _pullable(self, principal: Principal, namespace: str, name: str) -> Any:
        """The versions of the repository ``principal`` may pull, as a select: its states,
        never external, never one the registry signed a revocation of (whatever the state
        column says: a row flipped back to released by hand is not served)."""
        return (
            self._repository(namespace, name)
            .where(Version.state.in_(self._states(principal, namespace)))
            .where(Version.external.is_(False), ~self._signed_revocation())
        )

    def _effective(self, record: VersionRecord) -> VersionRecord:
        """``record`` as revoked when the registry signed a revocation of it."""
        if record.state == State.REVOKED:
            return record
        with self._sessions() as session:
            revoked = session.execute(
                self._repository(record.namespace, record.name)
                .where(Version.version == record.version, self._signed_revocation())
                .limit(1)
            ).first()
        if revoked is None:
            return record
        return dataclasses.replace(
            record,
            state=State.REVOKED,
            state_reason="revoked (a registry-signed revocation exists)",
        )

    def _check(self, principal: Principal, record: VersionRecord, reference: str) -> None:
        """Raises unless ``principal`` may pull ``record``: DENIED naming the state of a revoked
        or rejected version, MANIFEST_UNKNOWN for an external one, and a *hidden*
        MANIFEST_UNKNOWN (audited as the denial it is) for a pending one shown to a deployer."""
        if record.state in (State.REJECTED, State.REVOKED):
            raise OciError(
                OciCode.DENIED,
                f"{record.ref} is {record.state}: {record.state_reason or 'no reason recorded'}",
            )
        if record.external:
            raise OciError(
                OciCode.MANIFEST_UNKNOWN,
                f"{record.ref} is external: the registry holds none of its bytes",
            )
        if record.state != State.RELEASED and not self._producer(principal, record.namespace):
            raise OciError(OciCode.MANIFEST_UNKNOWN, f"manifest {reference!r} unknown", hidden=True)
        if record.scan_outdated:  # scanned by a replica on older rules: scanned again first
            self._versions.rescan(record)
            record = dataclasses.replace(record, state=State.SCANNING)
        if record.state == State.SCANNING:  # (a tag names it; blobs are only of pullable ones)
            raise OciError(
                OciCode.MANIFEST_UNKNOWN,
                f"{record.ref} is being scanned: nothing of it is served until its scan is "
                "recorded",
            )

    def _require_repository(self, namespace: str, name: str) -> None:
        """NAME_UNKNOWN unless the repository exists."""
        with self._sessions() as session:
            found = session.execute(
                select(Artifact.id)
                .join(Namespace, Artifact.namespace_id == Namespace.id)
                .where(Namespace.name == namespace, Artifact.name == name)
            ).first()
        if found is None:
            raise OciError(OciCode.NAME_UNKNOWN, f"repository {namespace}/{name} is not known")

    def _record(
        self, principal: Principal, namespace: str, name: str, version: str
    ) -> VersionRecord:
        ref = Ref(namespace, name, version, RefKind.VERSION)
        return self._effective(self._versions.resolve(principal, ref))

    # -- the stored artifact ----------------------------------------------------------------

    def _version_id(self, session: Session, record: VersionRecord) -> int | None:
        return session.execute(
            select(Version.id)
            .join(Artifact, Version.artifact_id == Artifact.id)
            .join(Namespace, Artifact.namespace_id == Namespace.id)
            .where(Namespace.name == record.namespace, Artifact.name == record.name)
            .where(Version.version == record.version)
        ).scalar_one_or_none()

    def _stored(self, record: VersionRecord) -> tuple[int, OciArtifact]:
        """The version's stored OCI artifact, storing it the first time (whoever stores first
        wins; everyone then serves those bytes, so the digest never changes)."""
        with self._sessions() as session:
            vid = self._version_id(session, record)
            if vid is None:
                raise OciError(OciCode.MANIFEST_UNKNOWN, f"{record.ref} is not known")
            row = session.get(OciArtifact, vid)
            if row is not None:
                session.expunge(row)
                return vid, row
        manifest, config = manifest_document(record), config_document(record)
        try:
            with transaction(self._sessions) as session:
                session.add(OciArtifact(
                    version_id=vid, manifest_digest=manifest.digest.removeprefix("sha256:"),
                    manifest=manifest.body, config_digest=config.digest.removeprefix("sha256:"),
                    config=config.body, created_at=self._clock(),
                ))  # fmt: skip
        except IntegrityError:
            pass  # stored by another request or replica a moment ago: serve theirs
        with self._sessions() as session:
            row = session.get(OciArtifact, vid)
            if row is None:  # the version was deleted under us
                raise OciError(OciCode.MANIFEST_UNKNOWN, f"{record.ref} is not known")
            session.expunge(row)
            return vid, row

    @staticmethod
    def _manifest(row: OciArtifact, record: VersionRecord) -> Document:
        """The stored manifest, only if its bytes still hash to its digest (the digest the
        registry signs at release): an edited row is refused, never served under it."""
        if hashlib.sha256(row.manifest).hexdigest() != row.manifest_digest:
            log.error("the stored OCI manifest of %s does not hash to its digest", record.ref)
            raise OciError(
                OciCode.DENIED,
                f"the stored manifest of {record.ref} does not match its digest and is not "
                "served (an operator must restore it; see `modelseal admin fsck`)",
            )
        return Document(row.manifest, row.manifest_digest.prefixed, MANIFEST_MEDIA_TYPE)

    def _store_missing(self, principal: Principal, namespace: str, name: str) -> None:
        """Store the artifacts of this repository's pullable versions not served before (a
        digest can only name a manifest someone was shown, but a database restored from before
        the artifacts were stored, or one written by an older release, holds none). Once they
        are stored, this is one indexed query that finds nothing."""
        with self._sessions() as session:
            missing = list(session.scalars(
                self._pullable(principal, namespace, name)
                .outerjoin(OciArtifact, OciArtifact.version_id == Version.id)
                .where(OciArtifact.version_id.is_(None))
                .order_by(Version.created_at, Version.id)
                .limit(_FILL_BATCH)
            ))  # fmt: skip
        for version in missing:
            self._stored(self._record(principal, namespace, name, version))

    def published(self, record: VersionRecord) -> None:
        """After a release: store the artifact and sign the manifest-digest release statement.
        Never raises (the release has committed); what fails here is done at the next request
        for the version's referrers."""
        try:
            vid, row = self._stored(record)
            self._release_statement(vid, row, record)
        except Exception:  # retried lazily; the release itself stands
            log.exception("storing the OCI artifact of %s failed; retried when it is asked for",
                          record.ref)  # fmt: skip

    def _release_statement(self, vid: int, row: OciArtifact, record: VersionRecord) -> bytes | None:
        """The registry-signed statement that this manifest digest is a released version
        (signed once, the first time it is needed after the release; None before one)."""
        if row.release_bundle is not None:
            return row.release_bundle
        if record.state != State.RELEASED:
            return None
        with self._sessions() as session:
            release = session.execute(
                select(Attestation.bundle_digest, Attestation.created_at)
                .where(Attestation.version_id == vid, Attestation.predicate_type == RELEASE)
                .where(Attestation.signer_id == self._signer.identity)
                .order_by(Attestation.created_at.desc(), Attestation.id.desc())
                .limit(1)
            ).first()
        if release is None:
            return None
        statement = make_statement(
            name=f"{record.namespace}/{record.name}",
            root_digest=row.manifest_digest,
            predicate_type=OCI_RELEASE,
            predicate={
                "version": record.ref,
                "rootDigest": record.root_digest.prefixed,
                "manifestDigest": row.manifest_digest.prefixed,
                "releasedAt": _timestamp(release.created_at),
                # The release attestation (subject: the OMS root digest) this one restates.
                "releaseBundleSha256": release.bundle_digest,
            },
        )
        bundle = self._signer.sign(statement)
        with transaction(self._sessions) as session:
            session.execute(
                update(OciArtifact)
                .where(OciArtifact.version_id == vid, OciArtifact.release_bundle.is_(None))
                .values(release_bundle=bundle.raw, release_digest=bundle.digest)
            )
            stored = session.get(OciArtifact, vid)
            return stored.release_bundle if stored is not None else None

    def _referrers(self, vid: int, row: OciArtifact, record: VersionRecord) -> list[Referrer]:
        """Every evidence bundle of the version as a referrer of its manifest. Each is built
        once and stored (so that it can be fetched by its digest); a listing reads the stored
        descriptors."""
        release = self._release_statement(vid, row, record)
        with self._sessions() as session:
            built = select(OciReferrer.attestation_id).where(
                OciReferrer.version_id == vid, OciReferrer.attestation_id.is_not(None)
            )
            unbuilt = session.execute(
                select(Attestation.id, Attestation.bundle, Attestation.predicate_type,
                       Attestation.created_at)
                .where(Attestation.version_id == vid, Attestation.id.not_in(built))
            ).all()  # fmt: skip
            release_built = session.execute(
                select(OciReferrer.id).where(
                    OciReferrer.version_id == vid, OciReferrer.attestation_id.is_(None)
                ).limit(1)
            ).first()  # fmt: skip
        missing: list[tuple[int | None, bytes, str, datetime]] = [
            (a.id, a.bundle, a.predicate_type, a.created_at) for a in unbuilt
        ]
        if release is not None and release_built is None:
            missing.append((None, release, OCI_RELEASE, row.created_at))
        if missing:
            subject = self._manifest(row, record)
            try:
                with transaction(self._sessions) as session:
                    for attestation_id, bundle, predicate_type, created in missing:
                        document = referrer_document(subject, bundle, predicate_type, created)
                        session.add(OciReferrer(
                            version_id=vid, attestation_id=attestation_id,
                            digest=document.digest.removeprefix("sha256:"),
                            predicate_type=predicate_type, body=document.body,
                            created_at=created,
                        ))  # fmt: skip
            except IntegrityError:
                pass  # another request stored them
        with self._sessions() as session:
            rows = session.execute(
                select(OciReferrer.digest, func.length(OciReferrer.body),
                       OciReferrer.predicate_type, OciReferrer.created_at)
                .where(OciReferrer.version_id == vid)
                .order_by(OciReferrer.created_at, OciReferrer.id)
            ).all()  # fmt: skip
        return [
            Referrer(digest.prefixed, int(size), predicate_type, _timestamp(created))
            for digest, size, predicate_type, created in rows
        ]

    # -- manifests, blobs, tags, referrers ----------------------------------------------------

    def _find_manifest(
        self, principal: Principal, namespace: str, name: str, digest: str
    ) -> ServedManifest:
        """The model or referrer manifest of this repository stored under ``digest``, checked
        as a version is (:meth:`_check`: a revoked one is DENIED, a pending one hidden from a
        deployer); MANIFEST_UNKNOWN when the repository holds none."""
        hexpart = parse_digest(digest)

        def lookup() -> tuple[str, bytes | None] | None:
            with self._sessions() as session:
                repo = self._repository(namespace, name)
                version = session.scalars(
                    repo.join(OciArtifact, OciArtifact.version_id == Version.id)
                    .where(OciArtifact.manifest_digest == hexpart).limit(1)
                ).first()  # fmt: skip
                if version is not None:
                    return str(version), None
                hit = session.execute(
                    repo.add_columns(OciReferrer.body)
                    .join(OciReferrer, OciReferrer.version_id == Version.id)
                    .where(OciReferrer.digest == hexpart).limit(1)
                ).first()  # fmt: skip
                return (hit[0], hit[1]) if hit is not None else None

        found = lookup()
        if found is None:
            self._store_missing(principal, namespace, name)
            found = lookup()
        if found is None:
            self._require_repository(namespace, name)
            raise OciError(OciCode.MANIFEST_UNKNOWN, f"manifest {digest} unknown")
        version, referrer = found
        record = self._record(principal, namespace, name, version)
        self._check(principal, record, digest)
        if referrer is not None:
            if hashlib.sha256(referrer).hexdigest() != hexpart:
                log.error("a stored OCI referrer of %s does not hash to its digest", record.ref)
                raise OciError(OciCode.MANIFEST_UNKNOWN, f"manifest {digest} unknown")
            return ServedManifest(record, Document(referrer, digest, MANIFEST_MEDIA_TYPE))
        _vid, row = self._stored(record)
        return ServedManifest(record, self._manifest(row, record))

    def manifest(
        self, principal: Principal, namespace: str, name: str, reference: str
    ) -> ServedManifest:
        """The manifest ``reference`` (a version, an alias or a manifest digest) names."""
        principal.require(Action.READ, namespace)
        if ":" in reference:
            return self._find_manifest(principal, namespace, name, reference)
        try:
            selector, kind = parse_selector(reference)
        except InvalidRequestError:
            raise OciError(
                OciCode.MANIFEST_UNKNOWN, f"manifest {reference[:80]!r} unknown"
            ) from None
        try:
            record = self._versions.resolve(principal, Ref(namespace, name, selector, kind))
        except NotFoundError:
            self._require_repository(namespace, name)
            raise OciError(OciCode.MANIFEST_UNKNOWN, f"manifest {reference!r} unknown") from None
        record = self._effective(record)
        self._check(principal, record, reference)
        _vid, row = self._stored(record)
        return ServedManifest(record, self._manifest(row, record))

    def referrers(
        self, principal: Principal, namespace: str, name: str, digest: str
    ) -> tuple[list[Referrer], OciError | None]:
        """The evidence of the version whose model manifest is ``digest``, as referrers. A
        digest this caller cannot pull has none (the referrers API never answers 404); the
        refusal comes back second, for the route to audit."""
        principal.require(Action.READ, namespace)
        try:
            served = self._find_manifest(principal, namespace, name, digest)
        except OciError as refused:
            if refused.code is OciCode.DIGEST_INVALID:
                raise
            audit = refused if refused.hidden or refused.code is OciCode.DENIED else None
            return [], audit
        vid, row = self._stored(served.record)
        if row.manifest_digest != parse_digest(digest):
            return [], None  # a referrer manifest has no referrers of its own here
        return self._referrers(vid, row, served.record), None

    def blob(
        self, principal: Principal, namespace: str, name: str, digest: str, *, redirect: bool
    ) -> ServedBlob:
        """A blob of this repository the caller may read: a file of a version it may pull (via
        :meth:`VersionService.file_location`, so the file-download rules decide), such a
        version's config blob or one of its evidence bundles, or the empty config (where it
        may pull something). A blob only versions hidden from the caller hold is a *hidden*
        BLOB_UNKNOWN (audited as a denial)."""
        principal.require(Action.READ, namespace)
        hexpart = parse_digest(digest)
        with self._sessions() as session:
            rows = session.execute(
                self._pullable(principal, namespace, name)
                .add_columns(VersionFile.path)
                .join(VersionFile, VersionFile.version_id == Version.id)
                .where(VersionFile.digest == hexpart)
                .order_by(Version.created_at.desc(), Version.id.desc())
                .limit(5)
            ).all()  # fmt: skip
        for version, path in rows:
            record = self._record(principal, namespace, name, version)
            if record.state == State.REVOKED:
                continue  # revoked a moment ago
            ref = Ref(namespace, name, version, RefKind.VERSION)
            record, item, url = self._versions.file_location(principal, ref, path,
                                                             redirect=redirect)  # fmt: skip
            return ServedBlob(record, item=item, url=url)
        document = self._document(principal, namespace, name, hexpart)
        if document is None:
            self._store_missing(principal, namespace, name)
            document = self._document(principal, namespace, name, hexpart)
        if document is not None:
            return document
        if digest == EMPTY_DIGEST:
            self._require_repository(namespace, name)
            with self._sessions() as session:
                some = session.execute(self._pullable(principal, namespace, name).limit(1)).first()
            if some is not None:
                return ServedBlob(None, document=Document(EMPTY_CONFIG, digest, EMPTY_MEDIA_TYPE))
            raise OciError(OciCode.BLOB_UNKNOWN, f"blob {digest} unknown to {namespace}/{name}",
                           hidden=True)  # fmt: skip
        self._require_repository(namespace, name)
        raise OciError(OciCode.BLOB_UNKNOWN, f"blob {digest} unknown to {namespace}/{name}",
                       hidden=self._held_elsewhere(namespace, name, hexpart))  # fmt: skip

    def _held_elsewhere(self, namespace: str, name: str, hexpart: str) -> bool:
        """Whether a version of the repository the caller may not pull holds this digest (as
        a file, config or bundle): its refusal is then a denial, audited as one."""
        repo = self._repository(namespace, name)
        with self._sessions() as session:
            for query in (
                repo.join(VersionFile, VersionFile.version_id == Version.id)
                .where(VersionFile.digest == hexpart),
                repo.join(OciArtifact, OciArtifact.version_id == Version.id)
                .where(OciArtifact.config_digest == hexpart),
                repo.join(Attestation, Attestation.version_id == Version.id)
                .where(Attestation.bundle_digest == hexpart),
            ):  # fmt: skip
                if session.execute(query.limit(1)).first() is not None:
                    return True
        return False

    def _document(
        self, principal: Principal, namespace: str, name: str, hexpart: str
    ) -> ServedBlob | None:
        """A stored blob under ``hexpart`` of a version of this repository the caller may
        pull: a config blob, an evidence bundle, or the manifest-digest release statement.
        Bodies that no longer hash to their digest are never served."""
        with self._sessions() as session:
            pullable = self._pullable(principal, namespace, name).order_by(
                Version.created_at.desc(), Version.id.desc()
            )
            candidates: list[tuple[str, bytes | None, str]] = []
            for body_column, digest_column, version_column, media_type in (
                (OciArtifact.config, OciArtifact.config_digest, OciArtifact.version_id,
                 CONFIG_MEDIA_TYPE),
                (OciArtifact.release_bundle, OciArtifact.release_digest,
                 OciArtifact.version_id, BUNDLE_MEDIA_TYPE),
                (Attestation.bundle, Attestation.bundle_digest, Attestation.version_id,
                 BUNDLE_MEDIA_TYPE),
            ):  # fmt: skip
                rows = session.execute(
                    pullable.add_columns(body_column)
                    .join(body_column.class_, version_column == Version.id)
                    .where(digest_column == hexpart)
                    .limit(5)
                )
                candidates += [(version, body, media_type) for version, body in rows]
        for version, body, media_type in candidates:
            if body is None or hashlib.sha256(body).hexdigest() != hexpart:
                continue
            record = self._record(principal, namespace, name, version)
            if record.state != State.REVOKED:
                return ServedBlob(record, document=Document(body, f"sha256:{hexpart}", media_type))
        return None

    def read(
        self, served: ServedBlob, *, start: int = 0, length: int | None = None
    ) -> Iterator[bytes]:
        """The bytes (or a range) of a blob :meth:`blob` allowed. The store is opened here, not
        when the first byte is sent, so that a blob missing from it is an error before any
        answer (NotFoundError)."""
        if served.document is not None:
            end = None if length is None else start + length
            return iter((served.document.body[start:end],))
        assert served.item is not None
        return self._store.read(served.item.sha256, start=start, length=length)

    def tags(self, principal: Principal, namespace: str, name: str) -> list[str]:
        """Versions and aliases the caller may pull, in lexical order."""
        principal.require(Action.READ, namespace)
        self._require_repository(namespace, name)
        pullable = self._pullable(principal, namespace, name)
        with self._sessions() as session:
            tags = set(session.scalars(pullable))
            tags.update(session.scalars(
                pullable.with_only_columns(Alias.name).join(Alias, Alias.version_id == Version.id)
            ))  # fmt: skip
        return sorted(t for t in tags if TAG.fullmatch(t))
