"""The deploy recipes of docs/kubernetes.md run as written, against a live registry.

No cluster here, so each recipe runs as the container would run it: the init container's
``command`` + ``args`` from deploy/kubernetes/init-container.yaml (paths moved into a temporary
directory, the ``modelseal`` console script replaced by ``python -m registry``, which is what it
runs), with its environment; the KServe storage initializer's shell script from
deploy/kubernetes/kserve-storage-initializer.yaml with the two arguments KServe gives it. An
emptyDir is a host directory bind-mounted into the container, so the volume is a directory
bind-mounted onto the mount path inside a private mount namespace (``unshare``; skipped where
namespaces are not allowed). Every exit code the docs list is observed, and the wheel the
Dockerfile builds from the files it copies pulls a released version through its entry point.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from attest import keys
from attest.digests import FileDigest, root_digest
from registry.server.config import Settings
from registry.server.db import make_engine, make_sessionmaker
from registry.server.services import Role, TokenService
from registry.wire import VersionPublic
from tests.integration.test_release import World, _released
from tests.support import Live, serve

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
DOCS = ROOT / "docs" / "kubernetes.md"
REF = "fraud/m@1"  # what the tests pull in place of the manifests' example version
EXAMPLE_REF = "vision/resnet@1.0.0"


def documents(name: str) -> list[dict[str, Any]]:
    with (KUBERNETES / name).open() as handle:
        return [d for d in yaml.safe_load_all(handle) if d]


def one(name: str, kind: str) -> dict[str, Any]:
    [found] = [d for d in documents(name) if d["kind"] == kind]
    return found


def init_container() -> dict[str, Any]:
    [container] = one("init-container.yaml", "Deployment")["spec"]["template"]["spec"][
        "initContainers"
    ]
    return container


def kserve_container() -> dict[str, Any]:
    container: dict[str, Any] = one("kserve-storage-initializer.yaml", "ClusterStorageContainer")[
        "spec"
    ]["container"]
    return container


def documented_exit_codes() -> set[int]:
    section = DOCS.read_text().split("## Exit codes of `modelseal pull`", 1)[1].split("\n## ")[0]
    return {int(code) for code in re.findall(r"^\| (\d+) \|", section, flags=re.M)}


def _written(root: Path) -> list[FileDigest]:
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        found.append(FileDigest(path.relative_to(root).as_posix(), len(data),
                                hashlib.sha256(data).hexdigest()))  # fmt: skip
    return found


def is_the_version(root: Path, version: VersionPublic) -> None:
    files = _written(root)
    assert {f.path: f"sha256:{f.sha256}" for f in files} == {
        f.path: f.digest for f in version.files
    }
    assert f"sha256:{root_digest(files)}" == version.root_digest


def _mount_namespaces() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"],
                           capture_output=True, timeout=30)  # fmt: skip
    return probe.returncode == 0


needs_mounts = pytest.mark.skipif(
    not _mount_namespaces(), reason="unshare --user --mount is not allowed here"
)


@dataclass
class Registry:
    """A live registry (embedded default) with fraud/m@1 released, a deployer token for fraud,
    and its public key in a file, as docs/kubernetes.md says to get it."""

    live: Live
    world: World
    tmp: Path
    token: str
    key: Path

    def env(self, container: dict[str, Any], paths: dict[str, str], **extra: str) -> dict[str, str]:
        """The process environment of ``container``: this one's without MODELSEAL_*, plus the
        container's ``env`` with the URL, the token and its paths made local."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELSEAL_", "GIT_"))}
        for item in container.get("env", []):
            name = item["name"]
            if name == "MODELSEAL_URL":
                env[name] = self.live.url
            elif name == "MODELSEAL_TOKEN":
                assert item["valueFrom"]["secretKeyRef"]["key"] == "token"
                env[name] = self.token
            elif name == "REGISTRY_KEY_PEM":
                assert item["valueFrom"]["configMapKeyRef"]["key"] == "registry.pub"
                env[name] = self.key.read_text()
            else:
                env[name] = local(item["value"], paths)
        env.update(extra)
        return env


def local(value: str, paths: dict[str, str]) -> str:
    """``value`` with a container path (a key of ``paths``, or below one) made local."""
    for inside, outside in paths.items():
        if value == inside or value.startswith(inside + "/"):
            return outside + value[len(inside) :]
    return value


def token(live: Live, role: Role, namespace: str, name: str) -> str:
    engine = make_engine(live.settings.resolved_database_url)
    try:
        tokens = TokenService(make_sessionmaker(engine))
        return tokens.create(name=name, role=role, namespace=namespace).secret
    finally:
        engine.dispose()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    settings = Settings(data_dir=tmp_path / "data", min_chunk_bytes=1024)
    with serve(settings) as live:
        world = World(live, tmp_path)
        _released(world)
        served = httpx.get(f"{live.url}/v1/registry/key").json()
        key = tmp_path / "registry.pub"
        key.write_text(served["public_key_pem"])
        yield Registry(live, world, tmp_path, token(live, Role.DEPLOYER, "fraud", "k8s"), key)


def modelseal_argv(container: dict[str, Any]) -> list[str]:
    argv = [*container.get("command", []), *container.get("args", [])]
    assert argv[0] == "modelseal"
    return [sys.executable, "-m", "registry", *argv[1:]]


def pull_argv(registry: Registry, paths: dict[str, str]) -> list[str]:
    """The init container's command line, the example version replaced by fraud/m@1."""
    argv = modelseal_argv(init_container())
    assert argv.count(EXAMPLE_REF) == 1
    return [REF if a == EXAMPLE_REF else local(a, paths) for a in argv]


def run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=180)


def in_pod(volume: Path, mount: Path, argv: list[str], env: dict[str, str], cwd: Path
           ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """``argv`` with the directory ``volume`` bind-mounted on ``mount`` (as the kubelet mounts
    an emptyDir), in a private mount namespace."""
    script = 'mount --bind "$0" "$1" && shift && exec "$@"'
    return run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script,
                str(volume), str(mount), *argv], env, cwd)  # fmt: skip


def container_paths(tmp: Path, registry: Registry) -> tuple[dict[str, str], Path, Path]:
    """Local stand-ins for the init container's volumes: ``/mnt/models`` (an empty mount point
    whose volume is ``volume``), the key's ConfigMap, the client-state emptyDir."""
    mount = tmp / "pod" / "mnt" / "models"
    mount.mkdir(parents=True)
    volume = tmp / "volume"
    volume.mkdir()
    state = tmp / "client-state"
    state.mkdir()
    return (
        {"/mnt/models": str(mount), "/etc/modelseal/registry.pub": str(registry.key),
         "/var/run/modelseal": str(state)},
        mount,
        volume,
    )  # fmt: skip


# -- (a) the init container ---------------------------------------------------------------------


def test_the_init_container_command_pulls_a_released_version(registry: Registry) -> None:
    paths, mount, _volume = container_paths(registry.tmp, registry)
    env = registry.env(init_container(), paths)
    argv = pull_argv(registry, paths)
    version = registry.world.admin.show(REF)

    done = run(argv, env, registry.tmp)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == version.root_digest
    assert "pinned" not in done.stderr  # --registry-key: nothing is trusted on first use
    is_the_version(mount / "model", version)
    assert [p.name for p in mount.iterdir()] == ["model"]  # no staging directory left

    again = run(argv, env, registry.tmp)  # a restarted init container, same volume
    assert again.returncode == 0, again.stderr
    is_the_version(mount / "model", version)
    assert (Path(paths["/var/run/modelseal"]) / "pins.json").is_file()


@needs_mounts
def test_the_target_is_a_directory_in_the_volume_not_its_mount_point(registry: Registry) -> None:
    paths, mount, volume = container_paths(registry.tmp, registry)
    env = registry.env(init_container(), paths)
    argv = pull_argv(registry, paths)
    version = registry.world.admin.show(REF)

    onto = [str(mount) if a == str(mount / "model") else a for a in argv]
    refused = in_pod(volume, mount, onto, env, registry.tmp)
    assert refused.returncode == 1, refused.stderr
    assert "Device or resource busy" in refused.stderr
    assert not any(volume.iterdir())
    assert [p.name for p in mount.parent.iterdir()] == ["models"]  # staging removed

    done = in_pod(volume, mount, argv, env, registry.tmp)
    assert done.returncode == 0, done.stderr
    is_the_version(volume / "model", version)


# -- KServe's storage initializer -------------------------------------------------------------


def kserve_argv(mount: Path, uri: str) -> list[str]:
    """The storage initializer as KServe runs it: its command, then ``<storageUri> <mount>``."""
    command = kserve_container()["command"]
    assert command[:2] == ["/bin/sh", "-c"] and len(command) == 4
    return [*command, uri, str(mount)]


def shim(tmp: Path) -> str:
    """A ``modelseal`` on PATH that runs this interpreter's registry (the image's entry point)."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "modelseal"
    script.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m registry "$@"\n')
    script.chmod(0o755)
    return f"{bin_dir}:{os.environ['PATH']}"


@needs_mounts
def test_the_kserve_storage_initializer_script_fills_the_mount(registry: Registry) -> None:
    _paths, mount, volume = container_paths(registry.tmp, registry)
    state = registry.tmp / "kserve-state"
    container = kserve_container()
    spec = one("kserve-storage-initializer.yaml", "ClusterStorageContainer")["spec"]
    [prefix] = [uri_format["prefix"] for uri_format in spec["supportedUriFormats"]]
    env = registry.env(container, {"/tmp/modelseal": str(state)}, PATH=shim(registry.tmp))
    version = registry.world.admin.show(REF)
    (volume / "left-by-an-earlier-run").write_text("x")  # a restarted init container

    done = in_pod(volume, mount, kserve_argv(mount, f"{prefix}{REF}"), env, registry.tmp)
    assert done.returncode == 0, done.stderr
    is_the_version(volume, version)  # the files themselves at /mnt/models, nothing else

    registry.world.admin.revoke(REF, "poisoned")
    for stale in list(volume.iterdir()):
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    refused = in_pod(volume, mount, kserve_argv(mount, f"{prefix}{REF}"), env, registry.tmp)
    assert refused.returncode == 1, refused.stderr  # modelseal's exit code, through sh
    assert "revoked" in refused.stderr
    assert not any(volume.iterdir())


# -- the registry key ---------------------------------------------------------------------------


def test_the_registry_key_from_the_endpoint_is_the_operators_file(registry: Registry) -> None:
    served = httpx.get(f"{registry.live.url}/v1/registry/key").json()
    pem = served["public_key_pem"].encode()
    assert served["fingerprint"] == "sha256:" + hashlib.sha256(pem).hexdigest()  # sha256sum
    assert (registry.live.settings.data_dir / "registry.pub").read_bytes() == pem
    assert registry.key.read_bytes() == pem


# -- exit codes ---------------------------------------------------------------------------------


def _tamper_one_blob(registry: Registry, version: VersionPublic) -> None:
    largest = max(version.files, key=lambda f: f.size)
    blob = registry.live.settings.data_dir / "blobs" / "sha256" / largest.digest.split(":")[1]
    assert blob.is_file(), blob
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))


def _interrupted(registry: Registry, argv: list[str], env: dict[str, str], signum: int) -> int:
    """The exit status of a pull stopped by ``signum`` while it waits for a registry that
    accepted the connection and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(60)
        env = {**env, "MODELSEAL_URL": f"http://127.0.0.1:{listener.getsockname()[1]}"}
        process = subprocess.Popen(argv, env=env, cwd=registry.tmp, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            connection, _ = listener.accept()
            with connection:
                process.send_signal(signum)
                return process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_every_exit_code_the_docs_list_is_observed(registry: Registry) -> None:
    documented = documented_exit_codes()
    assert documented == {0, 1, 2, 130}
    version = registry.world.admin.show(REF)
    observed: dict[str, int] = {}

    def pull(name: str, argv: list[str], **extra: str) -> subprocess.CompletedProcess[str]:
        paths, _mount, _volume = container_paths(registry.tmp / name, registry)
        argv = [local(a, paths) for a in argv]
        done = run(argv, registry.env(init_container(), paths, **extra), registry.tmp)
        observed[name] = done.returncode
        return done

    base = pull_argv(registry, {})  # container paths, made local per case below

    def case(name: str) -> str:
        path = registry.tmp / name
        path.mkdir()
        return name

    assert pull(case("released"), base).returncode == 0

    registry.world.model("fraud/m@2")  # pending: a deployer may not see it
    pending = pull(case("pending"), [("fraud/m@2" if a == REF else a) for a in base])
    assert "fraud/m@2" in pending.stderr

    other = registry.tmp / "other.pub"
    other.write_bytes(keys.public_pem(keys.generate().public_key()))
    wrong = [str(other) if a == "/etc/modelseal/registry.pub" else a for a in base]
    wrong_key = pull(case("wrong-key"), wrong)
    assert "registry key" in wrong_key.stderr

    unreachable = pull(case("unreachable"), base, MODELSEAL_URL="http://127.0.0.1:9")
    assert "error:" in unreachable.stderr

    usage = pull(case("usage"), [a for a in base if a != "--to" and "/mnt/models" not in a])
    assert "--to" in usage.stderr
    unknown = pull(case("unknown-option"), [*base, "--no-such-option"])
    assert "--no-such-option" in unknown.stderr

    _tamper_one_blob(registry, version)
    tampered = pull(case("tampered"), base)
    assert not any((registry.tmp / "tampered" / "pod" / "mnt" / "models").iterdir())
    assert "error:" in tampered.stderr

    registry.world.admin.revoke(REF, "leaked training data")
    revoked = pull(case("revoked"), base)
    assert "revoked" in revoked.stderr

    paths, _mount, _volume = container_paths(registry.tmp / case("interrupted"), registry)
    argv = [local(a, paths) for a in base]
    env = registry.env(init_container(), paths)
    observed["interrupted"] = _interrupted(registry, argv, env, signal.SIGINT)
    terminated = _interrupted(registry, argv, env, signal.SIGTERM)
    assert terminated == -signal.SIGTERM  # not handled: the process ends by the signal

    assert observed == {
        "released": 0, "pending": 1, "wrong-key": 1, "unreachable": 1, "usage": 2,
        "unknown-option": 2, "tampered": 1, "revoked": 1, "interrupted": 130,
    }  # fmt: skip
    assert set(observed.values()) == documented


# -- the image: what deploy/Dockerfile installs -------------------------------------------------


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), split at each FROM."""
    text = (ROOT / "deploy" / "Dockerfile").read_text().replace("\\\n", " ")
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


@pytest.mark.timeout(300)
def test_the_wheel_the_dockerfile_builds_has_the_entry_point_and_pulls(
    registry: Registry,
) -> None:
    build, final = dockerfile_stages()
    context = registry.tmp / "context"
    context.mkdir()
    for line in build:
        if line.startswith("COPY "):
            *sources, dest = shlex.split(line)[1:]
            for source in sources:
                target = context / dest / Path(source).name if dest.endswith("/") else (
                    context / dest)  # fmt: skip
                if (ROOT / source).is_dir():
                    shutil.copytree(ROOT / source, target,
                                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
                else:
                    shutil.copy2(ROOT / source, target)
    wheels = registry.tmp / "wheels"
    [wheel_line] = [ln for ln in build if ln.startswith("RUN pip wheel ")]
    wheel_cmd = [a.replace("/wheels", str(wheels)) for a in shlex.split(wheel_line)[1:]]
    built = run([sys.executable, "-m", *wheel_cmd], dict(os.environ), context)
    assert built.returncode == 0, built.stdout + built.stderr
    [wheel] = wheels.glob("*.whl")

    [install_line] = [ln for ln in final if ln.startswith("RUN pip install ")]
    install = shlex.split(install_line.split("&&")[0])[1:]
    assert install[:2] == ["pip", "install"] and install[-1] == "/wheels/*.whl"
    site = registry.tmp / "site"
    # The image installs the dependencies too; here they come from this interpreter's
    # environment, so only the wheel itself is installed.
    done = run([sys.executable, "-m", *install[:-1], "--no-deps", "--target", str(site),
                str(wheel)], dict(os.environ), registry.tmp)  # fmt: skip
    assert done.returncode == 0, done.stderr
    [entry_points] = site.glob("modelseal-*.dist-info/entry_points.txt")
    assert "modelseal = registry.__main__:run" in entry_points.read_text()
    # Package data the installed code reads: the pinned Sigstore trusted root (keyless bundles
    # verify offline against it), the migrations' files, the console's templates.
    for data in ("attest/data/trusted_root.json", "migrations/script.py.mako",
                 "registry/server/ui/templates"):  # fmt: skip
        assert (site / data).exists(), f"{data} is not in the wheel"
    assert [ln for ln in final if ln.startswith("ENTRYPOINT ")] == ['ENTRYPOINT ["modelseal"]']

    env = {**os.environ, "PYTHONPATH": str(site)}
    where = run([sys.executable, "-c", "import registry; print(registry.__file__)"], env,
                registry.tmp)  # fmt: skip
    assert Path(where.stdout.strip()).is_relative_to(site)  # the wheel's code, not the checkout

    paths, mount, _volume = container_paths(registry.tmp / "image", registry)
    argv = [str(site / "bin" / "modelseal"), *pull_argv(registry, paths)[3:]]
    pulled = run(argv, registry.env(init_container(), paths, PYTHONPATH=str(site)), registry.tmp)
    assert pulled.returncode == 0, pulled.stderr
    is_the_version(mount / "model", registry.world.admin.show(REF))
    assert pulled.stdout.strip() == registry.world.admin.show(REF).root_digest
