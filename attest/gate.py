"""The release gate, as a pure function over verified evidence (README: "Scanning, the release
gate, verified pulls").

:func:`evaluate` checks one version; the caller supplies the evidence (already signature-verified
bundles), the policy for the version's kind, and a resolver for the versions its provenance names.
It recurses into those dependencies (depth-bounded, cycle-detected) and returns every reason the
version cannot be released, each naming the link that broke. An empty list means "release".

Steps, in order, for the version and each dependency:

1. an OMS signature by an identity the policy accepts for ``signature``, covering exactly the
   version's files;
2. SLSA provenance by an identity accepted for ``provenance``;
3. evaluation results by an accepted signer: every one of them meets every metric threshold
   (never "the last one uploaded": the order is the uploader's to choose);
4. the registry's scan: present, made under the current ruleset, every file clean (or
   ``unknown`` / a pickle format / external data where the policy names it);
5. every dependency named in the provenance resolves to a registered version with the same
   digest, released and not revoked (policy ``dependencies: released``), and passes its own gate;
6. separation of duties: the releaser is not the pusher (``separate_from_pusher``).

The registry's own key (``Candidate.registry_signer_id``) vouches for scans, ML-BOMs, releases and
revocations only: evidence it signed never satisfies steps 1-3 nor names dependencies, whatever
name a verifier gives that key and even for ``"*"``, so a stolen registry key cannot release.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from attest.digests import FileDigest
from attest.errors import AttestError
from attest.oms import check_oms
from attest.policy import ANY_SIGNER, KindPolicy
from attest.predicates import (
    OMS_SIGNATURE,
    SCAN,
    SLSA_PROVENANCE,
    TEST_RESULT,
)
from attest.scan.rules import scan_problems
from attest.verifying import Verified

MAX_DEPTH = 8
DEPENDENCY_SCHEME = "modelseal:"


@dataclass(frozen=True, slots=True)
class Reason:
    link: str
    message: str

    def __str__(self) -> str:
        return f"{self.link}: {self.message}"


@dataclass(frozen=True, slots=True)
class Candidate:
    """What the gate needs to know about one version."""

    ref: str  # NS/NAME@VERSION
    kind: str
    root_digest: str
    state: str
    files: tuple[FileDigest, ...]
    pushed_by: str
    evidence: tuple[Verified, ...] = field(default_factory=tuple)
    registry_signer_id: str = ""


@dataclass(frozen=True, slots=True)
class Dependency:
    ref: str
    sha256: str


Resolver = Callable[[str], "Candidate | None"]


def dependencies(
    evidence: Sequence[Verified], accepted: tuple[str, ...] | None, registry_signer_id: str
) -> list[Dependency]:
    """Dependencies named by accepted SLSA provenance (``modelseal:NS/NAME@VERSION`` URIs);
    provenance the registry key signed names none."""
    found: list[Dependency] = []
    for item in evidence:
        if item.statement.predicate_type != SLSA_PROVENANCE or not _accepted(
            item, accepted, registry_signer_id
        ):
            continue
        definition = item.statement.predicate.get("buildDefinition", {})
        resolved = (
            definition.get("resolvedDependencies", []) if isinstance(definition, dict) else []
        )
        for entry in resolved if isinstance(resolved, list) else []:
            if not isinstance(entry, dict):
                continue
            uri, digest = entry.get("uri"), entry.get("digest", {})
            if (
                isinstance(uri, str)
                and uri.startswith(DEPENDENCY_SCHEME)
                and isinstance(digest, dict)
            ):
                found.append(
                    Dependency(uri.removeprefix(DEPENDENCY_SCHEME), str(digest.get("sha256", "")))
                )
    return found


def _accepted(item: Verified, accepted: tuple[str, ...] | None, registry_signer_id: str) -> bool:
    # By key, not by name: a verifier may know the registry key under any name (an admin may
    # even have registered it as an identity), and "*" must not admit it either.
    if item.signer_id == registry_signer_id:
        return False
    return accepted is not None and (ANY_SIGNER in accepted or item.signer in accepted)


def _accepted_evidence(
    link: str,
    items: list[Verified],
    accepted: tuple[str, ...] | None,
    registry_signer_id: str,
    reasons: list[Reason],
) -> list[Verified]:
    """The items signed by an accepted identity other than the registry key; records
    "missing" or "signed by … which is not in [...]" when there are none. A link the policy
    does not require (``accepted`` None) yields nothing and no reason."""
    if accepted is None:
        return []
    good = [i for i in items if _accepted(i, accepted, registry_signer_id)]
    others = [i for i in items if i.signer_id != registry_signer_id]
    if not items:
        reasons.append(Reason(link, "missing"))
    elif not good and not others:
        reasons.append(
            Reason(
                link,
                f"signed only by the registry's own key ({registry_signer_id}), which never "
                f"counts for user evidence: it needs a signature by [{', '.join(accepted)}]",
            )
        )
    elif not good:
        reasons.append(
            Reason(link, f"signed by {_signers(others)} which is not in [{', '.join(accepted)}]")
        )
    return good


def _signers(items: Sequence[Verified]) -> str:
    return ", ".join(sorted({f"{i.signer_id} ({i.signer})" for i in items}))


def evaluate(
    subject: Candidate,
    policy_for: Callable[[Candidate], KindPolicy],
    resolve: Resolver,
    *,
    releaser: str | None = None,
    _seen: frozenset[str] = frozenset(),
    _depth: int = 0,
) -> list[Reason]:
    """Every reason ``subject`` cannot be released (empty: it can). See the module docstring."""
    policy = policy_for(subject)
    reasons: list[Reason] = []
    mine = [e for e in subject.evidence if e.statement.subject.sha256 == subject.root_digest]
    by_type: dict[str, list[Verified]] = {}
    for item in mine:
        by_type.setdefault(item.statement.predicate_type, []).append(item)

    # 1. OMS signature
    registry_id = subject.registry_signer_id
    signed = _accepted_evidence(
        "signature", by_type.get(OMS_SIGNATURE, []), policy.signature, registry_id, reasons
    )
    if signed:
        problems = []
        for item in signed:
            try:
                check_oms(item.statement, subject.files)
                break
            except AttestError as exc:
                problems.append(str(exc))
        else:
            reasons.append(Reason("signature", problems[0]))

    # 2. provenance
    _accepted_evidence(
        "provenance", by_type.get(SLSA_PROVENANCE, []), policy.provenance, registry_id, reasons
    )

    # 3. evaluation: every accepted result must pass. Upload order is the uploader's choice,
    # so "the last one" would let a publisher replay an older, better run over the current one.
    results = _accepted_evidence(
        "evaluation", by_type.get(TEST_RESULT, []), policy.evaluation_signers, registry_id, reasons
    )
    failed: list[Reason] = []
    for result in results:
        failed.extend(r for r in _thresholds(result.statement.predicate, policy) if r not in failed)
    reasons.extend(failed)

    # 4. scan (the registry's own, always required)
    scans = [s for s in by_type.get(SCAN, []) if s.signer_id == subject.registry_signer_id]
    if not scans:
        reasons.append(Reason("scan", "missing (no scan attestation signed by the registry)"))
    else:
        report = scans[-1].statement.predicate
        reasons.extend(Reason("scan", p) for p in scan_problems(report, policy.allow_formats))

    # 5. dependencies
    if _depth >= MAX_DEPTH:
        reasons.append(Reason("dependency", f"chain deeper than {MAX_DEPTH} at {subject.ref}"))
        return reasons
    for dep in dependencies(mine, policy.provenance or (ANY_SIGNER,), registry_id):
        target = resolve(dep.ref)
        label = f"dependency {dep.ref}"
        if target is None:
            reasons.append(Reason(label, "not registered"))
            continue
        if target.root_digest != dep.sha256:
            reasons.append(
                Reason(
                    label,
                    f"digest mismatch: provenance names sha256:{dep.sha256}, "
                    f"the registry has sha256:{target.root_digest}",
                )
            )
            continue
        if target.root_digest in _seen or target.root_digest == subject.root_digest:
            reasons.append(Reason(label, "cycle in the provenance graph"))
            continue
        if policy.dependencies_released and target.state != "released":
            reasons.append(Reason(label, target.state))
            continue
        inner = evaluate(
            target, policy_for, resolve, _seen=_seen | {subject.root_digest}, _depth=_depth + 1
        )
        reasons.extend(Reason(f"{label} -> {r.link}", r.message) for r in inner)

    # 6. separation of duties
    if releaser is not None and policy.separate_from_pusher and releaser == subject.pushed_by:
        reasons.append(
            Reason(
                "release",
                f"{releaser} pushed this version and may not release it (separate_from_pusher)",
            )
        )
    return reasons


def _thresholds(predicate: Mapping[str, Any], policy: KindPolicy) -> list[Reason]:
    metrics = predicate.get("metrics")
    if not isinstance(metrics, dict):
        return (
            [Reason("evaluation", "no metrics object in the test result")]
            if policy.thresholds
            else []
        )
    out = []
    for threshold in policy.thresholds:
        value = metrics.get(threshold.metric)
        if not isinstance(value, int | float) or isinstance(value, bool):
            out.append(Reason("evaluation", f"{threshold.metric} missing"))
        elif not threshold.holds(float(value)):
            negated = {">=": "<", ">": "<=", "<=": ">", "<": ">=", "==": "!="}[threshold.op]
            out.append(
                Reason("evaluation", f"{threshold.metric} {value:g} {negated} {threshold.value:g}")
            )
    return out
