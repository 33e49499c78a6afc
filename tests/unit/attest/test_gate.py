"""Policy parsing and the pure release gate."""

from __future__ import annotations

from typing import Any

import pytest

from attest import keys
from attest.digests import FileDigest
from attest.errors import PolicyError
from attest.gate import Candidate, evaluate
from attest.oms import oms_statement
from attest.policy import DEFAULT_POLICY, parse_policy
from attest.predicates import SCAN, SLSA_PROVENANCE, TEST_RESULT
from attest.scan import RULESET
from attest.signing import KeySigner
from attest.statement import make_statement
from attest.verifying import Verified

FILES = (FileDigest("model.safetensors", 10, "1" * 64),)
OTHER = (FileDigest("model.safetensors", 10, "2" * 64),)
CI = KeySigner(keys.generate())
REGISTRY = KeySigner(keys.generate())


def _verified(name: str, signer: KeySigner, statement: Any) -> Verified:
    return Verified(statement, name, signer.identity, signer.sign(statement))


def _subject(ref: str, files: tuple[FileDigest, ...], *, deps: list[tuple[str, str]] = (),
             state: str = "released", evaluation_for: str | None = None) -> Candidate:  # type: ignore[assignment]  # fmt: skip
    oms = oms_statement(ref.split("@")[0], files)
    root = oms.subject.sha256

    def stmt(t, p, r=root):
        return make_statement(name=ref, root_digest=r, predicate_type=t, predicate=p)

    provenance = {"buildDefinition": {"resolvedDependencies": [
        {"uri": f"modelseal:{r}", "digest": {"sha256": d}} for r, d in deps]}}  # fmt: skip
    scan = {"scanner": {"ruleset": RULESET}, "verdict": "clean",
            "files": [{"path": f.path, "verdict": "clean", "pickle": False,
                                           "format": "safetensors"} for f in files]}  # fmt: skip
    evidence = [
        _verified("ci", CI, oms),
        _verified("ci", CI, stmt(SLSA_PROVENANCE, provenance)),
        _verified("registry", REGISTRY, stmt(SCAN, scan)),
        _verified(
            "ci", CI, stmt(TEST_RESULT, {"metrics": {"accuracy": 0.95}}, evaluation_for or root)
        ),
    ]
    return Candidate(ref, "model", root, state, files, "pusher", tuple(evidence), REGISTRY.identity)


POLICY = parse_policy(
    "model:\n  require:\n    signature: [ci]\n    provenance: [ci]\n"
    "    evaluation: {signers: [ci], metrics: {accuracy: '>= 0.9'}}\n"
)


def test_a_complete_subject_passes() -> None:
    subject = _subject("ns/m@1", FILES)
    assert evaluate(subject, lambda s: POLICY.for_kind(s.kind), lambda r: None) == []


def test_mix_and_match_evidence_about_another_version_does_not_count() -> None:
    other_root = oms_statement("ns/m", OTHER).subject.sha256
    subject = _subject("ns/m@1", FILES, evaluation_for=other_root)
    reasons = evaluate(subject, lambda s: POLICY.for_kind(s.kind), lambda r: None)
    assert [str(r) for r in reasons] == ["evaluation: missing"]


def test_cycles_and_depth_are_bounded() -> None:
    a_root = oms_statement("ns/a", FILES).subject.sha256
    b = _subject("ns/b@1", OTHER, deps=[("ns/a@1", a_root)])
    a = _subject("ns/a@1", FILES, deps=[("ns/b@1", b.root_digest)])
    graph = {"ns/a@1": a, "ns/b@1": b}
    reasons = evaluate(a, lambda s: POLICY.for_kind(s.kind), graph.get)
    assert [str(r) for r in reasons] == [
        "dependency ns/b@1 -> dependency ns/a@1: cycle in the provenance graph"
    ]


def test_dependencies_that_are_unknown_mismatched_or_unreleased() -> None:
    """The registry refuses such provenance on arrival; the gate (and verify-evidence, which
    reads an export) still checks every dependency itself."""
    dataset = _subject("ns/d@1", OTHER)
    pending = _subject("ns/p@1", OTHER, state="pending")
    graph = {"ns/d@1": dataset, "ns/p@1": pending}
    subject = _subject("ns/m@1", FILES, deps=[("ns/d@1", "0" * 64), ("ns/x@1", "1" * 64),
                                              ("ns/p@1", pending.root_digest)])  # fmt: skip
    reasons = [str(r) for r in evaluate(subject, lambda s: POLICY.for_kind(s.kind), graph.get)]
    assert reasons == [
        f"dependency ns/d@1: digest mismatch: provenance names sha256:{'0' * 64}, "
        f"the registry has sha256:{dataset.root_digest}",
        "dependency ns/x@1: not registered",
        "dependency ns/p@1: pending",
    ]


def test_default_policy_is_strict() -> None:
    model = DEFAULT_POLICY.for_kind("model")
    assert model.signature == ("*",) and model.provenance == ("*",)
    assert model.dependencies_released
    assert not model.allow_formats


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model:\n  require:\n    signatures: [a]\n", "line 3: unknown key 'signatures'"),
        ("model:\n  require:\n    signature: a\n", "line 3: model.require.signature must be"),
        ("model:\n  dependencies: sometimes\n", "line 2: dependencies must be"),
        ("model:\n  release: {separate_from_pusher: maybe}\n", "must be true or false"),
        ("model: [\n", "not valid YAML"),
        ("weights: {}\n", "line 1: unknown key 'weights'"),
        ("model:\n  require:\n    evaluation: {metrics: {a: '>= 1'}}\n", "needs signers"),
        ("model:\n  require:\n    evaluation: {signers: [x], metrics: {a: '~ 1'}}\n",
         "threshold '~ 1'"),
        ("", "the policy is empty"),
    ],
)  # fmt: skip
def test_invalid_policies_name_the_line(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policy(text)


# -- attacks on the chain (docs/threat-model.md) ---------------------------------------------


def test_registry_signed_user_evidence_never_counts_even_under_a_registered_name() -> None:
    """A thief of the registry's signing key signs the OMS manifest, provenance and evaluation
    itself, and an admin registered that key as "ci": none of it counts, not even for "*"."""
    good = _subject("ns/m@1", FILES)
    stolen = tuple(
        _verified("ci", REGISTRY, e.statement) if e.statement.predicate_type != SCAN else e
        for e in good.evidence
    )
    subject = Candidate("ns/m@1", "model", good.root_digest, "pending", FILES, "pusher", stolen,
                      REGISTRY.identity)  # fmt: skip
    named = [str(r) for r in evaluate(subject, lambda s: POLICY.for_kind(s.kind), lambda r: None)]
    assert [r.split(":")[0] for r in named] == ["signature", "provenance", "evaluation"]
    assert all("the registry's own key" in r for r in named), named
    anyone = parse_policy(
        "model:\n  require:\n    signature: ['*']\n    provenance: ['*']\n"
        "    evaluation: {signers: ['*'], metrics: {accuracy: '>= 0.9'}}\n"
    )
    reasons = [str(r) for r in evaluate(subject, lambda s: anyone.for_kind(s.kind), lambda r: None)]
    assert [r.split(":")[0] for r in reasons] == ["signature", "provenance", "evaluation"]
    # ...while the same statements signed by the policy's identity pass (the acceptance).
    assert evaluate(good, lambda s: anyone.for_kind(s.kind), lambda r: None) == []


def test_registry_signed_provenance_names_no_dependency() -> None:
    """Provenance the registry key signed is not read for dependencies either."""
    good = _subject("ns/m@1", FILES, deps=[("ns/x@1", "1" * 64)])
    stolen = tuple(
        _verified("ci", REGISTRY, e.statement)
        if e.statement.predicate_type == SLSA_PROVENANCE
        else e
        for e in good.evidence
    )
    subject = Candidate("ns/m@1", "model", good.root_digest, "pending", FILES, "pusher", stolen,
                      REGISTRY.identity)  # fmt: skip
    reasons = [str(r) for r in evaluate(subject, lambda s: POLICY.for_kind(s.kind), lambda r: None)]
    assert not any(r.startswith("dependency") for r in reasons), reasons
    assert [r.split(":")[0] for r in reasons] == ["provenance"]


@pytest.mark.parametrize("order", ["old-first", "new-first"])
def test_every_evaluation_must_pass_whatever_the_upload_order(order: str) -> None:
    """A publisher replays an older, better evaluation after the current one: the verdict does
    not depend on which arrived last, and one failing run keeps the version from release."""
    good = _subject("ns/m@1", FILES)
    rest = [e for e in good.evidence if e.statement.predicate_type != TEST_RESULT]

    def result(accuracy: float) -> Verified:
        return _verified("ci", CI, make_statement(
            name="ns/m@1", root_digest=good.root_digest, predicate_type=TEST_RESULT,
            predicate={"metrics": {"accuracy": accuracy}}))  # fmt: skip

    runs = [result(0.95), result(0.80)]
    if order == "new-first":
        runs.reverse()
    subject = Candidate("ns/m@1", "model", good.root_digest, "pending", FILES, "pusher",
                      (*rest, *runs), REGISTRY.identity)  # fmt: skip
    reasons = [str(r) for r in evaluate(subject, lambda s: POLICY.for_kind(s.kind), lambda r: None)]
    assert reasons == ["evaluation: accuracy 0.8 < 0.9"]
    # The acceptance: every run passing releases.
    passing = Candidate("ns/m@1", "model", good.root_digest, "pending", FILES, "pusher",
                      (*rest, result(0.95), result(0.91)), REGISTRY.identity)  # fmt: skip
    assert evaluate(passing, lambda s: POLICY.for_kind(s.kind), lambda r: None) == []
