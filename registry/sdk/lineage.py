"""What a version was made from, read through the SDK: the lineage tree and the signed ML-BOM.

The lineage follows each version's newest SLSA provenance whose signature verifies here against
the registry's registered identities (a bundle that does not verify is shown, never followed):
model <- datasets <- their sources, code, base models <- their own datasets ... with a depth bound
and cycle detection. Every node carries its root digest, state and signers; a dependency whose
digest differs from the one the provenance names is flagged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from attest.bundle import Bundle
from attest.errors import AttestError
from attest.keys import TrustedKey
from attest.predicates import CYCLONEDX_BOM, OMS_SIGNATURE, SLSA_PROVENANCE, TEST_RESULT
from attest.provenance import read_predicate
from attest.verifying import SigstoreIdentity, Verifier
from registry.errors import NotFoundError, PermissionDeniedError, ResponseVerificationError
from registry.sdk.pins import PinStore

if TYPE_CHECKING:
    from registry.sdk.client import RegistryClient

MAX_DEPTH = 8
_LINKS = {OMS_SIGNATURE: "signature", SLSA_PROVENANCE: "provenance", TEST_RESULT: "evaluation"}


def identities_verifier(client: RegistryClient) -> Verifier:
    """A verifier of the identities registered at the registry (keys and Sigstore)."""
    keys, identities = [], []
    for item in client.list_identities_with_keys():
        if item.public_key_pem:
            keys.append(TrustedKey.from_pem(item.name, item.public_key_pem.encode()))
        elif item.sigstore_issuer and item.sigstore_identity:
            identities.append(
                SigstoreIdentity(
                    name=item.name,
                    issuer=item.sigstore_issuer,
                    identity=item.sigstore_identity,
                    regex=item.regex,
                )
            )
    return Verifier(keys=keys, identities=identities)


def lineage(client: RegistryClient, ref: str, *, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """The lineage tree of ``ref`` as plain data (see the module docstring)."""
    verifier = identities_verifier(client)
    root = _node(client, verifier, ref, "model", 0, max_depth, frozenset())
    root["role"] = root.get("kind", "model")  # the root is what it is, not a dependency role
    return root


def _node(
    client: RegistryClient,
    verifier: Verifier,
    ref: str,
    role: str,
    depth: int,
    max_depth: int,
    seen: frozenset[str],
) -> dict[str, Any]:
    try:
        version = client.show(ref)
    except NotFoundError:
        return {"ref": ref, "role": role, "error": "not registered"}
    except PermissionDeniedError:
        return {"ref": ref, "role": role, "error": "not readable with this token"}
    exact = f"{version.namespace}/{version.name}@{version.version}"
    digest = version.root_digest
    node: dict[str, Any] = {
        "ref": exact,
        "role": role,
        "kind": str(version.kind),
        "digest": digest,
        "state": version.state,
        "external": version.external,
        "signers": {},
        "children": [],
    }
    attestations = client.list_attestations(exact)
    for item in attestations:
        link = _LINKS.get(item.predicate_type)
        if link:
            node["signers"].setdefault(link, [])
            if item.signer not in node["signers"][link]:
                node["signers"][link].append(item.signer)
    if version.external:
        node["sources"] = sorted({f.uri for f in version.files if f.uri})
    provenance = [a for a in attestations if a.predicate_type == SLSA_PROVENANCE]
    for item in reversed(provenance):
        try:
            verified = verifier.verify(Bundle.parse(client.get_attestation(exact, item.id)))
        except AttestError as exc:
            node.setdefault("problems", []).append(f"provenance {item.id} does not verify: {exc}")
            continue
        if verified.statement.subject.sha256 != digest.removeprefix("sha256:"):
            node.setdefault("problems", []).append(f"provenance {item.id} is about another digest")
            continue
        read = read_predicate(verified.statement.predicate)
        node["builder"] = read.builder_id
        node["provenance_signer"] = verified.signer
        if read.parameters:
            node["parameters"] = read.parameters
        for dep in read.dependencies:
            want = f"sha256:{dep.root_digest}"
            if want in seen or want == digest:
                node["children"].append({"ref": dep.ref, "role": dep.role, "cycle": True})
            elif depth + 1 >= max_depth:
                node["children"].append({"ref": dep.ref, "role": dep.role, "truncated": True})
            else:
                child = _node(client, verifier, dep.ref, dep.role, depth + 1, max_depth,
                              seen | {digest})  # fmt: skip
                if child.get("digest") not in (None, want):
                    child["problems"] = [*child.get("problems", []),
                                         f"provenance names {want}"]  # fmt: skip
                node["children"].append(child)
        if read.git is not None:
            node["children"].append(
                {
                    "role": "code",
                    "kind": "git",
                    "ref": read.git.url,
                    "commit": read.git.commit,
                    "dirty": read.git.dirty,
                }
            )
        node["children"].extend({"role": "source", "ref": uri} for uri in read.sources)
        break
    return node


def verified_bom(
    client: RegistryClient,
    ref: str,
    *,
    registry_key: bytes | None = None,
    pins: PinStore | None = None,
    validate_schema: bool = False,
) -> dict[str, Any]:
    """The newest ML-BOM of ``ref`` whose registry signature verifies (pinned key), checked
    against the version's digests, and with ``validate_schema`` against the strict CycloneDX
    1.6 schema (the registry validates every BOM before it signs it; checking again costs a
    second of start-up for the schema validator).

    Raises:
        ResponseVerificationError: no BOM, or none that verifies and matches.
    """
    version = client.show(ref)
    exact = f"{version.namespace}/{version.name}@{version.version}"
    verifier = client.registry_verifier(registry_key, pins or PinStore())
    raws = [client.get_attestation(exact, a.id)
            for a in client.list_attestations(exact, CYCLONEDX_BOM)]  # fmt: skip
    if not raws:
        raise ResponseVerificationError(f"{exact} has no ML-BOM (BOMs are built for models)")
    digest = version.root_digest.removeprefix("sha256:")
    for raw in reversed(raws):
        try:
            statement = verifier.verify(Bundle.parse(raw)).statement
        except AttestError:
            continue
        if statement.subject.sha256 != digest:
            continue
        bom = dict(statement.predicate)
        if validate_schema:
            from sbom import validate_bom

            validate_bom(bom)
        files = {f.path: f.digest.removeprefix("sha256:") for f in version.files}
        model = bom.get("metadata", {}).get("component", {})
        listed = {
            c.get("name"): h.get("content")
            for c in model.get("components", [])
            if c.get("type") == "file"
            for h in c.get("hashes", [])
            if h.get("alg") == "SHA-256"
        }
        if listed != files:
            raise ResponseVerificationError(
                f"{exact}: the ML-BOM's files are not the version's files"
            )
        return bom
    raise ResponseVerificationError(f"{exact}: no ML-BOM verifies with the registry key")
