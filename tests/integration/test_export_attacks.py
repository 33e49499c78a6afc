"""Attacks on ``verify-evidence`` by a malicious export (docs/threat-model.md), each with its
acceptance: the honest case beside it still verifies.

The exports here are written from scratch with the attest library, as an attacker writes them:
no registry code is involved, and the registry key is one the test generated and then "stole".
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives.asymmetric import ed25519

from attest import keys, note, tlog
from attest.auditlog import GENESIS, entry_hash
from attest.bundle import Bundle
from attest.digests import FileDigest, manifest_digest, root_digest
from attest.evidence import FORMAT, log_proof_name, verify_evidence
from attest.gate import DEPENDENCY_SCHEME
from attest.keys import TrustedKey
from attest.oms import oms_statement
from attest.predicates import (
    AUDIT_CHECKPOINT,
    LOG_KEY,
    RELEASE,
    SCAN,
    SLSA_PROVENANCE,
    TEST_RESULT,
)
from attest.scan.core import MIN_RULESET
from attest.signing import KeySigner
from attest.statement import make_statement
from attest.tlogproof import TlogProof, write_entries
from tests.support import run_cli

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
    scan: clean
"""

UNANCHORED_SIGNERS = "signer identities taken from the export; bring --trust FILE to verify them"


def _verified_anywhere(stdout: str) -> bool:
    return "VERIFIED" in stdout.replace("NOT VERIFIED", "")


class Forger:
    """Writes an export whose every statement the given keys signed: user evidence by
    ``signers`` (name -> signer), registry statements (scans, releases, checkpoint, the
    statement vouching for a transparency log of its own) by ``registry``. Versions are added
    with :meth:`version`; :meth:`write` lays the export out."""

    def __init__(self, registry: KeySigner, signers: dict[str, KeySigner], policy: str) -> None:
        self.registry = registry
        self.signers = signers
        self.policy = policy
        self.bundles: list[tuple[str, Bundle]] = []
        self.versions: list[dict[str, Any]] = []
        self.releases: dict[str, Bundle] = {}
        self.oms: dict[str, Bundle] = {}
        self.contents: dict[str, dict[str, bytes]] = {}
        self.now = datetime.now(UTC).isoformat()

    def version(
        self,
        ref: str,
        kind: str,
        contents: dict[str, bytes],
        *,
        signer: str,
        evaluator: str | None = None,
        deps: tuple[tuple[str, str, str], ...] = (),  # (ref, hex digest, role)
        release: bool = True,
        pushed_by: str = "training-bot",
    ) -> str:
        """Add a version; returns its root digest (hex)."""
        name = ref.split("@", 1)[0]
        files = tuple(
            FileDigest(path, len(data), hashlib.sha256(data).hexdigest())
            for path, data in sorted(contents.items())
        )
        digest = root_digest(files)
        self.contents[ref] = contents

        def statement(predicate_type: str, predicate: dict[str, Any]) -> Any:
            return make_statement(name=name, root_digest=digest, predicate_type=predicate_type,
                                  predicate=predicate)  # fmt: skip

        user = self.signers[signer]
        oms = user.sign(oms_statement(name, files))
        provenance = user.sign(statement(SLSA_PROVENANCE, {
            "buildDefinition": {
                "buildType": "https://modelseal.dev/training/v1", "externalParameters": {},
                "resolvedDependencies": [
                    {"uri": f"{DEPENDENCY_SCHEME}{d}", "digest": {"sha256": h}, "name": role}
                    for d, h, role in deps
                ],
            },
            "runDetails": {"builder": {"id": "https://modelseal.dev/builders/cli"}},
        }))  # fmt: skip
        scan = self.registry.sign(statement(SCAN, {
            "files": [{"digest": f"sha256:{f.sha256}", "findings": [], "format": "safetensors",
                       "path": f.path, "pickle": False, "verdict": "clean"} for f in files],
            "scanner": {"name": "modelseal-scan", "ruleset": MIN_RULESET, "version": "2.0"},
            "verdict": "clean",
        }))  # fmt: skip
        cited = [(scan, "registry", self.registry), (oms, signer, user),
                 (provenance, signer, user)]  # fmt: skip
        if evaluator is not None:
            evaluation = self.signers[evaluator].sign(statement(TEST_RESULT, {
                "result": "PASSED", "passedTests": [], "failedTests": [], "warnedTests": [],
                "metrics": {"accuracy": 0.99}}))  # fmt: skip
            cited.append((evaluation, evaluator, self.signers[evaluator]))
        for bundle, _, _ in cited:
            self.bundles.append((ref, bundle))
        self.oms[ref] = oms
        if release:
            self.releases[ref] = self.registry.sign(statement(RELEASE, {
                "version": ref, "kind": kind, "pushedBy": pushed_by,
                "manifestSha256": manifest_digest(files), "releasedAt": self.now,
                "releasedBy": "release-bot",
                "policy": {"revision": 1,
                           "sha256": hashlib.sha256(self.policy.encode()).hexdigest()},
                "evidence": [{"predicateType": b.statement().predicate_type,
                              "bundleSha256": b.digest, "signer": s.identity, "signerName": n}
                             for b, n, s in cited],
            }))  # fmt: skip
            self.bundles.append((ref, self.releases[ref]))
        self.versions.append({
            "ref": ref, "kind": kind, "root_digest": f"sha256:{digest}",
            "state": "released" if release else "pending", "external": False,
            "pushed_by": pushed_by,
            "files": [{"path": f.path, "size": f.size, "sha256": f"sha256:{f.sha256}"}
                      for f in files],
        })  # fmt: skip
        return digest

    def write(self, out: Path, root: str, *, registry_url: str = "http://127.0.0.1:8799") -> Path:
        (out / "evidence").mkdir(parents=True)
        (out / "policies").mkdir()
        (out / "audit").mkdir()
        (out / "files").mkdir()
        for path, data in self.contents[root].items():
            (out / "files" / path).write_bytes(data)
        for i, (ref, bundle) in enumerate(self.bundles):
            (out / "evidence" / f"{ref.replace('/', '.')}.{i}.sigstore.json").write_bytes(
                bundle.raw
            )
        (out / "release.sigstore.json").write_bytes(self.releases[root].raw)
        (out / "model.sig").write_bytes(self.oms[root].raw)
        (out / "registry.pub").write_bytes(keys.public_pem(self.registry.public_key))
        for namespace in {v["ref"].split("/", 1)[0] for v in self.versions}:
            (out / "policies" / f"{namespace}.r1.yaml").write_text(self.policy)
        (out / "policy.yaml").write_text(self.policy)
        [entry] = [v for v in self.versions if v["ref"] == root]
        manifest = {"format": FORMAT, "ref": root, "kind": entry["kind"],
                    "root_digest": entry["root_digest"], "state": entry["state"],
                    "files": entry["files"], "registry": registry_url,
                    "exported_at": self.now, "audit": "included"}  # fmt: skip
        (out / "manifest.json").write_text(json.dumps(manifest))
        (out / "versions.json").write_text(json.dumps(self.versions))
        (out / "trust.yaml").write_text(yaml.safe_dump({
            "identities": {n: {"key_pem": keys.public_pem(s.public_key).decode()}
                           for n, s in self.signers.items()},
            "registry": {"key": "registry.pub"},
        }))  # fmt: skip
        # A fabricated audit log, chained and under a checkpoint the registry key signed.
        namespace, rest = root.split("/", 1)
        name, version = rest.split("@", 1)
        path = f"/v1/namespaces/{namespace}/artifacts/{name}/versions/{version}"
        prev, entries = GENESIS, []
        for seq, action, target in ((1, "put_version", path),
                                    (2, "release_version", f"{path}/release")):  # fmt: skip
            entry = {"seq": seq, "at": self.now, "actor": "release-bot", "action": action,
                     "target": target, "outcome": "ok", "request_id": "x",
                     "details": {}}  # fmt: skip
            entry["prev_hash"] = prev
            entry["hash"] = prev = entry_hash(prev, entry)
            entries.append(entry)
        (out / "audit" / "entries.json").write_text(json.dumps(entries))
        checkpoint = self.registry.sign(make_statement(
            name="modelseal/audit-log", root_digest=prev, predicate_type=AUDIT_CHECKPOINT,
            predicate={"count": len(entries), "at": self.now}))  # fmt: skip
        (out / "audit" / "checkpoint.sigstore.json").write_bytes(checkpoint.raw)
        self._write_log(out / "log")
        return out

    def _write_log(self, out: Path) -> None:
        """A transparency log of the forger's own, its key vouched for by the registry key: one
        release entry per released version, each proven in one checkpoint (C2SP tlog-proof)."""
        log = note.NoteSigner("forged/log", ed25519.Ed25519PrivateKey.generate())
        vkey = log.verifier.vkey
        out.mkdir()
        binding = make_statement(
            name="log:forged/log",
            root_digest=hashlib.sha256(vkey.encode()).hexdigest(),
            predicate_type=LOG_KEY,
            predicate={"origin": "forged/log", "vkey": vkey},
        )
        (out / "log-key.sigstore.json").write_bytes(self.registry.sign(binding).raw)
        (out / "log.vkey").write_text(vkey + "\n")
        digests = {v["ref"]: v["root_digest"] for v in self.versions}
        entries = {
            ref: json.dumps(
                {"v": 1, "type": "release", "action": "release_version", "actor": "release-bot",
                 "at": self.now, "subject": ref, "root_digest": digests[ref],
                 "statement_sha256": bundle.digest},
                sort_keys=True, separators=(",", ":"),
            ).encode()
            for ref, bundle in self.releases.items()
        }  # fmt: skip
        tree = tlog.MemoryTree(tlog.leaf_hash(e) for e in entries.values())
        stamp = int(datetime.fromisoformat(self.now).timestamp())
        signed = note.sign_checkpoint(note.Checkpoint("forged/log", tree.size, tree.root(), stamp),
                                      log)  # fmt: skip
        for index, (ref, entry) in enumerate(entries.items()):
            proof = TlogProof(index, tuple(tree.inclusion_proof(index)), signed, entry)
            (out / log_proof_name(ref)).write_bytes(proof.serialize())
        (out / "entries").write_bytes(write_entries(0, list(entries.values())))


def _pub(path: Path, signer: KeySigner) -> Path:
    path.write_bytes(keys.public_pem(signer.public_key))
    return path


def _failed(verdict: Any) -> list[str]:
    return [str(c) for c in verdict.checks if not c.ok]


# -- hole: a stolen registry key named its own signers -------------------------------------------


def test_a_stolen_registry_key_alone_never_yields_verified(tmp_path: Path) -> None:
    """Attacker: a thief of the registry's signing key writing a malicious export: a pickle that
    runs code, fresh keys signing OMS, provenance and evaluation, a scan and a release signed with
    the stolen key naming the fresh keys as training-ci and eval-ci, and a fabricated audit log
    under a checkpoint signed with it. The auditor brings the registry key (it is the real one)
    and a policy, but no signers of their own: the identities are the export's word, so the
    verdict is at most UNANCHORED, never VERIFIED. With the auditor's own trust the forgery
    fails; the honest export under the same trust verifies (the acceptance)."""
    registry = KeySigner(keys.generate())  # the registry's key, stolen
    forger = Forger(registry, {"training-ci": KeySigner(keys.generate()),
                               "eval-ci": KeySigner(keys.generate())}, POLICY)  # fmt: skip
    forger.version("fraud/evil@1", "model", {"model.pkl": b"cos\nsystem\n(S'echo pwned'\ntR."},
                   signer="training-ci", evaluator="eval-ci")  # fmt: skip
    forged = forger.write(tmp_path / "forged", "fraud/evil@1")
    registry_pub = _pub(tmp_path / "registry.pub", registry)
    (tmp_path / "policy.yaml").write_text(POLICY)
    anchor = TrustedKey.from_pem("registry", registry_pub.read_bytes())

    verdict = verify_evidence(forged, registry_key=anchor, policy_text=POLICY)
    assert not verdict.ok and not verdict.anchored, [str(c) for c in verdict.checks]
    cli = run_cli("verify-evidence", str(forged), "--registry-key", str(registry_pub),
                  "--policy", str(tmp_path / "policy.yaml"), cwd=tmp_path)  # fmt: skip
    assert not _verified_anywhere(cli.stdout), cli.stdout
    assert cli.returncode == 3, cli.stdout + cli.stderr
    assert "UNANCHORED" in cli.stdout and UNANCHORED_SIGNERS in cli.stdout, cli.stdout

    # The auditor's own signers: the thief's keys are nobody's.
    training, evaluation = KeySigner(keys.generate()), KeySigner(keys.generate())
    _pub(tmp_path / "training-ci.pub", training)
    _pub(tmp_path / "eval-ci.pub", evaluation)
    (tmp_path / "trust.yaml").write_text(
        "identities:\n  training-ci: {key: training-ci.pub}\n  eval-ci: {key: eval-ci.pub}\n"
    )
    refused = run_cli("verify-evidence", str(forged), "--registry-key", str(registry_pub),
                      "--trust", str(tmp_path / "trust.yaml"), cwd=tmp_path)  # fmt: skip
    assert refused.returncode == 1 and "FAIL signature: missing" in refused.stdout, refused.stdout

    honest = Forger(registry, {"training-ci": training, "eval-ci": evaluation}, POLICY)
    honest.version("fraud/good@1", "model", {"model.safetensors": b"\x08\x00\x00\x00"},
                   signer="training-ci", evaluator="eval-ci")  # fmt: skip
    exported = honest.write(tmp_path / "honest", "fraud/good@1")
    genuine = run_cli("verify-evidence", str(exported), "--registry-key", str(registry_pub),
                      "--trust", str(tmp_path / "trust.yaml"), cwd=tmp_path)  # fmt: skip
    assert genuine.returncode == 0, genuine.stdout + genuine.stderr
    assert genuine.stdout.rstrip().endswith("VERIFIED")
    bare = run_cli("verify-evidence", str(exported), "--registry-key", str(registry_pub),
                   cwd=tmp_path)  # fmt: skip
    assert bare.returncode == 3 and UNANCHORED_SIGNERS in bare.stdout, bare.stdout


# -- hole: unsigned fields chose the policy of an unreleased dependency ---------------------------

#: The auditor's policy: the model may build on unreleased versions, each judged by its kind.
ANY_DEPENDENCY = """\
model:
  require: {signature: [training-ci], provenance: [training-ci], scan: clean}
  dependencies: any
dataset:
  require: {signature: [data-pipeline], provenance: [data-pipeline], scan: clean}
code:
  require: {signature: ["*"], provenance: ["*"], scan: clean}
"""


def _with_unreleased_dataset(
    tmp_path: Path, name: str, role: str = "dataset"
) -> tuple[Path, TrustedKey, Any]:
    """A released model built on an unreleased dataset that training-ci (not data-pipeline)
    signed; returns the export, the registry key and the auditor's trust."""
    from attest.trust import parse_trust

    registry = KeySigner(keys.generate())
    signers = {n: KeySigner(keys.generate()) for n in ("training-ci", "data-pipeline")}
    forger = Forger(registry, signers, ANY_DEPENDENCY)
    data = forger.version("fraud/tx@9", "dataset", {"tx.csv": b"id,amount\n1,5\n"},
                          signer="training-ci", release=False)  # fmt: skip
    forger.version("fraud/m@1", "model", {"model.safetensors": b"\x08\x00\x00\x00"},
                   signer="training-ci", deps=(("fraud/tx@9", data, role),))  # fmt: skip
    exported = forger.write(tmp_path / name, "fraud/m@1")
    for n, signer in signers.items():
        _pub(tmp_path / f"{n}.pub", signer)
    trust = parse_trust("identities:\n  training-ci: {key: training-ci.pub}\n"
                        "  data-pipeline: {key: data-pipeline.pub}\n", tmp_path)  # fmt: skip
    return exported, TrustedKey.from_pem("registry", keys.public_pem(registry.public_key)), trust


def _edit_json(path: Path, change: Any) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def test_an_unsigned_kind_does_not_pick_the_policy_of_an_unreleased_dependency(
    tmp_path: Path,
) -> None:
    """Attacker: a malicious export editing versions.json so that an unreleased dataset (the
    policy accepts unreleased dependencies) is judged as code, whose section is lax. Its kind is
    the one the model's signed provenance gives it (role dataset); versions.json disagreeing is
    named. The unedited export fails the same way (the acceptance: it is the dataset section
    that judges)."""
    exported, registry, trust = _with_unreleased_dataset(tmp_path, "export")
    honest = _failed(verify_evidence(exported, trust=trust, registry_key=registry,
                                     policy_text=ANY_DEPENDENCY))  # fmt: skip
    assert any(f.startswith("FAIL dependency fraud/tx@9 -> signature: signed by")
               and "[data-pipeline]" in f for f in honest), honest  # fmt: skip

    def as_code(versions: list[dict[str, Any]]) -> None:
        next(v for v in versions if v["ref"] == "fraud/tx@9")["kind"] = "code"

    _edit_json(exported / "versions.json", as_code)
    failures = _failed(verify_evidence(exported, trust=trust, registry_key=registry,
                                       policy_text=ANY_DEPENDENCY))  # fmt: skip
    assert any(f.startswith("FAIL dependency fraud/tx@9 -> signature: signed by")
               and "[data-pipeline]" in f for f in failures), failures  # fmt: skip
    assert any(f.startswith("FAIL versions.json: fraud/tx@9: kind 'code'") for f in failures), (
        failures
    )


def test_a_dependency_whose_kind_nothing_signs_is_not_judged(tmp_path: Path) -> None:
    """Attacker: a malicious export whose unreleased dependency has no known role in the signed
    provenance (a role the registry would refuse) and no release: versions.json's kind is all
    there is, so the dependency is refused, named, rather than judged by the section that kind
    picks."""
    exported, registry, trust = _with_unreleased_dataset(tmp_path, "export", role="weights")

    def as_code(versions: list[dict[str, Any]]) -> None:
        next(v for v in versions if v["ref"] == "fraud/tx@9")["kind"] = "code"

    _edit_json(exported / "versions.json", as_code)
    verdict = verify_evidence(exported, trust=trust, registry_key=registry,
                              policy_text=ANY_DEPENDENCY)  # fmt: skip
    failures = _failed(verdict)
    assert not verdict.ok
    assert any(f.startswith("FAIL dependency fraud/tx@9: its kind is signed nowhere")
               for f in failures), failures  # fmt: skip


def test_an_unreleased_dependency_is_judged_by_the_auditors_policy_only(tmp_path: Path) -> None:
    """Attacker: a malicious export whose policy.yaml (hashed by no release) is lax for the
    unreleased dataset. Without the auditor's --policy no signed policy covers the dependency:
    it is refused, named; with --policy it is judged by the auditor's (the acceptance: the
    dataset section fails it)."""
    exported, registry, trust = _with_unreleased_dataset(tmp_path, "export")
    (exported / "policy.yaml").write_text(ANY_DEPENDENCY.replace("[data-pipeline]", '["*"]'))
    failures = _failed(verify_evidence(exported, trust=trust, registry_key=registry))
    assert any(f.startswith("FAIL dependency fraud/tx@9:") and "--policy" in f
               for f in failures), failures  # fmt: skip
    judged = _failed(verify_evidence(exported, trust=trust, registry_key=registry,
                                     policy_text=ANY_DEPENDENCY))  # fmt: skip
    assert any(f.startswith("FAIL dependency fraud/tx@9 -> signature: signed by")
               for f in judged), judged  # fmt: skip


# -- hole: the export's unsigned registry URL chose which pinned key anchors -------------------


def test_the_exports_registry_url_does_not_pick_among_pinned_keys(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Attacker: a malicious export from another registry this auditor once pinned (a staging
    registry whose key the attacker holds), naming that registry in its unsigned manifest.json.
    With two registry keys pinned, the export does not choose: the auditor says which with
    --registry-key or --registry URL; the export anchored on the registry it really came from
    verifies (the acceptance)."""
    from registry.sdk.pins import PinStore

    production, staging = KeySigner(keys.generate()), KeySigner(keys.generate())
    training = KeySigner(keys.generate())
    _pub(tmp_path / "training-ci.pub", training)
    (tmp_path / "trust.yaml").write_text("identities:\n  training-ci: {key: training-ci.pub}\n")
    (tmp_path / "policy.yaml").write_text(ANY_DEPENDENCY)
    forger = Forger(staging, {"training-ci": training}, ANY_DEPENDENCY)
    forger.version("fraud/m@1", "model", {"model.safetensors": b"\x08\x00\x00\x00"},
                   signer="training-ci")  # fmt: skip
    exported = forger.write(tmp_path / "export", "fraud/m@1",
                            registry_url="https://staging.example")  # fmt: skip
    config = tmp_path / "auditor-config"
    monkeypatch.setenv("MODELSEAL_CONFIG_DIR", str(config))
    pins = PinStore()
    for url, signer in (("https://registry.example", production),
                        ("https://staging.example", staging)):  # fmt: skip
        key = TrustedKey("registry", signer.public_key)
        pins.pin_registry_key(url, key.fingerprint, keys.public_pem(signer.public_key).decode())
    mine = ["--trust", str(tmp_path / "trust.yaml"), "--policy", str(tmp_path / "policy.yaml")]

    chosen = run_cli("verify-evidence", str(exported), *mine, cwd=tmp_path)
    assert chosen.returncode == 1 and not _verified_anywhere(chosen.stdout), chosen.stdout
    assert "--registry-key" in chosen.stderr and "--registry URL" in chosen.stderr, chosen.stderr
    assert "https://registry.example" in chosen.stderr, chosen.stderr

    production_anchor = run_cli("verify-evidence", str(exported), *mine,
                                "--registry", "https://registry.example", cwd=tmp_path)  # fmt: skip
    assert production_anchor.returncode == 1, production_anchor.stdout
    assert "FAIL release: does not verify" in production_anchor.stdout
    unknown = run_cli("verify-evidence", str(exported), *mine,
                      "--registry", "https://elsewhere.example", cwd=tmp_path)  # fmt: skip
    assert unknown.returncode == 1 and "https://elsewhere.example" in unknown.stderr

    staging_anchor = run_cli("verify-evidence", str(exported), *mine,
                             "--registry", "https://staging.example", cwd=tmp_path)  # fmt: skip
    assert staging_anchor.returncode == 0, staging_anchor.stdout + staging_anchor.stderr
    assert "the key pinned for https://staging.example" in staging_anchor.stdout
    _pub(tmp_path / "staging.pub", staging)
    by_key = run_cli("verify-evidence", str(exported), *mine,
                     "--registry-key", str(tmp_path / "staging.pub"), cwd=tmp_path)  # fmt: skip
    assert by_key.returncode == 0, by_key.stdout + by_key.stderr
