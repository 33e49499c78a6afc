"""Role x endpoint matrix: every forbidden cell is 403 with no side effect, every allowed cell
passes authorization; no token or a bad one is 401."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from registry.errors import InvalidRequestError
from registry.server.db import make_engine
from registry.server.models import (
    Alias,
    ApiToken,
    Attestation,
    Identity,
    NamespacePolicy,
    UploadSession,
    Version,
)
from tests.support import Live, run_cli

embedded = pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)

V = "/v1/namespaces/ns/artifacts/m/versions/1"
ROLES = ("admin", "publisher", "releaser", "deployer", "auditor")
READ = set(ROLES)
PUSH = {"admin", "publisher"}
RELEASE = {"admin", "releaser"}
ADMIN = {"admin"}


def _cells(
    version: dict[str, Any],
) -> list[tuple[str, str, Callable[[], dict[str, Any]], set[str]]]:
    file0 = version["files"][0]
    manifest = {
        "kind": "model",
        "files": [
            {"path": f["path"], "size": f["size"], "digest": f["digest"]} for f in version["files"]
        ],
    }
    return [
        ("GET", "/v1/namespaces", dict, READ | {"outsider"}),  # filtered to its scope
        ("GET", "/v1/namespaces/ns/artifacts", dict, READ),
        ("GET", V, dict, READ),
        ("GET", f"{V}/files/{file0['path']}", dict, PUSH | RELEASE),  # pending: not deployers
        ("GET", f"{V}/attestations", dict, READ),
        ("GET", "/v1/namespaces/ns/policy", dict, READ),
        ("GET", "/v1/identities", dict, READ | {"outsider"}),  # global: who signs
        ("GET", f"{V}/in-toto", dict, READ),  # 409 here: only for released versions
        ("GET", f"{V}/status", dict, READ),  # the signed current state a pull checks
        (
            "POST",
            "/v1/events/verification-failure",
            lambda: {"json": {"reference": "ns/m@1", "reason": "digest mismatch"}},
            READ,  # a failed pull of a version the caller may read; others: 403
        ),
        ("PUT", "/v1/namespaces/ns/artifacts/m/versions/2", lambda: {"json": manifest}, PUSH),
        (
            "POST",
            "/v1/namespaces/ns/uploads",
            lambda: {"json": {"digest": file0["digest"], "size": file0["size"]}},
            PUSH,
        ),
        ("POST", f"{V}/attestations", lambda: {"content": b"{}"}, PUSH),
        ("POST", f"{V}/release", dict, RELEASE),
        ("POST", f"{V}/reject", lambda: {"json": {"reason": "test"}}, RELEASE),
        ("POST", f"{V}/revoke", lambda: {"json": {"reason": "test"}}, RELEASE),
        (
            "PUT",
            "/v1/namespaces/ns/artifacts/m/aliases/prod",
            lambda: {"json": {"version": "1"}},
            RELEASE,
        ),
        ("PUT", "/v1/namespaces/ns/policy", lambda: {"content": b"model: {}\n"}, ADMIN),
        (
            "POST",
            "/v1/identities",
            lambda: {
                "json": {
                    "name": "x",
                    "sigstore_issuer": "https://i.example",
                    "sigstore_identity": "me",
                }
            },
            ADMIN,
        ),
        (
            "POST",
            "/v1/tokens",
            lambda: {"json": {"name": "t", "role": "deployer", "namespace": "ns"}},
            ADMIN,
        ),
        ("GET", "/v1/tokens", dict, ADMIN),
    ]


def _snapshot(url: str) -> dict[str, object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            counts: dict[str, object] = {
                m.__tablename__: conn.execute(select(func.count()).select_from(m)).scalar_one()
                for m in (
                    Version,
                    Attestation,
                    Alias,
                    NamespacePolicy,
                    Identity,
                    ApiToken,
                    UploadSession,
                )
            }
            counts["states"] = sorted(conn.execute(select(Version.version, Version.state)).all())
            return counts
    finally:
        engine.dispose()


def _bom_settled(http: httpx.Client, admin: str) -> None:
    deadline = time.monotonic() + 120
    while True:
        shown = http.get(V, headers={"Authorization": f"Bearer {admin}"})
        assert shown.status_code == 200, shown.text
        if shown.json()["bom_status"] != "pending":
            return
        assert time.monotonic() < deadline, "the ML-BOM of ns/m@1 never settled"
        time.sleep(0.1)


@pytest.fixture
def tokens(live: Live, model_dir: Path) -> dict[str, str]:
    with live.client() as admin:
        admin.push(model_dir, "ns/m@1")
        # The ML-BOM is built in the background and adds an attestation row: let it land before
        # the matrix, which reads any row that appears during a refused request as its doing.
        with httpx.Client(base_url=live.url, timeout=60) as http:
            _bom_settled(http, live.admin_token)
        made = {"admin": live.admin_token}
        for role in ROLES[1:]:
            made[role] = admin.create_token(f"{role}-t", role, "ns").token or ""
        made["outsider"] = admin.create_token("outsider", "publisher", "other").token or ""
    return made


@embedded
def test_role_matrix(live: Live, tokens: dict[str, str]) -> None:
    db = live.settings.resolved_database_url
    with httpx.Client(base_url=live.url, timeout=60) as http:
        version = http.get(V, headers={"Authorization": f"Bearer {tokens['admin']}"}).json()
        cells = _cells(version)
        failures = []
        # roles whose allowed cells change state (reject, release…) go last
        for role in ("deployer", "auditor", "outsider", "publisher", "releaser", "admin"):
            for method, path, body, allowed in cells:
                before = _snapshot(db)
                response = http.request(
                    method, path, headers={"Authorization": f"Bearer {tokens[role]}"}, **body()
                )
                if role in allowed:
                    if response.status_code in (401, 403):
                        failures.append(f"{role} {method} {path}: {response.status_code}")
                    # evidence an allowed cell added rebuilds the ML-BOM in the background: let
                    # it land before a refused cell compares snapshots
                    _bom_settled(http, tokens["admin"])
                else:
                    if response.status_code != 403 or _snapshot(db) != before:
                        failures.append(
                            f"{role} {method} {path}: {response.status_code} "
                            "(expected 403 and no change)"
                        )
        assert failures == []
        seen = http.get("/v1/namespaces", headers={"Authorization": f"Bearer {tokens['outsider']}"})
        assert "ns" not in [n["name"] for n in seen.json()]


@embedded
def test_the_audit_log_and_metrics_are_for_admins_and_registry_wide_auditors(
    live: Live, tokens: dict[str, str]
) -> None:
    """The log spans every namespace, so a namespace-scoped auditor may not read it."""
    with live.client() as admin:
        tokens["global-auditor"] = admin.create_token("ga", "auditor").token or ""
        with pytest.raises(InvalidRequestError, match="span every namespace"):
            admin.create_token("gd", "deployer")
    with httpx.Client(timeout=60, base_url=live.url) as http:
        for role in (*ROLES, "outsider", "global-auditor"):
            headers = {"Authorization": f"Bearer {tokens[role]}"}
            codes = {http.get(path, headers=headers).status_code
                     for path in ("/v1/audit/log", "/metrics")}  # fmt: skip
            assert codes == ({200} if role in ("admin", "global-auditor") else {403}), role
        # Signing a checkpoint only adds one (no admin action): registry-wide auditors may.
        for role in (*ROLES, "outsider", "global-auditor"):
            headers = {"Authorization": f"Bearer {tokens[role]}"}
            signed = http.post("/v1/audit/checkpoints", headers=headers).status_code
            assert signed == (201 if role in ("admin", "global-auditor") else 403), role


@pytest.mark.parametrize(
    "header", [None, "Bearer nope", "Bearer ms_0123456789abcdef_x", "Basic eA=="]
)
def test_no_token_or_a_bad_one_is_401(live: Live, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    with httpx.Client(timeout=60, base_url=live.url) as http:
        for method, path in (("GET", "/v1/namespaces"), ("POST", "/v1/tokens"), ("GET", V)):
            assert http.request(method, path, headers=headers).status_code == 401


@embedded
def test_token_lifecycle_from_the_cli(live: Live) -> None:
    def run(*args: str, token: str = live.admin_token) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, live=live, token=token)

    created = run("token", "create", "--role", "deployer", "--namespace", "ns", "--expires", "30")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert secret.startswith("ms_") and "\n" not in secret
    listed = run("token", "list", "--json")
    assert secret not in listed.stdout
    assert run("list", token=secret).returncode == 0
    token_id = secret.removeprefix("ms_").split("_", 1)[0]
    assert run("token", "revoke", token_id).returncode == 0
    denied = run("list", token=secret)
    assert denied.returncode == 1 and "valid API token is required" in denied.stderr
    refused = run("token", "create", "--role", "auditor", token=created.stdout.strip())
    assert refused.returncode == 1


def test_rate_limits_answer_429_with_retry_after(tmp_path: Path) -> None:
    from registry.server.config import Settings
    from tests.support import serve

    settings = Settings(
        data_dir=tmp_path / "limited",
        rate_per_token=0.01,
        burst_per_token=3,
        rate_per_address=0.01,
        burst_per_address=6,
    )
    with serve(settings) as live, httpx.Client(timeout=60, base_url=live.url) as http:
        headers = {"Authorization": f"Bearer {live.admin_token}"}
        codes = [http.get("/v1/namespaces", headers=headers).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        answer = http.get("/v1/namespaces", headers=headers)
        assert answer.headers["retry-after"] == "100"
        assert answer.json()["type"].endswith("/rate-limited")
        # guessing tokens from the same address runs into the address limit as well
        guess = {"Authorization": "Bearer ms_0000000000000000_guess"}
        assert [http.get("/v1/namespaces", headers=guess).status_code for _ in range(2)] == [
            401,
            429,
        ]
        assert http.get("/health").status_code == 200  # liveness is never limited
