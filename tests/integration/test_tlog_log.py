"""The transparency log, server side (docs/transparency-log.md): every trust-relevant change
appends exactly one entry in its own transaction (a refused change none); checkpoints, inclusion
and consistency proofs and tiles verify with attest.note and attest.tlog against the served key;
two replicas appending at once make one log; edited rows, bad sizes and paths, and unauthenticated
reads are refused. Both backends (SQLite + local store, PostgreSQL + SeaweedFS)."""

from __future__ import annotations

import base64
import itertools
import json
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import Engine, delete, func, select, update

from attest import note, tlog
from attest.signing import KeySigner
from registry.errors import ConflictError, PermissionDeniedError, ReleaseRefusedError
from registry.server.config import Settings
from registry.server.db import make_engine, make_sessionmaker
from registry.server.models import Attestation, LogCheckpoint, LogCosignature, LogEntry
from registry.server.services.common import utcnow
from registry.server.services.tlog import LogService, open_tile_store
from registry.server.storage import open_blob_store
from tests.integration.test_release import World, _deployer
from tests.integration.test_revocation import _chain
from tests.support import Live, replica


@pytest.fixture
def engine(live: Live) -> Iterator[Engine]:
    engine = make_engine(live.settings.resolved_database_url)
    yield engine
    engine.dispose()


def _service(settings: Settings, engine: Engine, **kwargs: Any) -> LogService:
    """A second LogService on the same database and store (another replica's)."""
    tiles = open_tile_store(settings, open_blob_store(settings))
    return LogService(make_sessionmaker(engine), settings, tiles=tiles, **kwargs)


def _http(live: Live, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token or live.admin_token}"}
    return httpx.Client(base_url=live.url, headers=headers, timeout=60)


def _rows(engine: Engine, start: int = 0) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(LogEntry.idx, LogEntry.entry).where(LogEntry.idx >= start).order_by(LogEntry.idx)
        ).all()
    return [json.loads(bytes(r.entry)) | {"_index": r.idx} for r in rows]


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(LogEntry)).scalar_one())


def _delta(engine: Engine, action: Callable[[], object]) -> list[dict[str, Any]]:
    before = _count(engine)
    action()
    return _rows(engine, before)


def _refused(
    error: type[Exception], fn: Callable[..., object], *args: object
) -> Callable[[], None]:
    def run() -> None:
        with pytest.raises(error):
            fn(*args)

    return run


def _verifier(http: httpx.Client) -> tuple[str, note.NoteVerifier]:
    key = http.get("/v1/log/key").json()
    return key["origin"], note.NoteVerifier.from_vkey(key["vkey"])


def _b64(values: list[str]) -> list[bytes]:
    return [base64.b64decode(v) for v in values]


def test_each_change_appends_one_entry_in_its_transaction(
    live: Live, tmp_path: Path, engine: Engine
) -> None:
    """Every trust-relevant event type, each exactly once and naming what it records; refused
    changes (a failed gate, a denied role, an alias to a revoked version) append nothing."""
    first = _rows(engine)
    assert [e["type"] for e in first[:2]] == ["registry_key", "token"]  # bootstrap
    assert first[1]["actor"] == "registry" and first[1]["role"] == "admin"
    assert first[0]["fingerprint"].startswith("sha256:") and "public_key_pem" in first[0]

    world_holder: list[World] = []
    added = _delta(engine, lambda: world_holder.append(World(live, tmp_path)))
    world = world_holder[0]
    assert sorted(e["type"] for e in added) == ["identity"] * 3 + ["policy", "token"]
    policy = next(e for e in added if e["type"] == "policy")
    assert policy["subject"] == policy["namespace"] == "fraud" and policy["revision"] == 1
    assert len(policy["sha256"]) == 64
    identity = next(e for e in added if e["type"] == "identity")
    assert identity["kind"] == "key" and identity["change"] == "added" and identity["fingerprint"]

    # A release: one entry committing to the registry-signed release statement.
    dataset = world.dataset()
    world.model(deps=[("fraud/tx@3", dataset)])
    [release] = _delta(engine, lambda: world.releaser.release("fraud/m@1"))
    assert release["type"] == "release" and release["subject"] == "fraud/m@1"
    assert release["actor"] == "release-bot" and release["role"] == "releaser"
    with engine.connect() as conn:
        digests = set(conn.execute(select(Attestation.bundle_digest)).scalars())
    assert release["statement_sha256"] in digests
    assert release["root_digest"].startswith("sha256:") and release["v"] == 1

    # Refused changes append nothing.
    world.model("fraud/weak@1", accuracy=0.5)
    assert (
        _delta(engine, _refused(ReleaseRefusedError, world.releaser.release, "fraud/weak@1")) == []
    )
    deployer = _deployer(world)
    denied = _refused(PermissionDeniedError, deployer.create_token, "x", "deployer", "fraud")
    assert _delta(engine, denied) == []

    # A rejection.
    [rejection] = _delta(engine, lambda: world.releaser.reject("fraud/weak@1", "too weak"))
    assert rejection["type"] == "rejection" and rejection["reason"] == "too weak"
    assert rejection["by"] == "releaser"

    # Alias moves: forward, then back to a version pushed earlier (a rollback, by intent).
    world.model("fraud/m@2", deps=[("fraud/tx@3", dataset)], extra={"v2.json": b"{}"})
    world.releaser.release("fraud/m@2")
    [first_move] = _delta(engine, lambda: world.releaser.set_alias("fraud", "m", "prod", "2"))
    assert (first_move["from"], first_move["to"], first_move["older"]) == (None, "2", False)
    [back] = _delta(engine, lambda: world.releaser.set_alias("fraud", "m", "prod", "1"))
    assert back["subject"] == "fraud/m@prod" and back["type"] == "alias"
    assert (back["from"], back["to"], back["older"]) == ("2", "1", True)

    # Tokens: issued and revoked, never a secret.
    issued: list[Any] = []
    [token] = _delta(engine, lambda: issued.append(world.admin.create_token("ci", "publisher",
                                                                            "fraud")))  # fmt: skip
    assert (token["change"], token["role"], token["namespace"]) == ("issued", "publisher", "fraud")
    secret = issued[0].token
    [revoked] = _delta(engine, lambda: world.admin.revoke_token(issued[0].id))
    assert revoked["change"] == "revoked" and revoked["token_id"] == issued[0].id
    assert not any(secret.split("_")[-1] in json.dumps(e) for e in _rows(engine))

    # A revocation cascades: one entry per revoked version, each committing to its statement.
    revocations = _delta(engine, lambda: world.releaser.revoke("fraud/tx@3", "poisoned"))
    assert sorted(e["subject"] for e in revocations) == ["fraud/m@1", "fraud/m@2", "fraud/tx@3"]
    assert all(e["type"] == "revocation" and e["root_cause"] == "fraud/tx@3" for e in revocations)
    with engine.connect() as conn:
        digests = set(conn.execute(select(Attestation.bundle_digest)).scalars())
    assert all(e["statement_sha256"] in digests for e in revocations)
    # An alias to a revoked version is refused, and appends nothing.
    refused = _refused(ConflictError, world.releaser.set_alias, "fraud", "m", "prod", "2")
    assert _delta(engine, refused) == []

    # Entries are compact canonical JSON within the size limit; indexes have no gaps.
    with make_sessionmaker(engine)() as session:
        stored = session.execute(select(LogEntry).order_by(LogEntry.idx)).scalars().all()
    assert [r.idx for r in stored] == list(range(len(stored)))
    for row in stored:
        data = bytes(row.entry)
        assert data == json.dumps(json.loads(data), sort_keys=True, separators=(",", ":"),
                                  ensure_ascii=False).encode()  # fmt: skip
        assert len(data) < 65536 and bytes(row.leaf_hash) == tlog.leaf_hash(data)


def _sizes_and_checkpoints(live: Live, engine: Engine, tmp_path: Path) -> list[str]:
    """Activity between signed checkpoints; the notes of every checkpoint, oldest first."""
    service = _service(live.settings, engine)
    notes = [service.sign().note]
    world = World(live, tmp_path)
    notes.append(service.sign().note)
    _chain(world)
    notes.append(service.sign().note)
    world.releaser.revoke("fraud/tx@3", "poisoned")
    notes.append(service.sign().note)
    with engine.connect() as conn:
        every = list(conn.execute(select(LogCheckpoint.note).order_by(LogCheckpoint.id)).scalars())
    assert all(n in every for n in notes)  # and any the replica's own thread signed meanwhile
    return every


def test_checkpoints_proofs_and_tiles_verify(live: Live, tmp_path: Path, engine: Engine) -> None:
    notes = _sizes_and_checkpoints(live, engine, tmp_path)
    with _http(live) as http:
        origin, verifier = _verifier(http)
        served = http.get("/v1/log/checkpoint")
        assert served.status_code == 200 and served.headers["content-type"].startswith("text/plain")
        newest = note.verify_checkpoint(served.text, [verifier], origin=origin, max_age=600)
        checkpoints = [note.verify_checkpoint(n, [verifier]).checkpoint for n in notes]
        assert newest.checkpoint == checkpoints[-1]
        size = newest.checkpoint.size
        page = http.get("/v1/log/entries", params={"start": 0}).json()["entries"]
        entries = [base64.b64decode(e["entry"]) for e in page]
        assert len(entries) == size
        # Every entry's inclusion in every checkpoint that holds it.
        for cp in checkpoints:
            for index in range(cp.size):
                proof = http.get("/v1/log/proof/inclusion",
                                 params={"index": index, "size": cp.size}).json()  # fmt: skip
                tlog.verify_inclusion(index, cp.size, tlog.leaf_hash(entries[index]),
                                      _b64(proof["hashes"]), cp.root_hash)  # fmt: skip
        # Consistency between every pair, and check_extends as a client will run it.
        for i, old in enumerate(checkpoints):
            for new in checkpoints[i:]:
                proof = http.get("/v1/log/proof/consistency",
                                 params={"old": old.size, "new": new.size}).json()  # fmt: skip
                tlog.verify_consistency(old.size, new.size, old.root_hash, new.root_hash,
                                        _b64(proof["hashes"]))  # fmt: skip
                note.check_extends(old, new, _b64(proof["hashes"]))
        # The served tiles rebuild the signed root; entry bundles hold the entries.
        fetched: dict[str, bytes] = {}

        def source(tile: tlog.Tile) -> bytes:
            answer = http.get(f"/v1/log/{tile.path()}")
            assert answer.status_code == 200, answer.text
            fetched[tile.path()] = answer.content
            return answer.content

        for cp in checkpoints:
            if cp.size:
                assert tlog.root_hash(cp.size, tlog.TileHashReader(cp.size, source)) == cp.root_hash
        for tile in tlog.tiles_for_size(size):
            if tile.level == 0:
                bundle = http.get(f"/v1/log/{tile.entries_path()}").content
                first = tile.index * 256
                expected = entries[first : first + tile.width]
                assert tlog.parse_entry_bundle(bundle, tile.width) == expected
        # The blob store holds the same tiles and the newest checkpoint (static serving).
        store = open_tile_store(live.settings, open_blob_store(live.settings))
        assert store is not None
        for path, data in fetched.items():
            assert store.get(path) == data, path
        assert store.get("checkpoint") is not None


def test_resigning_without_entries_advances_the_timestamp(live: Live, engine: Engine) -> None:
    service = _service(live.settings, engine)
    first = service.sign()
    later = _service(live.settings, engine, clock=lambda: utcnow() + timedelta(seconds=90))
    second = later.sign()
    assert second.size == first.size and second.root_hash == first.root_hash
    assert second.timestamp >= first.timestamp + 89
    # A replica whose clock runs behind never signs an earlier time than the newest checkpoint.
    behind = _service(live.settings, engine, clock=lambda: utcnow() - timedelta(seconds=60))
    assert behind.sign().timestamp == second.timestamp
    # One far behind refuses to sign rather than carry a time it cannot check forward (a
    # checkpoint signed far ahead would otherwise hold every later one in the future).
    lost = _service(live.settings, engine, clock=lambda: utcnow() - timedelta(hours=1))
    with pytest.raises(ConflictError, match=r"ahead of this replica's clock|off the database's"):
        lost.sign()
    # Not forced, with nothing new: the newest checkpoint is answered, nothing is signed.
    assert service.sign(force=False).id == behind.latest().id  # type: ignore[union-attr]
    with _http(live) as http:
        origin, verifier = _verifier(http)
        clock = second.timestamp  # as a client whose clock agrees with the later replica's
        old = note.verify_checkpoint(first.note, [verifier], origin=origin, now=clock).checkpoint
        served = http.get("/v1/log/checkpoint").text
        new = note.verify_checkpoint(served, [verifier], now=clock, max_age=60).checkpoint
        assert new.timestamp == second.timestamp
        note.check_extends(old, new, [])
        with pytest.raises(note.CheckpointRollbackError):  # and the older one is refused after it
            note.check_extends(new, old, [])


def test_version_log_proves_the_newest_status_event(live: Live, tmp_path: Path) -> None:
    world = World(live, tmp_path)
    _chain(world)
    deployer = _deployer(world)
    token = deployer._http.headers["Authorization"].split()[1]
    with _http(live, token) as http:
        origin, verifier = _verifier(http)

        def status(ref_path: str) -> dict[str, Any]:
            answer = http.get(f"/v1/namespaces/fraud/artifacts/{ref_path}/log")
            assert answer.status_code == 200, answer.text
            body = answer.json()
            cp = note.verify_checkpoint(body["checkpoint"], [verifier], origin=origin,
                                        max_age=3600).checkpoint  # fmt: skip
            assert cp.size == body["size"]
            entry = base64.b64decode(body["entry"])
            tlog.verify_inclusion(body["index"], cp.size, tlog.leaf_hash(entry),
                                  _b64(body["hashes"]), cp.root_hash)  # fmt: skip
            return dict(json.loads(entry))

        assert status("m/versions/1")["type"] == "release"
        assert status("m/versions/prod")["subject"] == "fraud/m@1"  # an alias selects the version
        world.releaser.revoke("fraud/m@1", "leaked")
        revoked = status("m/versions/1")
        assert revoked["type"] == "revocation" and revoked["reason"].endswith("leaked")
        # Not released: nothing to prove (404); another namespace's token: the read rules.
        world.model("fraud/pending@1")
        assert http.get("/v1/namespaces/fraud/artifacts/pending/versions/1/log").status_code == 404
    other = world.admin.create_token("other", "deployer", "other").token
    with _http(live, other) as http:
        assert http.get("/v1/namespaces/fraud/artifacts/m/versions/1/log").status_code == 403
        assert http.get("/v1/log/checkpoint").status_code == 200  # any role reads the log


def test_two_replicas_append_concurrently_into_one_log(live: Live, engine: Engine) -> None:
    """Two app instances on one database, each taking writes from several threads at once:
    one log, indexes without gaps or duplicates, every checkpoint extends the previous one."""
    before = _count(engine)
    per_thread, threads_per_replica = 6, 3
    with replica(live.settings) as second:
        errors: list[BaseException] = []

        def work(url: str, n: int) -> None:
            try:
                auth = {"Authorization": f"Bearer {live.admin_token}"}
                with httpx.Client(base_url=url, timeout=120, headers=auth) as h:
                    for i in range(per_thread):
                        answer = h.post("/v1/tokens", json={"name": f"r{n}-{i}",
                                                            "role": "auditor"})  # fmt: skip
                        assert answer.status_code == 201, answer.text
                        if i % 2:
                            assert h.get("/v1/log/checkpoint").status_code == 200
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(url, n))
                   for n, url in enumerate([live.url, second] * threads_per_replica)]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        total = 2 * threads_per_replica * per_thread
        with engine.connect() as conn:
            indexes = list(conn.execute(select(LogEntry.idx).order_by(LogEntry.idx)).scalars())
        assert indexes == list(range(before + total))
        service = _service(live.settings, engine)
        service.sign()
        with _http(live) as http:
            _origin, verifier = _verifier(http)
            with engine.connect() as conn:
                every = list(
                    conn.execute(select(LogCheckpoint.note).order_by(LogCheckpoint.id)).scalars()
                )
            cps = [note.verify_checkpoint(n, [verifier]).checkpoint for n in every]
            for old, new in itertools.pairwise(cps):
                proof = http.get("/v1/log/proof/consistency",
                                 params={"old": old.size, "new": new.size}).json()  # fmt: skip
                note.check_extends(old, new, _b64(proof["hashes"]))
            with httpx.Client(base_url=second, timeout=60, headers=http.headers) as other:
                assert note.verify_checkpoint(other.get("/v1/log/checkpoint").text, [verifier])


def test_tampering_and_bad_requests_are_refused(live: Live, engine: Engine) -> None:
    service = _service(live.settings, engine)
    with _http(live) as http:
        _origin, verifier = _verifier(http)
        http.post("/v1/tokens", json={"name": "t", "role": "auditor"})
        signed = service.sign()
        cp = note.verify_checkpoint(signed.note, [verifier]).checkpoint
        size = cp.size
        assert size >= 3
        # Out of range: clear 400s and 404s, never a 500.
        for path, params in [
            ("/v1/log/proof/inclusion", {"index": size, "size": size}),
            ("/v1/log/proof/inclusion", {"index": 0, "size": size + 1}),
            ("/v1/log/proof/inclusion", {"index": -1, "size": size}),
            ("/v1/log/proof/inclusion", {"index": "x", "size": size}),
            ("/v1/log/proof/inclusion", {"index": 0, "size": 2**64}),
            ("/v1/log/proof/consistency", {"old": 2, "new": 1}),
            ("/v1/log/proof/consistency", {"old": 0, "new": size + 1}),
            ("/v1/log/entries", {"start": 0, "end": size + 1}),
            ("/v1/log/entries", {"start": 2, "end": 1}),
            ("/v1/log/entries", {"start": 0, "end": 5000}),
            ("/v1/log/entries", {"start": 0, "bogus": 1}),
        ]:
            answer = http.get(path, params=params)
            assert answer.status_code == 400, (path, params, answer.text)
            assert answer.headers["content-type"].startswith("application/problem+json")
        for bad in ["0/0", "0/001/", "0/1000", "0/x000/001", "0/000.p/0", "0/000.p/256",
                    "0/000.p/01", "00/000", "64/000", "entries/000.p/",
                    "0/%2e%2e/000", "0/000.p/1/x"]:  # fmt: skip
            answer = http.get(f"/v1/log/tile/{bad}")
            assert answer.status_code in (400, 404), (bad, answer.status_code)
            assert answer.status_code != 404 or answer.headers["content-type"].startswith(
                "application/problem+json"
            )
        assert http.get("/v1/log/tile/0/001").status_code == 404  # beyond the checkpoint
        assert http.get("/v1/log/tile/1/000.p/1").status_code == 404
        # Unauthenticated reads are refused.
        for path in [
            "/v1/log/checkpoint",
            "/v1/log/key",
            "/v1/log/entries?start=0",
            "/v1/log/proof/inclusion?index=0&size=1",
            "/v1/log/tile/0/000.p/1",
        ]:
            assert httpx.get(live.url + path).status_code == 401, path

        # An entry edited in the database: the proof a client checks fails …
        entries = http.get("/v1/log/entries", params={"start": 0, "end": size}).json()["entries"]
        original = base64.b64decode(entries[1]["entry"])
        forged = original.replace(b'"token"', b'"tokeN"')
        with engine.begin() as conn:
            conn.execute(update(LogEntry).where(LogEntry.idx == 1).values(entry=forged))
        # The server checks what it serves against the tree it read: 409, not the forgery.
        refused = http.get("/v1/log/entries", params={"start": 1, "end": 2})
        assert refused.status_code == 409 and "modified in the database" in refused.text
        served = forged  # had it been served, the client's proof check fails on it
        proof = http.get("/v1/log/proof/inclusion", params={"index": 1, "size": size}).json()
        with pytest.raises(tlog.ProofError):
            tlog.verify_inclusion(1, size, tlog.leaf_hash(served), _b64(proof["hashes"]),
                                  cp.root_hash)  # fmt: skip
        # … and a replica reading the log afresh refuses to prove or sign from it.
        with pytest.raises(ConflictError, match="entry 1 does not hash"):
            _service(live.settings, engine).inclusion(0, size)
        with pytest.raises(ConflictError):
            _service(live.settings, engine).sign()
        # The leaf hash edited too: the tree no longer hashes to the signed checkpoint.
        with engine.begin() as conn:
            conn.execute(update(LogEntry).where(LogEntry.idx == 1)
                         .values(leaf_hash=tlog.leaf_hash(forged)))  # fmt: skip
        with pytest.raises(ConflictError, match="signed checkpoint"):
            _service(live.settings, engine).inclusion(0, size)


# -- holes an attacker found (no view of these tests), each failing before its fix ---------------


def test_unsigned_columns_choose_nothing(live: Live, tmp_path: Path, engine: Engine) -> None:
    """A database attacker renames the revocation row's subject (a column the leaf does not
    cover) to make the old release the newest status event: the server reads the events from
    the verified entry bytes, so the revocation is still what it proves."""
    world = World(live, tmp_path)
    _chain(world)
    world.releaser.revoke("fraud/m@1", "leaked")
    with engine.begin() as conn:
        conn.execute(
            update(LogEntry)
            .where(LogEntry.type == "revocation", LogEntry.subject == "fraud/m@1")
            .values(subject="fraud/elsewhere@9", type="rejection")
        )
    with _http(live) as http:
        answer = http.get("/v1/namespaces/fraud/artifacts/m/versions/1/log")
        assert answer.status_code == 200, answer.text
        assert json.loads(base64.b64decode(answer.json()["entry"]))["type"] == "revocation"


def test_a_checkpoint_row_edited_in_the_database_is_not_signed_over(
    live: Live, engine: Engine
) -> None:
    service = _service(live.settings, engine)
    signed = service.sign()
    # Its unsigned columns moved ten years ahead, or its root replaced: refused, not carried.
    for change in ({"timestamp": signed.timestamp + 10 * 365 * 86400},
                   {"root_hash": bytes(32)}):  # fmt: skip
        with engine.begin() as conn:
            original = conn.execute(
                select(LogCheckpoint.timestamp, LogCheckpoint.root_hash).where(
                    LogCheckpoint.id == signed.id
                )
            ).one()
            conn.execute(
                update(LogCheckpoint).where(LogCheckpoint.id == signed.id).values(**change)
            )
        with pytest.raises(ConflictError, match="modified in the database"):
            _service(live.settings, engine).sign()
        with engine.begin() as conn:
            conn.execute(
                update(LogCheckpoint)
                .where(LogCheckpoint.id == signed.id)
                .values(timestamp=original.timestamp, root_hash=original.root_hash)
            )
    assert _service(live.settings, engine).sign().size == signed.size


def test_checkpoints_gone_from_the_database_do_not_let_it_sign_a_fork(
    live: Live, tmp_path: Path, engine: Engine
) -> None:
    world = World(live, tmp_path)
    _chain(world)
    service = _service(live.settings, engine)
    signed = service.sign()
    with engine.begin() as conn:  # an entry edited (with its leaf hash), the checkpoints gone
        row = conn.execute(select(LogEntry).where(LogEntry.idx == 1)).one()
        forged = bytes(row.entry).replace(b'"v":1', b'"v":1,"x":1')
        conn.execute(
            update(LogEntry)
            .where(LogEntry.idx == 1)
            .values(entry=forged, leaf_hash=tlog.leaf_hash(forged))
        )
        conn.execute(delete(LogCosignature))
        conn.execute(delete(LogCheckpoint))
    # Either refusal: no checkpoint left (the stored copy in the blob store is the floor), or
    # one the live server's own signer added meanwhile from its in-memory tree, which still
    # holds the genuine entry and so signs the genuine root: the edited entry matches neither.
    with pytest.raises(
        ConflictError, match=r"refusing to sign a fork|entries were modified in the database"
    ):
        _service(live.settings, engine).sign()
    assert signed.size > 1
    with engine.begin() as conn:  # and nothing signed the edited tree
        roots = {bytes(r) for r in conn.execute(select(LogCheckpoint.root_hash)).scalars()}
    assert roots <= {signed.root_hash}, "a checkpoint of the edited tree was signed"


def test_an_entry_edited_after_the_tree_read_it_is_not_served(
    live: Live, tmp_path: Path, engine: Engine
) -> None:
    world = World(live, tmp_path)
    _chain(world)
    with _http(live) as http:
        assert http.get("/v1/log/entries", params={"start": 0}).status_code == 200
        with engine.begin() as conn:
            row = conn.execute(select(LogEntry).where(LogEntry.idx == 0)).one()
            conn.execute(
                update(LogEntry).where(LogEntry.idx == 0).values(entry=bytes(row.entry) + b" ")
            )
        edited = http.get("/v1/log/entries", params={"start": 0})
        assert edited.status_code == 409 and "modified in the database" in edited.text


def test_two_revocations_of_one_token_at_once_log_it_once(live: Live, engine: Engine) -> None:
    from concurrent.futures import ThreadPoolExecutor

    admin = live.client()
    ids = [admin.create_token(f"t{i}", role="deployer", namespace="ns").id for i in range(8)]
    before = _count(engine)

    def revoke(token_id: str) -> int:
        with _http(live) as http:
            return http.delete(f"/v1/tokens/{token_id}").status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(revoke, [i for i in ids for _ in range(3)]))
    assert set(codes) <= {200, 204}, codes
    revoked = [e for e in _rows(engine, before) if e["type"] == "token"]
    assert sorted(e["subject"] for e in revoked) == sorted(f"token/{i}" for i in ids)


def test_moving_an_alias_where_it_already_points_logs_nothing(
    live: Live, tmp_path: Path, engine: Engine
) -> None:
    world = World(live, tmp_path)
    _chain(world)
    world.releaser.set_alias("fraud", "m", "prod", "1")
    assert _delta(engine, lambda: world.releaser.set_alias("fraud", "m", "prod", "1")) == []


# -- the registry key vouches for the log key ----------------------------------------------------


def _binding_for(signer: KeySigner, origin: str, vkey: str) -> str:
    import hashlib

    from attest.predicates import LOG_KEY
    from attest.statement import make_statement

    statement = make_statement(
        name=f"log:{origin}",
        root_digest=hashlib.sha256(vkey.encode()).hexdigest(),
        predicate_type=LOG_KEY,
        predicate={"origin": origin, "vkey": vkey},
    )
    return signer.sign(statement).raw.decode()


def test_a_deploy_job_with_the_registry_key_anchors_the_log_key_on_it(
    live: Live, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``--registry-key`` nothing is trusted on first use: the log key must come with the
    registry key's signed statement naming it. Another key's statement, or one naming another
    log key, is refused before anything is written."""
    from attest import keys
    from attest.bundle import Bundle
    from attest.verifying import Verifier
    from registry.errors import PullVerificationError
    from registry.sdk.pins import PinStore

    world = World(live, tmp_path)
    _chain(world)
    registry_pem = (live.settings.data_dir / "registry.pub").read_bytes()
    with _http(live) as http:
        served = http.get("/v1/log/key").json()
    verified = Verifier(keys=[keys.TrustedKey.from_pem("registry", registry_pem)]).verify(
        Bundle.parse(served["binding"].encode())
    )
    assert verified.statement.predicate == {"origin": served["origin"], "vkey": served["vkey"]}

    def pull(where: str) -> list[str]:
        client = _deployer(world)
        notices: list[str] = []
        client.on_notice = notices.append
        client.pull("fraud/m@1", tmp_path / where, registry_key=registry_pem,
                    pins=PinStore(tmp_path / f"{where}.pins.json"))  # fmt: skip
        return notices

    assert not [n for n in pull("ok") if "pinned" in n]  # anchored, not trusted on first use
    stranger = KeySigner(keys.generate())
    other_vkey = note.NoteSigner(served["origin"], ed25519.Ed25519PrivateKey.generate())
    for forged in (_binding_for(stranger, served["origin"], served["vkey"]),
                   _binding_for(KeySigner(keys.load_private(live.settings.data_dir
                                                            / "registry.key")),
                                served["origin"], other_vkey.verifier.vkey)):  # fmt: skip
        monkeypatch.setattr(LogService, "key_binding", lambda self, f=forged: f)
        target = f"bad-{len(list(tmp_path.iterdir()))}"
        with pytest.raises(PullVerificationError, match=r"vouch|names another key"):
            pull(target)
        assert not (tmp_path / target).exists()
