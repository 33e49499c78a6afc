"""The transparency log, client side (#21 points 3-5, docs/transparency-log.md "What clients
check"): a pull pins the log's key, remembers the newest checkpoint and requires a consistency
proof to every newer one, proves the version's newest status event (and an alias's newest move)
in a fresh checkpoint, and can require witness cosignatures. Attacks next to acceptances, each
refused naming its cause: a database rolled back, a forked log, a frozen (stale) view of a
revoked version, a checkpoint by an unknown or changed key, a missing or forged witness
cosignature, an alias state replayed from before a rollback or missing from the log, a release
missing from the log. Real servers on both backends; the attacker edits the database and signs
with the log key file on disk."""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import Engine, delete, insert, select, update

from attest import note, tlog
from attest.predicates import REVOCATION
from registry.errors import PullVerificationError
from registry.sdk.client import RegistryClient
from registry.sdk.logcheck import check_checkpoint, latest_checkpoint, requirements
from registry.sdk.pins import PinStore
from registry.server.db import make_engine
from registry.server.models import (
    Alias,
    Artifact,
    Attestation,
    LogCheckpoint,
    LogCosignature,
    LogEntry,
    LogHead,
    Version,
)
from registry.server.services.common import utcnow
from tests.integration.test_release import World, _deployer, _released
from tests.support import Live, replica, run_cli


@pytest.fixture
def world(live: Live, tmp_path: Path) -> World:
    return World(live, tmp_path)


@pytest.fixture
def engine(live: Live) -> Iterator[Engine]:
    engine = make_engine(live.settings.resolved_database_url)
    yield engine
    engine.dispose()


def _settle(engine: Engine) -> None:
    """Wait until a checkpoint covers every entry and the batch signer is done (0.5 s after
    an append), so the newest checkpoint row stays the newest while a test works on it."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            size = conn.execute(select(LogHead.size)).scalar_one()
            signed = conn.execute(select(LogCheckpoint.size).order_by(LogCheckpoint.id.desc())
                                  .limit(1)).scalar_one_or_none()  # fmt: skip
        if signed == size:
            time.sleep(1.0)
            with engine.connect() as conn:
                again = conn.execute(select(LogHead.size)).scalar_one()
            if again == size:
                return
        time.sleep(0.1)
    raise AssertionError("the log's checkpoint did not settle")


def _latest_row(engine: Engine) -> tuple[int, str]:
    with engine.connect() as conn:
        row = conn.execute(
            select(LogCheckpoint.id, LogCheckpoint.note).order_by(LogCheckpoint.id.desc()).limit(1)
        ).one()
    return int(row.id), str(row.note)


def _log_signer(live: Live, engine: Engine) -> note.NoteSigner:
    """The log key from the server's data directory (what an attacker with the disk has)."""
    with engine.connect() as conn:
        origin = conn.execute(select(LogHead.origin)).scalar_one()
    return note.NoteSigner.from_file(origin, live.settings.data_dir / "log.key")


def _tree(engine: Engine, size: int) -> tlog.MemoryTree:
    with engine.connect() as conn:
        rows = conn.execute(
            select(LogEntry.entry).where(LogEntry.idx < size).order_by(LogEntry.idx)
        ).scalars()
        return tlog.MemoryTree(tlog.leaf_hash(bytes(r)) for r in rows)


def _insert_checkpoint(engine: Engine, text: str, checkpoint: note.Checkpoint) -> int:
    with engine.begin() as conn:
        result = conn.execute(
            insert(LogCheckpoint).values(
                size=checkpoint.size,
                root_hash=checkpoint.root_hash,
                timestamp=checkpoint.timestamp or 0,
                note=text,
                created_at=utcnow(),
            )
        )
        return int(result.inserted_primary_key[0])  # type: ignore[index]


def _truncate_log(engine: Engine, size: int) -> None:
    """The log as it was at ``size`` entries: later entries, checkpoints and cosignatures gone
    (a database restored from an earlier snapshot)."""
    with engine.begin() as conn:
        later = select(LogCheckpoint.id).where(LogCheckpoint.size > size)
        conn.execute(delete(LogCosignature).where(LogCosignature.checkpoint_id.in_(later)))
        conn.execute(delete(LogCheckpoint).where(LogCheckpoint.size > size))
        conn.execute(delete(LogEntry).where(LogEntry.idx >= size))
        conn.execute(update(LogHead).values(size=size, tiles_size=0))


def _forget_stored_checkpoint(live: Live) -> None:
    """The checkpoint copy in the blob store (``tlog/checkpoint``) restored with the database:
    the attacker rolls back both, so the registry itself cannot tell."""
    from registry.server.services.tlog import LocalTileStore, open_tile_store
    from registry.server.storage import open_blob_store

    tiles = open_tile_store(live.settings, open_blob_store(live.settings))
    if isinstance(tiles, LocalTileStore):
        (tiles.root / "checkpoint").unlink(missing_ok=True)
    elif tiles is not None:
        tiles._s3.delete_object(Bucket=tiles.bucket, Key=tiles.prefix + "checkpoint")  # type: ignore[attr-defined]


def _set_state(engine: Engine, version: str, state: str) -> None:
    """The version's state as in an earlier snapshot: the revocation statement gone too."""
    with engine.begin() as conn:
        conn.execute(delete(Attestation).where(Attestation.predicate_type == REVOCATION))
        conn.execute(update(Version).where(Version.version == version,
                                           Version.artifact_id.in_(select(Artifact.id).where(
                                               Artifact.name == "m")))
                     .values(state=state, state_reason=None))  # fmt: skip


def _size(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(LogHead.size)).scalar_one())


def _witness(name: str) -> note.NoteSigner:
    return note.NoteSigner(name, ed25519.Ed25519PrivateKey.generate(), note.SIG_COSIGNATURE_V1)


def _cosign(engine: Engine, checkpoint_id: int, text: str, witness: note.NoteSigner,
            *, forge: bool = False) -> None:  # fmt: skip
    checkpoint_text = text[: text.rfind("\n\n") + 1]
    line = note.cosign(checkpoint_text, witness)
    if forge:  # a cosignature line under the witness's name and key ID that does not verify
        name, blob = line.removeprefix("\u2014 ").split(" ")
        raw = bytearray(base64.b64decode(blob))
        raw[-1] ^= 1
        line = f"\u2014 {name} {base64.b64encode(bytes(raw)).decode()}\n"
    with engine.begin() as conn:
        conn.execute(insert(LogCosignature).values(checkpoint_id=checkpoint_id,
                                                   witness=witness.name, signature=line,
                                                   created_at=utcnow()))  # fmt: skip


def _paths(client: RegistryClient) -> list[str]:
    """Record the paths the client asks for."""
    seen: list[str] = []
    client._http.event_hooks["request"].append(lambda request: seen.append(request.url.path))
    return seen


def _copy_pins(source_url: str, target_url: str) -> None:
    """The same client's memory for another URL of the same registry (a replica, a proxy)."""
    pins = PinStore()
    data = json.loads(pins.path.read_text())
    data["registries"][target_url.rstrip("/")] = data["registries"][source_url.rstrip("/")]
    pins.path.write_text(json.dumps(data))


# -- acceptance ----------------------------------------------------------------------------------


def test_a_clean_pull_pins_the_log_and_later_pulls_prove_consistency(
    world: World, tmp_path: Path, engine: Engine
) -> None:
    _released(world)
    deployer = _deployer(world)
    notices: list[str] = []
    deployer.on_notice = notices.append
    deployer.pull("fraud/m@1", tmp_path / "a")
    pins = PinStore()
    url = deployer.base_url
    admin = {"Authorization": f"Bearer {world.live.admin_token}"}
    key = httpx.get(f"{world.live.url}/v1/log/key", headers=admin).json()
    assert pins.log_key(url) == {"origin": key["origin"], "vkey": key["vkey"]}
    assert any("pinned the transparency log" in n for n in notices)
    first = pins.log_checkpoint(url)
    assert first is not None and first["size"] >= 1

    # More releases, then a pull: a consistency proof from the remembered checkpoint.
    world.model("fraud/m@2", deps=[("fraud/tx@3", world.admin.show("fraud/tx@3").root_digest)],
                extra={"v2.json": b"{}"})  # fmt: skip
    world.releaser.release("fraud/m@2")
    asked = _paths(deployer)
    deployer.pull("fraud/m@2", tmp_path / "b")
    assert "/v1/log/proof/consistency" in asked
    second = pins.log_checkpoint(url)
    assert second is not None and second["size"] > first["size"]
    assert pins.log_subject_index(url, "fraud/m@2") is not None

    # The remembered checkpoint is what the proof is checked against: another root there (as
    # if this client had been shown another history) refuses the next pull, naming both.
    remembered = note.Checkpoint.parse(second["text"])
    forked = dataclasses.replace(remembered, root_hash=bytes(32))
    pins.remember_log_checkpoint(url, forked.text(), forked.size, (forked.timestamp or 0) + 1,
                                 "now", "test")  # fmt: skip
    world.model("fraud/m@3", deps=[("fraud/tx@3", world.admin.show("fraud/tx@3").root_digest)],
                extra={"v3.json": b"{}"})  # fmt: skip
    world.releaser.release("fraud/m@3")
    with pytest.raises(PullVerificationError, match=r"does not extend .* seen before") as caught:
        deployer.pull("fraud/m@3", tmp_path / "c")
    assert caught.value.facts["cause"] == "log-rollback"
    assert not (tmp_path / "c").exists()


def test_a_pending_pull_checks_the_checkpoint_only(world: World, tmp_path: Path) -> None:
    """A pending version has no release entry to prove: the log's newest checkpoint is still
    verified (pinned key, fresh, consistent with the one remembered) and remembered."""
    dataset = world.dataset()
    world.model(deps=[("fraud/tx@3", dataset)])
    evaluator = world.admin
    evaluator.pull("fraud/m@1", tmp_path / "eval", pending=True)
    assert PinStore().log_checkpoint(evaluator.base_url) is not None


def test_the_alias_lookup_endpoint(world: World, engine: Engine) -> None:
    """GET /v1/log/latest: an alias's newest move with its inclusion proof; bad types 400,
    unknown subjects 404, no token 401."""
    _released(world)
    world.releaser.set_alias("fraud", "m", "prod", "1")
    http = httpx.Client(base_url=world.live.url, timeout=60,
                        headers={"Authorization": f"Bearer {world.live.admin_token}"})  # fmt: skip
    answer = http.get("/v1/log/latest", params={"subject": "fraud/m@prod", "type": "alias"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    entry = json.loads(base64.b64decode(body["entry"]))
    assert entry["subject"] == "fraud/m@prod" and entry["to"] == "1"
    key = http.get("/v1/log/key").json()
    signed = note.verify_checkpoint(body["checkpoint"], [note.NoteVerifier.from_vkey(key["vkey"])],
                                    origin=key["origin"])  # fmt: skip
    tlog.verify_inclusion(body["index"], body["size"], tlog.leaf_hash(base64.b64decode(
        body["entry"])), [base64.b64decode(h) for h in body["hashes"]],
        signed.checkpoint.root_hash)  # fmt: skip
    assert http.get("/v1/log/latest", params={"subject": "fraud/m@prod",
                                              "type": "nope"}).status_code == 400  # fmt: skip
    assert http.get("/v1/log/latest", params={"subject": "fraud/m@canary",
                                              "type": "alias"}).status_code == 404  # fmt: skip
    anonymous = httpx.get(f"{world.live.url}/v1/log/latest",
                          params={"subject": "fraud/m@prod", "type": "alias"})  # fmt: skip
    assert anonymous.status_code == 401


# -- rollback, fork, freeze ----------------------------------------------------------------------


def test_a_registry_rolled_back_to_an_earlier_snapshot_is_refused(
    world: World, tmp_path: Path, engine: Engine
) -> None:
    """The database restored to before a revocation (entries, checkpoints, the version's
    state): the registry signs a fresh checkpoint of the smaller tree, and a client that saw
    the newer one refuses it, naming both."""
    _released(world)
    deployer = _deployer(world)
    deployer.pull("fraud/m@1", tmp_path / "a")
    _settle(engine)
    before = _size(engine)
    world.releaser.revoke("fraud/m@1", "bad calibration")
    _settle(engine)
    pins = PinStore()
    check_checkpoint(
        deployer, latest_checkpoint(deployer), pins, requirements(deployer), where="test"
    )  # fmt: skip  (the deployer saw the revocation's checkpoint)
    seen = pins.log_checkpoint(deployer.base_url)
    assert seen is not None and seen["size"] > before

    _truncate_log(engine, before)
    _set_state(engine, "1", "released")
    _forget_stored_checkpoint(world.live)
    token = deployer._http.headers["Authorization"].split()[1]
    with replica(world.live.settings) as url:  # a restarted server over the restored snapshot
        _copy_pins(world.live.url, url)
        with pytest.raises(PullVerificationError, match="smaller than checkpoint") as caught:
            RegistryClient(url, token).pull("fraud/m@1", tmp_path / "b")
    message = str(caught.value)
    assert f"size {before} " in message and f"size {seen['size']} " in message
    assert "rolled back or forked" in message and caught.value.facts["cause"] == "log-rollback"
    assert not (tmp_path / "b").exists()


def test_a_revoked_version_frozen_in_an_old_checkpoint_is_refused_as_stale(
    world: World, tmp_path: Path, engine: Engine
) -> None:
    """A freeze: the registry (a replica that no longer re-signs) serves the state before the
    revocation with the validly signed checkpoint of that time. A client that never saw the
    newer one cannot tell by consistency; the checkpoint's age gives it away."""
    _released(world)
    token = _deployer(world)._http.headers["Authorization"].split()[1]  # no append after this
    _settle(engine)
    before = _size(engine)
    world.releaser.revoke("fraud/m@1", "bad calibration")
    _settle(engine)
    _truncate_log(engine, before)  # the genuine old checkpoint of `before` entries stays
    _set_state(engine, "1", "released")
    frozen = world.live.settings.model_copy(update={"checkpoint_seconds": 0})
    time.sleep(3)
    with replica(frozen) as url:
        fresh = RegistryClient(url, token, log_max_age=2)
        with pytest.raises(PullVerificationError, match=r"is stale: signed \d+ s ago") as caught:
            fresh.pull("fraud/m@1", tmp_path / "b")
        assert caught.value.facts["cause"] == "log-stale"
        assert "frozen view" in str(caught.value)
    assert not (tmp_path / "b").exists()


def test_a_forked_log_is_refused_and_a_witness_catches_it_for_a_new_client(
    world: World, tmp_path: Path, engine: Engine
) -> None:
    """The attacker rewrites an entry and signs the forked tree with the log key from the disk;
    a fresh replica serves it. The client that saw the genuine checkpoint refuses it (same size,
    another root); a new client cannot know, unless it requires a witness, which cosigned only
    the genuine one."""
    _released(world)
    deployer = _deployer(world)  # a logged token: before the checkpoint the witness cosigns
    _settle(engine)
    witness = _witness("witness-a")
    row_id, genuine = _latest_row(engine)
    _cosign(engine, row_id, genuine, witness)
    token = deployer._http.headers["Authorization"].split()[1]
    deployer.witnesses, deployer.witness_threshold = [witness.verifier], 1
    deployer.pull("fraud/m@1", tmp_path / "a")  # the genuine, cosigned view

    size = _size(engine)
    with engine.begin() as conn:  # rewrite entry 1 (the first admin token's) and its leaf hash
        data = json.loads(conn.execute(select(LogEntry.entry).where(LogEntry.idx == 1))
                          .scalar_one())  # fmt: skip
        data["actor"] = "mallory"
        forged = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        conn.execute(update(LogEntry).where(LogEntry.idx == 1)
                     .values(entry=forged, leaf_hash=tlog.leaf_hash(forged)))  # fmt: skip
    signer = _log_signer(world.live, engine)
    genuine_checkpoint = note.Checkpoint.parse(genuine[: genuine.rfind("\n\n") + 1])
    fork = note.Checkpoint(signer.name, size, _tree(engine, size).root(size),
                           (genuine_checkpoint.timestamp or 0) + 1)  # fmt: skip
    _insert_checkpoint(engine, note.sign_checkpoint(fork, signer), fork)

    with replica(world.live.settings.model_copy(update={"checkpoint_seconds": 0})) as url:
        _copy_pins(world.live.url, url)
        same = RegistryClient(url, token)  # this client's memory, at the forked replica
        with pytest.raises(PullVerificationError, match="same size and different roots") as c:
            same.pull("fraud/m@1", tmp_path / "b")
        assert c.value.facts["cause"] == "log-rollback" and "seen before" in str(c.value)

        config = tmp_path / "other-client"
        other = PinStore(config / "pins.json")
        new = RegistryClient(url, token, witnesses=[witness.verifier])
        with pytest.raises(PullVerificationError, match=r"0 of the 1 required witness"):
            new.pull("fraud/m@1", tmp_path / "c", pins=other)
        unwitnessed = RegistryClient(url, token)  # trust on first use: fooled, as expected
        unwitnessed.pull("fraud/m@1", tmp_path / "d", pins=PinStore(tmp_path / "third.json"))
    for target in ("b", "c"):
        assert not (tmp_path / target).exists()


# -- keys and witnesses --------------------------------------------------------------------------


def test_a_checkpoint_by_an_unknown_or_changed_log_key_is_refused(
    world: World, tmp_path: Path, engine: Engine
) -> None:
    _released(world)
    deployer = _deployer(world)
    deployer.pull("fraud/m@1", tmp_path / "a")  # pins the log key
    _settle(engine)
    _row, genuine = _latest_row(engine)
    checkpoint = note.Checkpoint.parse(genuine[: genuine.rfind("\n\n") + 1])
    pinned = PinStore().log_key(deployer.base_url)
    assert pinned is not None

    # The registry restarted with another log key (its database told so): refused, naming both.
    from attest import keys

    keys.write_keypair(tmp_path / "other-log", keys.generate(keys.KeyType.ED25519))
    other = note.NoteSigner.from_file(checkpoint.origin, tmp_path / "other-log.key")
    with engine.begin() as conn:  # its checkpoints by the old key gone with it
        conn.execute(update(LogHead).values(vkey=other.verifier.vkey))
        conn.execute(delete(LogCosignature))
        conn.execute(delete(LogCheckpoint))
    _forget_stored_checkpoint(world.live)
    changed = world.live.settings.model_copy(update={"log_signing_key": tmp_path / "other-log.key"})
    with replica(changed) as url:
        _copy_pins(world.live.url, url)
        token = deployer._http.headers["Authorization"].split()[1]
        with pytest.raises(PullVerificationError, match="not signed by the pinned log key") as c:
            RegistryClient(url, token).pull("fraud/m@1", tmp_path / "c")
    assert c.value.facts["cause"] == "log-key" and "pinned on first contact" in str(c.value)
    assert other.verifier.vkey in str(c.value) and pinned["vkey"] in str(c.value)
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_required_witnesses_missing_or_forged_are_refused(
    world: World, tmp_path: Path, engine: Engine
) -> None:
    _released(world)
    token = _deployer(world)._http.headers["Authorization"].split()[1]  # a logged token first
    _settle(engine)
    a, b = _witness("witness-a"), _witness("witness-b")
    row_id, text = _latest_row(engine)
    _cosign(engine, row_id, text, a)
    url = world.live.url

    def client(threshold: int | None, *ws: note.NoteSigner) -> RegistryClient:
        return RegistryClient(url, token, witnesses=[w.verifier for w in ws],
                              witness_threshold=threshold)  # fmt: skip

    client(None, a).pull("fraud/m@1", tmp_path / "one")
    client(1, a, b).pull("fraud/m@1", tmp_path / "one-of-two")
    with pytest.raises(PullVerificationError, match=r"1 of the 2 required .*missing: witness-b"):
        client(None, a, b).pull("fraud/m@1", tmp_path / "two")
    _cosign(engine, row_id, text, b, forge=True)
    with pytest.raises(PullVerificationError, match=r"witness-b.* does not verify"):
        client(1, a, b).pull("fraud/m@1", tmp_path / "forged")
    for target in ("two", "forged"):
        assert not (tmp_path / target).exists()

    # The command line: --witness NAME=KEYFILE (a vkey file), --witness-threshold.
    (tmp_path / "a.vkey").write_text(a.verifier.vkey + "\n")
    (tmp_path / "b.vkey").write_text(b.verifier.vkey + "\n")
    with engine.begin() as conn:  # only a's (genuine) cosignature
        conn.execute(delete(LogCosignature).where(LogCosignature.witness == "witness-b"))
    ok = run_cli("pull", "fraud/m@1", "--to", str(tmp_path / "cli"), "--no-progress",
                 "--witness", f"witness-a={tmp_path / 'a.vkey'}", live=world.live,
                 token=token)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    refused = run_cli("pull", "fraud/m@1", "--to", str(tmp_path / "cli2"), "--no-progress",
                      "--witness", f"witness-a={tmp_path / 'a.vkey'}",
                      "--witness", f"witness-b={tmp_path / 'b.vkey'}",
                      "--witness-threshold", "2", live=world.live, token=token)  # fmt: skip
    assert refused.returncode == 1 and "missing: witness-b" in refused.stderr
    assert not (tmp_path / "cli2").exists()


# -- aliases and missing entries -----------------------------------------------------------------


def _alias_to(engine: Engine, alias: str, version: str) -> None:
    """Point (or create) an alias straight in the database: a state the log never saw."""
    with engine.begin() as conn:
        artifact = conn.execute(select(Artifact.id).where(Artifact.name == "m")).scalar_one()
        which = select(Version.id).where(Version.artifact_id == artifact,
                                         Version.version == version)  # fmt: skip
        vid = conn.execute(which).scalar_one()
        moved = conn.execute(update(Alias).where(Alias.artifact_id == artifact,
                                                 Alias.name == alias)
                             .values(version_id=vid)).rowcount  # fmt: skip
        if not moved:
            conn.execute(insert(Alias).values(artifact_id=artifact, name=alias, version_id=vid,
                                              updated_at=utcnow(),
                                              updated_by="mallory"))  # fmt: skip


def test_an_intentional_rollback_pulls_and_a_replayed_alias_state_is_refused(
    world: World, tmp_path: Path, engine: Engine
) -> None:
    dataset = _released(world)
    world.model("fraud/m@2", deps=[("fraud/tx@3", dataset)], extra={"v2.json": b"{}"})
    world.releaser.release("fraud/m@2")
    world.releaser.set_alias("fraud", "m", "prod", "1")
    world.releaser.set_alias("fraud", "m", "prod", "2")
    deployer = _deployer(world)
    token = deployer._http.headers["Authorization"].split()[1]
    assert deployer.pull("fraud/m@prod", tmp_path / "a").version == "2"

    # The releaser rolls prod back to 1: a logged move marked older; pulls follow it.
    world.releaser.set_alias("fraud", "m", "prod", "1")
    shown = run_cli("pull", "fraud/m@prod", "--to", str(tmp_path / "b"), "--no-progress",
                    live=world.live, token=token)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "fraud/m@prod is a rollback: moved back from 2 to 1 by release-bot" in shown.stderr

    # The alias state from before the rollback, replayed in the database: refused.
    _alias_to(engine, "prod", "2")
    with pytest.raises(PullVerificationError, match=r"newest logged move .* is to 1") as c:
        deployer.pull("fraud/m@prod", tmp_path / "c", allow_downgrade=True)
    assert c.value.facts["cause"] == "log-alias" and "replayed" in str(c.value)

    # An alias the log never saw: refused.
    _alias_to(engine, "canary", "2")
    with pytest.raises(PullVerificationError, match="no move of the alias is in the registry"):
        deployer.pull("fraud/m@canary", tmp_path / "d")
    for target in ("c", "d"):
        assert not (tmp_path / target).exists()


def test_a_release_missing_from_the_log_is_refused(
    world: World, tmp_path: Path, engine: Engine
) -> None:
    """No backfill: a released version without a release entry (released before the log
    existed: here the log restored to before the release, with its stored checkpoint, and
    served by a restarted server to a new client) is refused, fail closed."""
    dataset = world.dataset()
    world.model(deps=[("fraud/tx@3", dataset)])
    token = _deployer(world)._http.headers["Authorization"].split()[1]
    _settle(engine)
    before = _size(engine)
    world.releaser.release("fraud/m@1")
    _settle(engine)
    _truncate_log(engine, before)
    _forget_stored_checkpoint(world.live)
    with replica(world.live.settings) as url:
        with pytest.raises(PullVerificationError, match="no release of it is in the regis") as c:
            RegistryClient(url, token).pull("fraud/m@1", tmp_path / "a")
    assert c.value.facts["cause"] == "log-missing"
    assert not (tmp_path / "a").exists()


def test_verify_and_audit_verify_check_the_log(
    world: World, tmp_path: Path, engine: Engine
) -> None:
    _released(world)
    verified = run_cli("verify", "fraud/m@1", live=world.live)
    assert verified.returncode == 0, verified.stderr
    audited = run_cli("audit", "verify", live=world.live)
    assert audited.returncode == 0, audited.stderr
    assert "transparency log consistent" in audited.stderr
    _settle(engine)
    before = _size(engine)
    world.releaser.revoke("fraud/m@1", "bad calibration")
    _settle(engine)
    assert run_cli("audit", "verify", live=world.live).returncode == 0
    _truncate_log(engine, before)
    rolled = run_cli("audit", "verify", live=world.live)
    assert rolled.returncode == 1 and "smaller than checkpoint" in rolled.stderr
    helps = " ".join(run_cli("pull", "--help").stdout.split())
    for flag in ("--max-age", "--witness", "--witness-threshold", "no longer needed"):
        assert flag in helps


def test_witness_and_freshness_settings_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MODELSEAL_LOG_MAX_AGE, MODELSEAL_WITNESSES (a vkey file, an Ed25519 PEM) and
    MODELSEAL_WITNESS_THRESHOLD; malformed ones refused before anything is asked."""
    from attest import keys
    from registry.errors import InvalidRequestError

    a = _witness("witness-a")
    (tmp_path / "a.vkey").write_text(a.verifier.vkey + "\n")
    keys.write_keypair(tmp_path / "b", keys.generate(keys.KeyType.ED25519))
    monkeypatch.setenv("MODELSEAL_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("MODELSEAL_LOG_MAX_AGE", "600")
    both = f"witness-a={tmp_path / 'a.vkey'},witness-b={tmp_path / 'b.pub'}"
    monkeypatch.setenv("MODELSEAL_WITNESSES", both)
    client = RegistryClient.from_env()
    assert client.log_max_age == 600 and client.witness_threshold == 2
    assert [w.name for w in client.witnesses] == ["witness-a", "witness-b"]
    assert all(w.sig_type == note.SIG_COSIGNATURE_V1 for w in client.witnesses)
    monkeypatch.setenv("MODELSEAL_WITNESS_THRESHOLD", "1")
    assert RegistryClient.from_env().witness_threshold == 1
    monkeypatch.setenv("MODELSEAL_WITNESS_THRESHOLD", "3")
    with pytest.raises(InvalidRequestError, match="only 2 witness"):
        RegistryClient.from_env()
    monkeypatch.setenv("MODELSEAL_WITNESS_THRESHOLD", "1")
    monkeypatch.setenv("MODELSEAL_WITNESSES", f"witness-c={tmp_path / 'a.vkey'}")
    with pytest.raises(InvalidRequestError, match="holds the key of 'witness-a'"):
        RegistryClient.from_env()
    monkeypatch.delenv("MODELSEAL_WITNESSES")
    monkeypatch.setenv("MODELSEAL_WITNESS_THRESHOLD", "0")
    monkeypatch.setenv("MODELSEAL_LOG_MAX_AGE", "soon")
    with pytest.raises(InvalidRequestError, match="MODELSEAL_LOG_MAX_AGE"):
        RegistryClient.from_env()


def test_a_logged_release_of_another_statement_is_refused(
    world: World, tmp_path: Path, engine: Engine
) -> None:
    """The log's release entry must commit to the very release bundle the pull verified: an
    entry naming another statement (the log rewritten and re-signed with the key from disk, a
    fresh client that cannot tell by consistency) is refused."""
    _released(world)
    token = _deployer(world)._http.headers["Authorization"].split()[1]
    _settle(engine)
    size = _size(engine)
    with engine.begin() as conn:
        index, raw = conn.execute(select(LogEntry.idx, LogEntry.entry).where(
            LogEntry.subject == "fraud/m@1", LogEntry.type == "release")).one()  # fmt: skip
        data = json.loads(bytes(raw))
        data["statement_sha256"] = "0" * 64
        forged = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        conn.execute(update(LogEntry).where(LogEntry.idx == index)
                     .values(entry=forged, leaf_hash=tlog.leaf_hash(forged)))  # fmt: skip
        conn.execute(delete(LogCosignature))
        conn.execute(delete(LogCheckpoint))
    signer = _log_signer(world.live, engine)
    checkpoint = note.Checkpoint(
        signer.name, size, _tree(engine, size).root(size), int(time.time())
    )
    _insert_checkpoint(engine, note.sign_checkpoint(checkpoint, signer), checkpoint)
    with replica(world.live.settings.model_copy(update={"checkpoint_seconds": 0})) as url:
        with pytest.raises(PullVerificationError, match="not the registry-signed release") as c:
            RegistryClient(url, token).pull("fraud/m@1", tmp_path / "a")
    assert c.value.facts["cause"] == "log-statement"
    assert not (tmp_path / "a").exists()
