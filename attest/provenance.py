"""SLSA v1 provenance for training and data jobs, and reading it back.

The predicate (``https://slsa.dev/provenance/v1``) names, in ``buildDefinition``:

- ``resolvedDependencies``: every dataset, base model and code version as
  ``{"uri": "modelseal:NS/NAME@VERSION", "digest": {"sha256": ROOT}, "name": ROLE}``
  (ROLE: ``dataset``, ``base-model``, ``code``); a git checkout as
  ``{"uri": "git+URL@COMMIT", "digest": {"gitCommit": COMMIT}, "name": "code"}`` with
  ``annotations.dirty`` when the tree had local changes; a dataset's origins as
  ``{"uri": SOURCE, "name": "source"}``;
- ``externalParameters``: the hyperparameters, typed as given (numbers stay numbers).

``runDetails.builder.id`` names the job; ``runDetails.byproducts`` may carry the training
environment (requirements.txt or a CycloneDX SBOM, ``name: environment``) and a model card
(``name: model-card``: task, architecture, considerations), both inline as base64 ``content``.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from attest import jsonsafe
from attest.errors import ProvenanceError
from attest.gate import DEPENDENCY_SCHEME

BUILD_TYPE = "https://modelseal.dev/training/v1"
ROLES = ("dataset", "base-model", "code")
ROLE_KINDS = {"dataset": "dataset", "base-model": "model", "code": "code"}
MAX_PARAM_VALUE = 4096
MAX_BYPRODUCT = 1024 * 1024
_PARAM_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


@dataclass(frozen=True, slots=True)
class VersionDependency:
    ref: str  # NS/NAME@VERSION
    root_digest: str  # hex
    role: str  # dataset | base-model | code


@dataclass(frozen=True, slots=True)
class GitSource:
    url: str
    commit: str
    dirty: bool = False


@dataclass(frozen=True, slots=True)
class Byproduct:
    name: str  # environment | model-card
    filename: str
    media_type: str
    content: bytes


@dataclass(frozen=True, slots=True)
class Provenance:
    """What a provenance predicate says, read back."""

    builder_id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    dependencies: tuple[VersionDependency, ...] = ()
    git: GitSource | None = None
    sources: tuple[str, ...] = ()
    byproducts: tuple[Byproduct, ...] = ()

    def byproduct(self, name: str) -> Byproduct | None:
        return next((b for b in self.byproducts if b.name == name), None)


def parse_param(text: str) -> tuple[str, Any]:
    """``K=V`` from the command line: V is a JSON number, true/false/null, else a string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not _PARAM_KEY.match(key):
        raise ProvenanceError(f"--param {text!r}: expected KEY=VALUE with a plain KEY")
    if len(raw) > MAX_PARAM_VALUE:
        raise ProvenanceError(f"--param {key}: value longer than {MAX_PARAM_VALUE} characters")
    value: Any = raw
    if re.fullmatch(r"-?(0|[1-9]\d*)", raw):
        value = int(raw)
    elif re.fullmatch(r"-?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?", raw):
        value = float(raw)
    elif raw in ("true", "false", "null"):
        value = json.loads(raw)
    return key, value


def check_parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        if not isinstance(key, str) or not _PARAM_KEY.match(key):
            raise ProvenanceError(f"parameter name {key!r} is not a plain name")
        if not isinstance(value, str | int | float | bool) and value is not None:
            raise ProvenanceError(f"parameter {key}: only strings, numbers, booleans and null")
        if isinstance(value, float) and not math.isfinite(value):
            raise ProvenanceError(f"parameter {key}: {value} is not a finite number")
        out[key] = value
    return out


def build_predicate(
    *,
    builder_id: str,
    parameters: Mapping[str, Any] = {},
    dependencies: Sequence[VersionDependency] = (),
    git: GitSource | None = None,
    sources: Sequence[str] = (),
    byproducts: Sequence[Byproduct] = (),
    started: datetime | None = None,
    finished: datetime | None = None,
    invocation_id: str | None = None,
) -> dict[str, Any]:
    """The SLSA v1 provenance predicate of one training (or data) run."""
    if not builder_id:
        raise ProvenanceError("provenance needs a builder id (--builder-id)")
    resolved: list[dict[str, Any]] = []
    for dep in dependencies:
        if dep.role not in ROLES:
            raise ProvenanceError(f"unknown dependency role {dep.role!r}")
        resolved.append(
            {
                "uri": DEPENDENCY_SCHEME + dep.ref,
                "digest": {"sha256": dep.root_digest},
                "name": dep.role,
            }
        )
    if git is not None:
        if not _COMMIT.match(git.commit):
            raise ProvenanceError(f"git commit {git.commit!r} is not a full hex commit id")
        entry: dict[str, Any] = {
            "uri": f"git+{git.url}@{git.commit}",
            "digest": {"gitCommit": git.commit},
            "name": "code",
        }
        if git.dirty:
            entry["annotations"] = {"dirty": True}
        resolved.append(entry)
    for source in sources:
        resolved.append({"uri": source, "name": "source"})
    metadata: dict[str, Any] = {}
    if invocation_id:
        metadata["invocationId"] = invocation_id
    if started:
        metadata["startedOn"] = started.isoformat()
    if finished:
        metadata["finishedOn"] = finished.isoformat()
    run: dict[str, Any] = {"builder": {"id": builder_id}}
    if metadata:
        run["metadata"] = metadata
    if byproducts:
        run["byproducts"] = [
            {
                "name": b.name,
                "uri": b.filename,
                "mediaType": b.media_type,
                "content": base64.b64encode(b.content).decode(),
            }
            for b in byproducts
        ]
    return {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": check_parameters(parameters),
            "resolvedDependencies": resolved,
        },
        "runDetails": run,
    }


def read_predicate(predicate: Mapping[str, Any]) -> Provenance:
    """Read what a (verified) provenance predicate names; malformed parts raise."""
    definition = predicate.get("buildDefinition")
    if not isinstance(definition, dict):
        raise ProvenanceError("provenance has no buildDefinition")
    params = definition.get("externalParameters", {})
    if not isinstance(params, dict):
        raise ProvenanceError("externalParameters is not an object")
    deps: list[VersionDependency] = []
    git: GitSource | None = None
    sources: list[str] = []
    resolved = definition.get("resolvedDependencies", [])
    if not isinstance(resolved, list):
        raise ProvenanceError("resolvedDependencies is not a list")
    for entry in resolved:
        if not isinstance(entry, dict) or not isinstance(entry.get("uri"), str):
            raise ProvenanceError("a resolvedDependencies entry has no uri")
        uri, digest = entry["uri"], entry.get("digest") or {}
        if not isinstance(digest, dict):
            raise ProvenanceError(f"{uri}: digest is not an object")
        if uri.startswith(DEPENDENCY_SCHEME):
            role = entry.get("name", "dataset")
            if role not in ROLES:
                raise ProvenanceError(f"{uri}: unknown dependency role {role!r}")
            deps.append(
                VersionDependency(
                    uri.removeprefix(DEPENDENCY_SCHEME), str(digest.get("sha256")), str(role)
                )
            )
        elif uri.startswith("git+") and "gitCommit" in digest:
            annotations = entry.get("annotations") or {}
            url = uri.removeprefix("git+").rsplit("@", 1)[0]
            dirty = isinstance(annotations, dict) and annotations.get("dirty") is True
            git = GitSource(url, str(digest["gitCommit"]), dirty)
        else:
            sources.append(uri)
    run = predicate.get("runDetails") or {}
    builder = run.get("builder") if isinstance(run, dict) else None
    builder_id = builder.get("id") if isinstance(builder, dict) else None
    byproducts: list[Byproduct] = []
    for item in (run.get("byproducts") or []) if isinstance(run, dict) else []:
        if not isinstance(item, dict) or not isinstance(item.get("content"), str):
            continue
        try:
            content = base64.b64decode(item["content"], validate=True)
        except ValueError:
            raise ProvenanceError(f"byproduct {item.get('name')!r} is not base64") from None
        if len(content) > MAX_BYPRODUCT:
            raise ProvenanceError(f"byproduct {item.get('name')!r} is over {MAX_BYPRODUCT} bytes")
        byproducts.append(
            Byproduct(
                str(item.get("name")),
                str(item.get("uri", "")),
                str(item.get("mediaType", "")),
                content,
            )
        )
    return Provenance(
        builder_id=str(builder_id) if builder_id else None,
        parameters=dict(params),
        dependencies=tuple(deps),
        git=git,
        sources=tuple(sources),
        byproducts=tuple(byproducts),
    )


def model_card(provenance: Provenance) -> dict[str, Any]:
    """The model-card byproduct (task, architecture, considerations), or an empty dict."""
    item = provenance.byproduct("model-card")
    if item is None:
        return {}
    card = jsonsafe.loads(item.content, what="model card")
    if not isinstance(card, dict):
        raise ProvenanceError("the model card is not a JSON object")
    return card
