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


# -- the log after the oldest proven entry: no later event left out ------------------------------

#: ``log/`` file of an export holding every log entry from its oldest proven one up to the
#: checkpoint's size, so a verifier can see that no later event (a revocation) about a proven
#: version was left out.
ENTRIES_FILE = "entries"
ENTRIES_HEADER = "modelseal-log-entries@v1"
#: Largest entries file read (as an export's largest JSON member).
MAX_ENTRIES_SIZE = 256 * 1024 * 1024
_ENTRIES_START = re.compile(rb"start (0|[1-9][0-9]{0,18})\n")


def write_entries(start: int, entries: Sequence[bytes]) -> bytes:
    """The entries file: a header line, ``start N`` (the first entry's index), then each entry
    as a big-endian uint16 length and its exact bytes (as C2SP entry bundles hold them)."""
    out = bytearray(f"{ENTRIES_HEADER}\nstart {start}\n".encode())
    for i, entry in enumerate(entries):
        if len(entry) > tlog.MAX_ENTRY_SIZE:
            raise TlogProofError(f"entry {start + i} is {len(entry)} bytes, over the "
                                 f"{tlog.MAX_ENTRY_SIZE} limit")  # fmt: skip
        out += len(entry).to_bytes(2, "big") + entry
    return bytes(out)


def parse_entries(data: bytes, size: int | None = None) -> tuple[int, list[bytes]]:
    """``(start, entries)`` of an entries file, strictly (untrusted input); with ``size`` (the
    tree size of the checkpoint they belong to) no more than ``size - start`` entries are read,
    so a file of many empty entries cannot make a verifier build a list of millions.

    Raises:
        TlogProofError: too large, another header, a malformed start, a truncated entry, more
            entries than the tree holds after ``start``.
    """
    if len(data) > MAX_ENTRIES_SIZE:
        raise TlogProofError(f"the entries file is over {MAX_ENTRIES_SIZE} bytes")
    header = ENTRIES_HEADER.encode() + b"\n"
    if not data.startswith(header):
        raise TlogProofError(f"the entries file does not start with {ENTRIES_HEADER!r}")
    found = _ENTRIES_START.match(data, len(header))
    if found is None:
        raise TlogProofError("the entries file has no valid 'start N' line")
    start = int(found.group(1))
    if start >= tlog.MAX_TREE_SIZE:
        raise TlogProofError(f"start {start} is beyond any log")
    entries: list[bytes] = []
    at = found.end()
    limit = None if size is None else size - start
    while at < len(data):
        if limit is not None and len(entries) >= limit:
            raise TlogProofError(f"the entries file holds more than the {max(limit, 0)} entries "
                                 f"the checkpoint's tree of {size} has after {start}")  # fmt: skip
        if at + 2 > len(data):
            raise TlogProofError(f"the entries file ends inside entry {start + len(entries)}'s "
                                 "length")  # fmt: skip
        length = int.from_bytes(data[at : at + 2], "big")
        if at + 2 + length > len(data):
            raise TlogProofError(f"entry {start + len(entries)} of the entries file is truncated")
        entries.append(bytes(data[at + 2 : at + 2 + length]))
        at += 2 + length
    return start, entries


def check_suffix(
    first: TlogProof, signed: note.SignedCheckpoint, start: int, entries: Sequence[bytes]
) -> None:
    """``entries`` are the log's entries ``[start, size)`` of ``signed``'s tree, all of them from
    ``first``'s on: ``first`` (a proof of an entry at or after ``start`` in that checkpoint,
    already checked) gives the hashes of the subtrees before its entry, and with the entries
    from it on they rebuild the checkpoint's root (those before it are not judged).

    Raises:
        attest.tlog.ProofError: the entries are not exactly that part of the log.
        TlogProofError: they start after ``first``'s entry or do not reach the tree's size.
    """
    head = signed.checkpoint
    if start > first.index:
        raise TlogProofError(f"the entries start at {start}, after the oldest proven entry "
                             f"{first.index}")  # fmt: skip
    if start + len(entries) != head.size:
        raise TlogProofError(f"entries [{start}, {start + len(entries)}) do not reach the "
                             f"checkpoint's size {head.size}")  # fmt: skip
    # Those before ``first`` (a proof left out) are not needed: its subtrees stand for them.
    prefix = tlog.left_siblings(first.index, head.size, first.hashes)
    if tlog.root_from_prefix(prefix, first.index, entries[first.index - start :]) != head.root_hash:
        raise tlog.ProofError(f"entries [{start}, {head.size}) with the proof's earlier "
                              "subtrees do not rebuild the checkpoint's root: not the log's "
                              "entries, or some left out")  # fmt: skip
