"""SQLAlchemy 2 typed models: the registry's metadata. Blob bytes live in the blob store."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.sql.expression import false
from sqlalchemy.types import TypeDecorator

from attest.digests import Digest

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class DigestColumn(TypeDecorator[Digest]):
    """A SHA-256 digest stored as its 64 hex digits and read back as a :class:`Digest`, so the
    services never hold a digest whose form they must guess. Reading a value that is not 64
    lowercase hex digits raises (a damaged row is an error, never a digest)."""

    impl = String(64)
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else str.__str__(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Digest | None:
        return None if value is None else Digest(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {Digest: DigestColumn}


Timestamp = DateTime(timezone=True)


class Namespace(Base):
    __tablename__ = "namespaces"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class Artifact(Base):
    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("namespace_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace_id: Mapped[int] = mapped_column(ForeignKey("namespaces.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(Timestamp)

    namespace: Mapped[Namespace] = relationship(lazy="joined")


class Version(Base):
    __tablename__ = "versions"
    __table_args__ = (
        UniqueConstraint("artifact_id", "version"),
        Index("ix_versions_root_digest", "root_digest"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id", ondelete="RESTRICT"))
    version: Mapped[str] = mapped_column(String(72))
    root_digest: Mapped[Digest] = mapped_column(DigestColumn)
    state: Mapped[str] = mapped_column(String(16))
    file_count: Mapped[int] = mapped_column(Integer)
    total_size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    created_by: Mapped[str] = mapped_column(String(64))
    state_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    external: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: The ruleset of the newest registry scan (written with it); a pending version scanned
    #: under a ruleset older than the scanner's minimum is scanned again at start-up.
    scan_ruleset: Mapped[str | None] = mapped_column(String(32), nullable=True)

    artifact: Mapped[Artifact] = relationship(lazy="joined")
    files: Mapped[list[VersionFile]] = relationship(
        order_by="VersionFile.path", cascade="all, delete-orphan", lazy="selectin"
    )
    external_files: Mapped[list[ExternalFile]] = relationship(
        order_by="ExternalFile.path", cascade="all, delete-orphan", lazy="selectin"
    )


class VersionFile(Base):
    __tablename__ = "version_files"
    __table_args__ = (UniqueConstraint("version_id", "path"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(String(1024))
    size: Mapped[int] = mapped_column(BigInteger)
    digest: Mapped[Digest] = mapped_column(ForeignKey("blobs.digest", ondelete="RESTRICT"))


class ExternalFile(Base):
    """A file of a version registered by manifest only: its bytes stay at ``uri``."""

    __tablename__ = "external_files"
    __table_args__ = (UniqueConstraint("version_id", "path"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(String(1024))
    size: Mapped[int] = mapped_column(BigInteger)
    digest: Mapped[Digest] = mapped_column(DigestColumn)
    uri: Mapped[str] = mapped_column(String(2048))


class Blob(Base):
    """A verified, stored blob; the row exists only once its bytes are at the final key."""

    __tablename__ = "blobs"

    digest: Mapped[Digest] = mapped_column(DigestColumn, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class NamespaceBlob(Base):
    """Which namespaces uploaded a blob: knowing a digest grants no access to its bytes."""

    __tablename__ = "namespace_blobs"

    namespace_id: Mapped[int] = mapped_column(
        ForeignKey("namespaces.id", ondelete="CASCADE"), primary_key=True
    )
    digest: Mapped[Digest] = mapped_column(
        ForeignKey("blobs.digest", ondelete="RESTRICT"), primary_key=True
    )
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class Alias(Base):
    __tablename__ = "aliases"
    __table_args__ = (UniqueConstraint("artifact_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="RESTRICT"))
    updated_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_by: Mapped[str] = mapped_column(String(64))


class UploadSession(Base):
    """A chunked, resumable upload of one blob (OCI-distribution style).

    ``offset`` and ``hash_state`` advance together, conditionally on the previous offset, so any
    replica can take the next chunk; every chunk gets its own part number, so two writers racing
    on one offset can never mix their bytes into the blob.
    """

    __tablename__ = "upload_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    namespace_id: Mapped[int] = mapped_column(ForeignKey("namespaces.id", ondelete="CASCADE"))
    digest: Mapped[Digest] = mapped_column(DigestColumn)
    size: Mapped[int] = mapped_column(BigInteger)
    offset: Mapped[int] = mapped_column(BigInteger)
    hash_state: Mapped[bytes] = mapped_column(LargeBinary(256))
    backend_handle: Mapped[str] = mapped_column(String(1024))
    next_part: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    expires_at: Mapped[datetime] = mapped_column(Timestamp, index=True)
    created_by: Mapped[str] = mapped_column(String(64))
    #: The token that opened it: only that token (or an admin) may see, continue or cancel it
    #: (null on sessions opened before this was recorded: their opener's name decides).
    token_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


class UploadPart(Base):
    __tablename__ = "upload_parts"

    session_id: Mapped[str] = mapped_column(
        ForeignKey("upload_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    part_number: Mapped[int] = mapped_column(Integer, primary_key=True)
    offset: Mapped[int] = mapped_column(BigInteger)
    size: Mapped[int] = mapped_column(BigInteger)
    etag: Mapped[str] = mapped_column(String(256))


class ApiToken(Base):
    """An API token; only a SHA-256 of its secret is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    secret_hash: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    namespace: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    expires_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)


class Identity(Base):
    """A signer the registry trusts: a public key, or a Sigstore issuer + identity."""

    __tablename__ = "identities"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # "key" | "sigstore"
    public_key_pem: Mapped[str | None] = mapped_column(Text, nullable=True)
    fingerprint: Mapped[Digest | None] = mapped_column(DigestColumn, nullable=True, unique=True)
    sigstore_issuer: Mapped[str | None] = mapped_column(String(512), nullable=True)
    sigstore_identity: Mapped[str | None] = mapped_column(String(512), nullable=True)
    identity_regex: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    created_by: Mapped[str] = mapped_column(String(64))


class Attestation(Base):
    """A verified bundle about a version, stored byte-exact."""

    __tablename__ = "attestations"
    __table_args__ = (
        UniqueConstraint("version_id", "bundle_digest"),
        Index("ix_attestations_subject", "subject_digest", "predicate_type"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"))
    predicate_type: Mapped[str] = mapped_column(String(256))
    subject_digest: Mapped[Digest] = mapped_column(DigestColumn)
    bundle: Mapped[bytes] = mapped_column(LargeBinary)
    bundle_digest: Mapped[Digest] = mapped_column(DigestColumn)
    signer: Mapped[str] = mapped_column(String(64))
    signer_id: Mapped[str] = mapped_column(String(1100))
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    created_by: Mapped[str] = mapped_column(String(64))


class RegistryKey(Base):
    """Public keys the registry signs with. Every replica must hold the private half of one."""

    __tablename__ = "registry_keys"

    fingerprint: Mapped[Digest] = mapped_column(DigestColumn, primary_key=True)
    public_key_pem: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class NamespacePolicy(Base):
    """Versioned release policies; the newest row of a namespace is in force."""

    __tablename__ = "namespace_policies"
    __table_args__ = (UniqueConstraint("namespace_id", "revision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace_id: Mapped[int] = mapped_column(ForeignKey("namespaces.id", ondelete="CASCADE"))
    revision: Mapped[int] = mapped_column(Integer)
    document: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    created_by: Mapped[str] = mapped_column(String(64))


class AliasEvent(Base):
    """Every alias move, append-only."""

    __tablename__ = "alias_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id", ondelete="CASCADE"))
    alias: Mapped[str] = mapped_column(String(64), index=True)
    from_version: Mapped[str | None] = mapped_column(String(72), nullable=True)
    to_version: Mapped[str] = mapped_column(String(72))
    actor: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(Timestamp)


class AuditEntry(Base):
    """One entry of the append-only audit log; ``hash`` chains it to the previous entry."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(Timestamp)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(1024))
    outcome: Mapped[str] = mapped_column(String(32))
    request_id: Mapped[str] = mapped_column(String(64))
    details: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditCheckpoint(Base):
    """A registry-signed statement of the log's length and head hash."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    head_hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(Timestamp)
    bundle: Mapped[bytes] = mapped_column(LargeBinary)


class RateLimitBucket(Base):
    """One token bucket of a rate limit (``registry/server/services/ratelimit.py``), shared by every
    replica: ``tokens`` left when last counted at ``counted_at`` (unix seconds), and whether that
    request was allowed. Rows idle long enough to be full again are deleted."""

    __tablename__ = "rate_limit_buckets"

    bucket: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    tokens: Mapped[float] = mapped_column(Double)
    counted_at: Mapped[float] = mapped_column(Double)
    allowed: Mapped[bool] = mapped_column(Boolean)


class EventOutbox(Base):
    """A security event for one webhook target, written in the transaction of the change that
    caused it and delivered by any replica's worker (``registry/server/services/events.py``).

    ``status``: ``pending`` (due at ``next_attempt_at``), ``delivered`` or ``dead`` (gave up;
    kept). ``body`` is the exact JSON that is signed and sent on every attempt."""

    __tablename__ = "event_outbox"
    __table_args__ = (
        UniqueConstraint("event_id", "target"),
        Index("ix_event_outbox_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36))
    event: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(2048))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(Timestamp)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)
    last_error: Mapped[str | None] = mapped_column(String(512), nullable=True)


class OciArtifact(Base):
    """A version's OCI form, stored the first time it is served so its digest never changes:
    the ModelPack manifest and config blob (``registry/server/services/oci.py``) and, once the
    version is released, the registry-signed statement whose subject is the manifest digest."""

    __tablename__ = "oci_artifacts"

    version_id: Mapped[int] = mapped_column(
        ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True
    )
    manifest_digest: Mapped[Digest] = mapped_column(DigestColumn, index=True)
    manifest: Mapped[bytes] = mapped_column(LargeBinary)
    config_digest: Mapped[Digest] = mapped_column(DigestColumn, index=True)
    config: Mapped[bytes] = mapped_column(LargeBinary)
    release_digest: Mapped[Digest | None] = mapped_column(DigestColumn, nullable=True, index=True)
    release_bundle: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class OciReferrer(Base):
    """A referrer manifest: one evidence bundle of a version as an OCI artifact whose subject is
    the version's manifest. ``attestation_id`` is empty for the registry's manifest-digest
    release statement (kept in :class:`OciArtifact`)."""

    __tablename__ = "oci_referrers"
    __table_args__ = (UniqueConstraint("version_id", "digest"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"))
    attestation_id: Mapped[int | None] = mapped_column(
        ForeignKey("attestations.id", ondelete="CASCADE"), nullable=True
    )
    digest: Mapped[Digest] = mapped_column(DigestColumn, index=True)
    predicate_type: Mapped[str] = mapped_column(String(256))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(Timestamp)


# -- the transparency log (registry/server/services/tlog.py, docs/transparency-log.md) ----------


class LogEntry(Base):
    """One leaf of the transparency log: the entry's exact bytes (compact canonical JSON) and
    its RFC 9162 leaf hash. Append-only; ``idx`` is the leaf index, from 0 without gaps."""

    __tablename__ = "tlog_entries"
    __table_args__ = (Index("ix_tlog_entries_subject", "subject", "idx"),)

    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary)
    entry: Mapped[bytes] = mapped_column(LargeBinary)
    type: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class LogHead(Base):
    """The log's single head row (``id`` 1): the next leaf index, how far the tiles in the blob
    store reach, and the log's origin and key (recorded at first start; every replica must use
    them). Appenders and
    checkpoint signers lock it (``SELECT … FOR UPDATE``): one writer at a time."""

    __tablename__ = "tlog_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger)
    tiles_size: Mapped[int] = mapped_column(BigInteger)
    origin: Mapped[str | None] = mapped_column(String(256), nullable=True)
    vkey: Mapped[str | None] = mapped_column(String(512), nullable=True)


class LogCheckpoint(Base):
    """A signed checkpoint (C2SP tlog-checkpoint in a signed note) of the log's first ``size``
    entries; the newest row is served."""

    __tablename__ = "tlog_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger, index=True)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary)
    timestamp: Mapped[int] = mapped_column(BigInteger)
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class LogCosignature(Base):
    """A witness's cosignature (C2SP tlog-cosignature signature line) of a checkpoint."""

    __tablename__ = "tlog_cosignatures"
    __table_args__ = (UniqueConstraint("checkpoint_id", "witness"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    checkpoint_id: Mapped[int] = mapped_column(
        ForeignKey("tlog_checkpoints.id", ondelete="RESTRICT")
    )
    witness: Mapped[str] = mapped_column(String(256))
    signature: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp)


class BomJob(Base):
    """A model version's ML-BOM to build, off the request path (``services/bomjobs.py``): one
    row per version, written in the transaction of the change that calls for a build (the
    version's commit, its scan, new provenance or evaluation results) and run by any replica's
    worker.

    ``status``: ``pending`` (due at ``due_at``), ``running`` (held by ``claim`` until the lease
    ends at ``due_at``, which the worker extends while it builds), ``done``, ``skipped``
    (nothing to build: the version was rejected) or ``failed`` (given up after ``attempts``;
    ``last_error`` says why). ``again``: asked for once more while running (new evidence the
    running build may not have read): the job is pending again when that build finishes."""

    __tablename__ = "bom_jobs"
    __table_args__ = (Index("ix_bom_jobs_due", "status", "due_at"),)

    version_id: Mapped[int] = mapped_column(
        ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    due_at: Mapped[datetime] = mapped_column(Timestamp)
    again: Mapped[bool] = mapped_column(Boolean)
    claim: Mapped[str | None] = mapped_column(String(64), nullable=True)
    requested_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)
    last_error: Mapped[str | None] = mapped_column(String(1024), nullable=True)
