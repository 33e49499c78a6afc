"""attest.note: C2SP signed notes, checkpoints, cosignatures.

Vectors: the C2SP signed-note example (a vkey and the note it verifies), the signed-note
example of Go's checksum database (a private key whose deterministic Ed25519 signature and vkey
must be reproduced exactly), and the C2SP tlog-checkpoint / tlog-cosignature example checkpoint,
whose cosignature line carries the timestamp of the spec's example signed message (no public
key is published for it, so it is read for its structure and refused as unknown).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from attest import keys, note, tlog
from attest.errors import SignatureError, SigningError, UnknownSignerError
from attest.note import (
    SIG_COSIGNATURE_V1,
    Checkpoint,
    CheckpointError,
    CheckpointRollbackError,
    MalformedNoteError,
    NoteSignatureError,
    NoteSigner,
    NoteVerifier,
    UnknownNoteSignerError,
)

SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n\n"
    "— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXm"
    "RKuwHjG1Yu72IneyaQM=\n"
)
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKv"
    "qfqdngotpRZb6KE6RyyBwJnAM=\n"
)
SPEC_CHECKPOINT = (
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n"
    "— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcy"
    "v2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2"
    "oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
)

ORIGIN = "registry.example/log"
NOW = 1_800_000_000


def seeded(name: str, seed: int, sig_type: int = note.SIG_ED25519) -> NoteSigner:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
    return NoteSigner(name, key, sig_type)


LOG = seeded(ORIGIN, 1)
W1 = seeded("witness.example/w1", 2, SIG_COSIGNATURE_V1)
W2 = seeded("witness.example/w2", 3, SIG_COSIGNATURE_V1)


def tree_of(size: int) -> tlog.MemoryTree:
    return tlog.MemoryTree(tlog.leaf_hash(b"event %d" % i) for i in range(size))


def checkpoint(size: int = 10, timestamp: int | None = NOW) -> Checkpoint:
    return Checkpoint(ORIGIN, size, tree_of(size).root(), timestamp)


def noncanonical(b64: str) -> str:
    """The same bytes in base64 with a padding bit set (decoders that do not check accept it)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    data = b64.rstrip("=")
    last = alphabet[alphabet.index(data[-1]) | 1]
    changed = data[:-1] + last + b64[len(data) :]
    assert base64.b64decode(changed) == base64.b64decode(b64) and changed != b64
    return changed


# -- vectors ---------------------------------------------------------------------------------


def test_the_spec_vkey_verifies_the_spec_note() -> None:
    verifier = NoteVerifier.from_vkey(SPEC_VKEY)
    assert verifier.vkey == SPEC_VKEY
    assert verifier.key_id == 0x530D903A
    opened = note.open_note(SPEC_NOTE, [verifier])
    assert opened.text == "This is an example message.\n"
    assert [v.verifier for v in opened.verified] == [verifier]
    with pytest.raises(NoteSignatureError):
        note.open_note(SPEC_NOTE.replace("example message", "example massage"), [verifier])


def test_the_checksum_database_example_is_reproduced_exactly() -> None:
    name, _, material = GO_SKEY.removeprefix("PRIVATE+KEY+").split("+", 2)
    raw = base64.b64decode(material)
    assert raw[0] == note.SIG_ED25519
    signer = NoteSigner(name, ed25519.Ed25519PrivateKey.from_private_bytes(raw[1:]))
    assert signer.verifier.vkey == GO_VKEY
    assert note.sign_note(GO_TEXT, [signer]) == GO_NOTE
    assert note.open_note(GO_NOTE.encode(), [NoteVerifier.from_vkey(GO_VKEY)]).text == GO_TEXT


def test_the_spec_cosigned_checkpoint_reads_as_the_spec_says() -> None:
    text, signatures = note.parse_note(SPEC_CHECKPOINT)
    parsed = Checkpoint.parse(text)
    assert (parsed.origin, parsed.size) == ("example.com/behind-the-sofa", 20852163)
    assert parsed.root_hash == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    witness = signatures[1]
    assert witness.name == "witness.example.com/w1"
    assert len(witness.signature) == 72
    assert int.from_bytes(witness.signature[:8], "big") == 1679315147  # "time 1679315147"
    assert note.cosigned_message(text, 1679315147).decode() == (
        "cosignature/v1\ntime 1679315147\n"
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    )
    with pytest.raises(UnknownNoteSignerError, match="2 unknown") as caught:
        note.open_note(SPEC_CHECKPOINT, [LOG.verifier, W1.verifier])
    assert caught.value.facts["unknown"] == 2
    assert isinstance(caught.value, UnknownSignerError)


# -- notes -----------------------------------------------------------------------------------


def test_sign_and_open_with_several_keys_and_unknown_ones_counted() -> None:
    other = seeded("other.example/k", 9)
    message = note.sign_note("a\n\nb with a blank line above\n", [LOG, other])
    opened = note.open_note(message, [LOG.verifier])
    assert opened.text == "a\n\nb with a blank line above\n"
    assert [v.verifier.name for v in opened.verified] == [ORIGIN]
    assert [s.name for s in opened.unknown] == ["other.example/k"]


def test_a_forged_signature_refuses_the_whole_note() -> None:
    message = note.sign_note("hello\n", [LOG, seeded("other.example/k", 9)])
    text, sigs = note.parse_note(message)
    flipped = bytes([sigs[0].signature[0] ^ 1]) + sigs[0].signature[1:]
    forged = text + "\n" + note.Signature(sigs[0].name, sigs[0].key_id, flipped).line + sigs[1].line
    with pytest.raises(NoteSignatureError, match=f"{ORIGIN}\\+{LOG.key_id:08x} does not verify"):
        note.open_note(forged, [LOG.verifier])
    assert isinstance(NoteSignatureError("x"), SignatureError)
    short = text + "\n" + note.Signature(sigs[0].name, sigs[0].key_id, b"\x00" * 10).line
    with pytest.raises(NoteSignatureError, match="64 bytes"):
        note.open_note(short, [LOG.verifier])
    note.open_note(message, [LOG.verifier])  # the untouched note opens


def test_a_note_by_an_unknown_key_only_is_refused() -> None:
    stranger = seeded(ORIGIN, 7)  # same name, another key: another key ID, so ignored
    message = note.sign_note("hello\n", [stranger])
    with pytest.raises(UnknownNoteSignerError, match="no trusted key"):
        note.open_note(message, [LOG.verifier])
    with pytest.raises(UnknownNoteSignerError):
        note.open_note(message, [])


def test_a_key_id_collision_with_a_trusted_key_is_refused_not_ignored() -> None:
    attacker = seeded("attacker", 8)
    signature = attacker.signature_line("hello\n")
    raw = base64.b64decode(signature.split(" ")[2])[4:]
    claimed = note.Signature(ORIGIN, LOG.key_id, raw)  # the trusted name and ID, another key
    message = "hello\n\n" + LOG.signature_line("hello\n") + claimed.line
    with pytest.raises(NoteSignatureError):
        note.open_note(message, [LOG.verifier])
    with pytest.raises(NoteSignatureError, match="signed twice"):
        note.open_note("hello\n\n" + LOG.signature_line("hello\n") * 2, [LOG.verifier])


def test_two_trusted_keys_with_one_name_and_id_are_a_configuration_error() -> None:
    class Clash(NoteVerifier):
        @property
        def key_id(self) -> int:
            return LOG.key_id

    clash = Clash(ORIGIN, seeded("x", 5).verifier.public_key)
    with pytest.raises(MalformedNoteError, match="two trusted keys"):
        note.open_note(note.sign_note("hi\n", [LOG]), [LOG.verifier, clash])


GOOD = note.sign_note("hello\n", [LOG])
SIG_LINE = GOOD.split("\n")[2]
SIG_B64 = SIG_LINE.split(" ")[2]


@pytest.mark.parametrize(
    ("message", "cause"),
    [
        (GOOD[:-1], "does not end with a newline"),
        ("hello\n" + SIG_LINE + "\n", "no blank line"),
        ("hello\n\n", "no signature lines"),
        (GOOD + "\n", "no signature lines"),
        (GOOD + "trailing\n", "does not start with"),
        (GOOD + "— \n", "not '— <name> <signature>'"),
        (GOOD.replace("— ", "- "), "does not start with"),
        (GOOD.replace("— ", "—"), "does not start with"),
        (GOOD.replace(f"— {ORIGIN} ", f"— {ORIGIN}  "), "not '— <name> <signature>'"),
        (GOOD.replace(f"— {ORIGIN} ", f"— {ORIGIN}+x "), "key name"),
        (GOOD.replace(f"— {ORIGIN} ", "—  "), "key name"),
        (GOOD.replace(f"— {ORIGIN} ", f"— {ORIGIN}\u00a0x "), "key name"),
        (GOOD.replace(SIG_B64, SIG_B64[:-1]), "not base64"),
        (GOOD.replace(SIG_B64, SIG_B64 + "=="), "base64"),
        (GOOD.replace(SIG_B64, noncanonical(SIG_B64)), "not canonical base64"),
        (GOOD.replace(SIG_B64, "AAAAAA=="), "too short"),
        (GOOD.replace("hello", "hel\rlo"), "control character"),
        (GOOD.replace("hello", "hel\tlo"), "control character"),
        (GOOD.replace("hello", "hel\x00lo"), "control character"),
        ("x" * note.MAX_NOTE_SIZE + GOOD, "over the"),
        ("hello\n\n" + (SIG_LINE + "\n") * 65, "over 64"),
    ],
)
def test_malformed_notes_are_refused(message: str, cause: str) -> None:
    with pytest.raises(MalformedNoteError, match=cause):
        note.open_note(message, [LOG.verifier])


def test_invalid_utf8_is_refused() -> None:
    with pytest.raises(MalformedNoteError, match="UTF-8"):
        note.open_note(GOOD.encode().replace(b"hello", b"hel\xfflo"), [LOG.verifier])
    with pytest.raises(MalformedNoteError, match="UTF-8"):
        note.open_note(GOOD.replace("hello", "hel\udcfflo"), [LOG.verifier])


def test_sixteen_signatures_are_accepted() -> None:
    signers = [seeded(f"k{i}.example", 20 + i) for i in range(16)]
    opened = note.open_note(note.sign_note("many\n", signers), [signers[15].verifier])
    assert len(opened.unknown) == 15


def test_signing_refuses_what_it_could_not_open() -> None:
    with pytest.raises(MalformedNoteError):
        note.sign_note("no newline", [LOG])
    with pytest.raises(MalformedNoteError):
        note.sign_note("a\x07\n", [LOG])
    with pytest.raises(SigningError):
        note.sign_note("x\n", [])
    with pytest.raises(SigningError, match="over"):
        note.sign_note("x" * note.MAX_NOTE_SIZE + "\n", [LOG])
    with pytest.raises(MalformedNoteError):
        seeded("bad name", 1)
    with pytest.raises(MalformedNoteError):
        seeded("bad+name", 1)
    with pytest.raises(MalformedNoteError):
        seeded("", 1)


# -- keys ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "vkey",
    [
        SPEC_VKEY.replace("530d903a", "530d903b"),  # another key ID
        SPEC_VKEY.replace("530d903a", "530D903A"),
        SPEC_VKEY.replace("+530d903a", "+530d903"),
        SPEC_VKEY.replace("example.com/foo+", ""),
        SPEC_VKEY + "+x",
        SPEC_VKEY.replace("Aeky", "Aky"),  # not base64 of 33 bytes
        SPEC_VKEY.replace("AekyeRrm", "AukyeRrm"),  # another key: the ID no longer matches
        "example.com/foo+530d903a+AkyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2kA",  # type 0x02
        " example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
    ],
)
def test_malformed_vkeys_are_refused(vkey: str) -> None:
    with pytest.raises(MalformedNoteError):
        NoteVerifier.from_vkey(vkey)


def test_vkeys_round_trip_for_both_types() -> None:
    for signer in (LOG, W1):
        assert NoteVerifier.from_vkey(signer.verifier.vkey) == signer.verifier
    assert base64.b64decode(W1.verifier.vkey.split("+")[2])[0] == 0x04
    assert LOG.verifier.key_id == note.key_id(
        ORIGIN, 0x01, LOG.verifier.public_key.public_bytes_raw()
    )


def test_signers_and_verifiers_from_pem_files(tmp_path: Path) -> None:
    private, public = keys.write_keypair(tmp_path / "log", keys.generate(keys.KeyType.ED25519))
    signer = NoteSigner.from_file(ORIGIN, private)
    verifier = NoteVerifier.from_public_pem(ORIGIN, public.read_bytes())
    assert verifier == signer.verifier
    note.open_note(note.sign_note("pem\n", [signer]), [verifier])
    ecdsa_private, ecdsa_public = keys.write_keypair(tmp_path / "ec", keys.generate())
    with pytest.raises(SigningError, match="Ed25519"):
        NoteSigner.from_file(ORIGIN, ecdsa_private)
    with pytest.raises(MalformedNoteError, match="Ed25519"):
        NoteVerifier.from_public_pem(ORIGIN, ecdsa_public.read_bytes())
    os.chmod(private, 0o644)
    with pytest.raises(SigningError, match="readable by group or others"):
        NoteSigner.from_file(ORIGIN, private)


# -- checkpoints -----------------------------------------------------------------------------


def test_checkpoint_text_round_trip() -> None:
    cp = Checkpoint(ORIGIN, 10, tree_of(10).root(), NOW, ("other extension",))
    text = cp.text()
    assert text.split("\n")[1:5] == ["10", base64.b64encode(cp.root_hash).decode(),
                                     f"timestamp {NOW}", "other extension"]  # fmt: skip
    assert Checkpoint.parse(text) == cp
    empty = Checkpoint(ORIGIN, 0, tlog.EMPTY_ROOT)
    assert Checkpoint.parse(empty.text()) == empty
    assert empty.text().count("\n") == 3


ROOT_B64 = base64.b64encode(tree_of(10).root()).decode()


@pytest.mark.parametrize(
    "text",
    [
        f"{ORIGIN}\n10\n{ROOT_B64}",  # no final newline
        f"{ORIGIN}\n10\n",
        f"\n10\n{ROOT_B64}\n",
        f"{ORIGIN}\n010\n{ROOT_B64}\n",
        f"{ORIGIN}\n-1\n{ROOT_B64}\n",
        f"{ORIGIN}\n+10\n{ROOT_B64}\n",
        f"{ORIGIN}\n1e3\n{ROOT_B64}\n",
        f"{ORIGIN}\n{2**63}\n{ROOT_B64}\n",
        f"{ORIGIN}\n10\n{ROOT_B64[:-4]}\n",
        f"{ORIGIN}\n10\n{noncanonical(ROOT_B64)}\n",
        f"{ORIGIN}\n10\n{ROOT_B64.rstrip('=')}\n",
        f"{ORIGIN}\n10\n{ROOT_B64}\n\n",
        f"{ORIGIN}\n10\n{ROOT_B64}\ntimestamp 1\ntimestamp 2\n",
        f"{ORIGIN}\n10\n{ROOT_B64}\ntimestamp 01\n",
        f"{ORIGIN}\n10\n{ROOT_B64}\ntimestamp \n",
        f"{ORIGIN}\n10\n{ROOT_B64}\ntimestamp -5\n",
        f"{ORIGIN}\n0\n{ROOT_B64}\n",  # size 0 must have the empty tree's root
    ],
)
def test_malformed_checkpoints_are_refused(text: str) -> None:
    with pytest.raises(MalformedNoteError):
        Checkpoint.parse(text)


def test_verify_a_fresh_cosigned_checkpoint() -> None:
    cp = checkpoint()
    signed = note.sign_checkpoint(cp, LOG, [(W1, NOW - 5), (W2, NOW - 1)])
    result = note.verify_checkpoint(
        signed, [LOG.verifier], witnesses=[W1.verifier, W2.verifier], witness_threshold=2,
        max_age=3600, now=NOW + 10,
    )  # fmt: skip
    assert result.checkpoint == cp
    assert result.cosignatures == {W1.name: NOW - 5, W2.name: NOW - 1}
    line = note.cosign(cp.text(), W1, NOW)  # what a witness returns
    assert note.open_note(cp.text() + "\n" + line, [W1.verifier]).verified[0].timestamp == NOW


def test_stale_future_and_untimed_checkpoints_are_refused() -> None:
    signed = note.sign_checkpoint(checkpoint(), LOG)
    with pytest.raises(CheckpointError, match="stale: signed 86401 s ago, over the 86400 s"):
        note.verify_checkpoint(signed, [LOG.verifier], max_age=86400, now=NOW + 86401)
    note.verify_checkpoint(signed, [LOG.verifier], max_age=86400, now=NOW + 86400)
    with pytest.raises(CheckpointError, match="in the future"):
        note.verify_checkpoint(signed, [LOG.verifier], now=NOW - 3600)
    untimed = note.sign_checkpoint(checkpoint(timestamp=None), LOG)
    note.verify_checkpoint(untimed, [LOG.verifier], now=NOW)
    with pytest.raises(CheckpointError, match="no timestamp line"):
        note.verify_checkpoint(untimed, [LOG.verifier], max_age=60, now=NOW)


def test_checkpoints_of_other_logs_or_keys_are_refused() -> None:
    signed = note.sign_checkpoint(checkpoint(), LOG)
    with pytest.raises(CheckpointError, match=r"of log 'registry\.example/log', not 'other'"):
        note.verify_checkpoint(signed, [LOG.verifier], origin="other", now=NOW)
    with pytest.raises(UnknownNoteSignerError):  # a checkpoint signed by an unknown key
        note.verify_checkpoint(signed, [seeded(ORIGIN, 44).verifier], now=NOW)
    cosigned_only = checkpoint().text() + "\n" + note.cosign(checkpoint().text(), W1, NOW)
    with pytest.raises(UnknownNoteSignerError, match="only cosignatures"):
        note.verify_checkpoint(cosigned_only, [LOG.verifier], witnesses=[W1.verifier], now=NOW)
    with pytest.raises(CheckpointError, match="note keys"):
        note.verify_checkpoint(signed, [W1.verifier], now=NOW)
    with pytest.raises(CheckpointError, match="cosignature keys"):
        note.verify_checkpoint(signed, [LOG.verifier], witnesses=[LOG.verifier], now=NOW)


def test_missing_forged_or_misdated_cosignatures_are_refused() -> None:
    cp = checkpoint()
    witnesses = [W1.verifier, W2.verifier]
    one = note.sign_checkpoint(cp, LOG, [(W1, NOW)])
    note.verify_checkpoint(one, [LOG.verifier], witnesses=witnesses, witness_threshold=1, now=NOW)
    with pytest.raises(
        CheckpointError, match=r"1 of the 2 required .*missing: witness\.example/w2"
    ):
        note.verify_checkpoint(
            one, [LOG.verifier], witnesses=witnesses, witness_threshold=2, now=NOW
        )
    line = note.cosign(cp.text(), W2, NOW)
    blob = bytearray(base64.b64decode(line.split(" ")[2]))
    wrong_time = bytes(blob[:4]) + (NOW + 1).to_bytes(8, "big") + bytes(blob[12:])
    misdated = f"— {W2.name} {base64.b64encode(wrong_time).decode()}\n"
    blob[-1] ^= 1
    forged = f"— {W2.name} {base64.b64encode(bytes(blob)).decode()}\n"
    for bad in (misdated, forged):
        with pytest.raises(NoteSignatureError):
            note.verify_checkpoint(one + bad, [LOG.verifier], witnesses=witnesses, now=NOW)
    other_tree = note.cosign(checkpoint(11).text(), W2, NOW)  # a cosignature of another head
    with pytest.raises(NoteSignatureError):
        note.verify_checkpoint(one + other_tree, [LOG.verifier], witnesses=witnesses, now=NOW)
    future = note.sign_checkpoint(cp, LOG, [(W1, NOW + 3600)])
    with pytest.raises(CheckpointError, match=r"cosignature by witness\.example/w1 is dated"):
        note.verify_checkpoint(future, [LOG.verifier], witnesses=witnesses, now=NOW)
    with pytest.raises(CheckpointError, match="3 witnesses required"):
        note.verify_checkpoint(one, [LOG.verifier], witnesses=witnesses, witness_threshold=3)
    with pytest.raises(SigningError):
        note.cosign(cp.text(), LOG, NOW)
    with pytest.raises(SigningError):
        note.sign_checkpoint(cp, W1)
    with pytest.raises(SigningError, match="carries no timestamp"):
        LOG.signature_line(cp.text(), timestamp=NOW)


def test_a_checkpoint_must_extend_the_one_seen_before() -> None:
    tree = tree_of(20)
    old = Checkpoint(ORIGIN, 7, tree.root(7), NOW)
    new = Checkpoint(ORIGIN, 20, tree.root(20), NOW + 60)
    note.check_extends(old, new, tree.consistency_proof(7, 20))
    note.check_extends(old, Checkpoint(ORIGIN, 7, tree.root(7), NOW + 60), [])
    with pytest.raises(CheckpointRollbackError, match=r"size 5 .* is smaller than checkpoint"):
        note.check_extends(old, Checkpoint(ORIGIN, 5, tree.root(5), NOW + 60), [])
    forked = tree_of(6)
    forked.append(b"something else")
    forked.append(b"and more")
    fork = Checkpoint(ORIGIN, 8, forked.root(), NOW + 60)
    with pytest.raises(CheckpointRollbackError, match="does not extend"):
        note.check_extends(old, fork, tree.consistency_proof(7, 8))
    with pytest.raises(CheckpointRollbackError, match="does not extend"):
        note.check_extends(old, fork, forked.consistency_proof(7, 8))
    same_size_fork = Checkpoint(ORIGIN, 7, tree_of(6).root(), NOW + 60)
    with pytest.raises(CheckpointRollbackError, match="same size and different roots"):
        note.check_extends(old, same_size_fork, [])
    with pytest.raises(CheckpointRollbackError, match="is older than"):
        note.check_extends(old, Checkpoint(ORIGIN, 20, tree.root(20), NOW - 1), [])
    with pytest.raises(CheckpointRollbackError, match="another log"):
        note.check_extends(old, Checkpoint("x", 20, tree.root(20), NOW + 60), [])


# -- C2SP tlog-witness add-checkpoint ---------------------------------------------------------


def test_add_checkpoint_bodies() -> None:
    tree = tree_of(20)
    signed = note.sign_checkpoint(Checkpoint(ORIGIN, 20, tree.root(), NOW), LOG)
    proof = tree.consistency_proof(7, 20)
    body = note.add_checkpoint_body(7, proof, signed)
    assert body.startswith(b"old 7\n") and b"\n\n" + signed.encode() in body
    assert note.parse_add_checkpoint(body) == (7, proof, signed)
    assert note.parse_add_checkpoint(note.add_checkpoint_body(0, [], signed)) == (0, [], signed)
    h64 = base64.b64encode(proof[0]).decode()
    for bad in (
        body.replace(b"old 7", b"old 07"),
        body.replace(b"old 7", b"old -7"),
        body.replace(b"old 7", b"new 7"),
        body.replace(b"\n\n", b"\n", 1),
        body.replace(h64.encode(), h64[:-4].encode()),
        b"old 1\n" + (h64 + "\n").encode() * 64 + b"\n" + signed.encode(),
        b"old 1\n\xff\n\n" + signed.encode(),
    ):
        with pytest.raises(MalformedNoteError):
            note.parse_add_checkpoint(bad)


def test_a_vkey_whose_base64_holds_a_plus_parses() -> None:
    """Base64 uses "+"; a vkey is split at the first two only (names hold none)."""
    found = 0
    for _ in range(200):
        signer = NoteSigner(ORIGIN, ed25519.Ed25519PrivateKey.generate())
        vkey = signer.verifier.vkey
        if "+" in vkey.split("+", 2)[2]:
            assert NoteVerifier.from_vkey(vkey) == signer.verifier
            found += 1
    assert found, "no key in 200 had a '+' in its base64"
