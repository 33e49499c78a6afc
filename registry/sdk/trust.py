"""What a client checks before it believes the registry: the registry's key, its signed
statements about a version, and the audit log's head.

    registry_verifier   the registry's key: the one given, else the one pinned for this registry
                        on first contact (:mod:`registry.sdk.pins`); a different key later refuses
    version_status      the version's current state as the registry signs it now: the right
                        version and root digest, fresh (``status_max_age``), audit head extending
                        the newest checkpoint seen
    check_status        a pull refuses a version whose fresh status is not the state it was served
                        with, or that is built on a version not released or pending
    verify_release      a release attestation by the registry key names this version and the
                        very file list served (which alias state is accepted is the log's
                        business: registry.sdk.logcheck)
    verify_pending      a pending version's OMS signature verifies with an identity the namespace
                        policy accepts for ``signature``
    verify_locally      the whole release gate re-run here with the caller's policy and signers
    verified_manifest   the served file list: safe paths, hashing to the advertised root digest
    verify_audit_log    the whole audit chain and the newest checkpoint, extending what was seen

The functions take the :class:`~registry.sdk.client.RegistryClient` whose registry they ask;
its methods :meth:`~registry.sdk.client.RegistryClient.registry_verifier`,
:meth:`~registry.sdk.client.RegistryClient.version_status` and
:meth:`~registry.sdk.client.RegistryClient.verify_audit_log` are the public way in, and
:mod:`registry.sdk.pull` runs the pull's checks. Failures are
:class:`~registry.errors.ResponseVerificationError` (a
:class:`~registry.errors.ResponseVerificationError` during a pull).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from attest.digests import FileDigest, manifest_digest, parse_sha256, root_digest
from attest.errors import AttestError
from attest.predicates import RELEASE, STATUS
from registry.errors import (
    InvalidPathError,
    RegistryError,
    ResponseVerificationError,
)
from registry.names import Ref, RefKind, validate_path
from registry.sdk.pins import PinStore

if TYPE_CHECKING:
    # Imported where they are used (see registry.sdk.client): loading this module must not load
    # the signing and verifying machinery.
    from attest.gate import Candidate
    from attest.trust import Trust
    from attest.verifying import Verifier
    from registry.sdk.client import RegistryClient
    from registry.wire import VersionPublic

#: How far in the future a status may claim to be issued (clock skew between the machines).
STATUS_CLOCK_SKEW = 60.0


def registry_verifier(
    client: RegistryClient, registry_key: bytes | None, pins: PinStore
) -> Verifier:
    """A verifier of the registry key: ``registry_key``, else the key pinned for the client's
    registry on first contact (``client.on_pinned`` is told); another key served later refuses
    (:meth:`RegistryClient.registry_verifier`)."""
    from attest.keys import TrustedKey
    from attest.verifying import Verifier

    url = str(client._http.base_url)
    client.registry_key_given = registry_key is not None
    if registry_key is None:
        pinned = pins.registry_key(url)
        served = client._request("GET", "/v1/registry/key").json()
        if pinned is None:  # first contact: trust on first use, then never again silently
            pins.pin_registry_key(url, served["fingerprint"], served["public_key_pem"])
            pinned = served["public_key_pem"]
            if client.on_pinned is not None:
                client.on_pinned(url, served["fingerprint"], pins.path)
        elif TrustedKey.from_pem("pinned", pinned.encode()).fingerprint != served[
            "fingerprint"
        ].removeprefix("sha256:"):
            raise ResponseVerificationError(
                f"the registry at {url} now presents key {served['fingerprint']}, not the "
                f"key pinned on first contact ({pins.path}); refusing",
            )
        registry_key = pinned.encode()
    verifier = Verifier(keys=[TrustedKey.from_pem("registry", registry_key)])
    client.registry_anchor = verifier  # the log's key is checked against it (logcheck.py)
    return verifier


def version_status(
    client: RegistryClient,
    version: VersionPublic,
    *,
    registry_key: bytes | None = None,
    pins: PinStore | None = None,
) -> dict[str, Any]:
    """:meth:`RegistryClient.version_status` (its docstring is the contract)."""
    from attest.bundle import Bundle
    from attest.errors import AuditChainError

    pins = pins or PinStore()
    exact = f"{version.namespace}/{version.name}@{version.version}"
    url = client.base_url
    try:
        seen = pins.newest_checkpoint(url)
    except ValueError as exc:
        raise ResponseVerificationError(f"{exc}; remove it to start over") from None
    params = {"audit_since": seen["count"]} if seen else None
    pinned = Ref(version.namespace, version.name, version.version, RefKind.VERSION)
    raw = client._request("GET", client._version_path(pinned) + "/status", params=params).content
    verifier = client.registry_verifier(registry_key, pins)
    try:
        statement = verifier.verify(Bundle.parse(raw)).statement
    except AttestError as exc:
        raise ResponseVerificationError(
            f"{exact}: the registry's status statement does not verify with the registry "
            f"key ({exc.diagnostics()}); refusing"
        ) from None
    predicate = statement.predicate
    if (
        statement.predicate_type != STATUS
        or statement.subject.sha256 != parse_sha256(version.root_digest)
        or predicate.get("version") != exact
    ):
        raise ResponseVerificationError(
            f"{exact}: the registry's signed status is about {predicate.get('version')!r} "
            f"({statement.predicate_type}), not this version; refusing"
        )
    issued_text = str(predicate.get("issuedAt", ""))
    try:
        issued = datetime.fromisoformat(issued_text)
        if issued.tzinfo is None:
            raise ValueError("no time zone")
    except ValueError:
        raise ResponseVerificationError(
            f"{exact}: the registry's signed status has no usable issue time "
            f"({issued_text!r}); refusing"
        ) from None
    age = (datetime.now(UTC) - issued).total_seconds()
    if age > client.status_max_age:
        raise ResponseVerificationError(
            f"{exact}: the registry's signed status was issued {issued_text}, {age:.0f} s "
            f"ago, beyond the freshness window of {client.status_max_age:g} s; refusing a "
            "status that may be replayed (check this machine's clock and what stands "
            "between it and the registry; MODELSEAL_STATUS_MAX_AGE sets the window)",
            issued_at=issued_text,
            max_age=client.status_max_age,
        )
    if age < -STATUS_CLOCK_SKEW:
        raise ResponseVerificationError(
            f"{exact}: the registry's signed status claims to be issued {issued_text}, "
            f"{-age:.0f} s in the future; refusing (check the clocks)",
            issued_at=issued_text,
        )
    log = predicate.get("auditLog")
    try:
        _check_audit_head(client, log, seen, pins, f"in the signed status of {exact}")
    except AuditChainError as exc:
        raise ResponseVerificationError(str(exc)) from exc
    return dict(predicate)


def _check_audit_head(
    client: RegistryClient, log: Any, seen: dict[str, Any] | None, pins: PinStore, where: str
) -> None:
    """The signed audit-log head ``log`` must extend the checkpoint ``seen`` before; it is
    remembered as the newest seen."""
    from attest.auditlog import check_extends

    if not isinstance(log, dict):
        if seen:
            raise ResponseVerificationError(
                f"no audit-log head {where}: cannot tell whether the log was rolled back "
                f"behind checkpoint {seen['count']} seen {seen.get('seen_at', 'before')}"
            )
        return
    try:
        count, head = int(log["count"]), str(log["head"])
        entry = log.get("entry") or {}
        at = entry.get("hash") if isinstance(entry, dict) else None
    except (KeyError, TypeError, ValueError):
        raise ResponseVerificationError(f"a malformed audit-log head {where}") from None
    if seen:
        if not isinstance(entry, dict) or entry.get("count") != seen["count"]:
            at = head if count == seen["count"] else None  # the head is that entry
        check_extends(seen["count"], seen["head"], count=count, head=head,
                      hash_at_seen=None if at is None else str(at),
                      seen=f"{seen.get('seen_at', 'before')} {seen.get('source', '')}".strip(),
                      now=where)  # fmt: skip
    now = datetime.now(UTC).isoformat(timespec="seconds")
    pins.remember_checkpoint(client.base_url, count, head, now, where)


def verify_audit_log(
    client: RegistryClient, *, registry_key: bytes | None = None, pins: PinStore | None = None
) -> tuple[int, str]:
    """:meth:`RegistryClient.verify_audit_log` (its docstring is the contract)."""
    from attest.auditlog import GENESIS, check_extends, verify_chain
    from attest.bundle import Bundle
    from attest.predicates import AUDIT_CHECKPOINT

    pins = pins or PinStore()
    url = client.base_url
    try:
        seen = pins.newest_checkpoint(url)
    except ValueError as exc:
        raise ResponseVerificationError(f"{exc}; remove it to start over") from None
    entries = client.audit_entries()
    verifier = client.registry_verifier(registry_key, pins)
    raw = client.latest_checkpoint()
    checkpoint = None
    if raw is not None:
        verified = verifier.verify(Bundle.parse(raw))
        if verified.statement.predicate_type != AUDIT_CHECKPOINT:
            raise ResponseVerificationError("the newest checkpoint is not an audit checkpoint")
        checkpoint = verified.statement
    if seen:
        served = (
            f"its newest signed checkpoint: {checkpoint.predicate.get('count')} entries, "
            f"head sha256:{checkpoint.subject.sha256}"
            if checkpoint is not None
            else "no signed checkpoint"
        )
        count = len(entries)
        last = str(entries[-1]["hash"]) if entries else GENESIS
        at = str(entries[seen["count"] - 1].get("hash")) if count >= seen["count"] else None
        check_extends(seen["count"], seen["head"], count=count, head=last, hash_at_seen=at,
                      seen=f"{seen.get('seen_at', 'before')} {seen.get('source', '')}".strip(),
                      now=f"now ({served})")  # fmt: skip
    head = verify_chain(entries, checkpoint)
    if checkpoint is not None:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        count = int(checkpoint.predicate.get("count", 0))
        pins.remember_checkpoint(url, count, checkpoint.subject.sha256, now,
                                 "in the newest signed checkpoint")  # fmt: skip
    return len(entries), head


def verified_manifest(ref: Ref, version: VersionPublic) -> list[FileDigest]:
    files = []
    for f in version.files:
        try:
            validate_path(f.path)
        except InvalidPathError as exc:
            raise ResponseVerificationError(f"the registry sent an unsafe path: {exc}") from exc
        files.append(FileDigest(f.path, f.size, parse_sha256(f.digest)))
    computed = f"sha256:{root_digest(files)}"
    if computed != version.root_digest:
        raise ResponseVerificationError(
            f"{ref}: the file list hashes to {computed}, not the advertised {version.root_digest}",
            expected=version.root_digest,
            got=computed,
        )
    if ref.kind.value == "digest" and ref.selector != computed:
        raise ResponseVerificationError(
            f"{ref}: the registry answered with {computed}", expected=ref.selector, got=computed
        )
    return files


def verify_release(
    client: RegistryClient,
    ref: Ref,
    version: VersionPublic,
    files: list[FileDigest],
    registry_key: bytes | None,
    pins: PinStore,
    allow_downgrade: bool = False,
) -> list[str]:
    """A release attestation by the registry key names this version and the very file list
    served. Returns the SHA-256 (hex) of every such release bundle: the transparency log's
    release entry must name one of them (:func:`registry.sdk.logcheck.check_version`).

    Which version an alias may point at is the log's business now
    (:func:`registry.sdk.logcheck.check_alias`: the alias's newest logged move, a rollback by
    intent included); ``allow_downgrade`` is accepted for compatibility and changes nothing."""
    import hashlib

    from attest.bundle import Bundle

    exact = f"{version.namespace}/{version.name}@{version.version}"
    verifier = client.registry_verifier(registry_key, pins)
    release: dict[str, Any] | None = None
    digests: list[str] = []
    for raw in _bundles(client, exact, RELEASE):
        try:
            verified = verifier.verify(Bundle.parse(raw))
        except AttestError:
            continue
        statement = verified.statement
        if (
            statement.predicate_type == RELEASE
            and statement.subject.sha256 == parse_sha256(version.root_digest)
            and statement.predicate.get("version") == exact
        ):
            release = dict(statement.predicate)
            if release.get("manifestSha256") == manifest_digest(files):
                digests.append(hashlib.sha256(raw).hexdigest())
    if release is None:
        raise ResponseVerificationError(
            f"{exact}: no release attestation verifies with the registry key"
        )
    if not digests:
        raise ResponseVerificationError(
            f"{exact}: the file list served now is not the one that was released"
        )
    return digests


def verify_pending(
    client: RegistryClient, ref: Ref, version: VersionPublic, files: list[FileDigest]
) -> None:
    from attest.bundle import Bundle
    from attest.keys import TrustedKey
    from attest.oms import check_oms
    from attest.policy import parse_policy
    from attest.predicates import OMS_SIGNATURE
    from attest.verifying import Verifier

    exact = f"{version.namespace}/{version.name}@{version.version}"
    policy = parse_policy(client.get_policy(version.namespace).document).for_kind(version.kind)
    accepted = policy.signature or ()
    trusted = [
        TrustedKey.from_pem(i.name, i.public_key_pem.encode())
        for i in client.list_identities_with_keys()
        if i.public_key_pem and ("*" in accepted or i.name in accepted)
    ]
    if not trusted:
        raise ResponseVerificationError(f"{exact}: no identity the policy accepts for signature")
    verifier = Verifier(keys=trusted)
    for raw in _bundles(client, exact, OMS_SIGNATURE):
        try:
            check_oms(verifier.verify(Bundle.parse(raw)).statement, files)
            return
        except AttestError:
            continue
    raise ResponseVerificationError(
        f"{exact}: no OMS signature by [{', '.join(accepted)}] covers these files"
    )


def verify_locally(
    client: RegistryClient, version: VersionPublic, policy_text: str, trust: Trust, pins: PinStore
) -> None:
    """Re-run the release gate here with the caller's policy and signers."""
    from attest.bundle import Bundle
    from attest.gate import Candidate, evaluate
    from attest.keys import TrustedKey
    from attest.policy import parse_policy
    from attest.verifying import Verifier

    policy = parse_policy(policy_text)
    registry_key = trust.registry_key or TrustedKey.from_pem(
        "registry", _registry_pem(client, pins).encode()
    )
    verifier = Verifier(keys=[*trust.keys, registry_key], identities=trust.identities)

    def subject(exact: str) -> Candidate | None:
        try:
            shown = client.show(exact)
        except RegistryError:
            return None
        evidence = []
        for a in client.list_attestations(exact):
            try:
                evidence.append(verifier.verify(Bundle.parse(client.get_attestation(exact, a.id))))
            except AttestError:
                continue  # not by a signer the caller trusts: it does not count
        return Candidate(
            ref=f"{shown.namespace}/{shown.name}@{shown.version}",
            kind=str(shown.kind),
            root_digest=parse_sha256(shown.root_digest),
            state=shown.state,
            files=tuple(FileDigest(f.path, f.size, parse_sha256(f.digest)) for f in shown.files),
            pushed_by=shown.created_by,
            evidence=tuple(evidence),
            registry_signer_id=f"sha256:{registry_key.fingerprint}",
        )

    exact = f"{version.namespace}/{version.name}@{version.version}"
    root = subject(exact)
    assert root is not None
    reasons = evaluate(root, lambda s: policy.for_kind(s.kind), subject)
    if reasons:
        raise ResponseVerificationError(
            f"{exact} fails your policy:\n" + "\n".join(str(r) for r in reasons),
            reasons=[str(r) for r in reasons],
        )


def _registry_pem(client: RegistryClient, pins: PinStore) -> str:
    pinned = pins.registry_key(str(client._http.base_url))
    if pinned is None:
        raise ResponseVerificationError("no registry key pinned yet: pass --registry-key")
    return pinned


def check_status(
    client: RegistryClient, version: VersionPublic, registry_key: bytes | None, pins: PinStore
) -> None:
    """Refuse a version whose fresh signed status is not the state it was served with, or
    that is built on a version that is not released or pending (revoked, rejected, missing
    from the registry, or registered with another digest than its provenance names)."""
    exact = f"{version.namespace}/{version.name}@{version.version}"
    try:
        status = client.version_status(version, registry_key=registry_key, pins=pins)
    except ResponseVerificationError as exc:
        if isinstance(exc, ResponseVerificationError):
            raise
        raise ResponseVerificationError(exc.detail, **exc.facts) from exc
    issued, state = status.get("issuedAt"), status.get("state")
    if state != version.state:
        raise ResponseVerificationError(
            f"{exact} is {state} (the registry's signed status, issued {issued}): "
            f"{status.get('reason') or 'no reason recorded'}",
            state=state,
            issued_at=issued,
        )
    dependencies = status.get("dependencies")
    if not isinstance(dependencies, list):
        raise ResponseVerificationError(f"the signed status of {exact} lists no dependencies")
    for dep in dependencies:
        # Fail closed: only a dependency positively released (or pending, which a policy
        # with `dependencies: any` releases on) passes; revoked, rejected, missing from the
        # registry, another digest, or anything unrecognised refuses the pull.
        if not isinstance(dep, dict) or dep.get("state") not in ("released", "pending"):
            dep = dep if isinstance(dep, dict) else {}
            raise ResponseVerificationError(
                f"{exact} is built on {dep.get('version')}, which is {dep.get('state')} "
                f"(the registry's signed status, issued {issued}): "
                f"{dep.get('reason') or 'no reason recorded'}",
                state=state,
                dependency=dep.get("version"),
                issued_at=issued,
            )


def _bundles(client: RegistryClient, ref: str, predicate_type: str) -> list[bytes]:
    return [client.get_attestation(ref, a.id)
            for a in client.list_attestations(ref, predicate_type)]  # fmt: skip
