"""Errors raised by the registry service and its SDK.

    RegistryError                     500 internal-error
    ├── InvalidRequestError           400 invalid-request
    │   ├── InvalidNameError          400 invalid-name
    │   ├── InvalidPathError          400 invalid-path
    │   ├── InvalidReferenceError     400 invalid-reference
    │   ├── InvalidManifestError      400 invalid-manifest
    │   ├── MissingBlobsError         400 missing-blobs
    │   ├── DigestMismatchError       400 digest-mismatch
    │   ├── UploadIncompleteError     400 upload-incomplete
    │   ├── EvidenceRejectedError     400 evidence-rejected (bad bundle, untrusted signer…)
    │   └── DirtyTreeError            (SDK only) the git checkout has uncommitted changes
    ├── AuthenticationError           401 unauthenticated
    ├── PermissionDeniedError         403 forbidden
    ├── NotFoundError                 404 not-found
    ├── ConflictError                 409 conflict
    │   ├── VersionConflictError      409 version-conflict
    │   └── ReleaseRefusedError       409 release-refused (facts.reasons: every broken link)
    ├── UploadExpiredError            410 upload-expired
    ├── VersionUnavailableError       410 version-unavailable (rejected or revoked)
    ├── PayloadTooLargeError          413 payload-too-large
    ├── UploadOffsetError             416 upload-offset-mismatch
    ├── RateLimitedError              429 rate-limited (facts.retry_after: seconds)
    ├── ServiceUnavailableError       503 service-unavailable (facts.retry_after: seconds)
    │   ├── StorageUnavailableError   503 storage-unavailable
    │   ├── DatabaseUnavailableError  503 database-unavailable
    │   └── ScanPendingError          503 scan-pending (the version is being scanned)
    ├── ResponseVerificationError     (SDK only) an answer of the registry failed verification
    │   └── PullVerificationError     (SDK only) a pull did not verify; nothing was written
    ├── ConnectionFailedError         (SDK only) the registry could not be reached
    └── ConfigurationError            (service only) misconfigured or missing a dependency:
                                      the service does not start

Exceptions that never reach a client as one of these live beside the protocol that answers them
in its own terms, and are caught there:

    registry.server.services.oci.OciError         an OCI distribution-spec error code and status
    registry.server.witness.WitnessRefusal        a C2SP tlog-witness status (400/403/404/409/422)
    registry.server.witness.WitnessStateError     the witness's state does not verify (``witness
                                                  serve`` reports it as a ConfigurationError)
    registry.server.services.witnesses.WitnessFailure   a witness did not cosign (counted
                                                  against the threshold, retried)
    registry.server.services.tlog.LogEntryError   a log entry cannot be built: the change is refused
    registry.server.services.events.WebhookTargetError  a ConfigurationError: a webhook URL that
                                                  may not be called; UnresolvableTargetError is a
                                                  transient DNS failure at delivery (retried)
    registry.server.storage.pipe.PipeClosedError  an upload's reader stopped; its writer stops too
    registry.server.ui.web.CsrfError              the web console's 403 for a form not its own
    registry.server.api.middleware.limits.BodyTooLargeError  a PayloadTooLargeError raised
                                                  while the body streams

Every error carries a human ``detail`` and machine-readable ``facts`` (expected, got, which file…).
:data:`PROBLEMS` is the one table that maps error classes to HTTP status and RFC 9457 problem type;
the SDK maps problem documents back to the same classes with :func:`error_from_problem`.
"""

from __future__ import annotations

from typing import Any

PROBLEM_TYPE_BASE = "https://modelseal.dev/problems/"


class RegistryError(Exception):
    """Base class of every error the registry raises or the SDK re-raises."""

    def __init__(self, detail: str, **facts: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.facts = facts

    def diagnostics(self) -> str:
        """The text a CLI user reads."""
        return self.detail


class InvalidRequestError(RegistryError):
    """The request is malformed."""


class InvalidNameError(InvalidRequestError):
    """A namespace, artifact, version or alias name breaks the naming rules."""


class InvalidPathError(InvalidRequestError):
    """A file path inside a version is not a safe relative POSIX path."""


class InvalidReferenceError(InvalidRequestError):
    """A reference (``NS/NAME@VERSION``, ``@ALIAS``, ``@sha256:…``) cannot be parsed."""


class InvalidManifestError(InvalidRequestError):
    """A version manifest is inconsistent (duplicate paths, sizes, kinds…)."""


class MissingBlobsError(InvalidRequestError):
    """A manifest names blobs that were never uploaded to this namespace."""


class DigestMismatchError(InvalidRequestError):
    """Uploaded or downloaded bytes do not hash to the declared digest."""


class UploadIncompleteError(InvalidRequestError):
    """An upload was finalized before all its declared bytes arrived."""


class DirtyTreeError(InvalidRequestError):
    """SDK-side: the git checkout has uncommitted changes (pass allow_dirty / --allow-dirty)."""


class EvidenceRejectedError(InvalidRequestError):
    """A bundle was refused: malformed, untrusted signer, bad signature, wrong subject…

    ``facts["reason"]`` names the :mod:`attest` error class.
    """


class AuthenticationError(RegistryError):
    """No credentials, or credentials that are not valid."""


class PermissionDeniedError(RegistryError):
    """Valid credentials that do not allow this action."""


class NotFoundError(RegistryError):
    """The addressed object does not exist (or is not visible to the caller)."""


class ConflictError(RegistryError):
    """The request conflicts with the current state."""


class VersionConflictError(ConflictError):
    """A version already exists with different content; versions are immutable."""


class ReleaseRefusedError(ConflictError):
    """The release gate failed; ``facts["reasons"]`` lists ``"link: message"`` strings."""


class UploadExpiredError(RegistryError):
    """The upload session expired; start a new one."""


class VersionUnavailableError(RegistryError):
    """The version is rejected or revoked: its files are never served."""


class PayloadTooLargeError(RegistryError):
    """A body, chunk or blob exceeds a configured limit."""


class UploadOffsetError(RegistryError):
    """A chunk does not start where the upload session currently ends."""


class RateLimitedError(RegistryError):
    """Too many requests; retry after ``facts["retry_after"]`` seconds."""


class ServiceUnavailableError(RegistryError):
    """A component the registry depends on is down; retry (the SDK already did, with backoff)."""


class StorageUnavailableError(ServiceUnavailableError):
    """The blob store failed or could not be reached."""


class DatabaseUnavailableError(ServiceUnavailableError):
    """The metadata database failed or could not be reached."""


class ScanPendingError(ServiceUnavailableError):
    """The version is being scanned (state ``scanning``): none of its files is served and it
    cannot be released or rejected until its scan is recorded; retry after
    ``facts["retry_after"]`` seconds."""


class ResponseVerificationError(RegistryError):
    """SDK-side: something the registry answered failed verification (a reported root digest,
    a signed status, the audit log's chain or checkpoint)."""


class PullVerificationError(ResponseVerificationError):
    """SDK-side: a pull did not verify (its files, evidence or status); nothing was written."""


class ConnectionFailedError(RegistryError):
    """SDK-side: the registry could not be reached or the connection broke."""


class ConfigurationError(RegistryError):
    """Service-side: the settings or the environment make the service unable to run (a missing
    key, a signer URI without its public key, no libcrypto); it refuses to start."""


#: error class -> (HTTP status, problem type slug). Subclasses listed before their bases.
PROBLEMS: dict[type[RegistryError], tuple[int, str]] = {
    InvalidNameError: (400, "invalid-name"),
    InvalidPathError: (400, "invalid-path"),
    InvalidReferenceError: (400, "invalid-reference"),
    InvalidManifestError: (400, "invalid-manifest"),
    MissingBlobsError: (400, "missing-blobs"),
    DirtyTreeError: (400, "dirty-tree"),
    DigestMismatchError: (400, "digest-mismatch"),
    UploadIncompleteError: (400, "upload-incomplete"),
    EvidenceRejectedError: (400, "evidence-rejected"),
    InvalidRequestError: (400, "invalid-request"),
    AuthenticationError: (401, "unauthenticated"),
    PermissionDeniedError: (403, "forbidden"),
    NotFoundError: (404, "not-found"),
    VersionConflictError: (409, "version-conflict"),
    ReleaseRefusedError: (409, "release-refused"),
    ConflictError: (409, "conflict"),
    UploadExpiredError: (410, "upload-expired"),
    VersionUnavailableError: (410, "version-unavailable"),
    PayloadTooLargeError: (413, "payload-too-large"),
    UploadOffsetError: (416, "upload-offset-mismatch"),
    RateLimitedError: (429, "rate-limited"),
    StorageUnavailableError: (503, "storage-unavailable"),
    DatabaseUnavailableError: (503, "database-unavailable"),
    ScanPendingError: (503, "scan-pending"),
    ServiceUnavailableError: (503, "service-unavailable"),
    PullVerificationError: (500, "pull-verification-failed"),
    ResponseVerificationError: (500, "response-verification-failed"),
    ConnectionFailedError: (503, "connection-failed"),
    ConfigurationError: (500, "configuration-error"),
    RegistryError: (500, "internal-error"),
}

_BY_SLUG: dict[str, type[RegistryError]] = {slug: cls for cls, (_, slug) in PROBLEMS.items()}


def problem_for(error: RegistryError) -> tuple[int, str]:
    """HTTP status and problem type slug for an error (most specific class wins)."""
    for cls in type(error).__mro__:
        if cls in PROBLEMS:
            return PROBLEMS[cls]
    return PROBLEMS[RegistryError]


def error_from_problem(status: int, body: dict[str, Any]) -> RegistryError:
    """Rebuild the error a problem+json document describes (used by the SDK)."""
    problem_type = str(body.get("type", ""))
    slug = problem_type.removeprefix(PROBLEM_TYPE_BASE)
    cls = _BY_SLUG.get(slug)
    if cls is None:
        cls = next((c for c, (s, _) in PROBLEMS.items() if s == status), RegistryError)
    detail = str(body.get("detail") or body.get("title") or f"HTTP {status}")
    facts = body.get("facts")
    return cls(detail, **(facts if isinstance(facts, dict) else {}))
