"""Verifiers: who may have signed, checked offline.

    Verifier(keys=[TrustedKey…], identities=[SigstoreIdentity…], trusted_root=PATH)
        .verify(bundle) -> Verified(statement, signer, bundle)

Steps of :meth:`Verifier.verify`, in order:

1. Key bundles: the ``publicKey.hint`` must be the fingerprint of a trusted key
   (:class:`UnknownSignerError` otherwise), and the signature must verify over
   ``PAE(payloadType, payload)`` with that key (:class:`SignatureError`).
2. Keyless bundles: sigstore-python verifies the certificate chain against the pinned trusted root
   (never the per-user cache), the transparency-log inclusion and the DSSE signature, under a
   policy that admits exactly the trusted identities (issuer + identity, exact or regex).
3. The payload is parsed as an in-toto Statement v1 (strict, bounded).

A verifier that trusts nothing is an error, not a pass.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from attest import keys
from attest.bundle import Bundle
from attest.dsse import pae
from attest.errors import SignatureError, UnknownSignerError, VerificationError
from attest.keys import TrustedKey
from attest.statement import Statement

if TYPE_CHECKING:
    from cryptography.x509 import Certificate
    from sigstore.verify import Verifier as SigstoreVerifier


def default_trusted_root() -> Path:
    """The Sigstore public-good trusted root shipped with modelseal."""
    return Path(str(resources.files("attest") / "data" / "trusted_root.json"))


@dataclass(frozen=True, slots=True)
class SigstoreIdentity:
    """A keyless signer: the OIDC issuer and the certificate identity (SAN), exact or regex."""

    name: str
    issuer: str
    identity: str
    regex: bool = False

    def matches(self, certificate: Certificate) -> bool:
        from sigstore.errors import VerificationError as SigstoreVerificationError
        from sigstore.verify import policy

        try:
            policy.OIDCIssuer(self.issuer).verify(certificate)
        except SigstoreVerificationError:
            return False
        sans = _sans(certificate)
        if self.regex:
            pattern = re.compile(self.identity)
            return any(pattern.fullmatch(san) for san in sans)
        return self.identity in sans

    @property
    def signer_id(self) -> str:
        """``sigstore:<issuer>|<identity>``, or ``sigstore-regex:<issuer>|<pattern>`` for a
        pattern: the flag is part of the id, so a trust file cannot widen an exact identity
        into a pattern under the id recorded for it."""
        kind = "sigstore-regex" if self.regex else "sigstore"
        return f"{kind}:{self.issuer}|{self.identity}"


@dataclass(frozen=True, slots=True)
class Verified:
    """A bundle whose signature verified, and what it says."""

    statement: Statement
    signer: str  # the trusted name
    signer_id: str  # sha256:<fingerprint>, sigstore:<issuer>|<identity> or sigstore-regex:…
    bundle: Bundle


class Verifier:
    """Verifies bundles against trusted keys and Sigstore identities."""

    def __init__(
        self,
        *,
        keys: Sequence[TrustedKey] = (),
        identities: Sequence[SigstoreIdentity] = (),
        trusted_root: Path | None = None,
    ) -> None:
        if not keys and not identities:
            raise VerificationError("nothing is trusted: a verifier needs keys or identities")
        self._keys = {k.fingerprint: k for k in keys}
        self._identities = list(identities)
        self._trusted_root = trusted_root or default_trusted_root()

    def verify(self, bundle: Bundle) -> Verified:
        """Verify ``bundle`` (see the module docstring for the steps).

        Raises:
            UnknownSignerError: the signer is not trusted.
            SignatureError: the signature, certificate or log entry does not verify.
            DocumentError subclasses: the payload is not a valid statement.
        """
        if bundle.key_hint is not None:
            trusted = self._keys.get(bundle.key_hint)
            if trusted is None:
                raise UnknownSignerError(
                    f"signed by key sha256:{bundle.key_hint}, which is not a trusted key",
                    signer=f"sha256:{bundle.key_hint}",
                )
            keys.verify(trusted.key, bundle.signature, pae(bundle.payload_type, bundle.payload))
            return Verified(
                Statement.parse(bundle.payload),
                trusted.name,
                f"sha256:{trusted.fingerprint}",
                bundle,
            )
        return self._verify_keyless(bundle)

    @cached_property
    def _sigstore(self) -> SigstoreVerifier:
        from sigstore.models import TrustedRoot
        from sigstore.verify import Verifier as SigstoreVerifier

        return SigstoreVerifier(trusted_root=TrustedRoot.from_file(str(self._trusted_root)))

    def _verify_keyless(self, bundle: Bundle) -> Verified:
        from sigstore.errors import Error as SigstoreError
        from sigstore.models import Bundle as SigstoreBundle

        if not self._identities:
            raise UnknownSignerError("keyless bundle, but no Sigstore identity is trusted")
        try:
            parsed = SigstoreBundle.from_json(bundle.raw)
        except Exception as exc:
            raise SignatureError(f"sigstore cannot read the bundle: {exc}") from exc
        certificate = parsed.signing_certificate
        match = next((i for i in self._identities if i.matches(certificate)), None)
        if match is None:
            sans = ", ".join(sorted(_sans(certificate))) or "none"
            raise UnknownSignerError(
                f"signed by Sigstore identity {sans}, which is not a trusted identity",
                signer=sans,
            )
        try:
            payload_type, payload = self._sigstore.verify_dsse(parsed, _MatchPolicy(match))
        except SigstoreError as exc:
            raise SignatureError(f"keyless signature does not verify: {exc}") from exc
        if payload_type != bundle.payload_type or payload != bundle.payload:
            raise SignatureError("sigstore verified a different payload than the bundle carries")
        return Verified(Statement.parse(payload), match.name, match.signer_id, bundle)


class _MatchPolicy:
    """A sigstore verification policy admitting exactly one trusted identity."""

    def __init__(self, identity: SigstoreIdentity) -> None:
        self._identity = identity

    def verify(self, cert: Certificate) -> None:
        from sigstore.errors import VerificationError as SigstoreVerificationError

        if not self._identity.matches(cert):
            raise SigstoreVerificationError(f"certificate is not {self._identity.signer_id}")


def _sans(certificate: Certificate) -> set[str]:
    from cryptography.x509 import (
        OtherName,
        RFC822Name,
        SubjectAlternativeName,
        UniformResourceIdentifier,
    )
    from cryptography.x509.oid import ObjectIdentifier

    other_name_oid = ObjectIdentifier("1.3.6.1.4.1.57264.1.7")
    try:
        ext = certificate.extensions.get_extension_for_class(SubjectAlternativeName).value
    except Exception:
        return set()
    sans: set[str] = set(ext.get_values_for_type(RFC822Name))
    sans.update(ext.get_values_for_type(UniformResourceIdentifier))
    sans.update(
        on.value.decode(errors="replace")
        for on in ext.get_values_for_type(OtherName)
        if on.type_id == other_name_oid
    )
    return sans
