"""Evidence export (``modelseal export``) and online verification (``modelseal verify``).

The export is written by :func:`attest.export.write_export` (the console's download writes the
same files) from a :class:`ClientSource`, into a sibling temporary directory renamed into place
only when complete, so a failed export leaves nothing behind. Its layout and the offline checks
are in :mod:`attest.evidence`; ``modelseal verify REF`` exports into a temporary directory and
runs the same checks locally, so it never relies on the server's verdict.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attest.errors import AttestError
from attest.evidence import EvidenceVerdict, verify_evidence
from attest.export import (
    AUDIT_FORBIDDEN,
    ExportedBundle,
    ExportedFile,
    ExportedLogEntry,
    ExportedLogKey,
    ExportedVersion,
    ExportError,
    staged,
    write_export,
)
from attest.keys import TrustedKey
from attest.trust import Trust, parse_trust
from registry.errors import (
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    ResponseVerificationError,
)
from registry.sdk.logcheck import b64_field
from registry.sdk.pins import PinStore

if TYPE_CHECKING:
    from registry.sdk.client import RegistryClient


class ClientSource:
    """An export's :class:`~attest.export.Source` over the HTTP API, with the client's token."""

    def __init__(self, client: RegistryClient) -> None:
        self._client = client

    @property
    def registry(self) -> str:
        return str(self._client.base_url)

    def version(self, ref: str) -> ExportedVersion | None:
        try:
            found = self._client.show(ref)
        except (NotFoundError, PermissionDeniedError):
            return None
        return ExportedVersion(
            namespace=found.namespace,
            name=found.name,
            version=found.version,
            kind=str(found.kind),
            state=found.state,
            root_digest=found.root_digest,
            external=found.external,
            pushed_by=found.created_by,
            files=tuple(ExportedFile(f.path, f.size, f.digest, f.uri) for f in found.files),
        )

    def bundles(self, ref: str) -> list[ExportedBundle]:
        return [
            ExportedBundle(item.id, item.predicate_type, self._client.get_attestation(ref, item.id))
            for item in self._client.list_attestations(ref)
        ]

    def policy(self, namespace: str, revision: int | None) -> str | None:
        try:
            return self._client.get_policy(namespace, revision).document
        except (NotFoundError, PermissionDeniedError):
            if revision is None:
                raise
            return None

    def identities(self) -> list[Mapping[str, Any]]:
        return [
            {
                "name": i.name,
                "key_pem": i.public_key_pem,
                "issuer": i.sigstore_issuer,
                "identity": i.sigstore_identity,
                "regex": i.regex,
            }
            for i in self._client.list_identities_with_keys()
        ]

    def audit_entries(self) -> list[dict[str, Any]] | None:
        try:
            return self._client.audit_entries()
        except PermissionDeniedError:
            return None

    def latest_checkpoint(self) -> bytes | None:
        return self._client.latest_checkpoint()

    def sign_checkpoint(self) -> bool:
        try:
            self._client.sign_checkpoint()
        except PermissionDeniedError:
            return False
        return True

    def log_key(self) -> ExportedLogKey | None:
        try:
            served = self._client._request("GET", "/v1/log/key").json()
        except NotFoundError:
            return None
        if not isinstance(served, dict) or not all(
            isinstance(served.get(k), str) for k in ("origin", "vkey", "binding")
        ):
            return None  # nothing usable: verification names the missing key statement
        return ExportedLogKey(served["origin"], served["vkey"], served["binding"].encode())

    def log_status(self, ref: str) -> ExportedLogEntry | None:
        namespace, rest = ref.split("/", 1)
        name, version = rest.split("@", 1)
        path = f"/v1/namespaces/{namespace}/artifacts/{name}/versions/{version}/log"
        try:
            answer = self._client._request("GET", path).json()
        except (NotFoundError, PermissionDeniedError):
            return None
        try:
            return ExportedLogEntry(int(answer["index"]), b64_field(answer["entry"]))
        except (KeyError, TypeError, ValueError):
            raise ResponseVerificationError(f"{ref}: a malformed transparency-log answer") from None

    def log_checkpoint(self) -> str:
        return self._client._request("GET", "/v1/log/checkpoint").text

    def log_inclusion(self, index: int, size: int) -> list[bytes]:
        answer = self._client._request(
            "GET", "/v1/log/proof/inclusion", params={"index": index, "size": size}
        ).json()
        try:
            return [b64_field(h) for h in answer["hashes"]]
        except (KeyError, TypeError, ValueError):
            raise ResponseVerificationError(
                f"a malformed inclusion proof of log entry {index} in size {size}"
            ) from None

    def log_entries(self, start: int, end: int) -> list[bytes]:
        entries: list[bytes] = []
        while start + len(entries) < end:
            at = start + len(entries)
            answer = self._client._request(
                "GET", "/v1/log/entries", params={"start": at, "end": min(end, at + LOG_PAGE)}
            ).json()
            try:
                page = answer["entries"]
                for offset, item in enumerate(page):
                    if int(item["index"]) != at + offset:
                        raise ValueError("out of order")
                    entries.append(b64_field(item["entry"]))
            except (KeyError, TypeError, ValueError):
                raise ResponseVerificationError(
                    f"a malformed page of log entries from {at}"
                ) from None
            if not page:
                raise ResponseVerificationError(f"the registry served no log entries from {at}")
        return entries


#: Entries asked for per GET /v1/log/entries (the server's page limit).
LOG_PAGE = 1000


def export_evidence(
    client: RegistryClient,
    ref: str,
    target: Path,
    *,
    with_files: bool = False,
    in_toto: bool = False,
    registry_key: bytes | None = None,
    pins: PinStore | None = None,
) -> Path:
    """Write everything an auditor needs to re-run the gate offline into ``target``."""
    target = Path(target)
    if target.is_symlink() or (target.exists() and (not target.is_dir() or any(target.iterdir()))):
        raise InvalidRequestError(f"{target} exists and is not an empty directory")
    pins = pins or PinStore()
    client.registry_verifier(registry_key, pins)  # pins on first contact, refuses a new key
    pem = (
        registry_key.decode()
        if registry_key is not None
        else pins.registry_key(str(client.base_url))
    )
    if not pem:
        raise ResponseVerificationError("no registry key pinned: pass --registry-key")
    try:
        with staged(target) as out:
            root = write_export(ClientSource(client), ref, out, pem)
            exact = root.ref
            if in_toto:
                for filename, text in client.in_toto(exact).items():
                    if "/" in filename or filename.startswith("."):
                        raise ResponseVerificationError(
                            f"the registry sent an unsafe file name {filename!r}"
                        )
                    (out / filename).write_text(text)
            if with_files:
                client.pull(exact, out / "files", registry_key=registry_key, pins=pins,
                            pending=root.state == "pending")  # fmt: skip
    except ExportError as exc:  # the version is not there, or not readable with this token
        raise NotFoundError(str(exc), ref=ref) from None
    return target


def verify_online(
    client: RegistryClient,
    ref: str,
    *,
    trust: Trust | None = None,
    policy_text: str | None = None,
    registry_key: bytes | None = None,
    pins: PinStore | None = None,
) -> EvidenceVerdict:
    """Fetch the evidence of ``ref`` and verify it here (the server's verdict is not used),
    anchored on ``registry_key`` or the key pinned for this registry, never the one served."""
    pins = pins or PinStore()
    with tempfile.TemporaryDirectory(prefix="modelseal-verify-") as tmp:
        directory = export_evidence(client, ref, Path(tmp) / "evidence",
                                    registry_key=registry_key, pins=pins)  # fmt: skip
        # export_evidence pinned the key on first contact or refused one that changed.
        pem = registry_key or (pins.registry_key(str(client.base_url)) or "").encode()
        if not pem:
            raise ResponseVerificationError("no registry key pinned: pass --registry-key")
        # This process wrote the export just now: its own record of why audit/ is absent
        # (a token that may not read the log) is not an attacker's claim.
        written = json.loads((directory / "manifest.json").read_text())
        # Without the caller's trust, the identities this registry serves, as `pull` trusts
        # them (this process fetched them just now); an offline export's are never trusted.
        source = "your trust file's identities"
        if trust is None:
            try:
                trust = parse_trust(
                    (directory / "trust.yaml").read_text(), directory, confined=True
                )
            except AttestError:
                trust = None  # none registered: verify_evidence says so, unanchored
            source = f"the identities {client.base_url} serves (bring --trust FILE for your own)"
        return verify_evidence(
            directory,
            trust=trust,
            trust_source=source,
            policy_text=policy_text,
            registry_key=TrustedKey.from_pem("registry", pem),
            registry_key_source="--registry-key"
            if registry_key
            else f"the key pinned for {client.base_url}",
            require_audit=written.get("audit") != AUDIT_FORBIDDEN,
        )
