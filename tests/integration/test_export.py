"""Evidence export and independent verification: offline, online, with the auditor's own rules,
and with the peers' tools (in-toto-verify, model_signing)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from attest import keys
from attest.bundle import Bundle
from attest.evidence import SIGNERS_FROM_EXPORT, EvidenceVerdict, verify_evidence
from attest.keys import TrustedKey
from attest.predicates import RELEASE, TEST_RESULT
from attest.signing import KeySigner
from attest.statement import Statement, make_statement
from attest.trust import Trust, parse_trust
from registry.names import Kind
from registry.sdk.export import export_evidence, verify_online
from registry.sdk.training import TrainingRun
from tests.integration.test_release import POLICY, World
from tests.peers import in_toto_verify, model_signing
from tests.support import Live, make_model_dir, run_cli

embedded = pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)


class Chain(World):
    """A released model trained on a released dataset, every link signed (test_release's
    identities, policy and release bot)."""

    def __init__(self, live: Live, tmp: Path) -> None:
        super().__init__(live, tmp)
        for version, rows in (("2", "1,5\n"), ("3", "1,10\n2,20\n")):
            root = tmp / f"tx{version}"
            root.mkdir()
            (root / "transactions.csv").write_text("id,amount\n" + rows)
            with TrainingRun.start(self.admin, f"fraud/tx@{version}", signer=self.data,
                                         kind=Kind.DATASET) as run:  # fmt: skip
                run.add_source("s3://lake/raw/tx/")
                run.push(root)
            self.admin.release(f"fraud/tx@{version}")
        with TrainingRun.start(self.admin, "fraud/m@1", signer=self.training,
                                     builder_id="https://ci.example/train") as run:  # fmt: skip
            run.use_dataset("fraud/tx@3")
            run.use_git("https://github.com/acme/fraud", "c" * 40)
            run.log_params(lr=0.01)
            self.pushed = run.push(make_model_dir(tmp / "model"))
        statement = make_statement(
            name="fraud/m",
            root_digest=self.pushed.root_digest.removeprefix("sha256:"),
            predicate_type=TEST_RESULT,
            predicate={"result": "PASSED", "metrics": {"accuracy": 0.93}},
        )
        self.admin.attach("fraud/m@1", self.evaluation.sign(statement).raw)
        assert self.releaser.release("fraud/m@1").state == "released"


@pytest.fixture
def chain(live: Live, tmp_path: Path) -> Chain:
    return Chain(live, tmp_path)


def _failed(verdict: EvidenceVerdict) -> list[str]:
    return [str(c) for c in verdict.checks if not c.ok]


def _auditor(chain: Chain) -> Trust:
    """The auditor's own signers (their copies of the identities' keys, never the export's)."""
    return Trust(tuple(TrustedKey(name, signer.public_key) for name, signer in (
        ("training-ci", chain.training), ("eval-ci", chain.evaluation),
        ("data-pipeline", chain.data))), (), None)  # fmt: skip


def _registry_key(live: Live) -> TrustedKey:
    """The registry key as an auditor gets it from the registry's operator (never the export)."""
    import httpx

    pem = httpx.get(f"{live.url}/v1/registry/key").json()["public_key_pem"]
    return TrustedKey.from_pem("registry", pem.encode())


def test_export_then_verify_offline_passes_and_every_tampering_fails(
    chain: Chain, tmp_path: Path
) -> None:
    exported = export_evidence(chain.admin, "fraud/m@1", tmp_path / "export", with_files=True)
    names = {p.name for p in exported.iterdir()}
    assert {"manifest.json", "versions.json", "model.sig", "evidence", "registry.pub"} <= names
    assert {"policy.yaml", "trust.yaml", "release.sigstore.json", "audit", "files"} <= names
    anchor = _registry_key(chain.live)
    auditor = _auditor(chain)
    verdict = verify_evidence(exported, registry_key=anchor, trust=auditor)
    assert verdict.ok, _failed(verdict)
    # Without the auditor's signers, the export's trust.yaml names them: never more than
    # UNANCHORED.
    bare = verify_evidence(exported, registry_key=anchor)
    assert bare.holds and not bare.ok and bare.unanchored == [SIGNERS_FROM_EXPORT]
    links = [c.link for c in verdict.checks]
    assert {"manifest", "release", "gate", "model.sig", "files", "audit"} <= set(links)

    def tampered(change: Callable[[Path], object], **kwargs: object) -> list[str]:
        copy = tmp_path / f"t{len(list(tmp_path.iterdir()))}"
        shutil.copytree(exported, copy)
        change(copy)
        if "trust" not in kwargs:
            kwargs["registry_key"] = anchor
            kwargs["trust"] = auditor
        result = verify_evidence(copy, **kwargs)  # type: ignore[arg-type]
        assert not result.ok
        return _failed(result)

    def bundle(directory: Path, ref: str, predicate: str) -> Path:
        from attest.bundle import Bundle

        for path in sorted((directory / "evidence").glob(f"{ref.replace('/', '.')}.*")):
            if Bundle.parse(path.read_bytes()).statement().predicate_type == predicate:
                return path
        raise AssertionError(f"no {predicate} bundle of {ref}")

    def flip_byte(path: Path) -> None:
        data = json.loads(path.read_text())
        signature = data["dsseEnvelope"]["signatures"][0]["sig"]
        data["dsseEnvelope"]["signatures"][0]["sig"] = ("A" if signature[0] != "A" else "B") + (
            signature[1:]
        )
        path.write_text(json.dumps(data))

    from attest.predicates import SLSA_PROVENANCE

    # One byte of the dataset's provenance signature.
    failures = tampered(lambda d: flip_byte(bundle(d, "fraud/tx@3", SLSA_PROVENANCE)))
    assert any(f.startswith("FAIL evidence fraud.tx@3.") for f in failures), failures
    assert any("dependency fraud/tx@3 -> provenance: missing" in f for f in failures), failures

    # An evidence file removed: the evaluation.
    failures = tampered(lambda d: bundle(d, "fraud/m@1", TEST_RESULT).unlink())
    assert "FAIL evaluation: missing" in failures
    assert any(f.startswith("FAIL release: relies on bundles missing") for f in failures)

    # The dataset's provenance swapped for another version's.
    [item] = chain.admin.list_attestations("fraud/tx@2", SLSA_PROVENANCE)
    other_version = chain.admin.get_attestation("fraud/tx@2", item.id)

    def swap(d: Path) -> None:
        bundle(d, "fraud/tx@3", SLSA_PROVENANCE).write_bytes(other_version)

    failures = tampered(swap)
    assert any("dependency fraud/tx@3 -> provenance: missing" in f for f in failures), failures

    # A stricter auditor policy.
    strict = POLICY.replace('">= 0.90"', '">= 0.95"')
    failures = tampered(lambda d: None, policy_text=strict)
    assert failures == ["FAIL evaluation: accuracy 0.93 < 0.95"]

    # The files, the manifest, the release, model.sig and the audit log.
    failures = tampered(lambda d: (d / "files" / "config.json").write_text("{}"))
    assert any(f.startswith("FAIL files: config.json has 2 bytes") for f in failures)

    def edit_manifest(d: Path) -> None:
        data = json.loads((d / "manifest.json").read_text())
        data["files"][0]["size"] += 1
        (d / "manifest.json").write_text(json.dumps(data))

    failures = tampered(edit_manifest)
    assert "FAIL manifest: the file list differs from versions.json" in failures
    assert "FAIL release: names another file list than manifest.json" in failures
    failures = tampered(lambda d: (d / "release.sigstore.json").unlink())
    assert "FAIL release: release.sigstore.json is missing" in failures
    from attest.predicates import OMS_SIGNATURE

    failures = tampered(
        lambda d: shutil.copy(bundle(d, "fraud/tx@3", OMS_SIGNATURE), d / "model.sig")
    )
    assert any(f.startswith("FAIL model.sig:") for f in failures), failures

    def edit_audit(d: Path) -> None:
        entries = json.loads((d / "audit" / "entries.json").read_text())
        entries[0]["actor"] = "someone-else"
        (d / "audit" / "entries.json").write_text(json.dumps(entries))

    failures = tampered(edit_audit)
    assert any(f.startswith("FAIL audit: entry") and "modified" in f for f in failures)

    # Revoked at export time: the verdict says so even though every signature still holds.
    chain.releaser.revoke("fraud/m@1", "leaked weights")
    revoked = export_evidence(chain.admin, "fraud/m@1", tmp_path / "revoked")
    assert "FAIL state: fraud/m@1 was revoked when it was exported" in _failed(
        verify_evidence(revoked, registry_key=anchor, trust=auditor)
    )

    # A registry key the auditor pins that is not the registry's: nothing verifies.
    other = keys.generate()
    (tmp_path / "other.pub").write_bytes(keys.public_pem(other.public_key()))
    trust_text = (exported / "trust.yaml").read_text().replace("registry.pub", "other.pub")
    own = parse_trust(trust_text, tmp_path)
    failures = tampered(lambda d: None, trust=own)
    assert any(f.startswith("FAIL release:") for f in failures), failures


@embedded
def test_the_auditors_own_trust_and_the_cli_offline_in_a_network_namespace(
    chain: Chain, live: Live, tmp_path: Path
) -> None:
    exported = export_evidence(chain.admin, "fraud/m@1", tmp_path / "export")
    # The auditor's own trust file: their copies of the keys, registry key pinned.
    (tmp_path / "keys").mkdir()
    for name, signer in (("training-ci", chain.training), ("eval-ci", chain.evaluation),
                         ("data-pipeline", chain.data)):  # fmt: skip
        (tmp_path / "keys" / f"{name}.pub").write_bytes(keys.public_pem(signer.public_key))
    shutil.copy(exported / "registry.pub", tmp_path / "keys" / "registry.pub")
    (tmp_path / "trust.yaml").write_text(
        "identities:\n"
        "  training-ci: {key: keys/training-ci.pub}\n"
        "  eval-ci: {key: keys/eval-ci.pub}\n"
        "  data-pipeline: {key: keys/data-pipeline.pub}\n"
        "registry: {key: keys/registry.pub}\n"
    )
    (tmp_path / "strict.yaml").write_text(POLICY.replace('">= 0.90"', '">= 0.95"'))
    if subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot create a network namespace here")
    ok = run_cli("verify-evidence", str(exported), "--trust", str(tmp_path / "trust.yaml"),
              cwd=tmp_path, netns=True)  # fmt: skip
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "VERIFIED" in ok.stdout and "ok   release:" in ok.stdout
    strict = run_cli("verify-evidence", str(exported), "--trust", str(tmp_path / "trust.yaml"),
                  "--policy", str(tmp_path / "strict.yaml"), cwd=tmp_path, netns=True)  # fmt: skip
    assert strict.returncode == 1
    assert "FAIL evaluation: accuracy 0.93 < 0.95" in strict.stdout
    # An auditor who does not trust eval-ci: the evaluation does not count.
    (tmp_path / "no-eval.yaml").write_text(
        (tmp_path / "trust.yaml").read_text().replace("  eval-ci: {key: keys/eval-ci.pub}\n", "")
    )
    distrust = verify_evidence(exported, trust=parse_trust(
        (tmp_path / "no-eval.yaml").read_text(), tmp_path))  # fmt: skip
    assert "FAIL evaluation: missing" in _failed(distrust)


@embedded
def test_verify_online_and_the_export_cli(chain: Chain, live: Live, tmp_path: Path) -> None:
    verdict = verify_online(chain.admin, "fraud/m@1")
    assert verdict.ok, _failed(verdict)
    strict = POLICY.replace('">= 0.90"', '">= 0.95"')
    assert _failed(verify_online(chain.admin, "fraud/m@1", policy_text=strict)) == [
        "FAIL evaluation: accuracy 0.93 < 0.95"
    ]
    # A deployer can verify too (no audit log in its export).
    deployer = chain.admin.create_token("d", "deployer", "fraud").token
    with live.client(token=deployer) as client:
        verdict = verify_online(client, "fraud/m@1")
    assert verdict.ok, _failed(verdict)
    assert any(c.link == "audit" and "not included" in c.message for c in verdict.checks)
    # The same from the command line.
    exported = run_cli("export", "fraud/m@1", "--to", str(tmp_path / "cli-export"), "--in-toto",
                    cwd=tmp_path, live=live)  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / "cli-export" / "root.layout").exists()
    verified = run_cli("verify", "fraud/m@1", cwd=tmp_path, live=live)
    assert verified.returncode == 0 and "VERIFIED" in verified.stdout, verified.stdout
    (tmp_path / "strict.yaml").write_text(strict)
    refused = run_cli("verify", "fraud/m@1", "--policy", str(tmp_path / "strict.yaml"),
                   cwd=tmp_path, live=live)  # fmt: skip
    assert refused.returncode == 1 and "NOT VERIFIED" in refused.stdout
    # An export into an existing non-empty directory is refused and leaves it as it was.
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep").write_text("x")
    from registry.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError):
        export_evidence(chain.admin, "fraud/m@1", busy)
    assert [p.name for p in busy.iterdir()] == ["keep"]


@embedded
def test_in_toto_layout_passes_in_toto_verify_and_model_signing_accepts_model_sig(
    chain: Chain, tmp_path: Path
) -> None:
    exported = export_evidence(chain.admin, "fraud/m@1", tmp_path / "export", in_toto=True,
                               with_files=True)  # fmt: skip
    passed = in_toto_verify(exported)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    [training] = exported.glob("training.*.link")
    link = json.loads(training.read_text())
    [product] = [k for k in link["signed"]["products"] if k.endswith("config.json")]
    link["signed"]["products"][product]["sha256"] = "0" * 64
    training.write_text(json.dumps(link))
    failed = in_toto_verify(exported)
    assert failed.returncode != 0
    # The OMS signature, checked by model_signing itself against the exported files.
    (tmp_path / "training.pub").write_bytes(keys.public_pem(chain.training.public_key))
    signature, public = str(exported / "model.sig"), str(tmp_path / "training.pub")
    oracle = model_signing("verify", "key", "--signature", signature, "--public_key", public,
                           str(exported / "files"))  # fmt: skip
    assert oracle.returncode == 0, oracle.stdout + oracle.stderr


@embedded
def test_in_toto_verify_refuses_files_that_are_not_the_released_ones(
    chain: Chain, tmp_path: Path
) -> None:
    """Attacker: a malicious export (docs/threat-model.md): the layout and links are the
    registry's, the files beside them are not. The acceptance is the test above."""
    exported = export_evidence(chain.admin, "fraud/m@1", tmp_path / "export", in_toto=True,
                               with_files=True)  # fmt: skip
    assert in_toto_verify(exported).returncode == 0
    config = exported / "files" / "config.json"
    config.write_text(config.read_text().replace("Tiny", "Tinz"))
    failed = in_toto_verify(exported)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "'DISALLOW files/*' matched the following artifacts: ['files/config.json']" in (
        failed.stderr
    )
    # Files whose names in-toto leaves out of what it records (ARTIFACT_EXCLUDE_PATTERNS): the
    # inspection's own check of files/ refuses them.
    config.write_text(config.read_text().replace("Tinz", "Tiny"))
    assert in_toto_verify(exported).returncode == 0
    for added in ("evil.pyc", "x.link", ".git/config", "data.json~"):
        target = exported / "files" / added
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")
        failed = in_toto_verify(exported)
        assert failed.returncode == 1 and "BadReturnValueError" in failed.stderr, added
        target.unlink()


@embedded
def test_a_release_counts_for_its_own_version_only_even_with_the_same_digest(
    chain: Chain, tmp_path: Path
) -> None:
    twin = tmp_path / "twin"
    shutil.copytree(chain.tmp / "tx3", twin)  # the same files as fraud/tx@3: the same digest
    with TrainingRun.start(chain.admin, "fraud/tx@9", signer=chain.data, kind=Kind.DATASET) as run:
        assert run.push(twin).root_digest == chain.admin.show("fraud/tx@3").root_digest
    with TrainingRun.start(chain.admin, "fraud/m@3", signer=chain.training) as run:
        run.use_dataset("fraud/tx@3")
        run.use_dataset("fraud/tx@9")  # never released
        run.push(make_model_dir(tmp_path / "m3", seed=3))
    exported = export_evidence(chain.admin, "fraud/m@3", tmp_path / "e")
    # m@3 was never released, so no release vouches for its signers' names in the export's
    # trust.yaml: the auditor brings their own.
    (tmp_path / "keys").mkdir()
    lines = []
    for name, signer in (("training-ci", chain.training), ("data-pipeline", chain.data)):
        (tmp_path / "keys" / f"{name}.pub").write_bytes(keys.public_pem(signer.public_key))
        lines.append(f"  {name}: {{key: keys/{name}.pub}}\n")
    own = parse_trust("identities:\n" + "".join(lines), tmp_path)
    failures = _failed(verify_evidence(exported, trust=own, registry_key=_registry_key(chain.live)))
    assert "FAIL dependency fraud/tx@9: pending" in failures, failures
    assert not any("fraud/tx@3" in f for f in failures), failures


@embedded
def test_in_toto_export_is_only_for_released_versions(chain: Chain) -> None:
    from registry.errors import ConflictError

    chain.admin.push(make_model_dir(chain.tmp / "m2", seed=9), "fraud/m@2")
    with pytest.raises(ConflictError, match="in-toto exports are for releases"):
        chain.admin.in_toto("fraud/m@2")


# -- attacks on the export (docs/threat-model.md: "a malicious export") -------------------------


def _statement_of(path: Path) -> Statement:
    return Bundle.parse(path.read_bytes()).statement()


def _forge(exported: Path, copy: Path, attacker: KeySigner) -> None:
    """The attacker's export: ``registry.pub`` swapped for its key, and every bundle (scans,
    OMS, provenance, evaluation at 0.99, releases, the audit checkpoint) re-signed with it."""
    shutil.copytree(exported, copy)
    (copy / "registry.pub").write_bytes(keys.public_pem(attacker.public_key))
    renamed: dict[str, str] = {}
    paths = sorted((copy / "evidence").glob("*.sigstore.json"))
    releases = [p for p in paths if _statement_of(p).predicate_type == RELEASE]
    model_sig = Bundle.parse((copy / "model.sig").read_bytes()).digest
    for path in [p for p in paths if p not in releases]:
        statement = _statement_of(path)
        if statement.predicate_type == TEST_RESULT:
            statement = Statement(statement.subjects, TEST_RESULT, {"metrics": {"accuracy": 0.99}})
        old = Bundle.parse(path.read_bytes()).digest
        forged = attacker.sign(statement)
        renamed[old] = forged.digest
        path.write_bytes(forged.raw)
        if old == model_sig:
            (copy / "model.sig").write_bytes(forged.raw)
    for path in [*releases, copy / "release.sigstore.json"]:
        statement = _statement_of(path)
        predicate = dict(statement.predicate)
        predicate["evidence"] = [
            {**e, "bundleSha256": renamed.get(e["bundleSha256"], e["bundleSha256"]),
             "signer": attacker.identity}
            for e in predicate["evidence"]
        ]  # fmt: skip
        path.write_bytes(attacker.sign(Statement(statement.subjects, RELEASE, predicate)).raw)
    checkpoint = copy / "audit" / "checkpoint.sigstore.json"
    checkpoint.write_bytes(attacker.sign(_statement_of(checkpoint)).raw)


ANYONE = """\
model:
  require:
    signature: ["*"]
    provenance: ["*"]
    evaluation: {signers: ["*"], metrics: {accuracy: ">= 0.95"}}
    scan: clean
  release: {separate_from_pusher: true}
dataset:
  require: {signature: ["*"], provenance: ["*"], scan: clean}
"""


def test_an_export_with_a_swapped_registry_key_is_never_verified(
    chain: Chain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attacker: a malicious export whose registry.pub is the attacker's, with every statement
    re-signed by that key. The auditor brings only their training key and a strict policy; the
    genuine export verifies against the registry key they pinned (the acceptance)."""
    exported = export_evidence(chain.admin, "fraud/m@1", tmp_path / "export")
    forged = tmp_path / "forged"
    _forge(exported, forged, KeySigner(keys.generate()))
    (tmp_path / "training-ci.pub").write_bytes(keys.public_pem(chain.training.public_key))
    (tmp_path / "auditor.yaml").write_text("identities:\n  training-ci: {key: training-ci.pub}\n")
    (tmp_path / "strict.yaml").write_text(ANYONE)
    auditor = parse_trust((tmp_path / "auditor.yaml").read_text(), tmp_path)

    unanchored = verify_evidence(forged, trust=auditor, policy_text=ANYONE)
    assert not unanchored.ok
    [trust] = [c for c in unanchored.checks if c.link == "trust"]
    assert not trust.ok and "--registry-key" in trust.message, trust
    real = _registry_key(chain.live)
    pinned = verify_evidence(forged, trust=auditor, policy_text=ANYONE, registry_key=real)
    assert any(f.startswith("FAIL release: does not verify") for f in _failed(pinned))
    # Taking the export's own keys on purpose: UNANCHORED, and the registry key (here the
    # attacker's) still signs no user evidence.
    own = verify_evidence(forged, trust=auditor, policy_text=ANYONE, trust_export_keys=True)
    assert not own.ok and not own.anchored
    assert any("registry's own key" in f for f in _failed(own)), _failed(own)

    # The command line on a machine that pinned nothing: no anchor is refused and says how to
    # give one...
    pinned_config = os.environ["MODELSEAL_CONFIG_DIR"]
    monkeypatch.setenv("MODELSEAL_CONFIG_DIR", str(tmp_path / "fresh-config"))
    bare = run_cli("verify-evidence", str(forged), "--trust", str(tmp_path / "auditor.yaml"),
                   "--policy", str(tmp_path / "strict.yaml"), cwd=tmp_path)  # fmt: skip
    assert bare.returncode == 1 and "VERIFIED" not in bare.stdout.replace("NOT VERIFIED", "")
    assert "--registry-key" in bare.stdout, bare.stdout
    for directory in (forged, exported):
        flagged = run_cli("verify-evidence", str(directory), "--trust-export-keys", cwd=tmp_path)
        assert flagged.returncode in (1, 3) and "UNANCHORED" in flagged.stdout
        assert "VERIFIED" not in flagged.stdout.replace("NOT VERIFIED", ""), flagged.stdout
    assert flagged.returncode == 3  # the genuine export holds, but only on its own keys
    monkeypatch.setenv("MODELSEAL_CONFIG_DIR", pinned_config)
    # ...and the genuine export verifies against the key the auditor brings or pinned (and
    # their own signers: without them it is at most UNANCHORED).
    (tmp_path / "registry.pub").write_bytes((exported / "registry.pub").read_bytes())
    for name, signer in (("eval-ci", chain.evaluation), ("data-pipeline", chain.data)):
        (tmp_path / f"{name}.pub").write_bytes(keys.public_pem(signer.public_key))
    (tmp_path / "full.yaml").write_text(
        (tmp_path / "auditor.yaml").read_text()
        + ("  eval-ci: {key: eval-ci.pub}\n  data-pipeline: {key: data-pipeline.pub}\n")
    )
    full = ["--trust", str(tmp_path / "full.yaml")]
    for anchor in (["--registry-key", str(tmp_path / "registry.pub")], []):  # [] = the pin
        genuine = run_cli("verify-evidence", str(exported), *anchor, *full, cwd=tmp_path)
        assert genuine.returncode == 0, genuine.stdout + genuine.stderr
        assert genuine.stdout.rstrip().endswith("VERIFIED")
        unanchored = run_cli("verify-evidence", str(exported), *anchor, cwd=tmp_path)
        assert unanchored.returncode == 3, unanchored.stdout + unanchored.stderr
        wrong = run_cli("verify-evidence", str(forged), *anchor, *full, cwd=tmp_path)
        assert wrong.returncode == 1 and "FAIL release: does not verify" in wrong.stdout


def test_unsigned_fields_of_an_export_cannot_change_the_verdict(
    chain: Chain, tmp_path: Path
) -> None:
    """Attacker: a malicious export editing what no signature covers: pushed_by (separation of
    duties), kinds, states, the export's trust.yaml, the audit/ directory. Each edit either
    keeps the verdict or is named; the unedited export verifies (the acceptance)."""
    real = _registry_key(chain.live)

    def verify(directory: Path, **kwargs: object) -> list[str]:
        verdict = verify_evidence(directory, registry_key=real, **kwargs)  # type: ignore[arg-type]
        return _failed(verdict)

    def edit(directory: Path, name: str, change: Callable[[Any], object]) -> Path:
        copy = tmp_path / f"{directory.name}-{len(list(tmp_path.iterdir()))}"
        shutil.copytree(directory, copy)
        document = json.loads((copy / name).read_text())
        change(document)
        (copy / name).write_text(json.dumps(document))
        return copy

    def entry(ref: str) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
        return lambda versions: next(v for v in versions if v["ref"] == ref)

    # A version its pusher released under a lax policy; the auditor's policy separates duties.
    chain.admin.set_policy("fraud", POLICY.replace("separate_from_pusher: true",
                                                   "separate_from_pusher: false"))  # fmt: skip
    chain.model("fraud/m@2", deps=[("fraud/tx@3", chain.admin.show("fraud/tx@3").root_digest)])
    chain.admin.release("fraud/m@2")
    own = export_evidence(chain.admin, "fraud/m@2", tmp_path / "own")
    assert verify(own) == []
    sod = "FAIL release: admin pushed this version and may not release it (separate_from_pusher)"
    assert sod in verify(own, policy_text=POLICY)
    hidden = edit(own, "versions.json", lambda v: entry("fraud/m@2")(v).update(pushed_by="bob"))
    failures = verify(hidden, policy_text=POLICY)
    assert sod in failures, failures
    assert any("pushed_by" in f and "bob" in f for f in failures), failures

    # The kind, which picks the policy section.
    kind = edit(own, "versions.json", lambda v: entry("fraud/m@2")(v).update(kind="dataset"))
    assert any("kind" in f and "dataset" in f for f in verify(kind)), verify(kind)

    # The export's own trust.yaml, remapping eval-ci to the attacker (the real key kept under
    # another name so that the bundles the release cites still verify).
    exported = export_evidence(chain.admin, "fraud/m@1", tmp_path / "export")
    assert verify(exported) == []
    attacker = KeySigner(keys.generate())
    swapped = tmp_path / "swapped"
    shutil.copytree(exported, swapped)
    trust = yaml.safe_load((swapped / "trust.yaml").read_text())
    trust["identities"]["old-eval"] = trust["identities"]["eval-ci"]
    trust["identities"]["eval-ci"] = {"key_pem": keys.public_pem(attacker.public_key).decode()}
    (swapped / "trust.yaml").write_text(yaml.safe_dump(trust))
    subject = _statement_of(next(swapped.glob("evidence/fraud.m@1.*"))).subjects
    better = attacker.sign(Statement(subject, TEST_RESULT, {"metrics": {"accuracy": 0.99}}))
    (swapped / "evidence" / "fraud.m@1.999.sigstore.json").write_bytes(better.raw)
    strict = POLICY.replace('">= 0.90"', '">= 0.95"')
    assert "FAIL evaluation: accuracy 0.93 < 0.95" in verify(exported, policy_text=strict)
    # The export's trust.yaml is never more than UNANCHORED, and the remapping is named; under
    # the auditor's own trust the attacker's evaluation counts for nothing.
    failures = verify(swapped, policy_text=strict)
    assert any(f.startswith("FAIL trust:") and "eval-ci" in f for f in failures), failures
    failures = verify(swapped, policy_text=strict, trust=_auditor(chain))
    assert failures == ["FAIL evaluation: accuracy 0.93 < 0.95"], failures

    # audit/ removed from an export that held one.
    shutil.rmtree(edit(exported, "manifest.json", lambda m: None) / "audit")
    stripped = tmp_path / f"export-{len(list(tmp_path.iterdir())) - 1}"
    assert any(f.startswith("FAIL audit: missing") for f in verify(stripped)), verify(stripped)

    # A revoked version whose recorded states are edited back to released.
    chain.releaser.revoke("fraud/m@1", "leaked weights")
    revoked = export_evidence(chain.admin, "fraud/m@1", tmp_path / "revoked")
    assert "FAIL state: fraud/m@1 was revoked when it was exported" in verify(revoked)
    unrevoked = edit(revoked, "versions.json", lambda v: entry("fraud/m@1")(v).update(
        state="released"))  # fmt: skip
    document = json.loads((unrevoked / "manifest.json").read_text())
    (unrevoked / "manifest.json").write_text(json.dumps({**document, "state": "released"}))
    failures = verify(unrevoked)
    assert any(f.startswith("FAIL audit: fraud/m@1 was revoked") for f in failures), failures
    # The registry-signed revocation says so too, with or without the audit log.
    shutil.rmtree(unrevoked / "audit")
    failures = verify(unrevoked, require_audit=False)
    assert any(f.startswith("FAIL state: fraud/m@1 was revoked at") for f in failures), failures


def test_a_stolen_registry_key_cannot_forge_a_verified_export(chain: Chain, tmp_path: Path) -> None:
    """Attacker: a thief of the registry's signing key writing an export whose every statement
    (OMS, provenance, evaluation, scans, releases, checkpoint) it signed itself. The releases
    verify against the auditor's registry key, but the registry key is no signer of user
    evidence offline either (as online: test_release's test_a_stolen_registry_key_cannot_release);
    the genuine export verifies under the same trust and policy (the acceptance)."""
    from registry.server.services.keys import load_registry_signer

    exported = export_evidence(chain.admin, "fraud/m@1", tmp_path / "export")
    forged = tmp_path / "forged"
    _forge(exported, forged, load_registry_signer(chain.live.settings))  # type: ignore[arg-type]
    lines = ["identities:\n"]
    for name, signer in (("training-ci", chain.training), ("eval-ci", chain.evaluation),
                         ("data-pipeline", chain.data)):  # fmt: skip
        (tmp_path / f"{name}.pub").write_bytes(keys.public_pem(signer.public_key))
        lines.append(f"  {name}: {{key: {name}.pub}}\n")
    auditor = parse_trust("".join(lines), tmp_path)
    lax = ANYONE.replace('">= 0.95"', '">= 0.90"').replace("true", "false")
    real = _registry_key(chain.live)
    failures = _failed(verify_evidence(forged, trust=auditor, policy_text=lax, registry_key=real))
    for link in ("signature", "provenance", "evaluation"):
        assert any(f.startswith(f"FAIL {link}: signed only by the registry's own key")
                   for f in failures), failures  # fmt: skip
    assert not any(f.startswith("FAIL release") for f in failures), failures
    genuine = verify_evidence(exported, trust=auditor, policy_text=lax, registry_key=real)
    assert genuine.ok, _failed(genuine)
