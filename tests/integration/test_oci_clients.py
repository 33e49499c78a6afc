"""Independent OCI clients pull a released version from a live registry, on both backends.

``oras`` (the ORAS Python SDK, PyPI ``oras``) follows the Bearer challenge with the API token as
the basic-auth password, as docs/oci.md says, and talks plain HTTP with ``insecure=True``. It
does not check what it downloads, so the test hashes every file it writes: each must be the
version's file, and together they must give the version's OMS root digest.

``modelpack-client`` (PyPI) is a ModelPack-aware client: it checks the manifest's media types,
validates the config blob against the model-spec JSON schema it ships (copied from
``modelpack/model-spec`` ``schema/config-schema.json``), checks each layer against its DiffID and
writes the files by their ``org.cncf.model.filepath`` annotation.

Neither client writes credentials anywhere: ``HOME`` is a temporary directory (oras reads
``~/.docker/config.json``), and modelpack-client's login is pointed at a file in it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import oras.client
import pytest
from modelpack_client import ModelPackClient
from modelpack_client.schema import CONFIG_SCHEMA

from attest.digests import FileDigest, root_digest
from registry.server.services import Role
from registry.wire import VersionPublic
from tests.integration.test_oci import World, _released, _token
from tests.support import Live


@pytest.fixture
def world(live: Live, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # no ~/.docker/config.json of the user's is read
    return World(live, tmp_path)


def _host(world: World) -> str:
    return world.live.url.removeprefix("http://")


def _written(root: Path) -> list[FileDigest]:
    """Every regular file under ``root`` with its size and sha256 (what a loader would read)."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        found.append(FileDigest(path.relative_to(root).as_posix(), len(data),
                                hashlib.sha256(data).hexdigest()))  # fmt: skip
    return found


def _is_the_version(files: list[FileDigest], version: VersionPublic) -> None:
    assert {f.path: f"sha256:{f.sha256}" for f in files} == {
        f.path: f.digest for f in version.files
    }
    assert f"sha256:{root_digest(files)}" == version.root_digest


def _oras(world: World, secret: str) -> oras.client.OrasClient:
    client = oras.client.OrasClient(hostname=_host(world), insecure=True)
    client.auth.set_basic_auth("deploy", secret)  # no login(): it would write a docker config
    return client


def test_the_oras_sdk_pulls_a_released_version_by_tag_and_by_digest(
    world: World, tmp_path: Path
) -> None:
    _released(world)
    version = world.admin.show("fraud/m@1")
    client = _oras(world, _token(world.live, Role.DEPLOYER, "fraud", "oras"))

    by_tag = tmp_path / "by-tag"
    written = client.pull(target=f"{_host(world)}/fraud/m:1", outdir=str(by_tag))
    assert len(written) == len(version.files)
    _is_the_version(_written(by_tag), version)

    manifest = client.get_manifest(f"{_host(world)}/fraud/m:1")
    assert manifest["annotations"]["dev.modelseal.root-digest"] == version.root_digest
    digest = (
        "sha256:"
        + hashlib.sha256(
            client.do_request(f"http://{_host(world)}/v2/fraud/m/manifests/1").content
        ).hexdigest()
    )
    by_digest = tmp_path / "by-digest"
    client.pull(target=f"{_host(world)}/fraud/m@{digest}", outdir=str(by_digest))
    _is_the_version(_written(by_digest), version)


def test_the_oras_sdk_gets_nothing_it_may_not_pull(world: World, tmp_path: Path) -> None:
    """Each refusal with a fresh client: one that already holds a Bearer token treats a 403
    without a ``WWW-Authenticate`` challenge as an error it retries with back-off (oras-py
    0.2.43 ``decorator.retry``: about two minutes) before it fails."""
    _released(world)
    world.model("fraud/m@2", extra={"NOTES.md": b"only in version 2\n"})  # pending
    secret = _token(world.live, Role.DEPLOYER, "fraud", "oras")

    pending = tmp_path / "pending"
    with pytest.raises(ValueError, match="Issue with"):  # invisible to a deployer: 404
        _oras(world, secret).pull(target=f"{_host(world)}/fraud/m:2", outdir=str(pending))
    assert not pending.exists() or not any(pending.iterdir())

    other = _oras(world, _token(world.live, Role.DEPLOYER, "vision", "oras-vision"))
    with pytest.raises(ValueError, match="Issue with"):  # another namespace's token: 403
        other.pull(target=f"{_host(world)}/fraud/m:1", outdir=str(tmp_path / "other"))

    world.admin.revoke("fraud/m@1", "leaked training data")
    revoked = tmp_path / "revoked"
    with pytest.raises(ValueError, match="Issue with"):  # revoked: 403
        _oras(world, secret).pull(target=f"{_host(world)}/fraud/m:1", outdir=str(revoked))
    assert not revoked.exists() or not any(revoked.iterdir())


def test_a_modelpack_client_reads_the_manifest_and_config_and_pulls(
    world: World, tmp_path: Path
) -> None:
    _released(world)
    version = world.admin.show("fraud/m@1")
    client = ModelPackClient(insecure=True)
    client.login(_host(world), "deploy", _token(world.live, Role.DEPLOYER, "fraud", "mp"),
                 config_path=tmp_path / "docker-config.json")  # fmt: skip
    target = tmp_path / "modelpack"
    pulled = client.pull(f"{_host(world)}/fraud/m:1", target,
                         config_path=tmp_path / "docker-config.json")  # fmt: skip
    assert pulled.config["descriptor"]["name"] == "fraud/m"
    assert pulled.config["descriptor"]["version"] == "1"
    assert pulled.config["config"]["format"] == "safetensors"
    _is_the_version(_written(target), version)


def test_the_config_schema_the_modelpack_client_ships_is_model_specs() -> None:
    """What the test above relies on: the schema modelpack-client validates with is the
    model-spec config schema (``modelfs.diffIds``, no other property)."""
    assert CONFIG_SCHEMA["$id"] == "https://github.com/modelpack/model-spec/config"
    modelfs = CONFIG_SCHEMA["$defs"]["ModelFS"]
    assert modelfs["required"] == ["type", "diffIds"]
    assert modelfs["additionalProperties"] is False
