"""attest.tlogproof: C2SP tlog-proof files (read strictly: they are untrusted input, part of an
evidence export), their verification against a log key, and the registry's statement vouching
for a log key.

The spec's example proof (https://c2sp.org/tlog-proof) is read with the spec's example cosigned
checkpoint (C2SP tlog-cosignature) in place of its elided one; real proofs are built from an
in-memory tree and a checkpoint signed with a real Ed25519 key."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from attest import note, tlog
from attest.errors import UnknownSignerError
from attest.predicates import LOG_KEY, RELEASE
from attest.statement import Statement, Subject, make_statement
from attest.tlogproof import (
    HEADER,
    MAX_EXTRA,
    MAX_PROOF_HASHES,
    MAX_PROOF_SIZE,
    LogKeyStatementError,
    TlogProof,
    TlogProofError,
    check_inclusion,
    parse_entries,
    verify_tlog_proof,
    vouched_log_key,
    write_entries,
)
from tests.unit.attest.test_note import SPEC_CHECKPOINT, noncanonical, seeded

ORIGIN = "registry.example/log"
NOW = 1_800_000_000
LOG = seeded(ORIGIN, 11)
W1 = seeded("witness.example/w1", 12, note.SIG_COSIGNATURE_V1)

SPEC_HEAD = (
    "c2sp.org/tlog-proof@v1\n"
    "extra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ\n"
    "index 73894\n"
    "gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=\n"
    "B95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=\n"
    "EKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs=\n"
    "RoopEkOdqkYqMB4MJXrbt/hMjOxsVn0IrWjpz1ZMMes=\n"
    "AHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=\n"
)


def entries(size: int) -> list[bytes]:
    return [json.dumps({"subject": f"ns/m@{i}", "type": "release"}).encode() for i in range(size)]


def proof_of(index: int, size: int = 13, *, cosigners: int = 0) -> TlogProof:
    """A real proof of entry ``index`` in a tree of ``size`` entries, checkpoint signed by LOG
    (and cosigned by W1 when asked)."""
    data = entries(size)
    tree = tlog.MemoryTree(tlog.leaf_hash(e) for e in data)
    checkpoint = note.Checkpoint(ORIGIN, size, tree.root(), NOW)
    signed = note.sign_checkpoint(checkpoint, LOG, [(W1, NOW)] if cosigners else [])
    return TlogProof(index, tuple(tree.inclusion_proof(index)), signed, data[index])


# -- the format ----------------------------------------------------------------------------------


def test_the_spec_example_reads_as_the_spec_says() -> None:
    proof = TlogProof.parse((SPEC_HEAD + "\n" + SPEC_CHECKPOINT).encode())
    assert proof.index == 73894
    assert proof.extra is not None and proof.extra.startswith(b"age-v1.2.1-darwin-arm64.tar.gz")
    assert len(proof.hashes) == 5 and proof.hashes[0] == base64.b64decode(
        "gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ="
    )
    assert proof.checkpoint == SPEC_CHECKPOINT
    assert proof.serialize() == (SPEC_HEAD + "\n" + SPEC_CHECKPOINT).encode()


def test_a_proof_round_trips_and_is_laid_out_as_the_spec_says() -> None:
    proof = proof_of(5)
    data = proof.serialize()
    lines = data.decode().split("\n")
    assert lines[0] == HEADER
    assert lines[1] == "extra " + base64.b64encode(entries(13)[5]).decode()
    assert lines[2] == "index 5"
    assert [base64.b64decode(x) for x in lines[3 : 3 + len(proof.hashes)]] == list(proof.hashes)
    assert lines[3 + len(proof.hashes)] == ""
    assert data.endswith(proof.checkpoint.encode())
    assert TlogProof.parse(data) == proof
    bare = TlogProof(0, (), proof_of(0, 1).checkpoint)  # no extra, no hashes: a tree of one
    assert bare.serialize().decode().split("\n")[:3] == [HEADER, "index 0", ""]
    assert TlogProof.parse(bare.serialize()) == bare


def test_every_proof_of_a_tree_verifies_and_names_its_entry() -> None:
    for index in range(13):
        included = verify_tlog_proof(proof_of(index), LOG.verifier, origin=ORIGIN, now=NOW)
        assert included.index == index and included.entry == entries(13)[index]
        assert included.checkpoint.checkpoint.size == 13


def _with_head(head: str, checkpoint: str | None = None) -> bytes:
    return (head + "\n" + (checkpoint or proof_of(0).checkpoint)).encode()


HASH = base64.b64encode(bytes(32)).decode()


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "no empty line"),
        (_with_head(f"{HEADER}\nindex 0\n").replace(b"\n\n", b"\n"), "no empty line"),
        (_with_head("c2sp.org/tlog-proof@v2\nindex 0\n"), "first line"),
        (_with_head(f"{HEADER} \nindex 0\n"), "first line"),
        (_with_head(f"{HEADER}\r\nindex 0\n"), "first line"),
        (_with_head(f"{HEADER}\nindex 01\n"), "leading zeros"),
        (_with_head(f"{HEADER}\nindex -1\n"), "not a decimal"),
        (_with_head(f"{HEADER}\nindex +1\n"), "not a decimal"),
        (_with_head(f"{HEADER}\nindex 9223372036854775808\n"), "2\\*\\*63"),
        (_with_head(f"{HEADER}\nindex 99999999999999999999\n"), "not a decimal"),
        (_with_head(f"{HEADER}\nindex 1\u0661\n"), "not a decimal"),  # a non-ASCII digit
        (_with_head(f"{HEADER}\nindex\n"), "not 'index <N>'"),
        (_with_head(f"{HEADER}\n"), "not 'index <N>'"),
        (_with_head(f"{HEADER}\nindex 3\nextra AAAA\n"), "line 3 is not a base64"),
        (_with_head(f"{HEADER}\nextra AAAA\nextra AAAA\nindex 3\n"), "not 'index <N>'"),
        (_with_head(f"{HEADER}\nextra !!!!\nindex 3\n"), "extra line is not base64"),
        (_with_head(f"{HEADER}\nextra {noncanonical('AAE=')}\nindex 3\n"), "not canonical"),
        (_with_head(f"{HEADER}\nindex 3\n{HASH[:-2]}\n"), "line 3 is not a base64 SHA-256"),
        (_with_head(f"{HEADER}\nindex 3\n{HASH}=\n"), "line 3 is not a base64 SHA-256"),
        (_with_head(f"{HEADER}\nindex 3\n{'*' * 43}=\n"), "line 3 is not base64"),
        (_with_head(f"{HEADER}\nindex 3\n{noncanonical(HASH)}\n"), "line 3 is not canonical"),
        (_with_head(f"{HEADER}\nindex 3\n{base64.b64encode(bytes(31)).decode()}\n"), "32-byte"),
        (_with_head(f"{HEADER}\nindex 3\n{HASH}\n {HASH[1:]}\n"), "line 4 is not base64"),
        (_with_head(f"{HEADER}\nindex 3\n" + f"{HASH}\n" * (MAX_PROOF_HASHES + 1)), "more than"),
        (_with_head(f"{HEADER}\nindex 3\n", "not a note\n"), "not a signed note"),
        (_with_head(f"{HEADER}\nindex 3\n", "x\n\n\u2014 k AAAAAAA=\n\u0000"), "not a signed"),
        (_with_head(f"{HEADER}\nindex 3\n") + b"\xff", "not UTF-8"),
        (b"x" * (MAX_PROOF_SIZE + 1), "over the"),
    ],
    ids=["empty", "no-blank-line", "v2", "header-space", "crlf", "leading-zero", "negative",
         "plus", "index-2**63", "index-20-digits", "index-unicode-digit", "index-missing-number",
         "no-index", "extra-after-index", "two-extras", "extra-not-base64", "extra-noncanonical",
         "hash-short-line", "hash-long-line", "hash-bad-alphabet", "hash-noncanonical",
         "hash-31-bytes", "hash-leading-space", "64-hashes", "checkpoint-not-a-note",
         "checkpoint-nul", "not-utf8", "oversize"],
)  # fmt: skip
def test_a_malformed_proof_is_refused_naming_why(data: bytes, why: str) -> None:
    with pytest.raises(TlogProofError, match=why):
        TlogProof.parse(data)


def test_the_bounds_hold_on_both_sides() -> None:
    big = TlogProof(0, (), proof_of(0).checkpoint, b"x" * MAX_EXTRA)
    assert TlogProof.parse(big.serialize()) == big  # the largest entry a log holds fits
    with pytest.raises(TlogProofError, match="over"):
        TlogProof(0, (), proof_of(0).checkpoint, b"x" * (MAX_EXTRA + 1))
    over = ("extra " + base64.b64encode(b"x" * (MAX_EXTRA + 3)).decode()).encode()
    with pytest.raises(TlogProofError, match="extra data is over"):
        TlogProof.parse(HEADER.encode() + b"\n" + over + b"\nindex 0\n\n" + b"x\n")
    with pytest.raises(TlogProofError, match="more than"):
        TlogProof(0, (bytes(32),) * (MAX_PROOF_HASHES + 1), proof_of(0).checkpoint)
    deepest = TlogProof(0, (bytes(32),) * MAX_PROOF_HASHES, proof_of(0).checkpoint)
    assert TlogProof.parse(deepest.serialize()) == deepest
    for index in (-1, tlog.MAX_TREE_SIZE + 1, True):
        with pytest.raises(TlogProofError, match="index"):
            TlogProof(index, (), proof_of(0).checkpoint)
    with pytest.raises(TlogProofError, match="32 bytes"):
        TlogProof(0, (bytes(31),), proof_of(0).checkpoint)
    with pytest.raises(note.MalformedNoteError):
        TlogProof(0, (), "not a note").serialize()


# -- verification --------------------------------------------------------------------------------


def test_a_changed_entry_hash_or_index_does_not_verify() -> None:
    good = proof_of(6)
    assert good.extra is not None
    changed = good.extra.replace(b"ns/m@6", b"ns/m@7")
    for bad in (
        TlogProof(6, good.hashes, good.checkpoint, changed),
        TlogProof(6, (bytes(32), *good.hashes[1:]), good.checkpoint, good.extra),
        TlogProof(7, good.hashes, good.checkpoint, good.extra),
        TlogProof(6, good.hashes[:-1], good.checkpoint, good.extra),
        TlogProof(13, good.hashes, good.checkpoint, good.extra),
    ):
        with pytest.raises(tlog.ProofError):
            verify_tlog_proof(bad, LOG.verifier, origin=ORIGIN, now=NOW)
    with pytest.raises(TlogProofError, match="no entry"):
        verify_tlog_proof(TlogProof(6, good.hashes, good.checkpoint), LOG.verifier, origin=ORIGIN,
                          now=NOW)  # fmt: skip


def test_the_checkpoint_must_be_the_log_keys_of_its_origin_and_cosigned_as_required() -> None:
    proof = proof_of(2)
    other = note.NoteSigner(ORIGIN, ed25519.Ed25519PrivateKey.generate())
    with pytest.raises(UnknownSignerError):
        verify_tlog_proof(proof, other.verifier, origin=ORIGIN, now=NOW)
    with pytest.raises(note.CheckpointError, match="not 'elsewhere/log'"):
        verify_tlog_proof(proof, LOG.verifier, origin="elsewhere/log", now=NOW)
    with pytest.raises(note.CheckpointError, match="in the future"):
        verify_tlog_proof(proof, LOG.verifier, origin=ORIGIN, now=NOW - 3600)
    with pytest.raises(note.CheckpointError, match="0 of the 1 required"):
        verify_tlog_proof(proof, LOG.verifier, origin=ORIGIN, witnesses=[W1.verifier],
                          witness_threshold=1, now=NOW)  # fmt: skip
    cosigned = proof_of(2, cosigners=1)
    included = verify_tlog_proof(cosigned, LOG.verifier, origin=ORIGIN, witnesses=[W1.verifier],
                                 witness_threshold=1, now=NOW)  # fmt: skip
    assert included.checkpoint.cosignatures == {W1.name: NOW}
    forged = cosigned.checkpoint.rsplit("\u2014 ", 1)[0] + W1.signature_line(
        "another text\n", timestamp=NOW
    )
    with pytest.raises(note.NoteSignatureError, match="does not verify"):
        verify_tlog_proof(
            TlogProof(2, cosigned.hashes, forged, cosigned.extra),
            LOG.verifier,
            origin=ORIGIN,
            witnesses=[W1.verifier],
            witness_threshold=1,
            now=NOW,
        )


def test_check_inclusion_takes_only_the_proofs_own_checkpoint() -> None:
    proof, other = proof_of(1), proof_of(1, size=12)
    signed = note.verify_checkpoint(other.checkpoint, [LOG.verifier], now=NOW)
    with pytest.raises(TlogProofError, match="not the one the proof carries"):
        check_inclusion(proof, signed)
    assert check_inclusion(other, signed).index == 1


# -- the registry's statement about its log key --------------------------------------------------


def log_key_statement(
    origin: str = ORIGIN,
    vkey: str | None = None,
    *,
    subjects: tuple[Subject, ...] | None = None,
    predicate_type: str = LOG_KEY,
    predicate: dict[str, object] | None = None,
) -> Statement:
    """The statement a registry signs about its log key, or one with a part changed."""
    vkey = LOG.verifier.vkey if vkey is None else vkey
    statement = make_statement(
        name=f"log:{origin}",
        root_digest=hashlib.sha256(vkey.encode()).hexdigest(),
        predicate_type=LOG_KEY,
        predicate={"origin": origin, "vkey": vkey},
    )
    return Statement(
        statement.subjects if subjects is None else subjects,
        predicate_type,
        statement.predicate if predicate is None else predicate,
    )


def test_the_log_key_statement_is_read_exactly() -> None:
    assert vouched_log_key(log_key_statement()) == (ORIGIN, LOG.verifier.vkey)
    vkey = LOG.verifier.vkey
    digest = hashlib.sha256(vkey.encode()).hexdigest()
    bad = [
        log_key_statement(predicate_type=RELEASE),
        log_key_statement(predicate={"origin": ORIGIN, "vkey": vkey, "extra": 1}),
        log_key_statement(predicate={"origin": ORIGIN}),
        log_key_statement(predicate={"origin": ORIGIN, "vkey": 5}),
        log_key_statement(subjects=(Subject("log:elsewhere", digest),)),
        log_key_statement(subjects=(Subject(f"log:{ORIGIN}", "0" * 64),)),
        log_key_statement(subjects=(Subject(f"log:{ORIGIN}", digest),) * 2),
        log_key_statement(vkey="not a vkey"),
        log_key_statement(origin="elsewhere/log"),  # the vkey is named for another origin
        log_key_statement(vkey=W1.verifier.vkey, origin=W1.name),  # a cosignature key
    ]
    for statement in bad:
        with pytest.raises(LogKeyStatementError):
            vouched_log_key(statement)


# -- the entries after the oldest proven one ---------------------------------------------------


def _leaves(n: int) -> list[bytes]:
    return [f'{{"i":{i}}}'.encode() for i in range(n)]


@pytest.mark.parametrize("size", [*range(1, 40), 255, 256, 257, 1000])
def test_a_proofs_left_hashes_and_the_later_entries_rebuild_the_root(size: int) -> None:
    leaves = _leaves(size)
    tree = tlog.MemoryTree(tlog.leaf_hash(e) for e in leaves)
    for index in sorted({0, 1, size // 2, size - 2, size - 1} & set(range(size))):
        prefix = tlog.left_siblings(index, size, tree.inclusion_proof(index))
        assert tlog.root_from_prefix(prefix, index, leaves[index:]) == tree.root()
        if index < size - 1:  # one later entry left out, or changed: another root
            assert tlog.root_from_prefix(prefix, index, leaves[index:-1]) != tree.root()
            changed = [*leaves[index:-1], b"{}"]
            assert tlog.root_from_prefix(prefix, index, changed) != tree.root()


def test_left_hashes_of_a_misshapen_proof_are_refused() -> None:
    tree = tlog.MemoryTree(tlog.leaf_hash(e) for e in _leaves(13))
    proof = tree.inclusion_proof(5)
    with pytest.raises(tlog.ProofError):
        tlog.left_siblings(5, 13, proof[:-1])
    with pytest.raises(tlog.ProofError):
        tlog.left_siblings(13, 13, proof)
    with pytest.raises(tlog.LogRequestError):
        tlog.root_from_prefix([], 5, _leaves(3))


def test_the_entries_file_round_trips_and_is_read_strictly() -> None:
    entries = [b"", b"x" * 300, b'{"a":1}']
    data = write_entries(7, entries)
    assert parse_entries(data) == (7, entries)
    for bad in (
        b"",
        b"other-header\nstart 0\n",
        data.replace(b"start 7", b"start 07"),
        data.replace(b"start 7", b"start -1"),
        data.replace(b"start 7", b"start 9223372036854775807"),
        data[:-1],  # truncated entry
        data + b"\x00",  # a length cut short
    ):
        with pytest.raises(TlogProofError):
            parse_entries(bad)
    with pytest.raises(TlogProofError):
        write_entries(0, [b"x" * (tlog.MAX_ENTRY_SIZE + 1)])
    # more entries than the checkpoint's tree has after start: refused while reading
    assert parse_entries(data, size=10) == (7, entries)
    many = write_entries(7, [b""] * 100_000)
    with pytest.raises(TlogProofError, match="more than the 3 entries"):
        parse_entries(many, size=10)
    with pytest.raises(TlogProofError, match="more than the 0 entries"):
        parse_entries(data, size=5)


def test_two_versions_never_share_a_proof_file_name() -> None:
    from attest.evidence import log_proof_name

    assert log_proof_name("a.b/c@1") != log_proof_name("a/b.c@1")
    assert log_proof_name("fraud/m@1") == "fraud@m@1.tlog-proof"
    assert "/" not in log_proof_name("a/b@v1.0+x")


def test_one_witness_key_under_two_names_counts_once() -> None:
    """A cosignature signs the checkpoint and a time, not the witness's name: the same key named
    twice would let one cosignature line, copied under the second name, meet a threshold of 2."""
    twin = seeded("witness.example/w1-again", 12, note.SIG_COSIGNATURE_V1)  # W1's key
    text = note.Checkpoint(ORIGIN, 1, tlog.leaf_hash(b"x"), NOW).text()
    signed = note.sign_checkpoint(note.Checkpoint(ORIGIN, 1, tlog.leaf_hash(b"x"), NOW), LOG)
    both = signed + note.cosign(text, W1, NOW) + note.cosign(text, twin, NOW)
    with pytest.raises(note.CheckpointError, match="have the same key"):
        note.verify_checkpoint(
            both, [LOG.verifier], origin=ORIGIN, now=NOW,
            witnesses=[W1.verifier, twin.verifier], witness_threshold=2,
        )  # fmt: skip
