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
    log/log-key.sigstore.json  the registry-signed statement vouching for the transparency
                             log's origin and key (predicate LOG_KEY)
    log/log.vkey             that key as a note verifier key (for other tools)
    log/NS@NAME@VERSION.tlog-proof   per version of the chain with a logged status: a C2SP
                             tlog-proof of its newest status event (release or revocation),
                             the entry's bytes in its extra line, every proof against the one
                             newest checkpoint (with any witness cosignatures)
    log/entries              every log entry from the oldest proven one to that checkpoint's
                             size (a header line, ``start N``, then uint16-length-prefixed
                             entries): they rebuild its root, so no later event is left out
    files/                   the files themselves (optional)
    root.layout, *.link      in-toto layout and links (optional)

Nothing here touches the network or :mod:`registry`. What the export claims is only *input*;
trust starts from keys the caller brings (docs/threat-model.md: a malicious export):

* The registry key is the caller's: ``registry_key`` (``--registry-key`` or the key the client
  pinned), else the ``registry:`` of the caller's trust. Without one the verdict fails and says
  how to anchor; ``trust_export_keys`` takes the export's own ``registry.pub`` and
  ``trust.yaml`` on purpose, and the verdict is then *unanchored*
  (:attr:`EvidenceVerdict.ok` False).
* Signers are the caller's trust. Identity-to-key bindings never come from the export, nor from
  registry-signed statements (a thief of the registry key could name its own keys): without the
  caller's trust, the export's ``trust.yaml`` is taken as given and the verdict is *unanchored*
  (at most UNANCHORED, never :attr:`EvidenceVerdict.ok`); a name the releases record for another key
  than ``trust.yaml`` gives it still fails (a check that can only fail, never vouch).
* The registry key never counts as a signer of user evidence (:mod:`attest.gate`).
* A version counts as released only through a release attestation, verified with the registry
  key, naming that very version and its digest. Its kind, pusher (separation of duties) and file
  list are the ones that release signs; ``versions.json`` disagreeing is a failure.
* The policy is the caller's, else the revision the release names, whose hash it pins; the
  export's ``policy.yaml`` is hashed by nothing and judges nothing, so an unreleased dependency
  without the caller's policy is refused, named. A version's kind (which picks the policy
  section) is the one its release signs, else the role the signed provenance naming it gives it
  (``attest.provenance.ROLE_KINDS``); with neither it is refused, named.
* Every digest is recomputed. The audit log (``audit/``) must be there unless the caller says
  otherwise (``require_audit``); a revocation it records fails the verdict. States the export
  records (rejected, revoked) can only make verification fail, never pass; revocations after the
  export cannot be known offline. A registry-signed revocation in the export marks its version
  revoked whatever the export's state fields say.
* The transparency log (``log/``, :func:`_check_log`): its key counts only as the caller's
  registry key vouches for it; every version counted as released needs a proof, in one
  checkpoint signed by that key (cosigned by the witnesses the caller names), that its newest
  logged status event is the release whose bundle the export holds, and the log's entries after
  the oldest proven one (which must rebuild the checkpoint's root) hold no later event about it; a
  logged revocation fails, whatever else the export says or leaves out. A version without a
  proof fails unless the caller says otherwise (``require_log``: released before the log existed).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from attest import jsonsafe
from attest.auditlog import verify_chain
from attest.bundle import Bundle
from attest.digests import FileDigest, manifest_digest, parse_sha256, root_digest
from attest.errors import AttestError, UnknownSignerError
from attest.files import file_set, hash_files
from attest.gate import DEPENDENCY_SCHEME, Candidate, evaluate
from attest.keys import TrustedKey
from attest.note import NoteVerifier, SignedCheckpoint, verify_checkpoint
from attest.oms import check_oms
from attest.policy import KindPolicy, Policy, parse_policy
from attest.predicates import AUDIT_CHECKPOINT, RELEASE, REVOCATION, SLSA_PROVENANCE
from attest.provenance import ROLE_KINDS
from attest.tlogproof import (
    ENTRIES_FILE,
    EXTENSION,
    MAX_ENTRIES_SIZE,
    MAX_PROOF_SIZE,
    IncludedEntry,
    TlogProof,
    check_inclusion,
    check_suffix,
    parse_entries,
    vouched_log_key,
)
from attest.trust import Trust, parse_trust
from attest.verifying import SigstoreIdentity, Verified, Verifier

FORMAT = "modelseal-evidence/v1"
MAX_JSON = 256 * 1024 * 1024

#: The transparency log's part of an export: ``log/`` holds the registry-signed statement
#: vouching for the log key, the vkey, and one C2SP tlog-proof per version with a logged status.
LOG_DIR = "log"
LOG_KEY_FILE = "log-key.sigstore.json"
LOG_VKEY_FILE = "log.vkey"


def log_proof_name(ref: str) -> str:
    """The file name, under ``log/``, of the tlog-proof of version ``ref`` (``ns/name@v``):
    ``ns@name@v.tlog-proof``. No name or version holds ``@``, so two versions never share one
    (``a.b/c`` and ``a/b.c`` would, were ``/`` turned into ``.``)."""
    return ref.replace("/", "@", 1) + EXTENSION


#: How a caller anchors the registry key, for the message when none is given.
HOW_TO_ANCHOR = (
    "no registry key of yours anchors this export, and its own registry.pub proves nothing: "
    "pass --registry-key FILE (the registry's public key, from its operator), name "
    "`registry: {key: FILE}` in your --trust file, or pin the registry's key on this machine "
    "(a `modelseal pull` or `export` against it pins it on first contact); "
    "--trust-export-keys checks the export against its own keys, reported UNANCHORED"
)


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the verdict: a link of the chain and whether it held."""

    link: str
    ok: bool
    message: str

    def __str__(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.link}: {self.message}"


#: Why a verdict is unanchored: the registry key, or the signers, are the export's own.
REGISTRY_FROM_EXPORT = (
    "the registry key is the export's own registry.pub (--trust-export-keys); bring your "
    "registry key to anchor it"
)
SIGNERS_FROM_EXPORT = "signer identities taken from the export; bring --trust FILE to verify them"


@dataclass
class EvidenceVerdict:
    """Every check made. ``ok`` needs every check to hold *and* everything it rests on to be
    the caller's (``anchored``: their registry key and their signer identities); ``holds`` is
    the former alone (for an UNANCHORED report, ``unanchored`` saying why)."""

    checks: list[Check] = field(default_factory=list)
    unanchored: list[str] = field(default_factory=list)

    @property
    def anchored(self) -> bool:
        return not self.unanchored

    def unanchor(self, why: str) -> None:
        if why not in self.unanchored:
            self.unanchored.append(why)

    @property
    def holds(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def ok(self) -> bool:
        return self.anchored and self.holds

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


def _read(path: Path, limit: int = MAX_JSON) -> bytes:
    """The bytes of a regular file of the export, at most ``limit`` of them: an export is input,
    and a link, a device or a pipe in it is refused before anything is read."""
    if path.is_symlink() or not path.is_file():
        raise AttestError(f"{path.name} is not a regular file")
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise AttestError(f"{path.name} is larger than {limit} bytes")
    return data


def _text(path: Path) -> str:
    try:
        return _read(path).decode("utf-8")
    except UnicodeDecodeError:
        raise AttestError(f"{path.name} is not UTF-8 text") from None


def _json(path: Path) -> Any:
    return jsonsafe.loads(_read(path), what=path.name, max_bytes=MAX_JSON)


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
    registry_key: TrustedKey | None = None,
    registry_key_source: str = "your --registry-key",
    trust_export_keys: bool = False,
    require_audit: bool = True,
    trust_source: str = "your trust file's identities",
    require_log: bool = True,
    witnesses: Sequence[NoteVerifier] = (),
    witness_threshold: int = 0,
) -> EvidenceVerdict:
    """Re-run the release gate from ``directory``; every link gets a line in the verdict.

    Args:
        trust: the caller's signers (and possibly ``registry:``); None: the export's
            ``trust.yaml`` as given, and the verdict is unanchored (never ``ok``).
        trust_source: where ``trust`` came from, for the verdict line.
        policy_text: the caller's policy; None: the revisions the releases name and hash.
        registry_key: the caller's registry key; ``registry_key_source`` says where it came
            from (for the verdict line).
        trust_export_keys: without any registry key of the caller's, take the export's own
            keys; the verdict is then unanchored and never ``ok``.
        require_audit: an export without ``audit/`` fails (False: only noted, for a caller
            that exported it itself without the right to read the log).
        require_log: a released version of the chain without a proof of its release in the
            transparency log (``log/``) fails (False: only noted, for versions released before
            the log existed; the proofs the export holds are still checked).
        witnesses, witness_threshold: the log's checkpoint must carry at least
            ``witness_threshold`` valid cosignatures by these witnesses (type 0x04 keys).

    Never raises for a bad export: every problem is a failing line of the verdict.
    """
    verdict = EvidenceVerdict()
    try:
        _verify(
            directory,
            trust,
            policy_text,
            _Anchor(registry_key, registry_key_source, trust_export_keys),
            require_audit,
            verdict,
            trust_source,
            _LogNeeds(require_log, tuple(witnesses), witness_threshold),
        )
    except (AttestError, OSError, ValueError, KeyError, TypeError) as exc:
        message = exc.diagnostics() if isinstance(exc, AttestError) else str(exc)
        verdict.add("export", False, f"unreadable: {message}")
    return verdict


@dataclass(frozen=True, slots=True)
class _LogNeeds:
    """What the caller requires of the export's transparency-log proofs."""

    require: bool
    witnesses: tuple[NoteVerifier, ...]
    threshold: int


@dataclass(frozen=True, slots=True)
class _Anchor:
    key: TrustedKey | None
    source: str
    export_keys: bool


def _registry_key(directory: Path, trust: Trust | None, anchor: _Anchor, out: EvidenceVerdict) -> (
    TrustedKey | None
):  # fmt: skip
    """The caller's registry key (None, with a failing line, when there is none)."""
    exported = TrustedKey.from_pem("registry", _read(directory / "registry.pub"))
    key, source = anchor.key, anchor.source
    own = trust.registry_key if trust is not None else None
    if key is not None and own is not None and key.fingerprint != own.fingerprint:
        out.add(
            "trust",
            False,
            f"{source} (sha256:{key.fingerprint}) and your trust file's registry key "
            f"(sha256:{own.fingerprint}) differ: bring one registry key",
        )
        return None
    if key is None and own is not None:
        key, source = own, "your trust file's registry key"
    if key is None and anchor.export_keys:
        out.unanchor(REGISTRY_FROM_EXPORT)
        out.add(
            "trust",
            True,
            f"UNANCHORED: the export's own registry.pub (sha256:{exported.fingerprint}) and "
            "trust.yaml, taken as given (--trust-export-keys): whoever wrote the export chose them",
        )
        return exported
    if key is None:
        out.add("trust", False, HOW_TO_ANCHOR)
        return None
    if exported.fingerprint != key.fingerprint:
        out.add(
            "registry.pub",
            False,
            f"the export's registry.pub is sha256:{exported.fingerprint}, not your registry key "
            f"sha256:{key.fingerprint}; ignored (give tools such as in-toto-verify your own key)",
        )
    out.add("registry key", True, f"sha256:{key.fingerprint}, from {source}")
    return TrustedKey("registry", key.key)


def _recorded_names(directory: Path, registry: Verifier, registry_id: str) -> dict[str, set[str]]:
    """``{identity name: {signer ids}}`` that registry-signed release attestations record for
    the evidence they relied on (the registry's own key excluded). Only ever a reason to fail:
    a registry-signed statement never binds a name to a key."""
    paths = [*sorted((directory / "evidence").glob("*.sigstore.json"))]
    if (directory / "release.sigstore.json").exists():
        paths.append(directory / "release.sigstore.json")
    names: dict[str, set[str]] = {}
    for path in paths:
        try:
            verified = registry.verify(Bundle.parse(_read(path)))
        except AttestError:
            continue  # not the registry's (or broken): the main pass reports it
        statement = verified.statement
        if statement.predicate_type != RELEASE or verified.signer_id != registry_id:
            continue
        cited = statement.predicate.get("evidence")
        for item in cited if isinstance(cited, list) else []:
            if not isinstance(item, dict):
                continue
            signer, name = item.get("signer"), item.get("signerName")
            if isinstance(signer, str) and isinstance(name, str) and signer != registry_id:
                names.setdefault(name, set()).add(signer)
    return names


def _export_signers(
    directory: Path, registry: Verifier | None, registry_id: str, out: EvidenceVerdict
) -> tuple[list[TrustedKey], list[SigstoreIdentity]]:
    """The export's trust.yaml, taken as given: the verdict becomes unanchored. Names the
    releases record for other keys than trust.yaml's fail (when the registry key is the
    caller's; the export's own key would vouch for nothing)."""
    given = parse_trust(_text(directory / "trust.yaml"), directory, confined=True)
    out.unanchor(SIGNERS_FROM_EXPORT)
    out.add(
        "trust",
        True,
        f"UNANCHORED: {SIGNERS_FROM_EXPORT} "
        f"({len(given.keys) + len(given.identities)} identities of its trust.yaml, as given)",
    )
    if registry is not None:
        recorded = _recorded_names(directory, registry, registry_id)
        entries: list[tuple[str, str]] = [(k.name, f"sha256:{k.fingerprint}") for k in given.keys]
        entries += [(i.name, i.signer_id) for i in given.identities]
        problems = [
            f"trust.yaml maps {name} to {sid}, but the release attestations record {name} as "
            f"{', '.join(sorted(recorded[name]))}"
            for name, sid in entries
            if name in recorded and sid not in recorded[name]
        ]
        if problems:
            out.add("trust", False, "; ".join(problems) + " (bring your own --trust)")
    return list(given.keys), list(given.identities)


def _verify(
    directory: Path,
    trust: Trust | None,
    policy_text: str | None,
    anchor: _Anchor,
    require_audit: bool,
    out: EvidenceVerdict,
    trust_source: str,
    log_needs: _LogNeeds,
) -> None:
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

    # Trust: the registry key is always the caller's (unless they take the export's on
    # purpose); signers are the caller's, else the export's as given (unanchored).
    registry_key = _registry_key(directory, trust, anchor, out)
    if registry_key is None:
        return
    registry_id = f"sha256:{registry_key.fingerprint}"
    signer_keys: list[TrustedKey]
    signer_identities: list[SigstoreIdentity]
    if trust is not None:
        signer_keys, signer_identities = list(trust.keys), list(trust.identities)
        out.add("trust", True, trust_source)
    else:
        own_registry = REGISTRY_FROM_EXPORT not in out.unanchored
        signer_keys, signer_identities = _export_signers(
            directory, Verifier(keys=[registry_key]) if own_registry else None, registry_id, out
        )
    # The registry key last: whatever name a trust gives that key, it verifies as "registry"
    # (and the gate never counts it for user evidence in any case).
    verifier = Verifier(keys=[*signer_keys, registry_key], identities=signer_identities)

    # Every bundle: verified, or reported (a signer the trust does not know is only noted).
    evidence: dict[str, list[Verified]] = {}
    digests: set[str] = set()
    bundle_files = sorted((directory / "evidence").glob("*.sigstore.json"))
    bad = 0
    for path in bundle_files:
        try:
            verified = verifier.verify(Bundle.parse(_read(path)))
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

    versions = _load_versions(directory)
    if ref not in versions or versions[ref].root_digest != digest:
        raise AttestError(f"versions.json does not describe {ref} as manifest.json does")
    if set(versions[ref].files) != set(files):
        out.add("manifest", False, "the file list differs from versions.json")
    recorded = {str(manifest.get("state")), versions[ref].state}
    if len(recorded) > 1:
        out.add(
            "state", False, f"manifest.json and versions.json record {ref} as {sorted(recorded)}"
        )
    for state in sorted(recorded & {"revoked", "rejected"}):
        out.add("state", False, f"{ref} was {state} when it was exported")

    # Releases, by version: only the registry's signed word, naming that very version and its
    # digest, makes a version released (two versions may share a digest).
    releases: dict[str, Mapping[str, Any]] = {}
    release_bundles: dict[str, set[str]] = {}  # ref -> sha256 of its release bundles
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
                release_bundles.setdefault(named.ref, set()).add(item.bundle.digest)

    release = _check_release(directory, verifier, registry_id, ref, digest, files, digests, out)
    releases.pop(ref, None)
    release_bundles.pop(ref, None)
    if release is not None:
        releases[ref] = release
        # The root's verdict rests on release.sigstore.json: the log must record that one.
        raw = _read(directory / "release.sigstore.json")
        release_bundles[ref] = {hashlib.sha256(raw).hexdigest()}
    versions = {r: _signed_facts(v, releases.get(r), out) for r, v in versions.items()}
    kinds = _signed_kinds(evidence, versions, releases, registry_id, out)
    revoked = _revocations(evidence, versions, registry_id)
    if ref in revoked:
        out.add("state", False, revoked[ref])

    def subject(version: _Version) -> Candidate:
        state = version.state
        if version.ref in revoked:
            state = "revoked"  # the registry's signed word, whatever versions.json says
        elif state not in ("rejected", "revoked"):
            state = "released" if version.ref in releases else "pending"
        return Candidate(
            ref=version.ref,
            kind=version.kind,
            root_digest=version.root_digest,
            state=state,
            files=version.files,
            pushed_by=version.pushed_by,
            evidence=tuple(evidence.get(version.root_digest, ())),
            registry_signer_id=registry_id,
        )

    policy_for = _policies(directory, policy_text, ref, kinds, releases, out)

    def resolve(dep_ref: str) -> Candidate | None:
        found = versions.get(dep_ref)
        return subject(found) if found is not None else None

    releaser = str(release.get("releasedBy")) if release else None
    try:
        reasons = evaluate(subject(versions[ref]), policy_for, resolve, releaser=releaser)
    except _Unjudged as exc:
        out.add(exc.link, False, f"{exc} (the gate stops here: nothing judged passes)")
    else:
        for reason in reasons:
            out.add(reason.link, False, reason.message)
        if not reasons:
            out.add("gate", True, "every link of the chain verifies under the policy")

    _check_model_sig(directory, verifier, files, out)
    if (directory / "files").exists():
        _check_files(directory / "files", files, out)
    if (directory / "audit").exists():
        _check_audit(directory / "audit", verifier, registry_id, ref, versions, out)
    elif require_audit:
        out.add(
            "audit",
            False,
            "missing: the export holds no audit/ log, so neither the release nor a later "
            "revocation can be checked against a registry-signed checkpoint (export with an "
            "auditor or admin token, or verify online with `modelseal verify REF`)",
        )
    else:
        out.add("audit", True, "not included in the export (needs an auditor token)")
    _check_log(directory, registry_key, registry_id, ref, versions, release_bundles, log_needs,
               out)  # fmt: skip


def _revocations(
    evidence: Mapping[str, list[Verified]], versions: Mapping[str, _Version], registry_id: str
) -> dict[str, str]:
    """``{ref: description}`` of the versions a registry-signed revocation in the export names
    (that very version and its digest)."""
    found: dict[str, str] = {}
    for subject_digest, items in evidence.items():
        for item in items:
            statement = item.statement
            named = versions.get(str(statement.predicate.get("version")))
            if (
                statement.predicate_type == REVOCATION
                and item.signer_id == registry_id
                and named is not None
                and named.root_digest == subject_digest
            ):
                predicate = statement.predicate
                found[named.ref] = (
                    f"{named.ref} was revoked at {predicate.get('revokedAt')} "
                    f"(registry-signed revocation: {predicate.get('reason')})"
                )
    return found


def _signed_facts(
    version: _Version, release: Mapping[str, Any] | None, out: EvidenceVerdict
) -> _Version:
    """``version`` with the facts its release attestation signs (kind, pusher) in place of
    what versions.json says, each disagreement named; its files must hash to its digest."""
    ref = version.ref
    if root_digest(version.files) != version.root_digest:
        out.add("versions.json", False, f"the files of {ref} do not hash to its root digest")
    if release is None:
        return version
    if release.get("manifestSha256") != manifest_digest(version.files):
        out.add("versions.json", False, f"{ref}: not the file list its release attestation names")
    facts = {"kind": version.kind, "pushed_by": version.pushed_by}
    for name, key in (("kind", "kind"), ("pushed_by", "pushedBy")):
        signed = release.get(key)
        if not isinstance(signed, str):
            out.add(
                "release",
                False,
                f"the release of {ref} records no {key}: the unsigned versions.json value "
                f"{facts[name]!r} cannot be checked (re-export from a registry that records it)",
            )
        elif signed != facts[name]:
            out.add(
                "versions.json",
                False,
                f"{ref}: {name} {facts[name]!r}, but its release attestation signs {signed!r}",
            )
            facts[name] = signed
    return _Version(ref, facts["kind"], version.root_digest, version.files,
                    facts["pushed_by"], version.state)  # fmt: skip


def _check_release(
    directory: Path,
    verifier: Verifier,
    registry_id: str,
    ref: str,
    digest: str,
    files: tuple[FileDigest, ...],
    digests: set[str],
    out: EvidenceVerdict,
) -> Mapping[str, Any] | None:
    path = directory / "release.sigstore.json"
    if not path.exists():
        out.add("release", False, "release.sigstore.json is missing")
        return None
    try:
        verified = verifier.verify(Bundle.parse(_read(path)))
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


class _Unjudged(AttestError):
    """No signed fact says how to judge a version of the chain (its kind, or its policy)."""

    def __init__(self, link: str, message: str) -> None:
        super().__init__(message)
        self.link = link


def _signed_kinds(
    evidence: Mapping[str, list[Verified]],
    versions: Mapping[str, _Version],
    releases: Mapping[str, Mapping[str, Any]],
    registry_id: str,
    out: EvidenceVerdict,
) -> dict[str, str]:
    """``{ref: kind}`` as signed: by the version's release attestation, else by the role the
    provenance naming it gives it (:data:`attest.provenance.ROLE_KINDS`). A version with neither
    (or with conflicting signed kinds) is left out: it is not judged. versions.json's kind is
    unsigned; disagreeing with a signed kind is named."""
    roles: dict[str, set[str]] = {}
    for items in evidence.values():
        for item in items:
            statement = item.statement
            if statement.predicate_type != SLSA_PROVENANCE or item.signer_id == registry_id:
                continue  # the registry key names no dependencies (attest.gate)
            definition = statement.predicate.get("buildDefinition")
            resolved = (
                definition.get("resolvedDependencies") if isinstance(definition, dict) else []
            )
            for entry in resolved if isinstance(resolved, list) else []:
                uri = entry.get("uri") if isinstance(entry, dict) else None
                if isinstance(uri, str) and uri.startswith(DEPENDENCY_SCHEME):
                    role = entry.get("name", "dataset")  # as attest.provenance reads it
                    dep = uri.removeprefix(DEPENDENCY_SCHEME)
                    roles.setdefault(dep, set()).add(
                        ROLE_KINDS[role] if isinstance(role, str) and role in ROLE_KINDS else ""
                    )
    kinds: dict[str, str] = {}
    for ref, version in versions.items():
        release = releases.get(ref)
        released = release.get("kind") if release is not None else None
        by_role = roles.get(ref, set())
        if isinstance(released, str):
            kinds[ref] = released  # _signed_facts named a versions.json that disagrees
            if by_role - {released}:
                named = ", ".join(sorted(k or "(no known role)" for k in by_role))
                message = f"{ref} is released as a {released}, but provenance names it as {named}"
                out.add("provenance", False, message)
            continue
        if len(by_role) == 1 and "" not in by_role:
            [kind] = by_role
            kinds[ref] = kind
            if version.kind != kind:
                message = (f"{ref}: kind {version.kind!r}, but the signed provenance naming it "
                           f"gives it the role of a {kind}")  # fmt: skip
                out.add("versions.json", False, message)
    return kinds


def _policies(
    directory: Path,
    policy_text: str | None,
    root_ref: str,
    kinds: Mapping[str, str],
    releases: Mapping[str, Mapping[str, Any]],
    out: EvidenceVerdict,
) -> Callable[[Candidate], KindPolicy]:
    """The policy section for each version of the chain: the caller's policy, else the revision
    its release names and hashes, for the kind that is signed. The export's policy.yaml is hashed
    by nothing: it judges nothing."""
    own = parse_policy(policy_text) if policy_text is not None else None
    cache: dict[str, Policy] = {}
    # The root without a verified release has failed the verdict already ("release"): its
    # unsigned kind and the export's policy.yaml only add the gate's diagnostics, never a pass.
    unreleased_root = root_ref not in releases

    def policy_for(subject: Candidate) -> KindPolicy:
        link = "policy" if subject.ref == root_ref else f"dependency {subject.ref}"
        kind = kinds.get(subject.ref)
        if subject.ref == root_ref and unreleased_root:
            if own is not None:
                return own.for_kind(subject.kind)
            return parse_policy(_text(directory / "policy.yaml")).for_kind(subject.kind)
        if kind is None:
            raise _Unjudged(
                link,
                f"its kind is signed nowhere: no release attestation of {subject.ref} and no "
                "provenance naming it with a known role (dataset, base-model, code); the "
                f"unsigned versions.json kind {subject.kind!r} picks no policy section, so it is "
                "not judged",
            )
        if own is not None:
            return own.for_kind(kind)
        release = releases.get(subject.ref)
        named = release.get("policy") if release else None
        if not isinstance(named, dict):
            raise _Unjudged(
                link,
                f"no release attestation of {subject.ref} names (and hashes) its policy, and "
                "the export's policy.yaml is signed by nothing: bring --policy FILE to judge it",
            )
        namespace = subject.ref.split("/", 1)[0]
        name = f"{namespace}.r{named.get('revision')}.yaml"
        if name not in cache:
            path = directory / "policies" / name
            text = _text(path) if path.exists() else ""
            if hashlib.sha256(text.encode()).hexdigest() != named.get("sha256"):
                raise AttestError(
                    f"policies/{name} is missing or is not the policy the release of "
                    f"{subject.ref} names (sha256 {named.get('sha256')})"
                )
            cache[name] = parse_policy(text)
        return cache[name].for_kind(kind)

    if own is not None:
        out.add("policy", True, "your policy file, for every version of the chain")
    else:
        out.add("policy", True, "the revisions named (and hashed) by each release attestation")
    return policy_for


def _check_model_sig(
    directory: Path, verifier: Verifier, files: tuple[FileDigest, ...], out: EvidenceVerdict
) -> None:
    path = directory / "model.sig"
    if not path.exists():
        out.add("model.sig", False, "missing")
        return
    try:
        verified = verifier.verify(Bundle.parse(_read(path)))
        check_oms(verified.statement, files)
    except AttestError as exc:
        out.add("model.sig", False, exc.diagnostics())
        return
    out.add("model.sig", True, f"OMS signature by {verified.signer} covers exactly the files")


def _check_files(root: Path, files: tuple[FileDigest, ...], out: EvidenceVerdict) -> None:
    try:
        found = {f.path: f for f in hash_files(file_set(root).files, workers=2)}
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


def audit_target(ref: str) -> str:
    """The API path the audit log records as the target of actions on version ``ref``."""
    namespace, rest = ref.split("/", 1)
    name, version = rest.split("@", 1)
    return f"/v1/namespaces/{namespace}/artifacts/{name}/versions/{version}"


def is_about(entry: Mapping[str, Any], path: str) -> bool:
    """Whether an audit entry is about the version at ``path`` (or a path below it)."""
    target = str(entry.get("target", ""))
    # "…/versions/1" must not take in "…/versions/10".
    return target == path or target.startswith((f"{path}/", f"{path}?"))


def _check_audit(
    audit: Path,
    verifier: Verifier,
    registry_id: str,
    ref: str,
    versions: Mapping[str, _Version],
    out: EvidenceVerdict,
) -> None:
    """The log suffix chains to the registry-signed checkpoint, records the release of ``ref``,
    and records no revocation of any version of the chain."""
    try:
        entries = _json(audit / "entries.json")
        verified = verifier.verify(Bundle.parse(_read(audit / "checkpoint.sigstore.json")))
        if verified.signer_id != registry_id:
            raise AttestError("the checkpoint is not signed by the registry key")
        if verified.statement.predicate_type != AUDIT_CHECKPOINT:
            raise AttestError("checkpoint.sigstore.json is not an audit checkpoint")
        if not isinstance(entries, list) or not entries:
            raise AttestError("entries.json holds no entries")
        first = int(entries[0]["seq"])
        verify_chain(entries, verified.statement, first_seq=first)
        count = int(verified.statement.predicate.get("count", 0))
    except (AttestError, KeyError, ValueError, TypeError) as exc:
        out.add("audit", False, exc.diagnostics() if isinstance(exc, AttestError) else str(exc))
        return
    # A revocation the log records, of the version or anything it was built on, fails the
    # verdict whatever states versions.json and manifest.json claim (they are unsigned).
    for other in versions:
        path = audit_target(other)
        for entry in entries:
            if is_about(entry, path) and (entry.get("action"), entry.get("outcome")) == (
                "revoke_version",
                "ok",
            ):
                out.add(
                    "audit",
                    False,
                    f"{other} was revoked (audit entry {entry.get('seq')}, by "
                    f"{entry.get('actor')} at {entry.get('at')})",
                )
    path = audit_target(ref)
    about = [e for e in entries if is_about(e, path)]
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


# -- the transparency log -------------------------------------------------------------------------


def _check_log(
    directory: Path,
    registry_key: TrustedKey,
    registry_id: str,
    root_ref: str,
    versions: Mapping[str, _Version],
    release_bundles: Mapping[str, set[str]],
    needs: _LogNeeds,
    out: EvidenceVerdict,
) -> None:
    """The transparency log's word on every version the verdict counts as released
    (``release_bundles``: the sha256 of the registry-signed release bundles of each, the root's
    being ``release.sigstore.json``), from ``log/`` alone:

    1. ``log/log-key.sigstore.json`` verifies with *your* registry key and vouches for exactly
       one log origin and key (:func:`attest.tlogproof.vouched_log_key`); ``log/log.vkey``, when
       there, names the same key. The export's own word on its log key anchors nothing;
    2. each ``log/NS@NAME@VERSION.tlog-proof``'s checkpoint is signed by that key with that
       origin, not from the future, and cosigned by the witnesses you require; every proof of
       the export is against one and the same checkpoint (its size and time are reported);
    3. each proof's entry (its ``extra`` line) is included in that checkpoint (the inclusion
       proof leads to its root), and is about that very version;
    4. the entry is the version's release, naming its root digest and the SHA-256 of the release
       bundle the export holds for it; a revocation there fails, named; so does a released
       version with no proof, unless ``needs.require`` is False (versions released before the
       log existed; the proofs there still count).

    5. ``log/entries`` holds every entry from the oldest proven one up to the checkpoint's size
       and, with the earlier subtrees' hashes that entry's inclusion proof carries, they rebuild
       the checkpoint's root; no entry after a version's proven one is about that version (so a
       later revocation cannot be left out of the export).

    What cannot be known offline: a status event logged after the checkpoint (a monitor reading
    the log sees it; the checkpoint's time is reported).
    """
    logdir = directory / LOG_DIR
    order = list(dict.fromkeys([root_ref, *sorted(versions)]))  # the root first
    relied = [r for r in order if r in release_bundles]
    if logdir.is_symlink() or not logdir.is_dir():
        if needs.threshold:
            out.add("log checkpoint", False, f"you require {needs.threshold} witness "
                    "cosignature(s), but the export holds no log checkpoint")  # fmt: skip
        if needs.require:
            out.add(
                "log",
                False,
                f"missing: the export holds no {LOG_DIR}/ directory, so no signed log shows "
                f"{', '.join(relied) or root_ref} released and not revoked (export from a "
                "registry with a transparency log; --without-log accepts versions released "
                "before it existed)",
            )
        else:
            out.add("log", True, f"no {LOG_DIR}/ in the export; accepted (--without-log): "
                    "releases and revocations are not checked against the log")  # fmt: skip
        return
    anchored = _log_key(logdir, registry_key, registry_id, out)
    if anchored is None:
        return
    origin, log_key = anchored

    proofs: dict[str, TlogProof] = {}
    lines: list[Check] = []
    for ref in order:
        path = logdir / log_proof_name(ref)
        if not path.exists() and not path.is_symlink():
            if ref not in release_bundles:
                continue  # pending or rejected: no status event to prove
            if needs.require:
                message = (
                    f"{ref}: no proof of its release ({LOG_DIR}/{path.name} is missing): "
                    "released before the log existed, or the proof was left out; no signed log "
                    "shows it released and not revoked (--without-log accepts that)"
                )
            else:
                message = (
                    f"{ref}: no proof in the log; accepted (--without-log): its release and "
                    "any revocation are not checked against the log"
                )
            lines.append(Check("log", not needs.require, message))
            continue
        try:
            proofs[ref] = TlogProof.parse(_read(path, MAX_PROOF_SIZE))
        except AttestError as exc:
            lines.append(Check("log", False, f"{ref}: {LOG_DIR}/{path.name}: {exc.diagnostics()}"))

    # One checkpoint for every proof, verified once.
    signed_by_note: dict[str, SignedCheckpoint | None] = {}
    for proof in proofs.values():
        if proof.checkpoint in signed_by_note:
            continue
        try:
            signed_by_note[proof.checkpoint] = verify_checkpoint(
                proof.checkpoint, [log_key], origin=origin, witnesses=needs.witnesses,
                witness_threshold=needs.threshold,
            )  # fmt: skip
        except AttestError as exc:
            signed_by_note[proof.checkpoint] = None
            out.add(
                "log checkpoint",
                False,
                f"does not verify with the log key {log_key.vkey} your registry key vouches "
                f"for: {exc.diagnostics()}",
            )
    heads = {s.checkpoint for s in signed_by_note.values() if s is not None}
    if len(heads) > 1:
        sizes = ", ".join(sorted({str(h.size) for h in heads}))
        out.add("log checkpoint", False, f"the proofs are against {len(heads)} different "
                f"checkpoints (sizes {sizes}): an export's proofs share one")  # fmt: skip
    elif len(heads) == 1:
        signed = next(s for s in signed_by_note.values() if s is not None)
        out.add("log checkpoint", True, _describe_checkpoint(signed, needs))
    elif needs.threshold and not signed_by_note:
        out.add("log checkpoint", False, f"you require {needs.threshold} witness "
                "cosignature(s), but the export holds no log proof")  # fmt: skip

    included: dict[str, IncludedEntry] = {}
    for ref, proof in proofs.items():
        signed_head = signed_by_note.get(proof.checkpoint)
        if signed_head is None:
            lines.append(Check("log", False, f"{ref}: its proof's checkpoint does not verify"))
            continue
        try:
            included[ref] = check_inclusion(proof, signed_head)
        except AttestError as exc:
            message = f"{ref}: log entry {proof.index} is not in the checkpoint: "
            lines.append(Check("log", False, message + exc.diagnostics()))
            continue
        lines.append(_judge_log_entry(ref, included[ref], versions[ref], release_bundles))
    if len(heads) == 1 and included:
        lines.extend(_check_no_later_event(logdir, proofs, included))
    out.checks.extend(lines)


def _check_no_later_event(
    logdir: Path, proofs: Mapping[str, TlogProof], included: Mapping[str, IncludedEntry]
) -> list[Check]:
    """Step 5: ``log/entries`` holds every entry from the oldest proven one to the checkpoint's
    size, and they rebuild its root (:func:`attest.tlogproof.check_suffix`), so none is left
    out; no entry after a version's proven one is about that version (a later revocation, or a
    release the export does not show)."""
    first = min(included, key=lambda ref: included[ref].index)
    signed = included[first].checkpoint
    where = f"{LOG_DIR}/{ENTRIES_FILE}"
    path = logdir / ENTRIES_FILE
    if path.is_symlink() or not path.is_file():
        message = (f"{where} is missing: nothing shows that no later event (a revocation) "
                   "about the proven versions was left out of the export")  # fmt: skip
        return [Check("log", False, message)]
    try:
        start, entries = parse_entries(_read(path, MAX_ENTRIES_SIZE), signed.checkpoint.size)
        check_suffix(proofs[first], signed, start, entries)
    except AttestError as exc:
        return [Check("log", False, f"{where}: {exc.diagnostics()}")]
    # Only the entries from the oldest proven one on are authenticated (rebuilt into the root).
    entries, start = entries[included[first].index - start :], included[first].index
    subjects: list[Any] = []
    for offset, raw in enumerate(entries):
        try:
            entry = jsonsafe.loads(raw, what=f"log entry {start + offset}", max_bytes=len(raw))
        except AttestError as exc:
            return [Check("log", False, f"{where}: {exc.diagnostics()}")]
        subjects.append(entry if isinstance(entry, dict) else {})
    lines: list[Check] = []
    for ref, proven in sorted(included.items()):
        for offset in range(proven.index + 1 - start, len(subjects)):
            entry = subjects[offset]
            if entry.get("subject") == ref:
                kind, at = str(entry.get("type"))[:40], str(entry.get("at"))[:40]
                actor = str(entry.get("actor"))[:80]
                message = (f"{ref}: the log records a later event about it than the one "
                           f"proven (entry {start + offset}, {kind}, {at}, by {actor}), left "
                           "out of the export")  # fmt: skip
                lines.append(Check("log", False, message))
                break
    if not lines:
        lines.append(Check("log", True, f"entries {start}-{signed.checkpoint.size - 1} of the "
                           "log rebuild the checkpoint's root: no later event about the "
                           f"{len(included)} proven version(s)"))  # fmt: skip
    return lines


def _log_key(
    logdir: Path, registry_key: TrustedKey, registry_id: str, out: EvidenceVerdict
) -> tuple[str, NoteVerifier] | None:
    """The log's origin and key, as the registry key the caller brought vouches for them."""
    path = logdir / LOG_KEY_FILE
    where = f"{LOG_DIR}/{LOG_KEY_FILE}"
    if not path.exists() and not path.is_symlink():
        out.add("log key", False, f"{where} is missing: nothing anchors the log's key on your "
                "registry key, and a log key by itself proves nothing")  # fmt: skip
        return None
    try:
        verified = Verifier(keys=[registry_key]).verify(Bundle.parse(_read(path)))
        if verified.signer_id != registry_id:
            raise AttestError(f"signed by {verified.signer_id}, not your registry key")
        origin, vkey = vouched_log_key(verified.statement)
        log_key = NoteVerifier.from_vkey(vkey)
    except AttestError as exc:
        out.add("log key", False, f"{where} does not vouch for a log key with your registry "
                f"key: {exc.diagnostics()}")  # fmt: skip
        return None
    vkey_path = logdir / LOG_VKEY_FILE
    if vkey_path.exists() or vkey_path.is_symlink():
        try:
            listed = _read(vkey_path, 4096).decode("ascii").strip()
        except (AttestError, UnicodeDecodeError) as exc:
            listed = f"(unreadable: {exc})"
        if listed != vkey:
            out.add("log key", False, f"{LOG_DIR}/{LOG_VKEY_FILE} names {listed[:200]!r}, not "
                    f"the key {vkey} your registry key vouches for")  # fmt: skip
            return None
    out.add("log key", True, f"log {origin} with key {vkey}, vouched for by your registry key")
    return origin, log_key


def _describe_checkpoint(signed: SignedCheckpoint, needs: _LogNeeds) -> str:
    head = signed.checkpoint
    if head.timestamp is None:
        when = "no timestamp line"
    else:
        at = datetime.fromtimestamp(head.timestamp, UTC).isoformat()
        when = f"signed at {at} (timestamp {head.timestamp})"
    text = f"{head.origin} size {head.size}, root {head.root_hash.hex()[:16]}…, {when}"
    if signed.cosignatures:
        text += f"; cosigned by {', '.join(sorted(signed.cosignatures))}"
    if needs.threshold:
        text += f" ({needs.threshold} of the witnesses you named required)"
    return text


def _judge_log_entry(
    ref: str, included: IncludedEntry, version: _Version, release_bundles: Mapping[str, set[str]]
) -> Check:
    """A version's proven status event: its release, naming its digest and release bundle."""
    where = f"{ref}: log entry {included.index}"
    try:
        entry = jsonsafe.loads(included.entry, what=where, max_bytes=len(included.entry))
    except AttestError as exc:
        return Check("log", False, f"{where} is not a JSON entry: {exc.diagnostics()}")
    if not isinstance(entry, dict):
        return Check("log", False, f"{where} is not a JSON object")
    if entry.get("subject") != ref:
        return Check("log", False, f"{where} is about {str(entry.get('subject'))[:200]!r}, not "
                     f"{ref}: the proof of another version's event")  # fmt: skip
    kind, at, actor = entry.get("type"), entry.get("at"), entry.get("actor")
    if kind == "revocation":
        reason = entry.get("reason") or "no reason"
        return Check("log", False, f"{ref} is revoked in the transparency log (entry "
                     f"{included.index}, {at}, by {actor}: {reason})")  # fmt: skip
    if kind != "release":
        return Check("log", False, f"{where} is a {str(kind)[:40]!r} event, not a release or "
                     "revocation")  # fmt: skip
    if entry.get("root_digest") != f"sha256:{version.root_digest}":
        return Check("log", False, f"{where}: the logged release is of "
                     f"{str(entry.get('root_digest'))[:80]}, not {ref}'s sha256:"
                     f"{version.root_digest}")  # fmt: skip
    logged = entry.get("statement_sha256")
    if ref not in release_bundles:
        return Check("log", False, f"{where} records a release of {ref} (statement sha256:"
                     f"{str(logged)[:64]}), but the export holds no registry-signed release of "
                     "it that verifies")  # fmt: skip
    if logged not in release_bundles[ref]:
        held = ", ".join(f"sha256:{d}" for d in sorted(release_bundles[ref]))
        return Check("log", False, f"{where}: the logged release statement is sha256:"
                     f"{str(logged)[:64]}, not the registry-signed release the export holds "
                     f"({held}): a release the log does not record")  # fmt: skip
    return Check("log", True, f"{ref} released in the log (entry {included.index}, {at}, by "
                 f"{actor}), naming its release statement sha256:{logged[:16]}…")  # fmt: skip
