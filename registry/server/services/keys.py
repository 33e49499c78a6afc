"""The registry's own signing key: scan attestations (and, later, releases) are signed with it."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from attest import keys
from attest.signing import KeySigner, UriSigner
from registry.errors import ConfigurationError
from registry.server.config import Settings
from registry.server.db import transaction
from registry.server.models import RegistryKey
from registry.server.services import tlog
from registry.server.services.common import utcnow

KEY_PREFIX = "registry"


def load_registry_signer(settings: Settings) -> KeySigner | UriSigner:
    """The configured signing key, or ``DATA_DIR/registry.key`` (created 0600 on first use)."""
    configured = settings.signing_key
    if configured is None:
        private = settings.data_dir / f"{KEY_PREFIX}.key"
        if not private.exists():
            settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            keys.write_keypair(settings.data_dir / KEY_PREFIX, keys.generate())
        return KeySigner.from_file(private)
    if ":" in configured.split("/", 1)[0]:
        if settings.signing_key_pub is None:
            raise ConfigurationError("a signer-URI signing key needs MODELSEAL_SIGNING_KEY_PUB")
        return UriSigner(configured, keys.load_public(settings.signing_key_pub.read_bytes()))
    return KeySigner.from_file(Path(configured))


def register_registry_key(sessions: sessionmaker[Session], signer: KeySigner | UriSigner) -> None:
    """Record the first key; refuse to start a replica that holds a different one.

    Raises:
        RuntimeError: this process's key is not one of the registry's keys.
    """
    pem = keys.public_pem(signer.public_key).decode()
    fingerprint = signer.identity.removeprefix("sha256:")
    with transaction(sessions) as session:
        known = set(session.execute(select(RegistryKey.fingerprint)).scalars())
        if not known:
            now = utcnow()
            session.add(RegistryKey(fingerprint=fingerprint, public_key_pem=pem, created_at=now))
            facts = {
                "subject": f"registry-key/sha256:{fingerprint}",
                "change": "added",
                "fingerprint": f"sha256:{fingerprint}",
                "public_key_pem": pem,
            }
            tlog.append(session, tlog.build_entry("add_registry_key", actor="bootstrap",
                                                  role=None, at=now, facts=facts))  # fmt: skip
            return
    if fingerprint not in known:
        raise ConfigurationError(
            f"this replica's signing key sha256:{fingerprint} is not the registry's key; every "
            "replica must use the same MODELSEAL_SIGNING_KEY"
        )
