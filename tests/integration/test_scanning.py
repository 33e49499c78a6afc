"""Scanning on push: unsafe files reject the version, every version gets a registry-signed scan
attestation that verifies against the registry's published key."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import httpx
import numpy as np

from attest.bundle import Bundle
from attest.keys import TrustedKey
from attest.verifying import Verifier
from registry.services.scanning import SCAN_PREDICATE_TYPE
from tests import scan_corpus as corpus
from tests.conftest import Live, run_cli


def _registry_verifier(live: Live) -> Verifier:
    key = httpx.get(f"{live.url}/v1/registry/key").json()
    trusted = TrustedKey.from_pem("registry", key["public_key_pem"].encode())
    assert key["fingerprint"] == f"sha256:{trusted.fingerprint}"
    return Verifier(keys=[trusted])


def _scan_statement(live: Live, ref: str) -> dict[str, object]:
    with live.client() as client:
        [scan] = client.list_attestations(ref, SCAN_PREDICATE_TYPE)
        raw = client.get_attestation(ref, scan.id)
    verified = _registry_verifier(live).verify(Bundle.parse(raw))
    assert verified.statement.predicate_type == SCAN_PREDICATE_TYPE
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
