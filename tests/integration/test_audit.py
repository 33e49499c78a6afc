"""The audit log: every state change and denial is chained; edits, deletions, reorderings and
truncations are caught by `modelseal audit verify`, naming the entry."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import httpx
import pytest
from sqlalchemy import delete, update

from attest.auditlog import verify_chain
from attest.errors import AuditChainError
from registry.server.db import make_engine, make_sessionmaker
from registry.server.models import AuditEntry
from tests.support import Live, run_cli


def _db(live: Live) -> object:
    return make_engine(live.settings.resolved_database_url)


def _activity(live: Live, model_dir: Path) -> None:
    with live.client() as client:
        client.push(model_dir, "ns/m@1")
        client.create_token("d", "deployer", "ns")
    with httpx.Client(timeout=60, base_url=live.url) as http:
        assert http.get("/v1/namespaces").status_code == 401  # a denied request
    with httpx.Client(
        timeout=60, base_url=live.url, headers={"Authorization": f"Bearer {live.admin_token}"}
    ) as http:
        assert http.post("/v1/audit/checkpoints").status_code == 201


def test_actions_and_denials_are_logged_and_verify(live: Live, model_dir: Path) -> None:
    _activity(live, model_dir)
    with live.client() as client:
        entries = client.audit_entries()
        count, head = client.verify_audit_log()
    actions = [(e["action"], e["outcome"], e["actor"]) for e in entries]
    assert ("put_version", "ok", "admin") in actions
    assert ("create_token", "ok", "admin") in actions
    assert ("list_namespaces", "denied", "anonymous") in actions
    assert count == len(entries) and len(head) == 64
    logged = run_cli("audit", "log", "--json", live=live)
    assert json.loads(logged.stdout)[0]["seq"] == 1
    assert run_cli("audit", "verify", live=live).returncode == 0


@pytest.mark.parametrize("tamper", ["edit", "delete", "reorder"])
def test_tampering_is_named(live: Live, model_dir: Path, tamper: str) -> None:
    _activity(live, model_dir)
    engine = _db(live)
    with engine.begin() as conn:  # type: ignore[attr-defined]
        if tamper == "edit":
            conn.execute(update(AuditEntry).where(AuditEntry.seq == 2).values(actor="mallory"))
        elif tamper == "delete":
            conn.execute(delete(AuditEntry).where(AuditEntry.seq == 2))
        else:
            conn.execute(update(AuditEntry).where(AuditEntry.seq == 2).values(seq=-2))
            conn.execute(update(AuditEntry).where(AuditEntry.seq == 3).values(seq=2))
            conn.execute(update(AuditEntry).where(AuditEntry.seq == -2).values(seq=3))
    engine.dispose()  # type: ignore[attr-defined]
    result = run_cli("audit", "verify", live=live)
    assert result.returncode == 1
    expected = {
        "edit": "entry 2 was modified",
        "delete": "entry 2 is missing",
        "reorder": "entry 2 does not follow",
    }[tamper]
    assert expected in result.stderr, result.stderr


def test_truncation_after_a_checkpoint_is_caught(live: Live, model_dir: Path) -> None:
    _activity(live, model_dir)
    headers = {"Authorization": f"Bearer {live.admin_token}"}
    with httpx.Client(timeout=60, base_url=live.url, headers=headers) as http:
        covered = http.post("/v1/audit/checkpoints").json()["count"]
    engine = _db(live)
    with engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(delete(AuditEntry).where(AuditEntry.seq >= covered))  # drop the tail
    engine.dispose()  # type: ignore[attr-defined]
    with live.client() as client, pytest.raises(AuditChainError, match="were removed"):
        client.verify_audit_log()


def _append_many(url: str, key_path: str, worker: int) -> None:
    from attest.signing import KeySigner
    from registry.server.services.audit import AuditService

    engine = make_engine(url)
    audit = AuditService(make_sessionmaker(engine), KeySigner.from_file(Path(key_path)))
    for i in range(20):
        audit.append(
            actor=f"w{worker}",
            action="test",
            target=str(i),
            outcome="ok",
            request_id=f"{worker}-{i}",
        )
    engine.dispose()


@pytest.mark.integration
def test_concurrent_writers_never_fork_the_chain(pg_url: str, tmp_path: Path) -> None:
    from attest import keys
    from registry.server.services.audit import as_dict

    key, _ = keys.write_keypair(tmp_path / "k", keys.generate())
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(pg_url, str(key), w)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
        assert w.exitcode == 0
    engine = make_engine(pg_url)
    with make_sessionmaker(engine)() as session:
        from sqlalchemy import select

        entries = [
            as_dict(r)
            for r in session.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars()
        ]
    engine.dispose()
    assert [e["seq"] for e in entries] == list(range(1, 81))
    verify_chain(entries, None)


def test_unsafe_skip_verify_is_recorded(live: Live, model_dir: Path, tmp_path: Path) -> None:
    import warnings

    with live.client() as client:
        client.push(model_dir, "ns/m@1")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            client.pull("ns/m@1", tmp_path / "out", unsafe_skip_verify=True)
        assert any("UNSAFE" in str(w.message) for w in caught)
        entries = client.audit_entries()
    assert [e["target"] for e in entries if e["action"] == "unsafe_skip_verify"] == [
        "/v1/namespaces/ns/artifacts/m/versions/1"
    ]


def _checkpoint(live: Live) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {live.admin_token}"}
    signed = httpx.post(f"{live.url}/v1/audit/checkpoints", headers=headers).json()
    return int(signed["count"]), str(signed["head"])


@pytest.mark.parametrize("attack", ["truncate", "rewrite"])
def test_a_log_rolled_back_behind_a_checkpoint_the_client_saw_is_refused(
    live: Live, model_dir: Path, tmp_path: Path, attack: str
) -> None:
    """Attacker: a database attacker (an insider, a bad backup restore) who deletes the newest
    audit entries together with the newest checkpoints, or rewrites the chain and recomputes
    every hash. A client that saw the later checkpoint refuses the log, naming both; the
    acceptance is test_actions_and_denials_are_logged_and_verify."""
    from sqlalchemy import select

    from attest import keys
    from attest.auditlog import GENESIS, entry_hash
    from attest.signing import KeySigner
    from registry.errors import PullVerificationError
    from registry.server.models import AuditCheckpoint
    from registry.server.services.audit import as_dict

    signer = KeySigner(keys.generate())
    with live.client() as client:
        client.add_key_identity("ci", keys.public_pem(signer.public_key).decode())
        client.set_policy("ns", "model:\n  require:\n    signature: [ci]\n    scan: clean\n")
        client.push(model_dir, "ns/m@0", signer=signer)
        client.release("ns/m@0")
    _activity(live, model_dir)
    older = _checkpoint(live)
    with live.client() as client:
        client.push(model_dir.parent / "model", "ns/m@2")  # more entries
        client.create_token("d2", "deployer", "ns")
    newer = _checkpoint(live)
    assert run_cli("audit", "verify", live=live).returncode == 0  # sees and remembers `newer`
    engine = _db(live)
    with engine.begin() as conn:  # type: ignore[attr-defined]
        if attack == "truncate":
            conn.execute(delete(AuditEntry).where(AuditEntry.seq > older[0]))
            conn.execute(delete(AuditCheckpoint).where(AuditCheckpoint.seq > older[0]))
        else:  # edit entry 2, recompute every hash after it, drop every checkpoint
            conn.execute(delete(AuditCheckpoint))
    if attack == "rewrite":
        with make_sessionmaker(engine).begin() as session:  # type: ignore[arg-type]
            previous = GENESIS
            for row in session.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars():
                if row.seq == 2:
                    row.actor = "mallory"
                row.prev_hash = previous
                row.hash = previous = entry_hash(previous, {**as_dict(row), "actor": row.actor})
    engine.dispose()  # type: ignore[attr-defined]
    if attack == "rewrite":  # the forgery is consistent: only the remembered head tells
        with live.client() as client:
            verify_chain(client.audit_entries(), None)

    result = run_cli("audit", "verify", live=live)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "intact" not in result.stderr
    assert f"checkpoint {newer[0]} (head sha256:{newer[1]}, seen" in result.stderr, result.stderr
    if attack == "truncate":
        assert "the audit log was rolled back" in result.stderr
        assert f"its newest signed checkpoint: {older[0]} entries, head sha256:{older[1]}" in (
            result.stderr
        )
    else:
        assert "the audit log was rewritten" in result.stderr
        assert f"entry {newer[0]} hashes to sha256:" in result.stderr
    verified = run_cli("verify", "ns/m@0", live=live)
    assert verified.returncode == 1 and "VERIFIED" not in verified.stdout
    assert f"checkpoint {newer[0]} (head sha256:{newer[1]}" in verified.stderr, verified.stderr
    # A deploy job that saw the later head refuses to pull as well (through the signed status).
    with live.client() as client, pytest.raises(PullVerificationError) as refused:
        client.pull("ns/m@0", tmp_path / "deploy")
    assert f"checkpoint {newer[0]} (head sha256:{newer[1]}" in str(refused.value)
    assert not (tmp_path / "deploy").exists()


def test_an_auditor_can_sign_a_fresh_checkpoint(live: Live, model_dir: Path) -> None:
    """Signing a checkpoint changes nothing but the checkpoint table: registry-wide auditors may
    ask for one (their verify and export then cover the newest entries); others may not."""
    from sqlalchemy import func, select

    from registry.server.models import AuditCheckpoint

    with live.client() as admin:
        admin.push(model_dir, "ns/m@1")
        auditor = admin.create_token("audit", "auditor", None).token
        scoped = admin.create_token("audit-ns", "auditor", "ns").token
        deployer = admin.create_token("d", "deployer", "ns").token
    for token, expected in ((deployer, 403), (scoped, 403), (auditor, 201)):
        answer = httpx.post(f"{live.url}/v1/audit/checkpoints",
                            headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert answer.status_code == expected, answer.text
    engine = _db(live)
    with engine.connect() as conn:  # type: ignore[attr-defined]
        assert conn.execute(select(func.count()).select_from(AuditCheckpoint)).scalar_one() == 1
    engine.dispose()  # type: ignore[attr-defined]
    with live.client(token=auditor) as client:
        count, _ = client.verify_audit_log()
        assert client.sign_checkpoint()["count"] == count  # reading adds no entry


def test_an_auditors_verify_and_export_include_the_newest_entries(
    live: Live, tmp_path: Path
) -> None:
    """Before the hourly checkpoint: the auditor's own verify and export sign a fresh one, so
    the audit part is there and covers the release (it was refused or left out for the token)."""
    from tests.integration.test_release import World

    world = World(live, tmp_path)
    world.model(deps=[("fraud/tx@3", world.dataset())])
    world.releaser.release("fraud/m@1")
    auditor = world.admin.create_token("audit", "auditor", None).token
    assert auditor is not None
    verified = run_cli("verify", "fraud/m@1", live=live, token=auditor)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "ok   audit:" in verified.stdout and "VERIFIED" in verified.stdout, verified.stdout
    exported = run_cli("export", "fraud/m@1", "--to", str(tmp_path / "export"), live=live,
                       token=auditor)  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / "export" / "audit" / "checkpoint.sigstore.json").exists()
