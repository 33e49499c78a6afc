"""Formats parsed in full from their own headers: safetensors, NumPy, HDF5 (Keras), GGUF, text.

Each ``is_*`` says whether the bytes claim the format; each ``scan_*`` parses it and raises
:class:`Unsafe` (code-capable content), :class:`Malformed` or :class:`LimitReached`
(unscannable), or returns with the result clean.
"""

from __future__ import annotations

import ast
import bisect
import codecs
import contextlib
import functools
import io
import json
import re
import struct
from collections.abc import Iterator
from typing import IO, Any

from attest.errors import AttestError
from attest.jsonsafe import loads as json_loads
from attest.scan import hdf5_headers
from attest.scan.core import (
    READ,
    Context,
    Format,
    LimitReached,
    Malformed,
    NoReading,
    Result,
    ScanVerdict,
    Unsafe,
)
from attest.scan.pickles import _global_name, is_allowed

# -- safetensors ----------------------------------------------------------------------------------

_ST_DTYPES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "F8_E8M0": 1,
    "F4": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
    "C64": 8,
}


def is_safetensors(head: bytes, handle: IO[bytes], size: int) -> bool:
    if size < 10 or len(head) < 10:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    # a header that cannot fit the file is no claim to the format (no loader reads it either)
    return 2 <= length <= size - 8 and head[8:9] == b"{"


def scan_safetensors(handle: IO[bytes], size: int, context: Context, result: Result) -> None:
    """Header only: bounded JSON, known dtypes, shapes x dtype = byte ranges, ranges contiguous
    from 0, and the file exactly as long as header + data. Tensors are never loaded."""
    limits = context.limits
    (length,) = struct.unpack("<Q", handle.read(8))
    if length > limits.max_safetensors_header:
        raise Malformed(
            f"safetensors header length {length} exceeds the cap {limits.max_safetensors_header}"
        )
    if 8 + length > size:
        raise Malformed(f"safetensors header length {length} is longer than the file ({size})")
    raw = handle.read(length)
    try:
        header = json_loads(raw.rstrip(b" "), what="safetensors header", max_bytes=length)
    except AttestError as exc:
        raise Malformed(str(exc)) from None
    if not isinstance(header, dict):
        raise Malformed("safetensors header is not a JSON object")
    ranges: list[tuple[int, int, str]] = []
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in info.items()
            ):
                raise Malformed("safetensors __metadata__ must map strings to strings")
            continue
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise Malformed(f"tensor {name[:80]!r}: expected dtype, shape and data_offsets")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in _ST_DTYPES:
            raise Malformed(f"tensor {name[:80]!r}: unknown dtype {str(dtype)[:20]!r}")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**63 for d in shape
        ):
            raise Malformed(f"tensor {name[:80]!r}: shape must be non-negative integers")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        ):
            raise Malformed(f"tensor {name[:80]!r}: data_offsets must be two integers")
        begin, end = offsets
        count = 1
        for d in shape:
            count *= d
            if count * _ST_DTYPES[dtype] >= 2**63:
                raise Malformed(f"tensor {name[:80]!r}: shape overflows 64 bits")
        expected = (count + 1) // 2 if dtype == "F4" else count * _ST_DTYPES[dtype]
        if not 0 <= begin <= end or end - begin != expected:
            raise Malformed(
                f"tensor {name[:80]!r}: data_offsets {begin}..{end} do not hold "
                f"{expected} bytes of {dtype}{shape}"
            )
        ranges.append((begin, end, name))
    ranges.sort()
    position = 0
    for begin, end, name in ranges:
        if begin != position:
            kind = "overlaps the previous tensor" if begin < position else "leaves a gap"
            raise Malformed(f"tensor {name[:80]!r} {kind} (starts at {begin}, expected {position})")
        position = end
    data_size = size - 8 - length
    if position != data_size:
        what = "trailing bytes after" if data_size > position else "file ends before"
        raise Malformed(f"safetensors: {what} the tensor data ({data_size} vs {position} bytes)")


# -- NumPy ----------------------------------------------------------------------------------------

#: descr strings NumPy's writer produces for dtypes without objects, and their item sizes
_PLAIN_DESCR = re.compile(r"[<>|=]?(?:(?P<kind>[biufcSUV])(?P<size>\d+)|(?P<dt>[Mm]8)(?:\[\w+\])?)")
_OBJECT_DESCR = re.compile(r"O|object")


def is_npy(head: bytes, handle: IO[bytes], size: int) -> bool:
    return head[:6] == b"\x93NUMPY"


def _descr_objects(descr: Any, depth: int = 0) -> bool:
    """Whether a header ``descr`` holds an object field (its data is then a pickle), with
    NumPy's own spellings (``'O'``, ``'|O'``, ``'object'``, ``'f4,O'``, structured lists,
    nested fields); a descr that is neither provably plain nor an object is malformed."""
    if depth > 16:
        raise Malformed(".npy dtype nests too deeply")
    if isinstance(descr, str):
        if _PLAIN_DESCR.fullmatch(descr):
            return False
        if _OBJECT_DESCR.search(descr):
            return True
        raise Malformed(f".npy descr {descr[:40]!r} is not a dtype NumPy writes")
    if isinstance(descr, list) and descr:
        found = False
        for item in descr:
            if not isinstance(item, tuple) or len(item) not in (2, 3):
                raise Malformed(".npy structured descr entries must be (name, dtype[, shape])")
            found = _descr_objects(item[1], depth + 1) or found
        return found
    raise Malformed(".npy descr is neither a dtype string nor a list of fields")


def _itemsize(descr: str) -> int | None:
    match = _PLAIN_DESCR.fullmatch(descr)
    if match is None:
        return None
    if match.group("dt"):
        return 8
    size = int(match.group("size"))
    return size * 4 if match.group("kind") == "U" else size


def npy_header(handle: IO[bytes]) -> tuple[dict[str, Any], int]:
    """The header dict of a .npy stream positioned at its start, and where its data begins."""
    magic = handle.read(8)
    major = magic[6]
    if major == 1:
        (header_len,) = struct.unpack("<H", handle.read(2))
    elif major in (2, 3):
        (header_len,) = struct.unpack("<I", handle.read(4))
    else:
        raise Malformed(f"unknown .npy format version {major}")
    if header_len > 1024 * 1024:
        raise Malformed(f".npy header of {header_len} bytes is implausible")
    raw = handle.read(header_len)
    if len(raw) != header_len:
        raise Malformed(".npy header is truncated")
    text = raw.decode("utf-8" if major == 3 else "latin-1")
    try:
        header = ast.literal_eval(text)  # literals only: never evaluates code
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise Malformed(f".npy header is not a literal dict: {exc}") from None
    if not isinstance(header, dict) or set(header) != {"descr", "shape", "fortran_order"}:
        raise Malformed(".npy header must hold exactly descr, fortran_order and shape")
    return header, handle.tell()


def scan_npy(handle: IO[bytes], size: int, context: Context, result: Result) -> None:
    from attest.scan.readings import pickle_reading

    header, start = npy_header(handle)
    descr, shape = header["descr"], header["shape"]
    if not isinstance(shape, tuple) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise Malformed(".npy shape must be a tuple of non-negative integers")
    if _descr_objects(descr):
        result.pickle = True
        result.note("object array: its data is a pickle")
        payload = pickle_reading(handle, start, size, context)
        if payload is None:
            raise Malformed("object array whose data is not a pickle")
        result.merge(payload, "object data: ")
        return
    itemsize = _itemsize(descr) if isinstance(descr, str) else None
    if itemsize is not None:
        count = 1
        for d in shape:
            count *= d
        expected, data = count * itemsize, size - start
        if data != expected:
            raise Malformed(f".npy holds {data} data bytes, its header describes {expected}")


# -- HDF5 / Keras ---------------------------------------------------------------------------------

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_KERAS_MODULES = re.compile(r"^(keras|keras_hub|keras_nlp|keras_cv|tf_keras)(\.|$)")
_KERAS_CODE_CLASSES = {"Lambda", "__lambda__", "TFOpLambda"}
#: modules inside Keras that a config must not name (file and network access, e.g. get_file)
_KERAS_GADGETS = re.compile(r"^(keras|tf_keras)(\.src)?\.(utils|saving)(\.|$)")
_JSON_START = re.compile(rb"\{[ \t\r\n]*\"")
_EMBEDDED_PICKLE = re.compile(rb"\x80[\x02-\x05]")
#: the name line of a protocol-0 GLOBAL or INST, after the module line's newline. A literal
#: first byte keeps the search fast; the module line and its opcode are found from here.
_NAME_LINE = re.compile(rb"\n[A-Za-z_][\w.]{0,255}\n")
_WORD = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")
#: first bytes of an attribute's datatype whose value PyTables may unpickle: a string, a
#: variable-length type or an array (of strings: numpy reads an array of no dimensions as its
#: base type) (classes 3, 9, 10; versions 1-5), or in attribute messages of version 2 and
#: later, a shared message (version 1-3) naming a committed datatype, which may be any of them
_STRING_TYPES = tuple(version << 4 | kind for version in range(1, 6) for kind in (3, 9, 10))
_SHARED_MESSAGES = (1, 2, 3)
#: an attribute message's header and its three parts at most (each part's size is 2 bytes,
#: padded to 8 in version 1): the bytes past a window its candidates may need
_ATTRIBUTE_REACH = 9 + 3 * 0x10000
_GLOBAL_HEAP = re.compile(rb"GCOL\x01")  # a global heap collection: variable-length values
#: PyTables < 2.0 pickled its filters under this name; PyTables rewrites the first one in a
#: ``FILTERS`` value to ``(ctables.filters\n`` (or ``(i…``) before unpickling it
_PYTABLES_LEAF = re.compile(rb"\(([ic])tables\.Leaf\n")
_FRACTAL_HEAP = re.compile(rb"FRHP\x00")  # a fractal heap: dense attribute and link storage
_MAX_JSON_CANDIDATES = 200_000
_MAX_PICKLE_CANDIDATES = 500_000
_MAX_HEAP_OBJECTS = 1_000_000
_MIN_WALK_OPS = 1_000_000  # the embedded-pickle budget of a small HDF5 file
#: the third-party packages ML environments commonly hold, beyond the standard library
_ML_PACKAGES = frozenset(
    {"numpy", "torch", "tensorflow", "keras", "tf_keras", "jax", "pandas", "tables", "h5py",
     "scipy", "sklearn", "joblib", "dill", "cloudpickle", "transformers", "onnx", "yaml",
     "requests", "urllib3", "IPython", "setuptools", "pip", "pkg_resources", "fire", "boto3",
     "botocore", "s3fs", "fsspec", "huggingface_hub", "datasets", "accelerate", "mlflow"}
)  # fmt: skip


def hdf5_offsets(size: int) -> list[int]:
    """Where an HDF5 superblock may start: 0, then 512 and every power of two after it."""
    offsets, offset = [0], 512
    while offset + 8 <= size:
        offsets.append(offset)
        offset *= 2
    return offsets


def is_hdf5(head: bytes, handle: IO[bytes], size: int) -> bool:
    for offset in hdf5_offsets(size):
        handle.seek(offset)
        if handle.read(8) == _HDF5_SIGNATURE:
            return True
    return False


def check_keras_config(config: Any, result: Result, where: str) -> None:
    """Lambda layers carry code; modules outside Keras are arbitrary imports at load time."""
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            class_name = node.get("class_name")
            if isinstance(class_name, str) and class_name in _KERAS_CODE_CLASSES:
                raise Unsafe(
                    f"Keras {node.get('class_name')} layer in {where}: "
                    "arbitrary Python code runs at load time"
                )
            module, registered = node.get("module"), node.get("registered_name")
            if isinstance(module, str) and module and not _KERAS_MODULES.match(module):
                raise Unsafe(f"{where} references module {module[:120]!r}")
            if isinstance(module, str) and _KERAS_GADGETS.match(module):
                raise Unsafe(f"{where} references {module[:120]!r}, which reaches files and "
                             "the network at load time")  # fmt: skip
            if isinstance(registered, str) and ">" in registered:
                package = registered.split(">", 1)[0]
                if not _KERAS_MODULES.match(package):
                    raise Unsafe(f"{where} references custom object {registered[:120]!r}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


class _Budget:
    """Bytes of JSON decoding one file may cost before it counts as a stall (unscannable)."""

    def __init__(self, total: int) -> None:
        self.left = total

    def spend(self, amount: int) -> None:
        self.left -= amount
        if self.left < 0:
            raise LimitReached("the JSON documents in the HDF5 file cost more to decode than the "
                               "scan allows")  # fmt: skip


def _json_at(
    handle: IO[bytes], offset: int, size: int, limit: int, budget: _Budget
) -> tuple[Any, int] | None:
    """The JSON document starting at ``offset`` and where it ends, or None. Reads 4 KiB first and
    more only while the document is merely cut off (an unterminated string, or an error within
    the last 16 characters of what was read); any other error ends the attempt."""
    decoder = json.JSONDecoder()
    span = 4096
    while True:
        length = min(span, size - offset, limit)
        budget.spend(length)
        handle.seek(offset)
        raw = handle.read(length)
        text = raw.decode("utf-8", "surrogateescape")  # one character per undecodable byte
        try:
            value, end = decoder.raw_decode(text)
        except json.JSONDecodeError as exc:
            # cut off: an unterminated string, or an error in the window's last characters
            # (a \uXXXX escape, a surrogate pair, a literal cut short fails a few back)
            cut = exc.msg.startswith("Unterminated string") or exc.pos >= len(text) - 16
            if cut and length >= limit:  # a document larger than the limit is not skipped
                raise LimitReached(f"a JSON document at byte {offset} of the HDF5 file is larger "
                                   f"than the {limit}-byte limit") from None  # fmt: skip
            if not cut or length < span:
                return None
            span *= 8
            continue
        except RecursionError:
            raise LimitReached("a JSON document in the HDF5 file nests too deeply") from None
        return value, offset + len(text[:end].encode("utf-8", "surrogateescape"))


def _superblock(handle: IO[bytes], size: int) -> tuple[int, int, int]:
    """The superblock after the signature must be one libhdf5 reads (version 0-3, with sizes of
    offsets and lengths it supports): a signature in arbitrary bytes is not an HDF5 file.
    Returns the file's sizes of offsets and of lengths, and where the superblock is."""
    for offset in hdf5_offsets(size):
        handle.seek(offset)
        block = handle.read(16)
        if block[:8] != _HDF5_SIGNATURE:
            continue
        version = block[8] if len(block) > 8 else -1
        if version in (0, 1):
            sizes = block[13:15]
        elif version in (2, 3):
            sizes = block[9:11]
        else:
            raise Malformed(f"HDF5 superblock version {version} at byte {offset}")
        if len(sizes) != 2 or any(b not in (2, 4, 8, 16, 32) for b in sizes):
            raise Malformed(f"HDF5 superblock at byte {offset} has unusable field sizes")
        return sizes[0], sizes[1], offset
    return 8, 8, 0


def scan_hdf5(handle: IO[bytes], size: int, context: Context, result: Result) -> None:
    """HDF5 without an HDF5 library (nothing is interpreted): the superblock is checked, every
    JSON object stored in the file (Keras keeps ``model_config`` there) is decoded in full and
    walked, so spacing, ``\\u`` escapes and long strings hide nothing.

    PyTables (and so ``pandas.read_hdf``) unpickles every string attribute whose value ends in
    ``.``, and every row of an object array, whatever the protocol. So pickles are walked from:
    every protocol-2+ header; the value of every attribute message with a string, array or
    variable-length (or shared) datatype, where the sizes its header declares put it, whatever
    they are (libhdf5 steps over
    name, datatype and dataspace by those sizes, so padding, junk and named datatypes change
    nothing); every object of every global heap collection (variable-length values, wherever
    the array that points at them is stored or compressed). Each of those is walked a second
    time as PyTables rewrites an old file's ``FILTERS`` when it holds ``(ctables.Leaf\\n``.
    Every protocol-0 ``GLOBAL``/``INST`` of a module that could exist where the file is loaded
    is judged where it stands. A fractal heap (dense attribute storage) whose blocks pass
    through filters could hide attributes, and is refused; so is whatever makes a loader read
    another file, wherever it is named (a dataset's External File List, a virtual dataset, an
    external link), and a variable-length dataset whose elements libhdf5 converts on reading
    (PyTables unpickles the converted rows, not the stored ones:
    :mod:`attest.scan.hdf5_headers`). Decoding and walking have one budget per file (a stall
    is unscannable)."""
    import numpy as np

    limits = context.limits
    if size > limits.max_inspect_bytes:
        raise LimitReached(f"HDF5 file of {size} bytes is larger than the inspection limit")
    offset_size, length_size, superblock = _superblock(handle, size)
    json_starts: list[int] = []
    pickle_starts: list[int] = []
    messages: list[int] = []  # where attribute values start, by their messages' headers
    heaps: list[int] = []
    leaves: list[int] = []  # where an old file's pickled filters name tables.Leaf
    #: version-1 and version-2 object headers, shared-message tables, fractal heap blocks
    headers: tuple[list[int], list[int], list[int], list[int]] = ([], [], [], [])
    saw_model_config = False
    position, tail = 0, b""
    handle.seek(0)
    while True:
        piece = handle.read(READ)
        if not piece:
            break
        window = tail + piece
        base = position - len(tail)
        saw_model_config = saw_model_config or b"model_config" in window

        carried = len(tail)
        json_starts.extend(base + at for at in _fresh(_JSON_START, window, carried))
        pickle_starts.extend(base + at for at in _fresh(_EMBEDDED_PICKLE, window, carried))
        for at, module, name in _proto0_imports(window, carried):
            if not is_allowed(*_global_name(module, name, 0)):
                result.flag(ScanVerdict.UNSAFE, f"protocol-0 import of {module}.{name} at byte "
                            f"{base + at} (not allowlisted)")  # fmt: skip
                result.pickle = True
        heaps.extend(base + at for at in _fresh(_GLOBAL_HEAP, window, carried))
        leaves.extend(base + at for at in _fresh(_PYTABLES_LEAF, window, carried))
        for at in _fresh(_FRACTAL_HEAP, window, carried):
            _fractal_heap(handle, base + at, size)
        handle.seek(base + len(window))
        data = np.frombuffer(window + handle.read(_ATTRIBUTE_REACH), np.uint8)
        messages.extend(base + at for at in _attribute_messages(data, len(window), carried))
        headers[0].extend(
            base + at for at in hdf5_headers.v1_candidates(data, len(window), carried)
        )
        headers[1].extend(base + at for at in hdf5_headers.ohdr_starts(window, carried))
        headers[2].extend(base + at for at in hdf5_headers.smtb_starts(window, carried))
        headers[3].extend(base + at for at in hdf5_headers.fhdb_starts(window, carried))
        if (
            len(json_starts) > _MAX_JSON_CANDIDATES
            or len(pickle_starts) + len(messages) > _MAX_PICKLE_CANDIDATES
        ):
            raise LimitReached("too many embedded JSON or pickle candidates to check")
        if sum(map(len, headers)) > hdf5_headers.MAX_HEADERS:
            raise LimitReached("too many HDF5 object header candidates to check")
        position += len(piece)
        tail = piece[-1024:]
        handle.seek(position)
    hdf5_headers.check_headers(handle, size, *headers, offset_size, length_size, superblock)
    keras_config = False
    budget = _Budget(max(4 * size, 4 * limits.max_json_bytes))
    covered = -1  # candidates inside a document already decoded are part of it
    for offset in sorted(set(json_starts)):
        if offset < covered:
            continue
        decoded = _json_at(handle, offset, size, limits.max_json_bytes, budget)
        if decoded is None or not isinstance(decoded[0], dict):
            continue
        value, covered = decoded
        keras_config = keras_config or _mentions_class_name(value)
        check_keras_config(value, result, "HDF5 model config")
    if saw_model_config and not keras_config:
        raise Malformed("the file names a model_config but no readable JSON config was found")
    spans = [(offset, size) for offset in sorted(set(pickle_starts))]
    spans.extend((start, size) for start in messages if start < size)
    spans.extend(_heap_objects(handle, heaps, length_size, size))
    _walk_embedded(handle, spans, leaves, size, context, result)
    if keras_config:
        result.note("Keras model config checked")


def _fresh(pattern: re.Pattern[bytes], window: bytes, carried: int) -> list[int]:
    """Where ``pattern`` matches in ``window``, less the matches wholly inside its first
    ``carried`` bytes (found in the previous window)."""
    return [m.start() for m in pattern.finditer(window) if m.end() > carried]


def _overlapping(pattern: re.Pattern[bytes], data: bytes, step: int) -> Iterator[re.Match[bytes]]:
    """Every match, overlapping ones too: the search resumes ``step`` bytes past a match's
    start when ``step`` is positive, or ``-step`` bytes before its end."""
    position = 0
    while (m := pattern.search(data, position)) is not None:
        yield m
        position = m.start() + step if step > 0 else m.end() + step


def _proto0_imports(window: bytes, carried: int) -> list[tuple[int, str, str]]:
    """Every ``c``/``i`` opcode whose module line, then name line, are names, with a module
    that could exist where the file is loaded: (offset, module, name). Found from each name
    line (two name lines may share a newline), then back along the module line: any c or i in
    it may be the opcode. Judged where they stand, whatever precedes them: an unpickler that
    reaches the opcode imports exactly these names (INST takes its MARK from before it)."""
    found = []
    for m in _overlapping(_NAME_LINE, window, -1):
        if m.end() <= carried:
            continue
        newline = m.start()
        name = window[newline + 1 : m.end() - 1].decode("ascii")
        first = newline
        while first > 0 and newline - first < 257 and window[first - 1] in _WORD:
            first -= 1
        whole = window[first + 1 : newline].decode("ascii")
        if window[first] in b"ci" and is_allowed(*_global_name(whole, name, 0)):
            continue  # an allowlisted import: the c or i inside its module line is its text
        for at in range(first, newline - 1):
            module = window[at + 1 : newline].decode("ascii")
            if window[at] in b"ci" and _known_module(module):
                found.append((at, module, name))
    return found


def _attribute_messages(data: Any, window: int, carried: int) -> list[int]:
    """Where the value of each attribute message whose header starts in the first ``window``
    bytes of ``data`` (a numpy view of them and what follows) begins.

    A header: version 1-3, flags (reserved in version 1; in later ones bit 0 shares the
    datatype, bit 1 the dataspace, and no other bit is allowed), then the sizes of the name, the
    datatype and the dataspace (2 bytes each, padded to 8 in version 1); a name encoding byte in
    version 3. libhdf5 steps over each part by its declared size, whatever the size and
    whatever lies between, so a candidate is any such header after which a string datatype (or a
    shared one) and a dataspace (version 1-2 with a rank up to 32, or a shared one) begin where
    the sizes put them. Vectorised: every byte of the window is a possible header."""
    import numpy as np

    at = np.flatnonzero((data[:window] - np.uint8(1)) <= 2)  # bytes 1-3 (0 wraps)
    at = at[(at >= carried) & (at + 9 < len(data))]  # the carried bytes had a lookahead
    version, flags = data[at], data[at + 1]
    keep = (version == 1) | (flags <= 3)
    at, version, flags = at[keep], version[keep], flags[keep]
    old = version == 1
    flags = np.where(old, 0, flags)  # reserved in version 1: nothing is shared

    def part(offset: int) -> Any:
        declared = data[at + offset].astype(np.int64) | data[at + offset + 1].astype(np.int64) << 8
        return declared, np.where(old, (declared + 7) // 8 * 8, declared)

    names, name_part = part(2)
    _, type_part = part(4)
    _, space_part = part(6)
    datatype = at + np.where(version == 3, 9, 8) + name_part
    dataspace = datatype + type_part
    keep = (names > 0) & (dataspace + 1 < len(data))
    last = len(data) - 2
    type_first = data[np.minimum(datatype, last)]
    space_first = data[np.minimum(dataspace, last)]
    rank = data[np.minimum(dataspace + 1, last)]
    shared_type = (flags & 1) == 1
    shared_space = (flags & 2) == 2
    keep &= np.where(
        shared_type, np.isin(type_first, _SHARED_MESSAGES), np.isin(type_first, _STRING_TYPES)
    )
    keep &= np.where(
        shared_space,
        np.isin(space_first, _SHARED_MESSAGES),
        ((space_first == 1) | (space_first == 2)) & (rank <= 32),
    )
    return [int(value) for value in (dataspace + space_part)[keep]]


@functools.cache
def _known_modules() -> frozenset[str]:
    import _compat_pickle
    import importlib.metadata
    import sys

    installed: set[str] = set()
    with contextlib.suppress(Exception):  # a broken distribution's metadata names nothing
        installed = set(importlib.metadata.packages_distributions())
    return frozenset(
        set(sys.stdlib_module_names) | set(_compat_pickle.IMPORT_MAPPING) | _ML_PACKAGES | installed
    )


def _known_module(dotted: str) -> bool:
    return dotted.split(".", 1)[0] in _known_modules()


def _fractal_heap(handle: IO[bytes], offset: int, size: int) -> None:
    """A fractal heap's header: version 0, heap ID length (2 bytes), then the encoded length of
    its I/O filters (2 bytes). Filtered blocks would hide the attributes stored in them."""
    handle.seek(offset + 5)
    raw = handle.read(4)
    if len(raw) == 4 and int.from_bytes(raw[2:], "little"):
        raise Malformed(f"HDF5 fractal heap at byte {offset} stores its objects through filters, "
                        "which the scan does not decode")  # fmt: skip


def _heap_objects(
    handle: IO[bytes], offsets: list[int], length_size: int, size: int
) -> list[tuple[int, int]]:
    """Every object of every global heap collection, read as libhdf5 reads them: "GCOL",
    version 1, 3 reserved bytes, the collection's size, then records (index: 2 bytes,
    references: 2, reserved: 4, size). A record of index 0 is free space and its size counts its
    own header, whatever that size is; any other is an object whose data follows its header
    and is padded to 8 bytes. Both headers are 8+L bytes padded to 8 (16 with 4-byte lengths);
    what is left after the last record that cannot hold a header is free space."""
    spans: list[tuple[int, int]] = []
    header_size = _align8(8 + length_size)
    for offset in offsets:
        handle.seek(offset + 8)
        collection = int.from_bytes(handle.read(length_size), "little")
        end = min(offset + collection, size)
        cursor = offset + header_size
        while cursor + header_size <= end:
            handle.seek(cursor)
            header = handle.read(8 + length_size)
            index = int.from_bytes(header[:2], "little")
            length = int.from_bytes(header[8:], "little")
            if index == 0:
                if length == 0:
                    break  # libhdf5 would not move on
                cursor += length
                continue
            data = cursor + header_size
            spans.append((data, min(data + length, end)))
            cursor = data + _align8(length)
            if len(spans) > _MAX_HEAP_OBJECTS:
                raise LimitReached("too many variable-length values in the HDF5 file to check")
    return spans


def _align8(n: int) -> int:
    return (n + 7) // 8 * 8


def _walk_embedded(
    handle: IO[bytes],
    spans: list[tuple[int, int]],
    leaves: list[int],
    size: int,
    context: Context,
    result: Result,
) -> None:
    """Walk a pickle from each candidate span, all walks sharing one opcode budget (candidates
    that each run to the end of the file would otherwise cost the square of its size). Most
    candidates are arbitrary bytes (weights that happen to match a pattern), so a walk counts
    when it reaches what a loader could run: a global whose module and name are Python
    identifiers, a ``STACK_GLOBAL`` of computed names, or a limit. Importing a name that is not
    an identifier fails, and so does an extension-registry code (the stock registry is empty).

    A span that holds ``(ctables.Leaf\\n`` (or ``(i…``; ``leaves`` are where they are) is also
    walked as PyTables rewrites it: the first one becoming ``(ctables.filters\\n``."""
    # a real pickle costs at most an opcode per byte; walked from a few candidates, a few times
    budget = min(context.limits.max_pickle_ops, max(_MIN_WALK_OPS, 64 * size))
    for start, end in dict.fromkeys(spans):
        streams: list[tuple[IO[bytes], int]] = [(handle, end)]
        first = bisect.bisect_left(leaves, start)
        if first < len(leaves) and leaves[first] < end:
            rewritten = _Rewritten(handle, leaves[first], size)
            streams.append((io.BufferedReader(rewritten), end + _Rewritten.GROWTH))
        for stream, stop in streams:
            if budget <= 0:
                raise LimitReached("the pickles embedded in the HDF5 file take more opcodes to "
                                   "walk than the scan allows")  # fmt: skip
            budget -= _walk_one(stream, start, stop, budget, result)


class _Rewritten(io.RawIOBase):
    """The file with the ``(ctables.Leaf\\n`` at ``at`` rewritten as PyTables does, 3 bytes
    longer; read through, never copied."""

    GROWTH = len(b"filters") - len(b"Leaf")

    def __init__(self, handle: IO[bytes], at: int, size: int) -> None:
        self.handle, self.at, self.size = handle, at, size + self.GROWTH
        handle.seek(at + 1)
        self.new = b"(" + handle.read(1) + b"tables.filters\n"
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(base + offset, 0)
        return self.position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        position, end = self.position, min(self.position + len(view), self.size)
        if position >= end:
            return 0
        replaced = self.at + len(self.new)
        if position < self.at:
            self.handle.seek(position)
            chunk = self.handle.read(min(end, self.at) - position)
        elif position < replaced:
            chunk = self.new[position - self.at : end - self.at]
        else:
            self.handle.seek(position - self.GROWTH)
            chunk = self.handle.read(end - position)
        view[: len(chunk)] = chunk
        self.position += len(chunk)
        return len(chunk)


def _walk_one(handle: IO[bytes], start: int, end: int, max_ops: int, result: Result) -> int:
    """Walk one candidate, merge what it found when it counts; returns the opcodes it read."""
    from attest.scan.pickles import read_pickles
    from attest.scan.readings import as_result

    reading = read_pickles(handle, start, end, max_ops=max_ops)
    imports = {f"pickle imports {name} (not allowlisted)": name for name in reading.globals}
    runnable = [
        finding
        for finding in reading.unsafe
        if finding not in imports
        or all(part.isidentifier() for part in imports[finding].split("."))
    ]
    if not (runnable or reading.exhausted):
        return reading.ops
    reading.unsafe, reading.undecidable = runnable, []
    embedded = as_result(reading)
    if embedded is not None:
        result.merge(embedded, f"embedded pickle at byte {start}: ")
        result.pickle = True
    return reading.ops


def _mentions_class_name(value: Any) -> bool:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "class_name" in node:
                return True
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


# -- GGUF -----------------------------------------------------------------------------------------

_GGUF_SCALARS = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
#: ggml tensor types: (elements per block, bytes per block)
_GGML_TYPES = {
    0: (1, 4),
    1: (1, 2),
    2: (32, 18),
    3: (32, 20),
    6: (32, 22),
    7: (32, 24),
    8: (32, 34),
    9: (32, 40),
    10: (256, 84),
    11: (256, 110),
    12: (256, 144),
    13: (256, 176),
    14: (256, 210),
    15: (256, 292),
    16: (256, 66),
    17: (256, 74),
    18: (256, 98),
    19: (256, 50),
    20: (32, 18),
    21: (256, 110),
    22: (256, 82),
    23: (256, 136),
    24: (1, 1),
    25: (1, 2),
    26: (1, 4),
    27: (1, 8),
    28: (1, 8),
    29: (256, 56),
    30: (1, 2),
    34: (256, 54),
    35: (256, 66),
    39: (32, 17),
    40: (64, 36),
    41: (128, 18),
}


def is_gguf(head: bytes, handle: IO[bytes], size: int) -> bool:
    return head[:4] == b"GGUF"


class _Reader:
    def __init__(self, handle: IO[bytes], size: int) -> None:
        self.handle, self.size = handle, size

    def read(self, n: int) -> bytes:
        if self.handle.tell() + n > self.size:
            raise Malformed("GGUF header runs past the end of the file")
        return self.handle.read(n)

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))

    def string(self, limit: int = 16 * 1024 * 1024) -> str:
        (length,) = self.unpack("<Q")
        if length > limit:
            raise Malformed(f"GGUF string of {length} bytes is implausible")
        try:
            return self.read(length).decode("utf-8")
        except UnicodeDecodeError:
            raise Malformed("GGUF string is not UTF-8") from None


def scan_gguf(handle: IO[bytes], size: int, context: Context, result: Result) -> None:
    """The whole header: every metadata key/value and every tensor info, each tensor's data
    inside the file at an aligned offset. Nothing in GGUF is code."""
    reader = _Reader(handle, size)
    handle.seek(4)
    (version,) = reader.unpack("<I")
    if version not in (2, 3):
        raise Malformed(f"unsupported GGUF version {version}")
    tensors, kvs = reader.unpack("<QQ")
    if tensors > size // 8 or kvs > size // 8:
        raise Malformed(f"implausible GGUF counts ({tensors} tensors, {kvs} metadata entries)")
    alignment = 32

    def value(kind: int, depth: int = 0) -> Any:
        if kind in _GGUF_SCALARS:
            raw = reader.read(_GGUF_SCALARS[kind])
            return int.from_bytes(raw, "little") if kind in (4,) else None
        if kind == 8:
            return reader.string()
        if kind == 9 and depth < 2:
            item_kind, count = reader.unpack("<IQ")
            if item_kind in _GGUF_SCALARS:
                if count * _GGUF_SCALARS[item_kind] > size:
                    raise Malformed(f"GGUF array of {count} items runs past the file")
                reader.read(_GGUF_SCALARS[item_kind] * count)
            else:
                if count > size:
                    raise Malformed(f"GGUF array of {count} items runs past the file")
                for _ in range(count):
                    value(item_kind, depth + 1)
            return None
        raise Malformed(f"unknown GGUF value type {kind}")

    for _ in range(kvs):
        key = reader.string(65535)
        (kind,) = reader.unpack("<I")
        parsed = value(kind)
        if key == "general.alignment":
            if kind != 4 or not parsed or parsed & (parsed - 1):
                raise Malformed("general.alignment must be a power of two (uint32)")
            alignment = parsed
    infos = []
    for _ in range(tensors):
        name = reader.string(65535)
        (n_dims,) = reader.unpack("<I")
        if not 1 <= n_dims <= 4:
            raise Malformed(f"GGUF tensor {name[:80]!r} has {n_dims} dimensions")
        dims = reader.unpack(f"<{n_dims}Q")
        kind, offset = reader.unpack("<IQ")
        infos.append((name, dims, kind, offset))
    data_start = -(-handle.tell() // alignment) * alignment
    for name, dims, kind, offset in infos:
        if kind not in _GGML_TYPES:
            raise Malformed(f"GGUF tensor {name[:80]!r} has unknown type {kind}")
        if offset % alignment:
            raise Malformed(f"GGUF tensor {name[:80]!r} is not aligned to {alignment}")
        block, block_bytes = _GGML_TYPES[kind]
        count = 1
        for d in dims:
            count *= d
        if count % block:
            raise Malformed(f"GGUF tensor {name[:80]!r}: {count} elements in blocks of {block}")
        if data_start + offset + count // block * block_bytes > size:
            raise Malformed(f"GGUF tensor {name[:80]!r} runs past the end of the file")


# -- text -----------------------------------------------------------------------------------------


def is_text(head: bytes, handle: IO[bytes], size: int) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # a multibyte character cut at the sample's end
    return True


def scan_text(handle: IO[bytes], size: int, context: Context, result: Result) -> None:
    """Clean only if the whole file decodes as UTF-8 without NUL bytes; JSON is parsed when it
    looks like JSON and is small enough. A file that only starts as text (a Latin-1 word past
    the first bytes, a binary tail, a few bytes that happen to decode) is no reading: not text,
    so not positively identified, which is no sign of anything malformed."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    handle.seek(0)
    first = b""
    while True:
        piece = handle.read(READ)
        if not first:
            first = piece[:64]
        if b"\x00" in piece:
            raise NoReading("NUL byte in what starts as text")
        try:
            decoder.decode(piece, final=not piece)
        except UnicodeDecodeError as exc:
            raise NoReading(f"not UTF-8 text: {exc.reason}") from None
        if not piece:
            break
    if first.lstrip()[:1] in (b"{", b"[") and size <= context.limits.max_json_bytes:
        handle.seek(0)
        try:
            json_loads(handle.read(size), what="JSON file", max_bytes=context.limits.max_json_bytes)
            result.format = Format.JSON
        except AttestError:
            pass
