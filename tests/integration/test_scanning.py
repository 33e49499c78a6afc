"""Scanning on push: unsafe files reject the version, every version gets a registry-signed scan
attestation that verifies against the registry's published key."""

from __future__ import annotations

import json
import pickle
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from attest.bundle import Bundle
from attest.keys import TrustedKey
from attest.predicates import RELEASE, SCAN
from attest.verifying import Verifier
from registry.errors import (
    ConflictError,
    PermissionDeniedError,
    PullVerificationError,
    ReleaseRefusedError,
    VersionUnavailableError,
)
from registry.sdk.client import RegistryClient
from registry.sdk.lineage import verified_bom
from registry.server.db import make_engine, make_sessionmaker
from registry.server.services import Role, TokenService
from sbom import validate_bom
from tests import scan_corpus as corpus
from tests.integration.test_release import World
from tests.support import Live, run_cli


def _registry_verifier(live: Live) -> Verifier:
    key = httpx.get(f"{live.url}/v1/registry/key").json()
    trusted = TrustedKey.from_pem("registry", key["public_key_pem"].encode())
    assert key["fingerprint"] == f"sha256:{trusted.fingerprint}"
    return Verifier(keys=[trusted])


def _scan_statement(live: Live, ref: str) -> dict[str, object]:
    with live.client() as client:
        [scan] = client.list_attestations(ref, SCAN)
        raw = client.get_attestation(ref, scan.id)
    verified = _registry_verifier(live).verify(Bundle.parse(raw))
    assert verified.statement.predicate_type == SCAN
    return {"subject": verified.statement.subject.sha256, **verified.statement.predicate}


def test_clean_push_stays_pending_with_a_signed_clean_scan(live: Live, model_dir: Path) -> None:
    with live.client() as client:
        version = client.push(model_dir, "vision/tiny@1")
    assert version.state == "pending"
    statement = _scan_statement(live, "vision/tiny@1")
    assert statement["subject"] == version.root_digest.removeprefix("sha256:")
    assert statement["verdict"] == "clean"
    files = {f["path"]: f for f in statement["files"]}  # type: ignore[attr-defined]
    assert set(files) == {f.path for f in version.files}
    shard = next(p for p in files if p.endswith(".safetensors"))
    assert files[shard]["format"] == "safetensors"
    assert files[shard]["digest"] == next(f.digest for f in version.files if f.path == shard)


def test_a_malicious_pickle_rejects_the_version_and_never_runs(
    live: Live, model_dir: Path, tmp_path: Path
) -> None:
    sentinel = tmp_path / "PWNED"
    rce = pickle.dumps(corpus.malicious_payloads(sentinel)["os.system"], protocol=2)
    (model_dir / "pytorch_model.bin").write_bytes(corpus.torch_zip(rce))
    with live.client() as client:
        version = client.push(model_dir, "vision/tiny@1")
        assert version.state == "rejected"
        assert "pytorch_model.bin" in (version.state_reason or "")
        assert "posix.system" in (version.state_reason or "")
        assert client.show("vision/tiny@1").state == "rejected"
        again = client.push(model_dir, "vision/tiny@1")  # idempotent: still rejected
        assert again.state == "rejected"
    statement = _scan_statement(live, "vision/tiny@1")
    assert statement["verdict"] == "unsafe"
    assert not sentinel.exists()


def test_onnx_external_data_must_be_in_the_version(live: Live, tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.mkdir()
    (good / "model.onnx").write_bytes(corpus.onnx_model("weights.bin"))
    (good / "weights.bin").write_bytes(np.zeros(4, dtype=np.float32).tobytes())
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.onnx").write_bytes(corpus.onnx_model("weights.bin"))  # data not pushed
    with live.client() as client:
        assert client.push(good, "vision/onnx@1").state == "pending"
        rejected = client.push(bad, "vision/onnx@2")
    assert rejected.state == "rejected"
    assert "not a regular file of the version" in (rejected.state_reason or "")


def test_cli_push_of_an_unsafe_model_exits_1(live: Live, model_dir: Path, tmp_path: Path) -> None:
    (model_dir / "evil.pkl").write_bytes(
        pickle.dumps(corpus.malicious_payloads(tmp_path / "x")["builtins.exec"], protocol=0)
    )
    result = run_cli("push", str(model_dir), "ns/m@1", "--no-progress", live=live)
    assert result.returncode == 1
    assert "rejected" in result.stderr and "evil.pkl" in result.stderr
    shown = run_cli("show", "ns/m@1", "--json", live=live)
    assert json.loads(shown.stdout)["state"] == "rejected"


# -- fail closed on the real service, under the default policy ----------------------------------


@pytest.fixture
def world(live: Live, tmp_path: Path) -> World:
    return World(live, tmp_path)


DEFAULT_LIKE = "model:\n  require:\n    signature: ['*']\n    provenance: ['*']\n"


def _deployer(world: World, namespace: str) -> RegistryClient:
    engine = make_engine(world.live.settings.resolved_database_url)
    secret = (
        TokenService(make_sessionmaker(engine))
        .create(name=f"deploy-{namespace}", role=Role.DEPLOYER, namespace=namespace)
        .secret
    )
    engine.dispose()
    return world.live.client(token=secret)


def test_a_headerless_pickle_with_valid_evidence_is_never_released_or_pulled(
    world: World, tmp_path: Path
) -> None:
    """Attacker: a malicious uploader (docs/threat-model.md). A pickle without a PROTO header,
    pushed as model.pkl with a valid OMS signature and provenance under the default policy."""
    sentinel = tmp_path / "PWNED"
    payload = corpus.bypass_corpus(sentinel)["headerless.pkl"]
    world.model("vision/m@1", accuracy=None, extra={"model.pkl": payload})
    shown = world.admin.show("vision/m@1")
    assert shown.state == "rejected"
    assert "model.pkl (pickle imports os.system (not allowlisted)" in (shown.state_reason or "")
    with pytest.raises(ConflictError, match="is rejected"):
        world.admin.release("vision/m@1")
    deployer = _deployer(world, "vision")
    for pending in (False, True):
        with pytest.raises((PullVerificationError, PermissionDeniedError)):
            deployer.pull("vision/m@1", tmp_path / "deploy", pending=pending)
    assert not (tmp_path / "deploy").exists()
    assert not sentinel.exists()


def test_unknown_files_wait_for_a_policy_that_names_them(world: World, tmp_path: Path) -> None:
    blob = random.Random(7).randbytes(4096)  # fixed: random bytes may happen to parse as a stream
    world.model("vision/m@1", accuracy=None, extra={"weights.bin": blob})
    assert world.admin.show("vision/m@1").state == "pending"
    with pytest.raises(ReleaseRefusedError) as refused:
        world.admin.release("vision/m@1")
    [reason] = refused.value.facts["reasons"]
    assert reason.startswith("scan: weights.bin: unknown format, not positively identified")
    world.admin.set_policy("vision", DEFAULT_LIKE + "    scan: {allow_formats: [unknown]}\n")
    assert world.admin.release("vision/m@1").state == "released"
    [release] = world.admin.list_attestations("vision/m@1", RELEASE)
    raw = world.admin.get_attestation("vision/m@1", release.id)
    predicate = _registry_verifier(world.live).verify(Bundle.parse(raw)).statement.predicate
    assert predicate["acceptedUnknown"] == ["weights.bin"]  # named where auditors read
    bom = verified_bom(world.admin, "vision/m@1")
    validate_bom(bom)
    files = {}
    stack = [bom["metadata"]["component"], *bom.get("components", [])]
    while stack:
        component = stack.pop()
        stack.extend(component.get("components", []))
        if component["type"] == "file":
            files[component["name"]] = {p["name"]: p["value"] for p in component["properties"]}
    assert files["weights.bin"]["modelseal:scan:verdict"] == "unknown"
    assert files["weights.bin"]["modelseal:scan:format"] == "unknown"
    shard = next(name for name in files if name.endswith(".safetensors"))
    assert files[shard]["modelseal:scan:verdict"] == "clean"
    deployer = _deployer(world, "vision")
    deployer.pull("vision/m@1", tmp_path / "deploy")
    assert (tmp_path / "deploy" / "weights.bin").stat().st_size == 4096


def test_an_unscannable_file_rejects_its_version_and_is_served_to_nobody(
    world: World, tmp_path: Path
) -> None:
    """Attacker: a malicious uploader (docs/threat-model.md). A file the scanner cannot read to
    its end (here a bz2 bomb; a pickle padded past the opcode limit before its call is the same
    verdict) may hide code past where the reading stopped. No policy accepts it, so it is
    rejected like an unsafe file: kept pending, its files would be served to the namespace's
    producers and evaluation jobs."""
    world.model("vision/m@1", accuracy=None, extra={"state.pkl.bz2": corpus.bz2_bomb()})
    shown = world.admin.show("vision/m@1")
    assert shown.state == "rejected"
    assert shown.state_reason == ("scan: unscannable files: state.pkl.bz2 (bz2 stream inflates "
                                  "past 4194304 bytes (decompression bomb))")  # fmt: skip
    everything = "unknown, pickle"
    world.admin.set_policy("vision", f"{DEFAULT_LIKE}    scan: {{allow_formats: [{everything}]}}\n")
    with pytest.raises(ConflictError, match="is rejected"):
        world.admin.release("vision/m@1")
    for pending in (False, True):
        with pytest.raises((PullVerificationError, VersionUnavailableError)):
            world.admin.pull("vision/m@1", tmp_path / "eval", pending=pending)
    single = httpx.get(
        f"{world.live.url}/v1/namespaces/vision/artifacts/m/versions/1/files/state.pkl.bz2",
        headers={"Authorization": f"Bearer {world.live.admin_token}"}, timeout=60,
    )  # fmt: skip
    assert single.status_code == 410, single.text
    assert single.json()["type"].endswith("/version-unavailable")
    assert not (tmp_path / "eval").exists()


# -- a registry upgraded past a ruleset bump ---------------------------------------------------


def _stale_scan(world: World, ref: str, *, state: str | None = None) -> None:
    """What an older registry left behind: a registry-signed scan under an older ruleset that
    called every file clean, as the newest scan of ``ref`` (and, with ``state``, the state the
    older registry gave the version)."""
    from datetime import UTC, datetime

    from sqlalchemy import select, update

    from attest.statement import make_statement
    from registry.server.models import Artifact, Attestation, Namespace, Version
    from registry.server.services.keys import load_registry_signer

    settings = world.live.settings
    signer = load_registry_signer(settings)
    record = world.admin.show(ref)
    digest = record.root_digest.removeprefix("sha256:")
    files = [{"path": f.path, "format": "unknown", "verdict": "clean", "findings": [],
              "pickle": False} for f in record.files]  # fmt: skip
    predicate = {"scanner": {"name": "modelseal-scan", "version": "1.0", "ruleset": "2026-11-26.1"},
                 "verdict": "clean", "files": files}  # fmt: skip
    bundle = signer.sign(make_statement(name=f"{record.namespace}/{record.name}",
                                        root_digest=digest, predicate_type=SCAN,
                                        predicate=predicate))  # fmt: skip
    engine = make_engine(settings.resolved_database_url)
    with make_sessionmaker(engine)() as session, session.begin():
        vid = session.execute(
            select(Version.id).join(Artifact).join(Namespace)
            .where(Namespace.name == record.namespace, Artifact.name == record.name,
                   Version.version == record.version)
        ).scalar_one()  # fmt: skip
        session.add(Attestation(version_id=vid, predicate_type=SCAN,
                                subject_digest=digest, bundle=bundle.raw,
                                bundle_digest=bundle.digest, signer="registry",
                                signer_id=signer.identity, created_at=datetime.now(UTC),
                                created_by="registry"))  # fmt: skip
        if state is not None:
            session.execute(update(Version).where(Version.id == vid)
                            .values(state=state, state_reason=None))  # fmt: skip
    engine.dispose()


def test_a_stale_clean_scan_is_redone_before_release(world: World, tmp_path: Path) -> None:
    """The older ruleset called a headerless pickle clean: releasing it now scans it again."""
    payload = corpus.bypass_corpus(tmp_path / "PWNED")["headerless.pkl"]
    world.model("vision/m@1", accuracy=None, extra={"model.pkl": payload})
    _stale_scan(world, "vision/m@1", state="pending")
    with pytest.raises(ConflictError, match="is rejected"):
        world.admin.release("vision/m@1")
    shown = world.admin.show("vision/m@1")
    assert shown.state == "rejected" and "os.system" in (shown.state_reason or "")


def test_a_stale_scan_of_a_benign_version_is_redone_and_it_releases(world: World) -> None:
    world.model("vision/m@1", accuracy=None)
    _stale_scan(world, "vision/m@1")
    assert world.admin.release("vision/m@1").state == "released"
    with world.live.client() as client:
        scans = client.list_attestations("vision/m@1", SCAN)
    assert len(scans) == 3  # the push's, the stale one, the new one


@contextmanager
def _newer_registry(world: World) -> Iterator[RegistryClient]:
    """A start on this registry's data (its start-up work under the lock, then a replica
    serving beside the running one), as the admin."""
    from registry.server.services.bootstrap import bootstrap
    from tests.support import replica

    assert bootstrap(world.live.settings) is None  # (no new admin token)
    with (
        replica(world.live.settings) as url,
        Live(url, world.live.admin_token, world.live.settings).client() as admin,
    ):
        yield admin


def _state_after(client: RegistryClient, ref: str, passing: str) -> str:
    """The state of ``ref`` once it is no longer ``passing`` (two minutes at most)."""
    deadline = time.monotonic() + 120
    while (state := client.show(ref).state) == passing:
        assert time.monotonic() < deadline, f"{ref} still {passing}"
        time.sleep(0.2)
    return state


def test_a_start_rescans_pending_versions_scanned_under_older_rules(
    world: World, tmp_path: Path
) -> None:
    """Attacker: a malicious uploader whose file an older registry left pending (its rules
    called it unscannable, which then kept a version pending and served it to producers). The
    first start on newer rules puts such a version back to scanning, so none of it is served,
    and its job judges it by the current rules: rejected. The decision is audited."""
    from sqlalchemy import select, update

    from attest.scan import RULESET
    from registry.server.models import AuditEntry, Version

    world.model("vision/m@1", accuracy=None, extra={"state.pkl.bz2": corpus.bz2_bomb()})
    world.model("vision/ok@1", accuracy=None)
    _stale_scan(world, "vision/m@1", state="pending")  # what the older registry left
    engine = make_engine(world.live.settings.resolved_database_url)
    with engine.begin() as conn:
        conn.execute(update(Version).where(Version.version == "1").values(scan_ruleset=None))
    # The newer registry starts on the same data (here beside the older one, a replica).
    with _newer_registry(world) as admin:
        assert _state_after(admin, "vision/m@1", "scanning") == "rejected"
        assert "unscannable" in (admin.show("vision/m@1").state_reason or "")
        assert _state_after(admin, "vision/ok@1", "scanning") == "pending"  # benign: pending
        single = httpx.get(
            f"{admin.base_url}/v1/namespaces/vision/artifacts/m/versions/1/files/state.pkl.bz2",
            headers={"Authorization": f"Bearer {world.live.admin_token}"}, timeout=60,
        )  # fmt: skip
        assert single.status_code == 410, single.text
    with engine.connect() as conn:
        audited = (
            conn.execute(select(AuditEntry.target).where(AuditEntry.action == "scan_outdated"))
            .scalars()
            .all()
        )
        rulesets = set(conn.execute(select(Version.scan_ruleset)).scalars())
    engine.dispose()
    assert sorted(t.split("/")[-1] for t in audited) == ["1", "1"]
    assert rulesets == {RULESET}


def test_a_start_rescans_released_versions_and_revokes_what_now_fails(
    world: World, tmp_path: Path
) -> None:
    """Attacker: a malicious uploader whose pickle an older registry's rules called clean and
    released. The first start on newer rules rescans released versions scanned under older
    ones (served meanwhile: deploys go on), and a file now found unsafe revokes the version
    with a registry-signed revocation; deployers are refused it from then on."""
    from sqlalchemy import select, update

    from attest.scan import RULESET
    from registry.server.models import AuditEntry, Version

    payload = corpus.bypass_corpus(tmp_path / "PWNED")["headerless.pkl"]
    world.model("vision/m@1", accuracy=None, extra={"model.pkl": payload})
    world.model("vision/ok@1", accuracy=None)
    world.admin.set_policy("vision", DEFAULT_LIKE)
    assert world.admin.release("vision/ok@1").state == "released"
    _stale_scan(world, "vision/m@1", state="released")  # what the older registry left
    engine = make_engine(world.live.settings.resolved_database_url)
    with engine.begin() as conn:
        conn.execute(update(Version).values(scan_ruleset=None))
    with _newer_registry(world) as admin:  # the start on newer rules
        assert _state_after(admin, "vision/m@1", "released") == "revoked"
        assert "os.system" in (admin.show("vision/m@1").state_reason or "")
        assert admin.show("vision/ok@1").state == "released"  # a benign release stays
    with engine.connect() as conn:
        actions = list(conn.execute(select(AuditEntry.action)).scalars())
        rulesets = set(conn.execute(select(Version.scan_ruleset)).scalars())
    engine.dispose()
    assert actions.count("scan_outdated") == 2 and "revoke" in " ".join(actions)
    assert rulesets == {RULESET}
    deployer = _deployer(world, "vision")
    with pytest.raises((PullVerificationError, VersionUnavailableError)):
        deployer.pull("vision/m@1", tmp_path / "deploy")


def test_a_pending_version_an_older_replica_scanned_is_not_served_until_scanned_again(
    world: World,
) -> None:
    """A rolling upgrade: a replica still on older code commits and scans a version after the
    newer replicas swept at their start. Asked for its files (REST or OCI), the registry
    answers 503 scan-pending, puts it back to scanning and has its job scan it again."""
    from sqlalchemy import select, update

    from attest.scan import RULESET
    from registry.server.models import Version

    world.model("vision/m@1", accuracy=None)
    engine = make_engine(world.live.settings.resolved_database_url)
    with engine.begin() as conn:  # what the older replica's scan left
        conn.execute(update(Version).values(scan_ruleset="2026-01-01.1"))
    file_url = f"{world.live.url}/v1/namespaces/vision/artifacts/m/versions/1/files/config.json"
    auth = {"Authorization": f"Bearer {world.live.admin_token}"}
    refused = httpx.get(file_url, headers=auth, timeout=60)
    assert refused.status_code == 503 and refused.json()["type"].endswith("/scan-pending")
    assert _state_after(world.admin, "vision/m@1", "scanning") == "pending"
    assert httpx.get(file_url, headers=auth, timeout=60).status_code == 200
    with engine.connect() as conn:
        assert set(conn.execute(select(Version.scan_ruleset)).scalars()) == {RULESET}
    engine.dispose()


def test_a_revocation_that_fails_after_a_rescan_is_tried_again(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rescan's report is stored before the revocation it calls for; a revocation that
    fails (its signer, the database) must not leave the version released under a current
    ruleset, where nothing would scan it again: it stays outdated, and its job tries again."""
    from sqlalchemy import update

    from registry.errors import ServiceUnavailableError
    from registry.server.models import Version
    from registry.server.services.releases import ReleaseService

    payload = corpus.bypass_corpus(tmp_path / "PWNED")["headerless.pkl"]
    world.model("vision/m@1", accuracy=None, extra={"model.pkl": payload})
    _stale_scan(world, "vision/m@1", state="released")
    engine = make_engine(world.live.settings.resolved_database_url)
    with engine.begin() as conn:
        conn.execute(update(Version).values(scan_ruleset=None))
    engine.dispose()
    revoke, failures = ReleaseService.revoke, []

    def failing_once(self: ReleaseService, *args: Any, **kwargs: Any) -> Any:
        if not failures:
            failures.append(1)
            raise ServiceUnavailableError("the signer is down")
        return revoke(self, *args, **kwargs)

    monkeypatch.setattr(ReleaseService, "revoke", failing_once)
    with _newer_registry(world) as admin:
        assert _state_after(admin, "vision/m@1", "released") == "revoked"
    assert failures == [1]
