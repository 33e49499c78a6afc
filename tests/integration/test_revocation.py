"""Revocation reaches deploy jobs: it cascades through provenance to every release built on the
revoked version, each revocation registry-signed and naming the root cause, and a verified pull
asks for the version's current signed status before it writes a byte."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from attest.bundle import Bundle
from attest.keys import TrustedKey
from attest.predicates import REVOCATION, SLSA_PROVENANCE, STATUS
from attest.verifying import Verifier
from registry.errors import PullVerificationError
from registry.sdk.client import RegistryClient
from tests.integration.test_events import SECRET, Receiver, _settings
from tests.integration.test_release import World, _deployer
from tests.support import Live, run_cli, serve


@pytest.fixture
def world(live: Live, tmp_path: Path) -> World:
    return World(live, tmp_path)


def _chain(world: World) -> None:
    """fraud/tx@3 (dataset) -> fraud/m@1 (trained on it) -> fraud/ft@1 (fine-tuned from it), all
    released; fraud/other@1 released on another dataset; prod points at fraud/m@1."""
    tx = world.dataset("fraud/tx@3")
    m1 = world.model("fraud/m@1", deps=[("fraud/tx@3", tx)])
    world.releaser.release("fraud/m@1")
    world.model("fraud/ft@1", extra={"adapter.json": b"{}"})  # provenance: a base model

    base = {"uri": "modelseal:fraud/m@1", "digest": {"sha256": m1.removeprefix("sha256:")},
            "name": "base-model"}  # fmt: skip
    world.attest("fraud/ft@1", SLSA_PROVENANCE, {
        "buildDefinition": {"buildType": "https://modelseal.dev/training/v1",
                            "externalParameters": {}, "resolvedDependencies": [base]},
        "runDetails": {"builder": {"id": "https://ci.example/finetune"}},
    }, world.training)  # fmt: skip
    world.releaser.release("fraud/ft@1")
    clean = world.dataset("fraud/clean@1")
    world.model("fraud/other@1", deps=[("fraud/clean@1", clean)], extra={"o.json": b"{}"})
    world.releaser.release("fraud/other@1")
    world.releaser.set_alias("fraud", "m", "prod", "1")


def _registry_verifier(live: Live) -> Verifier:
    pem = httpx.get(f"{live.url}/v1/registry/key").json()["public_key_pem"]
    return Verifier(keys=[TrustedKey.from_pem("registry", pem.encode())])


def test_revocation_cascades_to_every_release_built_on_it(world: World, tmp_path: Path) -> None:
    """Attacker: none; the incident. Revoking a poisoned dataset must stop every model built on
    it, directly or through a fine-tuned descendant, each with a signed revocation naming the
    root cause; an unrelated release stays released and pullable (the acceptance)."""
    _chain(world)
    deployer = _deployer(world)
    assert deployer.pull("fraud/ft@1", tmp_path / "before").state == "released"

    revoked = run_cli("revoke", "fraud/tx@3", "--reason", "poisoned rows", live=world.live,
                      token=world.releaser._http.headers["Authorization"].split()[1])  # fmt: skip
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout.splitlines() == [
        "revoked with it: fraud/m@1 (built on fraud/tx@3)",
        "revoked with it: fraud/ft@1 (built on fraud/m@1)",
        "alias fraud/m@prod points at revoked fraud/m@1",
    ]
    for ref, via in (("fraud/m@1", "fraud/tx@3"), ("fraud/ft@1", "fraud/m@1")):
        shown = world.admin.show(ref)
        assert shown.state == "revoked"
        assert shown.state_reason == (
            f"revoked because it is built on {via}, revoked by release-bot: poisoned rows"
            if via == "fraud/tx@3"
            else f"revoked because it is built on {via} (built on fraud/tx@3), revoked by "
            "release-bot: poisoned rows"
        )
        [attestation] = world.admin.list_attestations(ref, REVOCATION)
        assert attestation.signer == "registry"
        statement = (
            _registry_verifier(world.live)
            .verify(Bundle.parse(world.admin.get_attestation(ref, attestation.id)))
            .statement
        )
        assert statement.subject.sha256 == shown.root_digest.removeprefix("sha256:")
        assert statement.predicate["version"] == ref
        assert statement.predicate["rootCause"] == {
            "version": "fraud/tx@3",
            "rootDigest": world.admin.show("fraud/tx@3").root_digest,
            "reason": "poisoned rows",
            "revokedBy": "release-bot",
        }
    [own] = world.admin.list_attestations("fraud/tx@3", REVOCATION)
    assert own.signer == "registry"
    assert world.admin.show("fraud/other@1").state == "released"
    assert {a.alias: a.state for a in world.admin.list_aliases("fraud", "m")} == {"prod": "revoked"}
    # One audit entry per cascaded version, naming the root cause.
    cascaded = [(e["target"], e["details"]) for e in world.admin.audit_entries()
                if e["action"] == "revoke_dependent"]  # fmt: skip
    assert [t for t, _ in cascaded] == [
        "/v1/namespaces/fraud/artifacts/m/versions/1",
        "/v1/namespaces/fraud/artifacts/ft/versions/1",
    ]
    assert all('"root_cause": "fraud/tx@3"' in d for _, d in cascaded)

    for ref in ("fraud/m@1", "fraud/ft@1", "fraud/m@prod"):
        target = tmp_path / "pulls" / ref.replace("/", "_")
        with pytest.raises(PullVerificationError, match="poisoned rows"):
            deployer.pull(ref, target, allow_downgrade=True)
        assert not target.exists()
    assert deployer.pull("fraud/other@1", tmp_path / "other").state == "released"
    # Revoking again changes nothing and signs nothing more.
    again, dependents = world.releaser.revoke("fraud/tx@3", "poisoned rows")
    assert again.state == "revoked" and dependents == ["fraud/ft@1", "fraud/m@1"]
    assert len(world.admin.list_attestations("fraud/m@1", REVOCATION)) == 1


# -- a mirror between the registry and the deploy job ------------------------------------------


class Mirror:
    """A caching HTTP mirror: records the registry's GET answers; when ``replay`` is on, serves
    what it recorded (paths in ``fresh`` always go to the registry)."""

    def __init__(self, upstream: str) -> None:
        self.recorded: dict[str, tuple[int, list[tuple[str, str]], bytes]] = {}
        self.replay = False
        self.fresh: tuple[str, ...] = ()
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                key = self.path
                replayable = self.command == "GET" and not any(f in key for f in mirror.fresh)
                stored = key if key in mirror.recorded else key.split("?")[0]  # any query
                if mirror.replay and replayable and stored in mirror.recorded:
                    status, headers, body = mirror.recorded[stored]
                else:
                    length = int(self.headers.get("Content-Length") or 0)
                    hop = ("host", "content-length", "connection")
                    sent = {k: v for k, v in self.headers.items() if k.lower() not in hop}
                    answer = httpx.request(self.command, upstream + key, headers=sent,
                                           content=self.rfile.read(length) if length else None,
                                           timeout=60)  # fmt: skip
                    status, body = answer.status_code, answer.content
                    headers = [(k, v) for k, v in answer.headers.items()
                               if k.lower() not in ("content-length", "transfer-encoding",
                                                    "connection", "content-encoding")]  # fmt: skip
                    if self.command == "GET" and status < 400 and not mirror.replay:
                        mirror.recorded[key] = (status, headers, body)
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def mirror(live: Live) -> Iterator[Mirror]:
    m = Mirror(live.url)
    yield m
    m.server.shutdown()


def _via(world: World, mirror: Mirror, **kwargs: Any) -> RegistryClient:
    token = _deployer(world)._http.headers["Authorization"].split()[1]
    return RegistryClient(mirror.url, token, storage_redirects=False, **kwargs)


def test_a_mirror_replaying_the_old_release_cannot_serve_a_revoked_version(
    world: World, mirror: Mirror, tmp_path: Path
) -> None:
    """Attacker: a network or mirror attacker replaying the registry's answers from before the
    revocation (version, release attestation, files). The pull's fresh signed status says
    revoked; the acceptance (nothing revoked) is the first pull."""
    _chain(world)
    pem = httpx.get(f"{world.live.url}/v1/registry/key").json()["public_key_pem"].encode()
    deployer = _via(world, mirror)
    assert deployer.pull("fraud/m@1", tmp_path / "before", registry_key=pem).version == "1"
    world.releaser.revoke("fraud/tx@3", "poisoned rows")
    mirror.replay, mirror.fresh = True, ("/status",)
    target = tmp_path / "after"
    with pytest.raises(PullVerificationError) as refused:
        deployer.pull("fraud/m@1", target, registry_key=pem)
    assert str(refused.value) == (
        "fraud/m@1 is revoked (the registry's signed status, issued "
        f"{refused.value.facts['issued_at']}): revoked because it is built on fraud/tx@3, "
        "revoked by release-bot: poisoned rows"
    )
    assert not target.exists()


def test_a_replayed_released_status_is_refused_beyond_the_freshness_window(
    world: World, mirror: Mirror, tmp_path: Path
) -> None:
    """Attacker: the same mirror, replaying the signed status too. Accepted only within the
    freshness window; after it, refused."""
    _chain(world)
    pem = httpx.get(f"{world.live.url}/v1/registry/key").json()["public_key_pem"].encode()
    deployer = _via(world, mirror, status_max_age=2.0)
    assert deployer.pull("fraud/m@1", tmp_path / "before", registry_key=pem).version == "1"
    world.releaser.revoke("fraud/tx@3", "poisoned rows")
    mirror.replay = True
    time.sleep(2.5)
    target = tmp_path / "after"
    with pytest.raises(PullVerificationError, match=r"beyond the freshness window of 2 s") as e:
        deployer.pull("fraud/m@1", target, registry_key=pem)
    assert "refusing a status that may be replayed" in str(e.value)
    assert not target.exists()
    # A status signed by another key (another registry's) is refused whatever its age.
    mirror.replay = False
    from attest import keys

    other = keys.public_pem(keys.generate().public_key())
    with pytest.raises(PullVerificationError):
        deployer.pull("fraud/other@1", target, registry_key=other)
    assert not target.exists()


def test_each_cascaded_revocation_fires_one_security_event(
    tmp_path: Path, receiver: Receiver
) -> None:
    settings = _settings(tmp_path, webhooks=[receiver.url], webhook_secret=SECRET,
                         webhook_allow_private=True)  # fmt: skip
    with serve(settings) as live:
        world = World(live, tmp_path)
        _chain(world)
        world.releaser.revoke("fraud/tx@3", "poisoned rows")
        world.releaser.revoke("fraud/tx@3", "poisoned rows")  # idempotent: no new events
        time.sleep(0.5)
        events = [e for e in receiver.events(3) if e["event"] == "version_revoked"]
    assert [(e["version"], e.get("root_cause")) for e in events] == [
        ("fraud/tx@3", None),
        ("fraud/m@1", "fraud/tx@3"),
        ("fraud/ft@1", "fraud/tx@3"),
    ]
    assert all(e["reason"] == "poisoned rows" for e in events)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def test_status_lists_the_dependencies_and_is_signed(world: World) -> None:
    """The statement a pull checks: the version's state and every dependency's, signed."""
    _chain(world)
    admin = {"Authorization": f"Bearer {world.live.admin_token}"}
    path = "/v1/namespaces/fraud/artifacts/ft/versions/1/status"
    raw = httpx.get(world.live.url + path, headers=admin).content
    statement = _registry_verifier(world.live).verify(Bundle.parse(raw)).statement
    assert statement.predicate_type == STATUS
    predicate = statement.predicate
    assert predicate["version"] == "fraud/ft@1" and predicate["state"] == "released"
    assert [(d["version"], d["state"]) for d in predicate["dependencies"]] == [
        ("fraud/m@1", "released"),
        ("fraud/tx@3", "released"),
    ]
    assert predicate["issuedAt"].endswith("+00:00")
