"""Validation of ML-BOMs against the strict CycloneDX 1.6 JSON schema, plus reference checks."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from attest.jsonsafe import dumps_canonical
from sbom.errors import BomError

if TYPE_CHECKING:
    from cyclonedx.validation.json import JsonStrictValidator, JsonValidationError

CYCLONEDX_SPEC_VERSION = "1.6"

#: Longest validator message quoted in a BomError (messages can repeat a whole component).
_MAX_MESSAGE = 400

#: Longer ``components`` / ``dependencies`` arrays are validated in slices of this size. The
#: schema marks them ``uniqueItems``, which jsonschema checks by deep-comparing every pair of
#: items: minutes for a model of 10 000 files. Uniqueness of long arrays is checked here in
#: linear time instead, and every item still goes through the lib's validator.
_SLICE = 64

_Path = tuple[str | int, ...]
#: A document to validate, and how to map a path in it back to the BOM it was cut from.
_Piece = tuple[dict[str, Any], Callable[[Sequence[str | int]], _Path]]


@cache
def _validator() -> JsonStrictValidator:
    # Imported here, not at module level: jsonschema's format checkers compile an RFC 3987
    # grammar on import (about 1.3 s and 24 MiB), which a server or CLI that never validates a
    # BOM need not pay. The instance loads and compiles the schema once, on first use.
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    return JsonStrictValidator(SchemaVersion.V1_6)


def validate_bom(bom: Mapping[str, Any]) -> None:
    """Check that ``bom`` is a strictly valid CycloneDX 1.6 JSON document.

    Steps, in order:

    1. ``bomFormat`` is ``CycloneDX`` and ``specVersion`` is ``1.6``;
    2. the document passes cyclonedx-python-lib's strict 1.6 JSON-schema validator (no unknown
       properties anywhere, including ``modelCard`` and ``data``); long component and
       dependency arrays are validated in slices, their items' uniqueness checked here;
    3. every ``bom-ref`` is unique, and every reference in ``dependencies`` and in
       ``modelCard.modelParameters.datasets`` names a ``bom-ref`` of the document.

    Raises:
        BomError: the first problem found, with the validator's message and its JSON path.
    """
    if bom.get("bomFormat") != "CycloneDX" or bom.get("specVersion") != CYCLONEDX_SPEC_VERSION:
        raise BomError(
            "not a CycloneDX 1.6 BOM: bomFormat "
            f"{bom.get('bomFormat')!r}, specVersion {bom.get('specVersion')!r}",
            expected="CycloneDX 1.6",
        )
    try:
        json.dumps(bom, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise BomError(f"BOM is not JSON-serializable: {exc}") from None
    for document, origin in _pieces(bom):
        errors = _validator().validate_str(json.dumps(document), all_errors=True)
        if errors is not None:
            _raise_schema_error(list(errors), origin)
    _check_references(bom)


def _raise_schema_error(
    errors: list[JsonValidationError], origin: Callable[[Sequence[str | int]], _Path]
) -> None:
    from jsonschema.exceptions import best_match  # type: ignore[import-untyped]

    # best_match descends into oneOf/anyOf to pick the most specific failure.
    first = best_match(error.data for error in errors)
    message = str(first.message)
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 3] + "..."
    path = _json_path(origin(list(first.absolute_path)))
    raise BomError(
        f"BOM is not valid CycloneDX 1.6 at {path}: {message}",
        path=path,
        errors=len(errors),
    )


def _json_path(parts: Sequence[str | int]) -> str:
    return "$" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in parts)


# -- slicing long arrays ------------------------------------------------------------------


def _pieces(bom: Mapping[str, Any]) -> list[_Piece]:
    """The BOM with long arrays cut short, then one small document per cut-off slice."""
    pieces: list[_Piece] = []
    doc = dict(bom)
    if isinstance(doc.get("components"), list):
        doc["components"] = _cut_components(doc["components"], ("components",), pieces)
    metadata = doc.get("metadata")
    if isinstance(metadata, Mapping) and isinstance(metadata.get("component"), Mapping):
        component = _cut_component(metadata["component"], ("metadata", "component"), pieces)
        doc["metadata"] = {**metadata, "component": component}
    if isinstance(doc.get("dependencies"), list):
        doc["dependencies"] = _cut(doc["dependencies"], ("dependencies",), "dependencies", pieces)
    return [(doc, _unmoved), *pieces]


def _unmoved(parts: Sequence[str | int]) -> _Path:
    return tuple(parts)


def _cut_component(component: Mapping[str, Any], path: _Path, pieces: list[_Piece]) -> Any:
    nested = component.get("components")
    if not isinstance(nested, list):
        return component
    return {**component, "components": _cut_components(nested, (*path, "components"), pieces)}


def _cut_components(items: list[Any], path: _Path, pieces: list[_Piece]) -> list[Any]:
    if len(items) > _SLICE:
        _check_unique(items, path)  # before nested arrays are cut, which could hide a difference
    cut = [
        _cut_component(item, (*path, index), pieces) if isinstance(item, Mapping) else item
        for index, item in enumerate(items)
    ]
    return _cut(cut, path, "components", pieces, checked=True)


def _cut(
    items: list[Any], path: _Path, key: str, pieces: list[_Piece], *, checked: bool = False
) -> list[Any]:
    if len(items) <= _SLICE:
        return items
    if not checked:
        _check_unique(items, path)
    for start in range(_SLICE, len(items), _SLICE):
        document = {
            "bomFormat": "CycloneDX",
            "specVersion": CYCLONEDX_SPEC_VERSION,
            "version": 1,
            key: items[start : start + _SLICE],
        }
        pieces.append((document, _relocate(path, start)))
    return items[:_SLICE]


def _relocate(base: _Path, offset: int) -> Callable[[Sequence[str | int]], _Path]:
    """Map ``[key, i, …]`` in a slice document to ``base + [offset + i, …]``."""

    def origin(parts: Sequence[str | int]) -> _Path:
        if len(parts) < 2 or not isinstance(parts[1], int):
            return base
        return (*base, offset + parts[1], *parts[2:])

    return origin


def _check_unique(items: list[Any], path: _Path) -> None:
    seen: dict[bytes, int] = {}
    for index, item in enumerate(items):
        first = seen.setdefault(dumps_canonical(item), index)
        if first != index:
            raise BomError(
                f"BOM is not valid CycloneDX 1.6 at {_json_path(path)}: items {first} and "
                f"{index} are the same, and the schema requires unique items",
                path=_json_path(path),
            )


def _check_references(bom: Mapping[str, Any]) -> None:
    refs: set[str] = set()
    for ref in _bom_refs(bom):
        if ref in refs:
            raise BomError(f"BOM reuses bom-ref {ref!r}: every bom-ref must be unique", ref=ref)
        refs.add(ref)
    for entry in bom.get("dependencies", ()):
        for ref in (entry["ref"], *entry.get("dependsOn", ()), *entry.get("provides", ())):
            if ref not in refs:
                raise BomError(f"BOM dependency graph names unknown bom-ref {ref!r}", ref=ref)
    card = bom.get("metadata", {}).get("component", {}).get("modelCard", {})
    for item in card.get("modelParameters", {}).get("datasets", ()):
        if "ref" in item and item["ref"] not in refs:
            raise BomError(f"BOM model card names unknown dataset {item['ref']!r}", ref=item["ref"])


def _bom_refs(value: Any) -> Iterator[str]:
    """Every ``bom-ref`` value in the document (components, nested components, data, cards…)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            ref = item.get("bom-ref")
            if isinstance(ref, str):
                yield ref
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
