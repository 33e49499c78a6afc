"""Signed notes, log checkpoints and witness cosignatures (C2SP signed-note, tlog-checkpoint,
tlog-cosignature), Ed25519 only.

A signed note is UTF-8 text ending in a newline, a blank line, and one or more signature
lines ``— <key name> <base64(4-byte key ID || signature)>``. Keys are Ed25519 (signature type
0x01, the signature over the note text) for logs, and timestamped Ed25519 cosignatures
(type 0x04, ``8-byte big-endian POSIX time || signature`` over
``cosignature/v1\\ntime <t>\\n`` + the checkpoint text) for witnesses. A key ID is
``SHA-256(name || 0x0A || type || 32-byte public key)[:4]``; a key is written as a vkey,
``<name>+<8 hex digits of the key ID>+<base64(type || public key)>``.

Reading a note (:func:`open_note`) is strict:

* at most :data:`MAX_NOTE_SIZE` bytes and :data:`MAX_SIGNATURES` signature lines (the spec asks
  verifiers to take at least 16); valid UTF-8; no control character but the newline;
* the text is separated from the signatures by the last blank line; every line after it is a
  well-formed signature line (key name non-empty, without spaces or ``+``; canonical base64 of
  more than 4 bytes), and nothing follows the last one's newline;
* a signature whose name and key ID match no known key is ignored but counted; one that matches
  a known key must verify, or the whole note is refused (a key ID collision with a known key
  therefore refuses the note instead of slipping past); the same known key twice is refused;
* at least one known key's signature must verify.

A checkpoint (C2SP tlog-checkpoint) is a note whose text is the origin line, the tree size in
decimal without leading zeros, the base64 root hash, then optional extension lines. This
module's logs add exactly one extension line, ``timestamp <POSIX seconds>`` (ASCII decimal, no
leading zeros, at most 2**63-1), the time the log signed the checkpoint: logs re-sign their
checkpoint periodically even when no entry arrived, so a client that requires a checkpoint no
older than its freshness window detects a log (or a mirror) that serves it a frozen view.
Witness cosignatures carry their own timestamps, which :func:`verify_checkpoint` also checks.
Checkpoints from logs that do not add the line parse with ``timestamp`` ``None``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from attest import keys, tlog
from attest.errors import (
    AttestError,
    MalformedDocumentError,
    SignatureError,
    SigningError,
    UnknownSignerError,
    VerificationError,
)

SIG_ED25519 = 0x01  # C2SP signed-note: Ed25519 over the note text
SIG_COSIGNATURE_V1 = 0x04  # C2SP tlog-cosignature: timestamped Ed25519 cosignature

MAX_NOTE_SIZE = 64 * 1024  # bytes of a whole signed note
MAX_SIGNATURES = 64  # signature lines in one note (C2SP signed-note: accept at least 16)
MAX_TIMESTAMP = (1 << 63) - 1
COSIGNATURE_HEADER = "cosignature/v1\n"
TIMESTAMP_PREFIX = "timestamp "  # this module's checkpoint extension line
DEFAULT_MAX_FUTURE_SKEW = 60  # seconds a signed time may be ahead of the verifier's clock

_DASH = "\u2014 "
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


class NoteError(AttestError):
    """Base class of the errors of this module."""


class MalformedNoteError(NoteError, MalformedDocumentError):
    """A note, vkey, checkpoint or cosignature is not in its format (or over a size limit)."""


class NoteSignatureError(NoteError, SignatureError):
    """A signature line that names a known key does not verify with that key."""


class UnknownNoteSignerError(NoteError, UnknownSignerError):
    """No signature by a known key (``facts["unknown"]``: how many lines were ignored)."""


class CheckpointError(NoteError, VerificationError):
    """A checkpoint is of another log, stale, from the future, or lacks witness cosignatures."""


class CheckpointRollbackError(CheckpointError):
    """A checkpoint does not extend one seen before: smaller, forked, or inconsistent."""


# -- keys ----------------------------------------------------------------------------------------


def check_key_name(name: str) -> None:
    """C2SP signed-note: non-empty, no Unicode space, no ``+`` (and no control character)."""
    if not name or any(c.isspace() or c == "+" or ord(c) < 0x20 for c in name):
        raise MalformedNoteError(f"key name {name[:80]!r}: non-empty, without spaces or '+'")


def key_id(name: str, sig_type: int, public_key: bytes) -> int:
    """``SHA-256(name || 0x0A || type || public key)[:4]`` as a big-endian uint32."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def _raw_public(key: ed25519.Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _b64decode(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise MalformedNoteError(f"{what} is not base64") from None
    if base64.b64encode(raw).decode() != text:
        raise MalformedNoteError(f"{what} is not canonical base64")
    return raw


@dataclass(frozen=True, slots=True)
class NoteVerifier:
    """A named Ed25519 public key of one signature type (0x01 note, 0x04 cosignature)."""

    name: str
    public_key: ed25519.Ed25519PublicKey
    sig_type: int = SIG_ED25519

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if self.sig_type not in (SIG_ED25519, SIG_COSIGNATURE_V1):
            raise MalformedNoteError(f"signature type 0x{self.sig_type:02x} is not supported")

    @property
    def key_id(self) -> int:
        return key_id(self.name, self.sig_type, _raw_public(self.public_key))

    @property
    def vkey(self) -> str:
        material = base64.b64encode(bytes([self.sig_type]) + _raw_public(self.public_key))
        return f"{self.name}+{self.key_id:08x}+{material.decode()}"

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Parse ``<name>+<hex key ID>+<base64(type || key)>``; the key ID must be the one the
        name, type and key give.

        Raises:
            MalformedNoteError: not a vkey, an unsupported type, or a key ID that does not match.
        """
        parts = vkey.split("+", 2)  # a name holds no "+"; base64 may
        if len(parts) != 3 or not re.fullmatch(r"[0-9a-f]{8}", parts[1]):
            raise MalformedNoteError(f"{vkey[:120]!r} is not a vkey (<name>+<8 hex>+<base64>)")
        name, hex_id, material = parts
        raw = _b64decode(material, f"the key of vkey {name!r}")
        if len(raw) != 33:
            raise MalformedNoteError(f"vkey {name!r}: expected a type byte and 32-byte Ed25519 key")
        verifier = cls(name, ed25519.Ed25519PublicKey.from_public_bytes(raw[1:]), raw[0])
        if verifier.key_id != int(hex_id, 16):
            raise MalformedNoteError(
                f"vkey {name!r}: key ID {hex_id} does not match its name and key "
                f"({verifier.key_id:08x})"
            )
        return verifier

    @classmethod
    def from_public_pem(cls, name: str, pem: bytes, sig_type: int = SIG_ED25519) -> NoteVerifier:
        """An Ed25519 SubjectPublicKeyInfo PEM (as ``modelseal keygen --type ed25519`` writes)."""
        try:
            key = keys.load_public(pem)
        except ValueError as exc:
            raise MalformedNoteError(f"key {name!r}: {exc}") from exc
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise MalformedNoteError(f"key {name!r}: signed notes need an Ed25519 key")
        return cls(name, key, sig_type)

    def _verify(self, text: str, signature: bytes) -> int | None:
        """Check ``signature`` (without the key ID) on ``text``; returns the cosignature's
        timestamp (``None`` for type 0x01). Raises ``InvalidSignature`` or ``ValueError``."""
        if self.sig_type == SIG_ED25519:
            if len(signature) != 64:
                raise ValueError("an Ed25519 signature is 64 bytes")
            self.public_key.verify(signature, text.encode())
            return None
        if len(signature) != 72:
            raise ValueError("a cosignature is an 8-byte timestamp and a 64-byte signature")
        timestamp = int.from_bytes(signature[:8], "big")
        if timestamp > MAX_TIMESTAMP:
            raise ValueError(f"cosignature timestamp {timestamp} exceeds 2**63-1")
        self.public_key.verify(signature[8:], cosigned_message(text, timestamp))
        return timestamp


class NoteSigner:
    """A named Ed25519 private key that signs notes (type 0x01) or cosigns checkpoints (0x04)."""

    def __init__(
        self, name: str, private_key: ed25519.Ed25519PrivateKey, sig_type: int = SIG_ED25519
    ) -> None:
        if not isinstance(private_key, ed25519.Ed25519PrivateKey):
            raise SigningError(f"note signer {name!r}: signed notes need an Ed25519 key")
        self._key = private_key
        self.verifier = NoteVerifier(name, private_key.public_key(), sig_type)

    @classmethod
    def from_file(
        cls, name: str, path: Path, password: bytes | None = None, sig_type: int = SIG_ED25519
    ) -> NoteSigner:
        """An Ed25519 PEM private key file, loaded (and its permissions checked) as every
        signing key is (:meth:`attest.signing.KeySigner.from_file`).

        Raises:
            SigningError: unreadable, readable by others, or not Ed25519.
        """
        from attest.signing import KeySigner

        key = KeySigner.from_file(path, password).private_key
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise SigningError(f"{path}: signed notes need an Ed25519 key (keygen --type ed25519)")
        return cls(name, key, sig_type)

    @property
    def name(self) -> str:
        return self.verifier.name

    @property
    def key_id(self) -> int:
        return self.verifier.key_id

    def signature_line(self, text: str, *, timestamp: int | None = None) -> str:
        """The signature line of this key over ``text`` (a note text, or for a cosigner the
        checkpoint text, cosigned as of ``timestamp``, default now)."""
        _check_text(text)
        if self.verifier.sig_type == SIG_ED25519:
            if timestamp is not None:
                raise SigningError("a note signature (type 0x01) carries no timestamp")
            raw = self._key.sign(text.encode())
        else:
            when = int(time.time()) if timestamp is None else timestamp
            if not 0 <= when <= MAX_TIMESTAMP:
                raise SigningError(f"cosignature timestamp {when} is out of range")
            raw = when.to_bytes(8, "big") + self._key.sign(cosigned_message(text, when))
        blob = self.key_id.to_bytes(4, "big") + raw
        return f"{_DASH}{self.name} {base64.b64encode(blob).decode()}\n"


def cosigned_message(checkpoint_text: str, timestamp: int) -> bytes:
    """What a cosignature/v1 signs (C2SP tlog-cosignature): a header line, a time line, and
    the checkpoint's text with its extension lines."""
    return f"{COSIGNATURE_HEADER}time {timestamp}\n{checkpoint_text}".encode()


# -- notes ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Signature:
    """One signature line: the key's name and ID, and the signature bytes after the ID."""

    name: str
    key_id: int
    signature: bytes

    @property
    def line(self) -> str:
        blob = self.key_id.to_bytes(4, "big") + self.signature
        return f"{_DASH}{self.name} {base64.b64encode(blob).decode()}\n"


@dataclass(frozen=True, slots=True)
class VerifiedSignature:
    """A signature that verified with a known key; ``timestamp`` for cosignatures."""

    verifier: NoteVerifier
    timestamp: int | None = None


@dataclass(frozen=True, slots=True)
class Note:
    """A verified note: its text, the signatures that verified, the lines ignored as unknown."""

    text: str
    verified: tuple[VerifiedSignature, ...]
    unknown: tuple[Signature, ...] = field(default=())


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise MalformedNoteError("a note text must end with a newline")
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise MalformedNoteError("a note must not contain control characters other than newline")


def sign_note(text: str, signers: Sequence[NoteSigner]) -> str:
    """The signed note: ``text`` (ending in a newline), a blank line, one line per signer."""
    if not signers:
        raise SigningError("a signed note needs at least one signature")
    _check_text(text)
    note = text + "\n" + "".join(s.signature_line(text) for s in signers)
    if len(note.encode()) > MAX_NOTE_SIZE:
        raise SigningError(f"the signed note is over {MAX_NOTE_SIZE} bytes")
    return note


def parse_note(message: bytes | str) -> tuple[str, list[Signature]]:
    """Split a signed note into its text and signature lines, checking only the syntax.

    Raises:
        MalformedNoteError: any rule of the format broken (see the module docstring).
    """
    if isinstance(message, str):
        try:
            data = message.encode()
        except UnicodeEncodeError:
            raise MalformedNoteError("the note is not valid UTF-8") from None
    else:
        data = bytes(message)
    if len(data) > MAX_NOTE_SIZE:
        raise MalformedNoteError(f"the note is {len(data)} bytes, over the {MAX_NOTE_SIZE} limit")
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedNoteError("the note is not valid UTF-8") from None
    if any(ord(c) < 0x20 and c != "\n" for c in decoded):
        raise MalformedNoteError("the note contains a control character other than newline")
    if not decoded.endswith("\n"):
        raise MalformedNoteError("the note does not end with a newline")
    split = decoded.rfind("\n\n")
    if split < 0:
        raise MalformedNoteError("the note has no blank line before its signatures")
    text, block = decoded[: split + 1], decoded[split + 2 :]
    lines = block.split("\n")[:-1]  # the block ends with a newline
    if not lines:
        raise MalformedNoteError("the note has no signature lines")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNoteError(f"the note has {len(lines)} signatures, over {MAX_SIGNATURES}")
    signatures = []
    for number, line in enumerate(lines, 1):
        if not line.startswith(_DASH):
            raise MalformedNoteError(f"signature line {number} does not start with '— '")
        name, space, encoded = line[len(_DASH) :].partition(" ")
        if not space or " " in encoded:
            raise MalformedNoteError(f"signature line {number} is not '— <name> <signature>'")
        check_key_name(name)
        blob = _b64decode(encoded, f"signature line {number}")
        if len(blob) < 5:
            raise MalformedNoteError(f"signature line {number} is too short")
        signatures.append(Signature(name, int.from_bytes(blob[:4], "big"), blob[4:]))
    return text, signatures


def open_note(message: bytes | str, verifiers: Iterable[NoteVerifier]) -> Note:
    """Parse and verify a signed note against the keys the caller trusts.

    Raises:
        MalformedNoteError: the note is malformed, or two trusted keys share a name and ID.
        NoteSignatureError: a line names a trusted key and does not verify with it, or the same
            trusted key signed twice.
        UnknownNoteSignerError: no signature by a trusted key.
    """
    text, signatures = parse_note(message)
    known: dict[tuple[str, int], NoteVerifier] = {}
    for verifier in verifiers:
        slot = (verifier.name, verifier.key_id)
        if slot in known and known[slot] != verifier:
            raise MalformedNoteError(f"two trusted keys are named {verifier.name!r} with one ID")
        known[slot] = verifier
    verified: list[VerifiedSignature] = []
    unknown: list[Signature] = []
    seen: set[tuple[str, int]] = set()
    for sig in signatures:
        slot = (sig.name, sig.key_id)
        match = known.get(slot)
        if match is None:
            unknown.append(sig)
            continue
        if slot in seen:
            raise NoteSignatureError(f"the note is signed twice by key {sig.name}+{sig.key_id:08x}")
        seen.add(slot)
        try:
            timestamp = match._verify(text, sig.signature)
        except (InvalidSignature, ValueError) as exc:
            detail = f" ({exc})" if isinstance(exc, ValueError) else ""
            raise NoteSignatureError(
                f"the signature by {sig.name}+{sig.key_id:08x} does not verify{detail}",
                key=match.vkey,
            ) from None
        verified.append(VerifiedSignature(match, timestamp))
    if not verified:
        names = sorted({s.name for s in unknown})
        raise UnknownNoteSignerError(
            f"the note is signed by no trusted key ({len(unknown)} unknown signature(s)"
            + (f": {', '.join(names[:5])})" if names else ")"),
            unknown=len(unknown),
        )
    return Note(text, tuple(verified), tuple(unknown))


# -- checkpoints ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tree head (C2SP tlog-checkpoint), with this module's ``timestamp`` extension line."""

    origin: str
    size: int
    root_hash: bytes
    timestamp: int | None = None
    extensions: tuple[str, ...] = ()  # other extension lines, kept in order

    def __post_init__(self) -> None:
        if not self.origin or any(ord(c) < 0x20 for c in self.origin):
            raise MalformedNoteError("a checkpoint origin is a non-empty line")
        if isinstance(self.size, bool) or not 0 <= self.size <= tlog.MAX_TREE_SIZE:
            raise MalformedNoteError(f"checkpoint tree size {self.size!r} is out of range")
        if len(self.root_hash) != tlog.HASH_SIZE:
            raise MalformedNoteError("a checkpoint root hash is 32 bytes")
        if self.size == 0 and self.root_hash != tlog.EMPTY_ROOT:
            raise MalformedNoteError("a checkpoint of size 0 has the empty tree's root hash")
        if self.timestamp is not None and not 0 <= self.timestamp <= MAX_TIMESTAMP:
            raise MalformedNoteError(f"checkpoint timestamp {self.timestamp} is out of range")
        for line in self.extensions:
            if not line or any(ord(c) < 0x20 for c in line):
                raise MalformedNoteError("checkpoint extension lines are non-empty lines")
            if line.startswith(TIMESTAMP_PREFIX):
                raise MalformedNoteError("the timestamp goes in Checkpoint.timestamp")

    def text(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode()]
        if self.timestamp is not None:
            lines.append(f"{TIMESTAMP_PREFIX}{self.timestamp}")
        lines.extend(self.extensions)
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Read a checkpoint's note text strictly (decimal size without leading zeros,
        canonical base64 of 32 bytes, at most one ``timestamp`` line, no empty lines).

        Raises:
            MalformedNoteError: not a checkpoint.
        """
        if not text.endswith("\n"):
            raise MalformedNoteError("a checkpoint text ends with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise MalformedNoteError("a checkpoint has an origin, a size and a root hash line")
        origin, size, root, *rest = lines
        if not origin:
            raise MalformedNoteError("the checkpoint origin line is empty")
        if not _DECIMAL.fullmatch(size) or len(size) > 19 or int(size) > tlog.MAX_TREE_SIZE:
            raise MalformedNoteError(f"checkpoint tree size {size[:40]!r} is not a decimal size")
        root_hash = _b64decode(root, "the checkpoint root hash")
        if len(root_hash) != tlog.HASH_SIZE:
            raise MalformedNoteError("the checkpoint root hash is not 32 bytes")
        timestamp: int | None = None
        extensions = []
        for line in rest:
            if not line:
                raise MalformedNoteError("a checkpoint extension line is empty")
            if line.startswith(TIMESTAMP_PREFIX):
                value = line[len(TIMESTAMP_PREFIX) :]
                if timestamp is not None:
                    raise MalformedNoteError("the checkpoint has two timestamp lines")
                if not _DECIMAL.fullmatch(value) or len(value) > 19:
                    raise MalformedNoteError(f"checkpoint timestamp {value[:40]!r} is malformed")
                timestamp = int(value)
            else:
                extensions.append(line)
        return cls(origin, int(size), root_hash, timestamp, tuple(extensions))

    def describe(self) -> str:
        when = "" if self.timestamp is None else f", signed at {self.timestamp}"
        return f"{self.origin} size {self.size} root {self.root_hash.hex()[:16]}…{when}"


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A checkpoint that verified, with the note it came in and its witnesses' cosignatures
    (witness name -> cosignature timestamp)."""

    checkpoint: Checkpoint
    note: Note
    cosignatures: dict[str, int]


def sign_checkpoint(
    checkpoint: Checkpoint, log: NoteSigner, cosigners: Sequence[tuple[NoteSigner, int]] = ()
) -> str:
    """The signed checkpoint: the log's signature and, for each ``(cosigner, timestamp)``,
    a cosignature line."""
    if log.verifier.sig_type != SIG_ED25519:
        raise SigningError("a log signs its checkpoints with a note key (type 0x01)")
    text = checkpoint.text()
    lines = [log.signature_line(text)]
    for signer, timestamp in cosigners:
        if signer.verifier.sig_type != SIG_COSIGNATURE_V1:
            raise SigningError(f"{signer.name} is not a cosigner key (type 0x04)")
        lines.append(signer.signature_line(text, timestamp=timestamp))
    return text + "\n" + "".join(lines)


def cosign(checkpoint_text: str, cosigner: NoteSigner, timestamp: int | None = None) -> str:
    """A witness's cosignature line over a checkpoint text (C2SP tlog-cosignature)."""
    if cosigner.verifier.sig_type != SIG_COSIGNATURE_V1:
        raise SigningError(f"{cosigner.name} is not a cosigner key (type 0x04)")
    Checkpoint.parse(checkpoint_text)
    return cosigner.signature_line(checkpoint_text, timestamp=timestamp)


def verify_checkpoint(
    message: bytes | str,
    log_keys: Sequence[NoteVerifier],
    *,
    origin: str | None = None,
    witnesses: Sequence[NoteVerifier] = (),
    witness_threshold: int = 0,
    max_age: int | None = None,
    now: int | None = None,
    max_future_skew: int = DEFAULT_MAX_FUTURE_SKEW,
) -> SignedCheckpoint:
    """Verify a signed checkpoint: signed by one of ``log_keys`` (witness cosignatures alone do
    not count), of the log ``origin`` (default: the first log key's name), no older than
    ``max_age`` seconds by its timestamp line (required when ``max_age`` is given) and not
    signed in the future, and cosigned by at least ``witness_threshold`` distinct ``witnesses``
    (type 0x04 keys) whose timestamps are not in the future either.

    Raises:
        MalformedNoteError, NoteSignatureError, UnknownNoteSignerError: see :func:`open_note`.
        CheckpointError: another origin, stale, from the future, too few cosignatures.
    """
    if not log_keys:
        raise CheckpointError("no log key to verify the checkpoint with")
    if any(k.sig_type != SIG_ED25519 for k in log_keys):
        raise CheckpointError("log keys are note keys (type 0x01)")
    if any(w.sig_type != SIG_COSIGNATURE_V1 for w in witnesses):
        raise CheckpointError("witness keys are cosignature keys (type 0x04)")
    named: dict[bytes, str] = {}
    for w in witnesses:  # a cosignature does not sign the key's name: one key, one witness
        other = named.setdefault(_raw_public(w.public_key), w.name)
        if other != w.name:
            raise CheckpointError(f"witnesses {other} and {w.name} have the same key: one party "
                                  "cannot count as two cosigners")  # fmt: skip
    if witness_threshold > len({w.name for w in witnesses}):
        raise CheckpointError(
            f"{witness_threshold} witnesses required, but only {len(witnesses)} are configured"
        )
    note = open_note(message, [*log_keys, *witnesses])
    by_log = [v for v in note.verified if v.verifier.sig_type == SIG_ED25519]
    if not by_log:
        raise UnknownNoteSignerError(
            "the checkpoint is not signed by the log's key (only cosignatures verified)",
            unknown=len(note.unknown),
        )
    checkpoint = Checkpoint.parse(note.text)
    expected = log_keys[0].name if origin is None else origin
    if checkpoint.origin != expected:
        raise CheckpointError(f"the checkpoint is of log {checkpoint.origin!r}, not {expected!r}")
    clock = int(time.time()) if now is None else now
    if checkpoint.timestamp is not None and checkpoint.timestamp > clock + max_future_skew:
        raise CheckpointError(
            f"checkpoint {checkpoint.describe()} is signed {checkpoint.timestamp - clock} s "
            "in the future"
        )
    if max_age is not None:
        if checkpoint.timestamp is None:
            raise CheckpointError(f"checkpoint {checkpoint.describe()} has no timestamp line")
        age = clock - checkpoint.timestamp
        if age > max_age:
            raise CheckpointError(
                f"checkpoint {checkpoint.describe()} is stale: signed {age} s ago, "
                f"over the {max_age} s limit",
                age=age,
            )
    cosignatures: dict[str, int] = {}
    for v in note.verified:
        if v.verifier.sig_type == SIG_COSIGNATURE_V1 and v.timestamp is not None:
            if v.timestamp > clock + max_future_skew:
                raise CheckpointError(
                    f"the cosignature by {v.verifier.name} is dated {v.timestamp - clock} s "
                    "in the future"
                )
            cosignatures[v.verifier.name] = max(v.timestamp, cosignatures.get(v.verifier.name, 0))
    if len(cosignatures) < witness_threshold:
        missing = sorted({w.name for w in witnesses} - set(cosignatures))
        raise CheckpointError(
            f"checkpoint {checkpoint.describe()} has {len(cosignatures)} of the "
            f"{witness_threshold} required witness cosignatures (missing: {', '.join(missing)})"
        )
    return SignedCheckpoint(checkpoint, note, cosignatures)


def check_extends(old: Checkpoint, new: Checkpoint, proof: Sequence[bytes]) -> None:
    """Raise :class:`CheckpointRollbackError` unless ``new`` extends ``old`` (a checkpoint of
    the same log seen before): not smaller, not a fork at the same size, the consistency proof
    verifies, and not signed earlier than ``old`` (a replayed older signature).
    """
    theirs = f"checkpoint {new.describe()}"
    ours = f"checkpoint {old.describe()} seen before"
    if old.origin != new.origin:
        raise CheckpointRollbackError(f"{theirs} is of another log than {ours}")
    if new.size < old.size:
        raise CheckpointRollbackError(
            f"{theirs} is smaller than {ours}: the log went back", old=old.size, new=new.size
        )
    if old.timestamp is not None and (new.timestamp is None or new.timestamp < old.timestamp):
        raise CheckpointRollbackError(f"{theirs} is older than {ours}")
    try:
        tlog.verify_consistency(old.size, new.size, old.root_hash, new.root_hash, proof)
    except tlog.ProofError as exc:
        raise CheckpointRollbackError(f"{theirs} does not extend {ours}: {exc}") from None


# -- C2SP tlog-witness add-checkpoint ------------------------------------------------------------


def add_checkpoint_body(old_size: int, proof: Sequence[bytes], signed_checkpoint: str) -> bytes:
    """The body of a C2SP tlog-witness ``add-checkpoint`` request."""
    if len(proof) > 63:
        raise SigningError("a consistency proof for a witness has at most 63 hashes")
    lines = [f"old {old_size}\n", *(base64.b64encode(h).decode() + "\n" for h in proof), "\n"]
    return ("".join(lines) + signed_checkpoint).encode()


def parse_add_checkpoint(body: bytes) -> tuple[int, list[bytes], str]:
    """Read an ``add-checkpoint`` body: the old size, the consistency proof, the signed
    checkpoint (still to be verified).

    Raises:
        MalformedNoteError: not such a body.
    """
    if len(body) > MAX_NOTE_SIZE + 64 * 46:
        raise MalformedNoteError("the add-checkpoint body is too large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedNoteError("the add-checkpoint body is not UTF-8") from None
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise MalformedNoteError("the add-checkpoint body has no blank line before the note")
    first, *hashes = head.split("\n")
    if not first.startswith("old ") or not _DECIMAL.fullmatch(first[4:]) or len(first) > 23:
        raise MalformedNoteError("the add-checkpoint body does not start with 'old <size>'")
    if len(hashes) > 63:
        raise MalformedNoteError("the add-checkpoint body has more than 63 proof lines")
    proof = []
    for i, line in enumerate(hashes):
        value = _b64decode(line, f"proof line {i}")
        if len(value) != tlog.HASH_SIZE:
            raise MalformedNoteError(f"proof line {i} is not a 32-byte hash")
        proof.append(value)
    return int(first[4:]), proof, note
