"""An independent attacker's review of the OCI read API under ``/v2/`` (docs/oci.md,
docs/threat-model.md), written without a view of the other tests.

Every test named ``test_hole_*`` demonstrated a hole: each failed against the code as reviewed
(the referrers commit, 86d5227) and passes since its fix (the comment above it says what the
hole was and what the correct behaviour is). Tests named ``test_resisted_*`` are attacks the
code withstood, kept because they are cheap and pin the behaviour.

Real servers (uvicorn in a thread, ``tests.support.serve``/``replica``), real tokens, real
SQLite + local directory and PostgreSQL + SeaweedFS; no mocks.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, text

from attest.bundle import Bundle
from attest.predicates import OCI_RELEASE
from registry.errors import RegistryError
from registry.server.db import make_engine, make_sessionmaker
from registry.server.models import VersionFile
from registry.server.services import Role, TokenService
from registry.server.storage import open_blob_store
from tests.integration.test_release import World, _released
from tests.support import Live, make_model_dir, replica

EMPTY_CONFIG = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
OCI_ERROR_CODES = {
    "BLOB_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "TOOMANYREQUESTS",
}


# -- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def world(live: Live, tmp_path: Path) -> World:
    return World(live, tmp_path)


def _token(live: Live, role: Role, namespace: str | None = "fraud", name: str = "t") -> str:
    engine = make_engine(live.settings.resolved_database_url)
    try:
        tokens = TokenService(make_sessionmaker(engine))
        return tokens.create(name=name, role=role, namespace=namespace).secret
    finally:
        engine.dispose()


def _sql(live: Live, statement: str, **params: object) -> None:
    engine = make_engine(live.settings.resolved_database_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(statement), params)
    finally:
        engine.dispose()


def _v2(
    live: Live | str,
    path: str,
    token: str | None = None,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    request_id: str | None = None,
) -> httpx.Response:
    """One request on a fresh connection (a 500 may leave a keep-alive connection dead)."""
    url = live if isinstance(live, str) else live.url
    sent = {"Connection": "close", **(headers or {})}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    if request_id is not None:
        sent["X-Request-Id"] = request_id
    with httpx.Client(base_url=url, timeout=60) as client:
        return client.request(method, path, headers=sent)


def _rid() -> str:
    return "atk-" + uuid.uuid4().hex


def _audited(world: World, request_id: str) -> list[dict[str, Any]]:
    """The audit entries of one request (details decoded)."""
    found = []
    for entry in world.admin.audit_entries():
        if entry["request_id"] == request_id:
            details = entry.get("details")
            if isinstance(details, str):
                details = json.loads(details)
            found.append({**entry, "details": details or {}})
    return found


def _is_oci_error(response: httpx.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    errors = body.get("errors") if isinstance(body, dict) else None
    return (
        isinstance(errors, list)
        and len(errors) > 0
        and all(isinstance(e, dict) and e.get("code") in OCI_ERROR_CODES for e in errors)
    )


def _digest(response: httpx.Response) -> str:
    return "sha256:" + hashlib.sha256(response.content).hexdigest()


@pytest.fixture
def released(world: World) -> Iterator[World]:
    """fraud/m@1 released (built on fraud/tx@3, released), as test_release.py builds it."""
    _released(world)
    yield world


# == holes ======================================================================================


# HOLE (any deployer; "never a 500"): a Range header with a number of more than 4300 digits
# makes int() raise ValueError in _range -> unhandled 500 + traceback in the log. Correct: the
# header is unparsable/unsatisfiable -> ignore it (200) or 416 SIZE_INVALID, in the OCI format.
@pytest.mark.parametrize("spec", ["0-" + "9" * 5000, "9" * 5000 + "-", "-" + "9" * 5000])
def test_hole_range_with_a_huge_number_is_a_500(released: World, spec: str) -> None:
    live = released.live
    deployer = _token(live, Role.DEPLOYER)
    manifest = _v2(live, "/v2/fraud/m/manifests/1", deployer).json()
    layer = manifest["layers"][0]["digest"]
    answer = _v2(live, f"/v2/fraud/m/blobs/{layer}", deployer, headers={"Range": f"bytes={spec}"})
    assert answer.status_code in (200, 206, 416), answer.text
    if answer.status_code == 416:
        assert _is_oci_error(answer)


# HOLE (anyone on the network, PostgreSQL): /v2 accepts the API token as a Basic-auth password;
# base64 smuggles a NUL byte that an HTTP header could not carry, TokenService looks the token id
# up in PostgreSQL, psycopg raises DataError -> unauthenticated 500 with a traceback (on every
# /v2 route, /v2/token included). Correct: 401 UNAUTHORIZED with the Bearer challenge.
@pytest.mark.parametrize("path", ["/v2/", "/v2/token", "/v2/fraud/m/manifests/1"])
def test_hole_basic_auth_with_a_nul_in_the_token_id_is_a_500(live: Live, path: str) -> None:
    raw = b"skopeo:ms_" + b"\x00" * 16 + b"_" + b"A" * 43
    header = {"Authorization": "Basic " + base64.b64encode(raw).decode()}
    answer = _v2(live, path, headers=header)
    assert answer.status_code == 401, answer.text
    assert _is_oci_error(answer)
    assert "WWW-Authenticate" in answer.headers


# HOLE (bad input; "errors are the OCI error format"): query parameters FastAPI validates (n,
# last, artifactType) answer an RFC 9457 problem+json document, not {"errors": [...]}, because
# RequestValidationError is not translated by OciRoute; likewise a method no /v2 route lists
# (OPTIONS) is Starlette's problem+json 405. Correct: a 4xx with an OCI error body
# ({"errors": [{"code": ...}]}, e.g. NAME_INVALID / UNSUPPORTED), like every other /v2 error.
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/fraud/m/tags/list?n=abc"),
        ("GET", "/v2/fraud/m/tags/list?n=-1"),
        ("GET", "/v2/fraud/m/tags/list?n=10001"),
        ("GET", "/v2/fraud/m/tags/list?last=" + "a" * 129),
        ("GET", f"/v2/fraud/m/referrers/{EMPTY_CONFIG}?artifactType=" + "a" * 257),
        ("OPTIONS", "/v2/fraud/m/manifests/1"),
    ],
    ids=["n-text", "n-negative", "n-huge", "last-long", "artifactType-long", "options"],
)
def test_hole_invalid_input_is_not_an_oci_error(released: World, method: str, path: str) -> None:
    deployer = _token(released.live, Role.DEPLOYER)
    answer = _v2(released.live, path, deployer, method=method)
    assert 400 <= answer.status_code < 500
    assert _is_oci_error(answer), answer.text


# HOLE (audit gap + inconsistent answer): a deployer who pulled fraud/m@1 keeps its manifest
# digest; after the version is revoked, GET /v2/fraud/m/manifests/<digest> answers 404
# MANIFEST_UNKNOWN (by tag the same manifest is 403 DENIED naming the revocation) and writes NO
# audit entry: _find_manifest returns None for a version the caller may not see, without
# hidden=True. Correct: 403 DENIED naming the state (as by tag), audited as a denial (or, at the
# least, a hidden-denial audit entry).
def test_hole_revoked_manifest_by_digest_is_an_unaudited_404(released: World) -> None:
    live = released.live
    deployer = _token(live, Role.DEPLOYER)
    digest = _v2(live, "/v2/fraud/m/manifests/1", deployer).headers["Docker-Content-Digest"]
    released.releaser.revoke("fraud/m@1", "trojaned weights")
    by_tag = _v2(live, "/v2/fraud/m/manifests/1", deployer)
    assert by_tag.status_code == 403 and by_tag.json()["errors"][0]["code"] == "DENIED"
    rid = _rid()
    by_digest = _v2(live, f"/v2/fraud/m/manifests/{digest}", deployer, request_id=rid)
    assert by_digest.status_code != 200
    entries = _audited(released, rid)
    assert by_digest.status_code == 403 and by_digest.json()["errors"][0]["code"] == "DENIED", (
        by_digest.status_code,
        by_digest.text,
    )
    assert entries and entries[0]["outcome"] == "denied", entries


# HOLE (audit gap): "a version hidden from its caller is logged as a denial with hidden: true
# although the answer is a 404". By tag it is (oci_get_manifest, hidden). Addressed by digest --
# the manifest digest, the config blob, a layer only the pending version holds, or its referrers
# -- the deployer's refusal is not in the audit log at all. Correct: each of these refusals of
# a pending version to a deployer is audited as a denial with "hidden": true.
@pytest.mark.parametrize("what", ["manifest", "config", "layer", "referrers"])
def test_hole_pending_version_by_digest_is_hidden_without_audit(
    world: World, tmp_path: Path, what: str
) -> None:
    live = world.live
    root = make_model_dir(tmp_path / "secret-model", seed=7)
    (root / "unique.bin").write_bytes(b"only the pending version holds this " + uuid.uuid4().bytes)
    world.admin.push(root, "fraud/m@2")  # pending: producers see it, deployers must not
    producer = world.live.admin_token
    seen = _v2(live, "/v2/fraud/m/manifests/2", producer)
    assert seen.status_code == 200
    manifest = seen.json()
    manifest_digest = seen.headers["Docker-Content-Digest"]
    unique = next(
        x["digest"]
        for x in manifest["layers"]
        if x["annotations"]["org.opencontainers.image.title"] == "unique.bin"
    )
    path = {
        "manifest": f"/v2/fraud/m/manifests/{manifest_digest}",
        "config": f"/v2/fraud/m/blobs/{manifest['config']['digest']}",
        "layer": f"/v2/fraud/m/blobs/{unique}",
        "referrers": f"/v2/fraud/m/referrers/{manifest_digest}",
    }[what]
    deployer = _token(live, Role.DEPLOYER)
    # by tag: hidden and audited (the documented behaviour)
    rid_tag = _rid()
    by_tag = _v2(live, "/v2/fraud/m/manifests/2", deployer, request_id=rid_tag)
    assert by_tag.status_code == 404
    assert any(e["details"].get("hidden") for e in _audited(world, rid_tag))
    # by digest: refused, but not audited
    rid = _rid()
    answer = _v2(live, path, deployer, request_id=rid)
    if what == "referrers":
        assert answer.status_code == 200 and answer.json()["manifests"] == []
    else:
        assert answer.status_code == 404
    entries = _audited(world, rid)
    assert any(e["outcome"] == "denied" for e in entries), (what, entries)


# HOLE (availability; a publisher of the namespace, or just a busy CI): OciService.blob looks
# for versions holding the digest with ORDER BY created_at LIMIT 50 *before* filtering on what
# the caller may see. Fifty older pending versions holding the same file (a shared tokenizer,
# config or empty file) push every released holder out of the window: the deployer gets
# BLOB_UNKNOWN for a layer of the released manifest it was just served, and cannot pull it.
# Correct: visibility is part of the query (or no window): every layer of a manifest the caller
# was served is served.
def test_hole_fifty_pending_versions_hide_a_released_layer(world: World, tmp_path: Path) -> None:
    dataset = world.dataset()
    decoys = make_model_dir(tmp_path / "decoys")  # the same files World.model pushes (seed 0)
    for i in range(50):
        world.admin.push(decoys, f"fraud/m@0.{i}")  # pending, never released
    world.model(deps=[("fraud/tx@3", dataset)])
    world.releaser.release("fraud/m@1")
    live = world.live
    deployer = _token(live, Role.DEPLOYER)
    manifest = _v2(live, "/v2/fraud/m/manifests/1", deployer)
    assert manifest.status_code == 200
    missing = []
    for layer in manifest.json()["layers"]:
        answer = _v2(live, f"/v2/fraud/m/blobs/{layer['digest']}", deployer)
        if answer.status_code != 200:
            missing.append(
                (
                    layer["annotations"]["org.opencontainers.image.title"],
                    answer.status_code,
                    answer.text[:120],
                )
            )
    assert missing == []


# HOLE (database attacker; "revoked and rejected never"): the registry holds its own signed
# revocation of fraud/m@1, and ReleaseService.status reports such a version revoked "whatever
# its state column says (a row flipped back to released by hand does not make it servable)".
# /v2 decides on the state column alone: a row flipped back to 'released' is served -- manifest
# and every layer -- to any OCI client, which has no signed-status check of its own. Correct:
# a version with a registry-signed revocation is 403 DENIED over /v2 whatever the column says.
def test_hole_state_flipped_back_serves_a_signed_revoked_version(released: World) -> None:
    live = released.live
    released.releaser.revoke("fraud/m@1", "trojaned weights")
    _sql(
        live,
        "UPDATE versions SET state = 'released', state_reason = NULL "
        "WHERE version = '1' AND state = 'revoked'",
    )
    deployer = _token(live, Role.DEPLOYER)
    answer = _v2(live, "/v2/fraud/m/manifests/1", deployer)
    assert answer.status_code == 403, "a version the registry signed revoked is served over /v2"


# HOLE (bucket attacker / gc race; "never a 500 or a traceback"): OciService.read is a generator,
# so the store is only opened after the 200, Content-Length and Docker-Content-Digest headers are
# sent; a blob missing from the store then dies mid-response (traceback, connection reset). The
# same file over /v1 answers a clean error before any byte. Correct: open the blob before
# answering, so a missing blob is an OCI error (BLOB_UNKNOWN) or a 503, never a broken 200.
def test_hole_blob_missing_from_the_store_is_a_broken_200(released: World) -> None:
    live = released.live
    deployer = _token(live, Role.DEPLOYER)
    manifest = _v2(live, "/v2/fraud/m/manifests/1", deployer).json()
    layer = next(
        x
        for x in manifest["layers"]
        if x["annotations"]["org.opencontainers.image.title"] == "tokenizer/vocab.txt"
    )
    open_blob_store(live.settings).delete(layer["digest"].removeprefix("sha256:"))
    v1 = _v2(
        live, "/v1/namespaces/fraud/artifacts/m/versions/1/files/tokenizer/vocab.txt", deployer
    )
    assert v1.status_code >= 400  # the API answers an error before any byte
    try:
        answer = _v2(live, f"/v2/fraud/m/blobs/{layer['digest']}", deployer)
    except httpx.HTTPError as exc:  # the 200 was sent, then the connection dropped
        pytest.fail(f"/v2 answered 200 and broke the response: {exc!r}")
    assert answer.status_code != 200, "a 200 without the blob's bytes"


# HOLE (low; "knowing a digest grants nothing", "their empty config ... only for a version the
# caller may pull"): the empty config {} is served in a repository where the caller may pull
# nothing (every version pending, for a deployer), which also tells it that the repository
# exists. Correct: BLOB_UNKNOWN unless the caller may pull a version of that repository.
def test_hole_empty_config_served_where_nothing_is_pullable(world: World, tmp_path: Path) -> None:
    world.admin.push(make_model_dir(tmp_path / "p"), "fraud/prototype@1")  # pending only
    deployer = _token(world.live, Role.DEPLOYER)
    assert _v2(world.live, "/v2/fraud/prototype/tags/list", deployer).json()["tags"] == []
    answer = _v2(world.live, f"/v2/fraud/prototype/blobs/{EMPTY_CONFIG}", deployer)
    assert answer.status_code == 404, answer.text


# HOLE (resource exhaustion; any reader of the namespace, e.g. a deployer): every digest that
# names nothing (a blob or manifest miss) runs _store_missing, which lists *every* version of the
# repository with *every* file row (and a manifest miss by tag lists the first 1000 too), on every
# miss, with no negative cache -- even for a deployer who may see none of those versions. A
# repository of 100 versions x 200 files makes a random-digest miss ~15x slower than a hit; the
# cost grows with the repository, so a stream of random digests (allowed at 200 req/s per token)
# stalls the service's threads. Correct: a miss is answered from indexed lookups of the digest
# in this repository (the missing artifacts of a restored database filled once, not per miss):
# far fewer file rows than one version holds.
def test_hole_a_digest_miss_loads_the_whole_repository(world: World, tmp_path: Path) -> None:
    root = tmp_path / "wide"
    root.mkdir()
    for i in range(40):
        (root / f"shard{i:03d}.json").write_text(f'{{"shard": {i}}}\n')
    for i in range(10):
        world.admin.push(root, f"fraud/wide@{i}")  # 10 versions x 40 files = 400 file rows
    deployer = _token(world.live, Role.DEPLOYER)
    producer = world.live.admin_token
    _v2(world.live, f"/v2/fraud/wide/blobs/sha256:{'0' * 64}", producer)  # fills what is missing
    loaded = [0]

    def count(*_args: object) -> None:
        loaded[0] += 1

    event.listen(VersionFile, "load", count)
    try:
        for who in (deployer, producer):
            for path in (
                f"/v2/fraud/wide/blobs/sha256:{uuid.uuid4().hex * 2}",
                f"/v2/fraud/wide/manifests/sha256:{uuid.uuid4().hex * 2}",
            ):
                assert _v2(world.live, path, who).status_code == 404
    finally:
        event.remove(VersionFile, "load", count)
    assert loaded[0] < 40, f"4 digest misses loaded {loaded[0]} file rows of the repository"


# HOLE (a compromised training/evaluation identity, or a publisher holding such a key: "must
# not sign for another identity's role"): the registry-only predicate list (SCAN, RELEASE,
# REVOCATION, STATUS, BOM, checkpoint) lacks OCI_RELEASE, so a statement of the registry's own
# manifest-digest release type signed by training-ci is accepted by attach and then served under
# /v2 referrers, annotated predicateType oci-release, *before* the registry's own one: an OCI
# consumer looking for "the oci-release referrer" finds two and the first is not the
# registry's. Correct: OCI_RELEASE is registry-only (attach refuses it, as it refuses RELEASE);
# the referrers index holds exactly one oci-release statement, the registry-signed one.
def test_hole_an_identity_can_attach_an_oci_release_statement(released: World) -> None:
    live = released.live
    deployer = _token(live, Role.DEPLOYER)
    digest = _v2(live, "/v2/fraud/m/manifests/1", deployer).headers["Docker-Content-Digest"]
    forged = {
        "version": "fraud/m@1",
        "manifestDigest": "sha256:" + "e" * 64,
        "rootDigest": "sha256:" + "e" * 64,
        "releasedAt": "2030-01-01T00:00:00Z",
        "releaseBundleSha256": "e" * 64,
    }
    with contextlib.suppress(RegistryError):  # the correct answer: refused at attach
        released.attest("fraud/m@1", OCI_RELEASE, forged, released.training)
    index = _v2(
        live,
        f"/v2/fraud/m/referrers/{digest}?artifactType="
        "application/vnd.dev.sigstore.bundle.v0.3%2Bjson",
        deployer,
    ).json()
    statements = [
        r
        for r in index["manifests"]
        if r["annotations"]["dev.sigstore.bundle.predicateType"] == OCI_RELEASE
    ]
    assert len(statements) == 1, f"{len(statements)} oci-release referrers"


# HOLE (low; database attacker): config blobs and bundles are re-hashed before they are served
# (_document skips a body whose sha256 is not its digest), but the stored manifest is not: a
# row of oci_artifacts whose manifest bytes were edited (here one annotation; equally its
# layer list) is served by tag with Docker-Content-Digest still naming the digest the registry
# signed in its OCI-release statement. Clients pulling by tag take the body. Correct: fail
# closed -- a manifest whose bytes do not hash to its stored digest is never served (an error,
# audited), as _document does for blobs.
def test_hole_a_tampered_stored_manifest_is_served_under_the_signed_digest(
    released: World,
) -> None:
    live = released.live
    deployer = _token(live, Role.DEPLOYER)
    good = _v2(live, "/v2/fraud/m/manifests/1", deployer)
    signed = good.headers["Docker-Content-Digest"]
    tampered = good.content.replace(
        b'"org.opencontainers.image.version":"1"', b'"org.opencontainers.image.version":"0"'
    )
    assert tampered != good.content
    _sql(
        live,
        "UPDATE oci_artifacts SET manifest = :body WHERE manifest_digest = :digest",
        body=tampered,
        digest=signed.removeprefix("sha256:"),
    )
    answer = _v2(live, "/v2/fraud/m/manifests/1", deployer)
    served_ok = answer.status_code == 200
    assert not (served_ok and _digest(answer) != answer.headers["Docker-Content-Digest"]), (
        "served bytes that do not hash to the Docker-Content-Digest the registry signed"
    )


# == resisted ===================================================================================


# RESISTED: another namespace's token gets 403 DENIED (audited) for manifest, blob, the empty
# config, tags and referrers; the empty config in an unknown repository is NAME_UNKNOWN.
def test_resisted_other_namespace_and_unknown_repository(released: World) -> None:
    live = released.live
    deployer = _token(live, Role.DEPLOYER)
    digest = _v2(live, "/v2/fraud/m/manifests/1", deployer).headers["Docker-Content-Digest"]
    outsider = _token(live, Role.PUBLISHER, namespace="vision")
    for path in (
        "/v2/fraud/m/manifests/1",
        f"/v2/fraud/m/manifests/{digest}",
        f"/v2/fraud/m/blobs/{EMPTY_CONFIG}",
        "/v2/fraud/m/tags/list",
        f"/v2/fraud/m/referrers/{digest}",
        f"/v2/fraud/nothing/blobs/{EMPTY_CONFIG}",
    ):
        rid = _rid()
        answer = _v2(live, path, outsider, request_id=rid)
        assert answer.status_code == 403 and answer.json()["errors"][0]["code"] == "DENIED"
        assert _audited(released, rid)[0]["outcome"] == "denied"
    answer = _v2(live, f"/v2/fraud/nothing/blobs/{EMPTY_CONFIG}", deployer)
    assert answer.status_code == 404 and answer.json()["errors"][0]["code"] == "NAME_UNKNOWN"


# RESISTED: a digest of repository fraud/m (manifest, config, layer, evidence bundle, the
# registry's OCI-release bundle) asked in the sibling repository fraud/tx is unknown there.
def test_resisted_digests_of_a_sibling_repository(released: World) -> None:
    live = released.live
    deployer = _token(live, Role.DEPLOYER)
    got = _v2(live, "/v2/fraud/m/manifests/1", deployer)
    manifest, digest = got.json(), got.headers["Docker-Content-Digest"]
    index = _v2(live, f"/v2/fraud/m/referrers/{digest}", deployer).json()["manifests"]
    bundles = []
    for ref in index:
        referrer = _v2(live, f"/v2/fraud/m/manifests/{ref['digest']}", deployer)
        assert referrer.status_code == 200
        bundles.append(referrer.json()["layers"][0]["digest"])
        assert _v2(live, f"/v2/fraud/tx/manifests/{ref['digest']}", deployer).status_code == 404
    assert _v2(live, f"/v2/fraud/tx/manifests/{digest}", deployer).status_code == 404
    blobs = [manifest["config"]["digest"], *(x["digest"] for x in manifest["layers"]), *bundles]
    for blob in blobs:
        assert _v2(live, f"/v2/fraud/m/blobs/{blob}", deployer).status_code == 200
        answer = _v2(live, f"/v2/fraud/tx/blobs/{blob}", deployer)
        assert answer.status_code == 404 and answer.json()["errors"][0]["code"] == "BLOB_UNKNOWN"


# RESISTED: an alias left on a revoked version is 403 DENIED and absent from tags/list; digest
# tricks (uppercase hex, another algorithm, the OMS root digest, sha256 of nothing) are
# DIGEST_INVALID or unknown; name tricks are NAME_INVALID or NAME_UNKNOWN, never a 500.
def test_resisted_references_digests_and_names(released: World) -> None:
    live = released.live
    released.releaser.set_alias("fraud", "m", "prod", "1")
    deployer = _token(live, Role.DEPLOYER)
    got = _v2(live, "/v2/fraud/m/manifests/prod", deployer)
    digest = got.headers["Docker-Content-Digest"]
    root = got.json()["annotations"]["dev.modelseal.root-digest"]
    for path, status, code in [
        (f"/v2/fraud/m/manifests/{digest.upper()}", 400, "DIGEST_INVALID"),
        (f"/v2/fraud/m/manifests/sha256:{digest[7:].upper()}", 400, "DIGEST_INVALID"),
        (f"/v2/fraud/m/manifests/sha512:{'0' * 128}", 400, "DIGEST_INVALID"),
        (f"/v2/fraud/m/manifests/{root}", 404, "MANIFEST_UNKNOWN"),
        (f"/v2/fraud/m/blobs/sha256:{hashlib.sha256(b'').hexdigest()}", 404, "BLOB_UNKNOWN"),
        (f"/v2/fraud/m/referrers/{digest.upper()}", 400, "DIGEST_INVALID"),
        ("/v2/FRAUD/m/manifests/1", 400, "NAME_INVALID"),
        ("/v2/fraud/M/manifests/1", 400, "NAME_INVALID"),
        ("/v2/fraud/..%2Fm/manifests/1", 404, "NAME_UNKNOWN"),
        ("/v2/fraud%2Fm/manifests/1/x", 404, "NAME_UNKNOWN"),
        ("/v2/fraud/" + "m" * 65 + "/manifests/1", 400, "NAME_INVALID"),
        ("/v2/fraud/m/manifests/%EF%BC%91", 404, "MANIFEST_UNKNOWN"),  # fullwidth 1
        ("/v2/fraud/m/manifests/" + "1" * 300, 404, "MANIFEST_UNKNOWN"),
    ]:
        answer = _v2(live, path, deployer)
        assert (answer.status_code, answer.json()["errors"][0]["code"]) == (status, code), path
    released.releaser.revoke("fraud/m@1", "bad")
    answer = _v2(live, "/v2/fraud/m/manifests/prod", deployer)
    assert answer.status_code == 403 and "revoked" in answer.json()["errors"][0]["message"]
    assert _v2(live, "/v2/fraud/m/tags/list", deployer).json()["tags"] == []
    for layer in got.json()["layers"]:
        assert _v2(live, f"/v2/fraud/m/blobs/{layer['digest']}", deployer).status_code == 404


# RESISTED: a revoked or expired API token ends /v2 access at once (the token endpoint too);
# Basic with an empty password, a Bearer of spaces and a missing credential are 401 with the
# challenge; anonymous referrers are 401 and audited.
def test_resisted_tokens(released: World) -> None:
    live = released.live
    engine = make_engine(live.settings.resolved_database_url)
    tokens = TokenService(make_sessionmaker(engine))
    issued = tokens.create(name="ci", role=Role.DEPLOYER, namespace="fraud")
    basic = {"Authorization": "Basic " + base64.b64encode(f"u:{issued.secret}".encode()).decode()}
    got = _v2(live, "/v2/token?scope=repository:vision/x:pull&service=modelseal", headers=basic)
    assert got.status_code == 200 and got.json()["token"] == issued.secret
    assert _v2(live, "/v2/fraud/m/manifests/1", issued.secret).status_code == 200
    tokens.revoke(issued.id)
    expired = tokens.create(
        name="old", role=Role.DEPLOYER, namespace="fraud", expires_in=timedelta(seconds=-1)
    ).secret
    engine.dispose()
    assert _v2(live, "/v2/fraud/m/manifests/1", expired).status_code == 401
    assert _v2(live, "/v2/token", headers=basic).status_code == 401
    assert _v2(live, "/v2/fraud/m/manifests/1", issued.secret).status_code == 401
    empty = {"Authorization": "Basic " + base64.b64encode(b"u:").decode()}
    for headers in (empty, {"Authorization": "Bearer"}, {"Authorization": "Bearer    x"}, {}):
        answer = _v2(live, "/v2/", headers=headers)
        assert answer.status_code == 401 and "Bearer realm=" in answer.headers["WWW-Authenticate"]
    rid = _rid()
    answer = _v2(live, f"/v2/fraud/m/referrers/{EMPTY_CONFIG}", request_id=rid)
    assert answer.status_code == 401
    assert _audited(released, rid)[0]["outcome"] == "denied"


# RESISTED: a release racing the first manifest requests on a second replica (one database):
# every replica serves one manifest digest, and the registry's signed OCI-release statement
# names exactly that digest.
def test_resisted_release_racing_the_first_manifest_on_two_replicas(world: World) -> None:
    dataset = world.dataset()
    world.model(deps=[("fraud/tx@3", dataset)])
    live = world.live
    producer = _token(live, Role.RELEASER, name="watcher")
    seen: set[str] = set()
    with replica(live.settings) as other:
        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():
                answer = _v2(other, "/v2/fraud/m/manifests/1", producer)
                if answer.status_code == 200:
                    seen.add(answer.headers["Docker-Content-Digest"])

        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for thread in threads:
            thread.start()
        world.releaser.release("fraud/m@1")
        stop.set()
        for thread in threads:
            thread.join()
        deployer = _token(live, Role.DEPLOYER)
        for url in (live.url, other):
            seen.add(_v2(url, "/v2/fraud/m/manifests/1", deployer).headers["Docker-Content-Digest"])
        assert len(seen) == 1
        digest = seen.pop()
        index = _v2(other, f"/v2/fraud/m/referrers/{digest}", deployer).json()["manifests"]
        oci_release = [
            r for r in index if r["annotations"]["dev.sigstore.bundle.predicateType"] == OCI_RELEASE
        ]
        assert len(oci_release) == 1
        referrer = _v2(live, f"/v2/fraud/m/manifests/{oci_release[0]['digest']}", deployer).json()
        assert referrer["subject"]["digest"] == digest
        raw = _v2(live, f"/v2/fraud/m/blobs/{referrer['layers'][0]['digest']}", deployer).content
        statement = Bundle.parse(raw).statement()
        assert statement.predicate["manifestDigest"] == digest
        assert _digest(_v2(other, f"/v2/fraud/m/manifests/{digest}", deployer)) == digest
