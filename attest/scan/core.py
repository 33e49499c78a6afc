"""Verdicts, limits and the dispatch that gives every file all of its readings.

A file is read in every way a loader could read it: a pickle reading from its first byte (always
tried), one reading per signature it carries (zip found by its end record, NumPy, HDF5, GGUF,
compressed streams, tar, safetensors), then the formats without a signature (ONNX and
SentencePiece protobufs, UTF-8 text / JSON). Each reading gets its own verdict; the file gets the
most dangerous one. A file with no reading is ``unknown``. See :mod:`attest.scan`.
"""

from __future__ import annotations

import io
import os
import posixpath
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from attest.files import file_set

SCANNER_NAME = "modelseal-scan"
SCANNER_VERSION = "2.0"
#: Identifies the rules (allowlist, limits, format checks); bumped when any of them changes.
RULESET = "2026-12-05.1"
#: Scans made under an older ruleset may have called files clean that are not positively known
#: to be safe; the release gate does not accept them. (2026-12-04.1: every compressed reading
#: counts, an lzma-alone stream behind a zlib-looking header, a joblib ``ZF`` header followed by
#: a space, and zlib streams concatenated. 2026-12-04.2: a pickle FRAME longer than the data
#: is walked as the pure-Python unpickler reads it; a GLOBAL/INST name longer than 64 KiB is
#: past the scan's limit; once a memo key was too long to read, any GET is unknown; APPENDS,
#: SETITEMS and ADDITEMS leave their target as it was; after a STOP inside a frame, the next
#: pickle is walked from the frame's end as well; an argument across a frame's end is past
#: what the scan can judge (C's unpickler reads it differently); protocol-0 numbers
#: end at a NUL, as C's parsers read them; zstd skippable and legacy frames are zstd; any
#: .lzma header whose decoder gives a first byte is a reading; a zlib or .lzma stream without a
#: magic number that fails, or is cut short, within 64 KiB is judged by what a reader gets
#: before the error, where it was malformed (raw integer arrays and text like "x^2" start with
#: such headers by chance: a few bytes holding nothing a loader could run identify nothing);
#: text that is not UTF-8 past its first bytes is unknown, not malformed; a tar with data after
#: its end is malformed (GNU tar reads on past a corrupt header); a JSON candidate in an HDF5
#: file that fails within its window's last 16 characters is read further. 2026-12-04.3: in an
#: HDF5 file, pickles are also walked from every attribute message's value (where its
#: declared sizes put it, whatever its datatype), every string-attribute layout, every global
#: heap object (past free space too) and PyTables' rewrite of old FILTERS attributes, and every
#: protocol-0 GLOBAL/INST of a known module is judged where it stands (PyTables unpickles
#: attributes and object rows of any protocol); a fractal heap behind filters is unscannable; a
#: pickle walk stops at the end of the bytes it was given; pandas' frequency offsets and
#: ``datetime``'s types are allowlisted; an ONNX ModelProto needs no ir_version (a graph is
#: enough) and its unknown fields and groups are skipped as protobuf parsers skip them.
#: 2026-12-04.4: an HDF5 attribute message is found whatever sizes its header declares (up to
#: 64 KiB each), when a string, variable-length, array or shared datatype and a dataspace begin
#: where they say; a global heap is read record by record as libhdf5 reads it (headers padded
#: to 8 bytes, free-space records of any size); PyTables' FILTERS rewrite is applied wherever
#: in a value it falls; the pickle walks of one HDF5 file share one opcode budget, and reading a
#: protocol-0 line costs an opcode per 64 bytes; a JSON document in an HDF5 file larger than the
#: limit is unscannable; a Keras class_name that is not a string is not a layer; pandas'
#: Timestamp and Timedelta unpicklers are allowlisted; a variable-length sequence whose
#: elements libhdf5 converts on reading (big-endian, bit offsets, compounds...), found in any
#: object header (version 1 by exact tiling, OHDR, continuation chunks), is unscannable, and so
#: is a file whose shared-message table shares datatypes; an External File List counts only in
#: an object header (its byte pattern matched in int16 labels: a false alarm); elements read
#: as stored are integers of 1, 2, 4 or 8 bytes, 4- and 8-byte IEEE floats, strings, opaque
#: data, and enums, arrays and natively aligned compounds of them, with no padding bits set;
#: a version-1 chunk may end in less than a message header; each datatype message is parsed
#: once, its size charged to the header-reading budget; a datatype message that refers to the
#: shared-message heap is unscannable whatever the table says; runs of empty null messages
#: are stepped over at once, read in growing blocks, charged per KiB and remembered; every
#: variable-length type but a string is read as a sequence, as libhdf5 reads it; a big-endian
#: integer of any width is converted (an enum over one maps values). 2026-12-04.5: an HDF5
#: virtual dataset or external link (in an object header, or in a group's dense link storage)
#: is unsafe, as an External File List is; a link heap that could keep links outside its
#: direct blocks (huge objects, through a B-tree or in the heap ID; IDs that could hold one), or
#: whose block sizes are not the powers of two libhdf5 derives others from, is unscannable.
#: 2026-12-05.1: an object header chunk is read once per header version naming it, not once
#: per span (a decoy version-2 reading hid a version-1 chunk's external link).)
MIN_RULESET = RULESET

HEAD = 4096
READ = 1024 * 1024
_IN_MEMORY = 8 * 1024 * 1024  # members and inflated streams up to this size stay in memory


class Format(StrEnum):
    SAFETENSORS = "safetensors"
    PICKLE = "pickle"
    PYTORCH_ZIP = "pytorch-zip"
    NUMPY = "numpy"
    NUMPY_ZIP = "numpy-npz"
    JOBLIB = "joblib"  # a compressed pickle stream
    ONNX = "onnx"
    KERAS_ZIP = "keras"
    HDF5 = "hdf5"
    GGUF = "gguf"
    SENTENCEPIECE = "sentencepiece"
    ZIP = "zip"
    TAR = "tar"
    COMPRESSED = "compressed"
    TENSOR_DATA = "tensor-data"  # raw storage inside a PyTorch archive
    JSON = "json"
    TEXT = "text"
    UNKNOWN = "unknown"


class ScanVerdict(StrEnum):
    """Only ``clean`` is safe. ``unknown``: not positively identified. ``unscannable``: the scan
    could not finish within its limits, or the file is malformed. ``unsafe``: code-capable
    content found."""

    CLEAN = "clean"
    UNKNOWN = "unknown"
    UNSCANNABLE = "unscannable"
    UNSAFE = "unsafe"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {
    ScanVerdict.CLEAN: 0,
    ScanVerdict.UNKNOWN: 1,
    ScanVerdict.UNSCANNABLE: 2,
    ScanVerdict.UNSAFE: 3,
}


@dataclass(frozen=True, slots=True)
class ScanLimits:
    """Bounds that keep a hostile file from exhausting the scanner. Reaching one makes the file
    ``unscannable``, never clean."""

    max_safetensors_header: int = 100 * 1024 * 1024
    max_pickle_ops: int = 20_000_000
    max_archive_members: int = 10_000
    max_compression_ratio: int = 250
    min_inflate_allowance: int = 4 * 1024 * 1024
    max_inflated_bytes: int = 2 * 1024 * 1024 * 1024
    max_nesting: int = 3
    max_inspect_bytes: int = 4 * 1024 * 1024 * 1024
    max_json_bytes: int = 64 * 1024 * 1024
    max_findings: int = 40


@dataclass(frozen=True, slots=True)
class FileVerdict:
    """What one file is and whether it is safe to hand to a model loader."""

    path: str
    format: Format
    verdict: ScanVerdict
    findings: tuple[str, ...] = ()
    pickle: bool = False  # holds pickle data anywhere (quarantined by default policy)
    #: files of the same set this one makes a loader read (ONNX external data), normalized
    references: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        return self.verdict is ScanVerdict.CLEAN

    def to_json(self) -> dict[str, Any]:
        out = {
            "path": self.path,
            "format": str(self.format),
            "verdict": str(self.verdict),
            "findings": list(self.findings),
            "pickle": self.pickle,
        }
        if self.references:
            out["references"] = list(self.references)
        return out


@dataclass(frozen=True, slots=True)
class ScanReport:
    files: tuple[FileVerdict, ...]

    @property
    def unsafe(self) -> list[FileVerdict]:
        return [f for f in self.files if f.verdict is ScanVerdict.UNSAFE]

    @property
    def unscannable(self) -> list[FileVerdict]:
        return [f for f in self.files if f.verdict is ScanVerdict.UNSCANNABLE]

    @property
    def not_clean(self) -> list[FileVerdict]:
        return [f for f in self.files if f.verdict is not ScanVerdict.CLEAN]

    @property
    def clean(self) -> bool:
        return not self.not_clean

    @property
    def verdict(self) -> ScanVerdict:
        return max(
            (f.verdict for f in self.files), key=_SEVERITY.__getitem__, default=ScanVerdict.CLEAN
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "scanner": {"name": SCANNER_NAME, "version": SCANNER_VERSION, "ruleset": RULESET},
            "verdict": str(self.verdict),
            "files": [f.to_json() for f in self.files],
        }


# -- results and the errors that end a reading --------------------------------------------------


class Unsafe(Exception):
    """Code-capable content; the message is the finding."""


class Malformed(Exception):
    """The reading started but the data is broken: unscannable."""


class ScratchFailure(Exception):
    """The scanner's own temporary disk failed (full, an I/O error) while it spilled an
    inflated stream or member: says nothing about the file, so never a verdict. Raised out of
    every scan; the caller retries."""


def _scratch_failure(exc: OSError) -> ScratchFailure:
    return ScratchFailure(f"the scanner's temporary file failed: {exc.strerror or exc}")


class _ScratchFile(io.FileIO):
    """A temporary file whose every failure is a :class:`ScratchFailure` (an OSError here is
    not the file being scanned misbehaving, which the readings would judge)."""

    def readinto(self, buffer: Any, /) -> int:
        try:
            return super().readinto(buffer)
        except OSError as exc:
            raise _scratch_failure(exc) from exc

    def write(self, data: Any, /) -> int:
        try:
            return super().write(data)
        except OSError as exc:
            raise _scratch_failure(exc) from exc

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        try:
            return super().seek(offset, whence)
        except OSError as exc:
            raise _scratch_failure(exc) from exc


def scratch_file() -> IO[bytes]:
    """An anonymous temporary file for spilled data (:class:`_ScratchFile`)."""
    try:
        fd, name = tempfile.mkstemp(prefix="modelseal-scan-")
        os.unlink(name)
    except OSError as exc:
        raise _scratch_failure(exc) from exc
    return io.BufferedRandom(_ScratchFile(fd, "r+b", closefd=True))


class LimitReached(Exception):
    """A scan limit stopped the reading: unscannable."""


class NoReading(Exception):
    """The bytes only looked like the format: its decoder fails before it yields a single byte,
    so no loader gets anything through this reading, and the file is judged by its others (a
    two-byte text file ``80`` starts with a valid zlib header)."""


@dataclass
class Result:
    format: Format = Format.UNKNOWN
    verdict: ScanVerdict = ScanVerdict.CLEAN
    findings: list[str] = field(default_factory=list)
    pickle: bool = False
    code: bool = False  # a pickle reading that reaches an import or a call
    pickle_end: int = 0  # where a pickle reading's last complete pickle ended
    references: list[str] = field(default_factory=list)

    def flag(self, verdict: ScanVerdict, finding: str) -> None:
        if verdict.severity > self.verdict.severity:
            self.verdict = verdict
        self.findings.append(finding)

    def note(self, finding: str) -> None:
        self.findings.append(finding)

    def merge(self, inner: Result, prefix: str) -> None:
        """Fold a member's (or inner stream's) result into this container's."""
        if inner.verdict.severity > self.verdict.severity:
            self.verdict = inner.verdict
        self.pickle = self.pickle or inner.pickle
        if inner.verdict is not ScanVerdict.CLEAN:
            self.findings.append(f"{prefix}{inner.verdict}")
        self.findings.extend(prefix + f for f in inner.findings)


@dataclass(frozen=True)
class Context:
    """What a reading needs besides the bytes."""

    path: str
    limits: ScanLimits
    depth: int = 0
    sibling: Callable[[str], bool] | None = None
    #: the file is external tensor data of a clean ONNX model of the same set: raw bytes that
    #: the runtime reads as tensor content, clean unless another reading says otherwise
    tensor_data: bool = False
    #: the caller's errors (its storage failing) that no reading may turn into a verdict
    propagate: tuple[type[BaseException], ...] = ()

    def inner(self, name: str) -> Context:
        return Context(f"{self.path}!{name}", self.limits, self.depth + 1, None,
                       propagate=self.propagate)  # fmt: skip


# -- entry points -------------------------------------------------------------------------------


def scan_files(
    files: Iterable[tuple[str, int]],
    open_file: Callable[[str], IO[bytes]],
    *,
    limits: ScanLimits | None = None,
    propagate: tuple[type[BaseException], ...] = (),
) -> ScanReport:
    """Scan a set of files (``(path, size)``, opened by ``open_file``) as one version.

    ONNX external data is judged with its model: a file that a clean ONNX model of the set
    names as external data, and that no other reading identifies, is raw tensor data."""
    entries = list(files)
    paths = {path for path, _size in entries}

    def sibling_of(path: str) -> Callable[[str], bool]:
        return lambda relative: _join(path, relative) in paths

    def scan(path: str, size: int, *, tensor_data: bool = False) -> FileVerdict:
        with open_file(path) as handle:
            return scan_stream(
                path,
                handle,
                size,
                limits=limits,
                sibling=sibling_of(path),
                propagate=propagate,
                tensor_data=tensor_data,
            )

    verdicts = {path: scan(path, size) for path, size in entries}
    referenced = {ref for v in verdicts.values() if v.clean for ref in v.references}
    for path, size in entries:
        if path in referenced and verdicts[path].verdict is ScanVerdict.UNKNOWN:
            verdicts[path] = scan(path, size, tensor_data=True)
    return ScanReport(tuple(verdicts[path] for path, _size in entries))


def _join(path: str, relative: str) -> str:
    return posixpath.normpath(posixpath.join(posixpath.dirname(path), relative))


def scan_directory(directory: Path, *, limits: ScanLimits | None = None) -> ScanReport:
    """Scan every file of a directory (as a push would see it)."""
    found = {item.path: item for item in file_set(directory).files}
    return scan_files(
        ((p, i.size) for p, i in found.items()),
        lambda path: found[path].source.open("rb"),
        limits=limits,
    )


def scan_stream(
    path: str,
    handle: IO[bytes],
    size: int,
    *,
    limits: ScanLimits | None = None,
    sibling: Callable[[str], bool] | None = None,
    propagate: tuple[type[BaseException], ...] = (),
    tensor_data: bool = False,
) -> FileVerdict:
    """Scan one file from a seekable binary stream of ``size`` bytes. Never raises for what the
    file holds: a scanner failure is the verdict ``unscannable``.

    ``sibling(rel)`` tells whether a path relative to this file exists in the same file set
    (ONNX external data); without it, references are only checked for shape. Exceptions of the
    ``propagate`` types (the caller's storage failures) are re-raised, since they say nothing
    about the file.
    """
    context = Context(path, limits or ScanLimits(), 0, sibling, tensor_data, propagate)
    try:
        result = scan_any(handle, size, context)
    except ScratchFailure:
        raise
    except propagate:
        raise
    except Exception as exc:  # a scanner bug or an unforeseen input: fail closed, never crash
        result = Result()
        result.flag(ScanVerdict.UNSCANNABLE, f"scanner error: {type(exc).__name__}: {exc}"[:300])
    findings = result.findings
    cap = context.limits.max_findings
    if len(findings) > cap:
        findings = [*findings[:cap], f"... and {len(findings) - cap} more findings"]
    return FileVerdict(
        path,
        result.format,
        result.verdict,
        tuple(findings),
        result.pickle,
        tuple(result.references),
    )


def scan_any(handle: IO[bytes], size: int, context: Context) -> Result:
    """Every reading of one stream, combined into the most dangerous one."""
    from attest.scan import readings

    if context.depth > context.limits.max_nesting:
        result = Result()
        result.flag(
            ScanVerdict.UNSCANNABLE,
            f"nested deeper than {context.limits.max_nesting} archives/compressions",
        )
        return result
    return readings.combine(handle, size, context)


# -- helpers shared by the readings -------------------------------------------------------------


def size_of(handle: IO[bytes]) -> int:
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    handle.seek(0)
    return size


def spool(stream: IO[bytes], limit: int, what: str) -> IO[bytes]:
    """Copy a (decompressing) stream into memory or a temporary file, refusing to go past
    ``limit`` bytes: the copy stops at the limit, it never fills the disk first."""
    out: IO[bytes] = io.BytesIO()
    total = 0
    while True:
        piece = stream.read(READ)
        if not piece:
            break
        total += len(piece)
        if total > limit:
            out.close()
            raise LimitReached(f"{what} inflates past {limit} bytes (decompression bomb)")
        if isinstance(out, io.BytesIO) and total > _IN_MEMORY:
            spilled = scratch_file()
            spilled.write(out.getbuffer())
            out = spilled
        out.write(piece)
    out.seek(0)
    return out


def inflate_limit(limits: ScanLimits, compressed: int) -> int:
    """How far a stream of ``compressed`` bytes may inflate before it counts as a bomb."""
    allowance = max(limits.min_inflate_allowance, compressed * limits.max_compression_ratio)
    return min(limits.max_inflated_bytes, allowance)
