"""Sigstore bundle v0.3 (JSON) holding one DSSE envelope: the one container for evidence.

Parsing is strict and bounded; a parsed :class:`Bundle` keeps the exact bytes it came from.
Key-based bundles name their key by ``verificationMaterial.publicKey.hint`` (as ``model-signing``
writes them); keyless bundles carry a Fulcio certificate and transparency-log entries and are
verified with sigstore-python.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from attest.dsse import IN_TOTO_PAYLOAD_TYPE
from attest.errors import (
    MalformedDocumentError,
    SignatureCountError,
    WrongMediaTypeError,
    WrongPayloadTypeError,
)
from attest.jsonsafe import MAX_DOCUMENT_BYTES, loads
from attest.statement import Statement

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
_ACCEPTED_MEDIA_TYPES = {BUNDLE_MEDIA_TYPE, "application/vnd.dev.sigstore.bundle+json;version=0.3"}


@dataclass(frozen=True, slots=True)
class Bundle:
    """A parsed bundle. ``raw`` is byte-exact what was parsed (or built)."""

    raw: bytes
    payload: bytes
    payload_type: str
    signature: bytes
    key_hint: str | None
    certificate: bytes | None  # DER, keyless bundles only
    document: dict[str, Any]

    @property
    def digest(self) -> str:
        """SHA-256 hex of the bundle's exact bytes (how a release attestation cites it)."""
        return hashlib.sha256(self.raw).hexdigest()

    @property
    def is_keyless(self) -> bool:
        return self.certificate is not None

    def statement(self) -> Statement:
        """The payload parsed as an in-toto statement (unverified: verify the bundle first)."""
        return Statement.parse(self.payload)

    @classmethod
    def parse(cls, raw: bytes, *, max_bytes: int = MAX_DOCUMENT_BYTES) -> Bundle:
        """Parse bundle JSON strictly.

        Raises:
            DocumentTooLargeError, NestingTooDeepError, MalformedDocumentError: bad JSON.
            WrongMediaTypeError: not a v0.3 bundle.
            WrongPayloadTypeError: the envelope does not carry an in-toto statement.
            SignatureCountError: zero, empty or several signatures.
        """
        document = loads(raw, what="bundle", max_bytes=max_bytes)
        if not isinstance(document, dict):
            raise MalformedDocumentError("a bundle must be a JSON object")
        media_type = document.get("mediaType")
        if media_type not in _ACCEPTED_MEDIA_TYPES:
            raise WrongMediaTypeError(
                f"mediaType must be {BUNDLE_MEDIA_TYPE!r}, got {str(media_type)[:80]!r}"
            )
        if "messageSignature" in document:
            raise MalformedDocumentError(
                "bundle holds a messageSignature; modelseal evidence is a DSSE envelope"
            )
        envelope = _object(document, "dsseEnvelope")
        payload_type = envelope.get("payloadType")
        if payload_type != IN_TOTO_PAYLOAD_TYPE:
            raise WrongPayloadTypeError(
                f"payloadType must be {IN_TOTO_PAYLOAD_TYPE!r}, got {str(payload_type)[:80]!r}"
            )
        payload = _b64(envelope.get("payload"), "dsseEnvelope.payload")
        signatures = envelope.get("signatures")
        if not isinstance(signatures, list) or len(signatures) != 1:
            count = len(signatures) if isinstance(signatures, list) else 0
            raise SignatureCountError(
                f"a DSSE envelope must carry exactly one signature, found {count}", count=count
            )
        entry = signatures[0]
        if not isinstance(entry, dict):
            raise MalformedDocumentError("dsseEnvelope.signatures[0] must be an object")
        signature = _b64(entry.get("sig"), "dsseEnvelope.signatures[0].sig")
        if not signature:
            raise SignatureCountError("the DSSE signature is empty")

        material = _object(document, "verificationMaterial")
        key_hint: str | None = None
        certificate: bytes | None = None
        if "publicKey" in material:
            hint = (
                material["publicKey"].get("hint")
                if isinstance(material["publicKey"], dict)
                else None
            )
            if not isinstance(hint, str) or not hint:
                raise MalformedDocumentError("verificationMaterial.publicKey.hint is missing")
            key_hint = hint
        elif "certificate" in material:
            cert = material["certificate"]
            raw_bytes = cert.get("rawBytes") if isinstance(cert, dict) else None
            certificate = _b64(raw_bytes, "verificationMaterial.certificate.rawBytes")
        else:
            raise MalformedDocumentError(
                "verificationMaterial needs publicKey (key bundles) or certificate (keyless)"
            )
        return cls(raw, payload, IN_TOTO_PAYLOAD_TYPE, signature, key_hint, certificate, document)


def build_key_bundle(payload: bytes, signature: bytes, key_hint: str) -> Bundle:
    """A key-based bundle in the shape ``model-signing`` writes and verifies."""
    document = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": key_hint}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode("ascii"),
            "payloadType": IN_TOTO_PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(signature).decode("ascii"), "keyid": ""}],
        },
    }
    raw = json.dumps(document, separators=(",", ":")).encode()
    return Bundle(raw, payload, IN_TOTO_PAYLOAD_TYPE, signature, key_hint, None, document)


def _object(parent: dict[str, Any], key: str) -> dict[str, Any]:
    value = parent.get(key)
    if not isinstance(value, dict):
        raise MalformedDocumentError(f"bundle field {key!r} is missing or not an object")
    return value


def _b64(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise MalformedDocumentError(f"{where} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedDocumentError(f"{where} is not valid base64") from None
