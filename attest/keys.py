"""Signing keys: ECDSA P-256 (default) and Ed25519, PEM on disk, identified by fingerprint.

A key's fingerprint is the SHA-256 of its SubjectPublicKeyInfo PEM, the value ``model-signing``
puts in a bundle's ``verificationMaterial.publicKey.hint``; bundles made by either tool name the
key the same way.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from attest.errors import SignatureError, SigningError

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

_EC_HASHES: dict[str, hashes.HashAlgorithm] = {
    "secp256r1": hashes.SHA256(),
    "secp384r1": hashes.SHA384(),
    "secp521r1": hashes.SHA512(),
}


class KeyType(StrEnum):
    ECDSA_P256 = "ecdsa-p256"
    ED25519 = "ed25519"


def generate(key_type: KeyType = KeyType.ECDSA_P256) -> PrivateKey:
    """A new private key."""
    if key_type is KeyType.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(key: PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def fingerprint(key: PublicKey) -> str:
    """SHA-256 hex of the SPKI PEM (the bundle key hint)."""
    return hashlib.sha256(public_pem(key)).hexdigest()


def private_pem(key: PrivateKey, password: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def write_keypair(
    prefix: Path, key: PrivateKey, password: bytes | None = None
) -> tuple[Path, Path]:
    """Write ``PREFIX.key`` (mode 0600, never overwritten) and ``PREFIX.pub``."""
    private_path = prefix.with_name(prefix.name + ".key")
    public_path = prefix.with_name(prefix.name + ".pub")
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_pem(key, password))
    public_path.write_bytes(public_pem(key.public_key()))
    return private_path, public_path


def load_private(path: Path, password: bytes | None = None) -> PrivateKey:
    """Load a PEM private key (ECDSA P-256/384/521 or Ed25519).

    Raises:
        SigningError: unreadable, wrong password, or an unsupported key type.
    """
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password)
    except (OSError, ValueError, TypeError) as exc:
        raise SigningError(f"cannot load private key {path}: {exc}") from exc
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _EC_HASHES:
        return key
    raise SigningError(f"{path}: only ECDSA (P-256/384/521) and Ed25519 keys are supported")


def load_public(data: bytes) -> PublicKey:
    """Load a PEM public key.

    Raises:
        ValueError: not a PEM public key of a supported type.
    """
    key = serialization.load_pem_public_key(data)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in _EC_HASHES:
        return key
    raise ValueError("only ECDSA (P-256/384/521) and Ed25519 public keys are supported")


def sign(key: PrivateKey, data: bytes) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    return key.sign(data, ec.ECDSA(_EC_HASHES[key.curve.name]))


def verify(key: PublicKey, signature: bytes, data: bytes) -> None:
    """Raises :class:`SignatureError` unless ``signature`` is valid for ``data``."""
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            key.verify(signature, data, ec.ECDSA(_EC_HASHES[key.curve.name]))
    except InvalidSignature:
        raise SignatureError(
            f"the signature does not verify with key sha256:{fingerprint(key)}",
            key=fingerprint(key),
        ) from None


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """A public key trusted under a name."""

    name: str
    key: PublicKey

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.key)

    @classmethod
    def from_pem(cls, name: str, pem: bytes) -> TrustedKey:
        return cls(name, load_public(pem))
