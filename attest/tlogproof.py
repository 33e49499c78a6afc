"""Offline proofs that an entry is in a transparency log (C2SP tlog-proof), and the registry's
statement vouching for its log's key.

A proof (https://c2sp.org/tlog-proof, ``.tlog-proof`` files) is text, lines separated by
newlines::

    c2sp.org/tlog-proof@v1
    extra <base64 of the entry's bytes>
    index <zero-based index, ASCII decimal, no leading zeros>
    <base64 SHA-256 hash>          zero to 63 of them: the RFC 9162 inclusion proof, from the
    …                              leaf's sibling up to the root's child
    <empty line>
    <the signed checkpoint, verbatim, with any witness cosignature lines>

The spec makes ``extra`` optional, opaque and unauthenticated ("additional data necessary to
reconstruct the record hash"). The proofs this project writes always carry it and put there the
log entry itself, its exact bytes: the leaf hash is ``SHA-256(0x00 || extra)``, so the entry is
authenticated by the inclusion proof, never trusted by itself, and a proof is self-contained
(one file per proven entry). :func:`verify_tlog_proof` refuses a proof without it.

Reading (:meth:`TlogProof.parse`) is strict, since a proof is untrusted input: at most
:data:`MAX_PROOF_SIZE` bytes, valid UTF-8, the header exactly, canonical base64 everywhere, an
extra of at most :data:`MAX_EXTRA` bytes, an index within ``[0, 2**63)``, every hash 32 bytes,
at most :data:`MAX_PROOF_HASHES` of them (a tree of 2**63 leaves needs 63), and a checkpoint
that is a syntactically valid signed note (:func:`attest.note.parse_note`). Writing
(:meth:`TlogProof.serialize`) produces exactly what parsing accepts, and back.

Verification (:func:`verify_tlog_proof`), in order:

1. the checkpoint verifies with the log's key and origin (:func:`attest.note.verify_checkpoint`:
   signed by the log, not from the future, cosigned by the required witnesses);
2. the entry (``extra``) is at ``index`` in the checkpoint's tree: the inclusion proof leads from
   its leaf hash to the checkpoint's root (:func:`attest.tlog.verify_inclusion`).

The log key itself is anchored by the registry's key: the registry signs a statement
(:data:`attest.predicates.LOG_KEY`, subject ``log:<origin>`` with the vkey's SHA-256, predicate
``{"origin", "vkey"}``); :func:`vouched_log_key` reads the origin and vkey from such a statement
once its signature verified, refusing one that is not exactly of that shape.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from attest import note, tlog
from attest.errors import MalformedDocumentError, VerificationError
from attest.predicates import LOG_KEY
from attest.statement import Statement

HEADER = "c2sp.org/tlog-proof@v1"
EXTENSION = ".tlog-proof"
#: Hashes in an inclusion proof: at most the height of a tree of 2**63 leaves.
MAX_PROOF_HASHES = 63
#: Bytes of ``extra``: a log entry (entry bundles cap one at 65,535 bytes).
MAX_EXTRA = tlog.MAX_ENTRY_SIZE
_B64_LINE = 4 * ((tlog.HASH_SIZE + 2) // 3)  # 44 characters per hash
#: A whole proof: header, extra, index, hashes, the empty line and the largest signed note.
MAX_PROOF_SIZE = (
    len(HEADER) + 1
    + len("extra ") + 4 * ((MAX_EXTRA + 2) // 3) + 1
    + len("index ") + 19 + 1
    + MAX_PROOF_HASHES * (_B64_LINE + 1)
    + 1
    + note.MAX_NOTE_SIZE
)  # fmt: skip

_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")


class TlogProofError(MalformedDocumentError):
    """Not a tlog-proof as this module reads them (the message names the line and the cause)."""


class LogKeyStatementError(VerificationError):
    """A statement that should vouch for a log key is not of the expected shape."""


def _b64(text: str, what: str) -> bytes:
    """Strict standard base64 (RFC 4648 §4): only its alphabet, padded, canonical."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise TlogProofError(f"{what} is not base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise TlogProofError(f"{what} is not canonical base64")
    return raw


@dataclass(frozen=True, slots=True)
class TlogProof:
    """A C2SP tlog-proof: the entry's ``index``, its inclusion proof ``hashes``, the signed
    ``checkpoint`` note (verbatim) and the optional ``extra`` data (here: the entry's bytes)."""

    index: int
    hashes: tuple[bytes, ...]
    checkpoint: str
    extra: bytes | None = None

    def __post_init__(self) -> None:
        if isinstance(self.index, bool) or not 0 <= self.index <= tlog.MAX_TREE_SIZE:
            raise TlogProofError(f"index {self.index!r} is not in [0, 2**63)")
        if len(self.hashes) > MAX_PROOF_HASHES:
            raise TlogProofError(
                f"{len(self.hashes)} proof hashes, more than the {MAX_PROOF_HASHES} of any tree"
            )
        if any(not isinstance(h, bytes) or len(h) != tlog.HASH_SIZE for h in self.hashes):
            raise TlogProofError(f"every proof hash is {tlog.HASH_SIZE} bytes")
        if self.extra is not None and len(self.extra) > MAX_EXTRA:
            raise TlogProofError(f"extra data of {len(self.extra)} bytes, over {MAX_EXTRA}")

    def serialize(self) -> bytes:
        """The proof's text, as :meth:`parse` reads it back."""
        note.parse_note(self.checkpoint)  # a note that could not be read back is not written
        lines = [HEADER]
        if self.extra is not None:
            lines.append(f"extra {base64.b64encode(self.extra).decode('ascii')}")
        lines.append(f"index {self.index}")
        lines.extend(base64.b64encode(h).decode("ascii") for h in self.hashes)
        data = ("\n".join(lines) + "\n\n" + self.checkpoint).encode("utf-8")
        if len(data) > MAX_PROOF_SIZE:
            raise TlogProofError(f"the proof is {len(data)} bytes, over {MAX_PROOF_SIZE}")
        return data

    @classmethod
    def parse(cls, data: bytes) -> TlogProof:
        """Read a proof strictly (see the module docstring).

        Raises:
            TlogProofError: over a bound, not UTF-8, or a line not of its format (named).
        """
        if len(data) > MAX_PROOF_SIZE:
            raise TlogProofError(f"the proof is {len(data)} bytes, over the {MAX_PROOF_SIZE} limit")
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise TlogProofError("the proof is not UTF-8") from None
        head, blank, checkpoint = text.partition("\n\n")
        if not blank:
            raise TlogProofError("the proof has no empty line before its checkpoint")
        lines = head.split("\n")
        if lines[0] != HEADER:
            raise TlogProofError(f"the first line is {lines[0][:60]!r}, not {HEADER!r}")
        at = 1
        extra: bytes | None = None
        if at < len(lines) and lines[at].startswith("extra "):
            encoded = lines[at][len("extra ") :]
            if len(encoded) > 4 * ((MAX_EXTRA + 2) // 3):
                raise TlogProofError(f"the extra data is over {MAX_EXTRA} bytes")
            extra = _b64(encoded, "the extra line")
            at += 1
        if at >= len(lines) or not lines[at].startswith("index "):
            raise TlogProofError(f"line {at + 1} is not 'index <N>'")
        number = lines[at][len("index ") :]
        if not _DECIMAL.fullmatch(number) or int(number) > tlog.MAX_TREE_SIZE:
            raise TlogProofError(
                f"line {at + 1}: index {number[:40]!r} is not a decimal in [0, 2**63) without "
                "leading zeros"
            )
        hash_lines = lines[at + 1 :]
        if len(hash_lines) > MAX_PROOF_HASHES:
            raise TlogProofError(
                f"{len(hash_lines)} proof lines, more than the {MAX_PROOF_HASHES} of any tree"
            )
        hashes = []
        for offset, line in enumerate(hash_lines, start=at + 2):
            if len(line) != _B64_LINE:
                raise TlogProofError(f"line {offset} is not a base64 SHA-256 hash")
            value = _b64(line, f"line {offset}")
            if len(value) != tlog.HASH_SIZE:
                raise TlogProofError(f"line {offset} is not a {tlog.HASH_SIZE}-byte hash")
            hashes.append(value)
        try:
            note.parse_note(checkpoint)
        except note.MalformedNoteError as exc:
            raise TlogProofError(f"the checkpoint is not a signed note: {exc}") from None
        return cls(int(number), tuple(hashes), checkpoint, extra)


@dataclass(frozen=True, slots=True)
class IncludedEntry:
    """An entry proven at ``index`` in a verified ``checkpoint``."""

    index: int
    entry: bytes
    checkpoint: note.SignedCheckpoint


def verify_tlog_proof(
    proof: TlogProof,
    log_key: note.NoteVerifier,
    *,
    origin: str,
    witnesses: Sequence[note.NoteVerifier] = (),
    witness_threshold: int = 0,
    now: int | None = None,
) -> IncludedEntry:
    """Verify ``proof`` against the log's key and origin (module docstring, steps 1-2); the
    entry is the proof's ``extra``.

    Raises:
        attest.note.NoteError: the checkpoint is malformed, not signed by ``log_key``, of another
            origin, from the future, or short of the witnesses' cosignatures.
        attest.tlog.ProofError: the entry is not at ``index`` in the checkpoint's tree.
        TlogProofError: the proof carries no entry.
    """
    signed = note.verify_checkpoint(
        proof.checkpoint,
        [log_key],
        origin=origin,
        witnesses=witnesses,
        witness_threshold=witness_threshold,
        now=now,
    )
    return check_inclusion(proof, signed)


def check_inclusion(proof: TlogProof, signed: note.SignedCheckpoint) -> IncludedEntry:
    """Step 2 alone: the proof's entry (``extra``) is at its index in ``signed``, which must be
    what :func:`attest.note.verify_checkpoint` returned for this very proof's checkpoint (a
    caller verifying many proofs of one checkpoint verifies it once).

    Raises:
        attest.tlog.ProofError: the inclusion proof does not lead to the checkpoint's root.
        TlogProofError: the proof carries no entry, or ``signed`` is not its checkpoint.
    """
    if signed.note.text != note.parse_note(proof.checkpoint)[0]:
        raise TlogProofError("the verified checkpoint is not the one the proof carries")
    if proof.extra is None:
        raise TlogProofError("the proof carries no entry (no extra line)")
    head = signed.checkpoint
    tlog.verify_inclusion(
        proof.index, head.size, tlog.leaf_hash(proof.extra), proof.hashes, head.root_hash
    )
    return IncludedEntry(proof.index, proof.extra, signed)


def vouched_log_key(statement: Statement) -> tuple[str, str]:
    """The ``(origin, vkey)`` a registry's :data:`~attest.predicates.LOG_KEY` statement vouches
    for. Check the statement's signature (by the registry key the caller trusts) first: this
    reads only its shape, exactly: the predicate type, a predicate of just ``origin`` and
    ``vkey`` (a well-formed note key named as the origin), subject ``log:<origin>`` whose
    sha256 is the vkey's.

    Raises:
        LogKeyStatementError: any of these is not so.
    """
    if statement.predicate_type != LOG_KEY:
        raise LogKeyStatementError(f"the statement is a {statement.predicate_type}, not a log key")
    predicate = statement.predicate
    origin, vkey = predicate.get("origin"), predicate.get("vkey")
    if (
        set(predicate) != {"origin", "vkey"}
        or not isinstance(origin, str)
        or not isinstance(vkey, str)
    ):
        raise LogKeyStatementError("the log key statement does not name just an origin and vkey")
    if len(statement.subjects) != 1:
        raise LogKeyStatementError("the log key statement has several subjects")
    subject = statement.subjects[0]
    if (
        subject.name != f"log:{origin}"
        or subject.sha256 != hashlib.sha256(vkey.encode()).hexdigest()
    ):
        raise LogKeyStatementError(
            f"the log key statement's subject is not log:{origin} with the vkey's sha256"
        )
    try:
        verifier = note.NoteVerifier.from_vkey(vkey)
    except note.NoteError as exc:
        raise LogKeyStatementError(f"the vouched log key is malformed: {exc}") from None
    if verifier.name != origin or verifier.sig_type != note.SIG_ED25519:
        raise LogKeyStatementError(
            f"the vouched log key is named {verifier.name!r} (type 0x{verifier.sig_type:02x}), "
            f"not a note key of the origin {origin!r}"
        )
    return origin, vkey


__all__ = [
    "EXTENSION",
    "HEADER",
    "MAX_EXTRA",
    "MAX_PROOF_HASHES",
    "MAX_PROOF_SIZE",
    "IncludedEntry",
    "LogKeyStatementError",
    "TlogProof",
    "TlogProofError",
    "check_inclusion",
    "verify_tlog_proof",
    "vouched_log_key",
]
