"""Strict, bounded JSON parsing for untrusted evidence documents."""

from __future__ import annotations

import json
from typing import Any

from attest.errors import DocumentTooLargeError, MalformedDocumentError, NestingTooDeepError

#: Largest evidence document accepted (an ML-BOM predicate of a big model fits comfortably).
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
#: Deepest JSON nesting accepted.
MAX_DEPTH = 64


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise MalformedDocumentError(f"duplicate key {key!r}: each key may appear once")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise MalformedDocumentError(f"{name} is not valid JSON")


def loads(
    data: bytes,
    *,
    what: str,
    max_bytes: int = MAX_DOCUMENT_BYTES,
    max_depth: int = MAX_DEPTH,
) -> Any:
    """Parse ``data`` as JSON: UTF-8 only, no duplicate keys, no NaN/Infinity, bounded.

    Raises:
        DocumentTooLargeError: more than ``max_bytes``.
        NestingTooDeepError: nested deeper than ``max_depth``.
        MalformedDocumentError: not UTF-8 or not JSON.
    """
    if len(data) > max_bytes:
        raise DocumentTooLargeError(
            f"{what} is {len(data)} bytes; the limit is {max_bytes}", size=len(data)
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedDocumentError(f"{what} is not valid UTF-8: {exc.reason}") from None
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except RecursionError:
        raise NestingTooDeepError(f"{what} is nested deeper than {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise MalformedDocumentError(f"{what} is not valid JSON: {exc.msg} at {exc.pos}") from None
    if _depth(value) > max_depth:
        raise NestingTooDeepError(f"{what} is nested deeper than {max_depth} levels")
    return value


def _depth(value: Any) -> int:
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in item)
    return deepest


def dumps_canonical(value: Any) -> bytes:
    """Compact JSON with sorted keys: the bytes modelseal signs."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
