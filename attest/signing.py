"""Signers: turn a statement into a Sigstore bundle. Hash -> statement -> PAE -> sign -> bundle.

KeySigner        ECDSA / Ed25519 PEM keys; bundle names the key by its fingerprint hint
SigstoreSigner   keyless: an OIDC identity token, a Fulcio certificate, a Rekor entry
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING

from attest import keys
from attest.bundle import Bundle, build_key_bundle
from attest.dsse import IN_TOTO_PAYLOAD_TYPE, pae
from attest.errors import SigningError
from attest.statement import Statement

if TYPE_CHECKING:
    from sigstore.oidc import IdentityToken
    from sigstore.sign import SigningContext


class Signer(ABC):
    """Signs statements into bundles."""

    @property
    @abstractmethod
    def identity(self) -> str:
        """How verifiers will see this signer (``sha256:<fingerprint>`` or ``sigstore:…``)."""

    @abstractmethod
    def sign(self, statement: Statement) -> Bundle:
        """A bundle whose DSSE payload is ``statement``'s canonical JSON."""


class KeySigner(Signer):
    """Signs with a private key held by this process."""

    def __init__(self, key: keys.PrivateKey) -> None:
        self._key = key
        self._fingerprint = keys.fingerprint(key.public_key())

    @classmethod
    def from_file(cls, path: Path, password: bytes | None = None) -> KeySigner:
        """Load a PEM private key; a key readable by others is refused.

        Raises:
            SigningError: unreadable key, wrong password, unsupported type, loose permissions.
        """
        try:
            mode = path.stat().st_mode
        except OSError as exc:
            raise SigningError(f"cannot read private key {path}: {exc}") from exc
        if mode & 0o077:
            raise SigningError(
                f"private key {path} is readable by group or others (mode {mode & 0o777:o}); "
                "chmod 600 it"
            )
        return cls(keys.load_private(path, password))

    @property
    def identity(self) -> str:
        return f"sha256:{self._fingerprint}"

    @property
    def public_key(self) -> keys.PublicKey:
        return self._key.public_key()

    @property
    def private_key(self) -> keys.PrivateKey:
        """For formats that sign other documents than DSSE bundles (in-toto layouts)."""
        return self._key

    def sign(self, statement: Statement) -> Bundle:
        payload = statement.to_bytes()
        signature = keys.sign(self._key, pae(IN_TOTO_PAYLOAD_TYPE, payload))
        return build_key_bundle(payload, signature, self._fingerprint)


class UriSigner(Signer):
    """Signs through a securesystemslib signer URI; the public key names the signer.

    Raises (at construction):
        SigningError: unknown URI scheme, unreachable key, or a private key that does not
            match ``public_key``.
    """

    def __init__(self, uri: str, public_key: keys.PublicKey) -> None:
        from securesystemslib.signer import (  # type: ignore[attr-defined]
            SIGNER_FOR_URI_SCHEME,
            SSlibKey,
        )
        from securesystemslib.signer import (  # type: ignore[attr-defined]
            Signer as SslibSigner,
        )

        scheme = uri.split(":", 1)[0]
        if scheme not in SIGNER_FOR_URI_SCHEME:
            known = ", ".join(sorted(SIGNER_FOR_URI_SCHEME))
            raise SigningError(f"unknown signer URI scheme {scheme!r} (known: {known})")
        try:
            self._signer = SslibSigner.from_priv_key_uri(uri, SSlibKey.from_crypto(public_key))
        except Exception as exc:
            raise SigningError(f"cannot use signer {scheme}:…: {exc}") from exc
        self._public_key = public_key
        self._fingerprint = keys.fingerprint(public_key)

    @property
    def identity(self) -> str:
        return f"sha256:{self._fingerprint}"

    @property
    def public_key(self) -> keys.PublicKey:
        return self._public_key

    def sign(self, statement: Statement) -> Bundle:
        payload = statement.to_bytes()
        try:
            signature = self._signer.sign(pae(IN_TOTO_PAYLOAD_TYPE, payload))
        except Exception as exc:
            raise SigningError(f"the signer URI failed to sign: {exc}") from exc
        raw = bytes.fromhex(signature.signature)
        keys.verify(self._public_key, raw, pae(IN_TOTO_PAYLOAD_TYPE, payload))  # fail early
        return build_key_bundle(payload, raw, self._fingerprint)


class SigstoreSigner(Signer):
    """Keyless signing with sigstore-python: OIDC token -> Fulcio certificate -> Rekor entry.

    The token comes from the argument, ``SIGSTORE_ID_TOKEN``, or ambient CI credentials
    (GitHub Actions, GitLab, Buildkite, Google Cloud…) as sigstore's ``detect_credential``
    finds them. ``trust_config`` selects a private Sigstore instance; without it the public-good
    instance is used.
    """

    def __init__(self, *, identity_token: str | None = None, trust_config: Path | None = None):
        self._token = identity_token
        self._trust_config = trust_config

    @property
    def identity(self) -> str:
        return "sigstore:" + str(self._identity_token().identity)

    def _identity_token(self) -> IdentityToken:
        from sigstore.oidc import IdentityError, IdentityToken, detect_credential

        raw = self._token or os.environ.get("SIGSTORE_ID_TOKEN")
        if not raw:
            try:
                raw = detect_credential()
            except IdentityError as exc:
                raise SigningError(f"no ambient OIDC credential: {exc}") from exc
        if not raw:
            raise SigningError(
                "keyless signing needs an OIDC identity token: set SIGSTORE_ID_TOKEN or run in "
                "a CI system with workload identity"
            )
        try:
            return IdentityToken(raw)
        except IdentityError as exc:
            raise SigningError(f"the OIDC identity token is not usable: {exc}") from exc

    def _context(self) -> SigningContext:
        from sigstore.models import ClientTrustConfig
        from sigstore.sign import SigningContext

        try:
            if self._trust_config is not None:
                config = ClientTrustConfig.from_json(self._trust_config.read_text())
            else:
                config = ClientTrustConfig.production()
            return SigningContext.from_trust_config(config)
        except Exception as exc:
            raise SigningError(f"cannot set up Sigstore signing: {exc}") from exc

    def sign(self, statement: Statement) -> Bundle:
        from sigstore import dsse

        token = self._identity_token()
        context = self._context()
        try:
            with context.signer(token, cache=True) as signer:
                result = signer.sign_dsse(dsse.Statement(statement.to_bytes()))
        except Exception as exc:
            raise SigningError(f"Sigstore signing failed: {exc}") from exc
        return Bundle.parse(result.to_json().encode())
