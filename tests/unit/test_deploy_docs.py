"""deploy/ and docs/kubernetes.md, without a cluster: the manifests are what Kubernetes and the
controllers they name accept, the command lines in them and in the docs are ones the real CLI
accepts, the Dockerfile copies what the package is built from, and the docs name only files
that exist. (The command lines are run against a live registry in
tests/e2e/test_deploy_recipes.py.)

Core objects are validated against the Kubernetes OpenAPI schemas shipped in PyPI
``kubernetes-validate``, strictly (an unknown field fails). The custom resources have no schema
here; their fields are checked against the Go types that define them:
policy-controller ``pkg/apis/policy/v1beta1/clusterimagepolicy_types.go`` (v0.15.1) and KServe
``pkg/apis/serving/v1alpha1/storage_container_types.go`` and the v1beta1 InferenceService.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from typing import Any

import kubernetes_validate
import pytest

from attest.predicates import OCI_RELEASE
from tests.e2e.test_deploy_recipes import (
    DOCS,
    KUBERNETES,
    ROOT,
    dockerfile_stages,
    documents,
    init_container,
    kserve_container,
    one,
)
from tests.support import run_cli

CORE_KINDS = {"ConfigMap", "Deployment", "Pod"}
#: Oldest and newest Kubernetes whose schemas the manifests must satisfy (image volumes: 1.31+).
VERSIONS = ("1.33.0", "1.37.0")

# Field names (json tags) of policy-controller v0.15.1, pkg/apis/policy/v1beta1.
CIP_SPEC = {"images", "authorities", "policy", "mode", "match"}
CIP_AUTHORITY = {"name", "key", "keyless", "static", "source", "ctlog", "attestations",
                 "rfc3161timestamp", "signatureFormat"}  # fmt: skip
CIP_KEY = {"secretRef", "data", "kms", "hashAlgorithm"}
CIP_ATTESTATION = {"name", "predicateType", "policy"}
# KServe pkg/apis/serving/v1alpha1/storage_container_types.go.
CSC_SPEC = {"container", "supportedUriFormats", "workloadType", "supportsMultiModelDownload"}
CSC_URI_FORMAT = {"prefix", "regex"}


def manifests() -> list[str]:
    return sorted(p.name for p in KUBERNETES.glob("*.yaml"))


def test_there_are_the_three_recipes() -> None:
    assert manifests() == [
        "image-volume.yaml", "init-container.yaml", "kserve-storage-initializer.yaml"]  # fmt: skip


@pytest.mark.parametrize("name", manifests())
def test_every_object_has_the_fields_kubernetes_requires(name: str) -> None:
    for document in documents(name):
        assert set(document) <= {"apiVersion", "kind", "metadata", "spec", "data"}
        assert document["apiVersion"] and document["kind"]
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", document["metadata"]["name"])
        cluster_scoped = document["kind"].startswith("Cluster")
        assert ("namespace" in document["metadata"]) is not cluster_scoped, document["kind"]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", manifests())
def test_core_objects_validate_against_the_kubernetes_schemas(name: str, version: str) -> None:
    for document in documents(name):
        if document["kind"] in CORE_KINDS:
            kubernetes_validate.validate(document, version, strict=True)


def test_a_schema_check_would_catch_a_misspelt_field() -> None:
    pod = one("image-volume.yaml", "Pod")
    pod["spec"]["volumes"][0]["image"]["pullPolcy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pod, VERSIONS[-1], strict=True)


def _as_pod(container: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "check"},
            "spec": {"containers": [container]}}  # fmt: skip


@pytest.mark.parametrize("version", VERSIONS)
def test_the_storage_initializer_is_a_valid_container(version: str) -> None:
    kubernetes_validate.validate(_as_pod(kserve_container()), version, strict=True)


def test_the_cluster_image_policy_asks_for_the_registry_signed_oci_release() -> None:
    policy = one("image-volume.yaml", "ClusterImagePolicy")
    assert policy["apiVersion"] == "policy.sigstore.dev/v1beta1"
    spec = policy["spec"]
    assert set(spec) <= CIP_SPEC
    assert [set(image) for image in spec["images"]] == [{"glob"}]
    [authority] = spec["authorities"]
    assert set(authority) <= CIP_AUTHORITY
    assert set(authority["key"]) <= CIP_KEY
    assert re.fullmatch(r"-----BEGIN PUBLIC KEY-----\n.+\n-----END PUBLIC KEY-----\n",
                        authority["key"]["data"], flags=re.S)  # fmt: skip
    assert authority["signatureFormat"] in ("legacy", "bundle")
    [attestation] = authority["attestations"]
    assert set(attestation) <= CIP_ATTESTATION
    assert attestation["predicateType"] == OCI_RELEASE
    pod = one("image-volume.yaml", "Pod")
    [volume] = pod["spec"]["volumes"]
    reference = volume["image"]["reference"]
    assert re.fullmatch(r"[a-z0-9.-]+(:\d+)?/[a-z0-9-]+/[a-z0-9-]+@sha256:[0-9a-f]{64}", reference)
    glob = spec["images"][0]["glob"]
    assert reference.startswith(glob.removesuffix("**"))


def test_the_kserve_objects_have_the_fields_kserve_defines() -> None:
    storage = one("kserve-storage-initializer.yaml", "ClusterStorageContainer")
    assert storage["apiVersion"] == "serving.kserve.io/v1alpha1"
    assert set(storage["spec"]) <= CSC_SPEC
    [uri_format] = storage["spec"]["supportedUriFormats"]
    assert set(uri_format) <= CSC_URI_FORMAT
    service = one("kserve-storage-initializer.yaml", "InferenceService")
    assert service["apiVersion"] == "serving.kserve.io/v1beta1"
    model = service["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"]
    assert model["storageUri"].startswith(uri_format["prefix"])
    # KServe appends "<storageUri> /mnt/models" as arguments: none may be set here (a list in
    # the spec would replace them in its strategic merge).
    assert "args" not in kserve_container()


# -- command lines --------------------------------------------------------------------------------


def pull_options() -> set[str]:
    shown = run_cli("pull", "--help", columns=200)
    assert shown.returncode == 0, shown.stderr
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", shown.stdout))


def _options(argv: list[str]) -> list[str]:
    return [a for a in argv if a.startswith("--")]


def _pull_lines_in_docs() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", DOCS.read_text(), flags=re.S)
    return [ln.strip() for block in blocks for ln in block.splitlines()
            if ln.strip().startswith("modelseal pull ")]  # fmt: skip


def _pull_line_in_kserve_script() -> list[str]:
    script = kserve_container()["command"][2]
    [line] = [ln.strip() for ln in script.splitlines() if ln.strip().startswith("modelseal pull")]
    return shlex.split(line)


def test_every_option_in_the_pull_command_lines_is_one_the_cli_has() -> None:
    known = pull_options()
    assert {"--to", "--replace", "--registry-key", "--no-progress"} <= known
    container = init_container()
    lines = [
        [*container["command"], *container["args"]],
        _pull_line_in_kserve_script(),
        *(shlex.split(line) for line in _pull_lines_in_docs()),
    ]
    for argv in lines:
        assert argv[:2] == ["modelseal", "pull"], argv
        assert set(_options(argv)) <= known, argv
        assert "--to" in argv and not argv[2].startswith("-")  # REF, then --to DIR


def test_the_docs_show_the_init_containers_command_line_exactly() -> None:
    container = init_container()
    assert container["command"] == ["modelseal"]
    assert shlex.join([*container["command"], *container["args"]]) in _pull_lines_in_docs()


def test_the_init_container_pulls_into_the_volume_not_onto_its_mount_point() -> None:
    container = init_container()
    args = container["args"]
    target = args[args.index("--to") + 1]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert "/mnt/models" in mounts and target.startswith("/mnt/models/")
    key = args[args.index("--registry-key") + 1]
    assert key.startswith("/etc/modelseal/") and mounts["/etc/modelseal"] == "registry-key"
    env = {e["name"]: e for e in container["env"]}
    assert env["MODELSEAL_CONFIG_DIR"]["value"] in mounts  # writable: the root fs is read-only
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    server = one("init-container.yaml", "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "models", "mountPath": "/mnt/models", "readOnly": True} in server[
        "volumeMounts"
    ]
    assert target in server["args"]


# -- the Dockerfile and the docs ----------------------------------------------------------------


def test_the_dockerfile_copies_what_the_package_is_built_from() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    build, final = dockerfile_stages()
    copied = {source for line in build if line.startswith("COPY ")
              for source in shlex.split(line)[1:-1]}  # fmt: skip
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert copied == {"pyproject.toml", project["project"]["readme"], *packages}
    assert project["project"]["scripts"]["modelseal"] == "registry.__main__:run"
    [user] = [ln.split()[1] for ln in final if ln.startswith("USER ")]
    assert user.split(":")[0].isdigit() and int(user.split(":")[0]) != 0  # runAsNonRoot needs it
    assert final[-2:] == ['ENTRYPOINT ["modelseal"]', 'CMD ["--help"]']
    image = init_container()["securityContext"]
    assert image["runAsNonRoot"] is True


def test_the_docs_name_only_files_the_repository_has() -> None:
    text = DOCS.read_text()
    named = set(re.findall(r"`((?:deploy|docs|tests|registry|attest|bench)/[\w./-]+)`", text))
    named |= set(re.findall(r"\b((?:deploy|docs|tests)/[\w/-]+\.(?:md|py|yaml))\b", text))
    assert named, "the docs name the recipes"
    for path in sorted(named):
        assert (ROOT / path).exists(), path


def test_the_manifests_name_the_docs_and_the_docs_every_manifest() -> None:
    text = DOCS.read_text()
    for name in manifests():
        assert f"deploy/kubernetes/{name}" in text
        assert "docs/kubernetes.md" in (KUBERNETES / name).read_text(), name
