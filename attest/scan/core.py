"""Classification by content and per-format checks. See :mod:`attest.scan`."""

from __future__ import annotations

import ast
import bz2
import io
import lzma
import os
import re
import stat
import struct
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import IO, Any

from attest.errors import AttestError
from attest.files import scan_directory as list_directory
from attest.jsonsafe import loads as json_loads

SCANNER_NAME = "modelseal-scan"
SCANNER_VERSION = "1.0"
#: Identifies the rules (allowlist, limits, format checks); bumped when any of them changes.
RULESET = "2026-11-26.1"

HEAD = 4096
_PICKLE_SAMPLE = 1024 * 1024
READ = 1024 * 1024


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
    ZIP = "zip"
    TAR = "tar"
    COMPRESSED = "compressed"
    JSON = "json"
    TEXT = "text"
    UNKNOWN = "unknown"


class Verdict(StrEnum):
    CLEAN = "clean"
    UNSAFE = "unsafe"


@dataclass(frozen=True, slots=True)
class ScanLimits:
    """Bounds that keep a hostile file from exhausting the scanner."""

    max_safetensors_header: int = 100 * 1024 * 1024
    max_pickle_bytes: int = 1024 * 1024 * 1024
    max_archive_members: int = 10_000
    max_compression_ratio: int = 200
    max_inflated_bytes: int = 8 * 1024 * 1024 * 1024
    max_nesting: int = 3
    max_inspect_bytes: int = 1024 * 1024 * 1024
    max_json_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class FileVerdict:
    """What one file is and whether it is safe to hand to a model loader."""

    path: str
    format: Format
    verdict: Verdict
    findings: tuple[str, ...] = ()
    pickle: bool = False  # holds pickle data anywhere (quarantined by default policy)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": str(self.format),
            "verdict": str(self.verdict),
            "findings": list(self.findings),
            "pickle": self.pickle,
        }


@dataclass(frozen=True, slots=True)
class ScanReport:
    files: tuple[FileVerdict, ...]

    @property
    def unsafe(self) -> list[FileVerdict]:
        return [f for f in self.files if f.verdict is Verdict.UNSAFE]

    @property
    def clean(self) -> bool:
        return not self.unsafe

    def to_json(self) -> dict[str, Any]:
        return {
            "scanner": {"name": SCANNER_NAME, "version": SCANNER_VERSION, "ruleset": RULESET},
            "verdict": str(Verdict.CLEAN if self.clean else Verdict.UNSAFE),
            "files": [f.to_json() for f in self.files],
        }


class _Unsafe(Exception):
    """Internal: a check failed; the message is the finding."""


@dataclass
class _Result:
    format: Format = Format.UNKNOWN
    findings: list[str] = field(default_factory=list)
    unsafe: bool = False
    pickle: bool = False

    def bad(self, finding: str) -> None:
        self.unsafe = True
        self.findings.append(finding)

    def note(self, finding: str) -> None:
        self.findings.append(finding)


# -- entry points -----------------------------------------------------------------------------


def scan_directory(directory: Path, *, limits: ScanLimits | None = None) -> ScanReport:
    """Scan every file of a directory (as a push would see it)."""
    found = list_directory(directory)
    verdicts = []
    for item in found.files:
        with item.source.open("rb") as handle:
            verdicts.append(
                scan_stream(
                    item.path,
                    handle,
                    item.size,
                    limits=limits,
                    sibling=_local_sibling(directory, item.path),
                )
            )
    return ScanReport(tuple(verdicts))


def _local_sibling(root: Path, path: str) -> Callable[[str], bool]:
    """Whether a relative path from ``path``'s directory names a regular file in the set."""

    def exists(relative: str) -> bool:
        target = PurePosixPath(path).parent / relative
        candidate = root / target
        return candidate.is_file() and not candidate.is_symlink()

    return exists


def scan_stream(
    path: str,
    handle: IO[bytes],
    size: int,
    *,
    limits: ScanLimits | None = None,
    sibling: Callable[[str], bool] | None = None,
) -> FileVerdict:
    """Scan one file from a seekable binary stream of ``size`` bytes.

    ``sibling(rel)`` tells whether a path relative to this file exists in the same file set
    (used for ONNX external data); without it, references are only checked for shape.
    """
    result = _Result()
    try:
        _dispatch(path, handle, size, result, limits or ScanLimits(), 0, sibling)
    except _Unsafe as exc:
        result.bad(str(exc))
    except (OSError, EOFError, ValueError, struct.error, AttestError) as exc:
        result.bad(f"malformed {result.format}: {exc}")
    verdict = Verdict.UNSAFE if result.unsafe else Verdict.CLEAN
    return FileVerdict(path, result.format, verdict, tuple(result.findings), result.pickle)


# -- classification ----------------------------------------------------------------------------


def _dispatch(
    path: str,
    handle: IO[bytes],
    size: int,
    result: _Result,
    limits: ScanLimits,
    depth: int,
    sibling: Callable[[str], bool] | None,
) -> None:
    if depth > limits.max_nesting:
        raise _Unsafe(f"nested deeper than {limits.max_nesting} archives/compressions")
    handle.seek(0)
    head = handle.read(HEAD)
    handle.seek(0)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        _scan_zip(path, handle, size, result, limits, depth)
    elif head[:6] == b"\x93NUMPY":
        result.format = Format.NUMPY
        _scan_npy(handle, size, result, limits)
    elif _hdf5_offset(handle, head) is not None:
        result.format = Format.HDF5
        _scan_hdf5(handle, size, result, limits)
    elif head[:4] == b"GGUF":
        result.format = Format.GGUF
        _scan_gguf(handle, size)
    elif _compression(head) is not None:
        _scan_compressed(path, handle, result, limits, depth, _compression(head) or "")
    elif len(head) >= 262 and head[257:262] == b"ustar":
        _scan_tar(path, handle, result, limits, depth)
    elif _looks_like_safetensors(head, size):
        result.format = Format.SAFETENSORS
        _scan_safetensors(handle, size, limits)
    elif _looks_like_pickle(head, handle):
        result.format = Format.PICKLE
        _scan_pickle(path, handle, size, result, limits)
    elif _looks_like_onnx(head):
        result.format = Format.ONNX
        _scan_onnx(path, handle, size, result, sibling)
    else:
        _scan_text_or_unknown(handle, size, head, result, limits)


def _compression(head: bytes) -> str | None:
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:3] == b"BZh" and head[3:4].isdigit():
        return "bz2"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
    if len(head) >= 2 and head[0] == 0x78 and (head[0] << 8 | head[1]) % 31 == 0:
        return "zlib"
    return None


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    if size < 10 or len(head) < 10:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return length >= 2 and head[8:9] == b"{"


def _looks_like_pickle(head: bytes, handle: IO[bytes]) -> bool:
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return True
    if not head or head[:1] not in b"(]}cdlI.N\x88\x89SVFGLJKMU":
        return False
    # Protocols 0 and 1 have no magic: it is a pickle if it parses as one up to a STOP opcode.
    # A stream still parsing when the sample ends counts as a pickle too (fail closed: padding
    # a payload past the sample must not turn it into "text").
    import pickletools

    handle.seek(0)
    sample = handle.read(_PICKLE_SAMPLE)
    handle.seek(0)
    last = 0
    try:
        for opcode, _arg, position in pickletools.genops(io.BytesIO(sample)):
            last = position or 0
            if opcode.name == "STOP":
                return True
    except Exception:
        return len(sample) == _PICKLE_SAMPLE and last > _PICKLE_SAMPLE - 65536
    return False


def _looks_like_onnx(head: bytes) -> bool:
    # ModelProto starts with ir_version (field 1, varint) in every writer we know.
    if len(head) < 4 or head[0] != 0x08 or head[1] > 20:
        return False
    try:
        fields = {number for number, _wire, _value in _pb_fields(io.BytesIO(head), len(head))}
    except (_Truncated, ValueError):
        fields = set()
    return bool(fields) and fields <= {1, 2, 3, 4, 5, 6, 7, 8, 14, 20, 25}


def _hdf5_offset(handle: IO[bytes], head: bytes) -> int | None:
    signature = b"\x89HDF\r\n\x1a\n"
    if head[:8] == signature:
        return 0
    for offset in (512, 1024, 2048):
        handle.seek(offset)
        if handle.read(8) == signature:
            handle.seek(0)
            return offset
    handle.seek(0)
    return None


# -- safetensors -----------------------------------------------------------------------------------

_ST_DTYPES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "F4": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}  # fmt: skip


def _scan_safetensors(handle: IO[bytes], size: int, limits: ScanLimits) -> None:
    """Header only: bounded JSON, known dtypes, shapes x dtype = byte ranges, ranges contiguous
    from 0, and the file exactly as long as header + data. Tensors are never loaded."""
    (length,) = struct.unpack("<Q", handle.read(8))
    if length > limits.max_safetensors_header:
        raise _Unsafe(
            f"safetensors header length {length} exceeds the cap {limits.max_safetensors_header}"
        )
    if 8 + length > size:
        raise _Unsafe(f"safetensors header length {length} is longer than the file ({size})")
    raw = handle.read(length)
    header = json_loads(raw.rstrip(b" "), what="safetensors header", max_bytes=length)
    if not isinstance(header, dict):
        raise _Unsafe("safetensors header is not a JSON object")
    ranges: list[tuple[int, int, str]] = []
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in info.items()
            ):
                raise _Unsafe("safetensors __metadata__ must map strings to strings")
            continue
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise _Unsafe(f"tensor {name[:80]!r}: expected dtype, shape and data_offsets")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in _ST_DTYPES:
            raise _Unsafe(f"tensor {name[:80]!r}: unknown dtype {str(dtype)[:20]!r}")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**63 for d in shape
        ):
            raise _Unsafe(f"tensor {name[:80]!r}: shape must be non-negative integers")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        ):
            raise _Unsafe(f"tensor {name[:80]!r}: data_offsets must be two integers")
        begin, end = offsets
        count = 1
        for d in shape:
            count *= d
            if count * _ST_DTYPES[dtype] >= 2**63:
                raise _Unsafe(f"tensor {name[:80]!r}: shape overflows 64 bits")
        if dtype == "F4":
            expected = (count + 1) // 2
        else:
            expected = count * _ST_DTYPES[dtype]
        if not 0 <= begin <= end or end - begin != expected:
            raise _Unsafe(
                f"tensor {name[:80]!r}: data_offsets {begin}..{end} do not hold "
                f"{expected} bytes of {dtype}{shape}"
            )
        ranges.append((begin, end, name))
    ranges.sort()
    position = 0
    for begin, end, name in ranges:
        if begin != position:
            kind = "overlaps the previous tensor" if begin < position else "leaves a gap"
            raise _Unsafe(f"tensor {name[:80]!r} {kind} (starts at {begin}, expected {position})")
        position = end
    data_size = size - 8 - length
    if position != data_size:
        what = "trailing bytes after" if data_size > position else "file ends before"
        raise _Unsafe(f"safetensors: {what} the tensor data ({data_size} vs {position} bytes)")


# -- pickles --------------------------------------------------------------------------------------

_TORCH_STORAGES = {
    f"{kind}Storage"
    for kind in (
        "Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool",
        "ComplexFloat", "ComplexDouble", "QUInt8", "QInt8", "QInt32", "QUInt4x2", "QUInt2x4",
    )
}  # fmt: skip
_TORCH_DTYPES = {
    "float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8",
    "bool", "complex64", "complex128", "float8_e4m3fn", "float8_e5m2",
}  # fmt: skip
_NUMPY_DTYPES = {
    f"{n}DType"
    for n in (
        "Float16", "Float32", "Float64", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16",
        "UInt32", "UInt64", "Bool", "Complex64", "Complex128", "Str", "Bytes",
    )
}  # fmt: skip

#: Globals a pickle in an ML checkpoint may reference. Everything else makes the file unsafe.
SAFE_GLOBALS: dict[str, frozenset[str]] = {
    "collections": frozenset({"OrderedDict"}),
    "torch": frozenset(_TORCH_STORAGES | _TORCH_DTYPES | {"Size", "device"}),
    "torch._utils": frozenset(
        {"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_qtensor"}
    ),
    "torch._tensor": frozenset({"_rebuild_from_type_v2"}),
    "numpy": frozenset({"ndarray", "dtype"}),
    "numpy.core.multiarray": frozenset({"_reconstruct", "scalar"}),
    "numpy._core.multiarray": frozenset({"_reconstruct", "scalar"}),
    "numpy.dtypes": frozenset(_NUMPY_DTYPES),
    "numpy.core.numeric": frozenset({"_frombuffer"}),
    "numpy._core.numeric": frozenset({"_frombuffer"}),
    "builtins": frozenset({"set", "frozenset", "slice", "complex", "bytearray", "range"}),
    "__builtin__": frozenset({"set", "frozenset", "slice", "complex", "bytearray"}),
    "_codecs": frozenset({"encode"}),
}


def _scan_pickle(
    path: str, handle: IO[bytes], size: int, result: _Result, limits: ScanLimits
) -> None:
    """Opcodes only (picklescan + an allowlist); a pickle is never loaded."""
    result.pickle = True
    if size > limits.max_pickle_bytes:
        raise _Unsafe(f"pickle of {size} bytes is larger than the scan limit; refused")
    import logging

    from picklescan.scanner import scan_pickle_bytes  # type: ignore[import-untyped]

    logging.getLogger("picklescan").setLevel(logging.ERROR)  # findings are ours to report

    report = scan_pickle_bytes(handle, path, multiple_pickles=True)
    if report.scan_err:
        result.bad("not a parseable pickle stream (cannot prove it safe)")
    for item in report.globals:
        module, name = str(item.module), str(item.name)
        allowed = SAFE_GLOBALS.get(module, frozenset())
        if name not in allowed:
            level = str(getattr(item.safety, "value", item.safety)).lower()
            result.bad(f"pickle imports {module}.{name} (not allowlisted; picklescan: {level})")


# -- numpy ----------------------------------------------------------------------------------------


def _scan_npy(handle: IO[bytes], size: int, result: _Result, limits: ScanLimits) -> None:
    magic = handle.read(8)
    major = magic[6]
    if major == 1:
        (header_len,) = struct.unpack("<H", handle.read(2))
    elif major in (2, 3):
        (header_len,) = struct.unpack("<I", handle.read(4))
    else:
        raise _Unsafe(f"unknown .npy format version {major}")
    if header_len > 1024 * 1024:
        raise _Unsafe(f".npy header of {header_len} bytes is implausible")
    text = handle.read(header_len).decode("latin1")
    try:
        header = ast.literal_eval(text)  # literals only: never evaluates code
    except (ValueError, SyntaxError) as exc:
        raise _Unsafe(f".npy header is not a literal dict: {exc}") from None
    if not isinstance(header, dict) or not {"descr", "shape", "fortran_order"} <= set(header):
        raise _Unsafe(".npy header lacks descr/shape/fortran_order")
    descr, shape = header["descr"], header["shape"]
    if "O" in repr(descr):
        result.note("object array: its payload is a pickle")
        start = handle.tell()
        payload = io.BufferedReader(_Window(handle, start, size - start))
        _scan_pickle("npy-object-payload", payload, size - start, result, limits)
        return
    match = re.fullmatch(r"[<>|=]?[a-zA-Z](\d+)", descr) if isinstance(descr, str) else None
    if match and isinstance(shape, tuple) and all(isinstance(d, int) and d >= 0 for d in shape):
        count = 1
        for d in shape:
            count *= d
        expected = count * int(match.group(1))
        data = size - handle.tell()
        if data != expected:
            raise _Unsafe(f".npy holds {data} data bytes, its header describes {expected}")


class _Window(io.RawIOBase):
    """A seekable window [start, start+length) of another seekable stream."""

    def __init__(self, inner: IO[bytes], start: int, length: int) -> None:
        self._inner, self._start, self._length, self._pos = inner, start, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._length}[whence]
        self._pos = max(0, min(self._length, base + offset))
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)[: max(0, self._length - self._pos)]
        self._inner.seek(self._start + self._pos)
        data = self._inner.read(len(view))
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)


# -- archives -------------------------------------------------------------------------------------


def _member_name_problem(name: str) -> str | None:
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if "\\" in name:
        return "backslash in path"
    if ".." in PurePosixPath(name).parts:
        return "'..' escapes its root (path traversal, zip slip)"
    if "\x00" in name:
        return "NUL in name"
    return None


def _spool(stream: IO[bytes], limit: int, what: str) -> IO[bytes]:
    """Copy a (decompressing) stream to a temporary file, refusing to inflate past ``limit``."""
    out = tempfile.TemporaryFile()
    total = 0
    while True:
        piece = stream.read(READ)
        if not piece:
            break
        total += len(piece)
        if total > limit:
            out.close()
            raise _Unsafe(f"{what} inflates past {limit} bytes (decompression bomb)")
        out.write(piece)
    out.seek(0)
    return out


def _scan_zip(
    path: str, handle: IO[bytes], size: int, result: _Result, limits: ScanLimits, depth: int
) -> None:
    result.format = Format.ZIP
    with zipfile.ZipFile(handle) as archive:
        infos = archive.infolist()
        if len(infos) > limits.max_archive_members:
            raise _Unsafe(f"zip has {len(infos)} members (limit {limits.max_archive_members})")
        declared = 0
        for info in infos:
            problem = _member_name_problem(info.filename)
            if problem:
                result.bad(f"zip member {info.filename[:120]!r}: {problem}")
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                result.bad(f"zip member {info.filename[:120]!r} is a symbolic link")
            if info.flag_bits & 0x1:
                result.bad(f"zip member {info.filename[:120]!r} is encrypted (cannot be inspected)")
            ratio = info.file_size / max(info.compress_size, 1)
            if info.compress_size and ratio > limits.max_compression_ratio:
                result.bad(
                    f"zip member {info.filename[:120]!r} inflates {ratio:.0f}x "
                    f"(limit {limits.max_compression_ratio}x): decompression bomb"
                )
            declared += info.file_size
        if declared > limits.max_inflated_bytes:
            result.bad(f"zip inflates to {declared} bytes (limit {limits.max_inflated_bytes})")
        if result.unsafe:
            return
        names = [i.filename for i in infos if not i.is_dir()]
        pickles = [n for n in names if n.endswith(".pkl") or n == "data.pkl"]
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            result.format = Format.PYTORCH_ZIP
            for name in pickles:
                _scan_member_as(archive, name, result, limits, _scan_pickle)
            return
        if "config.json" in names and ("model.weights.h5" in names or "metadata.json" in names):
            result.format = Format.KERAS_ZIP
            with archive.open("config.json") as member:
                config = json_loads(
                    member.read(limits.max_json_bytes + 1), what="keras config.json",
                    max_bytes=limits.max_json_bytes,
                )  # fmt: skip
            _check_keras_config(config, result)
            return
        if names and all(n.endswith(".npy") for n in names):
            result.format = Format.NUMPY_ZIP
            for name in names:
                _scan_member_as(archive, name, result, limits, _scan_npy_member)
            return
        for name in names:
            what = f"zip member {name!r}"
            with (
                archive.open(name) as member,
                _spool(member, limits.max_inflated_bytes, what) as spooled,
            ):
                inner = _Result()
                _dispatch(f"{path}!{name}", spooled, _size(spooled), inner, limits, depth + 1, None)
                _merge(result, inner, f"{name}: ")


def _scan_member_as(
    archive: zipfile.ZipFile,
    name: str,
    result: _Result,
    limits: ScanLimits,
    check: Callable[..., None],
) -> None:
    with archive.open(name) as member, _spool(member, limits.max_inflated_bytes, name) as spooled:
        inner = _Result()
        try:
            if check is _scan_pickle:
                _scan_pickle(name, spooled, _size(spooled), inner, limits)
            else:
                check(spooled, _size(spooled), inner, limits)
        except _Unsafe as exc:
            inner.bad(str(exc))
        _merge(result, inner, f"{name}: ")


def _scan_npy_member(handle: IO[bytes], size: int, result: _Result, limits: ScanLimits) -> None:
    _scan_npy(handle, size, result, limits)


def _size(handle: IO[bytes]) -> int:
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    handle.seek(0)
    return size


def _merge(result: _Result, inner: _Result, prefix: str) -> None:
    result.unsafe = result.unsafe or inner.unsafe
    result.pickle = result.pickle or inner.pickle
    result.findings.extend(prefix + f for f in inner.findings)


def _scan_tar(
    path: str, handle: IO[bytes], result: _Result, limits: ScanLimits, depth: int
) -> None:
    result.format = Format.TAR
    count = 0
    with tarfile.open(fileobj=handle, mode="r:") as archive:
        for member in archive:
            count += 1
            if count > limits.max_archive_members:
                raise _Unsafe(f"tar has more than {limits.max_archive_members} members")
            problem = _member_name_problem(member.name)
            if problem:
                result.bad(f"tar member {member.name[:120]!r}: {problem}")
            if member.issym() or member.islnk():
                result.bad(f"tar member {member.name[:120]!r} is a link")
            elif member.isdev() or member.isfifo():
                result.bad(f"tar member {member.name[:120]!r} is a device or FIFO")
            elif member.isfile() and not result.unsafe:
                extracted = archive.extractfile(member)
                if extracted is None:
                    continue
                with (
                    extracted,
                    _spool(extracted, limits.max_inflated_bytes, member.name) as spooled,
                ):
                    inner = _Result()
                    _dispatch(f"{path}!{member.name}", spooled, _size(spooled), inner, limits,
                              depth + 1, None)  # fmt: skip
                    _merge(result, inner, f"{member.name}: ")


def _scan_compressed(
    path: str, handle: IO[bytes], result: _Result, limits: ScanLimits, depth: int, kind: str
) -> None:
    stream: Any
    if kind == "gzip":
        import gzip

        stream = gzip.GzipFile(fileobj=handle, mode="rb")
    elif kind == "bz2":
        stream = bz2.BZ2File(handle)
    elif kind == "xz":
        stream = lzma.LZMAFile(handle)
    else:
        stream = _ZlibReader(handle)
    with _spool(stream, limits.max_inflated_bytes, f"{kind} stream") as spooled:
        inner = _Result()
        _dispatch(path, spooled, _size(spooled), inner, limits, depth + 1, None)
    result.format = Format.JOBLIB if inner.format is Format.PICKLE else Format.COMPRESSED
    result.note(f"{kind}-compressed {inner.format}")
    _merge(result, inner, "")


class _ZlibReader(io.RawIOBase):
    def __init__(self, inner: IO[bytes]) -> None:
        self._inner = inner
        self._z = zlib.decompressobj()
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._buffer:
            piece = self._inner.read(READ)
            if not piece:
                self._buffer = self._z.flush()
                if not self._buffer:
                    return 0
                break
            self._buffer = self._z.decompress(piece, READ)
            if self._z.unconsumed_tail:
                self._inner.seek(-len(self._z.unconsumed_tail), os.SEEK_CUR)
        n = min(len(buffer), len(self._buffer))
        buffer[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


# -- Keras --------------------------------------------------------------------------------------

_KERAS_MODULES = re.compile(r"^(keras|keras_hub|keras_nlp|keras_cv|tf_keras)(\.|$)")


def _check_keras_config(config: Any, result: _Result) -> None:
    """Lambda layers carry code; modules outside Keras are arbitrary imports at load time."""
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("class_name") in {"Lambda", "__lambda__", "TFOpLambda"}:
                result.bad("Keras Lambda layer: arbitrary Python code runs at load time")
            module = node.get("module")
            if isinstance(module, str) and module and not _KERAS_MODULES.match(module):
                result.bad(f"Keras config references module {module[:120]!r}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _scan_hdf5(handle: IO[bytes], size: int, result: _Result, limits: ScanLimits) -> None:
    """Keras 2 HDF5: the model config is a JSON attribute; look for Lambda and foreign modules
    in the raw bytes (no HDF5 library, so nothing is interpreted)."""
    if size > limits.max_inspect_bytes:
        raise _Unsafe(f"HDF5 file of {size} bytes is larger than the inspection limit")
    handle.seek(0)
    tail = b""
    lambda_pattern = re.compile(rb'"class_name":\s*"(Lambda|__lambda__|TFOpLambda)"')
    module_pattern = re.compile(rb'"module":\s*"([^"]{1,200})"')
    while True:
        piece = handle.read(READ)
        if not piece:
            break
        window = tail + piece
        if lambda_pattern.search(window):
            result.bad("Keras Lambda layer in HDF5 model config: arbitrary code at load time")
        for match in module_pattern.finditer(window):
            module = match.group(1).decode("latin1")
            if not _KERAS_MODULES.match(module):
                result.bad(f"HDF5 model config references module {module!r}")
        tail = piece[-512:]
        if result.unsafe:
            return


# -- GGUF -----------------------------------------------------------------------------------------

_GGUF_SCALARS = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def _scan_gguf(handle: IO[bytes], size: int) -> None:
    """Structure only: version, counts and every metadata key/value within the file."""
    handle.seek(4)
    (version,) = struct.unpack("<I", handle.read(4))
    if version not in (2, 3):
        raise _Unsafe(f"unsupported GGUF version {version}")
    tensors, kvs = struct.unpack("<QQ", handle.read(16))
    if tensors > 1_000_000 or kvs > 1_000_000:
        raise _Unsafe(f"implausible GGUF counts ({tensors} tensors, {kvs} metadata entries)")

    def string() -> str:
        (length,) = struct.unpack("<Q", handle.read(8))
        if length > 16 * 1024 * 1024 or handle.tell() + length > size:
            raise _Unsafe(f"GGUF string of {length} bytes runs past the file")
        return handle.read(length).decode("utf-8", "replace")

    def value(kind: int, depth: int = 0) -> None:
        if kind in _GGUF_SCALARS:
            handle.seek(_GGUF_SCALARS[kind], os.SEEK_CUR)
        elif kind == 8:
            string()
        elif kind == 9 and depth == 0:
            item_kind, count = struct.unpack("<IQ", handle.read(12))
            if count > size:
                raise _Unsafe(f"GGUF array of {count} items runs past the file")
            if item_kind in _GGUF_SCALARS:
                handle.seek(_GGUF_SCALARS[item_kind] * count, os.SEEK_CUR)
            else:
                for _ in range(count):
                    value(item_kind, depth + 1)
        else:
            raise _Unsafe(f"unknown GGUF value type {kind}")
        if handle.tell() > size:
            raise _Unsafe("GGUF metadata runs past the end of the file")

    for _ in range(kvs):
        string()
        (kind,) = struct.unpack("<I", handle.read(4))
        value(kind)


# -- ONNX -----------------------------------------------------------------------------------------


class _Truncated(Exception):
    pass


def _varint(handle: IO[bytes]) -> int:
    shift = result = 0
    while True:
        byte = handle.read(1)
        if not byte:
            raise _Truncated("truncated varint")
        result |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _pb_fields(handle: IO[bytes], end: int) -> Iterator[tuple[int, int, Any]]:
    """Top-level fields of a protobuf message in [tell(), end): (number, wire type, value).
    Length-delimited values are returned as (offset, length) and skipped, never read."""
    while handle.tell() < end:
        key = _varint(handle)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ValueError("field number 0")
        if wire == 0:
            yield number, wire, _varint(handle)
        elif wire == 1:
            handle.seek(8, os.SEEK_CUR)
            yield number, wire, None
        elif wire == 5:
            handle.seek(4, os.SEEK_CUR)
            yield number, wire, None
        elif wire == 2:
            length = _varint(handle)
            start = handle.tell()
            if start + length > end:
                raise _Truncated("length-delimited field runs past its message")
            yield number, wire, (start, length)
            handle.seek(start + length)
        else:
            raise ValueError(f"unsupported wire type {wire}")


# message -> {field number: message type} for the paths where tensors and subgraphs live
_ONNX_PATHS: dict[str, dict[int, str]] = {
    "model": {7: "graph", 25: "function", 20: "training"},
    "training": {1: "graph", 2: "graph"},
    "function": {7: "node"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 10: "tensor", 6: "graph", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {13: "entry"},
}


def _scan_onnx(
    path: str, handle: IO[bytes], size: int, result: _Result,
    sibling: Callable[[str], bool] | None,
) -> None:  # fmt: skip
    """External-data locations must stay inside the version: relative, no '..', present."""
    handle.seek(0)
    stack: list[tuple[str, int, int]] = [("model", 0, size)]
    visited = 0
    while stack:
        kind, start, end = stack.pop()
        visited += 1
        if visited > 1_000_000:
            raise _Unsafe("ONNX graph is implausibly large")
        handle.seek(start)
        entry: dict[int, str] = {}
        for number, wire, value in _pb_fields(handle, end):
            if kind == "entry" and wire == 2 and number in (1, 2):
                offset, length = value
                position = handle.tell()
                handle.seek(offset)
                entry[number] = handle.read(min(length, 4096)).decode("utf-8", "replace")
                handle.seek(position)
                continue
            child = _ONNX_PATHS.get(kind, {}).get(number)
            if child and wire == 2:
                offset, length = value
                stack.append((child, offset, offset + length))
        if kind == "entry" and entry.get(1) == "location":
            _check_external_location(path, entry.get(2, ""), result, sibling)


def _check_external_location(
    path: str, location: str, result: _Result, sibling: Callable[[str], bool] | None
) -> None:
    problem = _member_name_problem(location)
    if problem or not location:
        result.bad(f"ONNX external data location {location[:120]!r}: {problem or 'empty'}")
        return
    target = PurePosixPath(path).parent / location
    if ".." in target.parts:
        result.bad(f"ONNX external data location {location[:120]!r} leaves the version")
    elif sibling is not None and not sibling(location):
        result.bad(f"ONNX external data {location[:120]!r} is not a regular file of the version")
    else:
        result.note(f"external data: {target.as_posix()}")


# -- text -----------------------------------------------------------------------------------------


def _scan_text_or_unknown(
    handle: IO[bytes], size: int, head: bytes, result: _Result, limits: ScanLimits
) -> None:
    try:
        head.decode("utf-8")
        is_text = b"\x00" not in head
    except UnicodeDecodeError as exc:
        is_text = exc.start >= len(head) - 3 and b"\x00" not in head  # a cut multibyte char
    if not is_text:
        result.format = Format.UNKNOWN
        result.note("unrecognized binary format (no known loader deserializes it)")
        return
    result.format = Format.TEXT
    if size <= limits.max_json_bytes and head.lstrip()[:1] in (b"{", b"["):
        handle.seek(0)
        try:
            json_loads(handle.read(size), what="JSON file", max_bytes=limits.max_json_bytes)
            result.format = Format.JSON
        except AttestError:
            pass
