"""Input edges a fuzzer found (schemathesis against openapi.yaml): each is a 4xx problem+json,
never a 500, next to the acceptance one step inside the edge. Attacker: anyone on the network
(malformed input must not crash the service or open resources)."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import func, select

from registry.errors import InvalidNameError
from registry.names import validate_alias, validate_name, validate_version
from registry.server.api.openapi import render
from registry.server.db import make_engine, make_sessionmaker
from registry.server.models import UploadSession
from tests.conftest import Live

INT32 = 2**31
INT64 = 2**63
PROBLEM = "application/problem+json"


def _http(live: Live) -> httpx.Client:
    return httpx.Client(
        base_url=live.url, headers={"Authorization": f"Bearer {live.admin_token}"}, timeout=30
    )


def _refused(answer: httpx.Response, *codes: int) -> None:
    assert answer.status_code in (codes or (400,)), answer.text
    assert answer.headers["content-type"] == PROBLEM


def test_integers_past_the_database_range_are_4xx(live: Live, model_dir: Path) -> None:
    with live.client() as client:
        client.push(model_dir, "ns/m@1")
    version = "/v1/namespaces/ns/artifacts/m/versions/1"
    with _http(live) as http:
        for too_big in (INT32, INT64, 10**30):
            _refused(http.get(f"{version}/attestations/{too_big}"))
            _refused(http.get("/v1/namespaces/ns/policy", params={"revision": too_big}))
        for too_big in (INT64, 10**30):
            _refused(http.get("/v1/audit/log", params={"after": too_big}))
            _refused(http.get(f"{version}/status", params={"audit_since": too_big}))
        # The acceptance: the largest value in range is an ordinary lookup.
        _refused(http.get(f"{version}/attestations/{INT32 - 1}"), 404)
        _refused(http.get("/v1/namespaces/ns/policy", params={"revision": INT32 - 1}), 404)
        assert http.get("/v1/audit/log", params={"after": INT64 - 1}).json() == []
        assert http.get(f"{version}/status", params={"audit_since": INT64 - 1}).status_code == 200


def _sessions(live: Live) -> int:
    engine = make_engine(live.settings.resolved_database_url)
    with make_sessionmaker(engine)() as session:
        count = session.execute(select(func.count()).select_from(UploadSession)).scalar_one()
    engine.dispose()
    return int(count)


def test_sizes_are_json_integers_and_nothing_opens_for_others(live: Live) -> None:
    digest = "sha256:" + "ab" * 32
    with _http(live) as http:
        for size in (False, True, "12", 12.0, 12.5, None, -1):
            answer = http.post("/v1/namespaces/ns/uploads", json={"digest": digest, "size": size})
            _refused(answer)
            assert "size" in answer.json()["detail"]
        assert _sessions(live) == 0  # no upload (and no multipart upload) was opened
        manifest = {"kind": "model", "files": [{"path": "a.bin", "size": "12", "digest": digest}]}
        _refused(http.put("/v1/namespaces/ns/artifacts/m/versions/1", json=manifest))
        # The acceptance.
        opened = http.post("/v1/namespaces/ns/uploads", json={"digest": digest, "size": 12})
        assert opened.status_code == 201, opened.text
        assert _sessions(live) == 1


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/v1/tokens", {"GET", "POST"}),
        ("POST", "/v1/uploads/x", {"GET", "PATCH", "PUT", "DELETE"}),
        ("DELETE", "/v1/namespaces/ns/policy", {"GET", "PUT"}),
    ],
)
def test_405_lists_every_allowed_method(
    live: Live, method: str, path: str, allowed: set[str]
) -> None:
    with _http(live) as http:
        answer = http.request(method, path)
        _refused(answer, 405)
        listed = {m.strip() for m in answer.headers["allow"].split(",")}
        assert listed - {"HEAD"} == allowed
        for other in allowed - {"PATCH", "PUT", "POST", "DELETE"}:
            assert http.request(other, path).status_code != 405  # the acceptance


def test_a_malformed_content_length_is_a_400(live: Live) -> None:
    """uvicorn refuses it before the application sees the request (a plain-text 400, not
    problem+json): the request never reaches a handler."""
    parts = urlsplit(live.url)
    for length in ("12abc", "-1", "1, 2"):
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
            sock.sendall(
                f"POST /v1/tokens HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n"
                "Content-Type: application/json\r\n\r\n{}".encode()
            )
            head = sock.recv(65536).decode("latin1")
        assert head.startswith("HTTP/1.1 400"), head


def test_naming_rules_are_in_the_schema_and_agree_with_the_checks() -> None:
    import yaml

    document = yaml.safe_load(render())
    patterns: dict[str, set[str]] = {}
    for methods in document["paths"].values():
        for operation in methods.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] != "path":
                    pattern = parameter["schema"].get("pattern")
                    patterns.setdefault(parameter["name"], set()).add(pattern)
    for name in ("namespace", "name", "version", "selector", "alias"):
        assert len(patterns[name]) == 1 and None not in patterns[name], (name, patterns[name])
    checks = {"namespace": validate_name, "name": validate_name, "version": validate_version,
              "alias": validate_alias}  # fmt: skip
    samples = ["a", "ns", "m.v2", "a..b", "..", "-x", "A", "1.0", "v2", "v2.1-rc1", "prod",
               "sha256", "x" * 64, "x" * 65, "a/b", "a b", "é", "1" * 66, "stable_1"]  # fmt: skip
    for name, check in checks.items():
        [pattern] = patterns[name]
        for sample in samples:
            try:
                check(sample)
                valid = True
            except InvalidNameError:
                valid = False
            assert (re.fullmatch(pattern.strip("^$"), sample) is not None) == valid, (
                name, sample
            )  # fmt: skip
