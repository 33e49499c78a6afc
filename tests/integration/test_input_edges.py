"""Input edges a fuzzer found (schemathesis against openapi.yaml): each is a 4xx problem+json,
never a 500, next to the acceptance one step inside the edge. Attacker: anyone on the network
(malformed input must not crash the service or open resources)."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import func, select

from registry.errors import InvalidNameError, InvalidPathError, InvalidReferenceError
from registry.names import validate_alias, validate_name, validate_version
from registry.server.api.openapi import render
from registry.server.db import make_engine, make_sessionmaker
from registry.server.models import UploadSession
from tests.support import Live

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


@pytest.mark.parametrize("protocol", ["httptools", "h11"])
def test_a_malformed_content_length_is_a_problem_400(local_settings: Any, protocol: str) -> None:
    """uvicorn refuses it before the application sees the request; the registry's protocol
    classes (registry/server/api/httpproto.py) answer it as problem+json like every other error,
    whichever HTTP parser runs (they override a uvicorn method that is not public API: this
    test is what notices an upgrade that stops calling it)."""
    import json

    from registry.server.api import httpproto
    from tests.support import replica

    cls = httpproto.protocol() if protocol == "httptools" else httpproto.ProblemH11Protocol
    with replica(local_settings, http=cls) as url:
        port = urlsplit(url).port
        assert port is not None
        for length in ("12abc", "-1", "1, 2"):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(
                    f"POST /v1/tokens HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n"
                    "Content-Type: application/json\r\n\r\n{}".encode()
                )
                answer = b""
                while chunk := sock.recv(65536):
                    answer += chunk
            head, _, body = answer.decode("latin1").partition("\r\n\r\n")
            assert head.startswith("HTTP/1.1 400"), head
            assert "content-type: application/problem+json" in head.lower(), head
            problem = json.loads(body)
            assert problem["status"] == 400 and problem["type"].endswith("/invalid-request")


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


def test_unknown_query_parameters_are_refused(live: Live) -> None:
    """A misspelt parameter was ignored: ``?revison=0`` answered the policy in force."""
    with _http(live) as http:
        answer = http.get("/v1/namespaces/ns/policy", params={"revison": 0})
        _refused(answer)
        assert "revison" in answer.json()["detail"]
        assert answer.json()["facts"]["parameters"] == ["revison"]
        _refused(http.get("/v1/tokens", params={"limit": 5, "\x7f": ""}))
        # The acceptance: declared parameters, of the route and of its dependencies (paging).
        assert http.get("/v1/namespaces/ns/policy", params={"revision": 0}).status_code == 200
        assert http.get("/v1/tokens", params={"limit": 5}).status_code == 200


def _document() -> dict[str, Any]:
    import yaml

    document: dict[str, Any] = yaml.safe_load(render())
    return document


def test_content_length_is_framing_and_a_chunk_needs_its_range(live: Live) -> None:
    """The spec offered Content-Length as a parameter (a fuzzer sent ``content-length: null``
    and got uvicorn's plain-text 400) and let PATCH leave out Content-Range."""
    operations = _document()["paths"]["/v1/uploads/{upload_id}"]
    for method in ("patch", "put"):
        names = {p["name"].lower(): p for p in operations[method]["parameters"]}
        assert "content-length" not in names
        assert names["content-range"]["schema"].get("pattern") or any(
            s.get("pattern") for s in names["content-range"]["schema"].get("anyOf", [])
        )
    assert {p["name"]: p["required"] for p in operations["patch"]["parameters"]}[
        "content-range"
    ] is True
    digest = "sha256:" + "ab" * 32
    with _http(live) as http:
        upload = http.post("/v1/namespaces/ns/uploads", json={"digest": digest, "size": 4})
        path = f"/v1/uploads/{upload.json()['id']}"
        _refused(http.patch(path, content=b"1234"))
        _refused(http.patch(path, content=b"1234", headers={"Content-Range": "bytes 0-x"}))
        # The acceptance: a chunk with its range (the digest is wrong: the finish says so).
        accepted = http.patch(path, content=b"1234", headers={"Content-Range": "bytes 0-3"})
        assert accepted.status_code == 202, accepted.text


def test_errors_are_documented_as_problems_and_nothing_promises_a_422(live: Live) -> None:
    """Errors were documented as ``application/json`` (never sent) and ``problem+json`` without
    a schema (so no body was checked), next to a 422 no request ever gets."""
    document = _document()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            assert "422" not in operation["responses"], (method, path)
            for code, answer in operation["responses"].items():
                if code.startswith(("4", "5")):
                    assert answer["content"] == {
                        PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}
                    }, (method, path, code)
    # The acceptance: what an invalid request gets is such a problem.
    import jsonschema

    problem = document["components"]["schemas"]["Problem"]
    with _http(live) as http:
        answer = http.get("/v1/tokens", params={"limit": 0})
    _refused(answer)
    jsonschema.validate(answer.json(), problem)


RULE_SAMPLES = [
    "a", "ns", "m.v2", "a..b", "..", ".", "-x", "A", "1.0", "v2", "v2.1-rc1", "prod", "sha256",
    "x" * 64, "x" * 65, "a/b", "a b", "é", "1" * 66, "stable_1", "ns/m@1", "ns/m@prod",
    "ns/m@sha256:" + "a" * 64, "ns/m@sha256:" + "A" * 64, "ns/m@sha256", "ns/m", "ns/m@",
    "n..s/m@1", "ns/m@1..2", "ns/m@v1x", "a/b/c@1", "model.safetensors", "dir/f.bin",
    "/abs", "a//b", "a/./b", "a/../b", "a/", ".git/config", ".gitignore", "x/.git",
    ".github2/x", "a\\b", "a\x00b", "a\tb", "a\x7fb", "s" * 255, "s" * 256, "dir/" + "s" * 256,
]  # fmt: skip


def test_body_naming_rules_are_in_the_schema_and_agree_with_the_checks() -> None:
    """Body fields and the file path parameter carried no pattern: schema-valid names were
    refused (``{"name": "F"}`` for an identity, ``fuzz/x`` as a reference)."""
    from registry.names import parse_ref, validate_path

    document = _document()
    schemas = document["components"]["schemas"]

    def pattern(schema: dict[str, Any]) -> str:
        found = schema.get("pattern")
        assert found, schema
        return str(found)

    file_param = next(
        p
        for p in document["paths"][
            "/v1/namespaces/{namespace}/artifacts/{name}/versions/{selector}/files/{path}"
        ]["get"]["parameters"]
        if p["name"] == "path"
    )
    rules = {
        "IdentityIn.name": (pattern(schemas["IdentityIn"]["properties"]["name"]),
                            lambda v: validate_name(v, what="identity name")),
        "TokenIn.namespace": (pattern(schemas["TokenIn"]["properties"]["namespace"]),
                              validate_name),
        "AliasIn.version": (pattern(schemas["AliasIn"]["properties"]["version"]),
                            validate_version),
        "VerificationFailureIn.reference": (
            pattern(schemas["VerificationFailureIn"]["properties"]["reference"]), parse_ref),
        "FileIn.path": (pattern(schemas["FileIn"]["properties"]["path"]), validate_path),
        "files/{path}": (pattern(file_param["schema"]), validate_path),
    }  # fmt: skip
    for field, (rule, check) in rules.items():
        for sample in RULE_SAMPLES:
            try:
                check(sample)
                valid = True
            except (InvalidNameError, InvalidReferenceError, InvalidPathError):
                valid = False
            assert (re.search(rule, sample) is not None) == valid, (field, sample)
