"""The facts an ML-BOM is built from: plain frozen values, filled in by the registry."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

from sbom.errors import BomError

_T = TypeVar("_T")


@dataclass(frozen=True, kw_only=True)
class BomFile:
    """A file of a version: relative POSIX path, size in bytes, sha256 hex (no prefix)."""

    path: str
    size: int
    sha256: str
    #: the registry's scan of the file (format and verdict), when one was made
    scan_format: str | None = None
    scan_verdict: str | None = None


@dataclass(frozen=True, kw_only=True)
class BomDataset:
    """A dataset version the model was trained or evaluated on."""

    ref: str  #: ``ns/name@version``
    root_digest: str  #: ``sha256:<hex>``
    files: tuple[BomFile, ...] = ()
    sources: tuple[str, ...] = ()  #: URIs the data came from
    external: bool = False  #: registered by manifest only: the bytes are not in the registry
    state: str | None = None
    description: str | None = None
    classification: str | None = None
    owner: str | None = None  #: the governance owner


@dataclass(frozen=True, kw_only=True)
class BomModelRef:
    """A base model version the model was derived from."""

    ref: str
    root_digest: str


@dataclass(frozen=True, kw_only=True)
class BomCode:
    """The training code: a registered code version (``ref`` + ``root_digest``) or a git commit
    (``git_uri`` + ``git_commit``), never both."""

    ref: str | None = None
    root_digest: str | None = None
    git_uri: str | None = None
    git_commit: str | None = None
    dirty: bool = False


@dataclass(frozen=True, kw_only=True)
class EnvPackage:
    """A package of the training environment."""

    name: str
    version: str | None
    purl: str | None


@dataclass(frozen=True, kw_only=True)
class Metric:
    """One evaluation result, optionally for a slice of the evaluation data."""

    name: str
    value: float | int | str
    slice: str | None = None


@dataclass(frozen=True, kw_only=True)
class ModelBomInput:
    """Everything the ML-BOM of one model version states."""

    ref: str  #: ``ns/name@version``
    root_digest: str  #: ``sha256:<hex>``
    files: tuple[BomFile, ...]
    datasets: tuple[BomDataset, ...] = ()
    base_models: tuple[BomModelRef, ...] = ()
    code: BomCode | None = None
    environment: tuple[EnvPackage, ...] = ()
    metrics: tuple[Metric, ...] = ()
    task: str | None = None
    architecture: str | None = None  #: recorded as ``modelCard.modelParameters.modelArchitecture``
    #: A CycloneDX ``modelCard.considerations`` object, copied as given (the validator checks it).
    considerations: Mapping[str, Any] | None = None
    #: Hyperparameters, recorded as properties ``modelseal:param:<key>``.
    parameters: Mapping[str, Any] = field(default_factory=dict)
    created: datetime  #: the version's creation time (UTC); the BOM's ``metadata.timestamp``
    tool_version: str = "0"  #: the modelseal version, named in ``metadata.tools``


# -- the wire form (a BOM built in a child process, sbom.isolated) ------------------------------


def input_to_wire(inp: ModelBomInput) -> dict[str, Any]:
    """``inp`` as a JSON object that :func:`input_from_wire` turns back into an equal input.

    Raises:
        BomError: a hyperparameter or the considerations are not plain JSON (as the builder
            says it).
    """
    # What the builder would refuse is refused here, in its words; what crosses is plain JSON.
    considerations = (
        None if inp.considerations is None else plain_json(inp.considerations, "considerations")
    )
    parameters = {
        key: value if isinstance(value, str) else plain_json(value, f"parameter {key!r}")
        for key, value in inp.parameters.items()
    }
    wire = asdict(replace(inp, considerations=None, parameters={}))
    wire["considerations"] = considerations
    wire["parameters"] = parameters
    wire["created"] = inp.created.isoformat()
    return wire


def input_from_wire(wire: Mapping[str, Any]) -> ModelBomInput:
    """The :class:`ModelBomInput` that :func:`input_to_wire` wrote (``KeyError``/``TypeError``/
    ``ValueError`` for anything else)."""

    def many(cls: type[_T], items: list[dict[str, Any]]) -> tuple[_T, ...]:
        return tuple(cls(**item) for item in items)

    datasets = tuple(
        BomDataset(**{**d, "files": many(BomFile, d["files"]), "sources": tuple(d["sources"])})
        for d in wire["datasets"]
    )
    code = wire["code"]
    return ModelBomInput(**{
        **wire,
        "files": many(BomFile, wire["files"]),
        "datasets": datasets,
        "base_models": many(BomModelRef, wire["base_models"]),
        "code": None if code is None else BomCode(**code),
        "environment": many(EnvPackage, wire["environment"]),
        "metrics": many(Metric, wire["metrics"]),
        "created": datetime.fromisoformat(wire["created"]),
    })  # fmt: skip


def plain_json(value: Any, what: str) -> Any:
    """A deep copy of ``value`` made of dict/list/str/int/float/bool/None only."""
    if isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            raise BomError(f"{what}: object keys must be strings")
        return {key: plain_json(item, what) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain_json(item, what) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise BomError(f"{what}: {value!r} is not a finite number")
    if value is None or isinstance(value, str | int | float):
        return value
    raise BomError(f"{what}: a {type(value).__name__} cannot be written as JSON")
