"""MODELSEAL_LOG_WITNESSES parsing (docs/transparency-log.md, "Witnesses") and the witness's
request handling without HTTP (the live protocol is in tests/integration/test_tlog_witness.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from pydantic import ValidationError

from attest import note, tlog
from registry.server.config import Settings, witness_specs
from registry.server.witness import Witness, WitnessRefusal


def _cosigner(name: str) -> note.NoteSigner:
    return note.NoteSigner(name, ed25519.Ed25519PrivateKey.generate(), note.SIG_COSIGNATURE_V1)


def test_witness_specs_parse_and_refuse() -> None:
    one, two = _cosigner("w1.example"), _cosigner("w2.example")
    text = (
        f" https://w1.example/;{one.verifier.vkey} ,\nhttp://10.0.0.2:8710/p;{two.verifier.vkey}\n"
    )
    assert witness_specs(text) == [
        ("https://w1.example", one.verifier.vkey),
        ("http://10.0.0.2:8710/p", two.verifier.vkey),
    ]
    assert witness_specs(None) == [] and witness_specs(" , ") == []
    log_key = note.NoteSigner("log", ed25519.Ed25519PrivateKey.generate()).verifier.vkey
    for bad, cause in (
        (one.verifier.vkey, "is not '<http"),
        (f"ftp://x;{one.verifier.vkey}", "is not '<http"),
        ("https://x;not-a-vkey", "is not a vkey"),
        (f"https://x;{log_key}", "not a cosignature key"),
        (f"https://x;{one.verifier.vkey},https://y;{one.verifier.vkey}", "two log witnesses"),
    ):
        with pytest.raises(ValueError, match=cause):
            witness_specs(bad)
    with pytest.raises(ValidationError, match="log witness"):
        Settings(log_witnesses="https://x;nope")


def test_witness_cosigns_extensions_and_keeps_its_state(tmp_path: Path) -> None:
    log = note.NoteSigner("example/log", ed25519.Ed25519PrivateKey.generate())
    me = _cosigner("w1.example")
    tree = tlog.MemoryTree()
    for i in range(6):
        tree.append(b"entry %d" % i)

    def body(old: int, size: int) -> bytes:
        checkpoint = note.Checkpoint(log.name, size, tree.root(size), int(time.time()))
        proof = tree.consistency_proof(old, size) if 0 < old < size else []
        return note.add_checkpoint_body(old, proof, note.sign_checkpoint(checkpoint, log))

    witness = Witness(me, [log.verifier], tmp_path)
    line = witness.add_checkpoint(body(0, 3))
    assert line.startswith("— w1.example ")
    assert witness.add_checkpoint(body(3, 6)).startswith("— w1.example ")
    again = Witness(me, [log.verifier], tmp_path)  # a restart reads what it cosigned
    assert again.latest(log.name) is not None and again.latest(log.name).size == 6  # type: ignore[union-attr]
    with pytest.raises(WitnessRefusal) as refused:
        again.add_checkpoint(body(3, 5))
    assert (refused.value.status, refused.value.size) == (409, 6)
    with pytest.raises(ValueError, match="cosignature key"):
        Witness(log, [log.verifier], tmp_path)
