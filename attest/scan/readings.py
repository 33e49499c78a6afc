"""Which readings a stream has, and the verdict of the most dangerous one.

Order: the pickle reading (every file), each signature the bytes carry, the protobuf formats
(every file: they have no signature), and text only when nothing else matched. A pickle reading that
reaches no code-capable opcode is harmless data and is ignored when another format explains the
file; one that reaches code always counts (a polyglot is judged by its worst reading).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO

from attest.scan import containers, formats, protobuf
from attest.scan.core import (
    HEAD,
    Context,
    Format,
    LimitReached,
    Malformed,
    NoReading,
    Result,
    ScanVerdict,
    Unsafe,
)
from attest.scan.pickles import PickleReading, read_pickles

Check = Callable[[IO[bytes], int, Context, Result], None]


def _run(
    check: Check, fmt: Format, handle: IO[bytes], size: int, context: Context
) -> Result | None:
    """The reading of the file as ``fmt``; None when it only looked like one (NoReading)."""
    result = Result(format=fmt)
    handle.seek(0)
    try:
        check(handle, size, context, result)
    except NoReading:
        return None
    except Unsafe as exc:
        result.flag(ScanVerdict.UNSAFE, str(exc))
    except LimitReached as exc:
        result.flag(ScanVerdict.UNSCANNABLE, str(exc))
    except (Malformed, EOFError, ValueError, OSError, OverflowError, UnicodeDecodeError) as exc:
        result.flag(ScanVerdict.UNSCANNABLE, f"malformed {result.format}: {exc}"[:300])
    return result


def pickle_reading(handle: IO[bytes], start: int, end: int, context: Context) -> Result | None:
    """The pickle reading from ``start``, or None when an unpickler would fail before any
    code-capable opcode and before a complete pickle."""
    return as_result(read_pickles(handle, start, end, max_ops=context.limits.max_pickle_ops))


def as_result(reading: PickleReading) -> Result | None:
    """A pickle walk as a reading, or None when it found neither code nor a complete pickle."""
    if not (reading.found or reading.exhausted):
        return None
    result = Result(format=Format.PICKLE, pickle=True)
    for finding in dict.fromkeys(reading.unsafe):
        result.flag(ScanVerdict.UNSAFE, finding)
    for finding in dict.fromkeys(reading.undecidable):
        result.flag(ScanVerdict.UNSCANNABLE, finding)
    if reading.exhausted:
        result.flag(ScanVerdict.UNSCANNABLE, f"pickle scan stopped: {reading.exhausted}")
    if not reading.code and reading.found:
        result.note("pickle without imports or calls")
    result.code = reading.code
    result.pickle_end = reading.end
    return result


def combine(handle: IO[bytes], size: int, context: Context) -> Result:
    handle.seek(0)
    head = handle.read(HEAD)
    pickled = pickle_reading(handle, 0, size, context)

    found: list[Result] = []
    for fmt, detect, check in (*_SIGNATURES, *_PROTOBUFS):  # protobufs: tried on every file
        handle.seek(0)
        reading = _run(check, fmt, handle, size, context) if detect(head, handle, size) else None
        if reading is not None:
            found.append(reading)
    handle.seek(0)
    if not found and formats.is_text(head, handle, size):
        text = _run(formats.scan_text, Format.TEXT, handle, size, context)
        found.extend([text] if text is not None else [])

    # A data-only pickle reading counts when it is the whole file (a pickle, whatever else it
    # also parses as); a data-only prefix of anything else is harmless and identifies nothing.
    whole = pickled is not None and pickled.pickle_end == size
    if pickled is not None and (pickled.code or whole or pickled.verdict is not ScanVerdict.CLEAN):
        found.insert(0, pickled)
    if not found and context.tensor_data:
        return Result(format=Format.TENSOR_DATA, findings=["external tensor data of an ONNX model"])
    if not found:
        result = Result(format=Format.UNKNOWN)
        result.flag(
            ScanVerdict.UNKNOWN, "not positively identified as a format that cannot carry code"
        )
        return result
    worst = max(found, key=lambda r: (r.verdict.severity, r.pickle))
    if len(found) > 1:
        others = ", ".join(str(r.format) for r in found if r is not worst)
        worst.note(f"polyglot: also reads as {others}; judged by its most dangerous reading")
        for other in found:
            if other is not worst:
                worst.pickle = worst.pickle or other.pickle
                if other.verdict is not ScanVerdict.CLEAN:
                    worst.findings.extend(f"as {other.format}: {f}" for f in other.findings)
    return worst


_SIGNATURES: list[tuple[Format, Callable[[bytes, IO[bytes], int], bool], Check]] = [
    (Format.ZIP, containers.is_zip, containers.scan_zip),
    (Format.NUMPY, formats.is_npy, formats.scan_npy),
    (Format.HDF5, formats.is_hdf5, formats.scan_hdf5),
    (Format.GGUF, formats.is_gguf, formats.scan_gguf),
    (Format.COMPRESSED, containers.is_compressed, containers.scan_compressed),
    (Format.TAR, containers.is_tar, containers.scan_tar),
    (Format.SAFETENSORS, formats.is_safetensors, formats.scan_safetensors),
]

_PROTOBUFS: list[tuple[Format, Callable[[bytes, IO[bytes], int], bool], Check]] = [
    (Format.ONNX, protobuf.is_onnx, protobuf.scan_onnx),
    (Format.SENTENCEPIECE, protobuf.is_sentencepiece, protobuf.scan_sentencepiece),
]
