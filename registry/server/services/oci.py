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

import hashlib
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from attest.bundle import BUNDLE_MEDIA_TYPE
from attest.digests import FileDigest, is_sha256_hex
from attest.predicates import OCI_RELEASE, RELEASE
from attest.signing import Signer
from attest.statement import make_statement
from registry.errors import InvalidRequestError, NotFoundError
from registry.names import Kind, Ref, RefKind, parse_selector
from registry.server.db import transaction
from registry.server.models import (
    Artifact,
    Attestation,
    Namespace,
    OciArtifact,
    OciReferrer,
    Version,
    VersionFile,
)
from registry.server.services.auth import Action, Principal
from registry.server.services.common import Clock, PageRequest, utcnow
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
_LIST_PAGE = 1000

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

    def __init__(self, code: OciCode, message: str, *, hidden: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hidden = hidden

    @property
    def status(self) -> int:
        return _STATUS[self.code]

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
        "modelfs": {"type": "layers", "diffIds": [f"sha256:{f.sha256}" for f in files]},
    }
    data = canonical(body)
    return Document(data, sha256_digest(data), CONFIG_MEDIA_TYPE)


def manifest_document(record: VersionRecord) -> Document:
    """The ModelPack manifest of a version: deterministic bytes, hence a stable digest."""
    config = config_document(record)
    layers = [
        {
            "mediaType": layer_media_type(record.kind, f.path),
            "digest": f"sha256:{f.sha256}",
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
            ROOT_DIGEST: f"sha256:{record.root_digest}",
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
    def _visible(principal: Principal, record: VersionRecord) -> bool:
        """Whether ``principal`` may pull this version (the rules of file downloads)."""
        if record.external or record.state in (State.REJECTED, State.REVOKED):
            return False
        return record.state == State.RELEASED or (
            principal.allowed(Action.PUSH, record.namespace)
            or principal.allowed(Action.RELEASE, record.namespace)
        )

    def _check(self, principal: Principal, record: VersionRecord, reference: str) -> None:
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
        if not self._visible(principal, record):
            raise OciError(OciCode.MANIFEST_UNKNOWN, f"manifest {reference!r} unknown", hidden=True)

    def _all_versions(
        self, principal: Principal, namespace: str, name: str
    ) -> Iterator[VersionRecord]:
        """Every version of a repository (NAME_UNKNOWN when there is none)."""
        after: str | None = None
        while True:
            try:
                page = self._versions.list_versions(
                    principal, namespace, name, PageRequest(_LIST_PAGE, after)
                )
            except NotFoundError:
                raise OciError(
                    OciCode.NAME_UNKNOWN, f"repository {namespace}/{name} is not known"
                ) from None
            yield from page.items
            if page.next_after is None:
                return
            after = page.next_after

    def pullable(self, principal: Principal, namespace: str, name: str) -> list[VersionRecord]:
        return [r for r in self._all_versions(principal, namespace, name)
                if self._visible(principal, r)]  # fmt: skip

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
    def _manifest(row: OciArtifact) -> Document:
        return Document(row.manifest, f"sha256:{row.manifest_digest}", MANIFEST_MEDIA_TYPE)

    def _store_missing(self, principal: Principal, namespace: str, name: str) -> None:
        """Store the artifacts of this repository's pullable versions not served before (a
        digest can only name a manifest someone was shown, but a database restored from before
        the artifacts were stored, or one written by an older release, holds none)."""
        with self._sessions() as session:
            stored = set(session.scalars(
                select(Version.version)
                .join(OciArtifact, OciArtifact.version_id == Version.id)
                .join(Artifact, Version.artifact_id == Artifact.id)
                .join(Namespace, Artifact.namespace_id == Namespace.id)
                .where(Namespace.name == namespace, Artifact.name == name)
            ))  # fmt: skip
        for record in self.pullable(principal, namespace, name):
            if record.version not in stored:
                self._stored(record)

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
                "rootDigest": f"sha256:{record.root_digest}",
                "manifestDigest": f"sha256:{row.manifest_digest}",
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
        """Every evidence bundle of the version as a referrer of its manifest, stored so that
        each can be fetched by its digest."""
        subject = self._manifest(row)
        release = self._release_statement(vid, row, record)
        with self._sessions() as session:
            attestations = session.execute(
                select(Attestation.id, Attestation.bundle, Attestation.predicate_type,
                       Attestation.created_at)
                .where(Attestation.version_id == vid)
                .order_by(Attestation.created_at, Attestation.id)
            ).all()  # fmt: skip
            known = {
                (r.attestation_id, r.digest)
                for r in session.execute(
                    select(OciReferrer.attestation_id, OciReferrer.digest)
                    .where(OciReferrer.version_id == vid)
                )
            }  # fmt: skip
        wanted: list[tuple[int | None, Document, str, datetime]] = [
            (a.id, referrer_document(subject, a.bundle, a.predicate_type, a.created_at),
             a.predicate_type, a.created_at)
            for a in attestations
        ]  # fmt: skip
        if release is not None:
            created = row.created_at if record.state == State.RELEASED else self._clock()
            wanted.append((None, referrer_document(subject, release, OCI_RELEASE, created),
                           OCI_RELEASE, created))  # fmt: skip
        missing = [w for w in wanted if (w[0], w[1].digest.removeprefix("sha256:")) not in known]
        if missing:
            try:
                with transaction(self._sessions) as session:
                    for attestation_id, document, predicate_type, created in missing:
                        session.add(OciReferrer(
                            version_id=vid, attestation_id=attestation_id,
                            digest=document.digest.removeprefix("sha256:"),
                            predicate_type=predicate_type, body=document.body,
                            created_at=created,
                        ))  # fmt: skip
            except IntegrityError:
                pass  # another request stored them
        return [
            Referrer(document.digest, len(document.body), predicate_type, _timestamp(created))
            for _id, document, predicate_type, created in wanted
        ]

    # -- manifests, blobs, tags, referrers ----------------------------------------------------

    def _find_manifest(
        self, principal: Principal, namespace: str, name: str, digest: str
    ) -> ServedManifest | None:
        """The model or referrer manifest of this repository stored under ``digest`` that the
        caller may pull; None when there is none (or none it may see)."""
        hexpart = parse_digest(digest)

        def lookup() -> tuple[str, bytes | None] | None:
            with self._sessions() as session:
                repo = (
                    select(Version.version)
                    .join(Artifact, Version.artifact_id == Artifact.id)
                    .join(Namespace, Artifact.namespace_id == Namespace.id)
                    .where(Namespace.name == namespace, Artifact.name == name)
                )
                version = session.scalars(
                    repo.join(OciArtifact, OciArtifact.version_id == Version.id)
                    .where(OciArtifact.manifest_digest == hexpart).limit(1)
                ).first()  # fmt: skip
                if version is not None:
                    return version, None
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
            return None
        version, referrer = found
        record = self._versions.resolve(principal, Ref(namespace, name, version, RefKind.VERSION))
        if not self._visible(principal, record):
            return None
        if referrer is not None:
            return ServedManifest(record, Document(referrer, digest, MANIFEST_MEDIA_TYPE))
        _vid, row = self._stored(record)
        return ServedManifest(record, self._manifest(row))

    def manifest(
        self, principal: Principal, namespace: str, name: str, reference: str
    ) -> ServedManifest:
        """The manifest ``reference`` (a version, an alias or a manifest digest) names."""
        principal.require(Action.READ, namespace)
        if ":" in reference:
            served = self._find_manifest(principal, namespace, name, reference)
            if served is None:
                raise OciError(OciCode.MANIFEST_UNKNOWN, f"manifest {reference} unknown")
            return served
        try:
            selector, kind = parse_selector(reference)
        except InvalidRequestError:
            raise OciError(
                OciCode.MANIFEST_UNKNOWN, f"manifest {reference[:80]!r} unknown"
            ) from None
        try:
            record = self._versions.resolve(principal, Ref(namespace, name, selector, kind))
        except NotFoundError:
            next(iter(self._all_versions(principal, namespace, name)), None)  # NAME_UNKNOWN?
            raise OciError(OciCode.MANIFEST_UNKNOWN, f"manifest {reference!r} unknown") from None
        self._check(principal, record, reference)
        _vid, row = self._stored(record)
        return ServedManifest(record, self._manifest(row))

    def referrers(
        self, principal: Principal, namespace: str, name: str, digest: str
    ) -> list[Referrer]:
        """The evidence of the version whose model manifest is ``digest``, as referrers; none
        for a digest this caller cannot pull (the referrers API never answers 404)."""
        principal.require(Action.READ, namespace)
        served = self._find_manifest(principal, namespace, name, digest)
        if served is None or served.manifest.digest != digest:
            return []
        vid, row = self._stored(served.record)
        if row.manifest_digest != parse_digest(digest):
            return []  # a referrer manifest has no referrers of its own here
        return self._referrers(vid, row, served.record)

    def blob(
        self, principal: Principal, namespace: str, name: str, digest: str, *, redirect: bool
    ) -> ServedBlob:
        """A blob of this repository the caller may read: a file of a version it may pull (via
        :meth:`VersionService.file_location`, so the file-download rules decide), such a
        version's config blob or one of its evidence bundles, or the empty config."""
        principal.require(Action.READ, namespace)
        hexpart = parse_digest(digest)
        with self._sessions() as session:
            repo = (
                select(Version.version)
                .join(Artifact, Version.artifact_id == Artifact.id)
                .join(Namespace, Artifact.namespace_id == Namespace.id)
                .where(Namespace.name == namespace, Artifact.name == name)
                .where(Version.state.in_((State.RELEASED, State.PENDING)))
                .order_by(Version.created_at, Version.id)
                .limit(50)
            )
            rows = session.execute(
                repo.add_columns(VersionFile.path)
                .join(VersionFile, VersionFile.version_id == Version.id)
                .where(VersionFile.digest == hexpart)
            ).all()
        for version, path in rows:
            ref = Ref(namespace, name, version, RefKind.VERSION)
            record = self._versions.resolve(principal, ref)
            if not self._visible(principal, record):
                continue
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
            next(iter(self._all_versions(principal, namespace, name)), None)  # NAME_UNKNOWN?
            return ServedBlob(None, document=Document(EMPTY_CONFIG, digest, EMPTY_MEDIA_TYPE))
        raise OciError(OciCode.BLOB_UNKNOWN, f"blob {digest} unknown to {namespace}/{name}")

    def _document(
        self, principal: Principal, namespace: str, name: str, hexpart: str
    ) -> ServedBlob | None:
        """A stored blob under ``hexpart`` of a version of this repository the caller may
        pull: a config blob, an evidence bundle, or the manifest-digest release statement."""
        with self._sessions() as session:
            repo = (
                select(Version.version)
                .join(Artifact, Version.artifact_id == Artifact.id)
                .join(Namespace, Artifact.namespace_id == Namespace.id)
                .where(Namespace.name == namespace, Artifact.name == name)
                .where(Version.state.in_((State.RELEASED, State.PENDING)))
                .order_by(Version.created_at, Version.id)
                .limit(50)
            )
            candidates: list[tuple[str, bytes, str]] = []
            for version, body in session.execute(
                repo.add_columns(OciArtifact.config)
                .join(OciArtifact, OciArtifact.version_id == Version.id)
                .where(OciArtifact.config_digest == hexpart)
            ):  # fmt: skip
                candidates.append((version, body, CONFIG_MEDIA_TYPE))
            for version, body in session.execute(
                repo.add_columns(OciArtifact.release_bundle)
                .join(OciArtifact, OciArtifact.version_id == Version.id)
                .where(OciArtifact.release_digest == hexpart)
            ):  # fmt: skip
                candidates.append((version, body, BUNDLE_MEDIA_TYPE))
            for version, body in session.execute(
                repo.add_columns(Attestation.bundle)
                .join(Attestation, Attestation.version_id == Version.id)
                .where(Attestation.bundle_digest == hexpart)
            ):  # fmt: skip
                candidates.append((version, body, BUNDLE_MEDIA_TYPE))
        for version, body, media_type in candidates:
            if body is None or hashlib.sha256(body).hexdigest() != hexpart:
                continue
            ref = Ref(namespace, name, version, RefKind.VERSION)
            record = self._versions.resolve(principal, ref)
            if self._visible(principal, record):
                return ServedBlob(record, document=Document(body, f"sha256:{hexpart}", media_type))
        return None

    def read(
        self, served: ServedBlob, *, start: int = 0, length: int | None = None
    ) -> Iterator[bytes]:
        """The bytes (or a range) of a blob :meth:`blob` allowed."""
        if served.document is not None:
            end = None if length is None else start + length
            yield served.document.body[start:end]
            return
        assert served.item is not None
        yield from self._store.read(served.item.sha256, start=start, length=length)

    def tags(self, principal: Principal, namespace: str, name: str) -> list[str]:
        """Versions and aliases the caller may pull, in lexical order."""
        principal.require(Action.READ, namespace)
        records = self.pullable(principal, namespace, name)
        visible = {r.version for r in records}
        tags = set(visible)
        after: str | None = None
        while True:
            page = self._lifecycle.list_aliases(principal, namespace, name,
                                                PageRequest(_LIST_PAGE, after))  # fmt: skip
            tags.update(a.alias for a in page.items if a.version in visible)
            if page.next_after is None:
                break
            after = page.next_after
        return sorted(t for t in tags if TAG.fullmatch(t))
