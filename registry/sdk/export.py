"""Evidence export (``modelseal export``) and online verification (``modelseal verify``).

The export is written into a sibling temporary directory and renamed into place only when
complete, so a failed export leaves nothing behind. Its layout and the offline checks are in
:mod:`attest.evidence`; ``modelseal verify REF`` exports into a temporary directory and runs the
same checks locally, so it never relies on the server's verdict.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from attest.bundle import Bundle
from attest.errors import AttestError
from attest.evidence import FORMAT, Verdict, verify_evidence
from attest.gate import MAX_DEPTH
from attest.keys import TrustedKey
from attest.predicates import OMS_SIGNATURE, RELEASE, SLSA_PROVENANCE
from attest.provenance import read_predicate
from attest.trust import Trust, parse_trust
from registry.errors import (
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    PullVerificationError,
)
from registry.sdk.pins import PinStore

if TYPE_CHECKING:
    from registry.sdk.client import RegistryClient
    from registry.wire import VersionPublic

#: ``manifest.json`` ``audit`` when ``audit/`` holds the log; otherwise it says why not.
AUDIT_INCLUDED = "included"
AUDIT_FORBIDDEN = "not readable with the exporting token (auditor or admin only)"


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
        raise PullVerificationError("no registry key pinned: pass --registry-key")
    parent = target.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = parent / f".{target.name}.modelseal-{uuid.uuid4().hex[:12]}"
    staging.mkdir(mode=0o700)
    try:
        _write(client, ref, staging, pem, with_files, in_toto, registry_key, pins)
        staging.chmod(0o755)
        if target.exists():
            target.rmdir()
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _write(
    client: RegistryClient,
    ref: str,
    out: Path,
    registry_pem: str,
    with_files: bool,
    in_toto: bool,
    registry_key: bytes | None,
    pins: PinStore,
) -> None:
    root = client.show(ref)
    exact = _exact(root)
    (out / "evidence").mkdir()
    (out / "policies").mkdir()
    (out / "registry.pub").write_text(registry_pem)

    versions: list[dict[str, Any]] = []
    queue: list[tuple[str, int]] = [(exact, 0)]
    seen: set[str] = set()
    release_of: dict[str, dict[str, Any]] = {}
    oms_of_root: dict[str, bytes] = {}  # bundle sha256 -> bytes, oldest first
    while queue:
        current, depth = queue.pop(0)
        if current in seen:
            continue
        seen.add(current)
        try:
            version = client.show(current)
        except (NotFoundError, PermissionDeniedError):
            continue  # unknown or unreadable with this token: verification names it
        name = _exact(version)
        versions.append(_version_entry(version))
        for item in client.list_attestations(name):
            raw = client.get_attestation(name, item.id)
            file = f"{name.replace('/', '.')}.{item.id}.sigstore.json"
            (out / "evidence" / file).write_bytes(raw)
            bundle = Bundle.parse(raw)
            statement = bundle.statement()
            if name == exact and statement.predicate_type == OMS_SIGNATURE:
                oms_of_root[bundle.digest] = raw
            if item.predicate_type == RELEASE:
                release_of[name] = {"raw": raw, "predicate": statement.predicate}
            elif item.predicate_type == SLSA_PROVENANCE and depth < MAX_DEPTH:
                try:
                    provenance = read_predicate(statement.predicate)
                except AttestError:
                    continue
                queue.extend((dep.ref, depth + 1) for dep in provenance.dependencies)

    manifest = {
        "format": FORMAT,
        "ref": exact,
        "kind": str(root.kind),
        "root_digest": root.root_digest,
        "state": root.state,
        "files": [{"path": f.path, "size": f.size, "sha256": f.digest} for f in root.files],
        "registry": str(client.base_url),
        "exported_at": datetime.now(UTC).isoformat(),
        "audit": AUDIT_INCLUDED,
    }
    _dump(out / "manifest.json", manifest)
    _dump(out / "versions.json", versions)

    release = release_of.get(exact)
    if release is not None:
        (out / "release.sigstore.json").write_bytes(release["raw"])
    # model.sig: the OMS bundle the release relied on, else the newest one.
    cited = {
        e.get("bundleSha256")
        for e in (release or {}).get("predicate", {}).get("evidence", [])
        if isinstance(e, dict) and e.get("predicateType") == OMS_SIGNATURE
    }
    oms = [raw for digest, raw in oms_of_root.items() if digest in cited] or list(
        oms_of_root.values()
    )[-1:]
    if oms:
        (out / "model.sig").write_bytes(oms[0])

    # Policies: each revision a release in the chain names; policy.yaml is the root's.
    namespace = exact.split("/", 1)[0]
    for name, found in release_of.items():
        named = found["predicate"].get("policy") or {}
        ns, revision = name.split("/", 1)[0], int(named.get("revision", 0))
        try:
            text = client.get_policy(ns, revision).document
        except (NotFoundError, PermissionDeniedError):
            continue  # verify-evidence reports the missing policy of that link
        (out / "policies" / f"{ns}.r{revision}.yaml").write_text(text)
        if name == exact:
            (out / "policy.yaml").write_text(text)
    if not (out / "policy.yaml").exists():
        (out / "policy.yaml").write_text(client.get_policy(namespace).document)

    _write_trust(client, out)
    audit = _write_audit(client, exact, out)
    if audit != AUDIT_INCLUDED:  # recorded for the reader; verify-evidence still fails closed
        _dump(out / "manifest.json", {**manifest, "audit": audit})
    if in_toto:
        for filename, text in client.in_toto(exact).items():
            if "/" in filename or filename.startswith("."):
                raise PullVerificationError(f"the registry sent an unsafe file name {filename!r}")
            (out / filename).write_text(text)
    if with_files:
        client.pull(exact, out / "files", registry_key=registry_key, pins=pins,
                    pending=root.state == "pending")  # fmt: skip


def _exact(version: VersionPublic) -> str:
    return f"{version.namespace}/{version.name}@{version.version}"


def _version_entry(version: VersionPublic) -> dict[str, Any]:
    return {
        "ref": _exact(version),
        "kind": str(version.kind),
        "root_digest": version.root_digest,
        "state": version.state,
        "external": version.external,
        "pushed_by": version.created_by,
        "files": [
            {
                "path": f.path,
                "size": f.size,
                "sha256": f.digest,
                **({"uri": f.uri} if f.uri else {}),
            }
            for f in version.files
        ],
    }


def _write_trust(client: RegistryClient, out: Path) -> None:
    identities: dict[str, Any] = {}
    for item in client.list_identities_with_keys():
        if item.public_key_pem:
            identities[item.name] = {"key_pem": item.public_key_pem}
        elif item.sigstore_issuer and item.sigstore_identity:
            identities[item.name] = {"sigstore": {"issuer": item.sigstore_issuer,
                                                  "identity": item.sigstore_identity,
                                                  "regex": item.regex}}  # fmt: skip
    document = {"identities": identities, "registry": {"key": "registry.pub"}}
    (out / "trust.yaml").write_text(yaml.safe_dump(document, sort_keys=True))


def _write_audit(client: RegistryClient, exact: str, out: Path) -> str:
    """The log suffix from the version's first entry to the newest checkpoint (auditors and
    admins only; others get an export without ``audit/``). Admins sign a fresh checkpoint when
    the newest does not cover the version's entries yet. Returns :data:`AUDIT_INCLUDED`, or
    why ``audit/`` is not there."""
    path = _version_path(exact)
    try:
        entries = client.audit_entries()
    except PermissionDeniedError:
        return AUDIT_FORBIDDEN
    about = [e for e in entries if _is_about(e, path)]
    if not about:
        return f"no audit entries about {exact}"
    checkpoint = client.latest_checkpoint()
    count = _checkpoint_count(checkpoint)
    if count < int(about[-1]["seq"]):
        try:
            client.sign_checkpoint()
        except PermissionDeniedError:
            pass
        else:
            entries = client.audit_entries()
            checkpoint = client.latest_checkpoint()
            count = _checkpoint_count(checkpoint)
    if checkpoint is None:
        return "no signed audit checkpoint yet (an admin signs one with the export)"
    first = int(about[0]["seq"])
    # Up to the checkpoint; when it is older than the version's entries, everything after them
    # (verify-evidence then reports them as not covered).
    last = count if count >= int(about[-1]["seq"]) else int(entries[-1]["seq"])
    (out / "audit").mkdir()
    _dump(out / "audit" / "entries.json", [e for e in entries if first <= int(e["seq"]) <= last])
    (out / "audit" / "checkpoint.sigstore.json").write_bytes(checkpoint)
    return AUDIT_INCLUDED


def _checkpoint_count(raw: bytes | None) -> int:
    if raw is None:
        return 0
    return int(Bundle.parse(raw).statement().predicate.get("count", 0))


def _dump(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def verify_online(
    client: RegistryClient,
    ref: str,
    *,
    trust: Trust | None = None,
    policy_text: str | None = None,
    registry_key: bytes | None = None,
    pins: PinStore | None = None,
) -> Verdict:
    """Fetch the evidence of ``ref`` and verify it here (the server's verdict is not used),
    anchored on ``registry_key`` or the key pinned for this registry, never the one served."""
    pins = pins or PinStore()
    with tempfile.TemporaryDirectory(prefix="modelseal-verify-") as tmp:
        directory = export_evidence(client, ref, Path(tmp) / "evidence",
                                    registry_key=registry_key, pins=pins)  # fmt: skip
        # export_evidence pinned the key on first contact or refused one that changed.
        pem = registry_key or (pins.registry_key(str(client.base_url)) or "").encode()
        if not pem:
            raise PullVerificationError("no registry key pinned: pass --registry-key")
        # This process wrote the export just now: its own record of why audit/ is absent
        # (a token that may not read the log) is not an attacker's claim.
        written = json.loads((directory / "manifest.json").read_text())
        # Without the caller's trust, the identities this registry serves, as `pull` trusts
        # them (this process fetched them just now); an offline export's are never trusted.
        source = "your trust file's identities"
        if trust is None:
            try:
                trust = parse_trust((directory / "trust.yaml").read_text(), directory)
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


def _version_path(exact: str) -> str:
    namespace, rest = exact.split("/", 1)
    name, version = rest.split("@", 1)
    return f"/v1/namespaces/{namespace}/artifacts/{name}/versions/{version}"


def _is_about(entry: dict[str, Any], path: str) -> bool:
    target = str(entry.get("target", ""))
    return target == path or target.startswith((f"{path}/", f"{path}?"))
