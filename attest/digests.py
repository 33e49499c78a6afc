"""The one digest language of modelseal: per-file SHA-256 and the OMS root digest of a file set.

The identity of an artifact version is the digest that an OpenSSF Model Signing (OMS) signature of
the same files puts in its subject (``model-signing`` 1.1, ``files`` serialization, sha256): SHA-256
over the concatenation of the raw 32-byte SHA-256 digests of the files, ordered by their relative
POSIX path compared component by component (``pathlib.PurePosixPath`` order, which is what
``model-signing`` sorts by: ``a/b`` sorts before ``a-b`` and ``a.b``, unlike plain string
order). The registry, the signatures and ``model_signing verify`` agree
on it because they all compute exactly this.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from attest.errors import InvalidDigestError

#: Top-level paths OMS signing ignores by default (``ignore_git_paths=True``); pushes skip them.
OMS_IGNORE_PATHS: tuple[str, ...] = (".git", ".gitattributes", ".github", ".gitignore")

#: Read size for hashing files; large reads keep the per-call overhead negligible.
HASH_BUFFER_SIZE = 8 * 1024 * 1024

_HEX64 = re.compile(r"[0-9a-f]{64}")


class Digest(str):
    """A SHA-256 digest, in the two forms modelseal writes it.

    The value (``str(d)``, ``f"{d}"``, equality, hashing, JSON) is the 64 lowercase hex digits:
    the form of the database, the storage keys and in-toto subjects (``{"sha256": hex}``).
    :attr:`prefixed` is ``sha256:<hex>``: the form of the HTTP API, OCI, OMS and messages.
    Constructing one checks the form, so a ``Digest`` in hand is well formed; a plain ``str``
    may be either form (or neither), which is why fields that hold a digest are typed ``Digest``.

    Raises (on construction):
        InvalidDigestError: not 64 lowercase hex digits (:meth:`parse`: not ``sha256:`` + those).
    """

    __slots__ = ()

    def __new__(cls, hex_digits: str) -> Digest:
        if type(hex_digits) is cls:
            return hex_digits
        if not isinstance(hex_digits, str) or _HEX64.fullmatch(hex_digits) is None:
            raise InvalidDigestError(str(hex_digits), expected="64 lowercase hex digits")
        return super().__new__(cls, hex_digits)

    @classmethod
    def parse(cls, text: str) -> Digest:
        """The digest written ``sha256:<hex>`` (the API's form)."""
        return parse_sha256(text)

    @classmethod
    def of(cls, data: bytes) -> Digest:
        """The SHA-256 of ``data``."""
        return cls(hashlib.sha256(data).hexdigest())

    @property
    def hex(self) -> str:
        """The 64 hex digits as a plain ``str``."""
        return str.__str__(self)

    @property
    def prefixed(self) -> str:
        """``sha256:<hex>``."""
        return "sha256:" + self.hex

    def __repr__(self) -> str:
        return f"Digest({self.prefixed!r})"


@dataclass(frozen=True, slots=True)
class FileDigest:
    """One file of an artifact version: relative POSIX path, size in bytes, SHA-256."""

    path: str
    size: int
    sha256: Digest

    def __post_init__(self) -> None:
        # A caller's hex str becomes a Digest (checked): every FileDigest holds a well-formed one.
        if type(self.sha256) is not Digest:
            object.__setattr__(self, "sha256", Digest(self.sha256))


def parse_sha256(value: str) -> Digest:
    """The digest written ``sha256:<hex>``.

    Raises:
        InvalidDigestError: the value is not ``sha256:`` followed by 64 lowercase hex digits.
    """
    algo, sep, hexpart = value.partition(":")
    if algo != "sha256" or not sep or _HEX64.fullmatch(hexpart) is None:
        raise InvalidDigestError(value)
    return Digest(hexpart)


def is_sha256_hex(value: str) -> bool:
    """Whether ``value`` is 64 lowercase hex digits."""
    return _HEX64.fullmatch(value) is not None


def oms_order(item: FileDigest) -> list[str]:
    """Sort key of a file in an OMS manifest: its path components."""
    return item.path.split("/")


def root_digest(files: Iterable[FileDigest]) -> Digest:
    """The OMS root digest of a set of files.

    Raises:
        InvalidDigestError: a file digest is not 64 lowercase hex digits.
        ValueError: the set is empty or names a path twice.
    """
    ordered = sorted(files, key=oms_order)
    if not ordered:
        raise ValueError("a file set needs at least one file")
    outer = hashlib.sha256()
    previous: str | None = None
    for item in ordered:
        if item.path == previous:
            raise ValueError(f"path {item.path!r} appears twice")
        previous = item.path
        if not is_sha256_hex(item.sha256):
            raise InvalidDigestError(item.sha256, expected="64 lowercase hex digits")
        outer.update(bytes.fromhex(item.sha256))
    return Digest(outer.hexdigest())


def sha256_file(path: Path, *, buffer_size: int = HASH_BUFFER_SIZE) -> tuple[Digest, int]:
    """Stream a file through SHA-256 with a fixed-size buffer; return ``(digest, size)``."""
    digest = hashlib.sha256()
    size = 0
    buffer = bytearray(buffer_size)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as handle:
        while True:
            read = handle.readinto(view)
            if not read:
                break
            digest.update(view[:read])
            size += read
    return Digest(digest.hexdigest()), size


def manifest_digest(files: Iterable[FileDigest]) -> Digest:
    """SHA-256 hex of the canonical JSON list ``[[path, size, sha256], …]`` sorted by path.

    Unlike the root digest, this commits to the paths and sizes too; a release attestation
    carries it so a client can check the file list it is about to fetch.
    """
    import json

    rows = sorted([f.path, f.size, f.sha256] for f in files)
    return Digest.of(json.dumps(rows, separators=(",", ":")).encode())
