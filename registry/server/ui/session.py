"""The console's session cookie and CSRF tokens.

A session is the API token the user pasted, sealed (AES-256-GCM: encrypted and authenticated)
into an HttpOnly, SameSite=Strict cookie with an expiry. Every request opens the seal and
authenticates the token again exactly as the API does (:func:`registry.server.api.deps._admit`):
a revoked or expired token ends every console session at once, and no second permission model
exists. A cookie cannot be forged or edited without the sealing key, and its expiry is inside
the seal, so a browser that keeps a cookie past ``Max-Age`` gains nothing.

The sealing key is derived (HKDF-SHA256, its own label) from the registry's private key, which
every replica shares; a registry whose key is a KMS/HSM URI has no private key to derive from and
gets a random key per process (a session then lasts as long as that process and is valid on that
replica only: sign in again).

CSRF: every session carries a random id; a form's token is HMAC(key, "csrf" || id), compared in
constant time. Before sign-in, a short-lived pre-session cookie plays the same part for the
sign-in form.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from attest.signing import KeySigner, UriSigner

COOKIE = "modelseal_session"
PRE_COOKIE = "modelseal_presession"
#: How long a console session lasts (the token's own expiry and revocation apply too).
SESSION_SECONDS = 8 * 3600
PRE_SESSION_SECONDS = 3600
_VERSION = b"\x01"
_MAX_COOKIE = 4000


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    sid: str
    expires: int  # unix seconds


def session_key(signer: KeySigner | UriSigner) -> bytes:
    """32 bytes for sealing sessions: derived from the registry's private key when it is a
    file, random per process otherwise."""
    if isinstance(signer, KeySigner):
        der = signer.private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"modelseal ui session v1"
        ).derive(der)
    return os.urandom(32)


class Sealer:
    """Seals and opens session cookies; makes and checks CSRF tokens."""

    def __init__(self, key: bytes, *, lifetime: int = SESSION_SECONDS) -> None:
        self._aead = AESGCM(hashlib.sha256(b"seal" + key).digest())
        self._mac = hashlib.sha256(b"csrf" + key).digest()
        self.lifetime = lifetime

    def seal(self, token: str, *, now: float | None = None, lifetime: int | None = None) -> str:
        """A new session for ``token`` (a fresh id, so a fresh CSRF token)."""
        expires = int((time.time() if now is None else now) + (lifetime or self.lifetime))
        body = json.dumps({"t": token, "s": secrets.token_hex(16), "e": expires}).encode()
        nonce = os.urandom(12)
        sealed = _VERSION + nonce + self._aead.encrypt(nonce, body, COOKIE.encode())
        return base64.urlsafe_b64encode(sealed).decode().rstrip("=")

    def open(self, cookie: str | None, *, now: float | None = None) -> Session | None:
        """The session in ``cookie``; None when absent, tampered with, or expired."""
        if not cookie or len(cookie) > _MAX_COOKIE:
            return None
        try:
            raw = base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))
            if raw[:1] != _VERSION or len(raw) < 13 + 16:
                return None
            body = json.loads(self._aead.decrypt(raw[1:13], raw[13:], COOKIE.encode()))
            token, sid, expires = body["t"], body["s"], body["e"]
        except Exception:  # any malformed or forged cookie is simply no session
            return None
        if not (isinstance(token, str) and isinstance(sid, str) and isinstance(expires, int)):
            return None
        if expires <= (time.time() if now is None else now):
            return None
        return Session(token, sid, expires)

    def csrf(self, sid: str) -> str:
        """The CSRF token of a session (or pre-session) id."""
        return hmac.new(self._mac, b"csrf\x00" + sid.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, sid: str | None, given: str | None) -> bool:
        if not sid or not given or len(given) != 64:
            return False
        return hmac.compare_digest(self.csrf(sid), given)

    @staticmethod
    def new_pre_session() -> str:
        return secrets.token_hex(16)
