"""Offline verification of an evidence export: the release gate re-run from a directory alone.

Layout of an export (written by ``modelseal export``)::

    manifest.json            the version: ref, kind, root digest, files (path, size, sha256)
    versions.json            the version and every dependency: ref, kind, digest, files, pusher
    model.sig                the OMS bundle (``model_signing verify … --signature model.sig``)
    evidence/*.sigstore.json every attestation of the version and, recursively, its dependencies
    release.sigstore.json    the registry's release attestation
    registry.pub             the registry's public key
    trust.yaml               the identities registered at the registry (+ its key)
    policy.yaml              the root namespace's policy revision named by the release
    policies/NS.rREV.yaml    each policy revision named by a release in the chain
    audit/entries.json       the audit-log suffix from the version's first entry to …
    audit/checkpoint.sigstore.json   … the newest registry-signed checkpoint
    files/                   the files themselves (optional)
    root.layout, *.link      in-toto layout and links (optional)

Nothing here touches the network or :mod:`registry`. What the export claims is only *input*:
signatures are checked against the caller's trust (else the export's own), a dependency counts as
released only with a release attestation that verifies with the registry key, the policy is the
caller's (else the revision the release names, whose hash the release attestation pins), and
every digest is recomputed. Revocation after export cannot be known offline; the state the export
records can only make verification fail, never pass.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attest import jsonsafe
from attest.auditlog import CHECKPOINT_PREDICATE, verify_chain
from attest.bundle import Bundle
from attest.digests import FileDigest, manifest_digest, parse_sha256, root_digest
from attest.errors import AttestError, UnknownSignerError
from attest.files import hash_files, scan_directory
from attest.gate import RELEASE, Subject, evaluate
from attest.keys import TrustedKey
from attest.oms import check_oms
from attest.policy import KindPolicy, Policy, parse_policy
from attest.trust import Trust, parse_trust
from attest.verifying import Verified, Verifier

FORMAT = "modelseal-evidence/v1"
MAX_JSON = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the verdict: a link of the chain and whether it held."""

    link: str
    ok: bool
    message: str

    def __str__(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.link}: {self.message}"


@dataclass
class Verdict:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def add(self, link: str, ok: bool, message: str) -> None:
        self.checks.append(Check(link, ok, message))


@dataclass(frozen=True, slots=True)
class _Version:
    ref: str
    kind: str
    root_digest: str  # hex
    files: tuple[FileDigest, ...]
    pushed_by: str
    state: str


def _json(path: Path) -> Any:
    return jsonsafe.loads(path.read_bytes(), what=path.name, max_bytes=MAX_JSON)


def _files(entries: Any, where: str) -> tuple[FileDigest, ...]:
    if not isinstance(entries, list):
        raise AttestError(f"{where}: files is not a list")
    out = []
    for item in entries:
        if not isinstance(item, dict):
            raise AttestError(f"{where}: a file entry is not an object")
        sha = str(item.get("sha256", ""))
        sha = sha if sha.startswith("sha256:") else f"sha256:{sha}"
        out.append(FileDigest(str(item.get("path")), int(item.get("size", -1)), parse_sha256(sha)))
    return tuple(out)


def _load_versions(directory: Path) -> dict[str, _Version]:
    document = _json(directory / "versions.json")
    if not isinstance(document, list):
        raise AttestError("versions.json is not a list")
    versions = {}
    for item in document:
        ref = str(item.get("ref"))
        versions[ref] = _Version(
            ref=ref,
            kind=str(item.get("kind")),
            root_digest=parse_sha256(str(item.get("root_digest"))),
            files=_files(item.get("files"), f"versions.json {ref}"),
            pushed_by=str(item.get("pushed_by", "")),
            state=str(item.get("state", "")),
        )
    return versions


def verify_evidence(
    directory: Path,
    *,
    trust: Trust | None = None,
    policy_text: str | None = None,
) -> Verdict:
    """Re-run the release gate from ``directory``; every link gets a line in the verdict."""
    verdict = Verdict()
    try:
        _verify(directory, trust, policy_text, verdict)
    except (AttestError, OSError, ValueError, KeyError, TypeError) as exc:
        message = exc.diagnostics() if isinstance(exc, AttestError) else str(exc)
        verdict.add("export", False, f"unreadable: {message}")
    return verdict


def _verify(directory: Path, trust: Trust | None, policy_text: str | None, out: Verdict) -> None:
    manifest = _json(directory / "manifest.json")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise AttestError(f"manifest.json is not a {FORMAT} manifest")
    ref = str(manifest["ref"])
    files = _files(manifest.get("files"), "manifest.json")
    digest = parse_sha256(str(manifest["root_digest"]))
    computed = root_digest(files)
    differs = "" if computed == digest else f" differs from the stated sha256:{digest}"
    out.add(
        "manifest", not differs, f"root digest sha256:{computed} of {len(files)} files{differs}"
    )

    # Trust: the caller's, else the export's own; the registry key pinned by the caller wins.
    own_trust = trust is None
    if trust is None:
        trust = parse_trust((directory / "trust.yaml").read_text(), directory)
    registry_key = trust.registry_key or TrustedKey.from_pem(
        "registry", (directory / "registry.pub").read_bytes()
    )
    whose = "the export's trust.yaml (pass --trust for your own)" if own_trust else "your trust"
    out.add("trust", True, f"{whose}; registry key sha256:{registry_key.fingerprint}")
    verifier = Verifier(keys=[*trust.keys, registry_key], identities=trust.identities)
    registry_id = f"sha256:{registry_key.fingerprint}"

    # Every bundle: verified, or reported (a signer the trust does not know is only noted).
    evidence: dict[str, list[Verified]] = {}
    digests: set[str] = set()
    bundle_files = sorted((directory / "evidence").glob("*.sigstore.json"))
    bad = 0
    for path in bundle_files:
        try:
            verified = verifier.verify(Bundle.parse(path.read_bytes()))
        except UnknownSignerError as exc:
            out.add(f"evidence {path.name}", True, f"not counted: {exc}")
            continue
        except AttestError as exc:
            bad += 1
            out.add(f"evidence {path.name}", False, exc.diagnostics())
            continue
        evidence.setdefault(verified.statement.subject.sha256, []).append(verified)
        digests.add(verified.bundle.digest)
    failing = f", {bad} do not" if bad else ""
    out.add("evidence", bad == 0 and bool(bundle_files), f"{len(digests)} bundles verify{failing}")

    if manifest.get("state") in ("revoked", "rejected"):
        out.add("state", False, f"{ref} was {manifest['state']} when it was exported")
    versions = _load_versions(directory)
    if ref not in versions or versions[ref].root_digest != digest:
        raise AttestError(f"versions.json does not describe {ref} as manifest.json does")
    if set(versions[ref].files) != set(files):
        out.add("manifest", False, "the file list differs from versions.json")

    # Releases, by version: only the registry's signed word, naming that very version and its
    # digest, makes a version released (two versions may share a digest).
    releases: dict[str, Mapping[str, Any]] = {}
    for subject_digest, items in evidence.items():
        for item in items:
            statement = item.statement
            named = versions.get(str(statement.predicate.get("version")))
            if (
                statement.predicate_type == RELEASE
                and item.signer_id == registry_id
                and named is not None
                and named.root_digest == subject_digest
            ):
                releases[named.ref] = statement.predicate

    release = _check_release(directory, verifier, registry_id, ref, digest, files, digests, out)
    releases.pop(ref, None)
    if release is not None:
        releases[ref] = release

    def subject(version: _Version) -> Subject:
        state = version.state
        if state not in ("rejected", "revoked"):
            state = "released" if version.ref in releases else "pending"
        return Subject(
            ref=version.ref,
            kind=version.kind,
            root_digest=version.root_digest,
            state=state,
            files=version.files,
            pushed_by=version.pushed_by,
            evidence=tuple(evidence.get(version.root_digest, ())),
            registry_signer_id=registry_id,
        )

    policy_for = _policies(directory, policy_text, versions, releases, out)

    def resolve(dep_ref: str) -> Subject | None:
        found = versions.get(dep_ref)
        return subject(found) if found is not None else None

    releaser = str(release.get("releasedBy")) if release else None
    reasons = evaluate(subject(versions[ref]), policy_for, resolve, releaser=releaser)
    for reason in reasons:
        out.add(reason.link, False, reason.message)
    if not reasons:
        out.add("gate", True, "every link of the chain verifies under the policy")

    _check_model_sig(directory, verifier, files, out)
    if (directory / "files").exists():
        _check_files(directory / "files", files, out)
    if (directory / "audit").exists():
        _check_audit(directory / "audit", verifier, registry_id, ref, out)
    else:
        out.add("audit", True, "not included in the export (needs an auditor token)")


def _check_release(
    directory: Path,
    verifier: Verifier,
    registry_id: str,
    ref: str,
    digest: str,
    files: tuple[FileDigest, ...],
    digests: set[str],
    out: Verdict,
) -> Mapping[str, Any] | None:
    path = directory / "release.sigstore.json"
    if not path.exists():
        out.add("release", False, "release.sigstore.json is missing")
        return None
    try:
        verified = verifier.verify(Bundle.parse(path.read_bytes()))
    except AttestError as exc:
        out.add("release", False, f"does not verify: {exc.diagnostics()}")
        return None
    statement = verified.statement
    problems = []
    if verified.signer_id != registry_id:
        problems.append(f"signed by {verified.signer_id}, not the registry key")
    if statement.predicate_type != RELEASE:
        problems.append(f"is a {statement.predicate_type}, not a release")
    if statement.subject.sha256 != digest:
        problems.append(f"is about sha256:{statement.subject.sha256}")
    predicate = statement.predicate
    if predicate.get("version") != ref:
        problems.append(f"names {predicate.get('version')!r}, not {ref}")
    if predicate.get("manifestSha256") != manifest_digest(files):
        problems.append("names another file list than manifest.json")
    cited = predicate.get("evidence", [])
    missing = [
        f"{c.get('predicateType')} {c.get('bundleSha256', '')[:12]}"
        for c in cited
        if isinstance(c, dict) and c.get("bundleSha256") not in digests
    ]
    if missing:
        problems.append("relies on bundles missing or not verifying: " + ", ".join(missing))
    if problems:
        out.add("release", False, "; ".join(problems))
        return None
    when, who = predicate.get("releasedAt"), predicate.get("releasedBy")
    out.add("release", True, f"released {when} by {who}, relying on {len(cited)} bundles")
    return predicate


def _policies(
    directory: Path,
    policy_text: str | None,
    versions: Mapping[str, _Version],
    releases: Mapping[str, Mapping[str, Any]],
    out: Verdict,
) -> Callable[[Subject], KindPolicy]:
    if policy_text is not None:
        policy = parse_policy(policy_text)
        out.add("policy", True, "your policy file, for every version of the chain")
        return lambda s: policy.for_kind(s.kind)
    cache: dict[str, Policy] = {}
    root = parse_policy((directory / "policy.yaml").read_text())

    def policy_for(subject: Subject) -> KindPolicy:
        release = releases.get(subject.ref)
        named = release.get("policy") if release else None
        if not isinstance(named, dict):
            return root.for_kind(subject.kind)
        namespace = subject.ref.split("/", 1)[0]
        name = f"{namespace}.r{named.get('revision')}.yaml"
        if name not in cache:
            path = directory / "policies" / name
            text = path.read_text() if path.exists() else ""
            if hashlib.sha256(text.encode()).hexdigest() != named.get("sha256"):
                raise AttestError(
                    f"policies/{name} is missing or is not the policy the release of "
                    f"{subject.ref} names (sha256 {named.get('sha256')})"
                )
            cache[name] = parse_policy(text)
        return cache[name].for_kind(subject.kind)

    out.add("policy", True, "the revisions named (and hashed) by each release attestation")
    return policy_for


def _check_model_sig(
    directory: Path, verifier: Verifier, files: tuple[FileDigest, ...], out: Verdict
) -> None:
    path = directory / "model.sig"
    if not path.exists():
        out.add("model.sig", False, "missing")
        return
    try:
        verified = verifier.verify(Bundle.parse(path.read_bytes()))
        check_oms(verified.statement, files)
    except AttestError as exc:
        out.add("model.sig", False, exc.diagnostics())
        return
    out.add("model.sig", True, f"OMS signature by {verified.signer} covers exactly the files")


def _check_files(root: Path, files: tuple[FileDigest, ...], out: Verdict) -> None:
    try:
        found = {f.path: f for f in hash_files(scan_directory(root).files, workers=2)}
    except AttestError as exc:
        out.add("files", False, exc.diagnostics())
        return
    wanted = {f.path: f for f in files}
    problems = [f"{p} is missing" for p in sorted(wanted.keys() - found.keys())]
    problems += [f"{p} is not in the manifest" for p in sorted(found.keys() - wanted.keys())]
    problems += [
        f"{p} has {found[p].size} bytes, sha256:{found[p].sha256}; the manifest says "
        f"{wanted[p].size} bytes, sha256:{wanted[p].sha256}"
        for p in sorted(wanted.keys() & found.keys())
        if (found[p].sha256, found[p].size) != (wanted[p].sha256, wanted[p].size)
    ]
    if problems:
        out.add("files", False, "; ".join(problems[:10]))
    else:
        out.add("files", True, f"all {len(files)} files match their digests")


def _check_audit(audit: Path, verifier: Verifier, registry_id: str, ref: str, out: Verdict) -> None:
    try:
        entries = _json(audit / "entries.json")
        verified = verifier.verify(Bundle.parse((audit / "checkpoint.sigstore.json").read_bytes()))
        if verified.signer_id != registry_id:
            raise AttestError("the checkpoint is not signed by the registry key")
        if verified.statement.predicate_type != CHECKPOINT_PREDICATE:
            raise AttestError("checkpoint.sigstore.json is not an audit checkpoint")
        if not isinstance(entries, list) or not entries:
            raise AttestError("entries.json holds no entries")
        first = int(entries[0]["seq"])
        verify_chain(entries, verified.statement, first_seq=first)
        count = int(verified.statement.predicate.get("count", 0))
    except (AttestError, KeyError, ValueError, TypeError) as exc:
        out.add("audit", False, exc.diagnostics() if isinstance(exc, AttestError) else str(exc))
        return
    namespace, rest = ref.split("/", 1)
    name, version = rest.split("@", 1)
    path = f"/v1/namespaces/{namespace}/artifacts/{name}/versions/{version}"
    about = [e for e in entries if str(e.get("target", "")).startswith(path)]
    uncovered = [e for e in about if int(e["seq"]) > count]
    released = [
        e for e in about if (e.get("action"), e.get("outcome")) == ("release_version", "ok")
    ]
    if uncovered:
        out.add(
            "audit", False, f"{len(uncovered)} entries about {ref} are newer than the checkpoint"
        )
    elif not released:
        out.add("audit", False, f"no release of {ref} in the audit log")
    else:
        out.add("audit", True, f"{len(about)} entries about {ref} chain to the signed checkpoint")
