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
import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from attest.digests import FileDigest, is_sha256_hex
from registry.errors import InvalidRequestError, NotFoundError
from registry.names import Kind, Ref, RefKind, parse_selector
from registry.server.models import Artifact, Namespace, Version, VersionFile
from registry.server.services.auth import Action, Principal
from registry.server.services.common import PageRequest
from registry.server.services.lifecycle import LifecycleService
from registry.server.services.versions import State, VersionRecord, VersionService
from registry.server.storage import BlobStore

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
    generated config blob (``document``)."""

    record: VersionRecord
    item: FileDigest | None = None
    url: str | None = None
    document: Document | None = None

    @property
    def size(self) -> int:
        if self.document is not None:
            return len(self.document.body)
        assert self.item is not None
        return self.item.size


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
        "modelfs": {"type": "layers", "diff_ids": [f"sha256:{f.sha256}" for f in files]},
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
    ) -> None:
        self._sessions = sessions
        self._versions = versions
        self._lifecycle = lifecycle
        self._store = store

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

    # -- manifests, blobs, tags -------------------------------------------------------------

    def manifest(
        self, principal: Principal, namespace: str, name: str, reference: str
    ) -> ServedManifest:
        """The manifest ``reference`` (a version, an alias or a manifest digest) names."""
        principal.require(Action.READ, namespace)
        if ":" in reference:
            parse_digest(reference)
            for record in self.pullable(principal, namespace, name):
                document = manifest_document(record)
                if document.digest == reference:
                    return ServedManifest(record, document)
            raise OciError(OciCode.MANIFEST_UNKNOWN, f"manifest {reference} unknown")
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
        return ServedManifest(record, manifest_document(record))

    def blob(
        self, principal: Principal, namespace: str, name: str, digest: str, *, redirect: bool
    ) -> ServedBlob:
        """A blob of this repository the caller may read: a file of a version it may pull (via
        :meth:`VersionService.file_location`, so the file-download rules decide), or such a
        version's config blob."""
        principal.require(Action.READ, namespace)
        hexpart = parse_digest(digest)
        with self._sessions() as session:
            rows = session.execute(
                select(Version.version, VersionFile.path)
                .join(VersionFile, VersionFile.version_id == Version.id)
                .join(Artifact, Version.artifact_id == Artifact.id)
                .join(Namespace, Artifact.namespace_id == Namespace.id)
                .where(Namespace.name == namespace, Artifact.name == name)
                .where(VersionFile.digest == hexpart)
                .where(Version.state.in_((State.RELEASED, State.PENDING)))
                .order_by(Version.created_at, Version.id)
                .limit(50)
            ).all()
        for version, path in rows:
            ref = Ref(namespace, name, version, RefKind.VERSION)
            record = self._versions.resolve(principal, ref)
            if not self._visible(principal, record):
                continue
            record, item, url = self._versions.file_location(principal, ref, path,
                                                             redirect=redirect)  # fmt: skip
            return ServedBlob(record, item=item, url=url)
        for record in self.pullable(principal, namespace, name):
            config = config_document(record)
            if config.digest == digest:
                return ServedBlob(record, document=config)
        raise OciError(OciCode.BLOB_UNKNOWN, f"blob {digest} unknown to {namespace}/{name}")

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
