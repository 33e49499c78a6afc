"""Service settings: one pydantic-settings object (env prefix ``MODELSEAL_``), passed down.

Nothing here is read at import time; :func:`registry.server.app.create_app` receives a ``Settings``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024 * 1024
GiB = 1024 * MiB


class Settings(BaseSettings):
    """Configuration of one registry process. Every replica of a deployment uses the same values."""

    model_config = SettingsConfigDict(env_prefix="MODELSEAL_", extra="ignore")

    data_dir: Path = Field(
        default=Path("modelseal-data"),
        description="Where the embedded defaults live: registry.db, blobs/, tmp/, admin-token.",
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default sqlite:///DATA_DIR/registry.db."
    )
    storage: str | None = Field(
        default=None,
        description="Blob store: s3://bucket/prefix, or file:///path; default DATA_DIR/blobs.",
    )
    s3_endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint URL.")
    s3_region: str | None = None
    s3_sse: Literal["AES256", "aws:kms"] | None = Field(
        default=None, description="Server-side encryption for stored blobs."
    )
    s3_sse_kms_key_id: str | None = None
    s3_max_pool_connections: int = Field(default=32, ge=1, le=1024)
    s3_presign_downloads: bool | None = Field(
        default=None,
        description="Answer file downloads that ask for it (?redirect=true, as the SDK and CLI "
        "do) with a 307 to a short-lived presigned S3 URL, so the bytes go from the store to the "
        "client without passing through the registry. Unset (or 'auto'): on when the blob store "
        "is S3, for the SDK's downloads only (a client that cannot reach the store falls back "
        "to streaming and remembers that for a day); OCI blob GETs are then still streamed, as "
        "OCI clients have no such fallback. true: on for both (a warning when the store cannot "
        "hand out URLs); false: every download is streamed through the registry.",
    )
    s3_presign_seconds: int = Field(
        default=60,
        ge=1,
        le=3600,
        description="How long a presigned download URL can be used to start a download.",
    )
    s3_public_endpoint_url: str | None = Field(
        default=None,
        description="The S3 endpoint as clients reach it, for presigned URLs (default: "
        "s3_endpoint_url).",
    )

    max_blob_bytes: int = Field(default=256 * GiB, ge=1, description="Largest single file.")
    max_chunk_bytes: int = Field(default=512 * MiB, ge=1, description="Largest upload chunk.")
    min_chunk_bytes: int = Field(
        default=5 * MiB,
        ge=1,
        description="Smallest chunk except the last (the S3 multipart minimum part size).",
    )
    max_manifest_files: int = Field(default=100_000, ge=1)
    scan_inline_max_files: int = Field(
        default=1000,
        ge=0,
        description="Versions of at most this many files are scanned inside the commit request; "
        "a larger one is committed as 'scanning' and scanned by the background worker (nothing "
        "of it is served or released until its scan is recorded).",
    )
    max_json_bytes: int = Field(default=32 * MiB, ge=1024, description="Largest JSON body.")
    upload_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    sigstore_trusted_root: Path | None = Field(
        default=None,
        description="Sigstore trusted_root.json for keyless bundles; default: the public-good "
        "root shipped with modelseal (never the per-user sigstore cache).",
    )
    max_bundle_bytes: int = Field(default=16 * MiB, ge=1024, description="Largest bundle.")
    signing_key: str | None = Field(
        default=None,
        description="The registry's signing key: a PEM file, or a securesystemslib signer URI "
        "(awskms:, gcpkms:, hsm:, …) with signing_key_pub. Default: DATA_DIR/registry.key, "
        "generated on first start. Every replica must use the same key.",
    )
    rate_per_token: float = Field(default=200, ge=0, description="Requests/s per token (0: off).")
    burst_per_token: float = Field(default=1000, ge=1)
    rate_per_address: float = Field(
        default=400, ge=0, description="Requests/s per client address, authenticated or not."
    )
    burst_per_address: float = Field(default=2000, ge=1)
    forwarded_allow_ips: str | None = Field(
        default=None,
        max_length=1024,
        description="Proxies (comma-separated addresses or networks, as uvicorn takes them) "
        "whose X-Forwarded-For / X-Forwarded-Proto are believed. Unset: no proxy header is "
        "believed, the client address is the TCP peer's (rate limits and auth-failure bursts "
        "count per peer).",
    )
    audit_checkpoint_seconds: float = Field(
        default=3600, ge=0, description="Sign an audit-log checkpoint this often (0: never)."
    )
    signing_key_pub: Path | None = Field(
        default=None, description="PEM public key of a signer-URI signing key."
    )
    # -- the transparency log (docs/transparency-log.md) --
    log_signing_key: Path | None = Field(
        default=None,
        description="The transparency log's Ed25519 PEM private key (signed notes need "
        "Ed25519). Default: DATA_DIR/log.key, generated on first start. Every replica must "
        "use the same key.",
    )
    log_origin: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=r"^[!-*,-~]+$",
        description="The log's origin line (and its key's name), e.g. registry.example.com/log. "
        "Default: the origin recorded at first start, modelseal/<host name of that server>. "
        "It names the log for every client and must be the same on all replicas.",
    )
    checkpoint_seconds: float = Field(
        default=300,
        ge=0,
        description="Re-sign the log's checkpoint at least this often, even without new entries, "
        "so its age proves freshness (0: only after appends and on demand).",
    )
    log_witnesses: str | None = Field(
        default=None,
        description="Witnesses that cosign the log's checkpoints (C2SP tlog-witness): entries "
        "'<url>;<vkey>' separated by commas or newlines, the URL the witness's prefix "
        "(add-checkpoint is POSTed to <url>/add-checkpoint) and the vkey its cosignature key "
        "('modelseal witness keygen' prints it). Default: none.",
    )
    webhooks: list[str] = Field(
        default_factory=list,
        description='Security-event webhook URLs (JSON list: ["https://hooks.example/ms"]).',
    )
    webhook_secret: SecretStr | None = Field(
        default=None, description="HMAC-SHA256 key that signs every webhook body (required)."
    )
    webhook_allow_private: bool = Field(
        default=False,
        description="Allow webhooks to loopback, private and link-local addresses.",
    )
    webhook_ca_bundle: Path | None = Field(
        default=None, description="Extra CA bundle for https webhooks."
    )
    webhook_max_attempts: int = Field(
        default=12,
        ge=1,
        le=100,
        description="Attempts per event and webhook before its outbox row is marked dead.",
    )
    webhook_retry_seconds: float = Field(
        default=2.0, gt=0, description="Wait before the second attempt; doubles each time …"
    )
    webhook_retry_max_seconds: float = Field(
        default=900.0, gt=0, description="… up to this long between attempts."
    )
    webhook_poll_seconds: float = Field(
        default=1.0,
        gt=0,
        description="How often each replica looks for due webhook deliveries (events committed "
        "on the replica itself wake it at once).",
    )
    auth_failure_burst: int = Field(
        default=20, ge=1, description="This many 401s from one address within the window …"
    )
    auth_failure_window_seconds: float = Field(
        default=60, gt=0, description="… raise one auth_failure_burst security event."
    )
    metrics_public: bool = Field(
        default=False,
        description="Serve /metrics without a token (default: an admin or auditor token).",
    )

    @field_validator("storage")
    @classmethod
    def _check_storage(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = urlparse(value).scheme
        if scheme not in {"s3", "file"}:
            raise ValueError("storage must be s3://bucket/prefix or file:///path")
        if scheme == "s3" and not urlparse(value).netloc:
            raise ValueError("s3 storage needs a bucket: s3://bucket/prefix")
        return value

    @field_validator("s3_presign_downloads", mode="before")
    @classmethod
    def _auto_presign(cls, value: object) -> object:
        """``auto`` (or an empty variable) is the default: decided by the store."""
        if isinstance(value, str) and value.strip().lower() in {"", "auto"}:
            return None
        return value

    def presigned_downloads(self, *, store_presigns: bool, client_falls_back: bool) -> bool:
        """Whether a download that asks for it is answered with a presigned URL, on a store
        that can (``store_presigns``) or cannot hand them out, for a client that does
        (``client_falls_back``: the SDK) or may not (OCI clients) stream through the registry
        when the URL turns out unusable. Explicit true or false decides; unset is on exactly
        for a presigning store and a client that falls back."""
        if not store_presigns or self.s3_presign_downloads is False:
            return False
        return self.s3_presign_downloads is True or client_falls_back

    @field_validator("log_witnesses")
    @classmethod
    def _check_witnesses(cls, value: str | None) -> str | None:
        if value is not None:
            witness_specs(value)  # raises ValueError naming the bad entry
        return value

    @field_validator("s3_endpoint_url", "s3_public_endpoint_url")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parsed = urlparse(value)
        if parsed.scheme not in {"http", "https"} or not parsed.hostname:
            raise ValueError("an S3 endpoint must be an http:// or https:// URL with a host")
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'registry.db').resolve()}"


def witness_specs(value: str | None) -> list[tuple[str, str]]:
    """``(url, vkey)`` of each entry of MODELSEAL_LOG_WITNESSES (``<url>;<vkey>``, separated by
    commas or newlines); the vkey must be a cosignature key, and names unique.

    Raises:
        ValueError: naming the bad entry.
    """
    from attest import note
    from attest.errors import AttestError

    found: list[tuple[str, str]] = []
    names: set[str] = set()
    for raw in (value or "").replace("\n", ",").split(","):
        item = raw.strip()
        if not item:
            continue
        url, sep, vkey = item.partition(";")
        url, vkey = url.strip().rstrip("/"), vkey.strip()
        parsed = urlparse(url)
        if not sep or parsed.scheme not in {"http", "https"} or not parsed.hostname:
            raise ValueError(f"log witness {item[:200]!r} is not '<http(s) url>;<vkey>'")
        try:
            verifier = note.NoteVerifier.from_vkey(vkey)
        except AttestError as exc:
            raise ValueError(f"log witness {url}: {exc}") from None
        if verifier.sig_type != note.SIG_COSIGNATURE_V1:
            raise ValueError(f"log witness {url}: its vkey is not a cosignature key (type 0x04)")
        if verifier.name in names:
            raise ValueError(f"two log witnesses are named {verifier.name!r}")
        names.add(verifier.name)
        found.append((url, vkey))
    return found
