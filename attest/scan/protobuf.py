"""Protobuf formats parsed from the wire format, without generated classes: ONNX and SentencePiece.

ONNX: the whole ModelProto tree is walked (graphs, nodes, attributes, subgraphs, functions,
training info, sparse tensors) whatever the field order, and every tensor's external-data
``location`` is read in full: it must be relative, stay inside the version and name one of its
regular files. External data is never loaded. A SentencePiece ``tokenizer.model`` is identified
by parsing every piece.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Iterator
from pathlib import PurePosixPath
from typing import IO, Any

from attest.scan.containers import member_name_problem
from attest.scan.core import Context, LimitReached, Malformed, Result, Unsafe

_VARINT, _I64, _LEN, _GROUP, _END_GROUP, _I32 = 0, 1, 2, 3, 4, 5
_MAX_LOCATION = 4096


class _Bad(Exception):
    """Not a valid protobuf message here."""


def _varint(handle: IO[bytes]) -> int:
    shift = value = 0
    while True:
        byte = handle.read(1)
        if not byte:
            raise _Bad("truncated varint")
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return value
        shift += 7
        if shift > 63:
            raise _Bad("varint too long")


def fields(handle: IO[bytes], start: int, end: int) -> Iterator[tuple[int, int, Any]]:
    """The fields of a message in [start, end): (number, wire type, value). Length-delimited
    values come as (offset, length) and are skipped, never read."""
    handle.seek(start)
    while handle.tell() < end:
        key = _varint(handle)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Bad("field number 0")
        if wire == _VARINT:
            value: Any = _varint(handle)
        elif wire in (_I64, _I32):
            width = 8 if wire == _I64 else 4
            if handle.tell() + width > end:
                raise _Bad("fixed-width field runs past its message")
            handle.seek(width, os.SEEK_CUR)
            value = None
        elif wire == _LEN:
            length = _varint(handle)
            offset = handle.tell()
            if offset + length > end:
                raise _Bad("length-delimited field runs past its message")
            value = (offset, length)
            handle.seek(offset + length)
        elif wire == _GROUP:  # a group (deprecated): parsers skip it as an unknown field
            _skip_group(handle, number, end, 0)
            value = None
        else:
            raise _Bad(f"unsupported wire type {wire}")
        position = handle.tell()
        yield number, wire, value
        handle.seek(position)
    if handle.tell() != end:
        raise _Bad("message runs past its end")


def _skip_group(handle: IO[bytes], number: int, end: int, depth: int) -> None:
    """Past the END_GROUP of group ``number`` (groups nest; each field is skipped)."""
    if depth > 64:
        raise _Bad("groups nest too deeply")
    while handle.tell() < end:
        key = _varint(handle)
        inner, wire = key >> 3, key & 7
        if wire == _END_GROUP:
            if inner != number:
                raise _Bad("a group ends with another group's number")
            return
        if wire == _VARINT:
            _varint(handle)
        elif wire in (_I64, _I32):
            handle.seek(8 if wire == _I64 else 4, os.SEEK_CUR)
        elif wire == _LEN:
            length = _varint(handle)
            handle.seek(length, os.SEEK_CUR)
        elif wire == _GROUP:
            _skip_group(handle, inner, end, depth + 1)
        else:
            raise _Bad(f"unsupported wire type {wire}")
    raise _Bad("a group runs past its message")


def _read(handle: IO[bytes], span: tuple[int, int], limit: int) -> bytes:
    offset, length = span
    if length > limit:
        raise _Bad(f"string of {length} bytes where at most {limit} are expected")
    handle.seek(offset)
    return handle.read(length)


# -- ONNX -----------------------------------------------------------------------------------------

#: message -> {field number: (wire type, child message or None)} for every ModelProto field on a
#: path to a TensorProto or a subgraph; other fields are checked for their wire type only
_ONNX: dict[str, dict[int, tuple[int, str | None]]] = {
    "model": {
        1: (_VARINT, None),
        2: (_LEN, None),
        3: (_LEN, None),
        4: (_LEN, None),
        5: (_VARINT, None),
        6: (_LEN, None),
        7: (_LEN, "graph"),
        8: (_LEN, None),
        14: (_LEN, None),
        20: (_LEN, "training"),
        25: (_LEN, "function"),
        26: (_LEN, None),
    },
    "training": {1: (_LEN, "graph"), 2: (_LEN, "graph"), 3: (_LEN, None), 4: (_LEN, None)},
    "function": {7: (_LEN, "node"), 11: (_LEN, "attribute")},
    "graph": {1: (_LEN, "node"), 5: (_LEN, "tensor"), 15: (_LEN, "sparse")},
    "node": {5: (_LEN, "attribute")},
    "attribute": {
        5: (_LEN, "tensor"),
        6: (_LEN, "graph"),
        10: (_LEN, "tensor"),
        11: (_LEN, "graph"),
        22: (_LEN, "sparse"),
        23: (_LEN, "sparse"),
    },
    "sparse": {1: (_LEN, "tensor"), 2: (_LEN, "tensor")},
    "tensor": {13: (_LEN, "entry"), 14: (_VARINT, None)},
}
_MAX_MESSAGES = 5_000_000


def is_onnx(head: bytes, handle: IO[bytes], size: int) -> bool:
    """A ModelProto: top-level fields covering the file exactly, in any order, one of them a
    field a loader acts on with its wire type: an ir_version, a graph, training info or
    functions. Unknown fields, and known ones with another wire type, are skipped as protobuf
    parsers skip them. (``onnx.load`` needs no ir_version: a graph alone has its external data
    followed, and such a file can be all ASCII, so reading as text must not decide it.)"""
    if size < 4:
        return False
    seen: set[int] = set()
    try:
        for number, wire, _value in fields(handle, 0, size):
            expected = _ONNX["model"].get(number)
            if expected is not None and expected[0] == wire:
                seen.add(number)  # others are unknown fields, which protobuf parsers skip
    except _Bad:
        return False
    return bool(seen & {1, 7, 20, 25})


def scan_onnx(handle: IO[bytes], size: int, context: Context, result: Result) -> None:
    stack: list[tuple[str, int, int]] = [("model", 0, size)]
    visited = 0
    try:
        while stack:
            kind, start, end = stack.pop()
            visited += 1
            if visited > _MAX_MESSAGES:
                raise LimitReached("ONNX model has more messages than the scan limit")
            children = _ONNX.get(kind, {})
            entry: dict[int, bytes] = {}
            external = False
            has_location = False
            for number, wire, value in list(fields(handle, start, end)):
                if kind == "entry" and number in (1, 2) and wire == _LEN:
                    entry[number] = _read(handle, value, 1 << 20)
                    continue
                expected = children.get(number)
                if expected is None:
                    continue
                if expected[0] != wire:
                    raise _Bad(f"{kind} field {number} has wire type {wire}")
                if kind == "tensor" and number == 14:
                    external = value == 1
                elif kind == "tensor" and number == 13:
                    has_location = has_location or _entry_key(handle, value) == b"location"
                if expected[1] is not None:
                    offset, length = value
                    stack.append((expected[1], offset, offset + length))
            if kind == "tensor" and external and not has_location:
                raise Unsafe("ONNX tensor stored externally without a location")
            if kind == "entry" and entry.get(1) == b"location":
                _check_location(context, entry.get(2, b""), result)
    except _Bad as exc:
        raise Malformed(f"ONNX: {exc}") from None


def _entry_key(handle: IO[bytes], span: tuple[int, int]) -> bytes | None:
    offset, length = span
    for number, wire, value in fields(handle, offset, offset + length):
        if number == 1 and wire == _LEN:
            return _read(handle, value, 64)
    return None


def _check_location(context: Context, raw: bytes, result: Result) -> None:
    if len(raw) > _MAX_LOCATION:
        raise Unsafe(f"ONNX external data location of more than {_MAX_LOCATION} bytes")
    try:
        location = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Unsafe("ONNX external data location is not UTF-8") from None
    problem = member_name_problem(location) if location else "empty"
    if problem:
        raise Unsafe(f"ONNX external data location {location[:120]!r}: {problem}")
    target = PurePosixPath(context.path).parent / location
    if ".." in target.parts:
        raise Unsafe(f"ONNX external data location {location[:120]!r} leaves the version")
    sibling: Callable[[str], bool] | None = context.sibling
    if context.depth > 0:
        raise Unsafe(f"ONNX inside an archive names external data {location[:120]!r}")
    if sibling is not None and not sibling(location):
        raise Unsafe(f"ONNX external data {location[:120]!r} is not a regular file of the version")
    result.note(f"external data: {target.as_posix()}")
    result.references.append(posixpath.normpath(target.as_posix()))


# -- SentencePiece --------------------------------------------------------------------------------


def is_sentencepiece(head: bytes, handle: IO[bytes], size: int) -> bool:
    """sentencepiece.ModelProto: pieces (1), trainer (2), normalizer (3), self-test data (4),
    denormalizer (5), every one length-delimited; at least one piece, every piece a
    {piece: UTF-8 string, score: float, type: enum} message."""
    pieces = 0
    try:
        for number, wire, value in list(fields(handle, 0, size)):
            if number not in (1, 2, 3, 4, 5) or wire != _LEN:
                return False
            if number == 1:
                offset, length = value
                for inner_number, inner_wire, inner_value in list(
                    fields(handle, offset, offset + length)
                ):
                    expected = {1: _LEN, 2: _I32, 3: _VARINT}.get(inner_number)
                    if expected != inner_wire:
                        return False
                    if inner_number == 1:
                        _read(handle, inner_value, 1 << 20).decode("utf-8")
                pieces += 1
    except (_Bad, UnicodeDecodeError):
        return False
    return pieces > 0


def scan_sentencepiece(handle: IO[bytes], size: int, context: Context, result: Result) -> None:
    """Identification parsed every piece; a tokenizer model holds no code."""
