"""Build the CycloneDX 1.6 ML-BOM of a model version.

The pipeline: check the input's digests and references → build the skeleton with
cyclonedx-python-lib (components, hashes, properties, dependency graph) → serialize it with the
lib's 1.6 JSON writer → add ``modelCard`` and ``data``, which the lib cannot model, and the file
components → validate the result with the strict 1.6 schema. The result is never parsed back
through the lib, which would drop ``modelCard`` and ``data``.

File components are written as plain JSON rather than lib objects: the lib spends milliseconds
per component (it sorts and hashes every nested component on each insertion), which turns a
model of a few thousand files into seconds; the validator checks them all the same.

Layout of the document:

- ``metadata.component``: the model (``machine-learning-model``, bom-ref ``model:NS/NAME@V``),
  its root digest as a SHA-256 hash and as property ``modelseal:root-digest``, hyperparameters as
  ``modelseal:param:<key>`` properties, its ``modelCard``, and its files as nested ``file``
  components (an assembly: the model *is* its files).
- ``components``: datasets (``data``, ``dataset:NS/NAME@V``, with ``data[]``), base models
  (``model:NS/NAME@V``), the code (``code:NS/NAME@V`` or ``code:<git uri>@<commit>``) and the
  training environment's packages (bom-ref = their purl).
- ``dependencies``: the model depends on all of those.

Identical input gives identical bytes (:func:`bom_bytes`): bom-refs come from references and
paths, the serial number from the model's reference and root digest, the timestamp from the
version's creation time, and the lib sorts components, hashes and properties.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from cyclonedx.exception.model import InvalidUriException
from cyclonedx.model import (
    ExternalReference,
    ExternalReferenceType,
    HashAlgorithm,
    HashType,
    Property,
    XsUri,
)
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Commit, Component, ComponentType, Pedigree
from cyclonedx.model.lifecycle import LifecyclePhase, PredefinedLifecycle
from cyclonedx.model.tool import ToolRepository
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from attest.digests import Digest, FileDigest, is_sha256_hex, parse_sha256, root_digest
from attest.errors import InvalidDigestError
from attest.jsonsafe import dumps_canonical
from sbom.errors import BomError
from sbom.model import (
    BomCode,
    BomDataset,
    BomFile,
    BomModelRef,
    EnvPackage,
    ModelBomInput,
    plain_json,
)
from sbom.validate import validate_bom

#: Namespace of the serial numbers (uuid5 of ``NS/NAME@V`` and the root digest). Never change it:
#: a BOM rebuilt from the same facts must keep its serial number.
SERIAL_NAMESPACE = uuid.UUID("20c29627-7316-5942-9551-9e17b0908e99")

#: A dataset with more files than this is described by its root digest and file count only, so
#: that the BOM of a model trained on millions of files stays well under the evidence size cap.
MAX_LISTED_DATASET_FILES = 1000

PROPERTY_ROOT_DIGEST = "modelseal:root-digest"
PROPERTY_PARAM_PREFIX = "modelseal:param:"

_EXTERNAL_NOTE = (
    "External dataset, registered by manifest only: its bytes are not stored in the registry."
)
_DIRTY_NOTE = "Built from a working tree with uncommitted changes to this commit."


def build_model_bom(
    inp: ModelBomInput, *, validate: Callable[[Mapping[str, Any]], None] = validate_bom
) -> dict[str, Any]:
    """Build the ML-BOM of a model version as a JSON object (see the module docstring).
    ``validate``: the strict check (a long-running service passes an
    :class:`~sbom.isolated.BomChild`, the same check in a child process).

    Raises:
        BomError: a digest or reference is malformed, a file list does not add up to its root
            digest, a value cannot be expressed in JSON, or the result is not strictly valid
            CycloneDX 1.6.
        BomValidatorUnavailableError: ``validate`` could not run (an isolated validator).
    """
    model = _model_component(inp)
    dependencies = _dependency_components(inp)
    bom = Bom(
        serial_number=serial_number(inp.ref, inp.root_digest),
        metadata=BomMetaData(
            component=model,
            timestamp=_utc(inp.created),
            lifecycles=[PredefinedLifecycle(LifecyclePhase.POST_BUILD)],
            tools=ToolRepository(components=[_tool(inp.tool_version)]),
        ),
        components=dependencies,
    )
    bom.register_dependency(model, dependencies)
    doc: dict[str, Any] = json.loads(JsonV1Dot6(bom).output_as_string())
    doc["metadata"]["component"]["components"] = _file_entries(inp.files, ref_prefix="file:")
    _add_model_card(doc["metadata"]["component"], inp)
    _add_data(doc.get("components", []), inp.datasets)
    validate(doc)
    return doc


def bom_bytes(bom: Mapping[str, Any]) -> bytes:
    """The canonical encoding of a BOM: sorted keys, no whitespace, UTF-8 (what gets signed)."""
    return dumps_canonical(bom)


def serial_number(ref: str, root_digest_value: str) -> uuid.UUID:
    """The BOM serial number of a model version: stable for the same reference and digest."""
    return uuid.uuid5(SERIAL_NAMESPACE, f"{ref}\n{root_digest_value}")


# -- components ---------------------------------------------------------------------------


def _model_component(inp: ModelBomInput) -> Component:
    group, name, version = _split_ref(inp.ref, "model")
    digest = _checked_root(inp.root_digest, inp.files, f"model {inp.ref}", require_files=True)
    properties = [Property(name=PROPERTY_ROOT_DIGEST, value=inp.root_digest)]
    properties.extend(
        Property(name=PROPERTY_PARAM_PREFIX + key, value=_param_value(key, value))
        for key, value in inp.parameters.items()
    )
    return Component(
        type=ComponentType.MACHINE_LEARNING_MODEL,
        bom_ref=f"model:{inp.ref}",
        group=group,
        name=name,
        version=version,
        hashes=[_sha256(digest)],
        properties=properties,
    )


def _dependency_components(inp: ModelBomInput) -> list[Component]:
    """Datasets, base models, code and packages, deduplicated by bom-ref."""
    chosen: dict[str, tuple[object, Component]] = {}

    def add(source: object, component: Component, what: str) -> None:
        ref = str(component.bom_ref.value)
        if ref not in chosen:
            chosen[ref] = (source, component)
        elif chosen[ref][0] != source and not isinstance(source, EnvPackage):
            # Two spellings of one purl are one package; two datasets under one reference are not.
            raise BomError(f"two different {what}s have the same bom-ref {ref!r}", ref=ref)

    for dataset in inp.datasets:
        add(dataset, _dataset_component(dataset), "dataset")
    for base in inp.base_models:
        if base.ref == inp.ref:
            raise BomError(f"model {inp.ref} names itself as its base model")
        add(base, _base_model_component(base), "base model")
    if inp.code is not None:
        add(inp.code, _code_component(inp.code), "code")
    for package in inp.environment:
        add(package, _package_component(package), "environment package")
    return [component for _, component in chosen.values()]


def _dataset_component(dataset: BomDataset) -> Component:
    group, name, version = _split_ref(dataset.ref, "dataset")
    what = f"dataset {dataset.ref}"
    digest = _checked_root(dataset.root_digest, dataset.files, what, require_files=False)
    ref = f"dataset:{dataset.ref}"
    properties = [Property(name=PROPERTY_ROOT_DIGEST, value=dataset.root_digest)]
    if dataset.external:
        properties.append(Property(name="modelseal:external", value="true"))
    if dataset.state is not None:
        properties.append(Property(name="modelseal:state", value=dataset.state))
    if dataset.files:
        properties.append(Property(name="modelseal:file-count", value=str(len(dataset.files))))
        if len(dataset.files) > MAX_LISTED_DATASET_FILES:
            properties.append(Property(name="modelseal:files-listed", value="false"))
    return Component(
        type=ComponentType.DATA,
        bom_ref=ref,
        group=group,
        name=name,
        version=version,
        description=_dataset_description(dataset),
        hashes=[_sha256(digest)],
        properties=properties,
        external_references=[
            ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=_uri(source, what))
            for source in dataset.sources
        ],
    )


def _base_model_component(base: BomModelRef) -> Component:
    group, name, version = _split_ref(base.ref, "base model")
    digest = _checked_root(base.root_digest, (), f"base model {base.ref}", require_files=False)
    return Component(
        type=ComponentType.MACHINE_LEARNING_MODEL,
        bom_ref=f"model:{base.ref}",
        group=group,
        name=name,
        version=version,
        hashes=[_sha256(digest)],
        properties=[Property(name=PROPERTY_ROOT_DIGEST, value=base.root_digest)],
    )


def _code_component(code: BomCode) -> Component:
    registered = (code.ref, code.root_digest)
    git = (code.git_uri, code.git_commit)
    if None not in registered and git == (None, None):
        return _registered_code(code)
    if None not in git and registered == (None, None):
        return _git_code(code)
    raise BomError(
        "code must be either a registered version (ref and root_digest) or a git commit "
        "(git_uri and git_commit), not both and not neither"
    )


def _registered_code(code: BomCode) -> Component:
    ref, root = code.ref or "", code.root_digest or ""
    if code.dirty:
        raise BomError(f"code {ref}: only a git checkout can be dirty")
    group, name, version = _split_ref(ref, "code")
    digest = _checked_root(root, (), f"code {ref}", require_files=False)
    return Component(
        type=ComponentType.APPLICATION,
        bom_ref=f"code:{ref}",
        group=group,
        name=name,
        version=version,
        hashes=[_sha256(digest)],
        properties=[Property(name=PROPERTY_ROOT_DIGEST, value=root)],
    )


def _git_code(code: BomCode) -> Component:
    uri, commit = code.git_uri or "", code.git_commit or ""
    if len(commit) not in (40, 64) or any(c not in "0123456789abcdef" for c in commit):
        raise BomError(
            f"git commit {commit!r} is not a full lowercase hex object id (40 or 64 digits)"
        )
    return Component(
        type=ComponentType.APPLICATION,
        bom_ref=f"code:{uri}@{commit}",
        name=uri,
        version=commit,
        description=_DIRTY_NOTE if code.dirty else None,
        external_references=[
            ExternalReference(type=ExternalReferenceType.VCS, url=_uri(uri, "code git_uri"))
        ],
        pedigree=Pedigree(commits=[Commit(uid=commit)]),
        properties=[
            Property(name="modelseal:git-commit", value=commit),
            Property(name="modelseal:git-dirty", value="true" if code.dirty else "false"),
        ],
    )


def _package_component(package: EnvPackage) -> Component:
    purl: PackageURL | None = None
    if package.purl is not None:
        try:
            purl = PackageURL.from_string(package.purl)
        except ValueError as exc:
            raise BomError(
                f"package {package.name}: invalid purl {package.purl!r}: {exc}"
            ) from None
    if not package.name:
        raise BomError("an environment package has an empty name")
    ref = purl.to_string() if purl is not None else f"env:{package.name}@{package.version or ''}"
    return Component(
        type=ComponentType.LIBRARY,
        bom_ref=ref,
        name=package.name,
        version=package.version,
        purl=purl,
    )


def _tool(version: str) -> Component:
    return Component(
        type=ComponentType.APPLICATION,
        bom_ref=f"tool:modelseal@{version}",
        name="modelseal",
        version=version,
    )


# -- the parts the lib cannot model -------------------------------------------------------


def _add_model_card(component: dict[str, Any], inp: ModelBomInput) -> None:
    parameters: dict[str, Any] = {}
    if inp.task is not None:
        parameters["task"] = inp.task
    if inp.architecture is not None:
        parameters["modelArchitecture"] = inp.architecture
    datasets = list(dict.fromkeys(f"dataset:{d.ref}" for d in inp.datasets))
    if datasets:
        parameters["datasets"] = [{"ref": ref} for ref in datasets]
    card: dict[str, Any] = {}
    if parameters:
        card["modelParameters"] = parameters
    if inp.metrics:
        metrics = []
        for metric in inp.metrics:
            entry = {"type": metric.name, "value": _metric_value(metric.name, metric.value)}
            if metric.slice is not None:
                entry["slice"] = metric.slice
            metrics.append(entry)
        card["quantitativeAnalysis"] = {"performanceMetrics": metrics}
    if inp.considerations is not None:
        card["considerations"] = plain_json(inp.considerations, "considerations")
    if card:
        component["modelCard"] = card


def _add_data(components: list[dict[str, Any]], datasets: Sequence[BomDataset]) -> None:
    """Give each dataset component its ``data[]`` entry and (when not too many) its files."""
    by_ref = {f"dataset:{d.ref}": d for d in datasets}
    for component in components:
        dataset = by_ref.get(component["bom-ref"])
        if dataset is None:
            continue
        component["data"] = [_data_entry(dataset)]
        if dataset.files and len(dataset.files) <= MAX_LISTED_DATASET_FILES:
            prefix = f"{component['bom-ref']}#file:"
            component["components"] = _file_entries(dataset.files, ref_prefix=prefix)


def _file_entries(files: Iterable[BomFile], *, ref_prefix: str) -> list[dict[str, Any]]:
    """``file`` components in path order (the lib's order for them), digests already checked."""
    return [
        {
            "type": "file",
            "bom-ref": ref_prefix + item.path,
            "name": item.path,
            "hashes": [{"alg": "SHA-256", "content": item.sha256}],
            "properties": _file_properties(item),
        }
        for item in sorted(files, key=lambda item: item.path)
    ]


def _file_properties(item: BomFile) -> list[dict[str, str]]:
    """Size, and the registry scan's format and verdict (``unknown`` files are named here when
    a policy accepts them)."""
    properties = [{"name": "modelseal:size", "value": str(item.size)}]
    if item.scan_format is not None:
        properties.append({"name": "modelseal:scan:format", "value": item.scan_format})
    if item.scan_verdict is not None:
        properties.append({"name": "modelseal:scan:verdict", "value": item.scan_verdict})
    return properties


def _data_entry(dataset: BomDataset) -> dict[str, Any]:
    """The ``componentData`` object of a dataset."""
    what = f"dataset {dataset.ref}"
    sources = [str(_uri(source, what)) for source in dataset.sources]
    contents: dict[str, Any] = {}
    if sources:
        contents["url"] = sources[0]
    contents["properties"] = [
        {"name": PROPERTY_ROOT_DIGEST, "value": dataset.root_digest},
        *({"name": "modelseal:source", "value": source} for source in sources),
    ]
    entry: dict[str, Any] = {"type": "dataset", "name": dataset.ref, "contents": contents}
    if dataset.classification is not None:
        entry["classification"] = dataset.classification
    description = _dataset_description(dataset)
    if description is not None:
        entry["description"] = description
    if dataset.owner is not None:
        entry["governance"] = {"owners": [{"organization": {"name": dataset.owner}}]}
    return entry


# -- values -------------------------------------------------------------------------------


def _split_ref(ref: str, what: str) -> tuple[str, str, str]:
    base, at, version = ref.rpartition("@")
    group, slash, name = base.partition("/")
    if not (at and slash and group and name and version) or "/" in name:
        raise BomError(f"{what} reference {ref!r} is not NS/NAME@VERSION", ref=ref)
    return group, name, version


def _checked_root(digest: str, files: Sequence[BomFile], what: str, *, require_files: bool) -> str:
    """The hex of ``digest``, after checking that ``files`` (when given) add up to it."""
    try:
        expected = parse_sha256(digest)
    except InvalidDigestError:
        raise BomError(
            f"{what}: root digest {digest!r} is not sha256:<64 lowercase hex digits>"
        ) from None
    if not files and not require_files:
        return expected
    try:
        computed = root_digest(FileDigest(f.path, f.size, Digest(f.sha256)) for f in files)
    except (InvalidDigestError, ValueError) as exc:
        raise BomError(f"{what}: {exc}") from None
    if computed != expected:
        raise BomError(
            f"{what}: its files add up to sha256:{computed}, not to its root digest {digest}",
            expected=digest,
            got=f"sha256:{computed}",
        )
    return expected


def _sha256(hexdigest: str) -> HashType:
    if not is_sha256_hex(hexdigest):
        raise BomError(f"{hexdigest!r} is not a sha256 hex digest")
    return HashType(alg=HashAlgorithm.SHA_256, content=hexdigest)


def _uri(value: str, what: str) -> XsUri:
    try:
        return XsUri(value)
    except InvalidUriException:
        raise BomError(f"{what}: {value!r} is not a valid URI") from None


def _dataset_description(dataset: BomDataset) -> str | None:
    parts = [dataset.description] if dataset.description else []
    if dataset.external:
        parts.append(_EXTERNAL_NOTE)
    return " ".join(parts) or None


def _utc(moment: datetime) -> datetime:
    # A naive time is taken as UTC: SQLite hands back naive datetimes for UTC columns.
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _metric_value(name: str, value: float | int | str) -> str:
    """Metric values are strings in the schema: numbers keep their shortest exact spelling."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BomError(f"metric {name!r} is {value!r}, not a finite number")
        return repr(value)
    return str(value)


def _param_value(key: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    plain = plain_json(value, f"parameter {key!r}")
    return json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
