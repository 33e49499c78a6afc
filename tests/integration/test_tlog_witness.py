"""Witnesses and monitors of the transparency log (#21 points 5-6, docs/transparency-log.md):
two witnesses (uvicorn threads, and a `modelseal witness serve` process) cosign a live registry's
checkpoints on both backends, refuse what does not extend what they cosigned (bad signature,
inconsistent proof, smaller tree, fork: 409 with their size), keep their state across a
restart; the registry stores only cosignatures that verify and is never held up by a witness
that is down; `modelseal log monitor` prints each event with who made it and refuses a tampered
entry and an inconsistent checkpoint."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import func, select

from attest import keys, note, tlog
from registry.errors import PullVerificationError, ResponseVerificationError
from registry.sdk import monitor as sdk_monitor
from registry.server.config import Settings
from registry.server.db import make_engine, make_sessionmaker
from registry.server.models import LogCosignature, LogEntry
from registry.server.services.tlog import LogService
from registry.server.services.witnesses import WitnessCollector, WitnessEndpoint, WitnessFailure
from registry.server.witness import MAX_BODY, Witness, create_app
from tests.integration.test_release import World
from tests.support import Live, free_port, run_cli, serve

ORIGIN = "modelseal/witness-test"


# -- helpers -------------------------------------------------------------------------------------


def _cosigner(name: str) -> note.NoteSigner:
    return note.NoteSigner(name, ed25519.Ed25519PrivateKey.generate(), note.SIG_COSIGNATURE_V1)


@contextmanager
def _thread_server(app: Any, port: int | None = None) -> Iterator[str]:
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the witness did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _log_key(tmp: Path) -> tuple[Path, note.NoteSigner]:
    private = ed25519.Ed25519PrivateKey.generate()
    path, _pub = keys.write_keypair(tmp / "log", private)
    return path, note.NoteSigner(ORIGIN, private)


@pytest.fixture
def log_key(tmp_path: Path) -> tuple[Path, note.NoteSigner]:
    return _log_key(tmp_path)


def _settings(backend: Settings, log_key_path: Path, witnesses: list[tuple[str, str]]) -> Settings:
    spec = ",".join(f"{url};{vkey}" for url, vkey in witnesses)
    return backend.model_copy(
        update={"log_signing_key": log_key_path, "log_origin": ORIGIN, "log_witnesses": spec}
    )


def _served(live: Live) -> str:
    headers = {"Authorization": f"Bearer {live.admin_token}"}
    response = httpx.get(f"{live.url}/v1/log/checkpoint", headers=headers, timeout=30)
    response.raise_for_status()
    return response.text


def _wait_cosigned(
    live: Live, log: note.NoteSigner, witnesses: list[note.NoteSigner], *, min_size: int = 0
) -> note.SignedCheckpoint:
    """The served checkpoint once it is at least ``min_size`` and cosigned by all ``witnesses``."""
    deadline = time.monotonic() + 40
    while True:
        text = _served(live)
        try:
            signed = note.verify_checkpoint(
                text, [log.verifier], witnesses=[w.verifier for w in witnesses],
                witness_threshold=len(witnesses),
            )  # fmt: skip
            if signed.checkpoint.size >= min_size:
                return signed
        except note.CheckpointError:
            pass
        assert time.monotonic() < deadline, f"not cosigned in time:\n{text}"
        time.sleep(0.2)


def _settled(live: Live) -> None:
    """Wait until the served checkpoint covers every entry appended (signed ~0.5 s after)."""
    engine = make_engine(live.settings.resolved_database_url)
    try:
        with engine.connect() as conn:
            size = int(conn.execute(select(func.count()).select_from(LogEntry)).scalar_one())
    finally:
        engine.dispose()
    deadline = time.monotonic() + 30
    while note.Checkpoint.parse(note.parse_note(_served(live))[0]).size < size:
        assert time.monotonic() < deadline, "the log signed no checkpoint covering its entries"
        time.sleep(0.1)


def log_tree_root(live: Live, size: int) -> bytes:
    """The root of the log's first ``size`` entries, from the database."""
    engine = make_engine(live.settings.resolved_database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(LogEntry.entry).where(LogEntry.idx < size).order_by(LogEntry.idx)
            ).scalars()
            return tlog.root_of([tlog.leaf_hash(bytes(r)) for r in rows])
    finally:
        engine.dispose()


class TwoWitnesses:
    def __init__(self, tmp: Path, log: note.NoteSigner) -> None:
        self.signers = [_cosigner("w1.example"), _cosigner("w2.example")]
        self.witnesses = [Witness(s, [log.verifier], tmp / f"state-{s.name}") for s in self.signers]
        self.ports = [free_port(), free_port()]

    def specs(self) -> list[tuple[str, str]]:
        return [
            (f"http://127.0.0.1:{p}", s.verifier.vkey) for p, s in zip(self.ports, self.signers)
        ]

    @contextmanager
    def running(self) -> Iterator[None]:
        with (
            _thread_server(create_app(self.witnesses[0]), self.ports[0]),
            _thread_server(create_app(self.witnesses[1]), self.ports[1]),
        ):
            yield


# -- the registry collects cosignatures ------------------------------------------------------------


def test_checkpoints_are_cosigned_by_both_witnesses(
    backend: Settings, log_key: tuple[Path, note.NoteSigner], tmp_path: Path
) -> None:
    key_path, log = log_key
    two = TwoWitnesses(tmp_path, log)
    with two.running(), serve(_settings(backend, key_path, two.specs())) as live:
        first = _wait_cosigned(live, log, two.signers)
        assert set(first.cosignatures) == {"w1.example", "w2.example"}
        client = live.client()
        client.create_token("ci", "publisher", "fraud")  # an entry: a new checkpoint
        _settled(live)
        second = _wait_cosigned(live, log, two.signers, min_size=first.checkpoint.size + 1)
        # Each witness kept the newest checkpoint it cosigned, which is the one served.
        for witness in two.witnesses:
            latest = witness.latest(ORIGIN)
            assert latest is not None and latest.size == second.checkpoint.size
        # A client requiring both (k of n = 2 of 2) accepts the served checkpoint; a third,
        # unknown witness cannot be required.
        note.verify_checkpoint(
            _served(live), [log.verifier], witnesses=[s.verifier for s in two.signers],
            witness_threshold=2, max_age=300,
        )  # fmt: skip
        with pytest.raises(note.CheckpointError, match="2 of the 3 required"):
            note.verify_checkpoint(
                _served(live), [log.verifier],
                witnesses=[*(s.verifier for s in two.signers), _cosigner("w3").verifier],
                witness_threshold=3,
            )  # fmt: skip
        # The log monitor requires them too (the CLI's --witness NAME=KEYFILE with vkeys).
        files = []
        for signer in two.signers:
            path = tmp_path / f"{signer.name}.vkey"
            path.write_text(signer.verifier.vkey + "\n")
            files += ["--witness", f"{signer.name}={path}"]
        _wait_cosigned(live, log, two.signers, min_size=second.checkpoint.size)
        done = run_cli("log", "monitor", *files, "--witness-threshold", "2", live=live)
        assert done.returncode == 0, done.stderr
        assert "token ci" in done.stdout


def test_forged_cosignature_is_not_stored(
    backend: Settings, log_key: tuple[Path, note.NoteSigner], tmp_path: Path
) -> None:
    key_path, _log = log_key
    configured = _cosigner("w1.example")
    forger = note.NoteSigner("w1.example", ed25519.Ed25519PrivateKey.generate(),
                             note.SIG_COSIGNATURE_V1)  # fmt: skip
    with serve(_settings(backend, key_path, [])) as live:
        engine = make_engine(live.settings.resolved_database_url)
        try:
            service = LogService(make_sessionmaker(engine), live.settings)
            head = service.sign()

            def answer(signer: note.NoteSigner, *, same_id: bool) -> httpx.MockTransport:
                def handler(request: httpx.Request) -> httpx.Response:
                    _old, _proof, signed = note.parse_add_checkpoint(request.content)
                    text, _ = note.parse_note(signed)
                    line = note.cosign(text, signer)
                    if same_id:  # the forged signature under the configured key's ID
                        raw = base64.b64decode(line.split()[-1])
                        forged = configured.key_id.to_bytes(4, "big") + raw[4:]
                        line = f"— {signer.name} {base64.b64encode(forged).decode()}\n"
                    return httpx.Response(200, text=line)

                return httpx.MockTransport(handler)

            endpoint = WitnessEndpoint("http://fake-witness", configured.verifier)
            for transport, cause in (
                (answer(forger, same_id=True), "does not verify"),
                (answer(forger, same_id=False), "no cosignature line by its key"),
            ):
                collector = WitnessCollector(make_sessionmaker(engine), service, [endpoint],
                                             transport=transport)  # fmt: skip
                with pytest.raises(WitnessFailure, match=cause):
                    collector.submit(endpoint, head)
            with engine.connect() as conn:
                count = conn.execute(select(func.count()).select_from(LogCosignature)).scalar()
            assert count == 0
            # The genuine witness's cosignature is stored, once (idempotent).
            honest = WitnessCollector(make_sessionmaker(engine), service, [endpoint],
                                      transport=answer(configured, same_id=False))  # fmt: skip
            assert honest.submit(endpoint, head) is True
            assert honest.submit(endpoint, head) is False
            served = service.cosigned_note(head)  # what GET /v1/log/checkpoint serves for it
            assert "— w1.example " in served
            witnessed = [configured.verifier]
            note.verify_checkpoint(served, [service.signer().verifier], witnesses=witnessed,
                                   witness_threshold=1)  # fmt: skip
        finally:
            engine.dispose()


def test_a_witness_that_is_down_does_not_block_releases(
    backend: Settings, log_key: tuple[Path, note.NoteSigner], tmp_path: Path
) -> None:
    key_path, log = log_key
    up = _cosigner("up.example")
    down = _cosigner("down.example")
    witness = Witness(up, [log.verifier], tmp_path / "state-up")
    dead_port = free_port()  # nothing listens there
    with _thread_server(create_app(witness)) as url:
        specs = [(url, up.verifier.vkey), (f"http://127.0.0.1:{dead_port}", down.verifier.vkey)]
        with serve(_settings(backend, key_path, specs)) as live:
            world = World(live, tmp_path)
            dataset = world.dataset()
            world.model(deps=[("fraud/tx@3", dataset)])
            started = time.monotonic()
            world.releaser.release("fraud/m@1")
            assert time.monotonic() - started < 30
            signed = _wait_cosigned(live, log, [up], min_size=1)
            assert set(signed.cosignatures) == {"up.example"}
            with pytest.raises(note.CheckpointError, match=r"missing: down\.example"):
                note.verify_checkpoint(_served(live), [log.verifier],
                                       witnesses=[up.verifier, down.verifier],
                                       witness_threshold=2)  # fmt: skip


# -- the witness refuses ---------------------------------------------------------------------------


class FakeLog:
    """A log signed in the test: its tree and checkpoints."""

    def __init__(self, signer: note.NoteSigner) -> None:
        self.signer = signer
        self.tree = tlog.MemoryTree()
        # One time for every checkpoint: a test signs the checkpoint it posted again to check
        # the cosignature, and the clock may have passed a second in between.
        self.stamp = int(time.time())

    def grow(self, count: int) -> None:
        for _ in range(count):
            self.tree.append(os.urandom(16))

    def signed(self, size: int | None = None, *, root: bytes | None = None) -> str:
        size = self.tree.size if size is None else size
        checkpoint = note.Checkpoint(
            self.signer.name, size, root or self.tree.root(size), self.stamp
        )
        return note.sign_checkpoint(checkpoint, self.signer)

    def body(self, old: int, size: int | None = None, **kwargs: Any) -> bytes:
        size = self.tree.size if size is None else size
        proof = self.tree.consistency_proof(old, size) if 0 < old < size else []
        return note.add_checkpoint_body(old, proof, self.signed(size, **kwargs))


def _post(url: str, body: bytes) -> httpx.Response:
    return httpx.post(f"{url}/add-checkpoint", content=body, timeout=30)


def test_the_witness_refuses_what_does_not_extend_its_checkpoint(
    log_key: tuple[Path, note.NoteSigner], tmp_path: Path
) -> None:
    _path, log_signer = log_key
    fake = FakeLog(log_signer)
    me = _cosigner("w1.example")
    witness = Witness(me, [log_signer.verifier], tmp_path / "state")
    with _thread_server(create_app(witness)) as url:
        fake.grow(5)
        ok = _post(url, fake.body(0))
        assert ok.status_code == 200, ok.text
        cosigned = note.verify_checkpoint(fake.signed(5).rstrip("\n") + "\n" + ok.text,
                                          [log_signer.verifier], witnesses=[me.verifier],
                                          witness_threshold=1)  # fmt: skip
        assert cosigned.cosignatures["w1.example"] <= time.time()
        # The same tree again (a re-signed checkpoint): cosigned.
        assert _post(url, fake.body(5)).status_code == 200

        fake.grow(4)
        # A bad log signature: 403.
        other = FakeLog(note.NoteSigner(ORIGIN, ed25519.Ed25519PrivateKey.generate()))
        other.tree = fake.tree
        refused = _post(url, other.body(5))
        assert refused.status_code == 403 and "log's key" in refused.text
        # An inconsistent proof: 422.
        bad = bytearray(fake.body(5))
        proof_at = bad.index(b"\n") + 1
        bad[proof_at : proof_at + 4] = (
            b"AAAA" if bad[proof_at : proof_at + 4] != b"AAAA" else b"BBBB"
        )
        refused = _post(url, bytes(bad))
        assert refused.status_code == 422, refused.text
        # A checkpoint of a forked tree extending the same size: 422 (no proof fits).
        forked = FakeLog(log_signer)
        forked.grow(9)
        proof = forked.tree.consistency_proof(5, 9)
        refused = _post(url, note.add_checkpoint_body(5, proof, forked.signed()))
        assert refused.status_code == 422
        # A smaller tree (a rollback): the old size is the witness's, the checkpoint smaller: 400;
        # claimed from a smaller old size: 409 with the witness's size.
        refused = _post(url, note.add_checkpoint_body(5, [], fake.signed(3)))
        assert refused.status_code == 400 and "larger than" in refused.text
        refused = _post(url, fake.body(3, 3))
        assert refused.status_code == 409
        assert refused.headers["content-type"].startswith("text/x.tlog.size")
        assert refused.text == "5\n"
        # A fork at the same size: 409 with its size.
        refused = _post(url, note.add_checkpoint_body(5, [], fake.signed(5, root=b"\x07" * 32)))
        assert (refused.status_code, refused.text) == (409, "5\n")
        # Nothing of that moved the witness; the real extension is cosigned.
        assert witness.latest(ORIGIN) is not None and witness.latest(ORIGIN).size == 5  # type: ignore[union-attr]
        assert _post(url, fake.body(5)).status_code == 200
        assert witness.latest(ORIGIN).size == 9  # type: ignore[union-attr]

        # Bad input: 4xx with a text, never a 500.
        stranger = ed25519.Ed25519PrivateKey.generate()
        for body, status in (
            (b"", 400),
            (b"old x\n\n", 400),
            (b"old 1\nnot base64!\n\n" + fake.signed().encode(), 400),
            (b"old 9\n\nnot a note\n", 403),
            (b"\xff\xfe" * 10, 400),
            (
                b"old 0\n\n" + FakeLog(note.NoteSigner("other/log", stranger)).signed().encode(),
                404,
            ),
            (b"x" * (MAX_BODY + 1), 413),
        ):
            answer = _post(url, body)
            assert answer.status_code == status, (body[:40], answer.status_code, answer.text)
            assert answer.text.strip()
        assert httpx.get(f"{url}/add-checkpoint").status_code == 405


def test_the_witness_state_survives_a_restart(tmp_path: Path) -> None:
    """`modelseal witness keygen` and `serve` as real processes: after a restart the witness
    still refuses a checkpoint that does not extend the one it cosigned before."""
    _key, log_signer = _log_key(tmp_path)
    fake = FakeLog(log_signer)
    made = run_cli("witness", "keygen", str(tmp_path / "witness"), "--name", "w1.example",
                   cwd=tmp_path)  # fmt: skip
    assert made.returncode == 0, made.stderr
    vkey = made.stdout.strip()
    verifier = note.NoteVerifier.from_vkey(vkey)
    assert verifier.sig_type == note.SIG_COSIGNATURE_V1 and verifier.name == "w1.example"
    assert (tmp_path / "witness.vkey").read_text().strip() == vkey
    assert (tmp_path / "witness.key").stat().st_mode & 0o777 == 0o600
    (tmp_path / "log.vkey").write_text(log_signer.verifier.vkey + "\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    @contextmanager
    def process() -> Iterator[None]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSEAL_")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "registry", "witness", "serve", "--log-vkey",
             str(tmp_path / "log.vkey"), "--key", str(tmp_path / "witness.key"), "--name",
             "w1.example", "--state", str(tmp_path / "state"), "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(url, timeout=1).text.strip() == vkey:
                        break
                except httpx.HTTPError:
                    pass
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
                time.sleep(0.1)
            yield
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)

    fake.grow(7)
    with process():
        answer = _post(url, fake.body(0))
        assert answer.status_code == 200
        note.open_note(fake.signed().rstrip("\n") + "\n" + answer.text, [verifier])
    with process():
        rollback = _post(url, fake.body(0, 4))
        assert (rollback.status_code, rollback.text) == (409, "7\n")
        fake.grow(2)
        assert _post(url, fake.body(7)).status_code == 200
    # A state file that does not verify refuses the start, saying why.
    [state] = (tmp_path / "state").iterdir()
    state.write_text(state.read_text().replace("\n9\n", "\n8\n"))
    refused = run_cli("witness", "serve", "--log-vkey", str(tmp_path / "log.vkey"), "--key",
                      str(tmp_path / "witness.key"), "--name", "w1.example", "--state",
                      str(tmp_path / "state"), "--port", str(port), cwd=tmp_path)  # fmt: skip
    assert refused.returncode == 1 and "stored checkpoint" in refused.stderr


# -- the monitor -----------------------------------------------------------------------------------


def test_log_monitor_prints_each_event_and_refuses_tampering(
    backend: Settings, log_key: tuple[Path, note.NoteSigner], tmp_path: Path
) -> None:
    key_path, log = log_key
    with serve(_settings(backend, key_path, [])) as live:
        world = World(live, tmp_path)
        dataset = world.dataset()
        world.model(deps=[("fraud/tx@3", dataset)])
        world.releaser.release("fraud/m@1")
        world.model("fraud/m@2", deps=[("fraud/tx@3", dataset)], extra={"v2.json": b"{}"})
        world.releaser.release("fraud/m@2")
        world.releaser.set_alias("fraud", "m", "prod", "2")
        world.releaser.set_alias("fraud", "m", "prod", "1")
        world.admin.create_token("ci", "publisher", "fraud")
        _settled(live)
        state = tmp_path / "monitor.json"
        first = run_cli("log", "monitor", "--state", str(state), live=live)
        assert first.returncode == 0, first.stderr
        out = first.stdout
        assert "policy fraud revision 1 by " in out
        assert "release fraud/m@1 by release-bot (releaser) under policy revision 1" in out
        assert "alias move fraud/m@prod: None -> 2 by release-bot" in out
        assert "alias rollback fraud/m@prod: 2 -> 1 by release-bot" in out
        assert "token ci (" in out and "issued: role publisher namespace fraud" in out
        assert "identity training-ci" in out
        saved = json.loads(state.read_text())
        assert saved["url"] == live.url and "— " + ORIGIN in saved["checkpoint"]

        # Only what happened since the state's checkpoint is printed next time.
        world.releaser.revoke("fraud/tx@3", "poisoned")
        _settled(live)
        second = run_cli("log", "monitor", "--state", str(state), live=live)
        assert second.returncode == 0, second.stderr
        lines = second.stdout.splitlines()
        assert len(lines) == 3 and all(" revocation fraud/" in line for line in lines)
        assert "poisoned'" in lines[0] and "cascaded from fraud/tx@3" in second.stdout

        # An inconsistent starting checkpoint (another root at a size seen): refused, exit 1.
        signed = note.verify_checkpoint(_served(live), [log.verifier]).checkpoint
        forged = note.Checkpoint(ORIGIN, signed.size - 1, b"\x01" * 32, signed.timestamp)
        since = tmp_path / "forged.checkpoint"
        since.write_text(note.sign_checkpoint(forged, log))
        before = state.read_text()
        refused = run_cli("log", "monitor", "--since", str(since), "--state", str(state),
                          live=live)  # fmt: skip
        assert refused.returncode == 1 and "rolled back or forked" in refused.stderr
        assert state.read_text() == before
        # A starting checkpoint by another key: refused.
        since.write_text(note.sign_checkpoint(signed, note.NoteSigner(
            ORIGIN, ed25519.Ed25519PrivateKey.generate())))  # fmt: skip
        refused = run_cli("log", "monitor", "--since", str(since), live=live)
        assert refused.returncode == 1 and "pinned log key" in refused.stderr

        # A tampered entry served by the registry (or a mirror): refused, nothing reported.
        client = live.client()
        real = client._request

        def tampering(method: str, path: str, **kwargs: Any) -> httpx.Response:
            response = real(method, path, **kwargs)
            if path == "/v1/log/entries":
                page = response.json()
                entry = json.loads(base64.b64decode(page["entries"][-1]["entry"]))
                entry["actor"] = "someone-else"
                page["entries"][-1]["entry"] = base64.b64encode(json.dumps(entry).encode()).decode()
                return httpx.Response(200, json=page)
            return response

        client._request = tampering  # type: ignore[method-assign]
        seen: list[sdk_monitor.LogEvent] = []
        # From the empty log (the tree rebuilt from every entry) and from a start (each new
        # entry's inclusion proof): refused, and the tampered entry never reported.
        start = note.sign_checkpoint(
            note.Checkpoint(ORIGIN, 2, log_tree_root(live, 2), signed.timestamp), log
        )
        for since, match in ((None, "are not in checkpoint"), (start, "is not in checkpoint")):
            with pytest.raises(ResponseVerificationError, match=match) as caught:
                sdk_monitor.monitor(client, since=since, on_event=seen.append)
            assert not isinstance(caught.value, PullVerificationError)  # a monitor pulls nothing
            assert caught.value.facts.get("cause") == "log-inclusion"
            assert all(e.entry.get("actor") != "someone-else" for e in seen)
        assert seen and all(e.index >= 2 for e in seen)  # the inclusion run's proven entries
