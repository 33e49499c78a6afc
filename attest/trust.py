"""An auditor's or deployer's own trust: which signers they accept, under which names.

    identities:
      training-ci: {key: keys/training-ci.pub}        # path relative to this file
      eval-ci:     {key_pem: "-----BEGIN PUBLIC KEY-----\\n..."}
      release-ci:  {sigstore: {issuer: "https://token.actions.githubusercontent.com",
                               identity: "https://github.com/acme/.*", regex: true}}
    registry: {key: registry.pub}                     # optional: the registry's scan/release key

Names are what a policy's signer lists refer to. ``registry:`` anchors offline verification on
the registry's key (as ``--registry-key`` does); an export's own ``registry.pub`` never does. The
registry key never counts as a signer of user evidence, whatever name it is given here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from attest.errors import TrustError
from attest.keys import TrustedKey
from attest.verifying import SigstoreIdentity


@dataclass(frozen=True, slots=True)
class Trust:
    keys: tuple[TrustedKey, ...]
    identities: tuple[SigstoreIdentity, ...]
    registry_key: TrustedKey | None


#: Largest key file read (a PEM public key is well under a kilobyte).
MAX_KEY_FILE = 64 * 1024


def _key(name: str, spec: dict[str, Any], base: Path, confined: bool) -> TrustedKey:
    try:
        if "key" in spec:
            return TrustedKey.from_pem(name, _key_file(base, str(spec["key"]), confined))
        return TrustedKey.from_pem(name, str(spec["key_pem"]).encode())
    except (OSError, ValueError) as exc:
        raise TrustError(f"identity {name!r}: cannot load its key: {exc}") from None


def _key_file(base: Path, relative: str, confined: bool) -> bytes:
    path = base / relative
    if confined:  # a document that came with the files it names: nothing outside them
        inside = path.resolve().is_relative_to(base.resolve())
        if not inside or path.is_symlink() or not path.is_file():
            raise TrustError(f"key file {relative!r} is not a file inside {base}")
    with path.open("rb") as handle:
        data = handle.read(MAX_KEY_FILE + 1)
    if len(data) > MAX_KEY_FILE:
        raise TrustError(f"key file {relative!r} is larger than {MAX_KEY_FILE} bytes")
    return data


def parse_trust(text: str, base: Path, *, confined: bool = False) -> Trust:
    """Parse a trust document; key paths are relative to ``base``. ``confined``: the document
    came from an evidence export (not from the caller), so a key path must name a regular file
    inside ``base`` (no link, no ``..``, no absolute path).

    Raises:
        TrustError: invalid YAML, unknown fields, unreadable keys.
    """
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TrustError(f"not valid YAML: {exc}") from None
    if not isinstance(document, dict) or set(document) - {"identities", "registry"}:
        raise TrustError("a trust document holds 'identities' (and optionally 'registry')")
    keys: list[TrustedKey] = []
    identities: list[SigstoreIdentity] = []
    for name, spec in (document.get("identities") or {}).items():
        if not isinstance(spec, dict) or len(spec) != 1:
            raise TrustError(f"identity {name!r} needs exactly one of key, key_pem, sigstore")
        if "sigstore" in spec:
            sig = spec["sigstore"]
            if not isinstance(sig, dict) or not {"issuer", "identity"} <= set(sig):
                raise TrustError(f"identity {name!r}: sigstore needs issuer and identity")
            identity = SigstoreIdentity(
                str(name), str(sig["issuer"]), str(sig["identity"]), bool(sig.get("regex"))
            )
            identities.append(identity)
        elif "key" in spec or "key_pem" in spec:
            keys.append(_key(str(name), spec, base, confined))
        else:
            raise TrustError(f"identity {name!r}: unknown kind {sorted(spec)}")
    registry = document.get("registry")
    registry_key = (
        _key("registry", registry, base, confined) if isinstance(registry, dict) else None
    )
    if not keys and not identities:
        raise TrustError("the trust document trusts nobody")
    return Trust(tuple(keys), tuple(identities), registry_key)
