"""Errors raised by :mod:`attest`. Each says what was expected and what was found.

AttestError
├── InvalidDigestError            a digest is not sha256:<64 lowercase hex>
├── DocumentError                 a document cannot be accepted as evidence
│   ├── DocumentTooLargeError     over the size cap
│   ├── NestingTooDeepError       JSON nested deeper than the cap
│   ├── MalformedDocumentError    not UTF-8, not JSON, duplicate keys, missing fields
│   ├── WrongMediaTypeError       not a Sigstore bundle v0.3
│   ├── WrongPayloadTypeError     DSSE payloadType is not in-toto JSON
│   ├── SignatureCountError       zero, empty or several signatures
│   └── InvalidStatementError     not an in-toto Statement v1 (or a subject without sha256)
├── VerificationError             the evidence does not prove what it claims
│   ├── UnknownSignerError        signed by a key or identity that is not trusted
│   ├── SignatureError            the signature does not verify
│   ├── SubjectMismatchError      the statement is about another digest
│   ├── ManifestMismatchError     an OMS manifest does not list exactly the version's files
│   └── AuditChainError           an audit log's hash chain is broken (facts["seq"]: where)
│       └── AuditRollbackError    a log no longer extends a signed checkpoint seen before
├── SigningError                  a signer could not sign (no key, no identity token…)
├── FileSetError                  a directory is no file set (symlinks, special files, empty)
├── PolicyError                   a release policy document is invalid (the message names the line)
├── TrustError                    an auditor's trust document is invalid
├── ProvenanceError               provenance input or a provenance predicate is malformed
├── IntotoExportError             the chain cannot be exported as in-toto metadata that verifies
└── BomError (in sbom.errors)     a BOM cannot be built or is not valid CycloneDX 1.6

Each class is defined here (``BomError`` in :mod:`sbom.errors`, under this tree) and is also
importable from the module that raises it.

The transparency-log formats define their subclasses beside the format, each under the class
above that a caller already catches:

    attest.note        NoteError (AttestError): MalformedNoteError (a MalformedDocumentError),
                       NoteSignatureError (a SignatureError), UnknownNoteSignerError (an
                       UnknownSignerError), CheckpointError (a VerificationError) and its
                       CheckpointRollbackError
    attest.tlog        LogError (AttestError): LogRequestError (also a ValueError), ProofError (a
                       VerificationError), TileError
    attest.tlogproof   TlogProofError (a MalformedDocumentError), LogKeyStatementError (a
                       VerificationError)
    attest.export      ExportError (AttestError): an export cannot be written or unpacked
"""

from __future__ import annotations

from typing import Any


class AttestError(Exception):
    """Base class of every error :mod:`attest` raises."""

    def __init__(self, message: str, **facts: Any) -> None:
        super().__init__(message)
        self.facts = facts

    def diagnostics(self) -> str:
        """A human-readable explanation, suitable for a CLI."""
        return str(self)


class InvalidDigestError(AttestError, ValueError):
    """A digest is malformed."""

    def __init__(self, value: str, *, expected: str = "sha256:<64 lowercase hex digits>") -> None:
        shown = value if len(value) <= 80 else value[:77] + "..."
        super().__init__(f"invalid digest {shown!r}: expected {expected}", value=shown)
        self.value = value
        self.expected = expected


class DocumentError(AttestError):
    """A document cannot be accepted as evidence."""


class DocumentTooLargeError(DocumentError):
    """A document is over the size cap."""


class NestingTooDeepError(DocumentError):
    """JSON nested deeper than the cap."""


class MalformedDocumentError(DocumentError):
    """Not UTF-8, not JSON, duplicate keys, or a required field missing or of the wrong type."""


class WrongMediaTypeError(DocumentError):
    """The bundle is not a Sigstore bundle v0.3."""


class WrongPayloadTypeError(DocumentError):
    """The DSSE payload is not an in-toto statement."""


class SignatureCountError(DocumentError):
    """A DSSE envelope must carry exactly one non-empty signature."""


class InvalidStatementError(DocumentError):
    """The payload is not a valid in-toto Statement v1."""


class VerificationError(AttestError):
    """The evidence does not prove what it claims."""


class UnknownSignerError(VerificationError):
    """Signed by a key or identity that is not trusted."""


class SignatureError(VerificationError):
    """The signature does not verify."""


class SubjectMismatchError(VerificationError):
    """The statement is about another artifact digest."""


class ManifestMismatchError(VerificationError):
    """An OMS manifest does not list exactly the version's files."""


class SigningError(AttestError):
    """A signer could not produce a signature."""


class FileSetError(AttestError):
    """A directory cannot be treated as a file set: symlinks, special files, nothing in it."""


class AuditChainError(VerificationError):
    """The chain is broken; ``facts["seq"]`` is the first bad entry."""


class AuditRollbackError(AuditChainError):
    """The log no longer extends a signed checkpoint the verifier saw before."""


class PolicyError(AttestError):
    """A policy document is invalid; the message names the line."""


class TrustError(AttestError):
    """A trust document is invalid."""


class ProvenanceError(AttestError):
    """Provenance input or a provenance predicate is malformed."""


class IntotoExportError(AttestError, ValueError):
    """The chain cannot be exported as in-toto metadata that would verify."""
