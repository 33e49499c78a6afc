"""Pickle readings: does a byte stream, read by a real unpickler, reach code?

A file has a *pickle reading* when the opcodes from its first byte, executed by CPython's
unpickler, would reach a code-capable opcode (``GLOBAL``, ``STACK_GLOBAL``, ``INST``, ``OBJ``,
``REDUCE``, ``BUILD``, ``NEWOBJ``, ``NEWOBJ_EX``, ``EXT1/2/4``), or a complete pickle (``STOP``).
The first byte does not matter: there is no PROTO header in protocols 0 and 1, and a stream may
start with ``FRAME``. The walk keeps the unpickler's stack shape (marks, underflow, memo keys), so
a random binary that merely contains opcode bytes has no reading, while a stream that runs its
``REDUCE`` and crashes afterwards ("run, then crash") still does.

Nothing is ever unpickled: opcodes are decoded one at a time with their argument lengths, large
arguments are skipped with ``seek``, and memory stays bounded whatever the file's size.

Globals are checked against :data:`SAFE_GLOBALS`, an allowlist of what ML checkpoints reference;
anything else, an extension-registry code, or a ``STACK_GLOBAL`` whose operands are not constant
strings makes the reading unsafe.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import os
import pickletools
import re
import struct
from dataclasses import dataclass, field
from typing import IO, Any

#: Opcodes through which an unpickler imports or calls something.
CODE_OPCODES = frozenset(
    {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "BUILD", "NEWOBJ", "NEWOBJ_EX",
     "EXT1", "EXT2", "EXT4"}
)  # fmt: skip

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

_PANDAS_OFFSETS = {
    "Day", "Hour", "Minute", "Second", "Milli", "Micro", "Nano", "DateOffset", "BusinessDay",
    "BusinessHour", "CustomBusinessDay", "CustomBusinessHour", "MonthEnd", "MonthBegin",
    "BusinessMonthEnd", "BusinessMonthBegin", "CustomBusinessMonthEnd", "CustomBusinessMonthBegin",
    "SemiMonthEnd", "SemiMonthBegin", "Week", "WeekOfMonth", "LastWeekOfMonth", "QuarterEnd",
    "QuarterBegin", "BQuarterEnd", "BQuarterBegin", "YearEnd", "YearBegin", "BYearEnd",
    "BYearBegin", "Easter", "FY5253", "FY5253Quarter",
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
    "_codecs": frozenset({"encode"}),
    # what pandas pickles into an HDF5 file's attributes for a time index with a frequency
    "datetime": frozenset({"date", "time", "datetime", "timedelta", "timezone"}),
    "pandas._libs.tslibs.offsets": frozenset(_PANDAS_OFFSETS),
    # pandas.Timestamp and pandas.Timedelta pickle themselves through these (an object column)
    "pandas._libs.tslibs.timestamps": frozenset({"_unpickle_timestamp"}),
    "pandas._libs.tslibs.timedeltas": frozenset({"_timedelta_unpickle"}),
}

_LINE_LIMIT = 64 * 1024  # protocol-0 argument lines: kept up to this, longer ones skipped
_LINE_BYTES_PER_OP = 64  # what reading a protocol-0 line costs, in opcodes
#: what a long GLOBAL/INST line must look like to be a name (identifier characters and dots)
_DOTTED = re.compile(rb"[\w.]+")
_VALUE_LIMIT = 1024  # longer strings are not kept as possible STACK_GLOBAL operands
_MAX_PICKLES = 64  # pickles back to back (legacy torch.save writes five), all chains together
#: opcodes that change their target in place and leave it on the stack
_IN_PLACE = frozenset({"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS"})
#: strtol's octal, which ``int(text, 0)`` refuses (a leading zero)
_OCTAL = re.compile(r"\s*[+-]?0[0-7]*\s*")


_CODE2OP = {op.code: op for op in pickletools.opcodes}


class _Invalid(Exception):
    """The unpickler would raise here (before or after code ran)."""


class _Exhausted(Exception):
    """A scan limit was reached while the stream was still a valid pickle."""


@dataclass
class PickleReading:
    """What a pickle walk from one offset found."""

    #: a complete pickle or a code-capable opcode was reached
    found: bool = False
    #: a code-capable opcode was reached
    code: bool = False
    #: findings that make the reading unsafe
    unsafe: list[str] = field(default_factory=list)
    #: findings that cannot be judged from the file alone (unscannable)
    undecidable: list[str] = field(default_factory=list)
    #: a limit stopped the walk while the stream still parsed (cannot prove it safe)
    exhausted: str | None = None
    #: globals referenced, as ``module.name``
    globals: list[str] = field(default_factory=list)
    #: where frames that a STOP fell inside end (a next pickle may start there too)
    frame_ends: list[int] = field(default_factory=list)
    pickles: int = 0
    #: where the last complete pickle ended
    end: int = 0
    #: opcodes the walk read, all chains together
    ops: int = 0


class _Value:
    """A stack item; ``text`` is set for constant strings (possible STACK_GLOBAL operands)."""

    __slots__ = ("text",)

    def __init__(self, text: str | None = None) -> None:
        self.text = text


_ANY = _Value()  # of unknown type (a call's result, a persistent object, a long string)
_DATA = _Value()  # known not to be a string (numbers, containers, bytes, None, booleans)
_MARK = object()


def _global_name(module: str, name: str, protocol: int) -> tuple[str, str]:
    """The name CPython's unpickler resolves (``fix_imports`` maps Python 2 names below 3)."""
    if protocol < 3:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
    return module, name


def is_allowed(module: str, name: str) -> bool:
    return name in SAFE_GLOBALS.get(module, frozenset())


class _Walker:
    def __init__(self, handle: IO[bytes], end: int, max_ops: int) -> None:
        self.handle = handle
        self.end = end
        self.ops_left = max_ops
        self.frame_end = 0  # where the newest FRAME ends

    def read(self, n: int) -> bytes:
        start = self.handle.tell()
        data = self.handle.read(n) if start + n <= self.end else b""
        if len(data) != n:
            raise _Invalid("pickle data truncated")
        self._within_frame(start)
        return data

    def line(self, *, limit: int | None = _LINE_LIMIT) -> bytes:
        """One protocol-0 argument line (without the newline).

        With ``limit`` (a ``GLOBAL``/``INST`` name), a line longer than :data:`_LINE_LIMIT`
        is refused when it cannot be a name (the import or the attribute lookup would fail),
        and is past the scan's limit otherwise (protocol 4 resolves dotted names of any length,
        ``os`` / ``path.os.path.os...system``); without it, the line is read in pieces and only
        its first :data:`_LINE_LIMIT` bytes are kept."""
        start = self.handle.tell()
        data = self.handle.readline(max(min(_LINE_LIMIT + 1, self.end - start), 0))
        self._charge(len(data))
        if data.endswith(b"\n"):
            self._within_frame(start)
            return data[:-1]
        if len(data) <= _LINE_LIMIT:
            raise _Invalid("pickle line truncated")
        if limit is not None:
            if _DOTTED.fullmatch(data):
                raise _Exhausted(f"a GLOBAL/INST name longer than {_LINE_LIMIT} bytes")
            raise _Invalid(f"a protocol-0 name line is longer than {_LINE_LIMIT} bytes")
        kept = data
        while True:
            piece = self.handle.readline(max(min(1024 * 1024, self.end - self.handle.tell()), 0))
            self._charge(len(piece))
            if not piece:
                raise _Invalid("pickle line truncated")
            if piece.endswith(b"\n"):
                self._within_frame(start)
                return kept + b"\n"  # the caller only looks at the start (and the quote)
            if self.handle.tell() >= self.end:
                raise _Invalid("pickle line truncated")

    def _charge(self, read: int) -> None:
        """Lines are read, not skipped: every :data:`_LINE_BYTES_PER_OP` bytes of one count as
        an opcode, so walks that each read a long line to the end of the data stay bounded."""
        self.ops_left -= read // _LINE_BYTES_PER_OP
        if self.ops_left < 0:
            raise _Exhausted("the pickle has more opcodes than the scan limit")

    def _within_frame(self, start: int) -> None:
        """An argument (bytes or a line) from ``start`` to the current position that crosses
        the newest FRAME's end is read differently by the unpicklers: CPython's C one, reading
        a file, holds the frame whole, drops what is left of it and reads the argument afresh
        from the file (another memo key, another name); from memory it reads on; the
        pure-Python one fails. No reading can be judged (picklers never write such frames)."""
        if start < self.frame_end < self.handle.tell():
            raise _Exhausted("a pickle argument crosses the end of a FRAME")

    def skip(self, n: int) -> None:
        start = self.handle.tell()
        if n < 0 or start + n > self.end:
            raise _Invalid("pickle argument runs past the end of the data")
        self.handle.seek(n, os.SEEK_CUR)
        self._within_frame(start)

    def sized(self, n: int, keep: bool) -> bytes | None:
        if keep and n <= _VALUE_LIMIT:
            return self.read(n)
        self.skip(n)
        return None

    def one(self, reading: PickleReading) -> bool:
        """Walk one pickle from the current position; True when it ended with STOP."""
        stack: list[object] = []
        memo: dict[int, object] = {}
        unknown_keys = False  # a PUT whose key was too long to read
        extensions: list[str] = []
        protocol = 0

        def pop(count: int) -> list[object]:
            if count == 0:
                return []
            if len(stack) < count or any(item is _MARK for item in stack[-count:]):
                raise _Invalid("unpickling stack underflow")
            items = stack[-count:]
            del stack[-count:]
            return items

        def pop_mark() -> list[object]:
            for index in range(len(stack) - 1, -1, -1):
                if stack[index] is _MARK:
                    items = stack[index + 1 :]
                    del stack[index:]
                    return items
            raise _Invalid("no MARK on the stack")

        def found_global(module: str, name: str) -> None:
            module, name = _global_name(module, name, protocol)
            reading.globals.append(f"{module}.{name}")
            if not is_allowed(module, name):
                reading.unsafe.append(f"pickle imports {module}.{name} (not allowlisted)")

        while True:
            self.ops_left -= 1
            if self.ops_left < 0:
                raise _Exhausted("the pickle has more opcodes than the scan limit")
            code = self.handle.read(1)
            if not code:
                raise _Invalid("pickle ends before STOP")
            try:
                op = _CODE2OP[code.decode("latin-1")]
            except KeyError:
                raise _Invalid(f"not a pickle opcode: {code!r}") from None
            name = op.name
            value = self._argument(op, name)
            # -- stack effects (as CPython's _pickle checks them) -----------------------------
            if name == "MARK":
                stack.append(_MARK)
            elif name == "STOP":
                pop(1)
                if self.frame_end > self.handle.tell():
                    # both unpicklers may have read the whole frame: the next pickle.load
                    # can start after it as well as here
                    reading.frame_ends.append(min(self.frame_end, self.end))
                reading.undecidable.extend(extensions)
                reading.code = reading.code or bool(extensions)
                return True
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                if not stack or stack[-1] is _MARK:
                    raise _Invalid("memo PUT on an empty stack")
                if value is not None:
                    memo[value] = stack[-1]
                else:  # a protocol-0 key too long to read: any key may be defined now
                    unknown_keys = True
            elif name == "MEMOIZE":
                if not stack or stack[-1] is _MARK:
                    raise _Invalid("MEMOIZE on an empty stack")
                memo[len(memo)] = stack[-1]
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                if value is None or unknown_keys:
                    # a key too long to read, or any key once one was: such a PUT may have set
                    # any key, and MEMOIZE's next key is unknown from then on
                    stack.append(_ANY)
                elif value not in memo:
                    raise _Invalid(f"memo key {value} is not defined")
                else:
                    stack.append(memo[value])
            elif name == "POP":
                if not stack:
                    raise _Invalid("POP on an empty stack")
                stack.pop()
            elif name == "DUP":
                if not stack or stack[-1] is _MARK:
                    raise _Invalid("DUP on an empty stack")
                stack.append(stack[-1])
            elif name == "PROTO":
                protocol = int(value)
                if protocol > 5:
                    raise _Invalid(f"unsupported pickle protocol {protocol}")
            elif name == "GLOBAL":
                module, attribute = value
                found_global(module, attribute)
                stack.append(_ANY)
            elif name == "INST":
                module, attribute = value
                pop_mark()
                found_global(module, attribute)
                stack.append(_ANY)
            elif name == "STACK_GLOBAL":
                operands = pop(2)
                if any(item is _DATA for item in operands):
                    raise _Invalid("STACK_GLOBAL needs two strings")
                texts = [getattr(item, "text", None) for item in operands]
                if texts[0] is None or texts[1] is None:
                    reading.unsafe.append(
                        "pickle STACK_GLOBAL with operands that are not constant strings"
                    )
                else:
                    found_global(texts[0], texts[1])
                stack.append(_ANY)
            elif name in ("EXT1", "EXT2", "EXT4"):
                if value <= 0:
                    raise _Invalid("EXT specifies code <= 0")
                # Resolved through the loading process's copyreg table, which the file does not
                # show: never provably safe. Counted once the stream goes on to a call or a STOP
                # (a lone code followed by garbage fails in every stock interpreter, which
                # registers no codes; random binaries start with one about 1% of the time).
                extensions.append(f"pickle uses extension registry code {value} "
                                  "(resolved by the loader's copyreg table)")  # fmt: skip
                stack.append(_ANY)
            else:
                before, after = op.stack_before, op.stack_after
                if pickletools.markobject in before:
                    below = before.index(pickletools.markobject)
                    above = [s for s in before[below + 1 :] if s is not pickletools.stackslice]
                    if len(pop_mark()) < len(above):
                        raise _Invalid(f"{name}: too few items above the MARK")
                    popped = pop(below)
                else:
                    popped = pop(len(before))
                unknown = name in CODE_OPCODES or name in ("PERSID", "BINPERSID")
                if name in _IN_PLACE:
                    # the target stays what it was: an empty SETITEMS on a string leaves the
                    # string, which STACK_GLOBAL then takes
                    stack.append(popped[0])
                else:
                    for _ in after:
                        if isinstance(value, _Value):
                            stack.append(value)
                        else:
                            stack.append(_ANY if unknown else _DATA)
            if name in CODE_OPCODES and not name.startswith("EXT"):
                # reached with a stack the unpickler accepts
                reading.code = reading.found = True
                reading.undecidable.extend(extensions)
                extensions.clear()

    def _argument(self, op: pickletools.OpcodeInfo, name: str) -> Any:
        """Decode (or skip) an opcode's argument; string constants come back as _Value."""
        arg = op.arg
        if arg is None:
            return None
        n = arg.n
        if name in ("GLOBAL", "INST"):
            try:
                module = self.line(limit=_LINE_LIMIT).decode("utf-8")
                attribute = self.line(limit=_LINE_LIMIT).decode("utf-8")
            except UnicodeDecodeError:
                raise _Invalid(f"{name} argument is not UTF-8") from None
            return module, attribute
        if n == pickletools.UP_TO_NEWLINE:
            if name in ("PUT", "GET", "INT", "LONG", "FLOAT"):
                raw = self.line(limit=None)
                if raw[-1:] == b"\n":
                    return None  # longer than we keep: CPython skips whitespace, so accept it
                # CPython's C unpickler parses these as C strings: a NUL ends the number
                return _number(name, raw.split(b"\0", 1)[0].decode("latin-1"))
            raw = self.line(limit=None)
            if name == "STRING":
                if raw[-1:] == b"\n":  # a long literal: only its quotes are checked
                    if raw[:1] not in (b"'", b'"'):
                        raise _Invalid("STRING argument is not quoted")
                    return _ANY
                return _Value(_string_nl(raw))
            if name == "UNICODE":
                if raw[-1:] == b"\n":
                    return _ANY  # a long string: unknown as an operand
                return _Value(raw.decode("raw-unicode-escape", "replace"))
            if name == "PERSID" and not raw.isascii():
                raise _Invalid("protocol-0 persistent IDs must be ASCII")
            return None
        if name == "NEXT_BUFFER":
            raise _Invalid("out-of-band buffers are not given to a loader")
        if n > 0:
            data = self.read(n)
            if name in ("BINGET", "BINPUT", "PROTO", "EXT1"):
                return data[0]
            if name in ("LONG_BINGET", "LONG_BINPUT"):
                return struct.unpack("<I", data)[0]
            if name == "EXT4":
                return struct.unpack("<i", data)[0]
            if name == "EXT2":
                return struct.unpack("<H", data)[0]
            if name == "FRAME":
                # a length past the end of the data is no stop (the pure-Python unpickler,
                # joblib's, runs a short frame's opcodes and fails only when they run out)
                self.frame_end = self.handle.tell() + struct.unpack("<Q", data)[0]
            return None
        if n == pickletools.TAKEN_FROM_ARGUMENT1:
            length = self.read(1)[0]
        elif name == "BINSTRING":  # CPython reads its count unsigned (pickletools: signed)
            (length,) = struct.unpack("<I", self.read(4))
        elif n == pickletools.TAKEN_FROM_ARGUMENT4:
            (length,) = struct.unpack("<i", self.read(4))
            if length < 0:
                raise _Invalid("negative pickle argument length")
        elif n == pickletools.TAKEN_FROM_ARGUMENT4U:
            (length,) = struct.unpack("<I", self.read(4))
        elif n == pickletools.TAKEN_FROM_ARGUMENT8U:
            (length,) = struct.unpack("<Q", self.read(8))
        else:  # pragma: no cover - pickletools has no other argument kinds
            raise _Invalid(f"unknown argument kind for {name}")
        text_op = name in (
            "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8",
            "SHORT_BINSTRING", "BINSTRING",
        )  # fmt: skip
        kept = self.sized(length, keep=text_op)
        if kept is None:
            return _ANY if text_op else None
        data = kept
        if name.endswith("BINUNICODE") or name == "BINUNICODE8":
            try:
                return _Value(data.decode("utf-8", "surrogatepass"))
            except UnicodeDecodeError:
                raise _Invalid("BINUNICODE argument is not UTF-8") from None
        return _Value(data.decode("latin-1"))


def _number(name: str, text: str) -> int | None:
    """A protocol-0 number argument as CPython's unpickler parses it (``strtol`` then
    ``int(text, 0)`` for INT, ``int(text, 0)`` for LONG, ``float`` for FLOAT, base 10 for
    memo keys); :class:`_Invalid` where it would refuse. Returns memo keys."""
    try:
        if name in ("PUT", "GET"):
            return int(text, 10)
        if name == "FLOAT":
            float(text)
        elif name == "LONG":
            int(text[:-1] if text.endswith("L") else text, 0)
        elif text.strip() not in ("00", "01", "") and not _OCTAL.fullmatch(text):
            int(text, 0)  # (strtol reads an empty line, one that starts with a NUL, as 0)
    except ValueError:
        raise _Invalid(f"{name} argument is not a number CPython reads") from None
    return None


def _string_nl(raw: bytes) -> str | None:
    """A protocol-0 STRING argument: a quoted, escaped literal."""
    if len(raw) >= 2 and raw[:1] == raw[-1:] and raw[:1] in (b"'", b'"'):
        try:
            return codecs.escape_decode(raw[1:-1])[0].decode("latin-1")
        except ValueError:
            return None
    raise _Invalid("STRING argument is not quoted")


def read_pickles(
    handle: IO[bytes], start: int, end: int, *, max_ops: int = 20_000_000
) -> PickleReading:
    """Walk the pickles that start at ``start`` (back to back, as legacy ``torch.save`` writes
    them) until one fails to parse, the data ends, or :data:`_MAX_PICKLES` were read; and the
    chains that start where a frame a STOP fell inside ends (an unpickler that read the whole
    frame goes on there). ``end`` and ``found`` describe the first chain."""
    reading = PickleReading()
    walker = _Walker(handle, end, max_ops)
    budget = _MAX_PICKLES
    starts, seen = [start], {start}
    first = True
    while starts and budget > 0 and reading.exhausted is None:
        chain = PickleReading() if not first else reading
        budget = _chain(walker, chain, starts.pop(0), end, budget)
        if not first:
            reading.unsafe.extend(chain.unsafe)
            reading.undecidable.extend(chain.undecidable)
            reading.globals.extend(chain.globals)
            reading.code = reading.code or chain.code
            reading.exhausted = reading.exhausted or chain.exhausted
        for frame_end in chain.frame_ends:
            if frame_end not in seen and frame_end < end:
                seen.add(frame_end)
                starts.append(frame_end)
        first = False
    reading.ops = max_ops - max(walker.ops_left, 0)
    return reading


def _chain(walker: _Walker, reading: PickleReading, start: int, end: int, budget: int) -> int:
    """Walk pickles back to back from ``start`` (at most ``budget``); returns the budget left."""
    handle = walker.handle
    handle.seek(start)
    walker.frame_end = 0
    while budget > 0:
        if handle.tell() >= end:
            return budget
        budget -= 1
        position = handle.tell()
        try:
            complete = walker.one(reading)
        except _Invalid:
            return budget
        except _Exhausted as exc:
            reading.exhausted = str(exc)
            return budget
        except (ValueError, OverflowError, UnicodeDecodeError, struct.error):
            return budget
        if not complete:  # pragma: no cover - one() returns only on STOP
            return budget
        reading.found = True
        reading.pickles += 1
        reading.end = handle.tell()
        if handle.tell() == position:  # pragma: no cover - STOP always consumes a byte
            return budget
    if handle.tell() < end:
        reading.exhausted = f"more than {_MAX_PICKLES} pickles back to back"
    return budget
