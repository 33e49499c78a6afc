"""The facts an ML-BOM is built from: plain frozen values, filled in by the registry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


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
