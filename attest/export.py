"""Writing an evidence export, and packing it into one archive and back.

:mod:`attest.evidence` reads and verifies an export (its docstring gives the layout); this module
writes one. The command line (``modelseal export``, over the HTTP API) and the web console's
download (over the server's services, with the signed-in token's rights) both call
:func:`write_export` with a :class:`Source`, so the two write the same files from the same
facts. What a source cannot read with its caller's rights is left out, never guessed: a version
it may not read is not in ``versions.json`` (verification then names the broken link), and an
export without the audit log says why in ``manifest.json`` (verification fails closed on it).
For the transparency log's part (``log/``) each exported version's newest status event is found
first, then the newest checkpoint is read once and every proof is asked against it, so all the
proofs of an export share one checkpoint.

:func:`pack` writes an export directory as a gzip'd tar (one top directory, regular files only,
owner and times fixed, so the same export packs to the same bytes); :func:`unpack` reads one back
for ``modelseal verify-evidence ARCHIVE`` and refuses anything but plain files and directories
inside that one directory (no links, devices, absolute or ``..`` names, duplicates), with bounds
on member count, name length and bytes written.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import posixpath
import shutil
import tarfile
import uuid
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

import yaml

from attest.bundle import Bundle
from attest.errors import AttestError
from attest.evidence import (
    FORMAT,
    LOG_DIR,
    LOG_KEY_FILE,
    LOG_VKEY_FILE,
    MAX_JSON,
    audit_target,
    is_about,
    log_proof_name,
)
from attest.gate import MAX_DEPTH
from attest.note import Checkpoint, parse_note
from attest.predicates import OMS_SIGNATURE, RELEASE, SLSA_PROVENANCE
from attest.provenance import read_predicate
from attest.tlogproof import ENTRIES_FILE, TlogProof, write_entries

#: ``manifest.json`` ``audit`` when ``audit/`` holds the log; otherwise it says why not.
AUDIT_INCLUDED = "included"
AUDIT_FORBIDDEN = "not readable with the exporting token (auditor or admin only)"

#: Bounds on an archive read back: members, one name, one member's bytes, all bytes written (an
#: export without files is bundles and JSON: kilobytes to a few megabytes).
MAX_MEMBERS = 100_000
MAX_NAME = 1024
MAX_MEMBER = MAX_JSON
MAX_UNPACKED = 2 * MAX_JSON


class ExportError(AttestError):
    """An export could not be written, or an archive is not one :func:`pack` could write."""


@dataclass(frozen=True, slots=True)
class ExportedFile:
    path: str
    size: int
    sha256: str  # "sha256:<hex>", as the API and versions.json write digests
    uri: str | None = None


@dataclass(frozen=True, slots=True)
class ExportedVersion:
    """A version as the registry states it (``versions.json``: input, checked against what the
    release signs)."""

    namespace: str
    name: str
    version: str
    kind: str
    state: str
    root_digest: str
    external: bool
    pushed_by: str
    files: tuple[ExportedFile, ...]

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}@{self.version}"

    def entry(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "kind": self.kind,
            "root_digest": self.root_digest,
            "state": self.state,
            "external": self.external,
            "pushed_by": self.pushed_by,
            "files": [
                {
                    "path": f.path,
                    "size": f.size,
                    "sha256": f.sha256,
                    **({"uri": f.uri} if f.uri else {}),
                }
                for f in self.files
            ],
        }


@dataclass(frozen=True, slots=True)
class ExportedBundle:
    id: int
    predicate_type: str
    raw: bytes


@dataclass(frozen=True, slots=True)
class ExportedLogKey:
    """The transparency log's origin and note key (vkey), and ``binding``: the registry-signed
    bundle of the :data:`~attest.predicates.LOG_KEY` statement naming exactly them."""

    origin: str
    vkey: str
    binding: bytes


@dataclass(frozen=True, slots=True)
class ExportedLogEntry:
    """A version's newest status event in the log (its release or revocation): the entry's
    index and exact bytes."""

    index: int
    entry: bytes


class Source(Protocol):
    """What an export is written from, with the rights of whoever asked for it."""

    @property
    def registry(self) -> str:
        """The registry's address, recorded in ``manifest.json`` (for the reader only)."""
        ...

    def version(self, ref: str) -> ExportedVersion | None:
        """The version ``ref`` names; None when it is unknown or the caller may not read it."""
        ...

    def bundles(self, ref: str) -> list[ExportedBundle]:
        """Every attestation of the exact version ``ref``, in the order attached."""
        ...

    def policy(self, namespace: str, revision: int | None) -> str | None:
        """A policy revision's text (None: the one in force); None if absent or unreadable."""
        ...

    def identities(self) -> list[Mapping[str, Any]]:
        """The registered identities: ``name`` with ``key_pem``, or with ``issuer``,
        ``identity`` and ``regex`` for a Sigstore identity."""
        ...

    def audit_entries(self) -> list[dict[str, Any]] | None:
        """The whole audit log, oldest first; None when the caller may not read it."""
        ...

    def latest_checkpoint(self) -> bytes | None:
        """The newest registry-signed audit checkpoint (a bundle), if any."""
        ...

    def sign_checkpoint(self) -> bool:
        """Sign a checkpoint of the log's head now; False when the caller may not."""
        ...

    def log_key(self) -> ExportedLogKey | None:
        """The transparency log's key and the registry's statement vouching for it; None when
        the registry serves none."""
        ...

    def log_status(self, ref: str) -> ExportedLogEntry | None:
        """The newest status event (release or revocation) of the exact version ``ref`` in the
        transparency log, covered by a signed checkpoint by the time this returns; None when
        none is logged (pending, rejected, released before the log existed) or the caller may
        not read the version."""
        ...

    def log_checkpoint(self) -> str:
        """The transparency log's newest signed checkpoint (a signed note), with any witness
        cosignature lines."""
        ...

    def log_inclusion(self, index: int, size: int) -> list[bytes]:
        """The RFC 9162 inclusion proof of entry ``index`` in the tree of ``size`` entries."""
        ...

    def log_entries(self, start: int, end: int) -> list[bytes]:
        """The log's entries ``[start, end)``, their exact bytes (``end``: at most the newest
        checkpoint's size)."""
        ...


def write_export(source: Source, ref: str, out: Path, registry_pem: str) -> ExportedVersion:
    """Write the evidence of ``ref`` and of its dependencies (to the gate's depth) into the
    empty directory ``out``. Returns the exported version.

    Raises:
        ExportError: ``ref`` is not readable, or its namespace has no readable policy.
    """
    root = source.version(ref)
    if root is None:
        raise ExportError(f"{ref} does not exist or is not readable with this token")
    exact = root.ref
    (out / "evidence").mkdir()
    (out / "policies").mkdir()
    (out / "registry.pub").write_text(registry_pem)

    versions: list[dict[str, Any]] = []
    exported: list[str] = []  # the exact refs written to versions.json, in order
    queue: list[tuple[str, int]] = [(exact, 0)]
    seen: set[str] = set()
    release_of: dict[str, dict[str, Any]] = {}
    oms_of_root: dict[str, bytes] = {}  # bundle sha256 -> bytes, oldest first
    while queue:
        current, depth = queue.pop(0)
        if current in seen:
            continue
        seen.add(current)
        version = root if current == exact else source.version(current)
        if version is None:
            continue  # unknown or unreadable with this token: verification names it
        name = version.ref
        versions.append(version.entry())
        exported.append(name)
        for item in source.bundles(name):
            file = f"{name.replace('/', '.')}.{item.id}.sigstore.json"
            (out / "evidence" / file).write_bytes(item.raw)
            bundle = Bundle.parse(item.raw)
            statement = bundle.statement()
            if name == exact and statement.predicate_type == OMS_SIGNATURE:
                oms_of_root[bundle.digest] = item.raw
            if item.predicate_type == RELEASE:
                release_of[name] = {"raw": item.raw, "predicate": statement.predicate}
            elif item.predicate_type == SLSA_PROVENANCE and depth < MAX_DEPTH:
                try:
                    provenance = read_predicate(statement.predicate)
                except AttestError:
                    continue
                queue.extend((dep.ref, depth + 1) for dep in provenance.dependencies)

    manifest = {
        "format": FORMAT,
        "ref": exact,
        "kind": root.kind,
        "root_digest": root.root_digest,
        "state": root.state,
        "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in root.files],
        "registry": source.registry,
        "exported_at": datetime.now(UTC).isoformat(),
        "audit": AUDIT_INCLUDED,
    }
    _dump(out / "manifest.json", manifest)
    _dump(out / "versions.json", versions)

    release = release_of.get(exact)
    if release is not None:
        (out / "release.sigstore.json").write_bytes(release["raw"])
    # model.sig: the OMS bundle the release relied on, else the newest one.
    cited = {
        e.get("bundleSha256")
        for e in (release or {}).get("predicate", {}).get("evidence", [])
        if isinstance(e, dict) and e.get("predicateType") == OMS_SIGNATURE
    }
    oms = [raw for digest, raw in oms_of_root.items() if digest in cited] or list(
        oms_of_root.values()
    )[-1:]
    if oms:
        (out / "model.sig").write_bytes(oms[0])

    # Policies: each revision a release in the chain names; policy.yaml is the root's.
    for name, found in release_of.items():
        named = found["predicate"].get("policy") or {}
        ns, revision = name.split("/", 1)[0], int(named.get("revision", 0))
        text = source.policy(ns, revision)
        if text is None:
            continue  # verify-evidence reports the missing policy of that link
        (out / "policies" / f"{ns}.r{revision}.yaml").write_text(text)
        if name == exact:
            (out / "policy.yaml").write_text(text)
    if not (out / "policy.yaml").exists():
        text = source.policy(root.namespace, None)
        if text is None:
            raise ExportError(f"the policy of namespace {root.namespace} is not readable")
        (out / "policy.yaml").write_text(text)

    _write_trust(source, out)
    _write_log(source, exported, out)
    audit = _write_audit(source, exact, out)
    if audit != AUDIT_INCLUDED:  # recorded for the reader; verify-evidence still fails closed
        _dump(out / "manifest.json", {**manifest, "audit": audit})
    return root


@contextmanager
def staged(target: Path) -> Iterator[Path]:
    """A private sibling directory of ``target`` to write an export into, renamed to ``target``
    when the block succeeds and removed when it fails: a failed export leaves nothing behind.
    ``target`` must not exist, or be an empty directory."""
    target = Path(target)
    if target.is_symlink() or (target.exists() and (not target.is_dir() or any(target.iterdir()))):
        raise ExportError(f"{target} exists and is not an empty directory")
    parent = target.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = parent / f".{target.name}.modelseal-{uuid.uuid4().hex[:12]}"
    staging.mkdir(mode=0o700)
    try:
        yield staging
        staging.chmod(0o755)
        if target.exists():
            target.rmdir()
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def archive_name(ref: str) -> str:
    """The top directory (and, with ``.tar.gz``, the file name) of the archive of ``ref``."""
    return ref.replace("/", ".").replace("@", ".") + ".evidence"


def pack(directory: Path, top: str, into: IO[bytes]) -> None:
    """Write ``directory`` as a gzip'd tar under the single directory ``top``: directories and
    regular files only, sorted, owner root, modes 0755/0644, times zero."""
    if "/" in top or top in ("", ".", ".."):
        raise ExportError(f"not a directory name: {top!r}")
    with (
        gzip.GzipFile(fileobj=into, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        tar.addfile(_member(top, None))
        for path in sorted(directory.rglob("*")):
            name = f"{top}/{path.relative_to(directory).as_posix()}"
            if path.is_symlink() or not (path.is_dir() or path.is_file()):
                raise ExportError(f"{path} is neither a file nor a directory")
            if path.is_dir():
                tar.addfile(_member(name, None))
            else:
                with path.open("rb") as data:
                    tar.addfile(_member(name, path.stat().st_size), data)


def unpack(archive: Path, into: Path) -> Path:
    """Extract an archive :func:`pack` wrote into the empty directory ``into``; returns the
    export directory inside it.

    The tar stream is read here, header by header, not by :mod:`tarfile` (whose reader takes
    extension headers whole, follows chains of them and knows sparse files): only what
    :func:`pack` writes is accepted (directories, regular files, and a PAX header of at most
    :data:`MAX_PAX` bytes holding one ``path`` record before a member), each member checked and
    bounded before a byte of it is written.

    Raises:
        ExportError: not a gzip'd tar, or a member other than a file or directory under one top
            directory, an unsafe or duplicate name, or beyond the bounds.
    """
    top: str | None = None
    seen: set[str] = set()
    written = 0
    try:
        with open(archive, "rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as stream:
            for count, (name, is_dir, size) in enumerate(_headers(stream), start=1):
                if count > MAX_MEMBERS:
                    raise ExportError(f"more than {MAX_MEMBERS} members")
                name = _safe_name(name)
                first = name.split("/", 1)[0]
                if top is None:
                    top = first
                elif first != top:
                    raise ExportError(f"{name!r} is outside the one top directory {top!r}")
                if name in seen:
                    raise ExportError(f"{name!r} appears twice")
                seen.add(name)
                target = into.joinpath(*name.split("/"))
                if is_dir:
                    target.mkdir(mode=0o755)
                    continue
                if size > MAX_MEMBER:
                    raise ExportError(f"{name!r} is larger than {MAX_MEMBER} bytes")
                written += size
                if written > MAX_UNPACKED:
                    raise ExportError(f"more than {MAX_UNPACKED} bytes unpacked")
                with open(target, "xb") as out:  # a parent missing is an error, never created
                    _copy(stream, out, size, name)
                _skip(stream, -size % BLOCK, name)
    except ExportError:
        raise
    except (FileNotFoundError, FileExistsError, NotADirectoryError) as exc:
        raise ExportError(f"not an evidence archive: {exc.strerror}: {exc.filename}") from None
    except (EOFError, gzip.BadGzipFile, zlib.error, UnicodeDecodeError, ValueError) as exc:
        raise ExportError(f"not an evidence archive: {exc}") from None
    if top is None or not (into / top).is_dir():
        raise ExportError("the archive holds no export directory")
    return into / top


BLOCK = 512


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


#: Largest PAX extended header accepted (``pack`` writes one only for a long ``path``).
MAX_PAX = 8 * 1024
#: Zero bytes accepted after the end-of-archive blocks (tar pads to 10 KiB records).
MAX_PADDING = 64 * 1024


def _headers(stream: _Readable) -> Iterator[tuple[str, bool, int]]:
    """``(name, is_dir, size)`` of each member; the caller reads (or not) its data, then the
    padding. Ends at the end-of-archive block; anything but zeros after it is refused."""
    path: str | None = None  # from a PAX header, for the next member
    while True:
        header = _exact(stream, BLOCK, "a header")
        if header == bytes(BLOCK):
            if path is not None:
                raise ExportError("a PAX header is not followed by a member")
            rest = stream.read(MAX_PADDING + 1)
            if len(rest) > MAX_PADDING or rest.strip(b"\0"):
                raise ExportError("data after the end of the archive")
            return
        _check_sum(header)
        kind = header[156:157]
        size = _octal(header[124:136], "size")
        if kind == b"x":
            if path is not None:
                raise ExportError("two PAX headers in a row")
            if size > MAX_PAX:
                raise ExportError(f"a PAX header of {size} bytes (at most {MAX_PAX})")
            path = _pax_path(_exact(stream, size, "a PAX header"))
            _skip(stream, -size % BLOCK, "a PAX header")
            continue
        if kind not in (b"0", b"\0", b"5"):
            raise ExportError(f"a member of type {kind!r} is not a regular file or directory")
        if header[257:263] != b"ustar\0":
            raise ExportError("not a POSIX (ustar) tar header")
        name = path if path is not None else _ustar_name(header)
        path = None
        if kind == b"5":
            if size:
                raise ExportError(f"directory {name[:80]!r} has data")
            yield name, True, 0
        else:
            yield name, False, size


def _exact(stream: _Readable, size: int, what: str) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise ExportError(f"the archive ends inside {what}")
    return data


def _skip(stream: _Readable, size: int, what: str) -> None:
    _exact(stream, size, what)


def _check_sum(header: bytes) -> None:
    expected = _octal(header[148:156], "checksum")
    if sum(header[:148]) + 8 * 32 + sum(header[156:]) != expected:
        raise ExportError("a tar header's checksum does not match")


def _octal(field: bytes, what: str) -> int:
    text = field.rstrip(b"\0 ").lstrip(b" ")
    if not text or any(c not in b"01234567" for c in text):
        raise ExportError(f"a tar header's {what} field is not an octal number")
    return int(text, 8)


def _ustar_name(header: bytes) -> str:
    name = header[0:100].split(b"\0", 1)[0]
    prefix = header[345:500].split(b"\0", 1)[0]
    return (prefix + b"/" + name if prefix else name).decode("utf-8")


def _pax_path(data: bytes) -> str:
    """The one ``path`` record of a PAX header (``"<len> path=<value>\\n"``)."""
    length, _, rest = data.partition(b" ")
    if not length.isdigit() or int(length) != len(data) or not rest.startswith(b"path="):
        raise ExportError("a PAX header other than one path record")
    if not rest.endswith(b"\n") or b"\n" in rest[:-1]:
        raise ExportError("a PAX header other than one path record")
    return rest[len(b"path=") : -1].decode("utf-8")


def _safe_name(name: str) -> str:
    if len(name) > MAX_NAME or "\x00" in name or "\\" in name:
        raise ExportError(f"unsafe member name {name[:80]!r}")
    clean = name[:-1] if name.endswith("/") else name
    parts = clean.split("/")
    if clean.startswith("/") or posixpath.normpath(clean) != clean or ".." in parts or "." in parts:
        raise ExportError(f"unsafe member name {name[:80]!r}")
    return clean


def _copy(source: _Readable, out: IO[bytes], size: int, name: str) -> None:
    left = size
    while left:
        chunk = source.read(min(1024 * 1024, left))
        if not chunk:
            raise ExportError(f"{name!r} is truncated")
        out.write(chunk)
        left -= len(chunk)


def _member(name: str, size: int | None) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    if size is None:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.size = size
        info.mode = 0o644
    return info


def _write_trust(source: Source, out: Path) -> None:
    identities: dict[str, Any] = {}
    for item in source.identities():
        if item.get("key_pem"):
            identities[item["name"]] = {"key_pem": item["key_pem"]}
        elif item.get("issuer") and item.get("identity"):
            identities[item["name"]] = {"sigstore": {"issuer": item["issuer"],
                                                     "identity": item["identity"],
                                                     "regex": bool(item.get("regex"))}}  # fmt: skip
    document = {"identities": identities, "registry": {"key": "registry.pub"}}
    (out / "trust.yaml").write_text(yaml.safe_dump(document, sort_keys=True))


def _write_audit(source: Source, exact: str, out: Path) -> str:
    """The log suffix from the version's first entry to the newest checkpoint (auditors and
    admins only; others get an export without ``audit/``). Admins sign a fresh checkpoint when
    the newest does not cover the version's entries yet. Returns :data:`AUDIT_INCLUDED`, or
    why ``audit/`` is not there."""
    path = audit_target(exact)
    entries = source.audit_entries()
    if entries is None:
        return AUDIT_FORBIDDEN
    about = [e for e in entries if is_about(e, path)]
    if not about:
        return f"no audit entries about {exact}"
    checkpoint = source.latest_checkpoint()
    count = _checkpoint_count(checkpoint)
    if count < int(about[-1]["seq"]) and source.sign_checkpoint():
        entries = source.audit_entries() or entries
        checkpoint = source.latest_checkpoint()
        count = _checkpoint_count(checkpoint)
    if checkpoint is None:
        return "no signed audit checkpoint yet (an admin signs one with the export)"
    first = int(about[0]["seq"])
    # Up to the checkpoint; when it is older than the version's entries, everything after them
    # (verify-evidence then reports them as not covered).
    last = count if count >= int(about[-1]["seq"]) else int(entries[-1]["seq"])
    (out / "audit").mkdir()
    _dump(out / "audit" / "entries.json", [e for e in entries if first <= int(e["seq"]) <= last])
    (out / "audit" / "checkpoint.sigstore.json").write_bytes(checkpoint)
    return AUDIT_INCLUDED


def _write_log(source: Source, refs: list[str], out: Path) -> None:
    """``log/``: the log key and the registry's statement vouching for it, and for each
    exported version with a status event in the transparency log, a C2SP tlog-proof of its
    newest one (the entry's bytes in the ``extra`` line), every proof against one checkpoint:
    the newest once every event was found (each event is covered by a signed checkpoint when
    it is found, and a newer checkpoint covers whatever an older one did). Nothing is
    verified here: ``verify-evidence`` does, and names whatever is missing."""
    key = source.log_key()
    events = [(ref, event) for ref in refs if (event := source.log_status(ref)) is not None]
    if key is None and not events:
        return
    directory = out / LOG_DIR
    directory.mkdir()
    if key is not None:
        (directory / LOG_KEY_FILE).write_bytes(key.binding)
        (directory / LOG_VKEY_FILE).write_text(key.vkey + "\n")
    if not events:
        return
    text = source.log_checkpoint()
    try:
        size = Checkpoint.parse(parse_note(text)[0]).size
    except AttestError as exc:
        raise ExportError(f"the registry's log checkpoint is malformed: {exc}") from None
    for ref, event in events:
        if event.index >= size:
            continue  # not covered (cannot happen with a sound log): verification names it
        hashes = source.log_inclusion(event.index, size)
        try:
            proof = TlogProof(event.index, tuple(hashes), text, event.entry).serialize()
        except AttestError as exc:
            raise ExportError(f"the log proof of {ref} cannot be written: {exc}") from None
        (directory / log_proof_name(ref)).write_bytes(proof)
    # Every entry from the oldest proven one on: the verifier rebuilds the checkpoint's root
    # from them, so no later event about a proven version (a revocation) can be left out.
    covered = [event.index for _ref, event in events if event.index < size]
    if covered:
        start = min(covered)
        later = source.log_entries(start, size)
        try:
            (directory / ENTRIES_FILE).write_bytes(write_entries(start, later))
        except AttestError as exc:
            raise ExportError(f"the log's entries cannot be written: {exc}") from None


def _checkpoint_count(raw: bytes | None) -> int:
    if raw is None:
        return 0
    return int(Bundle.parse(raw).statement().predicate.get("count", 0))


def _dump(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def packed(directory: Path, top: str) -> bytes:
    """:func:`pack` into memory (an export without files is bundles and JSON: small)."""
    buffer = io.BytesIO()
    pack(directory, top, buffer)
    return buffer.getvalue()


__all__ = [
    "AUDIT_FORBIDDEN",
    "AUDIT_INCLUDED",
    "ExportError",
    "ExportedBundle",
    "ExportedFile",
    "ExportedLogEntry",
    "ExportedLogKey",
    "ExportedVersion",
    "Source",
    "archive_name",
    "pack",
    "packed",
    "staged",
    "unpack",
    "write_export",
]
