"""The release gate end to end: each rejection next to the acceptance."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import pytest

from attest import keys
from attest.predicates import RELEASE, SLSA_PROVENANCE, TEST_RESULT
from attest.signing import KeySigner
from attest.statement import make_statement
from registry.errors import (
    ConflictError,
    EvidenceRejectedError,
    InvalidRequestError,
    PermissionDeniedError,
    PullVerificationError,
    ReleaseRefusedError,
)
from registry.sdk.client import RegistryClient
from registry.server.db import make_engine, make_sessionmaker
from registry.server.services import Role, TokenService
from tests.support import Live, make_model_dir

POLICY = """\
model:
  require:
    signature: [training-ci]
    provenance: [training-ci]
    evaluation:
      signers: [eval-ci]
      metrics: {accuracy: ">= 0.90"}
    scan: clean
  dependencies: released
  release:
    separate_from_pusher: true
dataset:
  require:
    signature: [data-pipeline]
    provenance: [data-pipeline]
"""


class World:
    #: Rows per tensor of the model's shards (64: small files; presigned downloads need files
    #: larger than a download batch carries).
    model_rows = 64

    def __init__(self, live: Live, tmp: Path) -> None:
        self.live = live
        self.tmp = tmp
        self.training = KeySigner(keys.generate())
        self.evaluation = KeySigner(keys.generate())
        self.data = KeySigner(keys.generate())
        self.admin = live.client()
        for name, signer in (("training-ci", self.training), ("eval-ci", self.evaluation),
                             ("data-pipeline", self.data)):  # fmt: skip
            self.admin.add_key_identity(name, keys.public_pem(signer.public_key).decode())
        self.admin.set_policy("fraud", POLICY)
        engine = make_engine(live.settings.resolved_database_url)
        tokens = TokenService(make_sessionmaker(engine))
        secret = tokens.create(name="release-bot", role=Role.RELEASER, namespace="fraud").secret
        engine.dispose()
        self.releaser = live.client(token=secret)

    def attest(self, ref: str, predicate_type: str, predicate: dict[str, Any],
               signer: KeySigner) -> None:  # fmt: skip
        version = self.admin.show(ref)
        statement = make_statement(
            name=f"{version.namespace}/{version.name}",
            root_digest=version.root_digest.removeprefix("sha256:"),
            predicate_type=predicate_type,
            predicate=predicate,
        )
        self.admin.attach(ref, signer.sign(statement).raw)

    def provenance(self, ref: str, signer: KeySigner, deps: list[tuple[str, str]]) -> None:
        self.attest(ref, SLSA_PROVENANCE, {
            "buildDefinition": {
                "buildType": "https://modelseal.dev/training/v1",
                "externalParameters": {"lr": 0.01},
                "resolvedDependencies": [
                    {"uri": f"modelseal:{r}", "digest": {"sha256": d.removeprefix("sha256:")}}
                    for r, d in deps
                ],
            },
            "runDetails": {"builder": {"id": "https://ci.example/train"}},
        }, signer)  # fmt: skip

    def dataset(self, ref: str = "fraud/tx@3", *, release: bool = True) -> str:
        root = self.tmp / ref.replace("/", "_")
        root.mkdir()
        (root / "transactions.csv").write_text("id,amount\n1,10\n")
        version = self.admin.push(root, ref, kind=__import__("registry.names").names.Kind.DATASET,
                                  signer=self.data)  # fmt: skip
        self.provenance(ref, self.data, [])
        if release:
            self.admin.release(ref)
        return version.root_digest

    def model(self, ref: str = "fraud/m@1", *, deps: list[tuple[str, str]] | None = None,
              accuracy: float | None = 0.93, eval_signer: KeySigner | None = None,
              extra: dict[str, bytes] | None = None) -> str:  # fmt: skip
        root = make_model_dir(self.tmp / ref.replace("/", "_"), rows=self.model_rows)
        for name, data in (extra or {}).items():
            (root / name).write_bytes(data)
        version = self.admin.push(root, ref, signer=self.training)
        self.provenance(ref, self.training, deps or [])
        if accuracy is not None:
            self.attest(ref, TEST_RESULT, {"result": "PASSED", "metrics": {"accuracy": accuracy}},
                        eval_signer or self.evaluation)  # fmt: skip
        return version.root_digest


@pytest.fixture
def world(live: Live, tmp_path: Path) -> World:
    return World(live, tmp_path)


def _reasons(client: RegistryClient, ref: str) -> list[str]:
    with pytest.raises(ReleaseRefusedError) as refused:
        client.release(ref)
    assert client.show(ref).state == "pending"
    return list(refused.value.facts["reasons"])


def test_a_complete_chain_is_released_and_signed(world: World) -> None:
    dataset = world.dataset()
    world.model(deps=[("fraud/tx@3", dataset)])
    released = world.releaser.release("fraud/m@1")
    assert released.state == "released"
    [attestation] = world.admin.list_attestations("fraud/m@1", RELEASE)
    assert attestation.signer == "registry"
    raw = world.admin.get_attestation("fraud/m@1", attestation.id)
    import httpx

    from attest.bundle import Bundle
    from attest.keys import TrustedKey
    from attest.verifying import Verifier

    pem = httpx.get(f"{world.live.url}/v1/registry/key").json()["public_key_pem"]
    verified = Verifier(keys=[TrustedKey.from_pem("registry", pem.encode())]).verify(
        Bundle.parse(raw)
    )
    types = {e["predicateType"] for e in verified.statement.predicate["evidence"]}
    assert {TEST_RESULT, SLSA_PROVENANCE, "https://model_signing/signature/v1.0"} <= types
    assert world.releaser.release("fraud/m@1").state == "released"  # idempotent


def test_missing_evaluation(world: World) -> None:
    world.model(deps=[("fraud/tx@3", world.dataset())], accuracy=None)
    assert _reasons(world.releaser, "fraud/m@1") == ["evaluation: missing"]
    with pytest.raises(ReleaseRefusedError) as refused:
        world.releaser.release("fraud/m@1")
    assert refused.value.facts["links"] == [{"link": "evaluation", "message": "missing"}]
    assert "evaluation: missing" in (world.admin.show("fraud/m@1").state_reason or "")


def test_metric_below_threshold(world: World) -> None:
    world.model(deps=[("fraud/tx@3", world.dataset())], accuracy=0.84)
    assert _reasons(world.releaser, "fraud/m@1") == ["evaluation: accuracy 0.84 < 0.9"]


def test_evaluation_signed_outside_the_policy(world: World) -> None:
    world.model(deps=[("fraud/tx@3", world.dataset())], eval_signer=world.training)
    [reason] = _reasons(world.releaser, "fraud/m@1")
    assert reason.startswith("evaluation: signed by sha256:")
    assert reason.endswith("which is not in [eval-ci]")


@pytest.mark.parametrize("state", ["pending", "rejected"])
def test_dependency_not_released(world: World, state: str) -> None:
    dataset = world.dataset(release=False)
    if state == "rejected":
        world.admin.reject("fraud/tx@3", "bad labels")
    world.model(deps=[("fraud/tx@3", dataset)])
    assert _reasons(world.releaser, "fraud/m@1") == [f"dependency fraud/tx@3: {state}"]


def test_dependency_digest_mismatch_and_unknown(world: World) -> None:
    """Refused when the provenance arrives (the gate's own check is in tests/unit/attest)."""
    world.dataset()
    with pytest.raises(EvidenceRejectedError, match="but the registry has sha256:"):
        world.model(deps=[("fraud/tx@3", "sha256:" + "0" * 64)])
    with pytest.raises(EvidenceRejectedError, match="fraud/nope@1, which is not registered"):
        world.model("fraud/m@2", deps=[("fraud/nope@1", "0" * 64)])
    assert _reasons(world.releaser, "fraud/m@2")[0] == "provenance: missing"


def test_the_pusher_cannot_release(world: World) -> None:
    world.model(deps=[("fraud/tx@3", world.dataset())])
    [reason] = _reasons(world.admin, "fraud/m@1")
    assert "admin pushed this version and may not release it" in reason


def test_pickles_are_quarantined_unless_the_policy_allows_them(world: World) -> None:
    clean_pickle = pickle.dumps({"lr": 0.01}, protocol=4)
    world.model(deps=[("fraud/tx@3", world.dataset())], extra={"optimizer.pt": clean_pickle})
    [reason] = _reasons(world.releaser, "fraud/m@1")
    assert reason.startswith("scan: optimizer.pt: pickle is a pickle format, quarantined")
    world.admin.set_policy("fraud", POLICY.replace("scan: clean",
                                                   "scan: {allow_formats: [pickle]}"))  # fmt: skip
    assert world.releaser.release("fraud/m@1").state == "released"


def test_unsafe_and_rejected_versions_cannot_be_released(world: World, tmp_path: Path) -> None:
    from tests.scan_corpus import malicious_payloads

    evil = pickle.dumps(malicious_payloads(tmp_path / "x")["os.system"], protocol=2)
    world.model(extra={"evil.pkl": evil})
    with pytest.raises(ConflictError, match="is rejected"):
        world.releaser.release("fraud/m@1")
    world.model("fraud/m@2", deps=[("fraud/tx@3", world.dataset())])
    world.releaser.reject("fraud/m@2", "superseded")
    with pytest.raises(ConflictError, match="rejected by release-bot: superseded"):
        world.releaser.release("fraud/m@2")
    for pending in (False, True):  # never pulled, not even by evaluation jobs
        with pytest.raises(PullVerificationError, match="is rejected"):
            world.admin.pull("fraud/m@2", tmp_path / "never", pending=pending)
    assert not (tmp_path / "never").exists()


def test_invalid_policy_is_refused_with_its_line(world: World) -> None:
    bad = "model:\n  require:\n    evaluation:\n      signers: [x]\n      metrics:\n"
    bad += "        accuracy: high\n"
    with pytest.raises(InvalidRequestError, match="line 6: threshold 'high'"):
        world.admin.set_policy("fraud", bad)
    with pytest.raises(InvalidRequestError, match="unknown key 'requires'"):
        world.admin.set_policy("fraud", "model:\n  requires: {}\n")
    assert world.admin.get_policy("fraud").revision == 1
    with pytest.raises(Exception, match="may not administer"):
        world.releaser.set_policy("fraud", POLICY)


# -- after release: verified pulls, aliases, revocation ------------------------------------------


def _released(world: World) -> str:
    dataset = world.dataset()
    world.model(deps=[("fraud/tx@3", dataset)])
    world.releaser.release("fraud/m@1")
    return dataset


def _deployer(world: World) -> RegistryClient:
    engine = make_engine(world.live.settings.resolved_database_url)
    secret = (
        TokenService(make_sessionmaker(engine))
        .create(name="deploy", role=Role.DEPLOYER, namespace="fraud")
        .secret
    )
    engine.dispose()
    return world.live.client(token=secret)


def test_verified_pull_of_a_release_pins_the_registry_key(world: World, tmp_path: Path) -> None:
    _released(world)
    deployer = _deployer(world)
    pulled = deployer.pull("fraud/m@1", tmp_path / "deploy")
    assert pulled.state == "released"
    assert (tmp_path / "deploy" / "config.json").exists()
    pins = Path(os.environ["MODELSEAL_CONFIG_DIR"]) / "pins.json"
    assert world.live.url in pins.read_text()

    # A different key for the same registry later is an error (here: a tampered pin file).
    import json as _json

    data = _json.loads(pins.read_text())
    other = keys.public_pem(keys.generate().public_key()).decode()
    data["registries"][world.live.url]["public_key_pem"] = other
    pins.write_text(_json.dumps(data))
    with pytest.raises(PullVerificationError, match="not the key pinned on first contact"):
        deployer.pull("fraud/m@1", tmp_path / "again")
    assert not (tmp_path / "again").exists()
    # An explicit wrong --registry-key: the release attestation does not verify.
    with pytest.raises(PullVerificationError, match="no release attestation verifies"):
        deployer.pull("fraud/m@1", tmp_path / "again", registry_key=other.encode())


def test_pending_rejected_and_revoked_versions_are_not_pulled(world: World, tmp_path: Path) -> None:
    _released(world)
    world.model("fraud/m@2", deps=[("fraud/tx@3", world.dataset("fraud/tx@4"))])
    deployer = _deployer(world)
    with pytest.raises(PullVerificationError, match="only released versions are pulled"):
        deployer.pull("fraud/m@2", tmp_path / "p")
    with pytest.raises(PermissionDeniedError, match="only released versions are served"):
        deployer.pull("fraud/m@2", tmp_path / "p", pending=True)
    # an evaluation job (publisher/admin) may, after the OMS signature verifies
    assert world.admin.pull("fraud/m@2", tmp_path / "eval", pending=True).state == "pending"

    version, dependents = world.releaser.revoke("fraud/tx@3", "poisoned rows")
    assert version.state == "revoked"
    assert dependents == ["fraud/m@1"]
    with pytest.raises(PullVerificationError, match="revoked: revoked by release-bot: poisoned"):
        deployer.pull("fraud/tx@3", tmp_path / "ds")
    # the model built on it fails re-verification through the gate
    assert "dependency fraud/tx@3: revoked" in _reasons(world.releaser, "fraud/m@2")
    assert not (tmp_path / "ds").exists()


def test_a_blob_tampered_after_release_fails_the_pull(world: World, tmp_path: Path) -> None:
    _released(world)
    version = world.admin.show("fraud/m@1")
    victim = next(f for f in version.files if f.path.endswith(".safetensors"))
    from tests.integration.test_api import _overwrite_blob

    path = f"/v1/namespaces/fraud/artifacts/m/versions/1/files/{victim.path}"
    data = bytearray(world.live.client()._http.get(path).content)  # the bytes as stored
    data[-1] ^= 1
    _overwrite_blob(world.live, victim.digest.removeprefix("sha256:"), bytes(data))
    with pytest.raises(PullVerificationError, match=victim.path):
        _deployer(world).pull("fraud/m@1", tmp_path / "deploy")
    assert not (tmp_path / "deploy").exists()


def test_aliases_point_at_releases_and_follow_logged_rollbacks(
    world: World, tmp_path: Path
) -> None:
    """A rollback by a releaser is a logged alias move: pulls follow it, told it is a rollback
    (no --allow-downgrade needed since #21; tests/integration/test_tlog_client.py refuses the
    replayed and unlogged alias states)."""
    dataset = _released(world)
    with pytest.raises(ConflictError, match="aliases point only at released versions"):
        world.model("fraud/m@2", deps=[("fraud/tx@3", dataset)])
        world.releaser.set_alias("fraud", "m", "prod", "2")
    world.releaser.release("fraud/m@2")
    world.releaser.set_alias("fraud", "m", "prod", "2")
    deployer = _deployer(world)
    assert deployer.pull("fraud/m@prod", tmp_path / "a").version == "2"
    world.releaser.set_alias("fraud", "m", "prod", "1")  # rollback to the older release
    notices: list[str] = []
    deployer.on_notice = notices.append
    assert deployer.pull("fraud/m@prod", tmp_path / "b").version == "1"
    assert any("is a rollback" in n and "by release-bot" in n for n in notices), notices
    world.releaser.revoke("fraud/m@1", "bad calibration")
    flagged = {a.alias: a.state for a in world.admin.list_aliases("fraud", "m")}
    assert flagged == {"prod": "revoked"}  # an alias at a revoked version is flagged
    with pytest.raises(PullVerificationError, match="revoked: revoked by release-bot"):
        deployer.pull("fraud/m@prod", tmp_path / "c", allow_downgrade=True)
    history = world.admin.alias_history("fraud", "m", "prod")
    assert [(h.from_version, h.to_version, h.actor) for h in history] == [
        (None, "2", "release-bot"),
        ("2", "1", "release-bot"),
    ]
    with pytest.raises(PermissionDeniedError):
        deployer.set_alias("fraud", "m", "prod", "2")


def test_a_file_list_changed_after_release_fails_the_pull(world: World, tmp_path: Path) -> None:
    """Paths are bound by the release: renaming a file in the metadata is caught."""
    from sqlalchemy import update

    from registry.server.models import VersionFile

    _released(world)
    engine = make_engine(world.live.settings.resolved_database_url)
    with engine.begin() as conn:
        conn.execute(
            update(VersionFile).where(VersionFile.path == "config.json").values(path="configs.json")
        )
    engine.dispose()
    with pytest.raises(PullVerificationError, match="not the one that was released"):
        _deployer(world).pull("fraud/m@1", tmp_path / "deploy")
    assert not (tmp_path / "deploy").exists()


def _trust(world: World, tmp_path: Path) -> Path:
    import httpx

    for name, signer in (("training-ci", world.training), ("eval-ci", world.evaluation),
                         ("data-pipeline", world.data)):  # fmt: skip
        (tmp_path / f"{name}.pub").write_bytes(keys.public_pem(signer.public_key))
    pem = httpx.get(f"{world.live.url}/v1/registry/key").json()["public_key_pem"]
    (tmp_path / "registry.pub").write_text(pem)
    trust = tmp_path / "trust.yaml"
    trust.write_text(
        "identities:\n"
        "  training-ci: {key: training-ci.pub}\n"
        "  eval-ci: {key: eval-ci.pub}\n"
        "  data-pipeline: {key: data-pipeline.pub}\n"
        "registry: {key: registry.pub}\n"
    )
    return trust


def test_pull_re_runs_the_gate_with_the_callers_policy(world: World, tmp_path: Path) -> None:
    from attest.trust import parse_trust

    _released(world)
    trust = parse_trust(_trust(world, tmp_path).read_text(), tmp_path)
    deployer = _deployer(world)
    pulled = deployer.pull("fraud/m@1", tmp_path / "ok", local_policy=POLICY, local_trust=trust)
    assert pulled.state == "released"
    stricter = POLICY.replace(">= 0.90", ">= 0.95")
    with pytest.raises(PullVerificationError, match=r"evaluation: accuracy 0\.93 < 0\.95"):
        deployer.pull("fraud/m@1", tmp_path / "strict", local_policy=stricter, local_trust=trust)
    assert not (tmp_path / "strict").exists()
    # the auditor does not trust eval-ci: the evaluation does not count
    distrust = parse_trust(
        (tmp_path / "trust.yaml").read_text().replace("  eval-ci: {key: eval-ci.pub}\n", ""),
        tmp_path,
    )
    with pytest.raises(PullVerificationError, match="evaluation: missing"):
        deployer.pull("fraud/m@1", tmp_path / "x", local_policy=POLICY, local_trust=distrust)


def test_trust_documents_are_validated(tmp_path: Path) -> None:
    from attest.errors import TrustError
    from attest.trust import parse_trust

    with pytest.raises(TrustError, match="trusts nobody"):
        parse_trust("identities: {}\n", tmp_path)
    with pytest.raises(TrustError, match="cannot load its key"):
        parse_trust("identities:\n  a: {key: missing.pub}\n", tmp_path)
    with pytest.raises(TrustError, match="exactly one of"):
        parse_trust("identities:\n  a: {}\n", tmp_path)


def test_a_scoped_releaser_can_verify_dependencies_in_other_namespaces(world: World) -> None:
    """The dataset lives in another team's namespace; the gate still verifies it."""
    world.admin.set_policy("data", POLICY)
    root = world.tmp / "shared-ds"
    root.mkdir()
    (root / "rows.csv").write_text("a,b\n")
    from registry.names import Kind

    dataset = world.admin.push(root, "data/shared@1", kind=Kind.DATASET, signer=world.data)
    world.provenance("data/shared@1", world.data, [])
    world.admin.release("data/shared@1")
    world.model(deps=[("data/shared@1", dataset.root_digest)])
    assert world.releaser.release("fraud/m@1").state == "released"


# -- attacks on the chain (docs/threat-model.md) ---------------------------------------------


def test_a_stolen_registry_key_cannot_release(world: World) -> None:
    """Attacker: a thief of the registry's signing key, helped by an admin who registered that
    key as an identity. Its OMS signature, provenance and evaluation never count, not even for
    "*"; the same chain signed by the policy's identities is released (the acceptance is
    test_a_complete_chain_is_released_and_signed)."""
    from registry.server.services.keys import load_registry_signer

    thief = load_registry_signer(world.live.settings)
    world.admin.add_key_identity("thief-ci", keys.public_pem(thief.public_key).decode())
    world.admin.set_policy("fraud", POLICY.replace("[training-ci]", '["*"]').replace(
        "[eval-ci]", "[thief-ci]"))  # fmt: skip
    dataset = world.dataset()
    root = make_model_dir(world.tmp / "stolen")
    world.admin.push(root, "fraud/m@1", signer=thief)
    world.provenance("fraud/m@1", thief, [("fraud/tx@3", dataset)])
    world.attest("fraud/m@1", TEST_RESULT, {"result": "PASSED", "metrics": {"accuracy": 0.99}},
                 thief)  # fmt: skip
    reasons = _reasons(world.releaser, "fraud/m@1")
    assert [r.split(":")[0] for r in reasons] == ["signature", "provenance", "evaluation"], reasons
    assert all("the registry's own key" in r for r in reasons), reasons


def test_a_replayed_older_evaluation_does_not_override_the_current_one(world: World) -> None:
    """Attacker: a publisher replaying an older, better evaluation it has seen, re-serialised
    so that its bytes are new. The attachment is recognised as the same evidence, and every
    evaluation must pass whatever the upload order."""
    import json

    digest = world.model(deps=[("fraud/tx@3", world.dataset())], accuracy=None)
    version = world.admin.show("fraud/m@1")

    def evaluation(accuracy: float) -> bytes:
        statement = make_statement(
            name="fraud/m", root_digest=digest.removeprefix("sha256:"),
            predicate_type=TEST_RESULT,
            predicate={"result": "PASSED", "metrics": {"accuracy": accuracy}},
        )  # fmt: skip
        return world.evaluation.sign(statement).raw

    older, current = evaluation(0.95), evaluation(0.80)
    first = world.admin.attach("fraud/m@1", older)
    world.admin.attach("fraud/m@1", current)
    assert _reasons(world.releaser, "fraud/m@1") == ["evaluation: accuracy 0.8 < 0.9"]
    replayed = json.dumps(json.loads(older), indent=3, sort_keys=True).encode()
    assert replayed != older
    again = world.admin.attach("fraud/m@1", replayed)
    assert again.id == first.id  # the same statement and signature: the same evidence
    assert len(world.admin.list_attestations("fraud/m@1", TEST_RESULT)) == 2
    assert _reasons(world.releaser, "fraud/m@1") == ["evaluation: accuracy 0.8 < 0.9"]
    assert version.state == "pending"


def test_evaluations_uploaded_out_of_order_are_judged_alike(world: World) -> None:
    """The failing run arriving first and a passing one after: still refused (the acceptance,
    every run passing, is test_a_complete_chain_is_released_and_signed)."""
    world.model(deps=[("fraud/tx@3", world.dataset())], accuracy=0.80)
    world.attest("fraud/m@1", TEST_RESULT, {"result": "PASSED", "metrics": {"accuracy": 0.97}},
                 world.evaluation)  # fmt: skip
    assert _reasons(world.releaser, "fraud/m@1") == ["evaluation: accuracy 0.8 < 0.9"]
