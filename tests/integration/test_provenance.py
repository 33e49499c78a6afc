"""Provenance from training runs, external datasets, the signed ML-BOM and the lineage tree."""

from __future__ import annotations

import base64
import zlib
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from attest import keys
from attest.errors import AttestError
from attest.predicates import CYCLONEDX_BOM, SLSA_PROVENANCE, TEST_RESULT
from attest.provenance import VersionDependency, build_predicate
from attest.signing import KeySigner
from attest.statement import make_statement
from registry.errors import (
    EvidenceRejectedError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    PullVerificationError,
    ReleaseRefusedError,
    ResponseVerificationError,
)
from registry.names import Kind
from registry.sdk.client import RegistryClient
from registry.sdk.lineage import lineage, verified_bom
from registry.sdk.training import DirtyTreeError, TrainingRun, resolve_dependency
from registry.server.db import make_engine
from registry.server.models import Blob, Version
from sbom import validate_bom
from tests.support import Live, make_model_dir

embedded = pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)


class Lab:
    """A registry with a training identity, a dataset, an external dataset, code and a base."""

    def __init__(self, live: Live, tmp: Path) -> None:
        self.live = live
        self.tmp = tmp
        self.signer = KeySigner(keys.generate())
        self.client = live.client()
        self.client.add_key_identity("ci", keys.public_pem(self.signer.public_key).decode())

    def dataset(self, ref: str = "fraud/tx@3", content: str = "id,amount\n1,10\n") -> str:
        root = self.tmp / ref.replace("/", "_")
        root.mkdir()
        (root / "transactions.csv").write_text(content)
        with TrainingRun.start(self.client, ref, signer=self.signer, kind=Kind.DATASET) as run:
            run.add_source("s3://lake/raw/transactions/2024/")
            run.describe(classification="confidential", owner="risk-team",
                         description="Card transactions, labelled")  # fmt: skip
            return run.push(root).root_digest

    def external(self, ref: str = "fraud/ext@1") -> str:
        files = [
            {"path": "part-0.parquet", "size": 1234, "sha256": "ab" * 32,
             "uri": "s3://lake/curated/part-0.parquet"},
            {"path": "part-1.parquet", "size": 99, "sha256": "cd" * 32,
             "uri": "s3://lake/curated/part-1.parquet"},
        ]  # fmt: skip
        return self.client.register_external(ref, files, signer=self.signer).root_digest

    def model(self, ref: str = "fraud/m@1", **uses: list[str]) -> Any:
        with TrainingRun.start(self.client, ref, signer=self.signer,
                                      builder_id="https://ci.example/train") as run:  # fmt: skip
            for item in uses.get("datasets", []):
                run.use_dataset(item)
            for item in uses.get("base", []):
                run.use_base_model(item)
            for item in uses.get("code", []):
                run.use_code(item)
            run.log_params(lr=0.01, epochs=3, optimizer="adam", early_stop=True)
            seed = zlib.crc32(ref.encode()) % 10_000  # distinct models, distinct digests
            return run.push(make_model_dir(self.tmp / ref.replace("/", "_"), seed=seed))

    def evaluate(self, ref: str, accuracy: float) -> None:
        version = self.client.show(ref)
        statement = make_statement(
            name=f"{version.namespace}/{version.name}",
            root_digest=version.root_digest.removeprefix("sha256:"),
            predicate_type=TEST_RESULT,
            predicate={"result": "PASSED", "metrics": {"accuracy": accuracy, "f1": 0.8}},
        )
        self.client.attach(ref, self.signer.sign(statement).raw)

    def counts(self) -> tuple[int, int]:
        engine = make_engine(self.live.settings.resolved_database_url)
        try:
            with engine.connect() as conn:
                return (
                    conn.execute(select(func.count()).select_from(Version)).scalar_one(),
                    conn.execute(select(func.count()).select_from(Blob)).scalar_one(),
                )
        finally:
            engine.dispose()


@pytest.fixture
def lab(live: Live, tmp_path: Path) -> Lab:
    return Lab(live, tmp_path)


def _provenance(client: RegistryClient, ref: str) -> dict[str, Any]:
    from attest.bundle import Bundle

    [item] = client.list_attestations(ref, SLSA_PROVENANCE)
    return dict(Bundle.parse(client.get_attestation(ref, item.id)).statement().predicate)


def _digests(bom: Any) -> set[str]:
    """Every sha256 in a BOM: hashes and root-digest properties."""
    found: set[str] = set()
    if isinstance(bom, dict):
        if bom.get("alg") == "SHA-256":
            found.add(str(bom["content"]))
        if bom.get("name") == "modelseal:root-digest":
            found.add(str(bom["value"]).removeprefix("sha256:"))
        for value in bom.values():
            found |= _digests(value)
    elif isinstance(bom, list):
        for value in bom:
            found |= _digests(value)
    return found


def test_a_training_run_records_signed_provenance_and_a_valid_ml_bom(lab: Lab) -> None:
    tx = lab.dataset()
    ext = lab.external()
    base = lab.model("base/encoder@1")
    model = lab.model("fraud/m@1", datasets=["fraud/tx@3", f"fraud/ext@1#{ext}"],
                      base=["base/encoder@1"])  # fmt: skip

    predicate = _provenance(lab.client, "fraud/m@1")
    resolved = predicate["buildDefinition"]["resolvedDependencies"]
    assert {(d["uri"], d["digest"]["sha256"], d["name"]) for d in resolved} == {
        ("modelseal:fraud/tx@3", tx.removeprefix("sha256:"), "dataset"),
        ("modelseal:fraud/ext@1", ext.removeprefix("sha256:"), "dataset"),
        ("modelseal:base/encoder@1", base.root_digest.removeprefix("sha256:"), "base-model"),
    }
    params = predicate["buildDefinition"]["externalParameters"]
    assert params == {"lr": 0.01, "epochs": 3, "optimizer": "adam", "early_stop": True}
    assert predicate["runDetails"]["builder"]["id"] == "https://ci.example/train"

    bom = verified_bom(lab.client, "fraud/m@1")
    validate_bom(bom)
    assert bom["specVersion"] == "1.6"
    component = bom["metadata"]["component"]
    assert component["type"] == "machine-learning-model"
    datasets = {c["bom-ref"]: c for c in bom["components"] if c["type"] == "data"}
    assert set(datasets) == {"dataset:fraud/tx@3", "dataset:fraud/ext@1"}
    # The BOM's dataset digests are the provenance's.
    for dep in resolved:
        if dep["name"] == "dataset":
            ref = dep["uri"].removeprefix("modelseal:")
            [digest] = [h["content"] for h in datasets[f"dataset:{ref}"]["hashes"]]
            assert digest == dep["digest"]["sha256"]
    assert datasets["dataset:fraud/ext@1"]["data"][0]["contents"]["url"].startswith("s3://lake")
    assert any(p == {"name": "modelseal:external", "value": "true"}
               for p in datasets["dataset:fraud/ext@1"]["properties"])  # fmt: skip
    # Every digest in the BOM equals a digest the registry stores.
    stored = {model.root_digest, tx, ext, base.root_digest}
    for ref in ("fraud/m@1", "fraud/tx@3", "fraud/ext@1", "base/encoder@1"):
        stored |= {f.digest for f in lab.client.show(ref).files}
    assert _digests(bom) <= {d.removeprefix("sha256:") for d in stored}
    assert _digests(bom) >= {f.digest.removeprefix("sha256:") for f in model.files}

    # Evaluation results before release rebuild the BOM with the metrics: one new BOM. (How
    # many BOMs the commit and the provenance left depends on whether the worker built the
    # first before the provenance arrived: asks for a build coalesce. Reading the BOM waits
    # while it is pending, so counts taken after a read are settled.)
    assert "quantitativeAnalysis" not in component.get("modelCard", {})
    boms = len(lab.client.list_attestations("fraud/m@1", CYCLONEDX_BOM))
    lab.evaluate("fraud/m@1", 0.93)
    metrics = verified_bom(lab.client, "fraud/m@1")["metadata"]["component"]["modelCard"][
        "quantitativeAnalysis"
    ]["performanceMetrics"]
    assert {"type": "accuracy", "value": "0.93"} in metrics
    assert len(lab.client.list_attestations("fraud/m@1", CYCLONEDX_BOM)) == boms + 1
    # The same results again (a new signature over the same statement by the same signer): the
    # same evidence, stored once, and the BOM is neither changed nor re-signed.
    lab.evaluate("fraud/m@1", 0.93)
    assert len(lab.client.list_attestations("fraud/m@1", TEST_RESULT)) == 1
    assert len(lab.client.list_attestations("fraud/m@1", CYCLONEDX_BOM)) == boms + 1


@embedded
def test_a_model_without_datasets_gets_a_valid_bom(lab: Lab) -> None:
    lab.client.push(make_model_dir(lab.tmp / "plain"), "vision/plain@1")  # unsigned, no provenance
    bom = verified_bom(lab.client, "vision/plain@1")
    validate_bom(bom)
    assert [c for c in bom.get("components", []) if c["type"] == "data"] == []
    # datasets and code versions get no BOM
    lab.dataset()
    with pytest.raises(ResponseVerificationError, match="no ML-BOM") as caught:
        verified_bom(lab.client, "fraud/tx@3")
    assert not isinstance(caught.value, PullVerificationError)  # nothing was pulled


def test_a_registry_with_no_signer_identities_yet_still_builds_boms(
    live: Live, tmp_path: Path
) -> None:
    """No identity registered: no evidence can verify, which leaves the BOM without provenance,
    not without a BOM (this once failed with 'no signer identity is registered')."""
    with live.client() as client:
        assert client.list_identities() == []
        client.push(make_model_dir(tmp_path / "first"), "vision/first@1")
        bom = verified_bom(client, "vision/first@1")
    validate_bom(bom)


@embedded
@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("fraud/nope@1", "dataset fraud/nope@1 is not registered"),
        ("fraud/tx@3#sha256:" + "0" * 64, "not the pinned sha256:" + "0" * 64),
        ("fraud/tx@3#sha256:123", "pinned digest is written"),
        ("fraud/m0@1", "is a model, not a dataset"),
        ("fraud/bad", "invalid reference fraud/bad"),
    ],
)
def test_unknown_or_mismatched_dependencies_are_refused_before_anything_is_stored(
    lab: Lab, given: str, message: str
) -> None:
    lab.dataset()
    lab.model("fraud/m0@1")
    before = lab.counts()
    with pytest.raises((InvalidRequestError, AttestError), match=message):
        lab.model("fraud/m@2", datasets=[given])
    assert lab.counts() == before
    with pytest.raises(NotFoundError):
        lab.client.show("fraud/m@2")


@embedded
def test_revoked_and_rejected_dependencies_are_refused(lab: Lab) -> None:
    lab.dataset()
    lab.client.set_policy("fraud", "dataset:\n  require:\n    signature: [ci]\n    scan: clean\n")
    lab.client.release("fraud/tx@3")
    lab.client.revoke("fraud/tx@3", "poisoned")
    with pytest.raises(InvalidRequestError, match="dataset fraud/tx@3 is revoked: revoked by"):
        lab.model("fraud/m@2", datasets=["fraud/tx@3"])


@embedded
def test_hand_made_provenance_naming_unknown_or_other_digests_is_rejected(lab: Lab) -> None:
    tx = lab.dataset().removeprefix("sha256:")
    version = lab.client.push(make_model_dir(lab.tmp / "m"), "fraud/m@1", signer=lab.signer)

    def attach(dependencies: list[VersionDependency]) -> None:
        predicate = build_predicate(builder_id="https://x", dependencies=dependencies)
        statement = make_statement(
            name="fraud/m", root_digest=version.root_digest.removeprefix("sha256:"),
            predicate_type=SLSA_PROVENANCE, predicate=predicate,
        )  # fmt: skip
        lab.client.attach("fraud/m@1", lab.signer.sign(statement).raw)

    with pytest.raises(EvidenceRejectedError, match="fraud/tx@4, which is not registered"):
        attach([VersionDependency("fraud/tx@4", tx, "dataset")])
    with pytest.raises(EvidenceRejectedError, match="but the registry has sha256:" + tx):
        attach([VersionDependency("fraud/tx@3", "1" * 64, "dataset")])
    with pytest.raises(EvidenceRejectedError, match="as a base-model, but it is a dataset"):
        attach([VersionDependency("fraud/tx@3", tx, "base-model")])
    assert lab.client.list_attestations("fraud/m@1", SLSA_PROVENANCE) == []
    attach([VersionDependency("fraud/tx@3", tx, "dataset")])
    assert len(lab.client.list_attestations("fraud/m@1", SLSA_PROVENANCE)) == 1


@embedded
def test_provenance_cannot_probe_namespaces_the_pusher_cannot_read(lab: Lab) -> None:
    secret = lab.dataset("vault/secret@1").removeprefix("sha256:")
    publisher = lab.client.create_token("p", "publisher", "fraud").token
    with lab.live.client(token=publisher) as client:
        version = client.push(make_model_dir(lab.tmp / "m"), "fraud/m@1", signer=lab.signer)
        for claimed in ("0" * 64, secret):
            predicate = build_predicate(
                builder_id="https://x",
                dependencies=[VersionDependency("vault/secret@1", claimed, "dataset")],
            )
            statement = make_statement(
                name="fraud/m",
                root_digest=version.root_digest[7:],
                predicate_type=SLSA_PROVENANCE,
                predicate=predicate,
            )
            with pytest.raises(EvidenceRejectedError) as refused:
                client.attach("fraud/m@1", lab.signer.sign(statement).raw)
            assert "vault/secret@1, which is not registered (or not readable" in str(refused.value)
            assert secret not in str(refused.value) + str(refused.value.facts)
        # The CLI/SDK path refuses before any upload, without telling more.
        with pytest.raises(PermissionDeniedError):
            resolve_dependency(client, "vault/secret@1", "dataset")
        with pytest.raises(PermissionDeniedError):
            resolve_dependency(client, "vault/nothing@1", "dataset")
    # The lineage seen by a token of one namespace marks what it cannot read.
    lab.model("fraud/m2@1", datasets=["vault/secret@1"])
    with lab.live.client(token=publisher) as client:
        [child] = lineage(client, "fraud/m2@1")["children"]
    assert child == {"ref": "vault/secret@1", "role": "dataset",
                     "error": "not readable with this token"}  # fmt: skip


@embedded
def test_a_bad_environment_byproduct_is_refused(lab: Lab) -> None:
    version = lab.client.push(make_model_dir(lab.tmp / "m"), "fraud/m@1", signer=lab.signer)
    predicate = build_predicate(builder_id="https://x")
    predicate["runDetails"]["byproducts"] = [{
        "name": "environment", "uri": "requirements.txt", "mediaType": "text/plain",
        "content": base64.b64encode(b"\x00\x01binary").decode(),
    }]  # fmt: skip
    statement = make_statement(name="fraud/m", root_digest=version.root_digest[7:],
                               predicate_type=SLSA_PROVENANCE, predicate=predicate)  # fmt: skip
    with pytest.raises(EvidenceRejectedError, match=r"requirements\.txt"):
        lab.client.attach("fraud/m@1", lab.signer.sign(statement).raw)


@embedded
def test_external_datasets_are_marked_never_served_and_gated(lab: Lab) -> None:
    digest = lab.external()
    shown = lab.client.show("fraud/ext@1")
    assert shown.external and {f.uri for f in shown.files} == {
        "s3://lake/curated/part-0.parquet", "s3://lake/curated/part-1.parquet"
    }  # fmt: skip
    assert lab.client.list_versions("fraud", "ext")[0].external
    with pytest.raises(InvalidRequestError, match="is external"):
        lab.client.pull("fraud/ext@1", lab.tmp / "out", pending=True)
    assert not (lab.tmp / "out").exists()
    import httpx

    answer = httpx.get(
        f"{lab.live.url}/v1/namespaces/fraud/artifacts/ext/versions/1/files/part-0.parquet",
        headers={"Authorization": f"Bearer {lab.live.admin_token}"},
    )
    assert answer.status_code == 404 and "external" in answer.json()["detail"]
    # Nothing here was scanned: the gate says so unless the policy accepts external data.
    lab.client.set_policy("fraud", "dataset:\n  require:\n    signature: [ci]\n    scan: clean\n")
    with pytest.raises(ReleaseRefusedError) as refused:
        lab.client.release("fraud/ext@1")
    assert "part-0.parquet: external data the registry never held" in str(refused.value.facts)
    lab.client.set_policy(
        "fraud",
        "dataset:\n  require:\n    signature: [ci]\n    scan: {allow_formats: [external]}\n",
    )
    assert lab.client.release("fraud/ext@1").state == "released"
    # Same manifest again: idempotent; another URI for the same bytes: a conflict.
    assert lab.external() == digest
    from registry.errors import VersionConflictError

    with pytest.raises(VersionConflictError):
        lab.client.register_external("fraud/ext@1", [
            {"path": "part-0.parquet", "size": 1234, "sha256": "ab" * 32, "uri": "s3://x/p0"},
            {"path": "part-1.parquet", "size": 99, "sha256": "cd" * 32, "uri": "s3://x/p1"},
        ])  # fmt: skip


@embedded
@pytest.mark.parametrize(
    "uri",
    [
        "ftp://host/x",
        "https://user:pw@host/x",
        "https://bucket.s3.amazonaws.com/x?X-Amz-Signature=abc",
        "s3:///nobucket",
        "https://host/has space",
    ],
)
def test_external_uris_that_carry_credentials_or_nothing_are_refused(lab: Lab, uri: str) -> None:
    with pytest.raises(InvalidRequestError):
        lab.client.register_external(
            "fraud/ext@1", [{"path": "a", "size": 1, "sha256": "ab" * 32, "uri": uri}]
        )
    with pytest.raises(NotFoundError):
        lab.client.show("fraud/ext@1")


@embedded
def test_lineage_walks_datasets_sources_code_and_base_models(lab: Lab) -> None:
    lab.dataset("base/corpus@1", "text\nhello\n")
    with TrainingRun.start(lab.client, "base/encoder@1", signer=lab.signer) as run:
        run.use_dataset("base/corpus@1")
        run.use_git("https://github.com/acme/pretrain", "b" * 40, dirty=True)
        run.push(make_model_dir(lab.tmp / "enc", seed=77))
    lab.dataset()
    lab.model("fraud/m@1", datasets=["fraud/tx@3"], base=["base/encoder@1"])
    root = lineage(lab.client, "fraud/m@1")
    assert root["signers"] == {"signature": ["ci"], "provenance": ["ci"]}
    by_ref = {c["ref"]: c for c in root["children"]}
    assert by_ref["fraud/tx@3"]["children"] == [
        {"role": "source", "ref": "s3://lake/raw/transactions/2024/"}
    ]
    encoder = by_ref["base/encoder@1"]
    assert encoder["role"] == "base-model" and encoder["state"] == "pending"
    inner = {c["ref"]: c for c in encoder["children"]}
    assert inner["base/corpus@1"]["digest"].startswith("sha256:")
    assert inner["https://github.com/acme/pretrain"]["dirty"] is True


@embedded
def test_dirty_git_checkouts_are_refused_unless_allowed(lab: Lab, tmp_path: Path) -> None:
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.email=t@example", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "train.py").write_text("print('train')\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()  # fmt: skip
    run = TrainingRun.start(lab.client, "fraud/m@1", signer=lab.signer)
    assert run.detect_git(repo)
    assert run.git is not None and (run.git.commit, run.git.dirty) == (commit, False)
    (repo / "train.py").write_text("print('changed')\n")
    run = TrainingRun.start(lab.client, "fraud/m@1", signer=lab.signer)
    with pytest.raises(DirtyTreeError, match="uncommitted changes"):
        run.detect_git(repo)
    assert run.detect_git(repo, allow_dirty=True) and run.git is not None and run.git.dirty
    elsewhere = TrainingRun.start(lab.client, "x/y@1", signer=lab.signer)
    assert not elsewhere.detect_git(tmp_path / "none")
