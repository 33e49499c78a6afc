"""The ``modelseal`` command line, run as a user runs it (a subprocess) against a live server."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.peers import model_signing
from tests.support import Live, free_port, run_cli, self_signed

embedded = pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)


def run(
    live: Live | None, *args: str, token: str | None = None
) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, live=live, token=token)


def test_push_prints_the_root_digest_last_and_pull_restores_the_files(
    live: Live, model_dir: Path, tmp_path: Path
) -> None:
    (model_dir / ".git").mkdir()
    (model_dir / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    pushed = run(live, "push", str(model_dir), "vision/tiny@1.0.0", "--no-progress")
    assert pushed.returncode == 0, pushed.stderr
    digest = pushed.stdout.strip().splitlines()[-1]
    assert digest.startswith("sha256:") and len(digest) == 71
    assert "skipping .git" in pushed.stderr

    target = tmp_path / "deploy"
    pulled = run(
        live,
        "pull",
        "vision/tiny@1.0.0",
        "--to",
        str(target),
        "--no-progress",
        "--unsafe-skip-verify",
    )
    assert pulled.returncode == 0, pulled.stderr
    for source in model_dir.rglob("*"):
        if source.is_file() and ".git" not in source.parts:
            assert (target / source.relative_to(model_dir)).read_bytes() == source.read_bytes()
    assert not (target / ".git").exists()

    by_digest = run(
        live,
        "pull",
        f"vision/tiny@{digest}",
        "--to",
        str(tmp_path / "d2"),
        "--no-fsync",
        "--unsafe-skip-verify",
    )
    assert by_digest.returncode == 0, by_digest.stderr

    shown = run(live, "show", "vision/tiny@1.0.0", "--json")
    assert shown.returncode == 0
    document = json.loads(shown.stdout)
    assert document["root_digest"] == digest
    assert document["state"] == "pending"
    assert {f["path"] for f in document["files"]} >= {"config.json", "tokenizer/vocab.txt"}

    assert json.loads(run(live, "list", "--json").stdout) == ["vision"]
    artifacts = json.loads(run(live, "list", "vision", "--json").stdout)
    assert [a["name"] for a in artifacts] == ["tiny"]
    versions = json.loads(run(live, "list", "vision/tiny", "--json").stdout)
    assert [v["version"] for v in versions] == ["1.0.0"]
    assert "1.0.0" in run(live, "list", "vision/tiny").stdout


@embedded
def test_push_refuses_symlinks_and_stores_nothing(live: Live, model_dir: Path) -> None:
    (model_dir / "evil").symlink_to("/etc/passwd")
    result = run(live, "push", str(model_dir), "ns/m@1", "--no-progress")
    assert result.returncode == 1
    assert "error: 'evil' is a symbolic link" in result.stderr
    assert result.stdout == ""
    assert json.loads(run(live, "list", "--json").stdout) == []


@embedded
@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("ns/m", "expected NS/NAME@VERSION"),
        ("NS/m@1", "invalid namespace"),
        ("ns/m@prod", "push needs NS/NAME@VERSION"),
    ],
)
def test_push_with_a_bad_reference_fails_clearly(
    live: Live, model_dir: Path, ref: str, message: str
) -> None:
    result = run(live, "push", str(model_dir), ref, "--no-progress")
    assert result.returncode == 1
    assert message in result.stderr


@embedded
def test_push_conflict_and_bad_token(live: Live, model_dir: Path, tmp_path: Path) -> None:
    assert run(live, "push", str(model_dir), "ns/m@1", "--no-progress").returncode == 0
    (model_dir / "config.json").write_text("{}")
    conflict = run(live, "push", str(model_dir), "ns/m@1", "--no-progress")
    assert conflict.returncode == 1
    assert "already exists with other content" in conflict.stderr
    denied = run(live, "list", token="ms_0000000000000000_nope")
    assert denied.returncode == 1
    assert "a valid API token is required" in denied.stderr


@embedded
def test_a_token_read_with_an_editors_newline_works_and_is_never_printed(
    live: Live, model_dir: Path, tmp_path: Path
) -> None:
    """Attacker: anyone reading the output. ``MODELSEAL_TOKEN=$(cat token-file)`` keeps a
    trailing newline when the file has two; the token must still work, and no error, log or audit
    entry may show any part of it past its public id ``ms_<id>``."""
    token = live.admin_token
    _, token_id, secret = token.split("_", 2)
    public = f"ms_{token_id}"

    def shows_no_secret(result: subprocess.CompletedProcess[str]) -> None:
        output = result.stdout + result.stderr
        assert secret[:6] not in output and secret[-6:] not in output, output

    for padded in (token + "\n", f"  {token} \r\n", f"\t{token}\n\n"):
        listed = run(live, "list", token=padded)
        assert listed.returncode == 0, listed.stderr
        shows_no_secret(listed)
    pushed = run(live, "push", str(model_dir), "ns/m@1", "--no-progress", token=token + "\n")
    assert pushed.returncode == 0, pushed.stderr
    # A file holding something else than one token: refused before anything is sent, naming
    # the public id only.
    broken = run(live, "list", token=f"{token[:-8]}\n{token[-8:]}\n")
    assert broken.returncode == 1
    assert f"the API token {public}… in MODELSEAL_TOKEN holds whitespace" in broken.stderr
    shows_no_secret(broken)
    # An unreachable registry: the network is blamed, the token is not printed.
    env_live = Live(f"http://127.0.0.1:{free_port()}", token, live.settings)
    unreachable = run(env_live, "list", token=token + "\n")
    assert unreachable.returncode == 1 and "cannot reach the registry" in unreachable.stderr
    shows_no_secret(unreachable)
    with live.client() as client:
        logged = json.dumps(client.audit_entries())
    assert secret[:6] not in logged and secret[-6:] not in logged


@embedded
def test_pull_failure_leaves_the_target_untouched(live: Live, tmp_path: Path) -> None:
    target = tmp_path / "deploy"
    result = run(live, "pull", "ns/missing@1", "--to", str(target), "--no-progress")
    assert result.returncode == 1
    assert "does not exist" in result.stderr
    assert not target.exists()


def test_serve_first_start_migrates_and_writes_an_admin_token(tmp_path: Path) -> None:
    data = tmp_path / "fresh"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSEAL_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "registry", "serve", "--data-dir", str(data), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "serve did not start"
            time.sleep(0.1)
        token_file = data / "admin-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert (data / "registry.db").exists()
        token = token_file.read_text().strip()
        live = Live(f"http://127.0.0.1:{port}", token, None)  # type: ignore[arg-type]
        assert run(live, "list", "--json").stdout.strip() == "[]"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert "admin token written to" in (proc.stderr.read() if proc.stderr else "")
    # A second start finds tokens and writes none.
    token_file.unlink()
    proc = subprocess.Popen(
        [sys.executable, "-m", "registry", "serve", "--data-dir", str(data), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(2)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert not token_file.exists()


@embedded
def test_signed_push_interoperates_with_model_signing(
    live: Live, model_dir: Path, tmp_path: Path
) -> None:
    """keygen -> identity add -> push --sign-key -> pull -> `model_signing verify key` passes;
    a directory signed by `model_signing sign key` is pushed with --signature."""
    keygen = run(live, "keygen", str(tmp_path / "ci"))
    assert keygen.returncode == 0, keygen.stderr
    assert stat.S_IMODE((tmp_path / "ci.key").stat().st_mode) == 0o600
    assert run(live, "keygen", str(tmp_path / "ci")).returncode == 1  # never overwrites
    added = run(live, "identity", "add", "training-ci", "--key", str(tmp_path / "ci.pub"))
    assert added.returncode == 0, added.stderr
    listed = json.loads(run(live, "identity", "list", "--json").stdout)
    assert [(i["name"], i["fingerprint"]) for i in listed] == [
        ("training-ci", keygen.stdout.strip())
    ]

    pushed = run(
        live,
        "push",
        str(model_dir),
        "vision/tiny@1",
        "--no-progress",
        "--sign-key",
        str(tmp_path / "ci.key"),
    )
    assert pushed.returncode == 0, pushed.stderr
    assert "OMS signature and SLSA provenance attached" in pushed.stderr
    target = tmp_path / "deploy"
    pulled = run(live, "pull", "vision/tiny@1", "--to", str(target), "--no-progress", "--pending")
    assert pulled.returncode == 0, pulled.stderr
    evidence = tmp_path / "evidence"
    oms_type = "https://model_signing/signature/v1.0"
    saved = run(
        live,
        "attestations",
        "vision/tiny@1",
        "--save",
        str(evidence),
        "--json",
        "--predicate-type",
        oms_type,
    )
    assert saved.returncode == 0, saved.stderr
    [bundle_file] = list(evidence.iterdir())
    verify = model_signing(
        "verify",
        "key",
        "--public_key",
        str(tmp_path / "ci.pub"),
        "--signature",
        str(bundle_file),
        str(target),
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr

    # The other direction: model_signing signs, modelseal pushes with --signature.
    other = tmp_path / "other"
    shutil.copytree(model_dir, other)
    (other / "extra.txt").write_text("more")
    signature = tmp_path / "other.sig"
    signed = model_signing(
        "sign",
        "key",
        "--private_key",
        str(tmp_path / "ci.key"),
        "--signature",
        str(signature),
        str(other),
    )
    assert signed.returncode == 0, signed.stdout + signed.stderr
    ok = run(
        live, "push", str(other), "vision/tiny@2", "--no-progress", "--signature", str(signature)
    )
    assert ok.returncode == 0, ok.stderr
    oms = json.loads(
        run(live, "attestations", "vision/tiny@2", "--json", "--predicate-type", oms_type).stdout
    )
    assert [a["signer"] for a in oms] == ["training-ci"]

    # A signature over other files is refused before anything is uploaded.
    (other / "late.txt").write_text("added after signing")
    refused = run(
        live, "push", str(other), "vision/tiny@3", "--no-progress", "--signature", str(signature)
    )
    assert refused.returncode == 1
    assert "not signed: late.txt" in refused.stderr
    assert "3" not in [
        v["version"] for v in json.loads(run(live, "list", "vision/tiny", "--json").stdout)
    ]


@embedded
def test_attest_evaluation_results(live: Live, model_dir: Path, tmp_path: Path) -> None:
    run(live, "keygen", str(tmp_path / "eval"))
    run(live, "identity", "add", "eval-ci", "--key", str(tmp_path / "eval.pub"))
    assert run(live, "push", str(model_dir), "vision/tiny@1", "--no-progress").returncode == 0
    metrics = tmp_path / "result.json"
    metrics.write_text(json.dumps({"result": "PASSED", "metrics": {"accuracy": 0.93}}))
    test_result = "https://in-toto.io/attestation/test-result/v0.1"
    attested = run(
        live,
        "attest",
        "vision/tiny@1",
        "--predicate-type",
        test_result,
        "--predicate",
        str(metrics),
        "--sign-key",
        str(tmp_path / "eval.key"),
    )
    assert attested.returncode == 0, attested.stderr
    assert attested.stdout.startswith("sha256:")
    unsigned = run(
        live, "attest", "vision/tiny@1", "--predicate-type", "x", "--predicate", str(metrics)
    )
    assert unsigned.returncode == 1
    assert "needs --sign-key FILE or --sigstore" in unsigned.stderr
    run(live, "keygen", str(tmp_path / "rogue"))
    rogue = run(
        live,
        "attest",
        "vision/tiny@1",
        "--predicate-type",
        "x",
        "--predicate",
        str(metrics),
        "--sign-key",
        str(tmp_path / "rogue.key"),
    )
    assert rogue.returncode == 1
    assert "not a trusted key" in rogue.stderr


@embedded
def test_keyless_push_without_a_token_fails_clearly(
    live: Live, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keyless signing cannot reach Fulcio from here; with no OIDC token it says why."""
    result = run(live, "push", str(model_dir), "vision/tiny@1", "--no-progress", "--sigstore")
    assert result.returncode == 1
    assert "OIDC" in result.stderr, result.stderr
    assert json.loads(run(live, "list", "--json").stdout) == []  # failed before uploading


def test_verify_signature_offline(model_dir: Path, tmp_path: Path) -> None:
    """An auditor checks a local copy against an OMS bundle with only a public key."""
    signed = subprocess.run(
        [sys.executable, "-m", "registry", "keygen", str(tmp_path / "ci")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert signed.returncode == 0
    sig = tmp_path / "model.sig"
    made = model_signing(
        "sign",
        "key",
        "--private_key",
        str(tmp_path / "ci.key"),
        "--signature",
        str(sig),
        str(model_dir),
    )
    assert made.returncode == 0, made.stderr
    ok = run(
        None,
        "verify-signature",
        str(model_dir),
        "--signature",
        str(sig),
        "--key",
        str(tmp_path / "ci.pub"),
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("sha256:")
    (model_dir / "config.json").write_text("{}")
    bad = run(
        None,
        "verify-signature",
        str(model_dir),
        "--signature",
        str(sig),
        "--key",
        str(tmp_path / "ci.pub"),
    )
    assert bad.returncode == 1
    assert "different: config.json" in bad.stderr
    nothing = run(None, "verify-signature", str(model_dir), "--signature", str(sig))
    assert nothing.returncode == 1
    assert "nothing is trusted" in nothing.stderr


def test_scan_command(model_dir: Path, tmp_path: Path) -> None:
    clean = run(None, "scan", str(model_dir), "--json")
    assert clean.returncode == 0, clean.stderr
    report = json.loads(clean.stdout)
    assert report["verdict"] == "clean"
    assert report["scanner"]["name"] == "modelseal-scan"
    import pickle

    from tests.scan_corpus import malicious_payloads

    sentinel = tmp_path / "PWNED"
    (model_dir / "pytorch_model.bin").write_bytes(
        pickle.dumps(malicious_payloads(sentinel)["os.system"], protocol=2)
    )
    dirty = run(None, "scan", str(model_dir))
    assert dirty.returncode == 1
    assert "posix.system" in dirty.stdout
    assert "1 file(s) not clean (1 unsafe)" in dirty.stderr
    single = run(None, "scan", str(model_dir / "pytorch_model.bin"), "--json")
    assert single.returncode == 1
    assert json.loads(single.stdout)["files"][0]["format"] == "pickle"
    assert not sentinel.exists()


def test_serve_refuses_plain_http_on_a_public_address(tmp_path: Path) -> None:
    refused = run(
        None,
        "serve",
        "--data-dir",
        str(tmp_path / "d"),
        "--host",
        "0.0.0.0",
        "--port",
        str(free_port()),
    )
    assert refused.returncode == 1
    assert "refusing plain HTTP on 0.0.0.0" in refused.stderr
    assert not (tmp_path / "d").exists()  # nothing was set up


def test_tls_serve_and_a_client_that_verifies_it(tmp_path: Path, model_dir: Path) -> None:
    ca, cert, key = self_signed(tmp_path)
    port = free_port()
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "registry",
            "serve",
            "--data-dir",
            str(data),
            "--port",
            str(port),
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                context = ssl.create_default_context(cafile=str(ca))
                if httpx.get(f"{url}/health", verify=context, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "TLS serve did not start"
            time.sleep(0.1)
        token = (data / "admin-token").read_text().strip()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSEAL_")}
        env.update(
            MODELSEAL_URL=url, MODELSEAL_TOKEN=token, MODELSEAL_CONFIG_DIR=str(tmp_path / "cfg")
        )
        untrusted = subprocess.run(
            [sys.executable, "-m", "registry", "list"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert untrusted.returncode == 1
        assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr or "certificate" in untrusted.stderr
        env["MODELSEAL_CA_BUNDLE"] = str(ca)
        pushed = subprocess.run(
            [sys.executable, "-m", "registry", "push", str(model_dir), "ns/m@1", "--no-progress"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert pushed.returncode == 0, pushed.stderr
        pulled = subprocess.run(
            [
                sys.executable,
                "-m",
                "registry",
                "pull",
                "ns/m@1",
                "--to",
                str(tmp_path / "out"),
                "--no-progress",
                "--unsafe-skip-verify",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert pulled.returncode == 0, pulled.stderr
        assert (tmp_path / "out" / "config.json").read_bytes() == (
            model_dir / "config.json"
        ).read_bytes()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_push_signed_by_an_unregistered_key_stores_nothing(
    live: Live, model_dir: Path, tmp_path: Path
) -> None:
    """Attacker: none; a publisher signing with a key the registry does not know. The signer is
    checked before a byte is uploaded (the acceptance, a registered key, is
    test_signed_push_interoperates_with_model_signing)."""
    from sqlalchemy import func, select

    from attest.files import file_set, hash_files
    from registry.server.db import make_engine
    from registry.server.models import Blob, UploadSession, Version
    from registry.server.storage import open_blob_store

    assert run_cli("keygen", str(tmp_path / "stranger"), cwd=tmp_path).returncode == 0
    pushed = run_cli("push", str(model_dir), "ns/m@1", "--no-progress", "--sign-key",
                     str(tmp_path / "stranger.key"), live=live, cwd=tmp_path)  # fmt: skip
    assert pushed.returncode == 1
    assert "is not a registered identity of this registry" in pushed.stderr, pushed.stderr
    assert f"`modelseal identity add NAME --key {tmp_path / 'stranger.pub'}`" in pushed.stderr
    engine = make_engine(live.settings.resolved_database_url)
    with engine.connect() as conn:
        counts = [conn.execute(select(func.count()).select_from(t)).scalar_one()
                  for t in (Version, Blob, UploadSession)]  # fmt: skip
    engine.dispose()
    assert counts == [0, 0, 0]
    store = open_blob_store(live.settings)
    digests = [d.sha256 for d in hash_files(file_set(model_dir).files)]
    assert not any(store.exists(d) for d in digests)
    # Registered, the same push goes through.
    added = run_cli("identity", "add", "training-ci", "--key", str(tmp_path / "stranger.pub"),
                    live=live)  # fmt: skip
    assert added.returncode == 0, added.stderr
    pushed = run_cli("push", str(model_dir), "ns/m@1", "--no-progress", "--sign-key",
                     str(tmp_path / "stranger.key"), live=live, cwd=tmp_path)  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr


@embedded
def test_a_push_of_many_files_waits_for_the_background_scan_and_reports_its_verdict(
    backend: Any, model_dir: Path, tmp_path: Path
) -> None:
    """A version of more than SCAN_INLINE_MAX_FILES files is scanned after its commit answered:
    the CLI waits for the verdict, and a rejected version still fails the push."""
    import pickle

    from tests.scan_corpus import malicious_payloads
    from tests.support import serve

    with serve(backend.model_copy(update={"scan_inline_max_files": 2})) as live:
        pushed = run(live, "push", str(model_dir), "vision/tiny@1", "--no-progress")
        assert pushed.returncode == 0, pushed.stderr
        assert "the registry is scanning" in pushed.stderr
        assert "pending)" in pushed.stderr  # the state after the scan, not "scanning"
        evil = pickle.dumps(malicious_payloads(tmp_path / "sentinel")["os.system"], protocol=2)
        (model_dir / "extra.pkl").write_bytes(evil)
        refused = run(live, "push", str(model_dir), "vision/tiny@2", "--no-progress")
        assert refused.returncode == 1, refused.stderr
        assert "rejected" in refused.stderr and "extra.pkl" in refused.stderr
