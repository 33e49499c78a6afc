"""The OCI Distribution read API (/v2/): a released version pulled by plain HTTP following the
OCI protocol (challenge, token, manifest, blobs) as a CNCF ModelPack artifact, on both backends.

Each acceptance sits next to its rejection: pending versions are invisible to deployers, revoked
ones refused, another namespace's token denied, another namespace's blob unknown even by its
digest (knowing a digest grants nothing), bad tokens unauthorized. ``skopeo`` (an independent
client) pulls the artifact when it is installed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from fastapi.testclient import TestClient
from modelpack_client.schema import CONFIG_SCHEMA

from attest import keys
from attest.digests import FileDigest, root_digest
from attest.predicates import (
    CYCLONEDX_BOM,
    OCI_RELEASE,
    OMS_SIGNATURE,
    RELEASE,
    SCAN,
    SLSA_PROVENANCE,
    TEST_RESULT,
)
from registry.server.app import create_app
from registry.server.config import Settings
from registry.server.db import make_engine, make_sessionmaker
from registry.server.services import Role, TokenService
from registry.server.services.oci import (
    CONFIG_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    MODEL_ARTIFACT_TYPE,
    WEIGHT,
    WEIGHT_CONFIG,
)
from tests.integration.test_release import World, _released
from tests.peers import model_signing
from tests.support import Live, make_model_dir, serve

ACCEPT = {"Accept": f"{MANIFEST_MEDIA_TYPE}, application/vnd.oci.image.index.v1+json"}


@pytest.fixture
def world(live: Live, tmp_path: Path) -> World:
    return World(live, tmp_path)


#: Far above any healthy answer; httpx's own 5 s default once failed the probe of a loaded CI
#: machine (every SDK call waits 300 s), while a hung registry still fails the test.
_TIMEOUT = 60.0


def _get(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(url, **{"timeout": _TIMEOUT, **kwargs})


def _head(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.head(url, **{"timeout": _TIMEOUT, **kwargs})


def _post(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(url, **{"timeout": _TIMEOUT, **kwargs})


def _token(live: Live, role: Role, namespace: str | None, name: str = "oci") -> str:
    engine = make_engine(live.settings.resolved_database_url)
    try:
        return (
            TokenService(make_sessionmaker(engine))
            .create(name=name, role=role, namespace=namespace)
            .secret
        )
    finally:
        engine.dispose()


class Oci:
    """An OCI client as the distribution-spec describes one: probe, follow the challenge."""

    def __init__(self, url: str, api_token: str) -> None:
        self.url = url
        probe = _get(f"{url}/v2/")
        assert probe.status_code == 401
        assert probe.headers["Docker-Distribution-API-Version"] == "registry/2.0"
        challenge = probe.headers["WWW-Authenticate"]
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        assert challenge.startswith("Bearer ") and params["service"] == "modelseal"
        assert params["realm"] == f"{url}/v2/token"
        answer = _get(
            params["realm"],
            params={"service": params["service"], "scope": "repository:fraud/m:pull"},
            auth=("anything", api_token),
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["token"] == body["access_token"]
        self.headers = {"Authorization": f"Bearer {body['token']}"}
        assert _get(f"{url}/v2/", headers=self.headers).status_code == 200

    def get(self, path: str, **headers: str) -> httpx.Response:
        return _get(f"{self.url}/v2/{path}", headers={**self.headers, **headers})

    def head(self, path: str, **headers: str) -> httpx.Response:
        return _head(f"{self.url}/v2/{path}", headers={**self.headers, **headers})


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    [error] = response.json()["errors"]
    assert error["code"] == code
    return str(error["message"])


def _deployer_oci(world: World) -> Oci:
    return Oci(world.live.url, _token(world.live, Role.DEPLOYER, "fraud", "oci-deploy"))


def test_a_released_version_is_pulled_over_oci_as_a_modelpack_artifact(world: World) -> None:
    _released(world)
    version = world.admin.show("fraud/m@1")
    oci = _deployer_oci(world)

    got = oci.get("fraud/m/manifests/1", **ACCEPT)
    assert got.status_code == 200, got.text
    assert got.headers["Content-Type"] == MANIFEST_MEDIA_TYPE
    digest = "sha256:" + hashlib.sha256(got.content).hexdigest()
    assert got.headers["Docker-Content-Digest"] == digest
    assert int(got.headers["Content-Length"]) == len(got.content)
    manifest = got.json()
    assert got.content == json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == MANIFEST_MEDIA_TYPE
    assert manifest["artifactType"] == MODEL_ARTIFACT_TYPE
    assert manifest["annotations"]["dev.modelseal.root-digest"] == version.root_digest

    config = oci.get(f"fraud/m/blobs/{manifest['config']['digest']}")
    assert config.status_code == 200
    assert manifest["config"]["mediaType"] == CONFIG_MEDIA_TYPE
    assert "sha256:" + hashlib.sha256(config.content).hexdigest() == manifest["config"]["digest"]
    assert len(config.content) == manifest["config"]["size"]
    facts = config.json()
    assert facts["modelfs"]["type"] == "layers"
    assert facts["modelfs"]["diffIds"] == [layer["digest"] for layer in manifest["layers"]]
    # model-spec's own config schema (as modelpack-client ships it) accepts it.
    jsonschema.validate(facts, CONFIG_SCHEMA, format_checker=jsonschema.FormatChecker())
    assert facts["descriptor"]["name"] == "fraud/m" and facts["descriptor"]["version"] == "1"
    assert facts["config"]["format"] == "safetensors"

    pulled: list[FileDigest] = []
    for layer in manifest["layers"]:
        path = layer["annotations"]["org.cncf.model.filepath"]
        assert layer["annotations"]["org.opencontainers.image.title"] == path
        expected = WEIGHT if path.endswith(".safetensors") else WEIGHT_CONFIG
        assert layer["mediaType"] == expected, path
        blob = oci.get(f"fraud/m/blobs/{layer['digest']}")
        assert blob.status_code == 200
        assert blob.headers["Docker-Content-Digest"] == layer["digest"]
        assert int(blob.headers["Content-Length"]) == layer["size"] == len(blob.content)
        sha = hashlib.sha256(blob.content).hexdigest()
        assert f"sha256:{sha}" == layer["digest"]
        pulled.append(FileDigest(path, len(blob.content), sha))
    assert {f.path: f"sha256:{f.sha256}" for f in pulled} == {
        f.path: f.digest for f in version.files
    }
    assert f"sha256:{root_digest(pulled)}" == version.root_digest


def test_head_and_get_agree_and_ranges_are_served(world: World) -> None:
    _released(world)
    oci = _deployer_oci(world)
    got = oci.get("fraud/m/manifests/1")
    head = oci.head("fraud/m/manifests/1")
    assert head.status_code == 200 and head.content == b""
    for name in ("Docker-Content-Digest", "Content-Length", "Content-Type"):
        assert head.headers[name] == got.headers[name], name

    layer = max(got.json()["layers"], key=lambda item: item["size"])
    whole = oci.get(f"fraud/m/blobs/{layer['digest']}")
    head = oci.head(f"fraud/m/blobs/{layer['digest']}")
    assert head.status_code == 200 and head.content == b""
    for name in ("Docker-Content-Digest", "Content-Length", "Content-Type"):
        assert head.headers[name] == whole.headers[name], name

    part = oci.get(f"fraud/m/blobs/{layer['digest']}", Range="bytes=10-109")
    assert part.status_code == 206
    assert part.content == whole.content[10:110]
    assert part.headers["Content-Range"] == f"bytes 10-109/{layer['size']}"
    assert part.headers["Content-Length"] == "100"
    tail = oci.get(f"fraud/m/blobs/{layer['digest']}", Range="bytes=-7")
    assert tail.status_code == 206 and tail.content == whole.content[-7:]
    rest = oci.get(f"fraud/m/blobs/{layer['digest']}", Range=f"bytes={layer['size'] - 5}-")
    assert rest.status_code == 206 and rest.content == whole.content[-5:]
    beyond = oci.get(f"fraud/m/blobs/{layer['digest']}", Range=f"bytes={layer['size']}-")
    _error(beyond, 416, "SIZE_INVALID")
    assert beyond.headers["Content-Range"] == f"bytes */{layer['size']}"


def test_manifests_by_version_alias_and_digest_are_identical_on_every_replica(
    world: World,
) -> None:
    _released(world)
    world.admin.set_alias("fraud", "m", "prod", "1")
    oci = _deployer_oci(world)
    by_version = oci.get("fraud/m/manifests/1")
    by_alias = oci.get("fraud/m/manifests/prod")
    digest = by_version.headers["Docker-Content-Digest"]
    by_digest = oci.get(f"fraud/m/manifests/{digest}")
    assert by_version.content == by_alias.content == by_digest.content
    assert by_digest.headers["Docker-Content-Digest"] == digest
    config = by_version.json()["config"]["digest"]

    # Another replica (a second app on the same database and store): the same bytes.
    replica = create_app(world.live.settings, expiry_interval=None)
    with TestClient(replica) as other:
        again = other.get(f"/v2/fraud/m/manifests/{digest}", headers=oci.headers)
        assert again.status_code == 200
        assert again.content == by_version.content
        assert other.get(f"/v2/fraud/m/blobs/{config}", headers=oci.headers).status_code == 200


def test_tags_list_versions_and_aliases_the_caller_may_pull(world: World) -> None:
    _released(world)
    world.admin.set_alias("fraud", "m", "prod", "1")
    world.model("fraud/m@2")  # pending (aliases point only at released versions)
    deployer = _deployer_oci(world)
    admin = Oci(world.live.url, world.live.admin_token)

    listed = deployer.get("fraud/m/tags/list")
    assert listed.status_code == 200
    assert listed.json() == {"name": "fraud/m", "tags": ["1", "prod"]}
    assert admin.get("fraud/m/tags/list").json()["tags"] == ["1", "2", "prod"]

    first = admin.get("fraud/m/tags/list?n=2")
    assert first.json()["tags"] == ["1", "2"]
    assert first.headers["Link"] == '</v2/fraud/m/tags/list?n=2&last=2>; rel="next"'
    second = admin.get("fraud/m/tags/list?n=2&last=2")
    assert second.json()["tags"] == ["prod"]
    assert "Link" not in second.headers
    _error(admin.get("fraud/nope/tags/list"), 404, "NAME_UNKNOWN")


def test_pending_is_invisible_to_deployers_and_revoked_refused(world: World) -> None:
    _released(world)
    world.model("fraud/m@2", extra={"NOTES.md": b"only in version 2\n"})  # pending
    deployer = _deployer_oci(world)
    admin = Oci(world.live.url, world.live.admin_token)

    pending = admin.get("fraud/m/manifests/2")
    assert pending.status_code == 200  # producers see what they are producing
    digest = pending.headers["Docker-Content-Digest"]
    _error(deployer.get("fraud/m/manifests/2"), 404, "MANIFEST_UNKNOWN")
    _error(deployer.get(f"fraud/m/manifests/{digest}"), 404, "MANIFEST_UNKNOWN")
    released = {layer["digest"] for layer in deployer.get("fraud/m/manifests/1").json()["layers"]}
    only_pending = [
        layer["digest"] for layer in pending.json()["layers"] if layer["digest"] not in released
    ]
    assert only_pending
    _error(deployer.get(f"fraud/m/blobs/{only_pending[0]}"), 404, "BLOB_UNKNOWN")
    _error(deployer.get(f"fraud/m/blobs/{pending.json()['config']['digest']}"), 404,
           "BLOB_UNKNOWN")  # fmt: skip
    assert admin.get(f"fraud/m/blobs/{only_pending[0]}").status_code == 200

    manifest = deployer.get("fraud/m/manifests/1")
    assert manifest.status_code == 200
    layer = manifest.json()["layers"][0]["digest"]
    world.admin.revoke("fraud/m@1", "leaked training data")
    for client in (deployer, admin):
        message = _error(client.get("fraud/m/manifests/1"), 403, "DENIED")
        assert "revoked" in message
    _error(deployer.get(f"fraud/m/blobs/{layer}"), 404, "BLOB_UNKNOWN")
    # The admin still gets it: the same bytes are a file of pending fraud/m@2, which it may pull.
    assert admin.get(f"fraud/m/blobs/{layer}").status_code == 200
    assert deployer.head("fraud/m/manifests/1").status_code == 403
    assert deployer.get("fraud/m/tags/list").json()["tags"] == []

    entries = world.admin.audit_entries()
    denied = [e for e in entries if e["action"] == "oci_get_manifest" and e["outcome"] == "denied"]
    details = [json.loads(e["details"]) for e in denied]
    assert any(d.get("hidden") for d in details)  # the pending version, hidden from a deployer
    assert any(d.get("status") == 403 for d in details)  # the revoked one


def test_another_namespace_is_denied_and_its_blobs_unknown(world: World, tmp_path: Path) -> None:
    _released(world)
    other = make_model_dir(tmp_path / "other", seed=7)
    (other / "secret.bin").write_bytes(b"weights of another team")
    pushed = world.admin.push(other, "vision/x@1")
    secret = next(f.digest for f in pushed.files if f.path == "secret.bin")
    admin = Oci(world.live.url, world.live.admin_token)
    assert admin.get(f"vision/x/blobs/{secret}").status_code == 200

    # The blob exists, the caller may read fraud/m: asked for in fraud/m, it is unknown there.
    _error(admin.get(f"fraud/m/blobs/{secret}"), 404, "BLOB_UNKNOWN")
    deployer = _deployer_oci(world)
    _error(deployer.get(f"fraud/m/blobs/{secret}"), 404, "BLOB_UNKNOWN")
    # A fraud token asking vision directly is denied, whatever it asks for.
    _error(deployer.get(f"vision/x/blobs/{secret}"), 403, "DENIED")
    _error(deployer.get("vision/x/manifests/1"), 403, "DENIED")
    _error(deployer.get("vision/x/tags/list"), 403, "DENIED")
    vision = Oci(world.live.url, _token(world.live, Role.DEPLOYER, "vision", "vision-deploy"))
    _error(vision.get("fraud/m/manifests/1"), 403, "DENIED")
    entries = world.admin.audit_entries()
    assert any(e["action"] == "oci_get_blob" and e["outcome"] == "denied" for e in entries)


def test_bad_tokens_are_unauthorized_and_unknowns_are_named(world: World) -> None:
    _released(world)
    url = world.live.url
    for headers in ({}, {"Authorization": "Bearer ms_0000000000000000_nope"},
                    {"Authorization": "Basic !!!"}, {"Authorization": "Digest x"}):  # fmt: skip
        for path in ("", "fraud/m/manifests/1", "fraud/m/tags/list", "nope/nope/manifests/1"):
            answer = _get(f"{url}/v2/{path}", headers=headers)
            _error(answer, 401, "UNAUTHORIZED")
            assert answer.headers["WWW-Authenticate"].startswith('Bearer realm="')
    refused = _get(f"{url}/v2/token", auth=("user", "ms_0000000000000000_wrong"))
    _error(refused, 401, "UNAUTHORIZED")
    _error(_get(f"{url}/v2/token"), 401, "UNAUTHORIZED")
    revoked = world.admin.create_token("short-lived", "deployer", "fraud")
    assert revoked.token is not None
    oci = Oci(url, revoked.token)
    world.admin.revoke_token(revoked.id)
    _error(oci.get("fraud/m/manifests/1"), 401, "UNAUTHORIZED")  # the Bearer is the API token

    oci = _deployer_oci(world)
    _error(oci.get("fraud/nope/manifests/1"), 404, "NAME_UNKNOWN")
    _error(oci.get("fraud/m/manifests/9"), 404, "MANIFEST_UNKNOWN")
    _error(oci.get("fraud/m/manifests/nosuchalias"), 404, "MANIFEST_UNKNOWN")
    _error(oci.get(f"fraud/m/manifests/sha256:{'0' * 64}"), 404, "MANIFEST_UNKNOWN")
    _error(oci.get(f"fraud/m/blobs/sha256:{'0' * 64}"), 404, "BLOB_UNKNOWN")
    _error(oci.get("fraud/m/blobs/sha256:xyz"), 400, "DIGEST_INVALID")
    _error(oci.get("fraud/m/extra/manifests/1"), 404, "NAME_UNKNOWN")
    root = world.admin.show("fraud/m@1").root_digest  # an OMS root digest is no manifest digest
    _error(oci.get(f"fraud/m/manifests/{root}"), 404, "MANIFEST_UNKNOWN")
    pushed = _post(f"{url}/v2/fraud/m/blobs/uploads/", headers=oci.headers)
    _error(pushed, 405, "UNSUPPORTED")
    assert _head(f"{url}/v2/fraud/m/manifests/9", headers=oci.headers).status_code == 404


def test_oci_routes_are_not_in_the_openapi_document(live: Live) -> None:
    document: dict[str, Any] = _get(f"{live.url}/openapi.json", timeout=60).json()
    assert not [p for p in document["paths"] if p.startswith("/v2")]


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_skopeo_pulls_the_released_version(world: World, tmp_path: Path) -> None:
    _released(world)
    version = world.admin.show("fraud/m@1")
    secret = _token(world.live, Role.DEPLOYER, "fraud", "skopeo")
    host = world.live.url.removeprefix("http://")
    common = ["--src-tls-verify=false", "--src-creds", f"deploy:{secret}"]
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", "--creds", f"deploy:{secret}",
         f"docker://{host}/fraud/m:1"],
        capture_output=True, check=True, timeout=120,
    )  # fmt: skip
    assert json.loads(raw.stdout)["artifactType"] == MODEL_ARTIFACT_TYPE
    target = tmp_path / "oci-layout"
    subprocess.run(
        ["skopeo", "copy", *common, f"docker://{host}/fraud/m:1", f"oci:{target}:1"],
        capture_output=True, check=True, timeout=300,
    )  # fmt: skip
    index = json.loads((target / "index.json").read_text())
    [entry] = index["manifests"]
    blobs = target / "blobs" / "sha256"
    manifest_bytes = (blobs / entry["digest"].removeprefix("sha256:")).read_bytes()
    manifest = json.loads(manifest_bytes)
    files = []
    for layer in manifest["layers"]:
        data = (blobs / layer["digest"].removeprefix("sha256:")).read_bytes()
        path = layer["annotations"]["org.cncf.model.filepath"]
        files.append(FileDigest(path, len(data), hashlib.sha256(data).hexdigest()))
    assert f"sha256:{root_digest(files)}" == version.root_digest
    # And a deploy token of another namespace gets nothing.
    other = _token(world.live, Role.DEPLOYER, "vision", "skopeo-vision")
    denied = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", "--creds", f"deploy:{other}",
         f"docker://{host}/fraud/m:1"],
        capture_output=True, timeout=120,
    )  # fmt: skip
    assert denied.returncode != 0


@pytest.mark.integration
def test_blobs_redirect_to_presigned_urls_when_presigning_is_on(
    tmp_path: Path, pg_url: str, s3_env: Any, s3_storage_url: str
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=pg_url,
        storage=s3_storage_url,
        s3_endpoint_url=s3_env.endpoint_url,
        s3_region=s3_env.region,
        min_chunk_bytes=5 * 1024 * 1024,
        s3_presign_downloads=True,
    )
    with serve(settings) as running:
        world = World(running, tmp_path)
        _released(world)
        oci = _deployer_oci(world)
        manifest = oci.get("fraud/m/manifests/1").json()
        for layer in manifest["layers"]:
            moved = oci.get(f"fraud/m/blobs/{layer['digest']}")
            assert moved.status_code == 307
            assert moved.headers["Docker-Content-Digest"] == layer["digest"]
            assert moved.headers["Cache-Control"] == "no-store"
            fetched = _get(moved.headers["Location"])  # no registry credentials there
            assert fetched.status_code == 200
            assert f"sha256:{hashlib.sha256(fetched.content).hexdigest()}" == layer["digest"]
            part = _get(moved.headers["Location"], headers={"Range": "bytes=0-3"})
            assert part.status_code == 206 and part.content == fetched.content[:4]
            head = oci.head(f"fraud/m/blobs/{layer['digest']}")  # HEAD answers, no URL
            assert head.status_code == 200 and "Location" not in head.headers
        config = oci.get(f"fraud/m/blobs/{manifest['config']['digest']}")
        assert config.status_code == 200  # generated, never in the store: served directly
        # No URL for what may not be pulled; every URL handed out is on record.
        world.model("fraud/m@2", extra={"NOTES.md": b"only in version 2\n"})
        pending = Oci(running.url, running.admin_token).get("fraud/m/manifests/2").json()
        notes = next(item for item in pending["layers"] if item["annotations"][
            "org.cncf.model.filepath"] == "NOTES.md")  # fmt: skip
        _error(oci.get(f"fraud/m/blobs/{notes['digest']}"), 404, "BLOB_UNKNOWN")
        redirected = [
            e
            for e in world.admin.audit_entries()
            if e["action"] == "oci_get_blob" and e["outcome"] == "redirected"
        ]
        assert len(redirected) == len(manifest["layers"])
        assert {e["actor"] for e in redirected} == {"oci-deploy"}


# -- referrers: the evidence, where OCI tools look for it ----------------------------------------

BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
INDEX = "application/vnd.oci.image.index.v1+json"


def _dsse_verify(bundle: bytes, public_pem: bytes) -> dict[str, Any]:
    """Check a bundle's DSSE signature with nothing but ``cryptography`` (not our verifier):
    PAE(payloadType, payload) signed by ``public_pem``. Returns the statement."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    envelope = json.loads(bundle)["dsseEnvelope"]
    payload = base64.b64decode(envelope["payload"])
    kind = envelope["payloadType"].encode()
    pae = b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)
    key = load_pem_public_key(public_pem)
    signature = base64.b64decode(envelope["signatures"][0]["sig"])
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, pae)
        else:
            assert isinstance(key, ec.EllipticCurvePublicKey)
            key.verify(signature, pae, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise AssertionError("bad DSSE signature") from None
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    statement: dict[str, Any] = json.loads(payload)
    return statement


def _referrers(oci: Oci, digest: str, **params: str) -> httpx.Response:
    return _get(f"{oci.url}/v2/fraud/m/referrers/{digest}", params=params,
                     headers=oci.headers)  # fmt: skip


def test_referrers_list_each_bundle_and_a_release_of_the_manifest_digest(
    world: World, tmp_path: Path
) -> None:
    _released(world)
    oci = _deployer_oci(world)
    model = oci.get("fraud/m/manifests/1")
    digest = model.headers["Docker-Content-Digest"]

    listed = _referrers(oci, digest)
    assert listed.status_code == 200, listed.text
    assert listed.headers["Content-Type"] == INDEX
    assert "OCI-Filters-Applied" not in listed.headers
    index = listed.json()
    assert index["schemaVersion"] == 2 and index["mediaType"] == INDEX
    bundles: dict[str, bytes] = {}
    for descriptor in index["manifests"]:
        assert descriptor["artifactType"] == BUNDLE_TYPE
        assert descriptor["mediaType"] == MANIFEST_MEDIA_TYPE
        annotations = descriptor["annotations"]
        assert annotations["dev.sigstore.bundle.content"] == "dsse-envelope"
        referrer = oci.get(f"fraud/m/manifests/{descriptor['digest']}")
        assert referrer.status_code == 200, referrer.text
        assert referrer.headers["Docker-Content-Digest"] == descriptor["digest"]
        assert "sha256:" + hashlib.sha256(referrer.content).hexdigest() == descriptor["digest"]
        assert len(referrer.content) == descriptor["size"]
        body = referrer.json()
        assert body["artifactType"] == BUNDLE_TYPE
        assert body["subject"] == {"mediaType": MANIFEST_MEDIA_TYPE, "digest": digest,
                                   "size": len(model.content)}  # fmt: skip
        assert body["annotations"] == annotations
        empty = oci.get(f"fraud/m/blobs/{body['config']['digest']}")
        assert empty.status_code == 200 and empty.content == b"{}"
        [layer] = body["layers"]
        assert layer["mediaType"] == BUNDLE_TYPE
        blob = oci.get(f"fraud/m/blobs/{layer['digest']}")
        assert blob.status_code == 200
        assert "sha256:" + hashlib.sha256(blob.content).hexdigest() == layer["digest"]
        predicate_type = annotations["dev.sigstore.bundle.predicateType"]
        assert json.loads(base64.b64decode(json.loads(blob.content)["dsseEnvelope"]["payload"]))[
            "predicateType"] == predicate_type  # fmt: skip
        bundles[predicate_type] = blob.content
    assert set(bundles) == {OMS_SIGNATURE, SLSA_PROVENANCE, TEST_RESULT, SCAN, CYCLONEDX_BOM,
                            RELEASE, OCI_RELEASE}  # fmt: skip

    # The manifest-digest release verifies with the registry key alone, checked independently.
    key = _get(f"{world.live.url}/v1/registry/key").json()["public_key_pem"].encode()
    statement = _dsse_verify(bundles[OCI_RELEASE], key)
    assert statement["subject"] == [{"name": "fraud/m", "digest": {"sha256": digest[7:]}}]
    assert statement["predicateType"] == OCI_RELEASE
    version = world.admin.show("fraud/m@1")
    assert statement["predicate"]["rootDigest"] == version.root_digest
    assert statement["predicate"]["version"] == "fraud/m@1"
    release = _dsse_verify(bundles[RELEASE], key)
    assert statement["predicate"]["releaseBundleSha256"] == hashlib.sha256(
        bundles[RELEASE]).hexdigest()  # fmt: skip
    assert release["subject"][0]["digest"]["sha256"] == version.root_digest[7:]
    # ... and fails for a changed byte or another key.
    document = json.loads(bundles[OCI_RELEASE])
    payload = json.loads(base64.b64decode(document["dsseEnvelope"]["payload"]))
    payload["subject"][0]["digest"]["sha256"] = "0" * 64
    document["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    with pytest.raises(AssertionError, match="bad DSSE signature"):
        _dsse_verify(json.dumps(document).encode(), key)
    with pytest.raises(AssertionError, match="bad DSSE signature"):
        _dsse_verify(bundles[OCI_RELEASE], keys.public_pem(keys.generate().public_key()))

    # The OMS signature from the referrers verifies with model_signing over the OCI-pulled files.
    files = tmp_path / "pulled"
    for layer in model.json()["layers"]:
        target = files / layer["annotations"]["org.cncf.model.filepath"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(oci.get(f"fraud/m/blobs/{layer['digest']}").content)
    (tmp_path / "model.sig").write_bytes(bundles[OMS_SIGNATURE])
    (tmp_path / "training.pub").write_bytes(keys.public_pem(world.training.public_key))
    oracle = model_signing("verify", "key", "--signature", str(tmp_path / "model.sig"),
                           "--public_key", str(tmp_path / "training.pub"), str(files))  # fmt: skip
    assert oracle.returncode == 0, oracle.stdout + oracle.stderr
    (files / "config.json").write_bytes(b"{}")
    tampered = model_signing("verify", "key", "--signature", str(tmp_path / "model.sig"),
                             "--public_key", str(tmp_path / "training.pub"),
                             str(files))  # fmt: skip
    assert tampered.returncode != 0

    # artifactType filtering, and saying so.
    kept = _referrers(oci, digest, artifactType=BUNDLE_TYPE)
    assert kept.headers["OCI-Filters-Applied"] == "artifactType"
    assert kept.json()["manifests"] == index["manifests"]
    none = _referrers(oci, digest, artifactType="application/vnd.example.other")
    assert none.headers["OCI-Filters-Applied"] == "artifactType"
    assert none.json()["manifests"] == []
    # Unknown digests have no referrers (never a 404); malformed ones are a 400.
    assert _referrers(oci, "sha256:" + "0" * 64).json()["manifests"] == []
    _error(_referrers(oci, "sha256:xyz"), 400, "DIGEST_INVALID")
    _error(_referrers(oci, "md5:" + "0" * 32), 400, "DIGEST_INVALID")
    # A referrer manifest has no referrers of its own.
    assert _referrers(oci, index["manifests"][0]["digest"]).json()["manifests"] == []


def test_the_manifest_digest_release_is_signed_at_release_and_the_manifest_never_changes(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from registry.server.models import OciArtifact
    from registry.server.services import oci as oci_module

    _released(world)
    engine = make_engine(world.live.settings.resolved_database_url)
    try:
        with make_sessionmaker(engine)() as session:
            # Stored and signed by the release itself (of the model and of its dataset).
            rows = session.query(OciArtifact).all()
            [row] = [r for r in rows if b'"org.opencontainers.image.version":"1"' in r.manifest]
            assert row.release_bundle is not None
            stored = (row.manifest_digest, row.manifest)
    finally:
        engine.dispose()
    oci = _deployer_oci(world)
    served = oci.get("fraud/m/manifests/1")
    assert (served.headers["Docker-Content-Digest"], served.content) == (
        f"sha256:{stored[0]}", stored[1])  # fmt: skip

    # Whatever a later release of the code would generate, the digest signed stays the one served.
    real = oci_module.manifest_document

    def changed(record: Any) -> oci_module.Document:
        body = real(record).body.replace(b'"schemaVersion":2', b'"schemaVersion":2 ')
        return oci_module.Document(body, oci_module.sha256_digest(body), MANIFEST_MEDIA_TYPE)

    monkeypatch.setattr(oci_module, "manifest_document", changed)
    assert oci.get("fraud/m/manifests/1").content == stored[1]
    # A version not served before gets the (new) bytes, once, and keeps them.
    world.model("fraud/m@2", extra={"NOTES.md": b"v2\n"})
    world.releaser.release("fraud/m@2")
    first = oci.get("fraud/m/manifests/2")
    assert b'"schemaVersion":2 ' in first.content
    monkeypatch.setattr(oci_module, "manifest_document", real)
    assert oci.get("fraud/m/manifests/2").content == first.content


def test_a_version_released_before_oci_artifacts_were_stored_gets_them_on_first_ask(
    world: World,
) -> None:
    from sqlalchemy import delete

    from registry.server.models import OciArtifact, OciReferrer

    _released(world)
    engine = make_engine(world.live.settings.resolved_database_url)
    try:
        with make_sessionmaker(engine)() as session, session.begin():
            session.execute(delete(OciReferrer))
            session.execute(delete(OciArtifact))
    finally:
        engine.dispose()
    oci = _deployer_oci(world)
    digest = oci.get("fraud/m/manifests/1").headers["Docker-Content-Digest"]
    # (by digest too, before anything else asked for it: stored on the first miss)
    predicate_types = [d["annotations"]["dev.sigstore.bundle.predicateType"]
                       for d in _referrers(oci, digest).json()["manifests"]]  # fmt: skip
    assert OCI_RELEASE in predicate_types and RELEASE in predicate_types


def test_referrers_follow_the_pull_rules(world: World) -> None:
    _released(world)
    world.model("fraud/m@2", extra={"NOTES.md": b"only in version 2\n"})  # pending
    deployer = _deployer_oci(world)
    admin = Oci(world.live.url, world.live.admin_token)

    pending = admin.get("fraud/m/manifests/2").headers["Docker-Content-Digest"]
    producer_view = _referrers(admin, pending).json()["manifests"]
    kinds = {d["annotations"]["dev.sigstore.bundle.predicateType"] for d in producer_view}
    assert OMS_SIGNATURE in kinds and OCI_RELEASE not in kinds  # not released: no release
    hidden = producer_view[0]["digest"]
    bundle = admin.get(f"fraud/m/manifests/{hidden}").json()["layers"][0]["digest"]
    assert admin.get(f"fraud/m/blobs/{bundle}").status_code == 200
    # A deployer learns nothing of the pending version, even knowing every digest.
    assert _referrers(deployer, pending).json()["manifests"] == []
    _error(deployer.get(f"fraud/m/manifests/{hidden}"), 404, "MANIFEST_UNKNOWN")
    _error(deployer.get(f"fraud/m/blobs/{bundle}"), 404, "BLOB_UNKNOWN")

    released = deployer.get("fraud/m/manifests/1").headers["Docker-Content-Digest"]
    index = _referrers(deployer, released).json()["manifests"]
    assert index
    some = index[0]["digest"]
    layer = deployer.get(f"fraud/m/manifests/{some}").json()["layers"][0]["digest"]
    # Another namespace's token is denied outright.
    vision = Oci(world.live.url, _token(world.live, Role.DEPLOYER, "vision", "vision-deploy"))
    _error(_referrers(vision, released), 403, "DENIED")
    # Revoked: no referrers, no referrer manifests, no bundles.
    world.admin.revoke("fraud/m@1", "leaked training data")
    for client in (deployer, admin):
        assert _referrers(client, released).json()["manifests"] == []
        assert "revoked" in _error(client.get(f"fraud/m/manifests/{some}"), 403, "DENIED")
    _error(deployer.get(f"fraud/m/blobs/{layer}"), 404, "BLOB_UNKNOWN")
