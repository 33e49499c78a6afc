"""The object headers of an HDF5 file, as far as the scan needs them: the datatype of every
dataset and committed datatype, so that variable-length data libhdf5 converts on reading is not
taken for the bytes the file stores; and whatever makes a loader read another file, wherever it
is named: External File Lists (a dataset's raw bytes), virtual datasets (a dataset mapped from
datasets of other files) and external links (a group member that is an object of another file),
in an object header or in a group's dense link storage.

PyTables reads a variable-length array with the native form of its element type, and unpickles
the rows of an object array (``PSEUDOATOM`` ``object``) from what that conversion gives: a
big-endian ``uint16`` element, or a 2-byte integer whose 8 significant bits sit at bit offset 4,
turns bytes that hold no pickle into one. The scan walks the stored bytes of every global heap
object, so a variable-length sequence whose elements are converted on reading cannot be judged,
and makes the file unscannable.

Object headers are found without following the file's links (the scan does not trust them to
reach everything a loader reaches): every version-2 header by its ``OHDR`` signature, every
version-1 header by a prefix whose messages tile its first chunk (as libhdf5 requires; less
than a message header may be left over, which releases before 1.14 read), and the continuation
chunks both name. Reading them has a step budget per file (past it: unscannable). Shared
messages kept in a shared-message heap (SOHM) have no header there; a file whose shared-message
table indexes datatypes is refused.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from typing import IO, Any

from attest.scan.core import LimitReached, Unsafe

_OHDR = re.compile(rb"OHDR\x02")
_SMTB = re.compile(rb"SMTB")
_LINK_INFO, _DATATYPE, _LINK, _EXTERNAL_FILES, _LAYOUT, _CONTINUATION = 2, 3, 6, 7, 8, 0x10
_READ_KINDS = frozenset({_LINK_INFO, _DATATYPE, _LINK, _EXTERNAL_FILES, _LAYOUT, _CONTINUATION})
_EXTERNAL_LINK = 64  # a link message's type for a link to an object of another file
_VIRTUAL = 3  # a layout message's class (layout versions 3 on) for a virtual dataset
_FHDB = re.compile(rb"FHDB\x00")
#: a link message that names its type (flags bit 3, no reserved bit), of the external type
_EXTERNAL_LINK_START = re.compile(rb"\x01[\x08-\x0f\x18-\x1f]\x40")
#: the heap ID length libhdf5 gives a group's dense link storage: an object stored in its ID
#: (a "tiny" object, at most the ID's length less one byte) cannot be a link message then
_LINK_HEAP_ID = 7
MAX_HEADERS = 1_000_000  # object header candidates of one file (its caller counts them)
_MAX_CHUNK = 1 << 30  # a first chunk libhdf5 would allocate
_MIN_STEPS = 200_000  # the header-reading budget of a small file
_PREFILTER_STEPS = 16  # messages of a version-1 candidate checked in the vectorised prefilter
_ZEROS = bytes(8)
_ZERO_BLOCK = 1024 * 1024
#: IEEE little-endian floats as libhdf5 describes its native ones: size -> (sign location,
#: exponent location, exponent size, mantissa location, mantissa size, exponent bias). Half
#: floats are not among them: a libhdf5 without a native one widens them on reading.
_NATIVE_FLOATS = {4: (31, 23, 8, 0, 23, 127), 8: (63, 52, 11, 0, 52, 1023)}


def ohdr_starts(window: bytes, carried: int) -> list[int]:
    return [m.start() for m in _OHDR.finditer(window) if m.end() > carried]


def smtb_starts(window: bytes, carried: int) -> list[int]:
    return [m.start() for m in _SMTB.finditer(window) if m.end() > carried]


def fhdb_starts(window: bytes, carried: int) -> list[int]:
    return [m.start() for m in _FHDB.finditer(window) if m.end() > carried]


def v1_candidates(data: Any, window_length: int, carried: int) -> list[int]:
    """Offsets (in ``data``, a numpy view of the window and what follows it) that may start a
    version-1 object header: version 1 (the next byte is reserved and not checked), at least one
    message, and a first chunk whose messages, as far as :data:`_PREFILTER_STEPS` of them are
    in ``data``, each have a size that is a multiple of 8, are no more than the header
    declares, and end inside the chunk. Vectorised: every byte 1 is a candidate."""
    import numpy as np

    at = np.flatnonzero(data[:window_length] == 1)
    at = at[(at >= carried) & (at + 24 <= len(data))]

    def word(where: Any, width: int) -> Any:
        where = np.minimum(where, len(data) - width)
        value = np.zeros(len(where), dtype=np.int64)
        for i in range(width):
            value |= data[where + i].astype(np.int64) << (8 * i)
        return value

    messages, chunk = word(at + 2, 2), word(at + 8, 4)
    keep = (messages > 0) & (chunk >= 8) & (chunk <= _MAX_CHUNK)
    at, messages, chunk = at[keep], messages[keep], chunk[keep]
    cursor, end = at + 16, at + 16 + chunk
    alive = np.ones(len(at), dtype=bool)
    walking = np.flatnonzero((end - cursor >= 8) & (cursor + 4 <= len(data)))
    for step in range(_PREFILTER_STEPS):  # tile the first chunks, all candidates at once
        if not len(walking):
            break
        length = word(cursor[walking] + 2, 2)
        ok = (length % 8 == 0) & (step < messages[walking])
        ok &= cursor[walking] + 8 + length <= end[walking]
        alive[walking[~ok]] = False
        walking = walking[ok]
        cursor[walking] += 8 + length[ok]
        walking = walking[
            (end[walking] - cursor[walking] >= 8) & (cursor[walking] + 4 <= len(data))
        ]
    return [int(i) for i in at[alive]]


def check_headers(
    handle: IO[bytes],
    size: int,
    v1: list[int],
    v2: list[int],
    tables: list[int],
    blocks: list[int],
    offsets: int,
    lengths: int,
    base: int,
) -> None:
    """Raise :class:`Unsafe` when an object header has an External File List (a dataset whose
    data h5py and PyTables read from files named in it, wherever they are), a virtual dataset's
    layout or an external link, or when a group's dense link storage (the fractal heap its link
    info names, whose direct blocks start at ``blocks``) holds an external link; raise
    :class:`LimitReached` when a datatype message of an object header is a variable-length
    sequence whose elements libhdf5 converts on reading, or when the file's shared-message
    table indexes datatypes (they are then stored without a header)."""
    for at in tables:
        _shared_datatypes(handle, at, offsets, size)
    budget = _Steps(max(_MIN_STEPS, size // 16))  # real headers: a message per ~40 bytes
    chunks: list[tuple[int, int, int, int]] = []  # (start, end, version, creation-order bytes)
    for at in v1:
        handle.seek(at)
        prefix = handle.read(16)
        count = int.from_bytes(prefix[2:4], "little")
        chunk = int.from_bytes(prefix[8:12], "little")
        start = at + 16
        if start + chunk <= size and _tiles(handle, start, start + chunk, count, budget):
            chunks.append((start, start + chunk, 1, 0))
    for at in v2:
        first = _v2_prefix(handle, at, size)
        if first is not None:
            chunks.append(first)
    # a chunk is read once per way of reading it: a decoy version-2 header naming the bytes of
    # a real version-1 chunk must not stand in for it (the thirteenth attack round)
    seen: set[tuple[int, int, int, int]] = set()
    parsed: set[int] = set()
    link_heaps: set[int] = set()
    while chunks:
        start, end, version, order = reading = chunks.pop()
        if reading in seen:
            continue
        seen.add(reading)
        for kind, at, body in _messages(handle, start, end, version, order, budget):
            if kind == _DATATYPE and at not in parsed:  # candidates may share messages
                parsed.add(at)
                budget.take(len(body) // 8)
                reason = _converted(body)
                if reason:
                    raise LimitReached(
                        f"an HDF5 variable-length datatype at byte {at} holds {reason}, "
                        "which libhdf5 converts on reading: the bytes a loader unpickles are "
                        "not the stored ones"
                    )
            elif kind == -1:
                raise LimitReached(
                    f"an HDF5 datatype message at byte {at} refers to the shared-message heap, "
                    "where the scan does not read datatypes"
                )
            elif kind == _EXTERNAL_FILES and body[:1] == b"\x01" and body[6:8] != b"\0\0":
                raise Unsafe(
                    f"an HDF5 dataset keeps its data in external files (External File List at "
                    f"byte {at}): loaders read them wherever they are"
                )
            elif kind == _LAYOUT and body[:1] >= b"\x03" and body[1:2] == bytes([_VIRTUAL]):
                raise Unsafe(
                    f"an HDF5 dataset is virtual (layout at byte {at}): loaders read its data "
                    "from the datasets of other files it maps, wherever they are"
                )
            elif kind == _LINK and _external_link(body):
                raise Unsafe(
                    f"an HDF5 group has an external link (link message at byte {at}): loaders "
                    "open the file it names, wherever it is"
                )
            elif kind == _LINK_INFO:
                link_heaps.update(_link_heap(body, offsets))
            elif kind == _CONTINUATION and len(body) >= offsets + lengths:
                address = int.from_bytes(body[:offsets], "little")
                length = int.from_bytes(body[offsets : offsets + lengths], "little")
                for where in {address, base + address}:
                    chunks.extend(
                        _continuation(handle, where, length, version, order, size, budget)
                    )
    if link_heaps:
        _dense_links(handle, link_heaps, blocks, offsets, lengths, base, size, budget)


def _external_link(body: bytes, more: Callable[[int, int], bytes] | None = None) -> bool:
    """Whether a link message is an external link as libhdf5 decodes one: version 1, flags
    naming the link type (bit 3) with no reserved bit set, type 64, then (after the optional
    creation order and character set) the name's length in 1-8 bytes, a name of at least one
    byte, and the link's information: 2 bytes of length, then a version-0 byte (flag 0 or 1) and
    the file's name. An empty file name does not count (nothing can be opened by it). ``body``
    is a whole message; information past its end counts (libhdf5 releases differ in checking
    its bounds). Given ``more`` (offset, count -> the bytes there, fewer at the end of the
    file), ``body`` is only the message's start and the rest is read through it."""
    if len(body) < 3 or body[0] != 1 or body[2] != _EXTERNAL_LINK:
        return False
    flags = body[1]
    if flags & 0xE0 or not flags & 0x08:
        return False
    cursor = 3 + (8 if flags & 0x04 else 0) + (1 if flags & 0x10 else 0)
    width = 1 << (flags & 3)
    raw = body[cursor : cursor + width]
    if len(raw) < width:
        return more is None
    name = int.from_bytes(raw, "little")
    if name == 0:
        return False  # libhdf5 refuses a link without a name
    info = cursor + width + name + 2  # past the information's length
    raw = body[info : info + 2] if more is None else more(info, 2)
    if len(raw) < 2:
        return more is None  # the file ends before it: nothing to read
    return raw[0] in (0, 1) and raw[1] != 0


def _power_of_two(value: int) -> bool:
    return 0 < value < 1 << 32 and value & (value - 1) == 0


def _link_heap(body: bytes, offsets: int) -> list[int]:
    """The fractal heap of a link info message's dense link storage, if it has one: version 0,
    flags (bit 0: the maximum creation index follows, 8 bytes), then the heap's address."""
    if len(body) < 2 or body[0] != 0:
        return []
    cursor = 2 + (8 if body[1] & 0x01 else 0)
    raw = body[cursor : cursor + offsets]
    if len(raw) < offsets or raw == b"\xff" * offsets:
        return []
    return [int.from_bytes(raw, "little")]


def _dense_links(
    handle: IO[bytes],
    heaps: set[int],
    blocks: list[int],
    offsets: int,
    lengths: int,
    base: int,
    size: int,
    budget: _Steps,
) -> None:
    """Look for external links in the dense link storage of groups: the fractal heaps named by
    their link info messages. libhdf5 reads a link from a heap's direct blocks (each begins
    "FHDB", version 0, then its heap's address, which libhdf5 checks), so every block that
    names one of ``heaps`` is searched, up to the heap's largest direct block size (a power of
    two no smaller than the starting size, or the heap is refused), for the
    start of an external link message wherever it lies. Links a heap could keep elsewhere are
    refused: "huge" objects (stored outside the blocks, found through a B-tree, or through the
    address and length in the heap ID when the file's offsets and lengths are small enough to
    fit there) and "tiny" ones (stored in the heap ID) when its IDs are longer than libhdf5
    gives link heaps."""
    undefined = b"\xff" * offsets
    reach: dict[int, int] = {}  # heap address as the file writes it -> largest block size
    for heap in heaps:
        for where in {heap, base + heap}:
            handle.seek(where)
            raw = handle.read(16 + 11 * lengths + 2 * offsets + lengths)
            if raw[:5] != b"FRHP\x00" or len(raw) < 16 + 12 * lengths + 2 * offsets:
                continue
            id_length = int.from_bytes(raw[5:7], "little")
            huge_tree = raw[14 + lengths : 14 + lengths + offsets]
            # a huge object's address and length fit in the ID itself when the file's
            # sizes are small enough, and libhdf5 then reads it without the B-tree
            direct = offsets + lengths <= id_length - 1
            if huge_tree != undefined or direct or id_length > _LINK_HEAP_ID:
                raise LimitReached(
                    f"the HDF5 link heap at byte {where} may keep links outside its blocks "
                    "(huge objects, or IDs long enough to hold one), where the scan does not "
                    "read them"
                )
            # the starting and the largest direct block sizes: libhdf5 writes powers of two,
            # and its reader derives block sizes from their logarithms without checking them
            # (a largest size of 612 makes blocks of 2,048 bytes)
            cursor = 16 + 10 * lengths + 2 * offsets
            start = int.from_bytes(raw[cursor : cursor + lengths], "little")
            largest = int.from_bytes(raw[cursor + lengths : cursor + 2 * lengths], "little")
            if not _power_of_two(start) or not _power_of_two(largest) or start > largest:
                raise LimitReached(
                    f"the HDF5 link heap at byte {where} declares block sizes libhdf5 does not "
                    f"write ({start} and {largest} bytes), from which it derives others"
                )
            reach[heap] = max(reach.get(heap, 0), min(largest, size))
    spans = []
    for start in blocks:
        handle.seek(start + 5)
        named = int.from_bytes(handle.read(offsets), "little")
        if named in reach:
            spans.append((start, min(start + reach[named], size)))
    cursor = 0
    for start, end in sorted(spans):  # overlapping blocks are read once
        start = max(start, cursor)
        if start >= end:
            continue
        handle.seek(start)
        data = handle.read(end - start + 2)
        budget.take(1 + len(data) // 1024)
        for m in _EXTERNAL_LINK_START.finditer(data):
            if m.start() >= end - start:
                break
            budget.take()
            at = start + m.start()

            def more(offset: int, count: int, at: int = at) -> bytes:
                handle.seek(at + offset)
                return handle.read(count)

            if _external_link(more(0, 3 + 8 + 1 + 8), more):
                raise Unsafe(
                    f"an HDF5 group has an external link (in its dense link storage, at byte "
                    f"{at}): loaders open the file it names, wherever it is"
                )
        cursor = end


def _v2_prefix(handle: IO[bytes], at: int, size: int) -> tuple[int, int, int, int] | None:
    handle.seek(at + 5)
    flags_raw = handle.read(1)
    if not flags_raw:
        return None
    flags = flags_raw[0]
    cursor = at + 6 + (16 if flags & 0x20 else 0) + (4 if flags & 0x10 else 0)
    width = 1 << (flags & 3)
    handle.seek(cursor)
    chunk = int.from_bytes(handle.read(width), "little")
    start = cursor + width
    end = min(start + chunk, size)
    return start, end, 2, 2 if flags & 0x04 else 0


def _continuation(
    handle: IO[bytes],
    address: int,
    length: int,
    version: int,
    order: int,
    size: int,
    budget: _Steps,
) -> list[tuple[int, int, int, int]]:
    if address + length > size or length <= 0:
        return []
    if version == 1:
        tiled = _tiles(handle, address, address + length, 0xFFFF, budget)
        return [(address, address + length, 1, 0)] if tiled else []
    handle.seek(address)
    if handle.read(4) != b"OCHK":
        return []
    return [(address + 4, address + length - 4, 2, order)]


class _Steps:
    """Messages the header reading of one file may step over before it counts as a stall (a
    KiB of zeros read counts as one), and the runs of zeros already measured."""

    def __init__(self, total: int) -> None:
        self.left = total
        self.zero_runs: dict[tuple[int, int, int], int] = {}

    def take(self, steps: int = 1) -> None:
        self.left -= steps
        if self.left < 0:
            raise LimitReached("the HDF5 object headers take more steps to read than the scan "
                               "allows")  # fmt: skip


def _header_size(version: int, order: int) -> int:
    return 8 if version == 1 else 4 + order


def _tiles(handle: IO[bytes], start: int, end: int, count: int, budget: _Steps) -> bool:
    """Whether at most ``count`` version-1 messages fill [start, end), each message's size a
    multiple of 8, as libhdf5 requires of a version-1 chunk; less than a message header may be
    left over (libhdf5 1.14 refuses that gap, earlier releases read the file). A run of empty
    null messages (zero bytes) is stepped over at once."""
    cursor = start
    while end - cursor >= 8:
        budget.take()
        handle.seek(cursor)
        raw = handle.read(8)
        if len(raw) < 8:
            return False
        if raw == _ZEROS[:8]:
            run = _zero_run(handle, cursor, end, 8, budget)
            count -= run // 8
            cursor += run
            if count < 0:
                return False
            continue
        if count <= 0:
            return False
        count -= 1
        length = int.from_bytes(raw[2:4], "little")
        if length % 8:
            return False
        cursor += 8 + length
    return cursor <= end


def _zero_run(handle: IO[bytes], start: int, end: int, unit: int, budget: _Steps) -> int:
    """How many bytes of whole ``unit``-byte groups of zeros start at ``start`` (before
    ``end``): empty null messages. Read in blocks that grow from 256 bytes, each KiB read
    charged to the budget; a run measured once is remembered."""
    key = (start, end, unit)
    if key in budget.zero_runs:
        return budget.zero_runs[key]
    cursor, block = start, 256
    while end - cursor >= unit:
        handle.seek(cursor)
        piece = handle.read(min(end - cursor, block))
        budget.take(1 + len(piece) // 1024)
        zeros = len(piece) - len(piece.lstrip(b"\0"))
        cursor += zeros // unit * unit
        if zeros < len(piece) or not piece:
            break
        block = min(block * 2, _ZERO_BLOCK)
    budget.zero_runs[key] = cursor - start
    return cursor - start


def _messages(
    handle: IO[bytes], start: int, end: int, version: int, order: int, budget: _Steps
) -> list[tuple[int, int, bytes]]:
    """(type, where the body starts, body) of the messages of a chunk the scan reads
    (:data:`_READ_KINDS`). A datatype message flagged as shared holds a reference:
    to a committed datatype (whose own header is read) or, a shared message of version 3 and
    type 1, to the shared-message heap, which is returned as type -1."""
    found = []
    header = _header_size(version, order)
    cursor = start
    while cursor + header <= end:
        budget.take()
        handle.seek(cursor)
        raw = handle.read(header)
        if raw == _ZEROS[:header]:  # empty null messages
            cursor += max(_zero_run(handle, cursor, end, header, budget), header)
            continue
        if version == 1:
            kind, length, flags = struct.unpack_from("<HHB", raw)
        else:
            kind, length, flags = struct.unpack_from("<BHB", raw)
        body_end = cursor + header + length
        if body_end > end:
            break
        if kind in _READ_KINDS:
            handle.seek(cursor + header)
            body = handle.read(length)
            if kind != _DATATYPE or not flags & 0x02:
                found.append((kind, cursor + header, body))
            elif body[:2] == b"\x03\x01":
                found.append((-1, cursor + header, body))
        cursor = body_end
    return found


def _converted(datatype: bytes) -> str | None:
    """What in a variable-length sequence's element type libhdf5 converts on reading, or None
    (not a sequence, or elements read as stored)."""
    if len(datatype) < 8 or datatype[0] & 0x0F != 9 or datatype[1] & 0x0F == 1:
        return None  # not variable-length, or a string (libhdf5 takes any other type for one)
    try:
        reason, _, _ = _element(datatype, 8, 0)
    except (IndexError, struct.error, ValueError):
        return "an element type the scan cannot read"
    return reason


def _element(raw: bytes, at: int, depth: int) -> tuple[str | None, int, int]:
    """(what libhdf5 converts in the datatype at ``at``, or None; its native alignment; where
    its encoding ends). A datatype is read as stored when its native form (what PyTables reads
    it as) is the same bytes: integers and bitfields of 1, 2, 4 or 8 bytes, little-endian, all
    bits significant; IEEE little-endian floats of 4 or 8 bytes; strings and opaque data; enums,
    arrays and compounds of such, a compound's members at the offsets native alignment gives."""
    if depth > 8:
        return "datatypes nested too deeply", 1, at
    if len(raw) < at + 8 or not 1 <= raw[at] >> 4 <= 5:
        raise ValueError("not a datatype")
    kind, version = raw[at] & 0x0F, raw[at] >> 4
    bits = raw[at + 1] | raw[at + 2] << 8 | raw[at + 3] << 16
    width = int.from_bytes(raw[at + 4 : at + 8], "little")
    body = at + 8
    if kind in (0, 4):  # fixed-point, bitfield
        offset, precision = struct.unpack_from("<HH", raw, body)
        if width not in (1, 2, 4, 8):
            return f"{width}-byte integers (no native type of that size)", 1, body + 4
        if bits & 0x06:  # padding bits: libhdf5 then converts (an enum maps values)
            return "integers with padding bits set", 1, body + 4
        if bits & 0x01:  # even of 1 byte: an enum over it is then converted, value by value
            return f"big-endian {width}-byte integers", 1, body + 4
        if offset or precision != 8 * width:
            return f"integers of {precision} bits at bit {offset} of {width} bytes", 1, body + 4
        return None, width, body + 4
    if kind == 1:  # floating point
        offset, precision = struct.unpack_from("<HH", raw, body)
        layout = ((bits >> 8) & 0xFF, *raw[body + 4 : body + 8],
                  int.from_bytes(raw[body + 8 : body + 12], "little"))  # fmt: skip
        if (bits & 0x4F or (bits >> 4) & 3 != 2 or offset or precision != 8 * width
                or _NATIVE_FLOATS.get(width) != layout):  # fmt: skip
            return f"{width}-byte floats unlike the native ones", 1, body + 12
        return None, width, body + 12
    if kind == 2:  # time: no native type, not read
        return None, 1, body + 2
    if kind == 3:  # string
        return None, 1, body
    if kind == 5:  # opaque: a tag of the length its bits give
        return None, 1, body + (bits & 0xFF)
    if kind == 8:  # enum: the base type, then names and values
        reason, align, end = _element(raw, body, depth + 1)
        count = bits & 0xFFFF
        for _ in range(count):
            name_end = raw.index(b"\0", end) + 1
            end = name_end if version >= 3 else end + (name_end - end + 7) // 8 * 8
        return reason, align, end + count * width
    if kind == 10:  # array: rank, (3 reserved bytes before version 3), sizes, permutation
        rank = raw[body]
        start = body + (1 if version >= 3 else 4) + 4 * rank + (0 if version >= 3 else 4 * rank)
        return _element(raw, start, depth + 1)
    if kind == 6:  # compound
        return _compound(raw, body, bits & 0xFFFF, width, version, depth)
    return f"elements of datatype class {kind}", 1, body  # reference, sequence


def _compound(
    raw: bytes, at: int, count: int, width: int, version: int, depth: int
) -> tuple[str | None, int, int]:
    """Members (name, offset, version 1: dimension information, type), as stored; read as
    stored when each is and their offsets and the size are what native alignment gives."""
    offset_bytes = next(n for n in (1, 2, 3, 4) if width < 1 << (8 * n) or n == 4)
    cursor, expected, widest, reason = at, 0, 1, None
    for _ in range(count):
        name_end = raw.index(b"\0", cursor) + 1
        cursor = name_end if version >= 3 else cursor + (name_end - cursor + 7) // 8 * 8
        if version >= 3:
            offset = int.from_bytes(raw[cursor : cursor + offset_bytes], "little")
            cursor += offset_bytes
        else:
            offset = int.from_bytes(raw[cursor : cursor + 4], "little")
            cursor += 4 + (28 if version == 1 else 0)
        member_at = cursor
        member, align, cursor = _element(raw, member_at, depth + 1)
        size = int.from_bytes(raw[member_at + 4 : member_at + 8], "little")
        expected = -(-expected // align) * align
        if member or offset != expected:
            reason = reason or member or "compound members at offsets native alignment moves"
        expected, widest = offset + size, max(widest, align)
    if -(-expected // widest) * widest != width:
        reason = reason or "a compound padded unlike its native form"
    return reason, widest, cursor


def _shared_datatypes(handle: IO[bytes], at: int, offsets: int, size: int) -> None:
    """A shared-message table: "SMTB", then up to 8 indexes (version 0, type, message type
    flags, minimum size, list and B-tree cutoffs, count, index and heap addresses). Bit 3 of
    the flags shares datatype messages."""
    entry = 1 + 1 + 2 + 4 + 2 + 2 + 2 + 2 * offsets
    handle.seek(at + 4)
    raw = handle.read(8 * entry)
    for i in range(0, len(raw) - entry + 1, entry):
        if raw[i] != 0:  # the index type is not checked by libhdf5 either
            return
        if int.from_bytes(raw[i + 2 : i + 4], "little") & 0x08:
            raise LimitReached(
                f"the HDF5 file shares datatype messages (table at byte {at}), which are then "
                "stored where the scan does not read datatypes"
            )
