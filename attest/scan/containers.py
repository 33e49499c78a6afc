"""Containers: every member of every zip and tar, every codec a model loader opens.

Zips are found by their end-of-central-directory record (bytes prepended do not hide one:
Python's ``zipfile`` opens it), duplicate member names are refused, and each member is scanned by
its ``ZipInfo`` through the full dispatch, whatever its name. Tars: every member of every format
``tarfile`` reads (v7, GNU, PAX); members of unknown type are scanned as regular files (GNU tar
extracts them). Compressed streams (gzip, bz2, xz, lzma-alone, zlib, lz4 frame, zstd) are
inflated under a ratio limit and an absolute limit, stopping as soon as either is passed.
"""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import io
import lzma
import os
import re
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import IO, Any

from attest.errors import AttestError
from attest.jsonsafe import loads as json_loads
from attest.scan.core import (
    HEAD,
    READ,
    Context,
    Format,
    LimitReached,
    Malformed,
    NoReading,
    Result,
    ScanVerdict,
    ScratchFailure,
    Unsafe,
    inflate_limit,
    scan_any,
    spool,
)


def member_name_problem(name: str) -> str | None:
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if "\\" in name:
        return "backslash in path"
    if ".." in PurePosixPath(name).parts:
        return "'..' escapes its root (path traversal, zip slip)"
    if "\x00" in name:
        return "NUL in name"
    return None


class Window(io.RawIOBase):
    """A seekable, read-only window [start, start+length) of another seekable stream."""

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
        if not len(view):
            return 0
        self._inner.seek(self._start + self._pos)
        data = self._inner.read(len(view))
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)


# -- zip ------------------------------------------------------------------------------------------

_EOCD = b"PK\x05\x06"
_STORAGE = re.compile(
    r"(?:^|/)(?:data/[^/]+|\.data/[^/]+|byteorder|version|\.format_version|"
    r"\.storage_alignment)$"
)


def is_zip(head: bytes, handle: IO[bytes], size: int) -> bool:
    if head[:4] == b"PK\x03\x04":
        return True
    tail = min(size, 65535 + 22)
    handle.seek(size - tail)
    if _EOCD not in handle.read(tail):
        return False
    try:
        zipfile.ZipFile(handle).close()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        return False  # an end record by chance: no zip reader opens it either
    return True


def scan_zip(handle: IO[bytes], size: int, context: Context, result: Result) -> None:
    try:
        _one_directory(handle)
        with zipfile.ZipFile(handle) as archive:
            _scan_archive(archive, handle, context, result)
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        NotImplementedError,
        RuntimeError,
        EOFError,
        struct.error,
    ) as exc:
        raise Malformed(f"zip: {exc}") from None


def _one_directory(handle: IO[bytes]) -> None:
    """Python's zipfile finds the central directory relative to the end record (so bytes
    prepended to an archive shift nothing); readers that take the recorded offset as absolute
    (miniz, in torch) may find another directory there. Two directories: refuse to judge."""
    record = zipfile._EndRecData(handle)  # type: ignore[attr-defined]
    if record is None:
        return
    directory_size, directory_offset = record[zipfile._ECD_SIZE], record[zipfile._ECD_OFFSET]  # type: ignore[attr-defined]
    shift = record[zipfile._ECD_LOCATION] - directory_size - directory_offset  # type: ignore[attr-defined]
    if shift > 0:
        handle.seek(directory_offset)
        if handle.read(4) == b"PK\x01\x02":
            raise LimitReached(
                "zip: a central directory at the recorded offset and another one "
                f"{shift} bytes later; zip readers disagree on which holds the members"
            )


def _scan_archive(
    archive: zipfile.ZipFile, handle: IO[bytes], context: Context, result: Result
) -> None:
    limits = context.limits
    infos = archive.infolist()
    if len(infos) > limits.max_archive_members:
        raise LimitReached(f"zip has {len(infos)} members (limit {limits.max_archive_members})")
    seen: set[str] = set()
    declared = 0
    for info in infos:
        name = info.filename
        if name in seen:
            result.flag(
                ScanVerdict.UNSAFE,
                f"zip member {name[:120]!r} appears twice (readers disagree on which one counts)",
            )
        seen.add(name)
        problem = member_name_problem(name)
        if problem:
            result.flag(ScanVerdict.UNSAFE, f"zip member {name[:120]!r}: {problem}")
        if stat.S_ISLNK(info.external_attr >> 16):
            result.flag(ScanVerdict.UNSAFE, f"zip member {name[:120]!r} is a symbolic link")
        if info.flag_bits & 0x1:
            result.flag(
                ScanVerdict.UNSCANNABLE,
                f"zip member {name[:120]!r} is encrypted (cannot be inspected)",
            )
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > inflate_limit(limits, info.compress_size):
            result.flag(
                ScanVerdict.UNSCANNABLE,
                f"zip member {name[:120]!r} inflates {ratio:.0f}x "
                f"(limit {limits.max_compression_ratio}x): decompression bomb",
            )
        declared += info.file_size
    if declared > limits.max_inflated_bytes:
        result.flag(
            ScanVerdict.UNSCANNABLE,
            f"zip inflates to {declared} bytes (limit {limits.max_inflated_bytes})",
        )
    if result.verdict is not ScanVerdict.CLEAN:
        return
    files = [i for i in infos if not i.is_dir()]
    names = {i.filename for i in files}
    # Labels only: every member gets the full dispatch whatever the others are called.
    pytorch = any(PurePosixPath(n).name == "data.pkl" for n in names)
    if pytorch:
        result.format = Format.PYTORCH_ZIP
        if any("/code/" in f"/{n}" for n in names):
            result.flag(
                ScanVerdict.UNSAFE, "TorchScript archive: its code/ members run when loaded"
            )
    elif "config.json" in names and names & {"model.weights.h5", "metadata.json"}:
        result.format = Format.KERAS_ZIP
    elif names and all(n.endswith(".npy") for n in names):
        result.format = Format.NUMPY_ZIP
    for info in files:
        member = _open_member(archive, handle, info, context)
        try:
            inner_context = context.inner(info.filename)
            if pytorch and _STORAGE.search(info.filename):
                # raw tensor bytes for torch, unless another reading identifies them
                inner_context = dataclasses.replace(inner_context, tensor_data=True)
            inner = scan_any(member, info.file_size, inner_context)
            if info.filename == "config.json":  # Keras reads a root config.json, always
                _check_keras_member(member, info.file_size, context, inner)
        finally:
            member.close()
        result.merge(inner, f"{info.filename}: ")


def _open_member(
    archive: zipfile.ZipFile, handle: IO[bytes], info: zipfile.ZipInfo, context: Context
) -> IO[bytes]:
    """A seekable stream of one member's bytes: a window on the archive for stored members
    (nothing copied), an inflated copy under the bomb limits otherwise."""
    with archive.open(info) as opened:  # checks the local header against the directory
        if info.compress_type == zipfile.ZIP_STORED:
            handle.seek(info.header_offset + 26)
            name_len, extra_len = struct.unpack("<HH", handle.read(4))
            start = info.header_offset + 30 + name_len + extra_len
            return io.BufferedReader(Window(handle, start, info.file_size), READ)
        limit = min(inflate_limit(context.limits, info.compress_size), info.file_size)
        return spool(opened, limit, f"zip member {info.filename[:120]!r}")


def _check_keras_member(member: IO[bytes], size: int, context: Context, inner: Result) -> None:
    from attest.scan.formats import check_keras_config

    member.seek(0)
    try:
        config = json_loads(
            member.read(context.limits.max_json_bytes + 1),
            what="keras config.json",
            max_bytes=context.limits.max_json_bytes,
        )
    except AttestError as exc:
        inner.flag(ScanVerdict.UNSCANNABLE, f"keras config.json: {exc}")
        return
    try:
        check_keras_config(config, inner, "Keras config.json")
    except Unsafe as exc:
        inner.flag(ScanVerdict.UNSAFE, str(exc))


# -- tar ------------------------------------------------------------------------------------------


def is_tar(head: bytes, handle: IO[bytes], size: int) -> bool:
    """Whatever ``tarfile`` reads a first member from (its own header parsing, not a copy of
    it: v7 headers have no magic, and its number parsing strips more than whitespace)."""
    if len(head) < 512:
        return False
    try:
        with tarfile.open(fileobj=handle, mode="r:") as archive:
            return archive.next() is not None
    except (tarfile.TarError, OSError, ValueError, EOFError, UnicodeError):
        return False


def scan_tar(handle: IO[bytes], size: int, context: Context, result: Result) -> None:
    limits = context.limits
    count = 0
    try:
        with tarfile.open(fileobj=handle, mode="r:") as archive:
            for member in archive:
                count += 1
                if count > limits.max_archive_members:
                    raise LimitReached(f"tar has more than {limits.max_archive_members} members")
                name = member.name
                problem = member_name_problem(name)
                if problem:
                    result.flag(ScanVerdict.UNSAFE, f"tar member {name[:120]!r}: {problem}")
                if member.issym() or member.islnk():
                    result.flag(ScanVerdict.UNSAFE, f"tar member {name[:120]!r} is a link")
                    continue
                if member.isdev() or member.isfifo():
                    result.flag(
                        ScanVerdict.UNSAFE, f"tar member {name[:120]!r} is a device or FIFO"
                    )
                    continue
                if member.isdir():
                    continue
                # regular files and members of unknown type (GNU tar extracts those as files)
                extracted = archive.extractfile(member)
                if extracted is None:  # pragma: no cover - only links and specials
                    continue
                with extracted:
                    inner = scan_any(extracted, member.size, context.inner(name))
                result.merge(inner, f"{name}: ")
            # tarfile stops at a header it cannot read; GNU tar skips to the next one it can
            # and extracts what follows: after the archive's end, only zero padding
            handle.seek(archive.offset)
            while chunk := handle.read(READ):
                if chunk.strip(b"\0"):
                    raise Malformed("tar: data after the archive's end (GNU tar reads on)")
    except tarfile.TarError as exc:
        raise Malformed(f"tar: {exc}") from None


# -- compressed streams ---------------------------------------------------------------------------


_XZ_MAGIC = b"\xfd7zXZ\x00"
_ALONE_HEADER = 13
#: Streams one lzma reading follows before it calls the file unscannable (each may be an empty
#: 13-byte .lzma stream: a loader goes through them all, and so must the scan).
_MAX_LZMA_STREAMS = 100_000


def _lzma_auto(head: bytes) -> bool:
    """Whether liblzma's automatic detection (what ``lzma.open``, joblib and pandas use) takes
    the bytes for a .lzma stream: its header check is picky (dictionary sizes 2^n or
    2^n + 2^(n-1), a plausible size), so random data practically never passes it."""
    if head.startswith(_XZ_MAGIC) or len(head) < _ALONE_HEADER:
        return False
    try:
        lzma.LZMADecompressor(format=lzma.FORMAT_AUTO).decompress(head[:_ALONE_HEADER])
    except lzma.LZMAError:
        return False
    return True


def _lzma_alone(head: bytes) -> bool:
    """liblzma's .lzma decoder accepts any dictionary size: whether it gives a first byte (a
    reader that names FORMAT_ALONE takes any header, and one that asks for little output gets
    what comes before an error further on). Most binary data does: its reading, which fails
    within a few hundred bytes, counts only for what is unsafe in it (:func:`_scan_stream`)."""
    if len(head) < 14 or head[0] >= 225:
        return False
    decoder = lzma.LZMADecompressor(format=lzma.FORMAT_ALONE)
    try:
        out = decoder.decompress(head, 1)
    except (lzma.LZMAError, ValueError, EOFError):
        return False
    return bool(out)  # an empty stream (zeros decode to one) holds nothing to load


#: joblib's pre-0.9.3 format: b"ZF", the inflated length in hex padded to 19 bytes, a zlib stream
#: (joblib's reader skips one space after the header: older writers padded to 20)
_ZF_HEADER = 2 + 19
#: How much input a zlib stream that failed may have consumed and still be no reading (beyond
#: it, a failure is malformed whatever it inflated: bounds the byte-by-byte probe).
_NO_READING_PROBE = 64 * 1024


def _zlib_header(head: bytes) -> bool:
    return len(head) >= 2 and head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0


def compression_kinds(head: bytes) -> list[str]:
    """Every compressed stream a loader could take the bytes for: at most one with a magic
    number, and the formats without one (a zlib header, lzma-alone properties), which the
    same bytes can carry as well. Each is a reading of its own (a zlib-looking first byte must
    not hide an lzma-alone stream)."""
    kinds: list[str] = []
    if head[:2] == b"\x1f\x8b":
        kinds.append("gzip")
    elif head[:3] == b"BZh" and head[3:4] in b"123456789" and head[3:4]:
        kinds.append("bz2")
    elif head[:6] == b"\xfd7zXZ\x00":
        kinds.append("xz")
    elif _zstd_magic(head):
        kinds.append("zstd")
    elif head[:4] == b"\x04\x22\x4d\x18":
        kinds.append("lz4")
    elif head[:2] == b"ZF" and _zf_length(head) is not None:
        kinds.append("joblib-zf")
    if _zlib_header(head):
        try:  # no magic number: a reading exists only if the decoder accepts the first bytes
            zlib.decompressobj().decompress(head, 1)
            kinds.append("zlib")
        except (zlib.error, ValueError):
            pass
    if not kinds or kinds[-1] != "xz":  # (an xz reading follows .lzma streams after it)
        if _lzma_auto(head) or _lzma_alone(head):
            kinds.append("lzma-alone")
    return kinds


def _zstd_magic(head: bytes) -> bool:
    """A zstd frame, a skippable frame (zstd readers skip it, so it may hide the frame after
    it: 0x184D2A50-5F), or a legacy zstd frame (0xFD2FB51E-27, which some builds decode)."""
    if len(head) < 4:
        return False
    magic = int.from_bytes(head[:4], "little")
    return (
        magic == 0xFD2FB528
        or 0x184D2A50 <= magic <= 0x184D2A5F
        or 0xFD2FB51E <= magic <= 0xFD2FB527
    )


def _zf_length(head: bytes) -> int | None:
    """The inflated length a ``ZF`` header names, as joblib's reader parses it (``int(…, 16)``);
    None when that fails, and with it the reader, before any stream is read."""
    try:
        return int(head[2:_ZF_HEADER], 16)
    except ValueError:
        return None


def _zf_body(handle: IO[bytes], size: int) -> IO[bytes]:
    handle.seek(_ZF_HEADER)
    start = _ZF_HEADER + (handle.read(1) == b" ")  # as joblib's reader does
    return io.BufferedReader(Window(handle, start, max(0, size - start)), READ)


def _decompressor(kind: str, handle: IO[bytes]) -> IO[bytes]:
    stream: Any
    if kind == "gzip":
        stream = gzip.GzipFile(fileobj=handle, mode="rb")
    elif kind == "bz2":
        stream = bz2.BZ2File(handle)
    elif kind in ("xz", "lzma-alone"):
        stream = io.BufferedReader(_LzmaReader(handle), READ)
    elif kind == "zlib":
        stream = io.BufferedReader(_ZlibReader(handle, salvage=True), READ)
    elif kind == "joblib-zf":
        handle.seek(0, os.SEEK_END)
        stream = io.BufferedReader(_ZlibReader(_zf_body(handle, handle.tell())), READ)
    elif kind == "lz4":
        try:
            import lz4.frame
        except ImportError:  # pragma: no cover - a declared dependency
            raise LimitReached("lz4 stream and no lz4 decoder installed") from None
        stream = lz4.frame.LZ4FrameFile(handle, mode="rb")
    elif kind == "zstd":
        try:
            import zstandard
        except ImportError:  # pragma: no cover - a declared dependency
            raise LimitReached("zstd stream and no zstd decoder installed") from None
        stream = zstandard.ZstdDecompressor().stream_reader(
            handle, read_across_frames=True, closefd=False
        )
    else:  # pragma: no cover - compression_kinds names no other
        raise Malformed(f"unknown compression {kind}")
    return stream  # type: ignore[no-any-return]


def is_compressed(head: bytes, handle: IO[bytes], size: int) -> bool:
    return bool(compression_kinds(head))


def scan_compressed(handle: IO[bytes], size: int, context: Context, result: Result) -> None:
    """Each compressed reading of the file (:func:`compression_kinds`); the worst decides.
    Raises NoReading when none exists (a bare zlib header that inflates nothing)."""
    handle.seek(0)
    kinds = compression_kinds(handle.read(HEAD))
    readings: list[tuple[str, Result]] = []
    for kind in kinds:
        reading = Result(format=Format.COMPRESSED)
        try:
            _scan_stream(kind, handle, size, context, reading)
        except NoReading:
            continue
        except Unsafe as exc:
            reading.flag(ScanVerdict.UNSAFE, str(exc))
        except LimitReached as exc:
            reading.flag(ScanVerdict.UNSCANNABLE, str(exc))
        except Malformed as exc:
            reading.flag(ScanVerdict.UNSCANNABLE, f"malformed compressed: {exc}"[:300])
        readings.append((kind, reading))
    if not readings:
        raise NoReading("no compressed reading: " + ", ".join(kinds))
    _, worst = max(readings, key=lambda r: (r[1].verdict.severity, r[1].pickle))
    result.format, result.verdict = worst.format, worst.verdict
    result.findings.extend(worst.findings)
    result.pickle = any(r.pickle for _, r in readings)
    for kind, other in readings:
        if other is not worst and other.verdict is not ScanVerdict.CLEAN:
            result.findings.extend(f"as {kind}: {f}" for f in other.findings)


def _scan_stream(kind: str, handle: IO[bytes], size: int, context: Context,
                 result: Result) -> None:  # fmt: skip
    limit = inflate_limit(context.limits, size)
    handle.seek(0)
    try:
        with _decompressor(kind, handle) as stream:
            inflated = spool(stream, limit, f"{kind} stream")
            broken = getattr(getattr(stream, "raw", None), "broken", None)
    except (LimitReached, ScratchFailure):
        raise
    except context.propagate:
        raise
    except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError, RuntimeError) as exc:
        # (the readers of the formats without a magic number judge their own failures)
        raise Malformed(f"{kind} stream: {exc}") from None
    except Exception as exc:  # lz4 / zstandard raise their own error types
        raise Malformed(f"{kind} stream: {type(exc).__name__}: {exc}") from None
    with inflated:
        inflated.seek(0, os.SEEK_END)
        inner_size = inflated.tell()
        if inner_size == 0 and kind in ("lzma-alone", "zlib"):
            # (no magic number: empty .lzma streams, zero bytes each, open many raw files, and
            # the text "x^" opens a zlib stream that fails before its first byte)
            raise NoReading(f"{kind} streams that yield nothing")
        inner = scan_any(inflated, inner_size, context.inner(kind))
    if (
        broken is not None
        and inner.verdict.severity <= ScanVerdict.UNKNOWN.severity
        and not inner.pickle
        and inner_size <= _CHANCE_OUTPUT
    ):
        # A little that holds nothing a reader could run, from a stream that fails: a chance
        # header (the text "x^2" starts a zlib stream that yields a byte, then fails), which
        # identifies nothing. The file is judged by its other readings. More, or anything
        # that reads as a pickle, is at best unknown.
        raise NoReading(f"{broken}; nothing in what it yields")
    result.format = Format.JOBLIB if inner.format is Format.PICKLE else Format.COMPRESSED
    result.note(f"{kind}-compressed {inner.format}")
    result.merge(inner, "")
    if broken is not None:
        result.flag(ScanVerdict.UNKNOWN, broken)


class _ZlibReader(io.RawIOBase):
    """The bytes of a zlib stream, and of each further zlib stream concatenated to it (a reader
    that continues across streams gets them too).

    ``salvage`` (a bare zlib stream: its two-byte header occurs by chance, in the text ``x^2``
    and in random data): a stream that fails within its first :data:`_NO_READING_PROBE` bytes
    of input gives what a reader feeding it in the smallest pieces gets before the error, and
    the reading ends there (:attr:`broken` says why, when that is anything); so does one that
    is cut short. Otherwise, and for a stream that fails later, the failure is malformed."""

    #: Why the reading ended early: its last stream failed after yielding bytes.
    broken: str | None = None

    def __init__(self, inner: IO[bytes], *, salvage: bool = False) -> None:
        self._inner = inner
        self._salvage = salvage
        self._z = zlib.decompressobj()
        self._pending = b""
        self._fed = bytearray()  # the current stream's input, up to _NO_READING_PROBE + 1 bytes
        self._out = 0  # bytes the current stream's decoder handed out
        self._ended = False

    def readable(self) -> bool:
        return True

    def _feed(self, data: bytes, *, new: bool) -> bytes:
        if new and len(self._fed) <= _NO_READING_PROBE:
            self._fed += data[: _NO_READING_PROBE + 1 - len(self._fed)]
        try:
            out = self._z.decompress(data, READ)
        except zlib.error as exc:
            salvaged = _salvage(zlib.decompressobj, bytes(self._fed)) if self._salvage else None
            if salvaged is None:
                raise Malformed(f"zlib stream: {exc}") from None
            self._ended = True  # readers stop at the error
            if salvaged or self._out:
                self.broken = f"zlib stream fails after {len(salvaged)} bytes: {exc}"
            return salvaged[self._out :]
        self._out += len(out)
        return out

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            if self._ended:
                return 0
            if self._z.eof:
                rest = self._z.unused_data + self._inner.read(2)
                if not _zlib_header(rest):
                    return 0
                self._z = zlib.decompressobj()  # another stream follows
                self._fed, self._out = bytearray(), 0
                self._pending = self._feed(rest, new=True)
                continue
            tail = self._z.unconsumed_tail
            piece = tail or self._inner.read(READ)
            if not piece:
                self._pending = self._z.flush()
                self._out += len(self._pending)
                if not self._pending:
                    if not self._z.eof and not self._salvage:
                        raise Malformed("zlib stream is truncated")
                    if not self._z.eof and self._out:  # judged as a stream that fails
                        self.broken = f"zlib stream is truncated after {self._out} bytes"
                    return 0
                break
            self._pending = self._feed(piece, new=not tail)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def _empty_zero_stream() -> int:
    """How many zero bytes liblzma reads as one empty .lzma stream (header and range coder)."""
    decoder = lzma.LZMADecompressor(format=lzma.FORMAT_ALONE)
    decoder.decompress(bytes(64))
    return 64 - len(decoder.unused_data) if decoder.eof else 0


_ZERO_STREAM = _empty_zero_stream()
_XZ_HEADER = 12


class _LzmaReader(io.RawIOBase):
    """The bytes of an .xz or .lzma stream and of every stream after it, as liblzma's readers
    go on (``lzma.open``: each next stream .xz, or .lzma with a header its picky detection
    takes; a reader that names FORMAT_ALONE, when the first stream is .lzma: any .lzma header).
    Runs of zero bytes are empty .lzma streams to liblzma (18 bytes each), skipped as such.

    A stream that fails within its first :data:`_NO_READING_PROBE` bytes of input gives what a
    reader feeding it in the smallest pieces gets before the error (a decoder discards what it
    decoded in a call that fails, so a reader fed smaller pieces than here gets more): when that
    is nothing, the stream is no data and the reading ends there, as readers stop (trailing
    data); otherwise the reading is those bytes and ends there, :attr:`broken` says why (such a
    reading counts only for what is unsafe in it: a stream that fails identifies nothing); so
    does one cut short. A stream that fails later, and any failure of a file that starts with
    the .xz magic number, is malformed. (Random data behind an
    .lzma header fails within a few hundred bytes: raw arrays of small integers often start
    with one.)"""

    #: Why the reading ended early: its last stream failed after yielding bytes.
    broken: str | None = None

    def __init__(self, inner: IO[bytes]) -> None:
        self._inner = inner
        self._pending = b""
        self._streams = 0
        self._begun = False  # a stream (an empty one of zeros included) was read
        self._out = 0  # bytes the current stream's decoder handed out
        self._fmt = lzma.FORMAT_ALONE
        self._fed = bytearray()  # the current stream's input, up to _NO_READING_PROBE bytes
        head = self._inner.read(READ)
        self._alone = not head.startswith(_XZ_MAGIC)  # a FORMAT_ALONE reader may read it
        self._d = self._next(head)

    def readable(self) -> bool:
        return True

    def _feed(self, decoder: lzma.LZMADecompressor, data: bytes) -> bytes:
        if len(self._fed) <= _NO_READING_PROBE:
            self._fed += data[: _NO_READING_PROBE + 1 - len(self._fed)]
        try:
            out = decoder.decompress(data, READ)
        except lzma.LZMAError as exc:
            fmt = self._fmt
            salvaged = _salvage(lambda: lzma.LZMADecompressor(format=fmt), bytes(self._fed))
            if salvaged is None:
                raise Malformed(f"lzma stream: {exc}") from None
            if not salvaged and not self._out:
                raise _Ends from None
            if not self._alone:  # an .xz magic number says what the file is: malformed
                raise Malformed(f"lzma stream: {exc}") from None
            self.broken = f"lzma stream fails after {len(salvaged)} bytes: {exc}"
            return salvaged[self._out :]
        self._out += len(out)
        return out

    def _next(self, rest: bytes) -> lzma.LZMADecompressor | None:
        """The decoder of the stream ``rest`` starts (None: nothing more), fed its first bytes."""
        while True:
            while len(rest) < READ and (more := self._inner.read(READ)):
                rest += more
            zeros = len(rest) - len(rest.lstrip(b"\0"))
            empty = zeros // _ZERO_STREAM if _ZERO_STREAM else 0
            if not empty:
                break
            self._begun = True
            rest = rest[empty * _ZERO_STREAM :]  # (no decoder to make: not counted as streams)
        if not rest:
            return None
        follower = self._begun
        self._begun = True
        self._streams += 1
        if self._streams > _MAX_LZMA_STREAMS:
            raise LimitReached(f"more than {_MAX_LZMA_STREAMS} lzma streams")
        if rest.startswith(_XZ_MAGIC):
            self._fmt = lzma.FORMAT_XZ
        elif not follower or self._alone or _lzma_auto(rest):
            self._fmt = lzma.FORMAT_ALONE
        else:
            return None  # trailing data no reader takes for a stream
        decoder = lzma.LZMADecompressor(format=self._fmt)
        self._out = 0
        self._fed = bytearray()
        try:
            self._pending = self._feed(decoder, rest)
        except _Ends:
            return None
        return None if self.broken else decoder

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            decoder = self._d
            if decoder is None:
                return 0
            if decoder.eof:
                self._d = self._next(decoder.unused_data)
                continue
            piece = self._inner.read(READ) if decoder.needs_input else b""
            if decoder.needs_input and not piece:
                self._d = None  # ends before its first byte: readers get nothing from it
                if self._out and not self._alone:
                    raise Malformed("lzma stream is truncated")
                if self._out:  # (no magic number: judged as a stream that fails)
                    self.broken = f"lzma stream is truncated after {self._out} bytes"
                return 0
            try:
                self._pending = self._feed(decoder, piece)
            except _Ends:
                self._d = None
                return 0
            if self.broken:
                self._d = None  # the reading ends after what the failing stream gave
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


#: Most that a failing stream without a magic number may yield and still be a chance header
#: (random data behind one yields a few hundred bytes before its error).
_CHANCE_OUTPUT = 4096
#: Most output :func:`_salvage` takes from a failing stream (more: malformed).
_SALVAGE_LIMIT = 16 * 1024 * 1024


def _salvage(decoder_of: Callable[[], Any], fed: bytes) -> bytes | None:
    """What a reader that feeds a stream's start ``fed`` (at most :data:`_NO_READING_PROBE`
    bytes of it) byte by byte to a decoder from ``decoder_of`` (zlib's or liblzma's), and reads
    the failing byte's output a byte at a time, gets before the stream's error: a decoder
    throws away what it decoded in a call that fails. None: no error within the probe's bound,
    or more than :data:`_SALVAGE_LIMIT` bytes before it."""
    fed = fed[:_NO_READING_PROBE]
    decoder = decoder_of()
    out = bytearray()
    for failing in range(len(fed)):
        try:
            out += decoder.decompress(fed[failing : failing + 1])
        except (zlib.error, lzma.LZMAError):
            break
        if decoder.eof or len(out) > _SALVAGE_LIMIT:
            return None
    else:
        return None
    decoder = decoder_of()
    if decoder.decompress(fed[:failing]) != out:  # pragma: no cover - decoders are deterministic
        return None
    try:
        piece = decoder.decompress(fed[failing : failing + 1], 1)
        while piece:
            out += piece
            # (zlib hands back the input it did not take; liblzma keeps it)
            piece = decoder.decompress(getattr(decoder, "unconsumed_tail", b""), 1)
    except (zlib.error, lzma.LZMAError):
        return bytes(out)
    return None  # pragma: no cover - the same error, fed in smaller pieces


class _Ends(Exception):
    """The current lzma stream yields nothing before it fails: the reading ends there."""
