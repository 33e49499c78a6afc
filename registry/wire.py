"""Request and response schemas of the HTTP API (``XIn`` for bodies, ``XPublic`` for answers)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator
from pydantic.config import JsonDict

from attest.digests import Digest, FileDigest, parse_sha256
from registry.names import (
    NAME_PATTERN,
    PATH_PATTERN,
    REF_PATTERN,
    VERSION_PATTERN,
    Kind,
    validate_external_uri,
    validate_path,
)


def _as_text(value: object) -> object:
    """A :class:`Digest` (held as its hex digits) is written as the API writes every digest."""
    return value.prefixed if isinstance(value, Digest) else value


_DIGEST = Field(pattern=r"^sha256:[0-9a-f]{64}$", examples=["sha256:" + "0" * 64])

#: A digest in a request body: ``sha256:<hex>`` (:meth:`Digest.parse` reads it).
DigestIn = Annotated[str, _DIGEST]

#: A digest in an answer, ``sha256:<hex>``. Answers are built from the services' records,
#: whose digests are :class:`Digest` values: they are written in this form here, once.
DigestText = Annotated[str, BeforeValidator(_as_text), _DIGEST]


def _rule(pattern: str) -> JsonDict:
    """A naming rule of registry.names stated in the schema only: the field's own check (which
    a pydantic pattern could not express: lookaheads) keeps answering with the rule it broke."""
    return {"pattern": pattern}


class _Model(BaseModel):
    """Schemas are built when first used, not at import: a CLI command that reads one kind of
    response does not pay for building all of them."""

    model_config = ConfigDict(defer_build=True)


class RegistryKeyPublic(_Model):
    """The key the registry signs with; clients pin it."""

    fingerprint: str
    public_key_pem: str


class Health(_Model):
    status: str = "ok"
    version: str


class FileIn(_Model):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    path: str = Field(min_length=1, max_length=1024, json_schema_extra=_rule(PATH_PATTERN))
    size: int = Field(ge=0, strict=True)  # a JSON integer: not true, not "12"
    digest: DigestIn

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return validate_path(value)

    uri: str | None = Field(
        default=None, description="External versions only: where the file's bytes live."
    )

    @field_validator("uri")
    @classmethod
    def _uri(cls, value: str | None) -> str | None:
        return None if value is None else validate_external_uri(value)

    def to_file_digest(self) -> FileDigest:
        return FileDigest(self.path, self.size, parse_sha256(self.digest))


class ManifestIn(_Model):
    """The complete file list of a version; every blob must already be uploaded, unless the
    version is ``external`` (registered by manifest only: every file names its ``uri``)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    kind: Kind = Kind.MODEL
    files: list[FileIn] = Field(min_length=1)
    external: bool = False

    @model_validator(mode="after")
    def _uris(self) -> ManifestIn:
        with_uri = [f.path for f in self.files if f.uri is not None]
        if self.external and len(with_uri) != len(self.files):
            raise ValueError("an external version needs a uri for every file")
        if not self.external and with_uri:
            raise ValueError(f"{with_uri[0]}: uri is only for external versions")
        return self

    def uris(self) -> dict[str, str] | None:
        return {f.path: f.uri for f in self.files if f.uri is not None} if self.external else None


class FilePublic(_Model):
    path: str
    size: int
    digest: DigestText
    uri: str | None = Field(default=None, description="External files: where the bytes live.")


class VersionSummary(_Model):
    namespace: str
    name: str
    version: str
    kind: Kind
    state: str
    root_digest: DigestText = Field(description="OMS root digest of the file set, sha256:<hex>.")
    file_count: int
    total_size: int
    created_at: datetime
    created_by: str
    state_reason: str | None = Field(
        default=None, description="Why the version is in its state (e.g. the unsafe files)."
    )
    external: bool = Field(
        default=False,
        description="Registered by manifest only: the registry holds no bytes of it.",
    )


#: A model version's ML-BOM: being built (off the request path), built, or given up on.
BomStatusName = Literal["pending", "ready", "failed"]


class VersionPublic(VersionSummary):
    files: list[FilePublic]
    bom_status: BomStatusName | None = Field(
        default=None,
        description="Models: the ML-BOM is pending (being built, off the request path; "
        "retry shortly), ready, or failed (the registry gave up building it). Null for datasets "
        "and code, for a model without a BOM (rejected), and in answers that do not report it "
        "(release, reject).",
    )


class ArtifactPublic(_Model):
    namespace: str
    name: str
    kind: Kind
    created_at: datetime
    version_count: int


class NamespacePublic(_Model):
    name: str


class UploadIn(_Model):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    digest: DigestIn
    size: int = Field(ge=0, strict=True)  # a JSON integer: not false, not "12"


class UploadPublic(_Model):
    id: str | None = Field(description="Session id; null when the blob is already held.")
    namespace: str = Field(description="The namespace the blob goes into.")
    digest: DigestText
    size: int
    offset: int
    exists: bool = Field(description="The namespace already holds this blob: nothing to send.")
    expires_at: datetime | None
    min_chunk_bytes: int
    max_chunk_bytes: int


class BlobPublic(_Model):
    digest: DigestText
    size: int


#: Small files travel many to a request (``POST /v1/namespaces/{ns}/blobs``): the body is one
#: line of JSON, :class:`BlobBatchIndex`, ending in ``\n``, then the blobs' bytes back to back in
#: its order. Limits, the same for client and server: each blob at most
#: :data:`BATCH_BLOB_MAX_BYTES`, at most :data:`BATCH_MAX_BLOBS` of them, a body of at most
#: :data:`BATCH_MAX_BYTES` (index included), an index line of at most
#: :data:`BATCH_INDEX_MAX_BYTES`.
BATCH_MEDIA_TYPE = "application/vnd.modelseal.blob-batch.v1"
BATCH_BLOB_MAX_BYTES = 1024 * 1024
BATCH_MAX_BLOBS = 1000
BATCH_MAX_BYTES = 16 * 1024 * 1024
BATCH_INDEX_MAX_BYTES = 256 * 1024


class BlobBatchIndex(_Model):
    """The first line of a blob batch: what follows it, in order."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    blobs: list[UploadIn] = Field(min_length=1, max_length=BATCH_MAX_BLOBS)


#: Small files of a version many to a response (``POST .../versions/{selector}/files``): one
#: line of JSON, ``{"files": [{"path", "digest", "size"}, ...]}`` and ``\n``, then the files'
#: bytes back to back in that order. The same limits as a blob batch.
FILE_BATCH_MEDIA_TYPE = "application/vnd.modelseal.file-batch.v1"


class FilesIn(_Model):
    """The files of a version to send in one response, in this order."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    paths: list[
        Annotated[str, Field(min_length=1, max_length=1024, json_schema_extra=_rule(PATH_PATTERN))]
    ] = Field(min_length=1, max_length=BATCH_MAX_BLOBS)

    @field_validator("paths")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        checked = [validate_path(path) for path in value]
        if len(set(checked)) != len(checked):
            raise ValueError("a path is named twice")
        return checked


class BlobBatchPublic(_Model):
    """The blobs of a batch, every one verified and now held by the namespace (in the index's
    order, each digest once)."""

    blobs: list[BlobPublic]


class IdentityIn(_Model):
    """A key identity (``public_key_pem``) or a Sigstore identity (issuer + identity)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    name: str = Field(min_length=1, max_length=64, json_schema_extra=_rule(NAME_PATTERN))
    public_key_pem: str | None = Field(default=None, max_length=16384)
    sigstore_issuer: str | None = Field(default=None, max_length=512)
    sigstore_identity: str | None = Field(default=None, max_length=512)
    regex: bool = False


class IdentityPublic(_Model):
    name: str
    kind: str
    fingerprint: DigestText | None = Field(
        description="sha256:<hex> of the SPKI PEM (key identities)."
    )
    sigstore_issuer: str | None
    sigstore_identity: str | None
    regex: bool
    created_at: datetime
    created_by: str
    public_key_pem: str | None = None


class AttestationPublic(_Model):
    id: int
    ref: str
    predicate_type: str
    subject_digest: DigestText
    bundle_digest: DigestText = Field(description="sha256:<hex> of the exact bundle bytes.")
    signer: str = Field(description="The trusted identity's name.")
    signer_id: str
    created_at: datetime
    created_by: str


class PolicyPublic(_Model):
    namespace: str
    revision: int = Field(description="0 means the built-in default policy is in force.")
    document: str
    created_at: datetime | None
    created_by: str | None


class RejectIn(_Model):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    reason: str = Field(min_length=1, max_length=2000)


class AliasIn(_Model):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    version: str = Field(min_length=1, max_length=72, json_schema_extra=_rule(VERSION_PATTERN))


class AliasMovePublic(_Model):
    alias: str
    from_version: str | None
    to_version: str
    actor: str
    at: datetime


class AliasPublic(_Model):
    alias: str
    version: str
    state: str = Field(description="State of the target; 'revoked' flags a dangerous alias.")
    updated_at: datetime
    updated_by: str


class RevokeIn(_Model):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    reason: str = Field(min_length=1, max_length=2000)


class RevokedPublic(_Model):
    version: str = Field(description="NS/NAME@VERSION revoked by this request.")
    built_on: str | None = Field(
        description="The dependency it was revoked for; null for the version asked for."
    )
    reason: str


class FlaggedAliasPublic(_Model):
    alias: str = Field(description="NS/NAME@ALIAS")
    version: str = Field(description="The revoked NS/NAME@VERSION it points at.")


class RevocationPublic(_Model):
    version: VersionPublic
    dependents: list[str] = Field(
        description="Versions built on it, transitively through provenance (all now revoked)."
    )
    revoked: list[RevokedPublic] = Field(
        default_factory=list,
        description="Versions this request revoked, each with a registry-signed revocation "
        "(when it was revoked already: only dependents that escaped the earlier cascade).",
    )
    aliases: list[FlaggedAliasPublic] = Field(
        default_factory=list, description="Aliases that point at a revoked version of the chain."
    )


class TokenIn(_Model):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    name: str = Field(min_length=1, max_length=128)
    role: str = Field(pattern="^(admin|publisher|releaser|deployer|auditor)$")
    namespace: str | None = Field(
        default=None, max_length=64, json_schema_extra=_rule(NAME_PATTERN)
    )
    expires_days: int | None = Field(default=None, ge=1, le=3650)


class TokenPublic(_Model):
    id: str
    name: str
    role: str
    namespace: str | None
    created_at: datetime | None = None
    expires_at: datetime | None = None
    revoked: bool = False
    token: str | None = Field(default=None, description="The secret: returned once, at creation.")


class Problem(_Model):
    """RFC 9457 problem details; ``facts`` carries machine-readable specifics."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    facts: dict[str, object] | None = None


PROBLEM_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {
        "model": Problem,
        "content": {"application/problem+json": {}},
        "description": description,
    }
    for status, description in {
        400: "Invalid request",
        401: "Missing or invalid API token",
        403: "Not allowed",
        404: "Not found",
        409: "Conflict",
        413: "Too large",
        429: "Rate limited (``Retry-After``)",
        503: "The database or the blob store is unavailable (``Retry-After``)",
    }.items()
}


class VerificationFailureIn(_Model):
    """A client's report that a verified pull failed (a security event)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    reference: str = Field(min_length=1, max_length=512, json_schema_extra=_rule(REF_PATTERN))
    reason: str = Field(min_length=1, max_length=4000)
    #: ``not-released``: the caller asked for a version that is not released (pending) without
    #: asking for pending versions; a user's mistake, counted apart, no security event
    kind: Literal["verification", "not-released"] = "verification"


# -- the transparency log (docs/transparency-log.md) --------------------------------------------


class LogKeyPublic(_Model):
    """The transparency log's identity: its origin (the checkpoints' first line, and the key's
    name) and its Ed25519 note verifier key (C2SP signed-note vkey)."""

    origin: str
    vkey: str = Field(description="<origin>+<8 hex key ID>+<base64(0x01 || Ed25519 key)>")
    binding: str = Field(
        description="A bundle signed by the registry key whose statement "
        "(predicate https://modelseal.dev/attestation/log-key/v1) names this origin and vkey: "
        "a client holding the registry key anchors the log key on it"
    )


class InclusionProofPublic(_Model):
    """RFC 9162 inclusion proof of entry ``index`` in the tree of ``size`` entries."""

    index: int
    size: int
    hashes: list[str] = Field(description="Base64 SHA-256 hashes, in the RFC's order.")


class ConsistencyProofPublic(_Model):
    """RFC 9162 consistency proof from the tree of ``old`` entries to that of ``new``."""

    old: int
    new: int
    hashes: list[str] = Field(description="Base64 SHA-256 hashes, in the RFC's order.")


class LogEntryPublic(_Model):
    """One log entry: its exact bytes (the leaf is SHA-256(0x00 || those bytes))."""

    index: int
    entry: str = Field(description="Base64 of the entry's bytes (compact canonical JSON).")
    type: str
    subject: str


class LogEntriesPublic(_Model):
    size: int = Field(description="The size of the newest checkpoint the page is within.")
    entries: list[LogEntryPublic]


class VersionLogPublic(_Model):
    """A version's newest status event (release or revocation) in the log, the newest signed
    checkpoint, and the event's inclusion proof in it: what a pull checks."""

    index: int
    entry: str = Field(description="Base64 of the entry's bytes.")
    type: str
    checkpoint: str = Field(description="The signed checkpoint note (C2SP tlog-checkpoint).")
    size: int
    hashes: list[str] = Field(description="The inclusion proof: base64 SHA-256 hashes.")
