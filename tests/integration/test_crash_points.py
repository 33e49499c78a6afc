"""Crash points (issue #18): the registry process killed with SIGKILL at each named point of push,
commit, attest, release, revoke, alias move and gc, on PostgreSQL + SeaweedFS.

The server runs in its own process (:mod:`tests.crashpoint_server`, which is ``modelseal serve``
plus hooks armed through a file); ``admin gc`` runs in its own process the same way. After each
crash the server is started again on the same database and store, and:

* right after the restart, ``fsck`` finds no damage (``missing-object``, ``size-mismatch``,
  ``digest-mismatch``; garbage of the interrupted call is counted, not failed), the audit chain
  verifies, and every state change has its audit entry (:func:`_audited`);
* the client's retry (the SDK call again, a fresh client over the same upload journal; ``gc``
  run again) succeeds, the version ends in the state the call asked for, and then
  ``modelseal admin fsck --rehash --json`` finds no damage, ``modelseal audit verify`` passes,
  every released version of the run pulls verified (against the registry's key file) with the
  bytes pushed, and revoked ones are refused.

Each point runs ``CRASHPOINT_RUNS`` times (default 1). One registry serves the whole module (one
server start per crash); each run uses its own artifacts. With ``CRASHPOINT_REPORT=FILE`` the
tally (crashes, inconsistencies, garbage left per kind) is written there as JSON.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from safetensors.numpy import save_file
from sqlalchemy import select

from attest import keys
from attest.files import LocalFile, hash_file
from attest.signing import KeySigner
from attest.statement import make_statement
from registry.errors import RegistryError
from registry.names import Kind
from registry.sdk import transfer
from registry.sdk.client import RegistryClient
from registry.server import entry
from registry.server.config import Settings
from registry.server.db import make_engine, make_sessionmaker
from registry.server.models import (
    AliasEvent,
    Artifact,
    Attestation,
    AuditEntry,
    Namespace,
    UploadSession,
    Version,
)
from registry.server.services.journal import version_target
from registry.server.services.scanning import REGISTRY_SIGNER
from tests.services import PostgresServer, SeaweedServer
from tests.support import Live, free_port, run_cli

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[2]
RUNS = int(os.environ.get("CRASHPOINT_RUNS", "1"))
NS = "crash"
#: Predicate types (wire constants; spelled out here while their module moves).
SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"
RELEASE = "https://in-toto.io/attestation/release/v0.1"
REVOCATION = "https://modelseal.dev/attestation/revocation/v1"
CYCLONEDX_BOM = "https://cyclonedx.org/bom"
#: fsck kinds that are damage; the others are garbage a crash may leave for gc.
DAMAGE = {"missing-object", "size-mismatch", "digest-mismatch"}


@dataclass(frozen=True)
class Point:
    spec: str  # CRASHPOINT_AT (see tests/crashpoint_server.py)
    scenario: str  # push | attach | release | revoke | alias | gc


_UPLOADS = "registry.server.services.uploads:UploadService"
_S3 = "registry.server.storage.s3:S3BlobStore"
_BOM_JOBS = "registry.server.services.bomjobs:BomJobs"
#: The ML-BOM lease of the servers here (tests/crashpoint_server.py); production's is 30 s.
BOM_LEASE_SECONDS = 4.0
#: How long a retry waits for a BOM whose worker was killed: its lease must end first.
BOM_WAIT_SECONDS = 180.0

POINTS: dict[str, Point] = {
    # push: the upload session, a chunk, the assembly of the blob, the version commit
    "start_upload-in-tx": Point("tx:start_upload", "push"),
    "start_upload-committed": Point(f"after:{_UPLOADS}.start", "push"),
    "chunk-mid-stream": Point(f"body:{3 * MiB}", "push"),  # 3 MiB into a 5 MiB chunk
    "chunk-committed": Point(f"after:{_UPLOADS}.commit_chunk", "push"),
    "finish_upload-assembling": Point(f"before:{_S3}.complete_upload", "push"),
    "finish_upload-in-tx": Point("tx:finish_upload", "push"),
    "finish_upload-committed": Point(f"after:{_UPLOADS}.finish", "push"),
    "put_version-in-tx": Point("tx:put_version", "push"),
    "put_version-before-scan": Point(
        "before:registry.server.services.sbom:AfterCommit.scan_version", "push"
    ),
    "put_version-committed": Point(
        "after:registry.server.services.versions:VersionService.commit", "push"
    ),
    # attest
    "attach-in-tx": Point("tx:attach_attestation", "attach"),
    "attach-committed": Point(
        "after:registry.server.services.attestations:AttestationService.attach", "attach"
    ),
    # release
    "release-in-tx": Point("tx:release_version", "release"),
    "release-committed": Point(
        "after:registry.server.services.releases:ReleaseService.release", "release"
    ),
    # revoke, with a cascade to a model built on the revoked dataset
    "revoke-in-tx-root": Point("tx:revoke_version", "revoke"),
    "revoke-in-tx-dependent": Point("tx:revoke_dependent", "revoke"),
    "revoke-committed": Point(
        "after:registry.server.services.releases:ReleaseService.revoke", "revoke"
    ),
    # alias move
    "set_alias-in-tx": Point("tx:set_alias", "alias"),
    "set_alias-committed": Point(
        "after:registry.server.services.lifecycle:LifecycleService.set_alias", "alias"
    ),
    # the ML-BOM worker (a thread of the server): a claimed job, a built BOM not yet recorded
    "bom-claimed": Point(f"before:{_BOM_JOBS}._run", "bom"),
    "bom-built": Point(f"before:{_BOM_JOBS}._finish", "bom"),
    # gc (the `admin gc` process is killed): mark, sweep, object deletion
    "gc-after-mark": Point("gc:after_mark", "gc"),
    "gc-delete_blobs-in-tx": Point("tx:gc_delete_blobs", "gc"),
    "gc-object-deleted": Point(f"after:{_S3}.delete", "gc"),
    "gc-delete_objects-in-tx": Point("tx:gc_delete_objects", "gc"),
}


# -- the registry under test --------------------------------------------------------------------


@dataclass
class Tally:
    crashes: int = 0
    inconsistencies: list[str] = field(default_factory=list)
    #: Per point: what fsck listed (the whole registry's garbage) after its latest crash.
    garbage: dict[str, dict[str, int]] = field(default_factory=dict)
    points: set[str] = field(default_factory=set)


class Registry:
    """One registry (database, store, data dir) whose server process is killed and restarted."""

    def __init__(self, tmp: Path, pg: PostgresServer, template: str, s3: SeaweedServer) -> None:
        self.tmp = tmp
        self.database_url = pg.create_database(f"crash_{uuid.uuid4().hex[:10]}", template=template)
        self.storage = f"s3://modelseal-test/crash-{uuid.uuid4().hex[:10]}"
        self.s3 = s3
        self.data_dir = tmp / "data"
        self.arm_file = tmp / "armed"
        self.env = {
            **{k: v for k, v in os.environ.items()
               if not k.startswith(("MODELSEAL_", "CRASHPOINT_", "AWS_"))},
            "AWS_ACCESS_KEY_ID": s3.access_key,
            "AWS_SECRET_ACCESS_KEY": s3.secret_key,
            "AWS_DEFAULT_REGION": s3.region,
            "MODELSEAL_DATABASE_URL": self.database_url,
            "MODELSEAL_STORAGE": self.storage,
            "MODELSEAL_S3_ENDPOINT_URL": s3.endpoint_url,
            "MODELSEAL_MIN_CHUNK_BYTES": str(5 * MiB),
            "PYTHONPATH": str(ROOT),
        }  # fmt: skip
        self.server_env = {
            **self.env,
            "CRASHPOINT_AT": ",".join(p.spec for p in POINTS.values() if p.scenario != "gc"),
            "CRASHPOINT_ARM": str(self.arm_file),
            # a killed BOM worker's job is taken over once its lease ends: seconds, not 30 s
            "CRASHPOINT_BOM_LEASE": str(BOM_LEASE_SECONDS),
        }
        self.port = free_port()  # the same on every start: one URL, one pinned key
        self.process: subprocess.Popen[bytes] | None = None
        self.standby: tuple[subprocess.Popen[bytes], Path] | None = None
        self.log = tmp / "serve.log"
        self.settings = Settings(
            data_dir=self.data_dir,
            database_url=self.database_url,
            storage=self.storage,
            s3_endpoint_url=s3.endpoint_url,
            s3_region=s3.region,
            min_chunk_bytes=5 * MiB,
        )
        self.signer = KeySigner(keys.generate())
        self.tally = Tally()

    # -- the server process ---------------------------------------------------------------

    def _spawn(self) -> tuple[subprocess.Popen[bytes], Path]:
        """A server process that imports everything, then waits for its go file."""
        go = self.tmp / f"go-{uuid.uuid4().hex}"
        with self.log.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.crashpoint_server", "serve",
                 "--data-dir", str(self.data_dir), "--port", str(self.port)],
                env={**self.server_env, "CRASHPOINT_STANDBY": str(go)}, cwd=ROOT,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        return process, go

    def start(self) -> None:
        """``modelseal serve`` (through the launcher); returns once ``/health`` answers."""
        assert self.process is None or self.process.poll() is not None
        self.arm_file.unlink(missing_ok=True)
        if self.standby is None or self.standby[0].poll() is not None:
            self.standby = self._spawn()
        self.process, go = self.standby
        self.standby = None
        go.touch()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        else:
            raise RuntimeError(f"the server did not start: {self.log.read_text()[-3000:]}")
        self.standby = self._spawn()  # the next start's imports happen while this one works

    def stop(self) -> None:
        for process in (self.process, self.standby[0] if self.standby else None):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)

    def ensure_up(self) -> None:
        if self.process is None or self.process.poll() is not None:
            self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    @property
    def registry_key(self) -> bytes:
        return (self.data_dir / "registry.pub").read_bytes()

    def client(self) -> RegistryClient:
        # One upload at a time: where a crash lands is then the point's, not a race's.
        return RegistryClient(self.url, self.token, chunk_size=5 * MiB, workers=1)

    def crash(self, point: Point, call: Callable[[], object]) -> None:
        """Arm ``point``, make ``call`` (which must fail: the server dies under it, and the
        client does not retry), check that the server was killed there, start it again."""
        assert self.process is not None
        self.arm_file.write_text(point.spec)
        try:
            with no_client_retries(), pytest.raises(RegistryError):
                call()
            returncode = self.process.wait(timeout=60)
        finally:
            self.arm_file.unlink(missing_ok=True)
        assert returncode == -signal.SIGKILL, f"the server was not killed at {point.spec}"
        self.tally.crashes += 1
        self.start()

    # -- operator commands ----------------------------------------------------------------

    def _admin(self, *args: str) -> list[str]:
        return [*args, "--data-dir", str(self.data_dir), "--database-url", self.database_url,
                "--storage", self.storage]  # fmt: skip

    def gc(self, point: Point | None = None) -> subprocess.CompletedProcess[str]:
        """``modelseal admin gc --grace-hours 0`` (killed at ``point``)."""
        env = {**self.env, **({"CRASHPOINT_AT": point.spec} if point else {})}
        return subprocess.run(
            [sys.executable, "-m", "tests.crashpoint_server",
             *self._admin("admin", "gc", "--grace-hours", "0", "--json")],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    def fsck(self) -> dict[str, Any]:
        """``modelseal admin fsck --rehash --json``: no damage; returns the report."""
        done = run_cli(*self._admin("admin", "fsck", "--rehash", "--json"),
                       extra_env={k: v for k, v in self.env.items()
                                  if k.startswith(("AWS_", "MODELSEAL_"))})  # fmt: skip
        assert done.returncode in (0, 1), done.stderr
        report: dict[str, Any] = json.loads(done.stdout)
        damage = [f for f in report["findings"] if f["kind"] in DAMAGE]
        assert not damage, f"fsck found damage: {damage}"
        return report

    def audit_verify(self) -> None:
        live = Live(self.url, self.token, self.settings)
        done = run_cli("audit", "verify", live=live)
        assert done.returncode == 0, f"audit verify: {done.stderr}"
        assert "audit log intact" in done.stderr


@contextmanager
def no_client_retries() -> Iterator[None]:
    """The crashing call fails at once (its retry is the next call, after the restart)."""
    attempts = transfer.Retry.attempts
    transfer.Retry.attempts = 1
    try:
        yield
    finally:
        transfer.Retry.attempts = attempts


@pytest.fixture(scope="module")
def registry(
    pg_server: PostgresServer,
    pg_template: str,
    s3_server: SeaweedServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Registry]:
    running = Registry(tmp_path_factory.mktemp("crashpoints"), pg_server, pg_template, s3_server)
    running.start()
    with running.client() as admin:
        admin.add_key_identity("ci", keys.public_pem(running.signer.public_key).decode())
    try:
        yield running
    finally:
        running.stop()
        tally = running.tally
        summary = {
            "points": len(tally.points),
            "runs": RUNS,
            "crashes": tally.crashes,
            "inconsistencies": len(tally.inconsistencies),
            "details": tally.inconsistencies,
            "garbage_left": dict(tally.garbage),
        }
        line = (f"{len(tally.points)} points x {RUNS} runs: {tally.crashes} crashes, "
                f"{len(tally.inconsistencies)} inconsistencies")  # fmt: skip
        print(f"\n{line}\n{json.dumps(summary, indent=2)}")
        report = os.environ.get("CRASHPOINT_REPORT")
        if report:
            Path(report).write_text(json.dumps({"summary": line, **summary}, indent=2) + "\n")


# -- invariants ----------------------------------------------------------------------------------


def _service_entries(registry: Registry) -> list[tuple[str, str, dict[str, Any]]]:
    """``(action, target, details)`` of every entry a service wrote (the middleware's carry the
    HTTP status: failed requests, and requests that changed nothing)."""
    engine = make_engine(registry.database_url)
    try:
        with make_sessionmaker(engine)() as session:
            rows = session.execute(
                select(AuditEntry.action, AuditEntry.target, AuditEntry.details)
            ).all()
    finally:
        engine.dispose()
    entries = [(a, t, json.loads(d)) for a, t, d in rows]
    return [(a, t, d) for a, t, d in entries if "status" not in d]


def _audited(registry: Registry) -> None:
    """Every state change in the database has its audit entry, exactly once, and no entry
    claims a change that is not there."""
    entries = _service_entries(registry)
    count = Counter((a, t) for a, t, _ in entries)
    engine = make_engine(registry.database_url)
    try:
        with make_sessionmaker(engine)() as session:
            versions = session.execute(
                select(Namespace.name, Artifact.name, Version.version, Version.state, Version.id)
                .join(Artifact, Version.artifact_id == Artifact.id)
                .join(Namespace, Artifact.namespace_id == Namespace.id)
            ).all()
            by_registry = Counter(tuple(row) for row in session.execute(
                select(Attestation.version_id, Attestation.predicate_type)
                .where(Attestation.signer == REGISTRY_SIGNER)
            ))  # fmt: skip
            attached = set(session.execute(
                select(Attestation.id).where(Attestation.signer != REGISTRY_SIGNER)
            ).scalars())  # fmt: skip
            moves = Counter(tuple(row) for row in session.execute(
                select(Namespace.name, Artifact.name, AliasEvent.alias)
                .join(Artifact, AliasEvent.artifact_id == Artifact.id)
                .join(Namespace, Artifact.namespace_id == Namespace.id)
            ))  # fmt: skip
    finally:
        engine.dispose()
    for ns, name, number, state, vid in versions:
        ref = f"{ns}/{name}@{number}"
        target = version_target(ns, name, number)
        assert count[("put_version", target)] == 1, f"{ref}: put_version entries"
        was_released = state in ("released", "revoked")
        releases = count[("release_version", version_target(ns, name, number, "release"))]
        assert releases == int(was_released), f"{ref} is {state}: {releases} release entries"
        assert by_registry[(vid, RELEASE)] == int(was_released), f"{ref}: release attestations"
        revocations = count[("revoke_version", version_target(ns, name, number, "revoke"))] \
            + count[("revoke_dependent", target)]  # fmt: skip
        assert revocations == int(state == "revoked"), f"{ref} is {state}: {revocations} revokes"
        assert by_registry[(vid, REVOCATION)] == int(state == "revoked"), f"{ref}: revocations"
    logged = {d["attestation_id"] for a, _, d in entries if a == "attach_attestation"}
    assert attached == logged, f"attestations without entry: {attached - logged}, " \
        f"entries without attestation: {logged - attached}"  # fmt: skip
    aliased = Counter(
        tuple(t.split("/")[i] for i in (3, 5, 7)) for a, t, _ in entries if a == "set_alias"
    )
    assert moves == aliased, f"alias moves {dict(moves)} vs set_alias entries {dict(aliased)}"


def _stuck_uploads(registry: Registry) -> int:
    engine = make_engine(registry.database_url)
    try:
        with make_sessionmaker(engine)() as session:
            return len(session.execute(
                select(UploadSession.id).where(UploadSession.offset < 0)
            ).all())  # fmt: skip
    finally:
        engine.dispose()


# -- what each run pushes, attests, releases… ---------------------------------------------------


class World:
    """One run's artifacts (distinct bytes every run: nothing is deduplicated away)."""

    def __init__(self, registry: Registry, tmp: Path, point_id: str, prefix: str) -> None:
        self.registry = registry
        self.point_id = point_id
        self.tmp = tmp
        self.prefix = prefix
        self.sources: dict[str, Path] = {}  # ref -> the directory pushed
        self.expected: dict[str, str] = {}  # ref -> the state it must end in
        self.rng = np.random.default_rng(uuid.uuid4().int)

    def ref(self, what: str, version: str = "1") -> str:
        return f"{NS}/{self.prefix}-{what}@{version}"

    def files(self, ref: str, *, big: bool = False) -> Path:
        """A model directory; ``big``: one file of two 5 MiB chunks (5.5 MB) among small ones."""
        root = self.tmp / ref.replace("/", "_").replace("@", "_")
        root.mkdir(parents=True)
        rows = 43_000 if big else 64
        save_file({"w": self.rng.standard_normal((rows, 32), dtype=np.float32)},
                  str(root / "model.safetensors"))  # fmt: skip
        save_file({"b": self.rng.standard_normal((32,), dtype=np.float32)},
                  str(root / "head.safetensors"))  # fmt: skip
        (root / "config.json").write_text(json.dumps({"run": self.prefix, "ref": ref}) + "\n")
        self.sources[ref] = root
        return root

    def push(self, client: RegistryClient, ref: str, *, kind: Kind = Kind.MODEL,
             big: bool = False, signed: bool = True) -> str:  # fmt: skip
        root = self.files(ref, big=big)
        signer = self.registry.signer if signed else None
        return client.push(root, ref, kind=kind, signer=signer).root_digest

    def provenance_bundle(
        self, client: RegistryClient, ref: str, deps: list[tuple[str, str]] | None = None
    ) -> bytes:
        version = client.show(ref)
        statement = make_statement(
            name=f"{version.namespace}/{version.name}",
            root_digest=version.root_digest.removeprefix("sha256:"),
            predicate_type=SLSA_PROVENANCE,
            predicate={
                "buildDefinition": {
                    "buildType": "https://modelseal.dev/training/v1",
                    "externalParameters": {"run": self.prefix},
                    "resolvedDependencies": [
                        {"uri": f"modelseal:{r}", "digest": {"sha256": d.removeprefix("sha256:")}}
                        for r, d in deps or []
                    ],
                },
                "runDetails": {"builder": {"id": "https://ci.example/crash"}},
            },
        )
        return self.registry.signer.sign(statement).raw

    def released(self, client: RegistryClient, ref: str, *, kind: Kind = Kind.MODEL,
                 deps: list[tuple[str, str]] | None = None) -> str:  # fmt: skip
        digest = self.push(client, ref, kind=kind)
        client.attach(ref, self.provenance_bundle(client, ref, deps))
        assert client.release(ref).state == "released"
        return digest

    def check_pulls(self, client: RegistryClient) -> None:
        """Each version of this run in its expected state; released ones pull verified with the
        bytes pushed, revoked ones are refused."""
        for ref, state in self.expected.items():
            assert client.show(ref).state == state, ref
            target = self.tmp / "pulled" / uuid.uuid4().hex
            if state == "released":
                client.pull(ref, target, registry_key=self.registry.registry_key, durable=False)
                source = self.sources[ref]
                pushed = {p.relative_to(source): p.read_bytes() for p in source.rglob("*")
                          if p.is_file()}  # fmt: skip
                pulled = {p.relative_to(target): p.read_bytes() for p in target.rglob("*")
                          if p.is_file()}  # fmt: skip
                assert pulled == pushed, f"{ref}: pulled bytes differ"
            elif state == "revoked":
                with pytest.raises(RegistryError):
                    client.pull(ref, target, registry_key=self.registry.registry_key)
                assert not target.exists() or not any(target.iterdir())


# -- the scenarios: set up, crash, retry ------------------------------------------------------


def _push(registry: Registry, world: World, point: Point) -> None:
    ref = world.ref("model")
    root = world.files(ref, big=True)
    with registry.client() as client:
        registry.crash(point, lambda: client.push(root, ref, signer=registry.signer))
    _consistent(registry, world.point_id)
    with registry.client() as client:  # the retry: the same push, resuming recorded sessions
        version = client.push(root, ref, signer=registry.signer)
        assert client.show(ref).root_digest == version.root_digest
        client.attach(ref, world.provenance_bundle(client, ref))
        assert client.release(ref).state == "released"
    world.expected[ref] = "released"


def _attach(registry: Registry, world: World, point: Point) -> None:
    ref = world.ref("model")
    with registry.client() as client:
        world.push(client, ref)
        bundle = world.provenance_bundle(client, ref)
        registry.crash(point, lambda: client.attach(ref, bundle))
    _consistent(registry, world.point_id)
    with registry.client() as client:
        client.attach(ref, bundle)  # stored now, or the same evidence again
        assert len(client.list_attestations(ref, SLSA_PROVENANCE)) == 1
        assert client.release(ref).state == "released"
    world.expected[ref] = "released"


def _release(registry: Registry, world: World, point: Point) -> None:
    ref = world.ref("model")
    with registry.client() as client:
        world.push(client, ref)
        client.attach(ref, world.provenance_bundle(client, ref))
        registry.crash(point, lambda: client.release(ref))
    _consistent(registry, world.point_id)
    with registry.client() as client:
        assert client.release(ref).state == "released"
        assert len(client.list_attestations(ref, RELEASE)) == 1
    world.expected[ref] = "released"


def _revoke(registry: Registry, world: World, point: Point) -> None:
    data, model = world.ref("data"), world.ref("model")
    with registry.client() as client:
        digest = world.released(client, data, kind=Kind.DATASET)
        world.released(client, model, deps=[(data, digest)])
        registry.crash(point, lambda: client.revoke(data, "poisoned"))
    _consistent(registry, world.point_id)
    with registry.client() as client:
        client.revoke(data, "poisoned")
        assert client.show(data).state == "revoked"
        assert client.show(model).state == "revoked"  # the cascade is complete
    world.expected.update({data: "revoked", model: "revoked"})


def _alias(registry: Registry, world: World, point: Point) -> None:
    first, second = world.ref("model", "1"), world.ref("model", "2")
    name = f"{world.prefix}-model"
    with registry.client() as client:
        world.released(client, first)
        world.released(client, second)
        client.set_alias(NS, name, "prod", "1")
        registry.crash(point, lambda: client.set_alias(NS, name, "prod", "2"))
    _consistent(registry, world.point_id)
    with registry.client() as client:
        client.set_alias(NS, name, "prod", "2")
        [alias] = [a for a in client.list_aliases(NS, name) if a.alias == "prod"]
        assert alias.version == "2"
        assert [m.to_version for m in client.alias_history(NS, name, "prod")][-1] == "2"
    world.expected.update({first: "released", second: "released"})


def _gc(registry: Registry, world: World, point: Point) -> None:
    ref = world.ref("model")
    world.tmp.mkdir(parents=True, exist_ok=True)
    junk = world.tmp / "junk.bin"
    junk.write_bytes(os.urandom(64 * 1024))
    item = LocalFile("junk.bin", junk, junk.stat().st_size)
    with registry.client() as client:
        world.released(client, ref)
        client.upload_blob(NS, item, hash_file(item).sha256)  # a blob no version names
    killed = registry.gc(point)
    assert killed.returncode == -signal.SIGKILL, f"gc not killed at {point.spec}: {killed.stderr}"
    registry.tally.crashes += 1
    _consistent(registry, world.point_id)
    again = registry.gc()
    assert again.returncode == 0, again.stderr
    report = registry.fsck()
    assert report["findings"] == [], f"garbage left after gc: {report['findings']}"
    world.expected[ref] = "released"


def _bom(registry: Registry, world: World, point: Point) -> None:
    """The server dies in its ML-BOM worker, after the push has answered (the worker is woken
    by the scan's commit): the job is left claimed. After the restart, once its lease has ended,
    the worker takes it over and the BOM is built; then the release."""
    ref = world.ref("model")

    def push_and_watch() -> None:
        with registry.client() as client:
            world.push(client, ref)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # until the server is gone (raises)
                client.show(ref)
                time.sleep(0.05)

    registry.crash(point, push_and_watch)
    _consistent(registry, world.point_id)
    with registry.client() as client:
        # The push again (its signature may not have been attached before the server died).
        client.push(world.sources[ref], ref, signer=registry.signer)
        deadline = time.monotonic() + BOM_WAIT_SECONDS
        while client.show(ref).bom_status == "pending" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert client.show(ref).bom_status == "ready"
        assert len(client.list_attestations(ref, CYCLONEDX_BOM)) == 1
        client.attach(ref, world.provenance_bundle(client, ref))
        assert client.release(ref).state == "released"
    world.expected[ref] = "released"


SCENARIOS: dict[str, Callable[[Registry, World, Point], None]] = {
    "bom": _bom,
    "push": _push,
    "attach": _attach,
    "release": _release,
    "revoke": _revoke,
    "alias": _alias,
    "gc": _gc,
}


def _consistent(registry: Registry, point_id: str) -> None:
    """The state the crash left, before any retry: no damage, the chain intact, every change
    audited. (Checked in this process, with the code ``admin fsck`` and ``audit verify`` run:
    the commands themselves run after the retry.)"""
    report = entry.fsck(registry.settings, rehash=False)
    damage = [f for f in report.findings if f.kind in DAMAGE]
    assert not damage, f"fsck found damage after the crash: {damage}"
    garbage = Counter(f.kind for f in report.findings)
    garbage["stuck-finishing-upload"] = _stuck_uploads(registry)
    registry.tally.garbage[point_id] = dict(garbage)
    with registry.client() as client:
        client.verify_audit_log(registry_key=registry.registry_key)
    _audited(registry)


@pytest.mark.parametrize("point_id", [pytest.param(p, id=p) for p in POINTS])
def test_a_crash_at_the_point_leaves_a_consistent_registry_and_the_retry_succeeds(
    registry: Registry, point_id: str, tmp_path: Path, s3_env: SeaweedServer
) -> None:
    point = POINTS[point_id]
    registry.tally.points.add(point_id)
    failures = []
    for run in range(RUNS):
        registry.ensure_up()
        prefix = f"{point_id.replace('_', '-')}-{run}-{uuid.uuid4().hex[:4]}"
        world = World(registry, tmp_path / f"run{run}", point_id, prefix)
        try:
            SCENARIOS[point.scenario](registry, world, point)
            registry.fsck()
            registry.audit_verify()
            _audited(registry)
            with registry.client() as client:
                world.check_pulls(client)
        except (AssertionError, RegistryError) as exc:
            failure = f"{point_id} run {run}: {type(exc).__name__}: {exc}"
            registry.tally.inconsistencies.append(failure)
            failures.append(failure)
    assert not failures, "\n".join(failures)
