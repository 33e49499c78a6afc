"""The audit log: every state change and denial is chained; edits, deletions, reorderings and
truncations are caught by `modelseal audit verify`, naming the entry."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import httpx
import pytest
from sqlalchemy import delete, update

from attest.auditlog import AuditChainError, verify_chain
from registry.db import make_engine, make_sessionmaker
from registry.models import AuditEntry
from tests.conftest import Live, run_cli


def _db(live: Live) -> object:
    return make_engine(live.settings.resolved_database_url)


def _activity(live: Live, model_dir: Path) -> None:
    with live.client() as client:
        client.push(model_dir, "ns/m@1")
        client.create_token("d", "deployer", "ns")
    with httpx.Client(base_url=live.url) as http:
        assert http.get("/v1/namespaces").status_code == 401  # a denied request
    with httpx.Client(
        base_url=live.url, headers={"Authorization": f"Bearer {live.admin_token}"}
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
    with httpx.Client(base_url=live.url, headers=headers) as http:
        covered = http.post("/v1/audit/checkpoints").json()["count"]
    engine = _db(live)
    with engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(delete(AuditEntry).where(AuditEntry.seq >= covered))  # drop the tail
    engine.dispose()  # type: ignore[attr-defined]
    with live.client() as client, pytest.raises(AuditChainError, match="were removed"):
        client.verify_audit_log()


def _append_many(url: str, key_path: str, worker: int) -> None:
    from attest.signing import KeySigner
    from registry.services.audit import AuditService

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
    from registry.services.audit import as_dict

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
